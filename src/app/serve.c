/* serve.c — `vigil serve`: builds the pipeline from the config, runs it until
 * SIGINT/SIGTERM, then shuts it down in the order that loses nothing:
 *   1. the gateway stops accepting and reading (no new work);
 *   2. processors stop where they are and checkpoint once their alerts are
 *      durable; then webhook delivery stops (a request in flight is
 *      abandoned, to be sent again) and saves its cursors — it reads the
 *      alerts stream and writes dead letters, so it stops before both close;
 *   3. the telemetry and dead-letter streams commit what is pending, which
 *      releases the last PUBACKs;
 *   4. the alerts stream commits (its callbacks publish on MQTT);
 *   5. the gateway flushes its output and closes every connection.
 * This file and main.c are the only places that know every module. */
#include "app/serve.h"

#include "alert/alert.h"
#include "alert/webhook.h"
#include "app/detectcfg.h"
#include "app/config.h"
#include "app/security.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/rlimit.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "ingest/ingest.h"
#include "gateway/server.h"
#include "proc/processor.h"
#include "store/kv.h"
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
    vg_security_t *sec; /* TLS context and the device-identity hooks */
    /* NULL until started and again once stopping: the stats hook runs on
     * worker threads and must never see a processor being torn down. */
    _Atomic(vg_processor_t *) proc;
    _Atomic(vg_webhook_t *) webhook; /* the same rule as proc */
    vg_detectcfg_t detect;           /* thresholds, global and per device */
    char ack_result_topic[300];      /* <control topic>/result */
} app_t;

/* The telemetry topic's hook: every PUBLISH on it goes to the ingest (which
 * completes the token once the record is durable). */
static int ingest_hook(void *ctx, const vg_server_pub_t *pub, uint64_t token)
{
    size_t idlen = 0;
    const char *identity = vg_security_device_of(pub->principal, &idlen);
    return vg_ingest_publish(ctx, pub->client_id, pub->client_id_len, identity, idlen, pub->payload, pub->payload_len,
                             pub->user_props, pub->user_props_len, pub->arrival_ms, token);
}

static void complete_to_server(void *ctx, uint64_t token, int status)
{
    vg_server_complete(ctx, token, status);
}

static void publish_alert(void *ctx, const char *topic, size_t tlen, const char *payload, size_t plen)
{
    app_t *a = ctx;
    vg_server_publish(a->server, topic, tlen, payload, plen, 1);
}

/* An operator's acknowledgement: {"alertId":"<16 hex>","deviceId":"...",
 * "by":"...","note":"..."} on the control topic. The outcome is published on
 * <control topic>/result; a QoS 1 PUBLISH is acknowledged once the
 * ACKNOWLEDGED event is durable (or the request was judged invalid). */
static void ack_result(app_t *a, const char *status, const char *why, uint64_t alert_id, const char *dev,
                       size_t dev_len)
{
    char devesc[VG_EVENT_MAX_DEVICE_ID * 6 + 1] = "", whyesc[512] = "";
    if (dev && dev_len && vg_json_escape(dev, dev_len, devesc, sizeof devesc) < 0)
        devesc[0] = '\0';
    if (why && vg_json_escape(why, strlen(why), whyesc, sizeof whyesc) < 0)
        whyesc[0] = '\0';
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "{\"alertId\":\"%016llx\",\"deviceId\":\"%s\",\"status\":\"%s\"%s%s%s}",
                     (unsigned long long)alert_id, devesc, status, why ? ",\"reason\":\"" : "", whyesc,
                     why ? "\"" : "");
    if (n > 0 && (size_t)n < sizeof buf)
        vg_server_publish(a->server, a->ack_result_topic, strlen(a->ack_result_topic), buf, (size_t)n, 1);
}

static void ack_done(void *ctx, uint64_t token, int status, uint64_t alert_id, const char *dev, size_t dev_len)
{
    app_t *a = ctx;
    const char *st = status == VG_OK           ? "acknowledged"
                     : status == VG_ENOTFOUND  ? "not_found"
                     : status == VG_EEXIST     ? "already_acknowledged"
                                               : "failed";
    ack_result(a, st, status == VG_ENOTFOUND ? "no open alert with that id on that device" : NULL, alert_id, dev,
               dev_len);
    if (token)
        vg_server_complete(a->server, token, status == VG_OK || status == VG_ENOTFOUND || status == VG_EEXIST
                                                 ? VG_OK
                                                 : status);
}

static int control_hook(void *ctx, const vg_server_pub_t *pub, uint64_t token)
{
    app_t *a = ctx;
    const char *client_id = pub->client_id;
    size_t client_id_len = pub->client_id_len;
    const uint8_t *payload = pub->payload;
    size_t len = pub->payload_len;
    vg_json_member_t m[16];
    size_t n = 0;
    const char *why = NULL;
    uint64_t alert_id = 0;
    char dev[VG_EVENT_MAX_DEVICE_ID + 1], by[65] = "", note[257] = "";
    size_t dev_len = 0;
    if (vg_json_object((const char *)payload, len, 4, m, 16, &n) != VG_OK) {
        why = "payload must be a JSON object {\"alertId\",\"deviceId\",\"by\",\"note\"}";
        goto reject;
    }
    const vg_json_member_t *aid = vg_json_find(m, n, "alertId"), *did = vg_json_find(m, n, "deviceId");
    const vg_json_member_t *mby = vg_json_find(m, n, "by"), *mnote = vg_json_find(m, n, "note");
    size_t l = 0;
    char idtxt[32];
    if (!aid || aid->type != VG_JSON_STRING ||
        vg_json_unescape(aid->raw, aid->raw_len, idtxt, sizeof idtxt, &l) != VG_OK ||
        vg_alert_id_parse(idtxt, l, &alert_id) != VG_OK) {
        why = "alertId must be the alert's 16 hex digits";
        goto reject;
    }
    if (!did || did->type != VG_JSON_STRING ||
        vg_json_unescape(did->raw, did->raw_len, dev, sizeof dev, &dev_len) != VG_OK || dev_len == 0) {
        why = "deviceId must be the alert's device id";
        goto reject;
    }
    if (mby && mby->type == VG_JSON_STRING && vg_json_unescape(mby->raw, mby->raw_len, by, sizeof by, &l) != VG_OK)
        snprintf(by, sizeof by, "%.*s", (int)client_id_len, client_id);
    if (!by[0])
        snprintf(by, sizeof by, "%.*s", (int)client_id_len, client_id);
    if (mnote && mnote->type == VG_JSON_STRING)
        vg_json_unescape(mnote->raw, mnote->raw_len, note, sizeof note, &l);
    vg_processor_t *p = atomic_load(&a->proc);
    int rc = p ? vg_processor_ack(p, dev, dev_len, alert_id, by, note, token) : VG_ECLOSED;
    if (rc == VG_OK)
        return VG_OK; /* ack_done reports it */
    why = rc == VG_EINVAL ? "deviceId is too long" : rc == VG_ENOMEM ? "out of memory" : "the alert processor is not running";
reject:
    ack_result(a, "invalid", why, alert_id, dev_len ? dev : NULL, dev_len);
    if (token)
        vg_server_complete(a->server, token, VG_OK);
    return VG_OK;
}

typedef struct {
    char *buf;
    size_t cap, n;
    bool first;
} jw_t;

/* A member that does not fit is left out whole, so the object stays valid
 * JSON however many endpoints and counters there are. */
static void jw_u64(jw_t *w, const char *key, uint64_t v)
{
    if (w->n >= w->cap)
        return;
    int k = snprintf(w->buf + w->n, w->cap - w->n, "%s\"%s\":%llu", w->first ? "" : ",", key, (unsigned long long)v);
    if (k <= 0 || (size_t)k >= w->cap - w->n) {
        w->buf[w->n] = '\0';
        return;
    }
    w->n += (size_t)k;
    w->first = false;
}

static void jw_str(jw_t *w, const char *key, const char *v)
{
    char esc[6 * 128 + 1];
    int e = vg_json_escape(v, strnlen(v, 128), esc, sizeof esc);
    if (e < 0 || w->n >= w->cap)
        return;
    int k = snprintf(w->buf + w->n, w->cap - w->n, "%s\"%s\":\"%s\"", w->first ? "" : ",", key, esc);
    if (k <= 0 || (size_t)k >= w->cap - w->n) {
        w->buf[w->n] = '\0';
        return;
    }
    w->n += (size_t)k;
    w->first = false;
}

/* webhook.<name>.<counter> for every endpoint. */
static void jw_webhooks(jw_t *w, vg_webhook_t *wh)
{
    char key[96];
    for (uint32_t i = 0; i < vg_webhook_count(wh); i++) {
        vg_webhook_stats_t st;
        vg_webhook_stats(wh, i, &st);
#define WHKEY(label, v)                                                                                                \
    snprintf(key, sizeof key, "webhook.%s.%s", st.name, label);                                                        \
    jw_u64(w, key, v)
        WHKEY("delivered", st.delivered);
        WHKEY("attempts", st.attempts);
        WHKEY("failures", st.failures);
        WHKEY("rejected", st.rejected);
        WHKEY("pending", st.pending);
        WHKEY("consecutive_failures", st.consecutive_failures);
        WHKEY("last_status", (uint64_t)st.last_status);
        WHKEY("last_latency_ms", st.last_latency_ms);
        WHKEY("in_backoff", st.in_backoff);
#undef WHKEY
        snprintf(key, sizeof key, "webhook.%s.last_error", st.name);
        jw_str(w, key, st.last_error);
    }
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
    /* retention (stream/log.h) */
    LOGKEY(stored_bytes, "stored_bytes");
    LOGKEY(trimmed_segments, "trimmed_segments");
    LOGKEY(trimmed_records, "trimmed_records");
    LOGKEY(trimmed_bytes, "trimmed_bytes");
    LOGKEY(trim_errors, "trim_errors");
    LOGKEY(reader_skipped, "reader_skipped");
    LOGKEY(oldest_age_ms, "oldest_age_ms");
    /* health: a full disk pauses the stream (stream/log.h) */
    LOGKEY(disk_full_pauses, "disk_full_pauses");
    LOGKEY(disk_full_retries, "disk_full_retries");
    LOGKEY(disk_full_ms, "disk_full_ms");
#undef LOGKEY
    snprintf(key, sizeof key, "%s.state", prefix);
    jw_str(w, key, vg_log_state_name(ls.state));
    for (uint32_t i = 0; i < vg_log_shard_count(log); i++) {
        snprintf(key, sizeof key, "%s.shard.%u.first_seq", prefix, i);
        jw_u64(w, key, vg_log_first_seq(log, i));
    }
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
    /* health: the worst of the three streams and the state store — ok,
     * disk_full (writes paused, nothing acknowledged that needs them, resumes
     * by itself) or failed (an fdatasync failed: restart needed). */
    {
        int worst = 0; /* 0 ok, 1 disk full, 2 failed */
        vg_log_t *logs[3] = {a->telemetry, a->alerts, a->deadletter};
        for (int i = 0; i < 3; i++) {
            vg_log_stats_t ls;
            vg_log_stats(logs[i], &ls);
            int v = ls.state == VG_LOG_FAILED ? 2 : ls.state == VG_LOG_DISK_FULL ? 1 : 0;
            worst = v > worst ? v : worst;
        }
        int kv = ss.store_state == VG_KV_FAILED ? 2 : ss.store_state == VG_KV_DISK_FULL ? 1 : 0;
        worst = kv > worst ? kv : worst;
        jw_str(&w, "health", worst == 2 ? "failed" : worst == 1 ? "disk_full" : "ok");
        jw_str(&w, "store.state", ss.store_state < 0                  ? "none"
                                  : ss.store_state == VG_KV_DISK_FULL ? "disk_full"
                                  : ss.store_state == VG_KV_FAILED    ? "failed"
                                                                      : "ok");
        jw_u64(&w, "store.pending_ops", ss.store_pending_ops);
        jw_u64(&w, "store.disk_full_pauses", ss.store_disk_full_pauses);
        jw_u64(&w, "store.disk_full_retries", ss.store_disk_full_retries);
        jw_u64(&w, "store.disk_full_ms", ss.store_disk_full_ms);
    }
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
    jw_u64(&w, "publish.dropped_qos0_outbuf", ss.dropped_qos0_outbuf);
    jw_u64(&w, "publish.deferred_outbuf", ss.deferred_outbuf);
    jw_u64(&w, "publish.qos2_duplicates", ss.qos2_duplicates);
    jw_u64(&w, "wills.published", ss.wills_published);
    jw_u64(&w, "retained", ss.retained);
    jw_u64(&w, "retained.rejected", ss.retained_rejected);
    jw_u64(&w, "state.errors", ss.store_errors);
    jw_u64(&w, "ws.connections", ss.ws_connections);
    jw_u64(&w, "http.requests", ss.http_requests);
    jw_u64(&w, "http.errors", ss.http_errors);
    jw_u64(&w, "connections.lingering", ss.lingering);
    jw_u64(&w, "linger.closes", ss.linger_closes);
    jw_u64(&w, "linger.deadline", ss.linger_deadline);
    jw_u64(&w, "linger.overflow", ss.linger_overflow);
    jw_u64(&w, "auth.accepted", ss.auth_accepted);
    jw_u64(&w, "auth.refused", ss.auth_refused);
    static const char *const act[4] = {"publish", "subscribe", "receive", "retain"};
    for (int k = 0; k < 4; k++) {
        snprintf(key, sizeof key, "policy.denied.%s", act[k]);
        jw_u64(&w, key, ss.denied[k]);
    }
    jw_u64(&w, "limits.connections_refused", ss.rate_refused);
    jw_u64(&w, "limits.publish_throttled", ss.publish_throttled);
    if (a->sec) {
        vg_security_stats_t sst;
        vg_security_stats(a->sec, &sst);
        jw_u64(&w, "auth.ok.certificate", sst.auth_ok_certificate);
        jw_u64(&w, "auth.ok.password", sst.auth_ok_password);
        jw_u64(&w, "auth.ok.token", sst.auth_ok_token);
        jw_u64(&w, "auth.ok.anonymous", sst.auth_ok_anonymous);
        for (int r = 0; r < VG_SEC_FAIL__COUNT; r++) {
            snprintf(key, sizeof key, "auth.refused.%s", vg_security_fail_name((vg_security_fail_t)r));
            jw_u64(&w, key, sst.auth_fail[r]);
        }
        jw_u64(&w, "auth.pending", sst.auth_pending);
        jw_u64(&w, "auth.delayed", sst.auth_delayed);
        jw_u64(&w, "registry.devices", sst.devices);
        jw_u64(&w, "registry.jitr_registered", sst.jitr_registered);
        jw_u64(&w, "registry.revoked_disconnects", sst.revoked_disconnects);
        jw_u64(&w, "limits.connection_rate_refused", sst.conn_rate_refused);
        jw_u64(&w, "limits.connections_per_source_refused", sst.conn_max_refused);
        jw_u64(&w, "audit.written", sst.audit_written);
        jw_u64(&w, "audit.dropped", sst.audit_dropped);
    }
    jw_u64(&w, "tls.handshakes", ss.tls_handshakes);
    jw_u64(&w, "tls.resumed", ss.tls_resumed);
    jw_u64(&w, "tls.alpn_mqtt", ss.tls_alpn_mqtt);
    for (int r = 0; r < VG_TLS_FAIL__COUNT; r++) {
        snprintf(key, sizeof key, "tls.refused.%s", vg_tls_fail_name((vg_tls_fail_t)r));
        jw_u64(&w, key, ss.tls_failures[r]);
    }
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
        jw_u64(&w, "proc.ticks", ps.ticks);
        jw_u64(&w, "alerts.emitted", ps.alerts);
        jw_u64(&w, "alerts.opened", ps.opened);
        jw_u64(&w, "alerts.updated", ps.updated);
        jw_u64(&w, "alerts.resolved", ps.resolved);
        jw_u64(&w, "alerts.acknowledged", ps.acknowledged);
        jw_u64(&w, "alerts.open", ps.open_alerts);
        jw_u64(&w, "alerts.replayed", ps.alerts_replayed);
        jw_u64(&w, "alerts.slot_overflow", ps.slot_overflow);
        jw_u64(&w, "alerts.emit_errors", ps.emit_errors);
        for (int t = 1; t < VG_ALERT__COUNT; t++) {
            snprintf(key, sizeof key, "alerts.type.%s", vg_alert_type_name((vg_alert_type_t)t));
            jw_u64(&w, key, ps.by_type[t]);
        }
    }
    vg_webhook_t *wh = atomic_load(&a->webhook);
    if (wh)
        jw_webhooks(&w, wh);
    for (int t = 0; t < VG_MEM__COUNT; t++) {
        snprintf(key, sizeof key, "memory.%s", vg_mem_tag_name((vg_mem_tag_t)t));
        jw_u64(&w, key, vg_mem_used((vg_mem_tag_t)t));
    }
    size_t n = w.n < cap - 2 ? w.n : cap - 2;
    buf[n++] = '}';
    buf[n] = '\0';
    return n;
}

/* The open-file soft limit, raised to the hard limit (core/rlimit). */
static rlim_t raise_nofile(void)
{
    uint64_t limit = 1024;
    vg_rlimit_raise_nofile(0, &limit);
    return limit > (uint64_t)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)limit;
}

static int open_streams(app_t *a)
{
    vg_log_opts_t lo;
    vg_log_opts_default(&lo);
    lo.shards = a->cfg.shards;
    lo.fsync = a->cfg.fsync;
    lo.fsync_interval_ms = a->cfg.fsync_interval_ms;
    lo.segment_bytes = a->cfg.segment_bytes;
    lo.prealloc_bytes = a->cfg.segment_prealloc_bytes ? a->cfg.segment_prealloc_bytes : VG_LOG_PREALLOC_OFF;
    lo.max_pending_bytes = a->cfg.max_pending_bytes;
    /* Telemetry is appended only by the I/O workers, which flush it before
     * they sleep (leader commit); the other streams have no such caller. */
    lo.flush_commits = true;
    lo.retention_ms = a->cfg.retention_telemetry_ms;
    lo.retention_bytes = a->cfg.retention_bytes_telemetry;
    int rc = vg_log_open(a->cfg.data_dir, "telemetry", &lo, &a->telemetry);
    lo.flush_commits = false;
    if (rc)
        return rc;
    /* Alerts line up with telemetry shard for shard: a processor owns both. */
    lo.shards = vg_log_shard_count(a->telemetry);
    lo.retention_ms = a->cfg.retention_alerts_ms;
    lo.retention_bytes = a->cfg.retention_bytes_alerts;
    rc = vg_log_open(a->cfg.data_dir, "alerts", &lo, &a->alerts);
    if (rc)
        return rc;
    lo.shards = 1;
    lo.retention_ms = a->cfg.retention_deadletter_ms;
    lo.retention_bytes = a->cfg.retention_bytes_deadletter;
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
    vg_detectcfg_init(&a.detect);
    {
        vg_detect_override_t ov[2];
        size_t nov = 0;
        if (a.cfg.rest_high_bpm)
            ov[nov++] = (vg_detect_override_t){"rest_high_bpm", a.cfg.rest_high_bpm};
        if (a.cfg.rest_low_bpm)
            ov[nov++] = (vg_detect_override_t){"rest_low_bpm", a.cfg.rest_low_bpm};
        if (vg_detectcfg_load(&a.detect, a.cfg.detect_config, ov, nov, stderr) != VG_OK) {
            vg_detectcfg_free(&a.detect);
            return 2;
        }
    }

    /* Signals are taken synchronously by the main thread; every thread
     * created from here on inherits the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
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
    so.slow_consumer_ms = a.cfg.slow_consumer_ms;
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
    so.state_max_pending_bytes = (size_t)a.cfg.store_max_pending_bytes;
    so.connect_timeout_ms = a.cfg.connect_timeout_ms;
    so.linger_ms = a.cfg.linger_ms;
    so.linger_bytes = (size_t)a.cfg.linger_bytes;
    /* What the gateway does with application topics: telemetry goes to the
     * ingest (committed on the worker before it sleeps), operator commands
     * on the control topic to the alert processor. Every message is also
     * routed to subscribers. */
    vg_server_hook_t hooks[2];
    uint32_t nhooks = 0;
    if (a.cfg.telemetry_topic[0])
        hooks[nhooks++] = (vg_server_hook_t){
            .filter = a.cfg.telemetry_topic, .fn = ingest_hook, .flush = vg_ingest_flush, .ctx = a.ingest};
    snprintf(a.ack_result_topic, sizeof a.ack_result_topic, "%s/result", a.cfg.control_topic);
    if (a.cfg.control_topic[0])
        hooks[nhooks++] = (vg_server_hook_t){.filter = a.cfg.control_topic, .fn = control_hook, .ctx = &a};
    so.hooks = hooks;
    so.nhooks = nhooks;
    if (vg_security_open(&a.cfg, &a.sec, stderr) != VG_OK)
        goto cleanup;
    vg_security_server_opts(a.sec, &a.cfg, &so);
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
    vg_security_attach(a.sec, a.server);
    vg_processor_opts_t po = {0};
    po.data_dir = a.cfg.data_dir;
    po.telemetry = a.telemetry;
    po.alerts = a.alerts;
    po.cfg = &a.detect.global;
    po.device_cfg = &a.detect.devices;
    po.ack_done = ack_done;
    po.ack_ctx = &a;
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
    vg_webhook_opts_t wo = {.data_dir = a.cfg.data_dir, .alerts = a.alerts, .deadletter = a.deadletter};
    wo.endpoints = a.cfg.webhooks;
    wo.nendpoints = a.cfg.nwebhooks;
    wo.timeout_ms = a.cfg.webhook_timeout_ms;
    wo.retry_base_ms = a.cfg.webhook_retry_base_ms;
    wo.retry_max_ms = a.cfg.webhook_retry_max_ms;
    vg_webhook_t *wh = NULL;
    rc = vg_webhook_start(&wo, &wh);
    if (rc) {
        VG_ERROR(MOD, "cannot start webhook delivery: %s", vg_strerror(rc));
        goto cleanup;
    }
    atomic_store(&a.webhook, wh);
    rc = vg_server_start(a.server);
    if (rc)
        goto cleanup;
    VG_INFO(MOD, "listening on %s:%u (mqtt), %s:%u (mqtt over websocket), %s:%u (http publish), data in %s, %u shards, fsync %s",
            a.cfg.listen_host, a.cfg.listen_port, so.ws_host ? so.ws_host : "off", so.ws_port,
            so.http_host ? so.http_host : "off", so.http_port, a.cfg.data_dir, vg_log_shard_count(a.telemetry),
            a.cfg.fsync == VG_FSYNC_ALWAYS ? "always" : a.cfg.fsync == VG_FSYNC_NONE ? "none" : "interval");
    if (vg_security_tls_on(a.sec))
        VG_INFO(MOD, "TLS on %s:%u (mqtts), %s:%u (wss), %s:%u (https)", so.mqtts_host ? so.mqtts_host : "off",
                so.mqtts_port, so.wss_host ? so.wss_host : "off", so.wss_port, so.https_host ? so.https_host : "off",
                so.https_port);
    else
        VG_INFO(MOD, "TLS off: no server certificate (run `vigil ca init`, or give --tls-cert and --tls-key)");

    char stats[16384];
    for (;;) {
        struct timespec ts = {a.cfg.stats_interval_ms / 1000, (long)(a.cfg.stats_interval_ms % 1000) * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            VG_INFO(MOD, "signal %d: shutting down", sig);
            break;
        }
        if (sig == SIGHUP) {
            vg_security_reload(a.sec);
            continue;
        }
        size_t n = stats_json(&a, stats, sizeof stats);
        vg_server_publish(a.server, "$SYS/vigil/stats", 16, stats, n, 0);
    }
    exit_code = 0;
cleanup:
    if (a.server)
        vg_server_quiesce(a.server);
    vg_processor_stop(atomic_exchange(&a.proc, NULL));
    vg_webhook_stop(atomic_exchange(&a.webhook, NULL));
    vg_log_close(a.telemetry);
    vg_log_close(a.deadletter);
    vg_log_close(a.alerts);
    a.telemetry = a.deadletter = a.alerts = NULL;
    if (a.server) {
        vg_server_stats_t ss;
        vg_server_stats(a.server, &ss);
        vg_server_stop(a.server);
        vg_security_stop(a.sec);
        vg_ingest_stats_t is;
        vg_ingest_stats(a.ingest, &is);
        VG_INFO(MOD, "stopped: %llu connections served, %llu publishes, %llu telemetry records, %llu dead letters",
                (unsigned long long)ss.connections_total, (unsigned long long)ss.publish_received,
                (unsigned long long)is.accepted, (unsigned long long)is.deadletter);
    }
    vg_server_free(a.server);
    vg_security_close(a.sec);
    vg_ingest_free(a.ingest);
    vg_detectcfg_free(&a.detect);
    if (lock_fd >= 0)
        close(lock_fd);
    return exit_code;
}
