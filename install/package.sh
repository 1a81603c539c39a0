#!/bin/sh
# Packs release binaries for one target triple into archives with SHA-256 checksum files.
#
#   install/package.sh <target-triple> <bin-dir> <out-dir>
#
# For each of mcp-chat-bridge and mcp-chat-relay found in <bin-dir> (".exe" for Windows
# triples) it writes <out-dir>/<bin>-<target>.tar.gz (Windows: .zip) holding one directory
# <bin>-<target>/ with the executable, README.md and LICENSE* from the repository root, and
# next to it <archive>.sha256 ("<hex>  <archive>\n", as sha256sum prints it). The archive
# paths go to stdout, one a line. Exit status: 0 done, 1 failed (no binary, missing tool),
# 2 usage error. The release workflow and the installer test use it; install.sh relies on the
# names.
set -eu
umask 022
# Byte order for globs and sort, so entries come out in the same order everywhere.
LC_ALL=C
export LC_ALL
# macOS tar would otherwise add AppleDouble "._*" entries for extended attributes.
COPYFILE_DISABLE=1
export COPYFILE_DISABLE

die() {
    printf 'package.sh: error: %s\n' "$*" >&2
    exit 1
}

have() {
    command -v "$1" >/dev/null 2>&1
}

if [ "$#" -ne 3 ]; then
    echo "usage: $0 <target-triple> <bin-dir> <out-dir>" >&2
    exit 2
fi
target=$1
bin_dir=${2%/}
out_dir=${3%/}
case $target in
'' | -* | *[!A-Za-z0-9_.-]*)
    echo "package.sh: not a target triple: '$target'" >&2
    exit 2
    ;;
esac
[ -d "$bin_dir" ] || die "no such directory: $bin_dir"

# The repository root is the parent of this script's directory.
case $0 in
*/*) script_dir=${0%/*} ;;
*) script_dir=. ;;
esac
root=$(cd "$script_dir/.." && pwd) || die "cannot find the repository root from $0"
[ -f "$root/README.md" ] || die "README.md not found in $root"

case $target in
*windows*) ext=.exe format=zip ;;
*) ext='' format=tar.gz ;;
esac

found=0
for bin in mcp-chat-bridge mcp-chat-relay; do
    if [ -f "$bin_dir/$bin$ext" ]; then found=1; fi
done
if [ "$found" = 0 ]; then
    die "neither mcp-chat-bridge$ext nor mcp-chat-relay$ext is in $bin_dir (target $target)"
fi

# Tools, chosen once.
if [ "$format" = zip ]; then
    zipper=
    for py in python3 python; do
        # Skips the Windows "python3" store alias, which exits non-zero.
        if have "$py" && "$py" -c 'import sys, zipfile; sys.exit(sys.version_info < (3, 6))' \
            >/dev/null 2>&1; then
            zipper=$py
            break
        fi
    done
    if [ -z "$zipper" ] && have zip; then zipper=zip; fi
    [ -n "$zipper" ] || die "need python3 or zip to write .zip archives"
else
    have gzip || die "need gzip"
    if tar --version 2>/dev/null | grep 'GNU tar' >/dev/null; then
        tar_kind=gnu
    elif tar --version 2>/dev/null | grep 'bsdtar' >/dev/null; then
        tar_kind=bsd
    else
        tar_kind=other
    fi
fi
if have sha256sum; then
    sha256() { sha256sum <"$1" | awk '{ print $1 }'; }
elif have shasum; then
    sha256() { shasum -a 256 <"$1" | awk '{ print $1 }'; }
else
    die "need sha256sum or shasum"
fi

# Every file gets the time of the last commit (UTC), so rebuilding a tag gives the same
# archive bytes. Outside a git checkout the times stay as they are.
stamp=
if have git; then
    stamp=$(TZ=UTC0 git -C "$root" log -1 --format=%cd --date=format-local:%Y%m%d%H%M.%S \
        2>/dev/null) || stamp=
fi

mkdir -p "$out_dir" || die "cannot create $out_dir"
stage=$(mktemp -d "${TMPDIR:-/tmp}/mcp-chat-package.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for bin in mcp-chat-bridge mcp-chat-relay; do
    exe=$bin$ext
    [ -f "$bin_dir/$exe" ] || continue
    name=$bin-$target
    archive=$name.$format
    dir=$stage/$name
    mkdir "$dir"
    cp "$bin_dir/$exe" "$dir/$exe"
    chmod 755 "$dir/$exe"
    cp "$root/README.md" "$dir/README.md"
    chmod 644 "$dir/README.md"
    for license in "$root"/LICENSE*; do
        [ -f "$license" ] || continue
        cp "$license" "$dir/${license##*/}"
        chmod 644 "$dir/${license##*/}"
    done
    chmod 755 "$dir"
    if [ -n "$stamp" ]; then
        TZ=UTC0 touch -t "$stamp" "$dir"/* "$dir" 2>/dev/null || true
    fi

    # Relative names only: run from the staging directory. The directory entry comes first,
    # then its files in byte order (the glob), without recursing.
    (
        cd "$stage"
        set -- "$name" "$name"/*
        case $format in
        zip)
            if [ "$zipper" = zip ]; then
                zip -q -X "$archive" "$@"
            else
                "$zipper" -m zipfile -c "$archive" "$name"
            fi
            ;;
        tar.gz)
            case $tar_kind in
            gnu) tar --no-recursion --format=ustar --owner=0 --group=0 --numeric-owner \
                -cf "$name.tar" "$@" ;;
            bsd) tar --no-recursion --format ustar --uid 0 --gid 0 --uname root --gname root \
                --no-xattrs --no-acls --no-fflags -cf "$name.tar" "$@" ;;
            *) tar -cf "$name.tar" "$@" ;;
            esac
            # gzip -n: no name or time in the gzip header (tar -z would add a time).
            gzip -n -9 -c "$name.tar" >"$archive"
            rm -f "$name.tar"
            ;;
        esac
    ) || die "could not write $archive"

    mv -f "$stage/$archive" "$out_dir/$archive" || die "could not move $archive to $out_dir"
    hash=$(sha256 "$out_dir/$archive") || die "could not hash $archive"
    case $hash in
    *[!0-9a-f]* | '') die "bad SHA-256 output for $archive: '$hash'" ;;
    esac
    [ "${#hash}" -eq 64 ] || die "bad SHA-256 output for $archive: '$hash'"
    printf '%s  %s\n' "$hash" "$archive" >"$out_dir/$archive.sha256"
    printf '%s\n' "$out_dir/$archive"
done
