/* serve.c — `vigil serve`: builds the pipeline from the config, runs it until
 * SIGINT/SIGTERM, then shuts it down in the order that loses nothing:
 *   1. the gateway stops accepting and reading (no new work);
 *   2. processors stop where they are and checkpoint once their alerts are
 *      durable;
 *   3. the telemetry and dead-letter streams commit what is pending, which
 *      releases the last PUBACKs;
 *   4. the alerts stream commits (its callbacks publish on MQTT);
 *   5. the gateway flushes its output and closes every connection.
 * This file and main.c are the only places that know every module. */
#include "app/serve.h"

#include "app/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "ingest/ingest.h"
#include "mqtt/server.h"
#include "proc/processor.h"
#include "stream/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/file.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MOD "serve"

typedef struct {
    vg_config_t cfg;
    uint64_t start_ns;
    vg_log_t *telemetry, *deadletter, *alerts;
    vg_ingest_t *ingest;
    vg_server_t *server;
    /* NULL until started and again once stopping: the stats hook runs on
     * worker threads and must never see a processor being torn down. */
    _Atomic(vg_processor_t *) proc;
} app_t;

static void complete_to_server(void *ctx, uint64_t token, int status)
{
    vg_server_complete(ctx, token, status);
}

static void publish_alert(void *ctx, const char *topic, size_t tlen, const char *payload, size_t plen)
{
    app_t *a = ctx;
    vg_server_publish(a->server, topic, tlen, payload, plen, 1);
}

typedef struct {
    char *buf;
    size_t cap, n;
    bool first;
} jw_t;

static void jw_u64(jw_t *w, const char *key, uint64_t v)
{
    if (w->n >= w->cap)
        return;
    int k = snprintf(w->buf + w->n, w->cap - w->n, "%s\"%s\":%llu", w->first ? "" : ",", key, (unsigned long long)v);
    if (k > 0)
        w->n += (size_t)k;
    w->first = false;
}

static void jw_log(jw_t *w, const char *prefix, vg_log_t *log)
{
    vg_log_stats_t ls;
    char key[96];
    vg_log_stats(log, &ls);
#define LOGKEY(field, name)                                                                                            \
    snprintf(key, sizeof key, "%s.%s", prefix, name);                                                                  \
    jw_u64(w, key, ls.field)
    LOGKEY(appended, "appended");
    LOGKEY(committed, "committed");
    LOGKEY(commits, "commits");
    LOGKEY(fsyncs, "fsyncs");
    LOGKEY(bytes_written, "bytes_written");
    LOGKEY(append_waits, "append_waits");
    LOGKEY(errors, "errors");
    LOGKEY(truncated_bytes, "truncated_bytes");
    LOGKEY(pending_bytes, "pending_bytes");
#undef LOGKEY
}

/* The stats hook: one flat JSON object of counters (names are stable: tests
 * and dashboards read them). */
static size_t stats_json(void *ctx, char *buf, size_t cap)
{
    app_t *a = ctx;
    jw_t w = {buf, cap > 2 ? cap - 2 : 0, 1, true};
    buf[0] = '{';
    vg_server_stats_t ss;
    vg_server_stats(a->server, &ss);
    jw_u64(&w, "uptime_ms", (vg_clock_mono_ns() - a->start_ns) / 1000000);
    jw_u64(&w, "connections.current", ss.connections_current);
    jw_u64(&w, "connections.total", ss.connections_total);
    jw_u64(&w, "connections.refused", ss.connections_refused);
    jw_u64(&w, "connections.max", a->cfg.max_connections);
    char key[96];
    for (int r = 0; r < VG_CLOSE__COUNT; r++) {
        snprintf(key, sizeof key, "disconnect.%s", vg_close_reason_name((vg_close_reason_t)r));
        jw_u64(&w, key, ss.closes[r]);
    }
    jw_u64(&w, "publish.received", ss.publish_received);
    jw_u64(&w, "publish.sent", ss.publish_sent);
    jw_u64(&w, "bytes.in", ss.bytes_in);
    jw_u64(&w, "bytes.out", ss.bytes_out);
    jw_u64(&w, "subscriptions", ss.subscriptions);
    jw_u64(&w, "inflight.read_pauses", ss.read_pauses);
    jw_u64(&w, "sessions", ss.sessions);
    jw_u64(&w, "sessions.offline", ss.sessions_persistent_offline);
    jw_u64(&w, "queue.messages", ss.queued);
    jw_u64(&w, "queue.bytes", ss.queued_bytes);
    jw_u64(&w, "queue.dropped_client_limit", ss.queue_dropped_client);
    jw_u64(&w, "queue.dropped_global_limit", ss.queue_dropped_global);
    jw_u64(&w, "publish.expired", ss.expired_dropped);
    jw_u64(&w, "publish.too_large_for_client", ss.too_large_dropped);
    jw_u64(&w, "publish.qos2_duplicates", ss.qos2_duplicates);
    jw_u64(&w, "wills.published", ss.wills_published);
    jw_u64(&w, "retained", ss.retained);
    jw_u64(&w, "retained.rejected", ss.retained_rejected);
    jw_u64(&w, "state.errors", ss.store_errors);
    jw_u64(&w, "ws.connections", ss.ws_connections);
    jw_u64(&w, "http.requests", ss.http_requests);
    jw_u64(&w, "http.errors", ss.http_errors);
    vg_ingest_stats_t is;
    vg_ingest_stats(a->ingest, &is);
    jw_u64(&w, "telemetry.accepted", is.accepted);
    jw_u64(&w, "telemetry.deadletter", is.deadletter);
    jw_u64(&w, "telemetry.failed", is.failed);
    for (int r = 1; r < VG_EVENT__COUNT; r++) {
        snprintf(key, sizeof key, "deadletter.%s", vg_event_reason_name((vg_event_reason_t)r));
        jw_u64(&w, key, is.reasons[r]);
    }
    jw_log(&w, "stream", a->telemetry);
    jw_log(&w, "stream.deadletter", a->deadletter);
    jw_log(&w, "stream.alerts", a->alerts);
    vg_processor_t *p = atomic_load(&a->proc);
    if (p) {
        vg_processor_stats_t ps;
        vg_processor_stats(p, &ps);
        jw_u64(&w, "proc.processed", ps.processed);
        jw_u64(&w, "proc.lag", ps.lag);
        jw_u64(&w, "proc.devices", ps.devices);
        jw_u64(&w, "proc.checkpoints", ps.checkpoints);
        jw_u64(&w, "alerts.emitted", ps.alerts);
        jw_u64(&w, "alerts.replayed", ps.alerts_replayed);
    }
    for (int t = 0; t < VG_MEM__COUNT; t++) {
        snprintf(key, sizeof key, "memory.%s", vg_mem_tag_name((vg_mem_tag_t)t));
        jw_u64(&w, key, vg_mem_used((vg_mem_tag_t)t));
    }
    size_t n = w.n < cap - 2 ? w.n : cap - 2;
    buf[n++] = '}';
    buf[n] = '\0';
    return n;
}

/* Raises the open-file soft limit to the hard limit; returns the soft limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            VG_WARN(MOD, "cannot raise the open-file limit to %llu: %s", (unsigned long long)want, strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int open_streams(app_t *a)
{
    vg_log_opts_t lo;
    vg_log_opts_default(&lo);
    lo.shards = a->cfg.shards;
    lo.fsync = a->cfg.fsync;
    lo.fsync_interval_ms = a->cfg.fsync_interval_ms;
    lo.segment_bytes = a->cfg.segment_bytes;
    lo.max_pending_bytes = a->cfg.max_pending_bytes;
    int rc = vg_log_open(a->cfg.data_dir, "telemetry", &lo, &a->telemetry);
    if (rc)
        return rc;
    /* Alerts line up with telemetry shard for shard: a processor owns both. */
    lo.shards = vg_log_shard_count(a->telemetry);
    rc = vg_log_open(a->cfg.data_dir, "alerts", &lo, &a->alerts);
    if (rc)
        return rc;
    lo.shards = 1;
    return vg_log_open(a->cfg.data_dir, "deadletter", &lo, &a->deadletter);
}

int vg_serve_main(int argc, char **argv)
{
    app_t a;
    memset(&a, 0, sizeof a);
    a.start_ns = vg_clock_mono_ns();
    vg_config_default(&a.cfg);
    int rc = vg_config_parse_args(&a.cfg, argc, argv, 1, stderr);
    if (rc == VG_AGAIN)
        return 0;
    if (rc)
        return 2;
    vg_diag_set_level(a.cfg.log_level);

    /* Signals are taken synchronously by the main thread; every thread
     * created from here on inherits the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rlim_t nofile = raise_nofile();
    /* Reserve descriptors for segments, checkpoints, epoll/eventfds. */
    rlim_t reserve = 64 + 4 * (rlim_t)a.cfg.shards + 8 * 64;
    uint32_t fd_conns = nofile > reserve ? (uint32_t)(nofile - reserve) : 16;
    if (!a.cfg.max_connections || a.cfg.max_connections > fd_conns) {
        if (a.cfg.max_connections > fd_conns)
            VG_WARN(MOD, "--max-connections %u exceeds what the open-file limit allows; using %u",
                    a.cfg.max_connections, fd_conns);
        a.cfg.max_connections = fd_conns;
    }
    VG_INFO(MOD, "open-file limit %llu: up to %u connections", (unsigned long long)nofile, a.cfg.max_connections);

    int exit_code = 1, lock_fd = -1;
    rc = vg_fs_mkdir_p(a.cfg.data_dir);
    if (rc)
        goto cleanup;
    /* One server per data directory: two writers would interleave records
     * and sequence numbers in the same segment files. */
    char lockpath[PATH_MAX];
    snprintf(lockpath, sizeof lockpath, "%s/LOCK", a.cfg.data_dir);
    lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        VG_ERROR(MOD, "data directory %s is in use by another vigil server (cannot lock %s)", a.cfg.data_dir,
                 lockpath);
        goto cleanup;
    }
    rc = open_streams(&a);
    if (rc) {
        VG_ERROR(MOD, "cannot open the streams under %s: %s", a.cfg.data_dir, vg_strerror(rc));
        goto cleanup;
    }
    vg_ingest_opts_t io = {a.telemetry, a.deadletter, a.cfg.telemetry_topic, NULL, NULL};
    rc = vg_ingest_new(&io, &a.ingest);
    if (rc)
        goto cleanup;
    vg_server_opts_t so;
    vg_server_opts_default(&so);
    so.listen_host = a.cfg.listen_host;
    so.listen_port = a.cfg.listen_port;
    so.ws_host = a.cfg.ws_listen.off ? NULL : a.cfg.ws_listen.host;
    so.ws_port = a.cfg.ws_listen.port;
    so.http_host = a.cfg.http_listen.off ? NULL : a.cfg.http_listen.host;
    so.http_port = a.cfg.http_listen.port;
    so.workers = a.cfg.workers;
    so.max_packet_size = a.cfg.max_packet_size;
    so.max_connections = a.cfg.max_connections;
    so.max_inflight = a.cfg.max_inflight;
    so.max_subs_per_packet = a.cfg.max_subs_per_packet;
    so.max_outbuf = a.cfg.max_outbuf;
    so.max_keepalive_s = a.cfg.max_keepalive;
    so.max_inflight_out = a.cfg.max_inflight_out;
    so.max_connections_ws = a.cfg.max_ws_connections;
    so.max_connections_http = a.cfg.max_http_connections;
    so.max_queued_per_client = a.cfg.max_queued_per_client;
    so.max_queued_bytes = a.cfg.max_queued_bytes;
    so.topic_alias_max = (uint16_t)a.cfg.topic_alias_max;
    so.max_session_expiry_s = a.cfg.max_session_expiry;
    so.max_retained = a.cfg.max_retained;
    so.max_retained_bytes = a.cfg.max_retained_bytes;
    char state_path[PATH_MAX + 32];
    snprintf(state_path, sizeof state_path, "%s/gateway.db", a.cfg.data_dir);
    so.state_path = state_path;
    so.connect_timeout_ms = a.cfg.connect_timeout_ms;
    so.telemetry_topic = a.cfg.telemetry_topic;
    so.ingest = vg_ingest_publish;
    so.ingest_ctx = a.ingest;
    so.stats = stats_json;
    so.stats_ctx = &a;
    rc = vg_server_new(&so, &a.server);
    if (rc) {
        VG_ERROR(MOD, "cannot start the gateway (MQTT %s:%u, WebSocket %s:%u, HTTP %s:%u): %s", a.cfg.listen_host,
                 a.cfg.listen_port, so.ws_host ? so.ws_host : "off", so.ws_port, so.http_host ? so.http_host : "off",
                 so.http_port, vg_strerror(rc));
        goto cleanup;
    }
    vg_ingest_set_complete(a.ingest, complete_to_server, a.server);
    vg_processor_opts_t po = {0};
    po.data_dir = a.cfg.data_dir;
    po.telemetry = a.telemetry;
    po.alerts = a.alerts;
    po.threshold.high = a.cfg.high_hr;
    po.threshold.low = a.cfg.low_hr;
    po.checkpoint_interval_ms = a.cfg.checkpoint_interval_ms;
    po.publish = publish_alert;
    po.publish_ctx = &a;
    vg_processor_t *proc = NULL;
    rc = vg_processor_start(&po, &proc);
    if (rc) {
        VG_ERROR(MOD, "cannot start the processors: %s", vg_strerror(rc));
        goto cleanup;
    }
    atomic_store(&a.proc, proc);
    rc = vg_server_start(a.server);
    if (rc)
        goto cleanup;
    VG_INFO(MOD, "listening on %s:%u (mqtt), %s:%u (mqtt over websocket), %s:%u (http publish), data in %s, %u shards, fsync %s",
            a.cfg.listen_host, a.cfg.listen_port, so.ws_host ? so.ws_host : "off", so.ws_port,
            so.http_host ? so.http_host : "off", so.http_port, a.cfg.data_dir, vg_log_shard_count(a.telemetry),
            a.cfg.fsync == VG_FSYNC_ALWAYS ? "always" : a.cfg.fsync == VG_FSYNC_NONE ? "none" : "interval");

    char stats[8192];
    for (;;) {
        struct timespec ts = {a.cfg.stats_interval_ms / 1000, (long)(a.cfg.stats_interval_ms % 1000) * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            VG_INFO(MOD, "signal %d: shutting down", sig);
            break;
        }
        size_t n = stats_json(&a, stats, sizeof stats);
        vg_server_publish(a.server, "$SYS/vigil/stats", 16, stats, n, 0);
    }
    exit_code = 0;
cleanup:
    if (a.server)
        vg_server_quiesce(a.server);
    vg_processor_stop(atomic_exchange(&a.proc, NULL));
    vg_log_close(a.telemetry);
    vg_log_close(a.deadletter);
    vg_log_close(a.alerts);
    a.telemetry = a.deadletter = a.alerts = NULL;
    if (a.server) {
        vg_server_stats_t ss;
        vg_server_stats(a.server, &ss);
        vg_server_stop(a.server);
        vg_ingest_stats_t is;
        vg_ingest_stats(a.ingest, &is);
        VG_INFO(MOD, "stopped: %llu connections served, %llu publishes, %llu telemetry records, %llu dead letters",
                (unsigned long long)ss.connections_total, (unsigned long long)ss.publish_received,
                (unsigned long long)is.accepted, (unsigned long long)is.deadletter);
    }
    vg_server_free(a.server);
    vg_ingest_free(a.ingest);
    if (lock_fd >= 0)
        close(lock_fd);
    return exit_code;
}
