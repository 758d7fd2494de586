#!/usr/bin/env bash
# bench/run.sh — vigil vs mosquitto benchmarks; writes docs/benchmarks.md.
#
# `make bench` builds build/vigil and runs this. Benchmarks (each row: a fresh
# server on a free loopback port with a fresh data dir, loaded by
# `build/vigil sim --json`, stopped with SIGTERM):
#   (a) reference workload: 10,000 devices x 1 event / 5 s, QoS 1, 60 s
#   (b) 20,000 events/s: 19,000 devices x 1 event / 0.95 s, QoS 1, 60 s,
#       plus server memory per connection
#   (c) peak QoS 1 ingest: 100 devices x 1 event / 0.0005 s, 30 s
#       (vigil fsync always, mosquitto, vigil fsync none). Unless
#       BENCH_C_INTERVAL is given, short probes first halve the interval
#       while vigil still acks >= 90 % of the offered rate (max 4 probes).
#       Note: at ~600k events/s a 30 s run writes ~10 GB to the data dir
#       (deleted after each row).
#   The comparison with mosquitto is the mosquitto rows of (a)-(c).
#   perf: `perf record -g` of vigil during a separate (c) run, if perf works
# Gateway benchmarks (vigil and mosquitto side by side, load generator
# build/mqtt_load from bench/mqtt_load.c, topics outside vigil's telemetry
# topic so that vigil routes without its stream; each row a fresh server):
#   (g1) 100 publishers -> 1 subscriber on '#', QoS 0, 1 and 2 (one row per
#        QoS and server): paced at 10,000 msg/s for 10 s, then flat out for
#        15 s (each publisher keeps <= 8 messages not yet delivered)
#   (g2) 1 publisher -> 10,000 subscribers on one topic: QoS 0 and QoS 1,
#        each at 10 msg/s and flat out, 10 s per phase
#   (g3) 1 publisher -> 1 subscriber on alerts/0 at 5,000 msg/s for 15 s
#        with only that subscription, then again after 100 connections
#        subscribed 1,000,000 filters alerts/<id> (1,000 per SUBSCRIBE);
#        server RSS before/after subscribing
# Detector benchmark (no server, no network: build/detect_bench from
# bench/detect_bench.c, one process, one thread):
#   (d)  100,000 devices x 200 events (both scaled by BENCH_SCALE) through
#        the processor's per-record path (device table, every detector, alert
#        lifecycle, deadline wheel): ns per event, sizeof(vg_devstate_t),
#        table bytes per device (allocator accounting), RSS per device
# Cost benchmark (vigil, default --fsync always, and mosquitto side by side):
#   (e)  what the load of (a) costs the server: `vigil sim` 10,000 devices x
#        1 event / 5 s, QoS 1, 60 s; over the steady window (from the first
#        sim progress line with every device connected to the last line
#        before its send phase ends) the server's CPU-seconds per million
#        events (/proc/PID/stat), context switches per event (every thread's
#        /proc/PID/task/*/status, sampled each second; perf stat as a
#        cross-check), a per-thread breakdown, RSS per connection. Then, on a
#        fresh server, 10,000 idle connections (build/idle_fleet from
#        bench/idle_fleet.c, keepalive 60 s, PINGREQs spread evenly): the
#        server's CPU % of one core and context switches/s over 30 s.
# TLS benchmarks (mutual TLS, a certificate per device; vigil and Debian's
# mosquitto 2.0 side by side, each row a fresh server on a fresh PKI made by
# `vigil ca init` + `vigil device create --count`; mosquitto: listener with
# cafile/certfile/keyfile, require_certificate true, use_identity_as_username
# true, set_tcp_nodelay true as in the gateway rows):
#   (t1) handshakes per second: build/tls_hs (bench/tls_hs.c) runs
#        T1_HANDSHAKES connect+TLS+CONNECT/CONNACK+DISCONNECT cycles over
#        T1_PARALLEL parallel connections, each with a new session (full),
#        then as many offering the slot's last session (resumed); server CPU
#        per handshake from /proc
#   (t2) reconnect storm: T2_DEVICES (10,000) devices connect at once (at most
#        T2_PARALLEL handshakes in flight, as the sim's 1,000) and stay
#        connected: time until all are connected, per-connection p50/p99
#   (t3) the seed workload (10,000 devices x 1 event / 5 s, QoS 1, 60 s) on
#        vigil over mutual TLS and over plain TCP, same server configuration,
#        same run: server CPU-seconds per million events over the steady
#        window exactly as (e) measures it, p99 publish->PUBACK and
#        publish->alert; target TLS <= 1.2x plain CPU per event
#
# Environment:
#   BENCH_SCALE=0.1        scale durations and fleet sizes (smoke run); default 1
#   BENCH_ONLY=a,b,c,d,e,g1,g2,g3,t1,t2,t3  which benchmarks to run (default all; perf goes with c;
#                          `cost` is another name for e;
#                          BENCH_PERF=0 skips it). Sections of benchmarks not run are
#                          carried over unchanged from the existing BENCH_OUT, marked so.
#   BENCH_OUT=FILE         output document (default docs/benchmarks.md)
#   BENCH_DIR=DIR          where the work dir (data dirs, logs) is created
#                          (default /var/tmp: on disk even where /tmp is tmpfs)
#   BENCH_KEEP=1           keep the work dir (logs, sim output, perf.data)
#   BENCH_PORT=N           first port tried (default 21883)
#   BENCH_A_DEVICES, BENCH_A_INTERVAL, BENCH_A_DURATION, BENCH_B_*, BENCH_C_*  override one parameter
#   BENCH_G1_PUBLISHERS, _RATE, _PACED, _FLAT, _WINDOW; BENCH_G2_SUBSCRIBERS, _RATE,
#   _SECONDS, _WINDOW; BENCH_G3_HOLDERS, _FILTERS, _PER_PACKET, _RATE, _SECONDS;
#   BENCH_GW_PAYLOAD, BENCH_GW_INFLIGHT, BENCH_GW_QUEUED   gateway parameters (see below)
#   BENCH_D_DEVICES, BENCH_D_EVENTS   detector benchmark: devices, events per device
#   BENCH_T1_HANDSHAKES, _PARALLEL; BENCH_T2_DEVICES, _PARALLEL; BENCH_T3_DEVICES, _INTERVAL,
#   _DURATION   TLS rows
#   BENCH_E_DEVICES, _INTERVAL, _DURATION; BENCH_E_IDLE_CONNECTIONS, _IDLE_KEEPALIVE,
#   _IDLE_SETTLE, _IDLE_WINDOW   cost row; BENCH_E_PERF_STAT=0 skips the perf stat cross-check
#   BENCH_C_PROBE=0        no probing; BENCH_C_PROBE_DURATION=10 probe length
#   BENCH_PERF_SECONDS=10  length of the perf recording
#   BENCH_STOP_TIMEOUT=60  seconds a server gets after SIGTERM before SIGKILL
#   VIGIL=path MOSQUITTO=path MQTT_LOAD=path DETECT_BENCH=path IDLE_FLEET=path TLS_HS=path
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=/usr/bin/python3
REPORT=$ROOT/bench/report.py
VIGIL=${VIGIL:-$ROOT/build/vigil}
MOSQ=${MOSQUITTO:-/usr/sbin/mosquitto}
SCALE=${BENCH_SCALE:-1}
ONLY=${BENCH_ONLY:-a,b,c,d,e,g1,g2,g3,t1,t2,t3}
ONLY=$(printf '%s' "$ONLY" | sed -E 's/(^|,)cost(,|$)/\1e\2/')
LOADGEN=${MQTT_LOAD:-$ROOT/build/mqtt_load}
DETECT_BENCH=${DETECT_BENCH:-$ROOT/build/detect_bench}
IDLE_FLEET=${IDLE_FLEET:-$ROOT/build/idle_fleet}
TLS_HS=${TLS_HS:-$ROOT/build/tls_hs}
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks.md}
PORT_BASE=${BENCH_PORT:-21883}
T_START=$(date +%s)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "fatal: $*"; exit 1; }

[[ -x $PY ]] || die "$PY not found"
# Every row but (d) runs a vigil server.
[[ ,$ONLY, =~ ,(a|b|c|e|g1|g2|g3|t1|t2|t3), && ! -x $VIGIL ]] && die "$VIGIL not found: run 'make all' first"
command -v ss >/dev/null || die "ss (iproute2) not found"
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_SCALE must be a positive number, got '$SCALE'"

# scaled INT MIN: INT * BENCH_SCALE rounded, at least MIN
scaled() { awk -v v="$1" -v s="$SCALE" -v m="$2" 'BEGIN { x = int(v * s + 0.5); if (x < m) x = m; print x }'; }
# rate DEVICES INTERVAL: offered events/s
rate() { awk -v d="$1" -v i="$2" 'BEGIN { printf "%.0f", d / i }'; }

A_DEVICES=${BENCH_A_DEVICES:-$(scaled 10000 50)}
A_INTERVAL=${BENCH_A_INTERVAL:-5}
A_DURATION=${BENCH_A_DURATION:-$(scaled 60 15)}
B_DEVICES=${BENCH_B_DEVICES:-$(scaled 19000 50)}
B_INTERVAL=${BENCH_B_INTERVAL:-0.95}
B_DURATION=${BENCH_B_DURATION:-$(scaled 60 15)}
C_DEVICES=${BENCH_C_DEVICES:-100}
C_INTERVAL=${BENCH_C_INTERVAL:-0.0005}
# Without BENCH_C_INTERVAL, (c) first probes: while vigil (fsync always) acks
# >= 90 % of the offered rate, the interval is halved (at most 4 probes).
C_PROBE=$([[ -n ${BENCH_C_INTERVAL:-} ]] && echo 0 || echo "${BENCH_C_PROBE:-1}")
C_PROBE_DURATION=${BENCH_C_PROBE_DURATION:-$(scaled 10 4)}
C_DURATION=${BENCH_C_DURATION:-$(scaled 30 5)}
ANOMALY=${BENCH_ANOMALY_RATE:-0.05}
SEED=${BENCH_SEED:-1}
PERF_SECONDS=${BENCH_PERF_SECONDS:-10}
STOP_TIMEOUT=${BENCH_STOP_TIMEOUT:-60}
# Gateway rows. Paced phases offer a fixed rate; flat-out phases keep a
# window of messages per publisher not yet delivered to every subscriber
# (a closed loop), so the rate is what the server sustains and no queue grows
# without bound. Both servers get the same queue and in-flight limits, raised
# so that neither drops a message at these rates.
G1_PUBLISHERS=${BENCH_G1_PUBLISHERS:-100}
G1_RATE=${BENCH_G1_RATE:-10000}
G1_PACED=${BENCH_G1_PACED:-$(scaled 10 3)}
G1_FLAT=${BENCH_G1_FLAT:-$(scaled 15 3)}
G1_WINDOW=${BENCH_G1_WINDOW:-8}
G2_SUBSCRIBERS=${BENCH_G2_SUBSCRIBERS:-$(scaled 10000 100)}
G2_RATE=${BENCH_G2_RATE:-10}
G2_SECONDS=${BENCH_G2_SECONDS:-$(scaled 10 3)}
G2_WINDOW=${BENCH_G2_WINDOW:-8}
G3_HOLDERS=${BENCH_G3_HOLDERS:-100}
G3_FILTERS=${BENCH_G3_FILTERS:-$(scaled 1000000 10000)}
G3_PER_PACKET=${BENCH_G3_PER_PACKET:-1000}
G3_RATE=${BENCH_G3_RATE:-5000}
G3_SECONDS=${BENCH_G3_SECONDS:-$(scaled 15 3)}
GW_PAYLOAD=${BENCH_GW_PAYLOAD:-64}
GW_INFLIGHT=${BENCH_GW_INFLIGHT:-100}
GW_QUEUED=${BENCH_GW_QUEUED:-100000}
GW_OUTBUF=67108864
D_DEVICES=${BENCH_D_DEVICES:-$(scaled 100000 1000)}
D_EVENTS=${BENCH_D_EVENTS:-$(scaled 200 20)}
# Cost row (e): the load of (a); the idle fleet's window and settle time.
E_DEVICES=${BENCH_E_DEVICES:-$(scaled 10000 50)}
E_INTERVAL=${BENCH_E_INTERVAL:-5}
E_DURATION=${BENCH_E_DURATION:-$(scaled 60 15)}
E_IDLE_CONNECTIONS=${BENCH_E_IDLE_CONNECTIONS:-$(scaled 10000 100)}
E_IDLE_KEEPALIVE=${BENCH_E_IDLE_KEEPALIVE:-60}
E_IDLE_SETTLE=${BENCH_E_IDLE_SETTLE:-$(scaled 5 2)}
E_IDLE_WINDOW=${BENCH_E_IDLE_WINDOW:-$(scaled 30 10)}
E_PERF_STAT=${BENCH_E_PERF_STAT:-1}
# TLS rows.
T1_HANDSHAKES=${BENCH_T1_HANDSHAKES:-$(scaled 5000 500)}
T1_PARALLEL=${BENCH_T1_PARALLEL:-32}
T2_DEVICES=${BENCH_T2_DEVICES:-$(scaled 10000 500)}
T2_PARALLEL=${BENCH_T2_PARALLEL:-1000}
T3_DEVICES=${BENCH_T3_DEVICES:-$(scaled 10000 50)}
T3_INTERVAL=${BENCH_T3_INTERVAL:-5}
T3_DURATION=${BENCH_T3_DURATION:-$(scaled 60 15)}
OVERRIDES=$(env | grep -E '^BENCH_(A|B|C|D|E|G1|G2|G3|GW|T1|T2|T3)_|^BENCH_(ANOMALY_RATE|SEED|PERF_SECONDS)=' | sort | tr '\n' ' ' | sed 's/ $//')

# Servers get the hard open-file limit (20,000 here; vigil raises its own soft
# limit, mosquitto 2.0 does not).
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576

BASE_DIR=${BENCH_DIR:-/var/tmp}
mkdir -p "$BASE_DIR" || die "cannot create $BASE_DIR"
WORK=$(mktemp -d "$BASE_DIR/vigil-bench.XXXXXX") || die "mktemp in $BASE_DIR failed"
mkdir -p "$WORK/runs"
META=$WORK/meta.json
set_meta() { "$PY" "$REPORT" set "$META" "$@"; }

# ---------------------------------------------------------------- cleanup
# Every server, sim wrapper and perf we start is recorded here and killed on
# exit, by pid.
declare -a OWNED=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${OWNED[@]}"; do
        kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    done
    for p in "${OWNED[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# untrack PID: once reaped, a pid may be reused by someone else's process.
untrack() {
    local p keep=()
    for p in "${OWNED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    OWNED=("${keep[@]}")
}
running() { [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
q() { local s; printf -v s '%q ' "$@"; printf '%s' "${s% }"; }

# ---------------------------------------------------------------- machine
collect_machine() {
    local cpu mem kern fs git build
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    kern="$(uname -sr) ($(uname -v)) $(uname -m)"
    fs=$(df -PT "$WORK" | awk 'NR == 2 { print $2 " on " $1 " (" $7 ")" }')
    [[ $fs == tmpfs* ]] && fs="$fs — WARNING: tmpfs, fdatasync costs nothing here; set BENCH_DIR to a disk"
    git=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n $(git -C "$ROOT" status --porcelain -- src 2>/dev/null) ]] && git="$git (src modified)"
    build="$(${CC:-cc} --version 2>/dev/null | head -1), make all (-O2 -g)"
    local dev wc=unknown
    dev=$(df -P "$WORK" | awk 'NR == 2 { print $1 }')
    dev=${dev#/dev/}
    if [[ -r /sys/class/block/$dev/queue/write_cache ]]; then
        wc="$(cat "/sys/class/block/$dev/queue/write_cache") ($dev)"
    elif [[ -r /sys/class/block/$dev/../queue/write_cache ]]; then
        wc="$(cat "/sys/class/block/$dev/../queue/write_cache") ($dev)"
    fi
    set_meta "fsync_latency=$("$PY" "$REPORT" fsyncprobe "$WORK")" "write_cache=$wc"
    set_meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "nproc=$(nproc)" "cpu_model=$cpu" "memory=$mem" \
        "kernel=$kern" "data_fs=$fs" "git=\"$git\"" "build=$build" "nofile=$NOFILE:$NOFILE" \
        "mosquitto_version=$("$MOSQ" -h 2>/dev/null | head -1)" "scale=\"$SCALE\"" "only=$ONLY" \
        "overrides=$OVERRIDES" "load_before=$(cut -d' ' -f1-3 /proc/loadavg)" \
        "a={\"devices\":$A_DEVICES,\"interval\":$A_INTERVAL,\"duration\":$A_DURATION,\"anomaly_rate\":$ANOMALY,\"offered\":$(rate "$A_DEVICES" "$A_INTERVAL")}" \
        "b={\"devices\":$B_DEVICES,\"interval\":$B_INTERVAL,\"duration\":$B_DURATION,\"anomaly_rate\":$ANOMALY,\"offered\":$(rate "$B_DEVICES" "$B_INTERVAL")}" \
        "c={\"devices\":$C_DEVICES,\"interval\":$C_INTERVAL,\"duration\":$C_DURATION,\"anomaly_rate\":0,\"offered\":$(rate "$C_DEVICES" "$C_INTERVAL"),\"probe\":$C_PROBE}" \
        "g1={\"publishers\":$G1_PUBLISHERS,\"rate\":$G1_RATE,\"paced_s\":$G1_PACED,\"flat_s\":$G1_FLAT,\"window\":$G1_WINDOW}" \
        "g2={\"subscribers\":$G2_SUBSCRIBERS,\"rate\":$G2_RATE,\"seconds\":$G2_SECONDS,\"window\":$G2_WINDOW}" \
        "g3={\"holders\":$G3_HOLDERS,\"filters\":$G3_FILTERS,\"per_packet\":$G3_PER_PACKET,\"rate\":$G3_RATE,\"seconds\":$G3_SECONDS}" \
        "gw={\"payload\":$GW_PAYLOAD,\"inflight\":$GW_INFLIGHT,\"queued\":$GW_QUEUED,\"outbuf\":$GW_OUTBUF}" \
        "d={\"devices\":$D_DEVICES,\"events_per_device\":$D_EVENTS}" \
        "t={\"t1_handshakes\":$T1_HANDSHAKES,\"t1_parallel\":$T1_PARALLEL,\"t2_devices\":$T2_DEVICES,\"t2_parallel\":$T2_PARALLEL,\"t3_devices\":$T3_DEVICES,\"t3_interval\":$T3_INTERVAL,\"t3_duration\":$T3_DURATION,\"t3_anomaly_rate\":$ANOMALY,\"t3_offered\":$(rate "$T3_DEVICES" "$T3_INTERVAL")}" \
        "e={\"devices\":$E_DEVICES,\"interval\":$E_INTERVAL,\"duration\":$E_DURATION,\"anomaly_rate\":$ANOMALY,\"offered\":$(rate "$E_DEVICES" "$E_INTERVAL"),\"idle_connections\":$E_IDLE_CONNECTIONS,\"keepalive\":$E_IDLE_KEEPALIVE,\"settle_s\":$E_IDLE_SETTLE,\"window_s\":$E_IDLE_WINDOW}"
}

# acked_rate ID: PUBACKs / send phase of a finished row, or nothing.
acked_rate() {
    "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(round(s["acked"]/s["duration_s"]))' \
        "$WORK/runs/$1/sim.json" 2>/dev/null
}

# probe_c: halves C_INTERVAL while vigil keeps up with the offered rate.
probe_c() {
    local step iv=$C_INTERVAL r off
    for step in 1 2 3 4; do
        off=$(rate "$C_DEVICES" "$iv")
        bench_row "c_probe$step" vigil "probe $step: vigil (fsync always), interval $iv s" "$C_DEVICES" "$iv" "$C_PROBE_DURATION" 0
        r=$(acked_rate "c_probe$step")
        [[ -n $r ]] || break
        set_meta "probes+={\"interval\":$iv,\"offered\":$off,\"acked_per_s\":$r,\"duration\":$C_PROBE_DURATION}"
        if awk -v r="$r" -v o="$off" 'BEGIN { exit !(r < 0.9 * o) }'; then
            log "(c) saturated at interval $iv s: $r acked/s of $off offered"
            break
        fi
        ((step == 4)) && { log "(c) still not saturated at interval $iv s"; break; }
        iv=$(awk -v i="$iv" 'BEGIN { printf "%.7g", i / 2 }')
    done
    C_INTERVAL=$iv
    set_meta "c={\"devices\":$C_DEVICES,\"interval\":$C_INTERVAL,\"duration\":$C_DURATION,\"anomaly_rate\":0,\"offered\":$(rate "$C_DEVICES" "$C_INTERVAL"),\"probe\":1}"
}

# ---------------------------------------------------------------- servers
SERVER_PID=
SERVER_PORT=

# start_server ID KIND -> SERVER_PID, SERVER_PORT; returns non-zero on failure
# (recorded in the run's info.json).
start_server() {
    local id=$1 kind=$2 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json port cmd=() conf
    SERVER_PID='' SERVER_PORT=''
    port=$("$PY" "$REPORT" freeport "$PORT_BASE") || { "$PY" "$REPORT" set "$info" "errors+=no free port"; return 1; }
    PORT_BASE=$((port + 1))
    mkdir -p "$R/data"
    case $kind in
    vigil) cmd=("$VIGIL" serve --listen "127.0.0.1:$port" --data-dir "$R/data" --fsync always) ;;
    vigil-nofsync) cmd=("$VIGIL" serve --listen "127.0.0.1:$port" --data-dir "$R/data" --fsync none) ;;
    # Gateway rows: no WebSocket/HTTP listeners (nothing uses them, and their
    # default ports may be taken), --fsync none only to say that these topics
    # never reach the stream, limits as for mosquitto below.
    vigil-gw) cmd=("$VIGIL" serve --listen "127.0.0.1:$port" --ws-listen off --http-listen off --data-dir "$R/data"
        --fsync none --log-level warn --max-subs-per-packet "$G3_PER_PACKET" --max-inflight-out "$GW_INFLIGHT"
        --max-queued-per-client "$GW_QUEUED" --max-outbuf "$GW_OUTBUF") ;;
    mosquitto | mosquitto-gw)
        conf=$R/mosquitto.conf
        cat >"$conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_connections -1
persistence false
connection_messages false
log_dest stderr
EOF
        # Same queue and in-flight limits as vigil's; TCP_NODELAY as vigil
        # sets it on every connection (mosquitto's default leaves Nagle on,
        # which delays its small PUBACKs behind delayed ACKs).
        [[ $kind == mosquitto-gw ]] && cat >>"$conf" <<EOF
max_queued_messages $GW_QUEUED
max_inflight_messages $GW_INFLIGHT
set_tcp_nodelay true
EOF
        cmd=("$MOSQ" -c "$conf")
        "$PY" "$REPORT" set "$info" "mosquitto_conf=$(cat "$conf")" "mosquitto_conf_path=mosquitto.conf"
        ;;
    *) return 1 ;;
    esac
    "$PY" "$REPORT" set "$info" "server_cmd=ulimit -n $NOFILE; $(q "${cmd[@]}")" "port=$port"
    (ulimit -n "$NOFILE" 2>/dev/null || ulimit -Sn "$NOFILE"; exec "${cmd[@]}") >"$R/server.log" 2>&1 &
    SERVER_PID=$!
    OWNED+=("$SERVER_PID")

    for _ in $(seq 100); do
        if ! running "$SERVER_PID"; then
            "$PY" "$REPORT" set "$info" "errors+=server exited during start-up: $(tail -3 "$R/server.log" | tr '\n' ' ')"
            return 1
        fi
        [[ -n $(ss -Hltn "sport = :$port") ]] && break
        sleep 0.1
    done
    if [[ -z $(ss -Hltn "sport = :$port") ]]; then
        "$PY" "$REPORT" set "$info" "errors+=server not listening on $port after 10 s"
        return 1
    fi
    if ! "$PY" "$REPORT" owns-port "$port" "$SERVER_PID" 2>>"$R/server.log"; then
        "$PY" "$REPORT" set "$info" "errors+=port $port is shared with another process; results would be wrong"
        return 1
    fi
    SERVER_PORT=$port
    sleep 1 # settle: idle RSS is taken next
    return 0
}

# stop_server ID: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL (recorded).
stop_server() {
    local id=$1 info=$WORK/runs/$1/info.json pid=$SERVER_PID t0 t1 rc
    [[ -n $pid ]] || return 0
    t0=$(date +%s.%N)
    kill -TERM "$pid" 2>/dev/null
    local waited=0
    while running "$pid"; do
        sleep 0.05
        waited=$((waited + 1))
        if ((waited > STOP_TIMEOUT * 20)); then
            "$PY" "$REPORT" set "$info" "errors+=server did not exit within ${STOP_TIMEOUT} s of SIGTERM; killed with SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            break
        fi
    done
    wait "$pid" 2>/dev/null
    rc=$?
    untrack "$pid"
    t1=$(date +%s.%N)
    "$PY" "$REPORT" set "$info" "stop_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "exit_status=$rc"
    ((rc != 0)) && "$PY" "$REPORT" set "$info" "errors+=server exit status $rc after SIGTERM"
    SERVER_PID=
}

# log_summary ID KIND: counts warnings/errors in the server log.
log_summary() {
    local id=$1 kind=$2 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json w e pat
    if [[ $kind == mosquitto ]]; then pat='[Ee]rror|[Ww]arning|[Oo]ut of memory|being dropped'; else pat=' (WARN|ERROR) '; fi
    if [[ $kind == mosquitto ]]; then
        w=$(grep -ciE 'warning' "$R/server.log"); e=$(grep -ciE 'error|out of memory' "$R/server.log")
    else
        w=$(grep -c ' WARN ' "$R/server.log"); e=$(grep -c ' ERROR ' "$R/server.log")
    fi
    "$PY" "$REPORT" set "$info" "log_warn=${w:-0}" "log_error=${e:-0}"
    local line
    while IFS= read -r line; do
        "$PY" "$REPORT" set "$info" "log_lines+=$line"
    done < <(grep -E "$pat" "$R/server.log" | head -5)
}

# count_stored ID: telemetry records on disk (vigil, after stop).
count_stored() {
    local id=$1 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json n rc line
    # `vigil stream ls` does not terminate (0.1), so count with tail.
    n=$(timeout 300 "$VIGIL" stream tail telemetry --data-dir "$R/data" 2>>"$R/count.err" | wc -l)
    rc=${PIPESTATUS[0]}
    if ((rc == 0)); then
        "$PY" "$REPORT" set "$info" "stored_telemetry=$n" "stored_source=stream tail"
        return
    fi
    # Fallback: the server's own count at shutdown.
    line=$(grep -o '[0-9]* telemetry records' "$R/server.log" | tail -1)
    "$PY" "$REPORT" set "$info" "errors+=vigil stream tail telemetry failed (status $rc) after reading $n records"
    if [[ -n $line ]]; then
        "$PY" "$REPORT" set "$info" "stored_telemetry=${line%% *}" "stored_source=server log"
    fi
}

# start_failed ID: after start_server failed: stop or reap what was started.
start_failed() {
    local id=$1 info=$WORK/runs/$1/info.json
    log "$id: server failed to start (see doc)"
    if [[ -n $SERVER_PID ]]; then
        if running "$SERVER_PID"; then
            stop_server "$id"
        else
            wait "$SERVER_PID" 2>/dev/null
            "$PY" "$REPORT" set "$info" "exit_status=$?"
            untrack "$SERVER_PID"
            SERVER_PID=
        fi
    fi
}

# bench_row ID KIND LABEL DEVICES INTERVAL DURATION ANOMALY [perf|cost]
#   perf: a perf recording of the server during the run; cost: the cost
#   row's steady-window sampling (runsim --cost-window) and no stats client.
bench_row() {
    local id=$1 kind=$2 label=$3 devices=$4 interval=$5 duration=$6 anomaly=$7 mode=${8:-}
    local R=$WORK/runs/$id info=$WORK/runs/$id/info.json sim_cmd timeout_s opts=() perf=
    [[ $mode == perf ]] && perf=perf
    mkdir -p "$R"
    "$PY" "$REPORT" set "$info" "kind=$kind" "label=$label"
    log "$id: $label — $devices devices, interval $interval s, $duration s"
    if ! start_server "$id" "$kind"; then
        start_failed "$id"
        return 1
    fi
    sim_cmd=("$VIGIL" sim --connect "127.0.0.1:$SERVER_PORT" --devices "$devices" --interval "$interval"
        --duration "$duration" --qos 1 --anomaly-rate "$anomaly" --seed "$SEED" --json)
    "$PY" "$REPORT" set "$info" "sim_cmd=$(q "${sim_cmd[@]}")" "ran=true"
    [[ $kind == vigil* ]] && command -v mosquitto_sub >/dev/null && opts=(--stats-port "$SERVER_PORT")
    # The cost row measures every wake-up of the server: no extra client.
    if [[ $mode == cost ]]; then
        opts=(--cost-window "$duration" --perf-stat "$E_PERF_STAT")
        "$PY" "$REPORT" set "$info" "bench=e"
    fi
    # Generous: connect time + send + drain + margin.
    timeout_s=$(awk -v d="$duration" -v n="$devices" 'BEGIN { printf "%d", d + n / 1000 + 60 }')

    local perf_pid=
    if [[ -n $perf ]]; then
        local warm secs
        warm=$(awk -v d="$duration" 'BEGIN { w = d * 0.2; if (w > 5) w = 5; if (w < 1) w = 1; printf "%.1f", w }')
        secs=$(awk -v d="$duration" -v w="$warm" -v p="$PERF_SECONDS" 'BEGIN { s = d - w - 1; if (s > p) s = p; if (s < 1) s = 1; printf "%d", s }')
        (
            sleep "$warm"
            exec perf record -g -F 999 -p "$SERVER_PID" -o "$R/perf.data" -- sleep "$secs"
        ) >"$R/perf.log" 2>&1 &
        perf_pid=$!
        OWNED+=("$perf_pid")
        "$PY" "$REPORT" set "$WORK/perf.json" "seconds=$secs" \
            "commands+=perf record -g -F 999 -p <vigil pid> -o perf.data -- sleep $secs    # started $warm s into the run" \
            "commands+=perf report -i perf.data --stdio --no-children -g none --sort dso,symbol | grep -v '^#' | head -15"
    fi

    "$PY" "$REPORT" runsim --pid "$SERVER_PID" --out "$R" --timeout "$timeout_s" "${opts[@]}" -- "${sim_cmd[@]}" &
    local simpy=$!
    OWNED+=("$simpy")
    wait "$simpy"
    local src=$?
    untrack "$simpy"
    ((src != 0)) && "$PY" "$REPORT" set "$info" "errors+=load generator wrapper failed (status $src)"
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid"
        untrack "$perf_pid"
    fi
    stop_server "$id"
    log_summary "$id" "$kind"
    [[ $kind == vigil* ]] && count_stored "$id"
    rm -rf "$R/data"
    "$PY" - "$R" <<'EOF' >&2
import json, sys, os
d = sys.argv[1]
try:
    s = json.load(open(os.path.join(d, "sim.json")))
    print(f"    sent {s['sent']} acked {s['acked']} failed {s['failed']} thr {s['throughput_eps']}/s "
          f"ack p99 {s['puback_latency_ms']['p99']} ms alert p99 {s['alert_latency_ms']['p99']} ms "
          f"anomalies {s['anomalies']}")
except Exception as e:
    print(f"    no sim report: {e}")
EOF
    return 0
}

# gw_row ID KIND LABEL TIMEOUT_S MQTT_LOAD_ARGS...: a gateway row: fresh
# server, build/mqtt_load with the given scenario and steps (it reads the
# server's CPU and RSS per step from /proc), server stopped.
gw_row() {
    local id=$1 kind=$2 label=$3 timeout_s=$4
    shift 4
    local R=$WORK/runs/$id info=$WORK/runs/$id/info.json cmd shown
    mkdir -p "$R"
    "$PY" "$REPORT" set "$info" "kind=$kind" "label=$label" "bench=${id%%_*}"
    log "$id: $label — $*"
    if ! start_server "$id" "$kind"; then
        start_failed "$id"
        return 1
    fi
    cmd=("$LOADGEN" --connect "127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --payload "$GW_PAYLOAD" "$@")
    shown=$(q "${cmd[@]}")
    "$PY" "$REPORT" set "$info" "sim_cmd=${shown/--server-pid $SERVER_PID/--server-pid <server pid>}" "ran=true"
    "$PY" "$REPORT" runsim --pid "$SERVER_PID" --out "$R" --timeout "$timeout_s" -- "${cmd[@]}" &
    local simpy=$!
    OWNED+=("$simpy")
    wait "$simpy"
    local src=$?
    untrack "$simpy"
    ((src != 0)) && "$PY" "$REPORT" set "$info" "errors+=load generator wrapper failed (status $src)"
    stop_server "$id"
    log_summary "$id" "${kind%-gw}"
    rm -rf "$R/data"
    "$PY" - "$R" <<'EOF' >&2
import json, sys, os
try:
    s = json.load(open(os.path.join(sys.argv[1], "sim.json")))
    print(f"    connected {s['connected']}/{s['connections']} disconnects {s['disconnects']}")
    for p in s["steps"]:
        if p["step"] == "phase":
            print(f"    {p['name']}: qos {p['qos']} published {p['published']} delivered {p['delivered']} "
                  f"({p['deliveries_per_s']:.0f}/s) lost {p['lost_deliveries']} p50 {p['latency_ms'].get('p50')} "
                  f"p99 {p['latency_ms'].get('p99')} ms, server CPU {p['server_cpu_pct']} %")
        elif p["step"] == "bulk":
            print(f"    bulk: {p['filters']} filters in {p['seconds']} s, {p['bytes_per_subscription']} B/subscription")
except Exception as e:
    print(f"    no load generator report: {e}")
EOF
    return 0
}

# idle_row ID KIND LABEL: cost row (e), idle half: a fresh server, the idle
# fleet held open; report.py idlerun samples the server over the window.
idle_row() {
    local id=$1 kind=$2 label=$3 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json cmd shown timeout_s
    mkdir -p "$R"
    "$PY" "$REPORT" set "$info" "kind=$kind" "label=$label" "bench=e-idle"
    log "$id: $label — $E_IDLE_CONNECTIONS idle connections, keepalive $E_IDLE_KEEPALIVE s, window $E_IDLE_WINDOW s"
    if ! start_server "$id" "$kind"; then
        start_failed "$id"
        return 1
    fi
    cmd=("$IDLE_FLEET" --connect "127.0.0.1:$SERVER_PORT" --connections "$E_IDLE_CONNECTIONS" --keepalive "$E_IDLE_KEEPALIVE")
    shown=$(q "${cmd[@]}")
    "$PY" "$REPORT" set "$info" "sim_cmd=$shown" "ran=true"
    timeout_s=$((E_IDLE_CONNECTIONS / 500 + 60))
    "$PY" "$REPORT" idlerun --pid "$SERVER_PID" --out "$R" --settle "$E_IDLE_SETTLE" --window "$E_IDLE_WINDOW" \
        --timeout "$timeout_s" --perf-stat "$E_PERF_STAT" -- "${cmd[@]}" &
    local simpy=$!
    OWNED+=("$simpy")
    wait "$simpy"
    local src=$?
    untrack "$simpy"
    ((src != 0)) && "$PY" "$REPORT" set "$info" "errors+=idle fleet wrapper failed (status $src)"
    stop_server "$id"
    log_summary "$id" "$kind"
    rm -rf "$R/data"
    "$PY" - "$R" <<'EOF' >&2
import json, sys, os
try:
    rs = json.load(open(os.path.join(sys.argv[1], "runsim.json")))
    s = json.load(open(os.path.join(sys.argv[1], "sim.json")))
    w = rs.get("window") or {}
    sec = w.get("seconds") or 0
    cpu = w.get("cpu_s")
    print(f"    connected {s['connected_max']}/{s['connections']} in {s['setup_s']} s, lost {s['disconnects']}, "
          f"pings {s['pings_sent']} pongs {s['pongs']}; window {sec} s: server CPU "
          f"{(100 * cpu / sec) if sec and cpu is not None else float('nan'):.2f} % of a core, "
          f"{((w.get('vol', 0) + w.get('invol', 0)) / sec) if sec else float('nan'):.1f} switches/s"
          + (f"; error: {rs['error']}" if rs.get("error") else ""))
except Exception as e:
    print(f"    no idle fleet report: {e}")
EOF
    return 0
}

perf_usable() {
    command -v perf >/dev/null || { echo "perf not installed"; return 1; }
    perf stat -e task-clock true >/dev/null 2>&1 || { echo "perf stat -e task-clock true failed (permissions? perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null))"; return 1; }
    return 0
}

perf_report() {
    local R=$WORK/runs/c_perf P=$WORK/perf.json top dso
    if [[ ! -s $R/perf.data ]]; then
        "$PY" "$REPORT" set "$P" "status=failed" "reason=perf record wrote no data: $(tail -2 "$R/perf.log" 2>/dev/null | tr '\n' ' ')"
        return
    fi
    top=$(perf report -i "$R/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null | sed -E "s/[[:space:]]+-[[:space:]]+-[[:space:]]*$//" | grep -v '^#' | grep -v '^[[:space:]]*$' | head -15)
    dso=$(perf report -i "$R/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | sed -E "s/[[:space:]]+-[[:space:]]+-[[:space:]]*$//" | grep -v '^#' | grep -v '^[[:space:]]*$' | head -8)
    if [[ -z $top ]]; then
        "$PY" "$REPORT" set "$P" "status=failed" "reason=perf report printed nothing"
        return
    fi
    local thr
    thr=$(acked_rate c_perf)
    "$PY" "$REPORT" set "$P" "status=ok" "top=$top" "by_dso=$dso" "acked_per_s=${thr:-null}"
}

# ---------------------------------------------------------------- main
collect_machine
log "work dir $WORK, scale $SCALE, only $ONLY, output $OUT"

want() { [[ ,$ONLY, == *,$1,* ]]; }
[[ -x $MOSQ ]] || set_meta "errors+=mosquitto not found at $MOSQ: its rows are missing"

if want a; then
    bench_row a_vigil vigil "vigil (fsync always, durable)" "$A_DEVICES" "$A_INTERVAL" "$A_DURATION" "$ANOMALY"
    [[ -x $MOSQ ]] && bench_row a_mosquitto mosquitto "mosquitto 2.0 (QoS 1, not durable)" "$A_DEVICES" "$A_INTERVAL" "$A_DURATION" "$ANOMALY"
fi
if want b; then
    bench_row b_vigil vigil "vigil (fsync always, durable)" "$B_DEVICES" "$B_INTERVAL" "$B_DURATION" "$ANOMALY"
    [[ -x $MOSQ ]] && bench_row b_mosquitto mosquitto "mosquitto 2.0 (QoS 1, not durable)" "$B_DEVICES" "$B_INTERVAL" "$B_DURATION" "$ANOMALY"
fi
if want c; then
    ((C_PROBE)) && probe_c
    bench_row c_vigil vigil "vigil (fsync always, durable)" "$C_DEVICES" "$C_INTERVAL" "$C_DURATION" 0
    [[ -x $MOSQ ]] && bench_row c_mosquitto mosquitto "mosquitto 2.0 (QoS 1, not durable)" "$C_DEVICES" "$C_INTERVAL" "$C_DURATION" 0
    bench_row c_vigil_nofsync vigil-nofsync "vigil (fsync none, not durable; reference)" "$C_DEVICES" "$C_INTERVAL" "$C_DURATION" 0
    if [[ ${BENCH_PERF:-1} != 0 ]]; then
        if reason=$(perf_usable); then
            # A separate run: the table rows above are not slowed by the profiler.
            bench_row c_perf vigil "vigil (fsync always) under perf" "$C_DEVICES" "$C_INTERVAL" "$C_DURATION" 0 perf
            perf_report
        else
            set_meta "errors+=perf section skipped: $reason"
            "$PY" "$REPORT" set "$WORK/perf.json" "status=skipped" "reason=$reason"
        fi
    else
        "$PY" "$REPORT" set "$WORK/perf.json" "status=skipped" "reason=BENCH_PERF=0"
    fi
fi

# detector_row: build/detect_bench in the foreground (one thread, no
# server); its JSON goes to $WORK/d.json, the command to meta d_cmd.
detector_row() {
    local cmd=("$DETECT_BENCH" "$D_DEVICES" "$D_EVENTS") shown rc
    shown=$(q "${cmd[@]}")
    shown=${shown/#"$ROOT/"/}
    set_meta "d_cmd=$shown" "d_load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    log "d: detectors — $D_DEVICES devices x $D_EVENTS events ($shown)"
    "${cmd[@]}" >"$WORK/d.json" 2>"$WORK/d.err"
    rc=$?
    set_meta "d_load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
    if ((rc != 0)); then
        set_meta "errors+=(d) $shown exited with status $rc: $(tail -3 "$WORK/d.err" | tr '\n' ' ')"
        return 1
    fi
    "$PY" - "$WORK/d.json" <<'EOF' >&2
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print(f"    {d['ns_per_event']} ns/event ({d['cpu_ns_per_event']} CPU), state {d['state_bytes']} B, "
          f"table {d['table_bytes_per_device']} B/device, RSS {d['rss_bytes_per_device']} B/device, "
          f"alert events {d['alert_events']}")
except Exception as e:
    print(f"    no detect_bench report: {e}")
EOF
}
if want d; then
    if [[ -x $DETECT_BENCH ]]; then
        detector_row
    else
        set_meta "errors+=(d) $DETECT_BENCH not found: run 'make build/detect_bench' (make bench builds it)"
    fi
fi

if want e; then
    # The load of (a) on each server, sampled over its steady window, then
    # each server again, fresh, holding the idle fleet.
    if [[ $E_PERF_STAT == 1 ]] && ! reason=$(perf_usable); then
        E_PERF_STAT=0
        set_meta "errors+=(e) perf stat cross-check skipped: $reason"
    fi
    bench_row e_vigil vigil "vigil (fsync always, durable)" "$E_DEVICES" "$E_INTERVAL" "$E_DURATION" "$ANOMALY" cost
    [[ -x $MOSQ ]] && bench_row e_mosquitto mosquitto "mosquitto 2.0 (QoS 1, not durable)" "$E_DEVICES" "$E_INTERVAL" "$E_DURATION" "$ANOMALY" cost
    if [[ -x $IDLE_FLEET ]]; then
        idle_row e_idle_vigil vigil "idle fleet: vigil (fsync always)"
        [[ -x $MOSQ ]] && idle_row e_idle_mosquitto mosquitto "idle fleet: mosquitto 2.0"
    else
        set_meta "errors+=(e) $IDLE_FLEET not found: run 'make build/idle_fleet' (make bench builds it); the idle rows are missing"
    fi
fi

if want g1 || want g2 || want g3; then
    [[ -x $LOADGEN ]] || die "$LOADGEN not found: run 'make build/mqtt_load' first"
    # The load generator raises its own soft open-file limit to the hard one.
    g_pair() { # g_pair ID_PREFIX TITLE TIMEOUT ARGS...: the vigil row, then mosquitto's
        local pre=$1 title=$2 t=$3
        shift 3
        gw_row "${pre}_vigil" vigil-gw "$title: vigil" "$t" "$@"
        [[ -x $MOSQ ]] && gw_row "${pre}_mosquitto" mosquitto-gw "$title: mosquitto 2.0" "$t" "$@"
    }
fi
if want g1; then
    for qos in 0 1 2; do
        g_pair "g1q$qos" "(g1) QoS $qos" $((G1_PACED + G1_FLAT + 90)) --scenario pubsub --publishers "$G1_PUBLISHERS" --sub-qos "$qos" \
            --window "$G1_WINDOW" --step "phase:paced:$qos:$G1_RATE:$G1_PACED" --step "phase:flat:$qos:0:$G1_FLAT"
    done
fi
if want g2; then
    # (a server that cannot keep up may need up to --drain-max 120 s per phase to deliver its backlog)
    g_pair g2 "(g2)" $((4 * (G2_SECONDS + 12 + 120) + 120)) --scenario fanout --subscribers "$G2_SUBSCRIBERS" --sub-qos 1 --window "$G2_WINDOW" \
        --step "phase:q0-paced:0:$G2_RATE:$G2_SECONDS" --step "phase:q0-flat:0:0:$G2_SECONDS" \
        --step "phase:q1-paced:1:$G2_RATE:$G2_SECONDS" --step "phase:q1-flat:1:0:$G2_SECONDS"
fi
if want g3; then
    g_pair g3 "(g3)" $((2 * G3_SECONDS + 900)) --scenario subscale --holders "$G3_HOLDERS" --filters "$G3_FILTERS" \
        --filters-per-packet "$G3_PER_PACKET" --sub-qos 0 \
        --step "phase:one:0:$G3_RATE:$G3_SECONDS" --step bulk --step "phase:all:0:$G3_RATE:$G3_SECONDS"
fi

# ---------------------------------------------------------------- TLS rows
TLS_PREFIX=tls-

# tls_pki DIR COUNT: a CA, a server certificate for 127.0.0.1 and COUNT device
# certificates, made by vigil's own CLI in DIR/data (registered there) with
# the devices' files in DIR/certs. Records the time in info.json.
tls_pki() {
    local R=$1 n=$2 info=$1/info.json t0 t1
    mkdir -p "$R/data"
    t0=$(date +%s.%N)
    if ! { "$VIGIL" ca init --data-dir "$R/data" &&
        "$VIGIL" device create --count "$n" --prefix "$TLS_PREFIX" --out "$R/certs" --data-dir "$R/data"; } >>"$R/pki.log" 2>&1; then
        "$PY" "$REPORT" set "$info" "errors+=PKI setup failed: $(tail -2 "$R/pki.log" | tr '\n' ' ')"
        return 1
    fi
    t1=$(date +%s.%N)
    "$PY" "$REPORT" set "$info" "pki_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "pki_devices=$n" \
        "pki_cmd=vigil ca init --data-dir RUN/data && vigil device create --count $n --prefix $TLS_PREFIX --out RUN/certs --data-dir RUN/data"
}

# tls_start_server ID KIND DEVICES -> SERVER_PID, SERVER_PORT (TLS),
# SERVER_PLAIN_PORT, TLS_CA, TLS_CERTS. KIND vigil-tls (plain MQTT on
# loopback for the alert subscriber and MQTT over TLS; --fsync always) or
# mosquitto-tls (the same kind of PKI's server certificate).
SERVER_PLAIN_PORT=
tls_start_server() {
    local id=$1 kind=$2 n=$3 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json port pport cmd=() conf
    SERVER_PID='' SERVER_PORT='' SERVER_PLAIN_PORT=''
    tls_pki "$R" "$n" || return 1
    TLS_CA=$R/certs/ca.crt
    TLS_CERTS=$R/certs
    port=$("$PY" "$REPORT" freeport "$PORT_BASE") || { "$PY" "$REPORT" set "$info" "errors+=no free port"; return 1; }
    pport=$("$PY" "$REPORT" freeport $((port + 1))) || { "$PY" "$REPORT" set "$info" "errors+=no free port"; return 1; }
    PORT_BASE=$((pport + 1))
    case $kind in
    vigil-tls) cmd=("$VIGIL" serve --listen "127.0.0.1:$pport" --tls-listen "127.0.0.1:$port" --ws-listen off
        --http-listen off --wss-listen off --https-listen off --data-dir "$R/data" --fsync always) ;;
    mosquitto-tls)
        conf=$R/mosquitto.conf
        # `user root`: mosquitto started as root otherwise drops to the
        # mosquitto user, who cannot read the 0600 server key.
        cat >"$conf" <<MOSQEOF
listener $port 127.0.0.1
cafile $R/data/pki/ca.crt
certfile $R/data/pki/server.crt
keyfile $R/data/pki/server.key
require_certificate true
use_identity_as_username true
allow_anonymous true
max_connections -1
persistence false
connection_messages false
set_tcp_nodelay true
user root
log_dest stderr
MOSQEOF
        cmd=("$MOSQ" -c "$conf")
        "$PY" "$REPORT" set "$info" "mosquitto_conf=$(sed "s|$R/|RUN/|g" "$conf")" "mosquitto_conf_path=mosquitto.conf"
        ;;
    *) return 1 ;;
    esac
    "$PY" "$REPORT" set "$info" "server_cmd=ulimit -n $NOFILE; $(q "${cmd[@]}" | sed "s|$R/|RUN/|g")" "port=$port"
    (ulimit -n "$NOFILE" 2>/dev/null || ulimit -Sn "$NOFILE"; exec "${cmd[@]}") >"$R/server.log" 2>&1 &
    SERVER_PID=$!
    OWNED+=("$SERVER_PID")
    for _ in $(seq 100); do
        if ! running "$SERVER_PID"; then
            "$PY" "$REPORT" set "$info" "errors+=server exited during start-up: $(tail -3 "$R/server.log" | tr '\n' ' ')"
            return 1
        fi
        [[ -n $(ss -Hltn "sport = :$port") ]] && break
        sleep 0.1
    done
    if [[ -z $(ss -Hltn "sport = :$port") ]] || ! "$PY" "$REPORT" owns-port "$port" "$SERVER_PID" 2>>"$R/server.log"; then
        "$PY" "$REPORT" set "$info" "errors+=server not listening on $port alone after 10 s"
        return 1
    fi
    SERVER_PORT=$port
    [[ $kind == vigil-tls ]] && SERVER_PLAIN_PORT=$pport
    sleep 1
    return 0
}

# tls_hs_row ID KIND LABEL BENCH DEVICES TIMEOUT TLS_HS_ARGS...: a fresh
# server, build/tls_hs with the given phases, the server stopped.
tls_hs_row() {
    local id=$1 kind=$2 label=$3 bench=$4 n=$5 timeout_s=$6
    shift 6
    local R=$WORK/runs/$id info=$WORK/runs/$id/info.json cmd shown
    mkdir -p "$R"
    "$PY" "$REPORT" set "$info" "kind=$kind" "label=$label" "bench=$bench"
    log "$id: $label — $*"
    if ! tls_start_server "$id" "$kind" "$n"; then
        start_failed "$id"
        return 1
    fi
    cmd=("$TLS_HS" --connect "127.0.0.1:$SERVER_PORT" --ca "$TLS_CA" --cert-dir "$TLS_CERTS" --prefix "$TLS_PREFIX"
        --devices "$n" --server-pid "$SERVER_PID" "$@")
    shown=$(q "${cmd[@]}")
    shown=${shown/--server-pid $SERVER_PID/--server-pid <server pid>}
    "$PY" "$REPORT" set "$info" "sim_cmd=$(printf '%s' "$shown" | sed "s|$R/|RUN/|g; s|$ROOT/||g")" "ran=true"
    "$PY" "$REPORT" runsim --pid "$SERVER_PID" --out "$R" --timeout "$timeout_s" -- "${cmd[@]}" &
    local simpy=$!
    OWNED+=("$simpy")
    wait "$simpy"
    local src=$?
    untrack "$simpy"
    ((src != 0)) && "$PY" "$REPORT" set "$info" "errors+=load generator wrapper failed (status $src)"
    stop_server "$id"
    log_summary "$id" "${kind%-tls}"
    rm -rf "$R/data" "$R/certs"
    "$PY" - "$R" <<'PYEOF' >&2
import json, sys, os
try:
    s = json.load(open(os.path.join(sys.argv[1], "sim.json")))
    for p in s["phases"]:
        print(f"    {p['name']}: {p['ok']} ok {p['failed']} failed {p['resumed']} resumed in {p['seconds']} s = "
              f"{p['per_s']}/s, p50 {p['latency_ms']['p50']} p99 {p['latency_ms']['p99']} ms, "
              f"server {p.get('server_cpu_ms_per_conn')} ms CPU/conn, failures {p['failures']}")
except Exception as e:
    print(f"    no tls_hs report: {e}")
PYEOF
    return 0
}

# tls_cost_row ID LABEL TRANSPORT: (t3) the seed workload on vigil over
# TRANSPORT (tls: every device with its certificate; plain: the same server
# configuration, the devices on its plain loopback listener), sampled as the
# cost row (e) is.
tls_cost_row() {
    local id=$1 label=$2 transport=$3 R=$WORK/runs/$1 info=$WORK/runs/$1/info.json sim_cmd timeout_s shown
    mkdir -p "$R"
    "$PY" "$REPORT" set "$info" "kind=vigil-tls" "label=$label" "bench=t3" "transport=$transport"
    log "$id: $label — $T3_DEVICES devices, interval $T3_INTERVAL s, $T3_DURATION s"
    if ! tls_start_server "$id" vigil-tls "$T3_DEVICES"; then
        start_failed "$id"
        return 1
    fi
    sim_cmd=("$VIGIL" sim --devices "$T3_DEVICES" --interval "$T3_INTERVAL" --duration "$T3_DURATION" --qos 1
        --anomaly-rate "$ANOMALY" --seed "$SEED" --prefix "$TLS_PREFIX" --json)
    if [[ $transport == tls ]]; then
        sim_cmd+=(--tls --connect "127.0.0.1:$SERVER_PORT" --ca "$TLS_CA" --cert-dir "$TLS_CERTS"
            --alerts-connect "127.0.0.1:$SERVER_PLAIN_PORT")
    else
        sim_cmd+=(--connect "127.0.0.1:$SERVER_PLAIN_PORT")
    fi
    shown=$(q "${sim_cmd[@]}")
    "$PY" "$REPORT" set "$info" "sim_cmd=$(printf '%s' "$shown" | sed "s|$R/|RUN/|g")" "ran=true"
    timeout_s=$(awk -v d="$T3_DURATION" -v n="$T3_DEVICES" 'BEGIN { printf "%d", d + n / 1000 + 60 }')
    "$PY" "$REPORT" runsim --pid "$SERVER_PID" --out "$R" --timeout "$timeout_s" --cost-window "$T3_DURATION" \
        --perf-stat 0 -- "${sim_cmd[@]}" &
    local simpy=$!
    OWNED+=("$simpy")
    wait "$simpy"
    local src=$?
    untrack "$simpy"
    ((src != 0)) && "$PY" "$REPORT" set "$info" "errors+=load generator wrapper failed (status $src)"
    stop_server "$id"
    log_summary "$id" vigil
    count_stored "$id"
    rm -rf "$R/data" "$R/certs"
    "$PY" - "$R" <<'PYEOF' >&2
import json, sys, os
d = sys.argv[1]
try:
    s = json.load(open(os.path.join(d, "sim.json")))
    rs = json.load(open(os.path.join(d, "runsim.json")))
    c = rs.get("cost") or {}
    w = c.get("window") or {}
    ev = c.get("events_acked")
    print(f"    sent {s['sent']} acked {s['acked']} failed {s['failed']} connect failures {s['connect_failures']} "
          f"ack p99 {s['puback_latency_ms']['p99']} ms alert p99 {s['alert_latency_ms']['p99']} ms; window "
          f"{w.get('seconds')} s, CPU {w.get('cpu_s')} s, {ev} events"
          + (f" = {w['cpu_s'] / ev * 1e6:.2f} CPU-s per million" if ev and w.get('cpu_s') is not None else ""))
except Exception as e:
    print(f"    no sim report: {e}")
PYEOF
    return 0
}

if { want t1 || want t2; } && [[ ! -x $TLS_HS ]]; then
    die "$TLS_HS not found: run 'make build/tls_hs' first"
fi
if want t1; then
    tls_hs_row t1_vigil vigil-tls "(t1) vigil" t1 "$T1_PARALLEL" $((T1_HANDSHAKES / 20 + 300)) --parallel "$T1_PARALLEL" \
        --phase "full:$T1_HANDSHAKES" --phase "resumed:$T1_HANDSHAKES"
    [[ -x $MOSQ ]] && tls_hs_row t1_mosquitto mosquitto-tls "(t1) mosquitto 2.0" t1 "$T1_PARALLEL" $((T1_HANDSHAKES / 20 + 300)) \
        --parallel "$T1_PARALLEL" --phase "full:$T1_HANDSHAKES" --phase "resumed:$T1_HANDSHAKES"
fi
if want t2; then
    tls_hs_row t2_vigil vigil-tls "(t2) vigil" t2 "$T2_DEVICES" $((T2_DEVICES / 50 + 300)) --parallel "$T2_PARALLEL" \
        --phase "storm:$T2_DEVICES"
    [[ -x $MOSQ ]] && tls_hs_row t2_mosquitto mosquitto-tls "(t2) mosquitto 2.0" t2 "$T2_DEVICES" $((T2_DEVICES / 50 + 300)) \
        --parallel "$T2_PARALLEL" --phase "storm:$T2_DEVICES"
fi
if want t3; then
    tls_cost_row t3_tls "(t3) vigil, mutual TLS" tls
    tls_cost_row t3_plain "(t3) vigil, plain TCP" plain
fi

T_END=$(date +%s)
set_meta "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" "elapsed=$(((T_END - T_START) / 60)) min $(((T_END - T_START) % 60)) s"
mkdir -p "$(dirname "$OUT")"
if "$PY" "$REPORT" render "$WORK" "$OUT"; then
    log "wrote $OUT"
    # Something looked wrong: keep the raw logs (data dirs are already gone).
    if [[ -s $WORK/flagged ]]; then BENCH_KEEP=1; fi
else
    BENCH_KEEP=1
    die "rendering $OUT failed (work dir kept: $WORK)"
fi
exit 0
