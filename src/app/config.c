/* config.c — see config.h. */
#include "app/config.h"

#include "core/diag.h"
#include "core/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* T_WEBHOOK is the one repeatable type: each occurrence adds (or, by name,
 * replaces) an entry of a list instead of overwriting one value. */
/* T_DURATION: "<n>ms|s|m|h|d" stored as uint64_t milliseconds; T_BYTES:
 * "<n>[k|M|G|T]" (powers of 1024) stored as uint64_t bytes. */
typedef enum {
    T_STR,
    T_U32,
    T_U64,
    T_DOUBLE,
    T_LISTEN,
    T_ADDR,
    T_FSYNC,
    T_LEVEL,
    T_BOOL,
    T_PATH,
    T_WEBHOOK,
    T_DURATION,
    T_BYTES
} opt_type_t;

typedef struct {
    const char *name; /* flag name without "--" */
    opt_type_t type;
    size_t off;
    size_t size; /* for strings */
    double min, max;
    const char *arg;
    const char *help;
} opt_t;

#define OFF(f) offsetof(vg_config_t, f)
#define SZ(f) sizeof(((vg_config_t *)0)->f)

static const opt_t opts[] = {
    {"listen", T_LISTEN, 0, 0, 0, 0, "HOST:PORT", "MQTT listener (default 127.0.0.1:1883)"},
    {"ws-listen", T_ADDR, OFF(ws_listen), 0, 0, 0, "HOST:PORT|off", "MQTT over WebSocket listener (default 127.0.0.1:8083)"},
    {"http-listen", T_ADDR, OFF(http_listen), 0, 0, 0, "HOST:PORT|off",
     "HTTP listener: POST /topics/<topic>?qos=0|1 (default 127.0.0.1:8080)"},
    {"tls-listen", T_ADDR, OFF(tls_listen), 0, 0, 0, "HOST:PORT|off",
     "MQTT over TLS listener (default 127.0.0.1:8883; on when a server certificate is available)"},
    {"wss-listen", T_ADDR, OFF(wss_listen), 0, 0, 0, "HOST:PORT|off",
     "MQTT over secure WebSocket listener (default 127.0.0.1:8084; on with a certificate)"},
    {"https-listen", T_ADDR, OFF(https_listen), 0, 0, 0, "HOST:PORT|off",
     "HTTPS publish listener (default 127.0.0.1:8443; on with a certificate)"},
    {"allow-anonymous", T_BOOL, OFF(allow_anonymous), 0, 0, 0, "true|false",
     "accept connections without credentials on every listener, not only on loopback ones (false; warned at "
     "every start)"},
    {"conn-rate-per-source", T_DOUBLE, OFF(conn_rate_per_source), 0, 0, 1e6, "N",
     "new connections per second from one source address (burst twice that); more are refused, counted; 0 = no "
     "limit (0)"},
    {"max-connections-per-source", T_U32, OFF(max_connections_per_source), 0, 0, 1e9, "N",
     "open connections from one source address; more are refused, counted; 0 = no limit (0)"},
    {"auth-fail-delay-ms", T_U32, OFF(auth_fail_delay_ms), 0, 0, 60000, "MS",
     "a client id or source that keeps failing authentication waits this long for its refusal, doubling per "
     "failure up to 30 s (1000; 0 = no delay)"},
    {"publish-rate", T_DOUBLE, OFF(publish_rate), 0, 0, 1e7, "N",
     "PUBLISHes per second per connection (IoT Core: 100); a faster client is read more slowly (backpressure), "
     "counted; 0 = no limit (0)"},
    {"tls-cert", T_PATH, OFF(tls_cert), SZ(tls_cert), 0, 0, "FILE",
     "server certificate chain, PEM (default DATA-DIR/pki/server.crt, made by `vigil ca init`)"},
    {"tls-key", T_PATH, OFF(tls_key), SZ(tls_key), 0, 0, "FILE", "its private key, PEM (default DATA-DIR/pki/server.key)"},
    {"tls-client-ca", T_PATH, OFF(tls_client_ca), SZ(tls_client_ca), 0, 0, "FILE",
     "CA certificates device certificates must chain to, PEM (default DATA-DIR/pki/ca.crt)"},
    {"tls-client-auth", T_STR, OFF(tls_client_auth), SZ(tls_client_auth), 0, 0, "MODE",
     "none | optional | required: client certificates on the TLS listeners (required when there is a client CA)"},
    {"tls-handshake-timeout-ms", T_U32, OFF(tls_handshake_timeout_ms), 0, 10, 600000, "MS",
     "close a connection whose TLS handshake is not done within this time (5000)"},
    {"data-dir", T_PATH, OFF(data_dir), SZ(data_dir), 0, 0, "DIR", "where streams and checkpoints live (default ./data)"},
    {"config", T_PATH, OFF(config_file), SZ(config_file), 0, 0, "FILE", "read settings from FILE (key = value lines)"},
    {"workers", T_U32, OFF(workers), 0, 0, 64, "N", "I/O threads (default: one per core)"},
    {"shards", T_U32, OFF(shards), 0, 1, 256, "N", "shards of a new telemetry stream (default 4)"},
    {"fsync", T_FSYNC, 0, 0, 0, 0, "POLICY", "always | none | interval:MS (default always: PUBACK after fdatasync)"},
    {"segment-bytes", T_U64, OFF(segment_bytes), 0, 4096, 1e12, "BYTES", "roll stream segments at this size (64 MiB)"},
    {"segment-prealloc-bytes", T_U64, OFF(segment_prealloc_bytes), 0, 0, 1073741824.0, "BYTES",
     "zeros written ahead of the data in each shard's active segment, so a commit's fdatasync skips the journal "
     "(1 MiB; 0 = off)"},
    /* ---- retention (issue 9): see README "On disk" ---- */
    {"retention-telemetry", T_DURATION, OFF(retention_telemetry_ms), 0, 1000, 31536000000.0, "DURATION",
     "delete telemetry older than this, whole segments, oldest first (24h; 1s-365d; units ms s m h d)"},
    {"retention-alerts", T_DURATION, OFF(retention_alerts_ms), 0, 1000, 31536000000.0, "DURATION",
     "delete alert events older than this (365d: the record a clinician looks back on)"},
    {"retention-deadletter", T_DURATION, OFF(retention_deadletter_ms), 0, 1000, 31536000000.0, "DURATION",
     "delete dead letters older than this (7d)"},
    {"retention-bytes-telemetry", T_BYTES, OFF(retention_bytes_telemetry), 0, 0, 1.2e18, "BYTES",
     "also delete the oldest telemetry segments while the stream is larger; k/M/G/T suffixes, 0 = no cap (0)"},
    {"retention-bytes-alerts", T_BYTES, OFF(retention_bytes_alerts), 0, 0, 1.2e18, "BYTES",
     "size cap of the alerts stream, 0 = none (0)"},
    {"retention-bytes-deadletter", T_BYTES, OFF(retention_bytes_deadletter), 0, 0, 1.2e18, "BYTES",
     "size cap of the deadletter stream, 0 = none (0)"},
    /* ---- end retention ---- */
    {"max-pending-bytes", T_U64, OFF(max_pending_bytes), 0, 65536, 1e12, "BYTES",
     "appends wait while this much awaits commit (64 MiB)"},
    {"store-max-pending-bytes", T_BYTES, OFF(store_max_pending_bytes), 0, 65536, 1e12, "BYTES",
     "gateway store (sessions, retained messages): writes queued at most while it cannot commit; a publish "
     "whose copy is refused is not acknowledged and its connection closes (64M)"},
    {"max-packet-size", T_U64, OFF(max_packet_size), 0, 64, 268435460.0, "BYTES",
     "largest MQTT packet accepted (131072, as IoT Core)"},
    {"max-connections", T_U32, OFF(max_connections), 0, 0, 1e9, "N",
     "connection limit (default: what the open-file limit allows)"},
    {"max-ws-connections", T_U32, OFF(max_ws_connections), 0, 0, 1e9, "N",
     "connections on the WebSocket listener, 0 = only the global limit (0)"},
    {"max-http-connections", T_U32, OFF(max_http_connections), 0, 0, 1e9, "N",
     "connections on the HTTP listener, 0 = only the global limit (1000)"},
    {"max-inflight", T_U32, OFF(max_inflight), 0, 1, 65535, "N",
     "unacknowledged QoS 1 publishes per connection before reading pauses (1024)"},
    {"max-subs-per-packet", T_U32, OFF(max_subs_per_packet), 0, 1, 65535, "N",
     "topic filters in one SUBSCRIBE; more closes the connection, counted as too_large (64)"},
    {"max-outbuf", T_U64, OFF(max_outbuf), 0, 1024, 1073741824.0, "BYTES",
     "bytes queued to one client; over it QoS 0 messages to it are dropped and QoS 1/2 wait in its session queue "
     "(4 MiB)"},
    {"slow-consumer-ms", T_U32, OFF(slow_consumer_ms), 0, 1, 86400000, "MS",
     "disconnect a client whose output stays over --max-outbuf this long, as a slow consumer (30000)"},
    {"max-keepalive", T_U32, OFF(max_keepalive), 0, 0, 65535, "S", "cap on client keepalive, 0 = none (default 0)"},
    {"max-inflight-out", T_U32, OFF(max_inflight_out), 0, 1, 65535, "N",
     "unacknowledged QoS 1/2 messages sent to one client (5.0: also its receive maximum) (64)"},
    {"max-queued-per-client", T_U32, OFF(max_queued_per_client), 0, 0, 1e9, "N",
     "messages queued per session beyond the in-flight window; overflow is dropped and counted, 0 = no limit (1000)"},
    {"max-queued-bytes", T_U64, OFF(max_queued_bytes), 0, 0, 1e13, "BYTES",
     "memory budget of all session queues together; overflow is dropped and counted, 0 = no limit (256 MiB)"},
    {"topic-alias-max", T_U32, OFF(topic_alias_max), 0, 0, 65535, "N", "MQTT 5 topic aliases accepted per connection (64)"},
    {"max-session-expiry", T_U32, OFF(max_session_expiry), 0, 0, 4294967295.0, "S",
     "cap on session expiry intervals; 0 = none, 3.1.1 persistent sessions never expire (0)"},
    {"max-retained", T_U64, OFF(max_retained), 0, 0, 1e12, "N", "retained messages held, 0 = no limit (0)"},
    {"max-retained-bytes", T_U64, OFF(max_retained_bytes), 0, 0, 1e13, "BYTES",
     "bytes of retained messages held, 0 = no limit (0)"},
    {"telemetry-topic", T_STR, OFF(telemetry_topic), SZ(telemetry_topic), 0, 0, "TOPIC",
     "topic whose payloads are telemetry events (iot/wearable/data)"},
    {"rest-high-bpm", T_DOUBLE, OFF(rest_high_bpm), 0, 100, 150, "BPM",
     "SUSTAINED_HIGH_HR_AT_REST above this (120, range 100-150)"},
    {"rest-low-bpm", T_DOUBLE, OFF(rest_low_bpm), 0, 30, 50, "BPM",
     "SUSTAINED_LOW_HR_AT_REST below this (40, range 30-50)"},
    {"detect-config", T_PATH, OFF(detect_config), SZ(detect_config), 0, 0, "FILE",
     "detector thresholds, global and per device (docs/detection.md); flags above override its global values"},
    {"control-topic", T_STR, OFF(control_topic), SZ(control_topic), 0, 0, "TOPIC",
     "operators publish alert acknowledgements here (vigil/alerts/ack)"},
    {"connect-timeout-ms", T_U32, OFF(connect_timeout_ms), 0, 10, 3600000, "MS",
     "close connections that send no CONNECT within this time (10000)"},
    {"linger-ms", T_U32, OFF(linger_ms), 0, 0, 600000, "MS",
     "after a DISCONNECT or refusing CONNACK the server sends, read and discard input this long before closing, "
     "so a client still writing reads the answer rather than a reset; 0 = close at once (2000)"},
    {"linger-bytes", T_U64, OFF(linger_bytes), 0, 0, 1e9, "BYTES",
     "close a lingering connection early once it sent this much more (1 MiB)"},
    {"stats-interval-ms", T_U32, OFF(stats_interval_ms), 0, 10, 3600000, "MS",
     "period of the $SYS/vigil/stats publication (1000)"},
    {"checkpoint-interval-ms", T_U32, OFF(checkpoint_interval_ms), 0, 10, 3600000, "MS",
     "processor checkpoint period (1000)"},
    {"log-level", T_LEVEL, 0, 0, 0, 0, "LEVEL", "error | warn | info | debug (info)"},
    {"webhook", T_WEBHOOK, 0, 0, 0, 0, "NAME=URL",
     "POST every alert event to URL (http:// or https://); repeatable, up to 8; NAME [A-Za-z0-9_-]{1,32} names the "
     "delivery cursor; a new endpoint starts at the newest alert, 'NAME=URL from=start' at the oldest"},
    {"webhook-timeout-ms", T_U32, OFF(webhook_timeout_ms), 0, 10, 600000, "MS",
     "webhook request timeout, connect included (5000)"},
    {"webhook-retry-base-ms", T_U32, OFF(webhook_retry_base_ms), 0, 1, 3600000, "MS",
     "first webhook retry delay; doubles per failure, +-20% jitter (500)"},
    {"webhook-retry-max-ms", T_U32, OFF(webhook_retry_max_ms), 0, 1, 3600000, "MS",
     "longest webhook retry delay, Retry-After included (60000)"},
};

#define NOPTS (sizeof opts / sizeof opts[0])

void vg_config_default(vg_config_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
    c->listen_port = 1883;
    snprintf(c->ws_listen.host, sizeof c->ws_listen.host, "127.0.0.1");
    c->ws_listen.port = 8083;
    snprintf(c->http_listen.host, sizeof c->http_listen.host, "127.0.0.1");
    c->http_listen.port = 8080;
    snprintf(c->tls_listen.host, sizeof c->tls_listen.host, "127.0.0.1");
    c->tls_listen.port = 8883;
    snprintf(c->wss_listen.host, sizeof c->wss_listen.host, "127.0.0.1");
    c->wss_listen.port = 8084;
    snprintf(c->https_listen.host, sizeof c->https_listen.host, "127.0.0.1");
    c->https_listen.port = 8443;
    c->tls_handshake_timeout_ms = 5000;
    c->auth_fail_delay_ms = 1000;
    snprintf(c->data_dir, sizeof c->data_dir, "./data");
    c->shards = 4;
    c->fsync = VG_FSYNC_ALWAYS;
    c->segment_bytes = 64ull << 20;
    c->segment_prealloc_bytes = 1ull << 20;
    c->max_pending_bytes = 64ull << 20;
    c->store_max_pending_bytes = 64ull << 20;
    c->retention_telemetry_ms = 24ull * 3600 * 1000;      /* Kinesis' default */
    c->retention_alerts_ms = 365ull * 24 * 3600 * 1000;   /* the maximum: alerts are the clinical record */
    c->retention_deadletter_ms = 7ull * 24 * 3600 * 1000; /* a week to notice and replay */
    c->max_packet_size = 128 * 1024;
    c->max_inflight = 1024;
    c->max_subs_per_packet = 64;
    c->max_outbuf = 4ull << 20;
    c->slow_consumer_ms = 30000;
    c->max_inflight_out = 64;
    c->max_http_connections = 1000;
    c->max_queued_per_client = 1000;
    c->max_queued_bytes = 256ull << 20;
    c->topic_alias_max = 64;
    snprintf(c->telemetry_topic, sizeof c->telemetry_topic, "iot/wearable/data");
    c->rest_high_bpm = 0; /* 0 = not given: the detect config's (default 120) */
    c->rest_low_bpm = 0;
    snprintf(c->control_topic, sizeof c->control_topic, "vigil/alerts/ack");
    c->connect_timeout_ms = 10000;
    c->linger_ms = 2000;
    c->linger_bytes = 1u << 20;
    c->stats_interval_ms = 1000;
    c->checkpoint_interval_ms = 1000;
    c->log_level = VG_LOG_INFO;
    c->webhook_timeout_ms = 5000;
    c->webhook_retry_base_ms = 500;
    c->webhook_retry_max_ms = 60000;
}

/* Flag or file key → option; '_' and '-' are interchangeable. */
static const opt_t *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *o = opts[i].name;
        if (strlen(o) != len)
            continue;
        size_t j = 0;
        for (; j < len; j++) {
            char a = name[j] == '_' ? '-' : name[j];
            if (a != o[j])
                break;
        }
        if (j == len)
            return &opts[i];
    }
    return NULL;
}

static int set_opt(vg_config_t *c, const opt_t *o, const char *v, char *why, size_t whylen)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case T_BOOL: {
        bool yes = !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1");
        bool no = !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0");
        if (!yes && !no) {
            snprintf(why, whylen, "--%s: expected true or false, got '%s'", o->name, v);
            return VG_EINVAL;
        }
        *(bool *)((char *)c + o->off) = yes;
        return VG_OK;
    }
    case T_STR:
    case T_PATH:
        if (!*v || strlen(v) >= o->size) {
            snprintf(why, whylen, "--%s: value empty or too long", o->name);
            return VG_EINVAL;
        }
        memcpy((char *)c + o->off, v, strlen(v) + 1);
        return VG_OK;
    case T_U32:
    case T_U64: {
        if (!isdigit((unsigned char)*v))
            goto bad_number;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || (double)x < o->min || (double)x > o->max)
            goto bad_number;
        if (o->type == T_U32)
            *(uint32_t *)((char *)c + o->off) = (uint32_t)x;
        else
            *(uint64_t *)((char *)c + o->off) = x;
        return VG_OK;
    }
    case T_DURATION:
    case T_BYTES: {
        if (!isdigit((unsigned char)*v))
            goto bad_unit;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno)
            goto bad_unit;
        static const struct {
            const char *unit;
            unsigned long long mul;
        } dur[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}},
          byt[] = {{"", 1}, {"k", 1ull << 10}, {"K", 1ull << 10}, {"M", 1ull << 20}, {"G", 1ull << 30}, {"T", 1ull << 40}};
        unsigned long long mul = 0;
        size_t nu = o->type == T_DURATION ? sizeof dur / sizeof dur[0] : sizeof byt / sizeof byt[0];
        for (size_t k = 0; k < nu; k++) {
            const char *u = o->type == T_DURATION ? dur[k].unit : byt[k].unit;
            if (strcmp(end, u) == 0)
                mul = o->type == T_DURATION ? dur[k].mul : byt[k].mul;
        }
        if (!mul || (x && x > UINT64_MAX / mul) || (double)(x * mul) < o->min || (double)(x * mul) > o->max)
            goto bad_unit;
        *(uint64_t *)((char *)c + o->off) = x * mul;
        return VG_OK;
    }
    case T_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || x < o->min || x > o->max)
            goto bad_number;
        *(double *)((char *)c + o->off) = x;
        return VG_OK;
    }
    case T_LISTEN:
    case T_ADDR: {
        char *host = o->type == T_LISTEN ? c->listen_host : ((vg_listen_addr_t *)((char *)c + o->off))->host;
        uint16_t *portp = o->type == T_LISTEN ? &c->listen_port : &((vg_listen_addr_t *)((char *)c + o->off))->port;
        if (o->type == T_ADDR) {
            bool *offp = &((vg_listen_addr_t *)((char *)c + o->off))->off;
            *offp = strcmp(v, "off") == 0;
            if (*offp)
                return VG_OK;
        }
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->listen_host) {
            snprintf(why, whylen, "--%s: expected HOST:PORT, got '%s'", o->name, v);
            return VG_EINVAL;
        }
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (errno || *end || !colon[1] || port > 65535) {
            snprintf(why, whylen, "--%s: bad port in '%s'", o->name, v);
            return VG_EINVAL;
        }
        size_t hl = (size_t)(colon - v);
        /* [::1]:1883 */
        if (v[0] == '[' && colon[-1] == ']') {
            memcpy(host, v + 1, hl - 2);
            host[hl - 2] = '\0';
        } else {
            memcpy(host, v, hl);
            host[hl] = '\0';
        }
        *portp = (uint16_t)port;
        return VG_OK;
    }
    case T_FSYNC:
        if (strcmp(v, "always") == 0) {
            c->fsync = VG_FSYNC_ALWAYS;
        } else if (strcmp(v, "none") == 0) {
            c->fsync = VG_FSYNC_NONE;
        } else if (strncmp(v, "interval", 8) == 0 && (v[8] == ':' || v[8] == ' ') && isdigit((unsigned char)v[9])) {
            unsigned long ms = strtoul(v + 9, &end, 10);
            if (errno || *end || ms < 1 || ms > 60000)
                goto bad_fsync;
            c->fsync = VG_FSYNC_INTERVAL;
            c->fsync_interval_ms = (uint32_t)ms;
        } else {
            goto bad_fsync;
        }
        return VG_OK;
    case T_LEVEL:
        if (vg_diag_parse_level(v, &c->log_level) != VG_OK) {
            snprintf(why, whylen, "--log-level: expected error|warn|info|debug, got '%s'", v);
            return VG_EINVAL;
        }
        return VG_OK;
    case T_WEBHOOK: {
        vg_webhook_endpoint_t ep;
        if (vg_webhook_endpoint_parse(v, &ep, why, whylen) != VG_OK)
            return VG_EINVAL;
        uint32_t i = 0;
        while (i < c->nwebhooks && strcmp(c->webhooks[i].name, ep.name) != 0)
            i++;
        if (i == VG_WEBHOOK_MAX_ENDPOINTS) {
            snprintf(why, whylen, "--webhook: at most %d endpoints", VG_WEBHOOK_MAX_ENDPOINTS);
            return VG_EINVAL;
        }
        c->webhooks[i] = ep;
        if (i == c->nwebhooks)
            c->nwebhooks++;
        return VG_OK;
    }
    }
    return VG_EINVAL;
bad_number:
    snprintf(why, whylen, "--%s: expected a number in [%g, %g], got '%s'", o->name, o->min, o->max, v);
    return VG_EINVAL;
bad_unit:
    if (o->type == T_DURATION)
        snprintf(why, whylen, "--%s: expected a duration such as 500ms, 2s, 90m, 24h or 7d, from 1s to 365d; got '%s'",
                 o->name, v);
    else
        snprintf(why, whylen, "--%s: expected a size in bytes, optionally with k, M, G or T (0 = no cap); got '%s'",
                 o->name, v);
    return VG_EINVAL;
bad_fsync:
    snprintf(why, whylen, "--fsync: expected always, none or interval:MS (1-60000), got '%s'", v);
    return VG_EINVAL;
}

int vg_config_load_file(vg_config_t *c, const char *path, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "vigil: cannot read config file %s: %s\n", path, strerror(errno));
        return VG_EINVAL;
    }
    char line[4096], why[512];
    int lineno = 0, rc = VG_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        while (isspace((unsigned char)*p))
            p++;
        size_t n = strlen(p);
        while (n && isspace((unsigned char)p[n - 1]))
            p[--n] = '\0';
        if (!n)
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            fprintf(err, "vigil: %s:%d: expected 'key = value'\n", path, lineno);
            rc = VG_EINVAL;
            break;
        }
        char *k = p, *ke = eq;
        while (ke > k && isspace((unsigned char)ke[-1]))
            ke--;
        char *v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        if (n >= 2 && v[0] == '"' && v[strlen(v) - 1] == '"') {
            v[strlen(v) - 1] = '\0';
            v++;
        }
        const opt_t *o = find_opt(k, (size_t)(ke - k));
        if (!o || strcmp(o->name, "config") == 0) {
            fprintf(err, "vigil: %s:%d: unknown setting '%.*s'\n", path, lineno, (int)(ke - k), k);
            rc = VG_EINVAL;
            break;
        }
        if (set_opt(c, o, v, why, sizeof why) != VG_OK) {
            fprintf(err, "vigil: %s:%d: %s\n", path, lineno, why);
            rc = VG_EINVAL;
            break;
        }
    }
    fclose(f);
    return rc;
}

int vg_config_parse_args(vg_config_t *c, int argc, char **argv, int first, FILE *err)
{
    char why[512];
    /* The file first, so that flags override it whatever their order. */
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            if (vg_config_load_file(c, argv[i + 1], err) != VG_OK)
                return VG_EINVAL;
            snprintf(c->config_file, sizeof c->config_file, "%s", argv[i + 1]);
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            if (vg_config_load_file(c, argv[i] + 9, err) != VG_OK)
                return VG_EINVAL;
            snprintf(c->config_file, sizeof c->config_file, "%s", argv[i] + 9);
        }
    }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            vg_config_help(stdout);
            return VG_AGAIN;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "vigil serve: unexpected argument '%s' (see --help)\n", a);
            return VG_EINVAL;
        }
        const char *name = a + 2, *val = NULL;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_opt(name, nl);
        if (!o) {
            fprintf(err, "vigil serve: unknown option '%s' (see --help)\n", a);
            return VG_EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(err, "vigil serve: --%s needs a value (%s)\n", o->name, o->arg);
            return VG_EINVAL;
        }
        if (strcmp(o->name, "config") == 0)
            continue; /* already applied */
        if (set_opt(c, o, val, why, sizeof why) != VG_OK) {
            fprintf(err, "vigil serve: %s\n", why);
            return VG_EINVAL;
        }
    }
    if (c->webhook_retry_base_ms > c->webhook_retry_max_ms) {
        fprintf(err, "vigil serve: --webhook-retry-base-ms (%u) must not exceed --webhook-retry-max-ms (%u)\n",
                c->webhook_retry_base_ms, c->webhook_retry_max_ms);
        return VG_EINVAL;
    }
    return VG_OK;
}

void vg_config_help(FILE *out)
{
    fprintf(out, "usage: vigil serve [options]\n\n"
                 "Runs the pipeline: MQTT gateway, durable stream, anomaly detection, alerts.\n"
                 "Every option can also be set in --config FILE as 'name = value' (name without dashes\n"
                 "or with underscores, e.g. rest_high_bpm = 130); flags override the file.\n\noptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", opts[i].name, opts[i].arg);
        fprintf(out, "  %-32s %s\n", flag, opts[i].help);
    }
    fprintf(out, "  %-32s %s\n", "--help", "this text");
}
