#!/bin/sh
# Runs the real host CLIs that install from npm without an account against this checkout's
# bridge and a relay on loopback (issue 16), and checks that each one shows mcp-chat connected,
# offers its model every chat tool, and prints no warning about it.
#
#   tests/hosts/check.sh [--keep]
#
# Hosts (pinned below): Claude Code, Gemini CLI, Codex CLI, installed with npm into a fresh
# directory. Everything runs with a throwaway HOME and an environment of its own (no key, no
# setting of the caller's reaches a host), in a directory under $HOSTS_CHECK_DIR (default
# ~/.cache/mcp-chat/hosts-check), removed at the end: not under /tmp, because Codex refuses its
# helper links under the system temp directory and Gemini CLI reads a settings file only from a
# directory whose parents others cannot write.
#
# Per host: `mcp-chat-bridge install --client <host> --relay <the relay>` writes the entry;
# `<host> mcp list` must show it connected (Codex's shows it enabled: Codex has no connection
# test of its own); then one non-interactive prompt against tests/hosts/model-stub.mjs, a
# stand-in for the model API on loopback, whose recorded request must offer the model every
# tool the bridge lists. The stub answers 400, so no model runs and no tool is called. No
# network but loopback and the npm registry: after `npm install` everything runs in a network
# namespace with only loopback (unshare -n; without one the script says so). The bridge and
# relay are
# $CARGO_TARGET_DIR/debug/{mcp-chat-bridge,mcp-chat-relay} (built when missing), or
# $MCP_CHAT_BRIDGE and $MCP_CHAT_RELAY_BIN. Node is the pinned one of ui-tests
# (npm ci --prefix ui-tests); Claude Code needs Node 22.
#
# Prints what each host printed and a verdict; exit status 0 all passed, 1 a check failed,
# 2 usage or setup error. --keep leaves the work directory (logs, homes) in place.
set -eu

CLAUDE_CODE=@anthropic-ai/claude-code@2.1.332
GEMINI_CLI=@google/gemini-cli@0.61.0
CODEX_CLI=@openai/codex@0.171.0

keep=0
inner=
case ${1:-} in
--keep) keep=1 ;;
# Internal: the second half, run inside the network namespace, on the prepared directory.
--in-netns) inner=${2:?} ;;
'') ;;
*) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
node=$root/ui-tests/node_modules/.bin/node
if ! "$node" --version >/dev/null 2>&1; then
    echo "hosts check: the pinned Node is missing (npm ci --prefix ui-tests)" >&2
    exit 2
fi
node_dir=$(dirname "$(readlink -f "$node")")
bridge=${MCP_CHAT_BRIDGE:-$target_dir/debug/mcp-chat-bridge}
relay_bin=${MCP_CHAT_RELAY_BIN:-$target_dir/debug/mcp-chat-relay}
if [ ! -x "$bridge" ] || [ ! -x "$relay_bin" ]; then
    (cd "$root" && cargo build -q -p mcp-chat-bridge -p mcp-chat-relay) || exit 2
fi

if [ -z "$inner" ]; then
    base=${HOSTS_CHECK_DIR:-${XDG_CACHE_HOME:-${HOME:?no HOME: set HOSTS_CHECK_DIR}/.cache}/mcp-chat/hosts-check}
    mkdir -p "$base"
    work=$(mktemp -d "$base/hosts-check.XXXXXX")
    chmod 700 "$work"
    mkdir "$work/home" "$work/project" "$work/stub" "$work/npm" "$work/tmp"
    cleanup() {
        if [ "$keep" = 1 ]; then
            echo "hosts check: kept $work"
        else
            rm -rf "$work"
        fi
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    HOSTS_CHECK_STARTED=$(date +%s)
    export HOSTS_CHECK_STARTED
    echo "== installing $CLAUDE_CODE $GEMINI_CLI $CODEX_CLI"
    # npm's cache stays the caller's, so a second run downloads nothing. Install scripts stay
    # off (npm's default for packages not approved): the three run without theirs.
    PATH="$node_dir:$PATH" npm install --prefix "$work/npm" --no-save --no-package-lock \
        --no-audit --no-fund --loglevel=error "$CLAUDE_CODE" "$GEMINI_CLI" "$CODEX_CLI" \
        >"$work/npm.log" 2>&1 || { cat "$work/npm.log"; exit 2; }

    # The rest runs in a network namespace of its own with only loopback up, where one can be
    # made (root, or unprivileged user namespaces): then nothing can reach the network, not
    # even a host's telemetry. Otherwise it says so and runs on the machine's network.
    status=0
    if unshare -n sh -c 'ip link set lo up' >/dev/null 2>&1; then
        echo "(hosts, bridge and relay run in a network namespace with loopback only)"
        unshare -n sh -c 'ip link set lo up && exec sh "$1" --in-netns "$2"' sh "$0" "$work" \
            || status=$?
    else
        echo "NOTE: cannot make a network namespace here (unshare -n, ip): the hosts run with"
        echo "this machine's network; their nonessential traffic is switched off where they allow"
        sh "$0" --in-netns "$work" || status=$?
    fi
    exit "$status"
fi

work=$inner
started=${HOSTS_CHECK_STARTED:-$(date +%s)}
relay_pid=
stub_pid=
stop_servers() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    [ -n "$stub_pid" ] && kill "$stub_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bin=$work/npm/node_modules/.bin

# The hosts' environment: nothing of the caller's but what is named here. TMPDIR too, so
# that what a host leaves in its temp directory (Gemini CLI's error reports) goes with the rest.
host() {
    env -i PATH="$bin:$node_dir:/usr/local/bin:/usr/bin:/bin" HOME="$work/home" \
        TMPDIR="$work/tmp" TERM=dumb LANG=C.UTF-8 NO_COLOR=1 \
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 "$@"
}

"$relay_bin" --bind 127.0.0.1:0 >"$work/relay.log" 2>&1 &
relay_pid=$!
"$node" "$root/tests/hosts/model-stub.mjs" "$work/stub" >"$work/stub.log" 2>&1 &
stub_pid=$!
relay=
i=0
while [ $i -lt 100 ]; do
    relay=$(sed -n 's/.*listening on \(http:[^ ]*\/mcp\).*/\1/p' "$work/relay.log" | head -n 1)
    if [ -n "$relay" ] && [ -s "$work/stub/port" ]; then break; fi
    i=$((i + 1))
    sleep 0.1
done
[ -n "$relay" ] || { echo "hosts check: the relay did not start"; cat "$work/relay.log"; exit 2; }
[ -s "$work/stub/port" ] || { echo "hosts check: the model stub did not start"; exit 2; }
stub=http://127.0.0.1:$(cat "$work/stub/port")
echo "relay $relay, model stub $stub, bridge $bridge"

tools=$("$node" "$root/tests/hosts/expect.mjs" tools "$bridge" "$relay")
[ -n "$tools" ] || { echo "hosts check: the bridge listed no tools"; exit 2; }
echo "the bridge lists: $(echo $tools)"

failures=0
check() {
    # check <what> <command>...: runs it, counts a failure.
    what=$1
    shift
    if "$@"; then
        case $1 in grep) echo "ok: $what" ;; esac
    else
        echo "FAIL: $what"
        failures=$((failures + 1))
    fi
}
# show <host> <file>: prints what a host printed, indented.
show() {
    echo "-- $1 printed:"
    sed 's/^/   | /' "$2"
}
# no_warnings <host> <file>...: no schema warning at all (AJV's `unknown format "uint32"
# ignored in schema ...`, which names no server), and no line that warns or errs about MCP or
# mcp-chat, other than the stub's refusal, which every prompt ends with. (The work directory's
# own name is taken out first: it may contain "mcp-chat".)
no_warnings() {
    name=$1
    shift
    lines=$(cat "$@" | sed "s|$work|<work>|g" | grep -v 'this is not a model' || true)
    found=$(
        printf '%s\n' "$lines" | grep -i 'unknown format\|ignored in schema\|strict mode' || true
        printf '%s\n' "$lines" | grep -i 'warn\|error' | grep -i 'mcp' || true
    )
    if [ -n "$found" ]; then
        echo "FAIL: $name warned:"
        printf '%s\n' "$found" | sort -u | sed 's/^/   | /'
        failures=$((failures + 1))
    else
        echo "ok: $name printed no warning about MCP or a schema"
    fi
}
clear_stub() {
    rm -f "$work/stub"/request-*
}

cd "$work/project"

echo
echo "== Claude Code ($(host claude --version 2>&1))"
host "$bridge" install --client claude-code --relay "$relay" >"$work/claude-install.out" 2>&1
show "mcp-chat-bridge install --client claude-code" "$work/claude-install.out"
host claude mcp list >"$work/claude-list.out" 2>&1 || true
show "claude mcp list" "$work/claude-list.out"
check "claude mcp list shows mcp-chat connected" \
    grep -q '^mcp-chat: .* - .* Connected$' "$work/claude-list.out"
clear_stub
host ANTHROPIC_API_KEY=sk-ant-hosts-check ANTHROPIC_BASE_URL="$stub" \
    claude -p "hello" --output-format stream-json --verbose \
    >"$work/claude-p.out" 2>"$work/claude-p.err" || true
echo "-- claude -p (stream-json) printed $(wc -l <"$work/claude-p.out") events; the last:"
tail -n 1 "$work/claude-p.out" | cut -c1-300 | sed 's/^/   | /'
check "Claude Code's init event" "$node" "$root/tests/hosts/expect.mjs" claude-init \
    "$work/claude-p.out" $tools
check "Claude Code's model request" "$node" "$root/tests/hosts/expect.mjs" requests \
    "$work/stub" anthropic $tools
no_warnings "Claude Code" "$work/claude-list.out" "$work/claude-p.err"

echo
echo "== Gemini CLI $(host gemini --version 2>&1)"
host "$bridge" install --client gemini --relay "$relay" >"$work/gemini-install.out" 2>&1
show "mcp-chat-bridge install --client gemini" "$work/gemini-install.out"
# Gemini CLI starts no MCP server in a folder it does not trust: trust the project folder.
printf '{ "%s": "TRUST_FOLDER" }\n' "$work/project" >"$work/home/.gemini/trustedFolders.json"
# Its API-key login, as a system settings file, so the user file stays as the installer wrote it.
printf '{ "security": { "auth": { "selectedType": "gemini-api-key" } }, "privacy": { "usageStatisticsEnabled": false } }\n' \
    >"$work/gemini-system.json"
host GEMINI_CLI_SYSTEM_SETTINGS_PATH="$work/gemini-system.json" gemini mcp list \
    >"$work/gemini-list.out" 2>&1 || true
show "gemini mcp list" "$work/gemini-list.out"
check "gemini mcp list shows mcp-chat connected" \
    grep -q 'mcp-chat: .* - Connected$' "$work/gemini-list.out"
if grep -q 'Skipping system settings file' "$work/gemini-list.out"; then
    echo "hosts check: Gemini CLI refused $work/gemini-system.json; set HOSTS_CHECK_DIR to a"
    echo "directory whose parents only their owner can write"
    exit 2
fi
clear_stub
# yolo: without it a non-interactive Gemini CLI leaves out every tool that would ask for a
# confirmation, MCP tools included. The stub never asks for a tool call.
host GEMINI_CLI_SYSTEM_SETTINGS_PATH="$work/gemini-system.json" GEMINI_API_KEY=hosts-check \
    GOOGLE_GEMINI_BASE_URL="$stub" gemini -p "hello" --approval-mode yolo \
    --output-format stream-json >"$work/gemini-p.out" 2>"$work/gemini-p.err" || true
echo "-- gemini -p (stream-json) printed:"
cut -c1-300 "$work/gemini-p.out" | sed 's/^/   | /'
check "Gemini CLI's model request" "$node" "$root/tests/hosts/expect.mjs" requests \
    "$work/stub" gemini $tools
no_warnings "Gemini CLI" "$work/gemini-list.out" "$work/gemini-p.err"

echo
echo "== Codex CLI ($(host codex --version 2>&1 | tail -n 1))"
host "$bridge" install --client codex --relay "$relay" >"$work/codex-install.out" 2>&1
show "mcp-chat-bridge install --client codex" "$work/codex-install.out"
host codex mcp list >"$work/codex-list.out" 2>&1 || true
show "codex mcp list" "$work/codex-list.out"
check "codex mcp list shows mcp-chat enabled" \
    grep -q '^mcp-chat .* enabled' "$work/codex-list.out"
clear_stub
# The model provider points at the stub for this one run (-c), not in config.toml.
host codex exec --skip-git-repo-check -c 'model_provider="hosts-check"' \
    -c "model_providers.hosts-check={name=\"hosts-check\",base_url=\"$stub/v1\",wire_api=\"responses\"}" \
    -c 'model="hosts-check"' "hello" </dev/null >"$work/codex-exec.out" 2>"$work/codex-exec.err" || true
echo "-- codex exec printed (stderr):"
sed "s|$work|<work>|g" "$work/codex-exec.err" | cut -c1-300 | sed 's/^/   | /'
check "Codex CLI's model request" "$node" "$root/tests/hosts/expect.mjs" requests \
    "$work/stub" openai $tools
no_warnings "Codex CLI" "$work/codex-list.out" "$work/codex-exec.err"

echo
echo "-- other warnings the hosts printed (not about MCP):"
cat "$work/claude-p.err" "$work/gemini-p.err" "$work/codex-exec.err" "$work/gemini-list.out" \
    | grep -i '^warning\|warn:' | grep -vi mcp | sort -u | sed 's/^/   | /' || true

took=$(($(date +%s) - started))
echo
if [ "$failures" = 0 ]; then
    echo "PASSED: Claude Code, Gemini CLI and Codex CLI show mcp-chat and its tools (${took} s)"
else
    echo "FAILED: $failures check(s) (${took} s); run with --keep to look at the work directory"
    exit 1
fi
