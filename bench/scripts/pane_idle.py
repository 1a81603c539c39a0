#!/usr/bin/env python3
# Usage: pane_idle.py HOST PORT RELAY_PID PANES SECONDS (relay started with the per-address
# limits off: --address-sessions-per-sec 0 --address-max-sessions 0 --address-refusals-per-sec 0
# --address-max-connections 0). Standard library only.
# Idle-pane cost: N panes long-poll pane_sync (wait_secs=20) for DURATION s against a relay;
# prints calls per pane per minute and relay CPU per pane per minute.
import http.client, json, os, sys, threading, time
host, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
N, DURATION = int(sys.argv[4]), float(sys.argv[5])
UI = {"extensions": {"io.modelcontextprotocol/ui": {"mimeTypes": ["text/html;profile=mcp-app"]}}}
calls = [0] * N
bytes_in = [0] * N
def body_json(resp):
    raw = resp.read().decode()
    for line in raw.splitlines():
        if line.startswith("data:") and line[5:].strip():
            return json.loads(line[5:]), len(raw)
    return (json.loads(raw) if raw else None), len(raw)
def pane(i, start_evt, stop_at):
    c = http.client.HTTPConnection(host, port, timeout=60)
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": UI, "clientInfo": {"name": "idle", "version": "0"}}}), h)
    r = c.getresponse(); sid = r.getheader("mcp-session-id"); body_json(r)
    h.update({"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"})
    c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), h); c.getresponse().read()
    start_evt.wait()
    n = 1
    while time.time() < stop_at[0]:
        n += 1
        c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "pane_sync", "arguments": {"after_seq": 0, "since_message_seq": 0, "wait_secs": 20}}}), h)
        msg, size = body_json(c.getresponse())
        assert "result" in msg, msg
        calls[i] += 1; bytes_in[i] += size
def cpu():
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
start = threading.Event(); stop_at = [0]
ts = [threading.Thread(target=pane, args=(i, start, stop_at), daemon=True) for i in range(N)]
for t in ts: t.start()
time.sleep(3)
c0, t0 = cpu(), time.time(); stop_at[0] = t0 + DURATION; start.set()
for t in ts: t.join()
c1, t1 = cpu(), time.time()
mins = (t1 - t0) / 60
print(f"panes={N} minutes={mins:.2f} calls/pane/min={sum(calls)/N/mins:.2f} "
      f"relay_cpu_ms/pane/min={(c1-c0)*1000/N/mins:.3f} bytes/call={sum(bytes_in)/max(1,sum(calls)):.0f}")
