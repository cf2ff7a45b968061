#!/usr/bin/env bash
# Capacity bench (not run in CI):
#  1. reference server RSS per idle connection at 1,000 and 10,000 connections (wsbench capacity: the
#     server in the bench process, the idle clients in a child process);
#  2. harness RSS per concurrent session: `wschat-check load` against an external server with N
#     virtual users each holding a session open (one paced streamed turn), max RSS of the harness
#     process from /usr/bin/time, minus a 1-user baseline. The figure holds only if the sessions
#     really overlap: it also prints the most sockets the harness had open at once (sampled) and the
#     connect/session latencies; on a loaded machine, when connects lag the 3 s ramp, lengthen the
#     turn (HOLD='#long=40 #pace=250': 10 s) so every session is open at the peak.
#   CONNS=1000,10000 USERS=10000 benches/capacity.sh
#   PARTS=harness USERS=10000 benches/capacity.sh     # the harness part only (PARTS=server: the server part)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-1000,10000}
USERS=${USERS:-10000}
PARTS=${PARTS:-server,harness}
HOLD=${HOLD:-#long=40 #pace=100}
# Each side holds one socket per connection; the fd limit here is 20,000.
ulimit -n 20000
cargo build --release -q
cargo bench --bench wsbench --no-run -q
echo "nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $PARTS == *server* ]]; then
  nice -n 5 cargo bench --bench wsbench -q -- capacity --conns "$CONNS"
fi
[[ $PARTS == *harness* ]] || exit 0

BIN=target/release/wschat-check
TMP=$(mktemp -d)
SECRET="bench-$RANDOM-$RANDOM-$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --bind "127.0.0.1:$PORT" --jwt-secret "$SECRET" --token-pace 0ms --rate-limit 1000000 \
  --max-connections-per-user 1000000 >"$TMP/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# A suite of one scenario holding its connection for a 40 x 100 ms paced turn (4 s).
mkdir -p "$TMP/suite"
cat >"$TMP/suite/wschat-suite.yaml" <<YAML
schemas: $PWD/schemas
rules: $PWD/scenarios/rules.yaml
discriminator: type
timeouts: { connect: 30s, expect: 60s, http: 30s }
auth: { jwt_secret: "$SECRET" }
vars: { chat: /api/v1/chat/ws, sessions: /api/v1/sessions }
YAML
cat >"$TMP/suite/hold.yaml" <<'YAML'
name: hold
steps:
  - http: { method: POST, path: "${sessions}", headers: { Authorization: "Bearer ${jwt:hold}" }, status: 201, capture: { session_id: /session_id } }
  - connect: { path: "${chat}/${session_id}", headers: { Authorization: "Bearer ${jwt:hold}" } }
  - expect: { match: { type: connected } }
  - send: { json: { type: message, content: "HOLD" } }
  - expect: { match: { type: final_answer } }
YAML
sed -i "s|HOLD|$HOLD|" "$TMP/suite/hold.yaml"
# Samples the load process's open descriptors (its sockets) every 50 ms, to show how many sessions
# were open at once; prints the largest count.
sample_fds() {
  local pid="" max=0 n
  for _ in $(seq 1 200); do pid=$(pgrep -n -f "$BIN load $TMP/suite" || true); [ -n "$pid" ] && break; sleep 0.05; done
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
    n=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    [ "$n" -gt "$max" ] && max=$n
    sleep 0.05
  done
  echo "$max" >"$TMP/fds"
}
measure() {
  sample_fds &
  local sampler=$!
  /usr/bin/time -f "%M" -o "$TMP/rss" "$BIN" load "$TMP/suite" --target "ws://127.0.0.1:$PORT" \
    --users "$1" --iterations "$1" --ramp "${2:-0s}" --report-json "$TMP/load-$1.json" >"$TMP/load-$1.out" 2>&1 || true
  wait "$sampler" || true
  # /usr/bin/time writes "Command exited with non-zero status N" first when a session failed.
  python3 - "$TMP/load-$1.json" "$1" "$(tail -1 "$TMP/rss")" "$(cat "$TMP/fds")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); users = int(sys.argv[2]); rss = int(sys.argv[3])
lat = lambda k: "/".join(f"{r['latency_ms'][k][q] or 0:.0f}" for q in ("p50", "p99"))
print(f"harness with {users} concurrent session(s): max RSS {rss} KiB; {r['sessions']['passed']} passed, "
      f"{r['sessions']['failed']} failed {[(e['class'], e['count']) for e in r['errors']['by_class']]}; "
      f"at most {sys.argv[4]} descriptors open; connect p50/p99 {lat('connect')} ms, session {lat('session')} ms")
for e in r['errors']['by_class']:
    print(f"  {e['class']}: {e['example'][:200]}")
PY
  tail -1 "$TMP/rss"
}
BASE=$(measure 1 | tail -1)
OUT=$(measure "$USERS" 3s)
echo "$OUT" | sed '$d'
PEAK=$(echo "$OUT" | tail -1)
python3 -c "print(f'harness RSS per concurrent session: ({$PEAK} - {$BASE}) KiB / $USERS = {($PEAK - $BASE) / $USERS:.1f} KiB')"
