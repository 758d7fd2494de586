#!/usr/bin/env bash
# demo.sh — `make demo`: run the pipeline on its embedded defaults with a
# simulated fleet of 1,000 wearables (with injected anomalies), show live
# progress and alerts as they arrive, then the simulator's report.
#   DEMO_DEVICES (1000), DEMO_DURATION seconds (90), DEMO_PORT (1883), DEMO_DATA (./data/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${DEMO_DEVICES:-1000}
duration=${DEMO_DURATION:-90}
port=${DEMO_PORT:-1883}
data=${DEMO_DATA:-./data/demo}
vigil=./build/vigil

# Installing Debian's mosquitto may start its own broker on 1883: take the
# next free port rather than fail (DEMO_PORT pins one).
busy() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
if busy "$port"; then
    if [ -n "${DEMO_PORT:-}" ]; then
        echo "demo: port $port is busy; set DEMO_PORT to a free port" >&2
        exit 1
    fi
    for p in $(seq 1884 1999); do
        if ! busy "$p"; then
            echo "demo: port $port is in use (another MQTT broker?); using $p"
            port=$p
            break
        fi
    done
fi
mkdir -p "$data"
log="$data/server.log"
"$vigil" serve --listen 127.0.0.1:"$port" --data-dir "$data" 2>"$log" &
server=$!
alerts_pid=
cleanup() {
    [ -n "$alerts_pid" ] && kill "$alerts_pid" 2>/dev/null || true
    kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 1 50); do
    busy "$port" && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
if ! busy "$port"; then
    echo "demo: the server did not start; its log ($log) says:" >&2
    sed 's/^/  /' "$log" >&2
    exit 1
fi

cat <<MSG
vigil is running: MQTT on 127.0.0.1:$port, data in $data (server log: $log)

Watch it from another terminal:
  mosquitto_sub -h 127.0.0.1 -p $port -t 'alerts/#' -v          # alerts as they are raised
  mosquitto_sub -h 127.0.0.1 -p $port -t '\$SYS/vigil/stats' -C 1  # the server's counters
  $vigil stream tail telemetry --data-dir $data --follow       # the durable stream
  $vigil stream ls --data-dir $data                             # streams, shards, sequence ranges
(The web dashboard arrives in a later release; until then the stats topic above is the live view.)

Simulating $devices wearables for ${duration}s with injected heart-rate anomalies...
MSG

# Alerts as they arrive, one line each.
# (process substitution, so that $! is mosquitto_sub itself and the cleanup
# stops it; sed ends when its input closes)
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'alerts/#' -q 1 2>/dev/null \
    > >(sed -u -E 's/.*"event":"([^"]*)".*"deviceId":"([^"]*)".*"type":"([^"]*)".*"severity":"([^"]*)".*"value":([-0-9.e]+).*/  ALERT \1 \3 \2 \4 value=\5/') &
alerts_pid=$!

# One event every 2 s per device: an extreme-value episode must last 30 s of
# event time to be an alert, and at 2 s there is room for many in a minute.
"$vigil" sim --connect 127.0.0.1:"$port" --devices "$devices" --interval 2 --duration "$duration" \
    --qos 1 --anomaly-rate 0.2 --seed 42
echo
echo "demo finished; the streams stay in $data (try: $vigil stream ls --data-dir $data)"
