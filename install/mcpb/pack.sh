#!/bin/sh
# Packs the bridge for one target triple into an MCP Bundle for Claude Desktop, with a SHA-256
# checksum file, the way install/package.sh packs the archives.
#
#   install/mcpb/pack.sh <target-triple> <bin-dir> <out-dir>
#
# Writes <out-dir>/mcp-chat-<target>.mcpb and next to it <bundle>.sha256 ("<hex>  <bundle>\n",
# as sha256sum prints it); the bundle's path goes to stdout. The bundle is what the official
# MCP Bundle tool (`mcpb pack`, npm @anthropic-ai/mcpb, pinned in ui-tests/package.json) makes
# of a staging directory holding install/mcpb/manifest.json, icon.png, README.md, LICENSE* and
# server/mcp-chat-bridge (".exe" for Windows triples). The staged manifest names only the
# target's platform (darwin, win32 or linux), so Claude Desktop refuses a bundle built for
# another OS. The tool runs on the pinned Node: $NODE, else ui-tests/node_modules/.bin/node,
# else `node` on PATH; `npm ci --prefix ui-tests` installs both. Exit status: 0 done, 1 failed,
# 2 usage error. The release workflow and bridge/tests/bridge/bundle.rs use it.
set -eu
umask 022
LC_ALL=C
export LC_ALL

die() {
    printf 'mcpb/pack.sh: error: %s\n' "$*" >&2
    exit 1
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
    echo "mcpb/pack.sh: not a target triple: '$target'" >&2
    exit 2
    ;;
esac
[ -d "$bin_dir" ] || die "no such directory: $bin_dir"

case $0 in
*/*) script_dir=${0%/*} ;;
*) script_dir=. ;;
esac
here=$(cd "$script_dir" && pwd) || die "cannot find the directory of $0"
root=$(cd "$here/../.." && pwd) || die "cannot find the repository root from $0"
[ -f "$here/manifest.json" ] || die "manifest.json not found in $here"

case $target in
*windows*) ext=.exe platform=win32 ;;
*apple-darwin*) ext='' platform=darwin ;;
*linux*) ext='' platform=linux ;;
*) die "no Claude Desktop platform for target $target (darwin, win32, linux)" ;;
esac
exe=mcp-chat-bridge$ext
[ -f "$bin_dir/$exe" ] || die "$exe is not in $bin_dir (target $target)"

mcpb=$root/ui-tests/node_modules/@anthropic-ai/mcpb/dist/cli/cli.js
[ -f "$mcpb" ] || die "the MCP Bundle tool is not installed (npm ci --prefix ui-tests)"
node=${NODE:-}
if [ -z "$node" ]; then
    if "$root/ui-tests/node_modules/.bin/node" --version >/dev/null 2>&1; then
        node=$root/ui-tests/node_modules/.bin/node
    elif command -v node >/dev/null 2>&1; then
        node=node
    else
        die "no Node: set NODE, or npm ci --prefix ui-tests"
    fi
fi

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum <"$1" | awk '{ print $1 }'; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 <"$1" | awk '{ print $1 }'; }
else
    die "need sha256sum or shasum"
fi

mkdir -p "$out_dir" || die "cannot create $out_dir"
out_dir=$(cd "$out_dir" && pwd)
stage=$(mktemp -d "${TMPDIR:-/tmp}/mcp-chat-mcpb.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir=$stage/mcp-chat
mkdir -p "$dir/server"
cp "$bin_dir/$exe" "$dir/server/$exe"
chmod 755 "$dir/server/$exe"
cp "$here/icon.png" "$dir/icon.png"
cp "$root/README.md" "$dir/README.md"
for license in "$root"/LICENSE*; do
    [ -f "$license" ] || continue
    cp "$license" "$dir/${license##*/}"
done
# The manifest as committed, but for this platform only (on Windows with the entry point's
# real name, server/mcp-chat-bridge.exe). Node does the JSON, so the file keeps every other
# byte of meaning.
"$node" -e '
const fs = require("fs");
const [from, to, platform] = process.argv.slice(1);
const manifest = JSON.parse(fs.readFileSync(from, "utf8"));
manifest.compatibility = { ...manifest.compatibility, platforms: [platform] };
if (platform === "win32") manifest.server.entry_point += ".exe";
fs.writeFileSync(to, JSON.stringify(manifest, null, 2) + "\n");
' "$here/manifest.json" "$dir/manifest.json" "$platform" || die "cannot write the staged manifest"
chmod 644 "$dir"/manifest.json "$dir"/icon.png "$dir"/README.md
chmod 755 "$dir" "$dir/server"

bundle=mcp-chat-$target.mcpb
# mcpb prints its file list and details on stdout; stdout of this script is the bundle path.
"$node" "$mcpb" pack "$dir" "$stage/$bundle" >&2 || die "mcpb pack failed for $target"
mv -f "$stage/$bundle" "$out_dir/$bundle" || die "could not move $bundle to $out_dir"
hash=$(sha256 "$out_dir/$bundle") || die "could not hash $bundle"
case $hash in
*[!0-9a-f]* | '') die "bad SHA-256 output for $bundle: '$hash'" ;;
esac
[ "${#hash}" -eq 64 ] || die "bad SHA-256 output for $bundle: '$hash'"
printf '%s  %s\n' "$hash" "$bundle" >"$out_dir/$bundle.sha256"
printf '%s\n' "$out_dir/$bundle"
