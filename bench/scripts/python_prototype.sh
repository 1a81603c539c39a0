#!/usr/bin/env bash
# Runs the Python prototype this project replaces (hbd/mcp-chat on FastMCP), for the comparison
# in BENCHMARKS.md. Nothing of its code is kept in this repository: it is fetched at a pinned
# commit into a temporary directory, with the dependency versions pinned in its own uv.lock.
#
#   bench/scripts/python_prototype.sh [PORT]        # default port 8765
#
# Environment:
#   PROTOTYPE_REPO   where to clone from (default https://github.com/hbd/mcp-chat; a local
#                    clone or mirror works too)
#   PROTOTYPE_DIR    work directory to reuse (default: a new temporary directory, removed on exit)
#   PYTHON           the interpreter for the venv (default python3; the prototype wants >= 3.11)
#
# Prints `prototype MCP URL: http://127.0.0.1:PORT/mcp/` and `prototype pid: PID` (the Python
# process serving it, for `mcp-chat-bench --server-pid`), then serves until interrupted. Load it
# with e.g.
#   mcp-chat-bench --relay-url http://127.0.0.1:PORT/mcp/ --server-pid PID \
#       --target prototype connections --participants 2000
set -euo pipefail

PORT="${1:-8765}"
REPO="${PROTOTYPE_REPO:-https://github.com/hbd/mcp-chat}"
COMMIT=62012fa
PYTHON="${PYTHON:-python3}"

if [[ -n "${PROTOTYPE_DIR:-}" ]]; then
    WORK="$PROTOTYPE_DIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d -t mcp-chat-prototype.XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
fi

if [[ ! -d "$WORK/src/.git" ]]; then
    git clone --quiet "$REPO" "$WORK/src"
fi
git -C "$WORK/src" checkout --quiet "$COMMIT"

# uv from PyPI (pinned), then the prototype's own lock file, exactly (--frozen: no re-resolve).
if [[ ! -x "$WORK/tools/bin/uv" ]]; then
    "$PYTHON" -m venv "$WORK/tools"
    "$WORK/tools/bin/pip" install --quiet --disable-pip-version-check uv==0.9.5
fi
(
    cd "$WORK/src"
    UV_PROJECT_ENVIRONMENT="$WORK/venv" "$WORK/tools/bin/uv" sync --frozen --no-dev \
        --python "$PYTHON" --quiet
)
"$WORK/venv/bin/python" -c 'import fastmcp, mcp; print("fastmcp", fastmcp.__version__)' >&2

echo "prototype MCP URL: http://127.0.0.1:$PORT/mcp/"
cd "$WORK/src"
# The prototype's own `main` runs uvicorn on 0.0.0.0:8000 with reload; this serves the same
# FastMCP app (its Streamable HTTP transport, on uvicorn) on loopback and the given port.
"$WORK/venv/bin/python" -c '
import os, sys
print("prototype pid:", os.getpid(), flush=True)
from mcp_chat.server import mcp
mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
' "$PORT" &
CHILD=$!
trap 'kill "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; [[ -n "${PROTOTYPE_DIR:-}" ]] || rm -rf "$WORK"' EXIT INT TERM
wait "$CHILD"
