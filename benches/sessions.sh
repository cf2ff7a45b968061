#!/usr/bin/env bash
# Sessions bench: connect + 10 JSON ping/pong round trips + close, many workers, against one external
# reference server (`wschat-check serve`, release): the raw tokio-tungstenite client and the harness
# (wsbench), then Artillery 2's WebSocket engine running the same flow against the same server.
#
#   benches/sessions.sh                      # defaults: 64 workers, 5000 sessions, Artillery 10 s at 500/s
#   WORKERS=128 SESSIONS=20000 RATE=1000 DURATION=10 benches/sessions.sh
#   ARTILLERY=/path/to/artillery benches/sessions.sh   # default: `artillery` on PATH
#
# Not run in CI. Everything listens on 127.0.0.1; the server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-64}
SESSIONS=${SESSIONS:-5000}
RATE=${RATE:-500}
DURATION=${DURATION:-10}
ARTILLERY=${ARTILLERY:-artillery}
MESSAGES=10

cargo build --release -q
cargo bench --bench wsbench --no-run -q
BIN=target/release/wschat-check
TMP=$(mktemp -d)
# A throwaway HS256 key for this local run only.
SECRET="bench-$RANDOM-$RANDOM-$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nice -n 5 "$BIN" serve --bind "127.0.0.1:$PORT" --jwt-secret "$SECRET" --token-pace 0ms \
  --rate-limit 1000000 --max-connections-per-user 1000000 >"$TMP/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
TOKEN=$("$BIN" token --user bench --secret "$SECRET")
SID=$(curl -fsS --max-time 10 -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{}' "http://127.0.0.1:$PORT/api/v1/sessions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')
URL="ws://127.0.0.1:$PORT/api/v1/chat/ws/$SID"
echo "server pid $SERVER on $URL; nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)"

nice -n 5 cargo bench --bench wsbench -q -- sessions --ws-url "$URL" --token "$TOKEN" \
  --workers "$WORKERS" --sessions "$SESSIONS" --messages "$MESSAGES"

if ! command -v "$ARTILLERY" >/dev/null 2>&1; then
  echo "artillery: not found ($ARTILLERY); install: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install -g artillery@2"
  exit 0
fi
cat >"$TMP/flow.yml" <<YAML
config:
  target: "$URL"
  ws:
    headers:
      Authorization: "Bearer $TOKEN"
  phases:
    - duration: $DURATION
      arrivalRate: $RATE
scenarios:
  - engine: ws
    flow:
      - wait:
          match:
            json: "$.type"
            value: "connected"
      - loop:
          - send:
              payload: '{"type":"ping","nonce":"{{ \$loopCount }}"}'
              match:
                json: "$.type"
                value: "pong"
        count: $MESSAGES
YAML
echo "artillery $("$ARTILLERY" --version 2>/dev/null | grep -i 'artillery' | head -1) : $DURATION s at $RATE arrivals/s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s.%N)
nice -n 5 "$ARTILLERY" run --quiet --output "$TMP/artillery.json" "$TMP/flow.yml" >"$TMP/artillery.log" 2>&1 || true
END=$(date +%s.%N)
python3 - "$TMP/artillery.json" "$START" "$END" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["aggregate"]
c, s = r.get("counters", {}), r.get("summaries", {})
done = c.get("vusers.completed", 0)
failed = c.get("vusers.failed", 0)
first, last = r.get("firstMetricAt"), r.get("lastMetricAt")
span = (last - first) / 1000 if first and last else float(sys.argv[3]) - float(sys.argv[2])
sl = s.get("vusers.session_length", {})
errs = {k: v for k, v in c.items() if k.startswith("errors.")}
print(f"artillery ws engine: {done} completed, {failed} failed in {span:.2f} s = {done / span:.0f} sessions/s; "
      f"session p50 {sl.get('median', sl.get('p50', 0)):.2f} ms, p99 {sl.get('p99', 0):.2f} ms, max {sl.get('max', 0):.2f} ms; errors {errs}")
PY
