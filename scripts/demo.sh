#!/usr/bin/env bash
# demo.sh — `make demo`: run the pipeline on its embedded defaults with a
# simulated fleet of 1,000 wearables (with injected anomalies) connected
# over mutual TLS, each with its own certificate, show live progress and
# alerts as they arrive, then the simulator's report.
#   DEMO_DEVICES (1000), DEMO_DURATION seconds (90), DEMO_PORT (1883),
#   DEMO_TLS_PORT (8883), DEMO_DATA (./data/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${DEMO_DEVICES:-1000}
duration=${DEMO_DURATION:-90}
port=${DEMO_PORT:-1883}
tls_port=${DEMO_TLS_PORT:-8883}
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
if busy "$tls_port"; then
    if [ -n "${DEMO_TLS_PORT:-}" ]; then
        echo "demo: port $tls_port is busy; set DEMO_TLS_PORT to a free port" >&2
        exit 1
    fi
    for p in $(seq 8884 8999); do
        if ! busy "$p"; then tls_port=$p; break; fi
    done
fi

# Every simulated wearable is a provisioned device: a CA, a server
# certificate, and a key and certificate per device (sim-000000 ...), made
# once and kept in $data (a run with more devices starts the demo data anew).
last=$(printf 'sim-%06d' $((devices - 1)))
if [ -f "$data/pki/ca.crt" ] && ! "$vigil" device show "$last" --data-dir "$data" >/dev/null 2>&1; then
    echo "demo: $data was provisioned for fewer devices; starting it anew"
    rm -rf "$data"
fi
mkdir -p "$data"
if [ ! -f "$data/pki/ca.crt" ]; then
    echo "demo: provisioning $devices devices (vigil ca init; vigil device create --count $devices --prefix sim-)"
    "$vigil" ca init --data-dir "$data" >/dev/null
    "$vigil" device create --count "$devices" --prefix sim- --out "$data/devices" --data-dir "$data" | sed 's/^/  /'
fi
log="$data/server.log"
"$vigil" serve --listen 127.0.0.1:"$port" --tls-listen 127.0.0.1:"$tls_port" --wss-listen off --https-listen off \
    --data-dir "$data" 2>"$log" &
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
vigil is running: MQTT over mutual TLS on 127.0.0.1:$tls_port (every device has its own certificate,
in $data/devices), plain MQTT on 127.0.0.1:$port (loopback only: anonymous access is allowed there),
data in $data (server log: $log, audit log: $data/audit.log)

Watch it from another terminal:
  mosquitto_sub -h 127.0.0.1 -p $port -t 'alerts/#' -v          # alerts as they are raised
  mosquitto_sub -h 127.0.0.1 -p $port -t '\$SYS/vigil/stats' -C 1  # the server's counters
  $vigil stream tail telemetry --data-dir $data --follow       # the durable stream
  $vigil stream ls --data-dir $data                             # streams, shards, sequence ranges
  $vigil device list --data-dir $data | head                    # the registry
  $vigil policy test --device sim-000001 --action subscribe --topic 'alerts/sim-000002' --data-dir $data
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
"$vigil" sim --connect 127.0.0.1:"$tls_port" --tls --ca "$data/pki/ca.crt" --cert-dir "$data/devices" \
    --alerts-connect 127.0.0.1:"$port" \
    --prefix sim- --devices "$devices" --interval 2 --duration "$duration" --qos 1 --anomaly-rate 0.2 --seed 42
echo
echo "demo finished; the streams stay in $data (try: $vigil stream ls --data-dir $data)"
