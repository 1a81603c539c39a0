#!/bin/sh
# Installs mcp-chat-bridge on Linux or macOS from a release of mcp-chat.
#
#   curl -fsSL https://github.com/OWNER/mcp-chat/releases/latest/download/install.sh | sh
#   curl -fsSL .../install.sh | sh -s -- --client claude-desktop
#   sh install.sh [--to DIR] [--version TAG] [--client NAME] [--relay URL] [--yes]
#
# Downloads the archive for this OS and CPU and its .sha256, checks the checksum, and only
# then puts the binary in place (by a rename, so an existing install is replaced whole or not
# at all). Run with --help for the options and exit codes.

# Where releases are published. The public repository name is not chosen yet: replace OWNER
# (and the repository name if it differs) once it is.
MCP_CHAT_REPO_RELEASES="https://github.com/OWNER/mcp-chat/releases"

set -eu

BIN=mcp-chat-bridge
CLIENTS="claude-desktop claude-code cursor vscode windsurf zed lmstudio gemini codex goose opencode"

usage() {
    cat <<EOF
Install mcp-chat-bridge, the bridge that puts AI desktop clients on an mcp-chat relay.

usage: install.sh [options]        (or: curl -fsSL URL/install.sh | sh -s -- [options])

options:
  --to DIR         install into DIR (env MCP_CHAT_INSTALL_DIR; default \$HOME/.local/bin)
  --version TAG    install release TAG, e.g. v0.1.0 (env MCP_CHAT_VERSION; default latest)
  --client NAME    then add the bridge to this client's MCP settings, one of:
                   $(echo "$CLIENTS" | sed 's/ /, /g')
  --relay URL      relay URL for that client entry (default: the bridge's own default)
  -y, --yes        do not ask anything (without --client, just print the command to run)
  -h, --help       show this help

environment:
  MCP_CHAT_DOWNLOAD_URL  download from this base URL instead of the GitHub release
                         (fetches \$MCP_CHAT_DOWNLOAD_URL/<archive> and <archive>.sha256)

exit status: 0 installed (and client configured if asked), 1 download, checksum or install
failed (nothing changed), 2 usage error, 3 no prebuilt binary for this OS/CPU,
4 installed but configuring the client failed.
EOF
}

say() {
    printf '%s\n' "$*" >&2
}

die() {
    code=$1
    shift
    printf 'error: %s\n' "$*" >&2
    exit "$code"
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# State the EXIT trap cleans up.
tmp_dir=
staged=
created_dir=
installed=0

cleanup() {
    if [ -n "$staged" ]; then rm -f "$staged"; fi
    if [ -n "$tmp_dir" ]; then rm -rf "$tmp_dir"; fi
    # A directory this run created stays only if the binary is in it.
    if [ -n "$created_dir" ] && [ "$installed" != 1 ]; then
        rmdir "$created_dir" 2>/dev/null || true
    fi
}

is_client() {
    for c in $CLIENTS; do
        if [ "$c" = "$1" ]; then return 0; fi
    done
    return 1
}

unsupported() {
    repo=${MCP_CHAT_REPO_RELEASES%/releases}
    die 3 "no prebuilt $BIN for $1/$2. Build it from source with Rust 1.89 or newer:
    cargo install --locked --git $repo $BIN
(see the README at $repo), or open an issue asking for $1/$2."
}

# Sets $target, the release triple for this machine.
detect_target() {
    os=$(uname -s 2>/dev/null) || os=unknown
    cpu=$(uname -m 2>/dev/null) || cpu=unknown
    case $os in
    Linux)
        # Static musl builds: no glibc version to match.
        case $cpu in
        x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
        aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
        *) unsupported "$os" "$cpu" ;;
        esac
        ;;
    Darwin)
        case $cpu in
        x86_64)
            # A shell running under Rosetta reports x86_64 on Apple silicon; the native
            # build is the better choice there.
            if [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
                target=aarch64-apple-darwin
            else
                target=x86_64-apple-darwin
            fi
            ;;
        arm64 | aarch64) target=aarch64-apple-darwin ;;
        *) unsupported "$os" "$cpu" ;;
        esac
        ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT)
        die 3 "this is the installer for Linux and macOS; on Windows run install.ps1 in PowerShell:
    irm ${MCP_CHAT_REPO_RELEASES}/latest/download/install.ps1 | iex"
        ;;
    *) unsupported "$os" "$cpu" ;;
    esac
}

# download URL FILE
download() {
    if have curl; then
        case $1 in
        https://*) curl --proto '=https' --tlsv1.2 -fsSL --retry 2 -o "$2" "$1" ;;
        *) curl -fsSL --retry 2 -o "$2" "$1" ;;
        esac
    elif have wget; then
        case $1 in
        https://*)
            # BusyBox wget has neither option (and only speaks TLS 1.2+ anyway).
            if wget --version 2>/dev/null | grep 'GNU Wget' >/dev/null; then
                wget -q --https-only --secure-protocol=TLSv1_2 -O "$2" "$1"
            else
                wget -q -O "$2" "$1"
            fi
            ;;
        *) wget -q -O "$2" "$1" ;;
        esac
    else
        die 1 "need curl or wget to download $BIN"
    fi
}

# Prints the lowercase hex SHA-256 of FILE.
sha256_of() {
    if have sha256sum; then
        sha256sum <"$1" | awk '{ print $1 }'
    elif have shasum; then
        shasum -a 256 <"$1" | awk '{ print $1 }'
    elif have openssl; then
        openssl dgst -sha256 <"$1" | awk '{ print $NF }'
    else
        return 1
    fi | tr 'A-F' 'a-f'
}

is_sha256() {
    case $1 in
    *[!0-9a-f]* | '') return 1 ;;
    esac
    [ "${#1}" -eq 64 ]
}

# ask PROMPT: reads one line into $answer from the terminal, even when the script itself
# arrives on stdin (curl | sh). Fails when there is no terminal to ask.
ask() {
    answer=
    if [ -t 0 ]; then
        printf '%s' "$1" >&2
        read -r answer || answer=
    elif (: </dev/tty) 2>/dev/null; then
        printf '%s' "$1" >/dev/tty
        read -r answer </dev/tty || answer=
    else
        return 1
    fi
}

# Prints the line that puts DIR on PATH for the user's shell.
path_advice() {
    dir=$1
    shown=$dir
    case $dir in
    "${HOME:-/nonexistent}"/*) shown="\$HOME${dir#"$HOME"}" ;;
    esac
    case ${SHELL:-} in
    */fish)
        say "$dir is not on your PATH. To add it, run once in fish:"
        say "    fish_add_path \"$shown\""
        ;;
    */zsh)
        zshrc=${ZDOTDIR:-${HOME:-}}/.zshrc
        say "$dir is not on your PATH. Add this line to $zshrc and open a new terminal:"
        say "    export PATH=\"$shown:\$PATH\""
        ;;
    */bash)
        rc=${HOME:-}/.bashrc
        # Terminal.app starts login shells, which read ~/.bash_profile, not ~/.bashrc.
        if [ "$(uname -s 2>/dev/null || true)" = Darwin ]; then rc=${HOME:-}/.bash_profile; fi
        say "$dir is not on your PATH. Add this line to $rc and open a new terminal:"
        say "    export PATH=\"$shown:\$PATH\""
        ;;
    *)
        say "$dir is not on your PATH. Add this line to ~/.profile (or your shell's startup file):"
        say "    export PATH=\"$shown:\$PATH\""
        ;;
    esac
}

# configure_client EXE CLIENT RELAY
configure_client() {
    say ""
    say "Adding mcp-chat to $2: $1 install --client $2${3:+ --relay $3}"
    status=0
    if [ -n "$3" ]; then
        "$1" install --client "$2" --relay "$3" || status=$?
    else
        "$1" install --client "$2" || status=$?
    fi
    if [ "$status" != 0 ]; then
        die 4 "$BIN is installed, but configuring $2 failed (exit status $status). Fix what it says, then run:
    $1 install --client $2${3:+ --relay $3}"
    fi
}

main() {
    install_dir=${MCP_CHAT_INSTALL_DIR:-}
    version=${MCP_CHAT_VERSION:-}
    client=
    relay=
    assume_yes=0
    while [ "$#" -gt 0 ]; do
        case $1 in
        --to | --version | --client | --relay)
            if [ "$#" -lt 2 ] || [ -z "$2" ]; then die 2 "$1 needs a value (see --help)"; fi
            case $1 in
            --to) install_dir=$2 ;;
            --version) version=$2 ;;
            --client) client=$2 ;;
            --relay) relay=$2 ;;
            esac
            shift 2
            ;;
        --to=?*) install_dir=${1#*=} && shift ;;
        --version=?*) version=${1#*=} && shift ;;
        --client=?*) client=${1#*=} && shift ;;
        --relay=?*) relay=${1#*=} && shift ;;
        -y | --yes) assume_yes=1 && shift ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die 2 "unknown option '$1' (see --help)" ;;
        esac
    done
    if [ -n "$client" ] && ! is_client "$client"; then
        die 2 "unknown client '$client'; one of: $CLIENTS"
    fi
    if [ -z "$install_dir" ]; then
        [ -n "${HOME:-}" ] || die 2 "HOME is not set; choose a directory with --to DIR"
        install_dir=$HOME/.local/bin
    fi

    detect_target

    archive=$BIN-$target.tar.gz
    if [ -n "${MCP_CHAT_DOWNLOAD_URL:-}" ]; then
        base=${MCP_CHAT_DOWNLOAD_URL%/}
    elif [ -z "$version" ] || [ "$version" = latest ]; then
        base=$MCP_CHAT_REPO_RELEASES/latest/download
    else
        # Tags are v-prefixed; accept "0.1.0" too.
        case $version in
        [0-9]*) version=v$version ;;
        esac
        base=$MCP_CHAT_REPO_RELEASES/download/$version
    fi
    case $base in
    https://*) ;;
    http://127.0.0.1[:/]* | http://localhost[:/]* | http://\[::1\][:/]*) ;;
    *) say "warning: $base is not https; the download and its checksum are not protected in transit" ;;
    esac

    # Everything is fetched and checked here first; the install directory is touched only
    # after that.
    tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/mcp-chat-install.XXXXXX") ||
        die 1 "cannot create a temporary directory (is TMPDIR writable?)"
    say "Downloading $archive from $base"
    download "$base/$archive" "$tmp_dir/$archive" ||
        die 1 "could not download $base/$archive
(no network, or no such release or file: check --version and that a release for $target exists)"
    download "$base/$archive.sha256" "$tmp_dir/$archive.sha256" ||
        die 1 "could not download the checksum $base/$archive.sha256"

    expected=$(awk 'NR == 1 { print $1 }' "$tmp_dir/$archive.sha256" | tr 'A-F' 'a-f')
    is_sha256 "$expected" || die 1 "the checksum file $archive.sha256 is malformed; nothing was installed"
    actual=$(sha256_of "$tmp_dir/$archive") || actual=
    is_sha256 "$actual" || die 1 "cannot compute a SHA-256 checksum: need sha256sum, shasum or openssl"
    if [ "$actual" != "$expected" ]; then
        die 1 "checksum mismatch for $archive: expected $expected, got $actual.
The download is corrupt or was tampered with; nothing was installed."
    fi
    say "Checksum verified (SHA-256 $actual)"

    mkdir "$tmp_dir/x"
    tar -xzf "$tmp_dir/$archive" -C "$tmp_dir/x" ||
        die 1 "could not unpack $archive; nothing was installed"
    src=$tmp_dir/x/$BIN-$target/$BIN
    if [ ! -f "$src" ] || [ -L "$src" ]; then
        die 1 "$archive does not contain $BIN-$target/$BIN; nothing was installed"
    fi

    if [ ! -d "$install_dir" ]; then
        mkdir -p "$install_dir" || die 1 "cannot create $install_dir"
        created_dir=$install_dir
    fi
    # An absolute path, for PATH advice and for client entries.
    install_dir=$(cd "$install_dir" && pwd) || die 1 "cannot enter $install_dir"
    [ -z "$created_dir" ] || created_dir=$install_dir
    dest=$install_dir/$BIN
    if [ -d "$dest" ]; then die 1 "$dest is a directory"; fi

    # Copy next to the final name, check it runs, then rename over it: an existing install
    # (possibly running) is replaced in one step or not at all.
    staged=$install_dir/.$BIN.tmp.$$
    cp "$src" "$staged" || die 1 "cannot write to $install_dir (permissions? choose another with --to)"
    chmod 755 "$staged" || die 1 "cannot make $staged executable"
    new_version=$("$staged" --version 2>&1) ||
        die 1 "the downloaded $BIN does not start here (a noexec $install_dir or a build for another CPU can cause this):
$new_version
nothing was installed"
    if [ -e "$dest" ]; then
        old_version=$("$dest" --version 2>/dev/null) || old_version="an unknown version"
        say "Replacing $old_version in $dest"
    fi
    mv -f "$staged" "$dest" || die 1 "cannot move $BIN into place in $install_dir"
    staged=
    installed=1
    say "Installed $new_version to $dest"

    case ":${PATH:-}:" in
    *":$install_dir:"* | *":$install_dir/:"*)
        found=$(command -v "$BIN" 2>/dev/null || true)
        if [ -n "$found" ] && [ "$found" != "$dest" ]; then
            say "note: $found comes first on your PATH; remove it or put $install_dir before it."
        fi
        ;;
    *) path_advice "$install_dir" ;;
    esac

    # The client step: as asked, or ask, or say how.
    if [ -n "$client" ]; then
        configure_client "$dest" "$client" "$relay"
    elif [ "$assume_yes" != 1 ] && ask_client; then
        if [ -n "$client" ]; then
            configure_client "$dest" "$client" "$relay"
        else
            say "Skipped. Later: $dest install --client NAME${relay:+ --relay $relay}"
        fi
    else
        say ""
        say "Next, add it to your AI client's MCP settings:"
        say "    $dest install --client NAME${relay:+ --relay $relay}"
        say "NAME is one of: $CLIENTS"
    fi
    say "Check the setup any time with: $dest doctor"
}

# Asks which client to configure; sets $client ("" to skip). Fails without a terminal.
ask_client() {
    say ""
    say "Which AI client should get mcp-chat?"
    n=1
    for c in $CLIENTS; do
        say "  $n) $c"
        n=$((n + 1))
    done
    say "  Enter) skip"
    tries=0
    while [ "$tries" -lt 3 ]; do
        ask "Client: " || return 1
        case $answer in
        '' | skip | s | 0) client= && return 0 ;;
        *[!0-9]*) ;;
        *)
            n=1
            for c in $CLIENTS; do
                if [ "$n" = "$answer" ]; then answer=$c; fi
                n=$((n + 1))
            done
            ;;
        esac
        if is_client "$answer"; then
            client=$answer
            return 0
        fi
        say "Not a client: '$answer'. Type a number, a name, or Enter to skip."
        tries=$((tries + 1))
    done
    client=
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Everything runs from here, so a download cut short (curl | sh) runs nothing.
main "$@"
