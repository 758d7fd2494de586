/* webhook.c — see webhook.h for the contract.
 *
 * Cursor file <data_dir>/consumers/webhook/<name>.ckpt (little-endian,
 * replaced atomically with core/fsutil: temp file, fsync, rename, fsync dir):
 *   off     size  field
 *     0        8  magic "VGWHCK01"
 *     8        4  version (1)
 *    12        4  N = shard count of the alerts stream
 *    16        8  written at, epoch ms (informational)
 *    24      8*N  per shard 0..N-1: the last sequence number handed over —
 *                 delivered (2xx) or stored as a dead letter; 0 = nothing yet
 *    24+8N     4  CRC-32C (core/crc32c.h) of every preceding byte
 * A file that does not check (size, magic, version, N, CRC) stops start-up:
 * guessing a position would either replay everything or skip alerts.
 * The cursor is written when a thread runs out of events, before every
 * backoff sleep, at most once a second while events keep flowing, and at
 * stop; so a crash repeats at most about a second of deliveries. A write
 * that failed (a full disk is a pause) is tried again once a second, also
 * by an idle thread, until one succeeds; meanwhile delivery goes on, and a
 * crash repeats what was handed over since the last good write.
 *
 * Dead-letter record for a permanent rejection (stream `deadletter`, key =
 * the alert record's key, i.e. the deviceId), the ingest dead-letter shape
 * (ingest/ingest.c; no clientId, no client is involved) plus where the event
 * came from:
 *   {"reason":"webhook_rejected","detail":"endpoint <name> answered HTTP <status>: <start of the body>",
 *    "topic":"alerts/<deviceId>","endpoint":"<name>","status":<status>,"stream":"alerts","shard":S,
 *    "seq":N,"eventId":"<X-Vigil-Event-Id>","arrivalMs":<the alert record's append time>,
 *    "payload":"<the alert JSON as a string, if it is valid JSON>","payloadBase64":"<the alert JSON, base64>"}
 * The cursor moves past a rejected event only once its dead letter is
 * durable, so a rejection is never lost either.
 *
 * One thread per endpoint, one curl multi handle with one easy handle (kept
 * for connection reuse). The multi interface is used only so that a stop can
 * interrupt a request at once (curl_multi_wakeup) instead of waiting for the
 * transfer timeout; during a request the thread sleeps in curl_multi_poll
 * for as long as curl's own next timeout (curl_multi_timeout).
 *
 * Waking: the thread watches every alerts shard (vg_log_watch). While it
 * has nothing to send it sleeps on its vg_notify_t without a timeout; the
 * watcher posts it once per commit round, and only while the thread is
 * waiting for alerts (the want_alerts flag), so a busy or backing-off
 * endpoint costs the committer one atomic load per round. Backoff sleeps
 * wait on the same notify with their deadline; stop posts it. */
#include "alert/webhook.h"

#include "alert/alert.h"

#include "core/alloc.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/crc32c.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "core/notify.h"

#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOD "webhook"
/* Everything webhook delivery allocates, libcurl's own memory included
 * (curl_global_init_mem), shows as memory.webhook in the stats. */
#define WH_MEM VG_MEM_WEBHOOK
#define CKPT_MAGIC "VGWHCK01"
#define CKPT_VERSION 1
#define CKPT_HDR 24
#define SAVE_INTERVAL_NS 1000000000ull
/* Only when the alerts stream cannot be watched (no watcher slot left, or
 * a read-only log): how often an idle endpoint looks for new alerts. Also
 * the pause before looking again at a shard whose durable records the
 * reader did not return (should not happen; never a busy loop). */
#define IDLE_POLL_MS 50
#define RESP_KEEP 200
#define EVENT_ID_MAX 64

typedef struct {
    vg_log_reader_t *r;
    bool have;             /* rec is the next event to hand over */
    vg_record_t rec;       /* valid until the next read on r */
    uint64_t read_seq;     /* last seq read from this shard */
    uint64_t reopen_at_ns; /* after a read error: when to try again */
} shard_cur_t;

typedef struct endpoint {
    struct vg_webhook *w;
    vg_webhook_endpoint_t cfg;
    char ckpt_path[PATH_MAX];
    pthread_t thread;
    bool started;
    bool sync_init;
    /* mu guards last_error and the dead-letter completion; cv carries the
     * dead-letter completion (sleeps and stop go through wake). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool dl_done;
    int dl_status;
    char last_error[128];
    CURLM *multi;
    CURL *easy;
    char curl_err[CURL_ERROR_SIZE];
    char resp[RESP_KEEP + 1];
    size_t resp_len;
    int64_t retry_after_ms; /* from the last answer's Retry-After, -1 = none */
    uint64_t rng;
    /* Delivery state, owned by the thread (cursor also read by stats). */
    atomic_uint_fast64_t *cursor; /* per shard: last seq handed over */
    shard_cur_t *sh;
    bool dirty;
    uint64_t saved_ns;
    uint64_t save_failures; /* cursor writes failed in a row (see cursor_save_when) */
    /* Wake-up of the thread: posted by the alerts watcher (only while
     * want_alerts) and by stop. */
    vg_notify_t wake;
    atomic_bool want_alerts;
    uint32_t watched; /* shards 0..watched-1 carry our watcher */
    atomic_uint_fast64_t delivered, attempts, failures, rejected, consecutive, latency_ms;
    atomic_int last_status;
    atomic_bool in_backoff;
} endpoint_t;

struct vg_webhook {
    vg_webhook_opts_t o;
    uint32_t nshards;
    uint32_t n;
    atomic_bool stop;
    endpoint_t *eps;
};

/* ---- configuration ------------------------------------------------------ */

int vg_webhook_endpoint_parse(const char *spec, vg_webhook_endpoint_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    const char *eq = strchr(spec, '=');
    size_t nl = eq ? (size_t)(eq - spec) : 0;
    if (!eq || nl == 0 || nl > VG_WEBHOOK_NAME_MAX) {
        snprintf(why, whylen, "--webhook: expected NAME=URL with a name of 1-%d characters, got '%s'",
                 VG_WEBHOOK_NAME_MAX, spec);
        return VG_EINVAL;
    }
    for (size_t i = 0; i < nl; i++) {
        char ch = spec[i];
        if (!isalnum((unsigned char)ch) && ch != '_' && ch != '-') {
            snprintf(why, whylen, "--webhook: name '%.*s' may hold only A-Z a-z 0-9 _ -", (int)nl, spec);
            return VG_EINVAL;
        }
    }
    memcpy(out->name, spec, nl);
    const char *url = eq + 1;
    size_t ul = 0;
    while (url[ul] && !isspace((unsigned char)url[ul]))
        ul++;
    size_t scheme = strncasecmp(url, "http://", 7) == 0 ? 7 : strncasecmp(url, "https://", 8) == 0 ? 8 : 0;
    if (!scheme || ul <= scheme || url[scheme] == '/') {
        snprintf(why, whylen, "--webhook %s: the URL must start with http:// or https:// and name a host", out->name);
        return VG_EINVAL;
    }
    if (ul >= sizeof out->url) {
        snprintf(why, whylen, "--webhook %s: URL longer than %d bytes", out->name, VG_WEBHOOK_URL_MAX - 1);
        return VG_EINVAL;
    }
    for (size_t i = 0; i < ul; i++) {
        if ((unsigned char)url[i] < 0x21 || (unsigned char)url[i] > 0x7e) {
            snprintf(why, whylen, "--webhook %s: the URL holds a control or non-ASCII byte", out->name);
            return VG_EINVAL;
        }
    }
    memcpy(out->url, url, ul);
    const char *p = url + ul;
    while (isspace((unsigned char)*p))
        p++;
    if (*p) {
        if (strcmp(p, "from=start") == 0) {
            out->from_start = true;
        } else if (strcmp(p, "from=end") != 0) {
            snprintf(why, whylen, "--webhook %s: after the URL only 'from=start' or 'from=end' is allowed, got '%s'",
                     out->name, p);
            return VG_EINVAL;
        }
    }
    return VG_OK;
}

/* ---- libcurl memory goes through core/alloc ------------------------------ */

static void *cm_malloc(size_t n)
{
    return vg_malloc(WH_MEM, n);
}

static void cm_free(void *p)
{
    vg_free(p);
}

static void *cm_realloc(void *p, size_t n)
{
    return vg_realloc(WH_MEM, p, n);
}

static char *cm_strdup(const char *s)
{
    return vg_strndup(WH_MEM, s, strlen(s));
}

static void *cm_calloc(size_t n, size_t size)
{
    return vg_calloc(WH_MEM, n, size);
}

int vg_webhook_global_init(void)
{
    CURLcode c = curl_global_init_mem(CURL_GLOBAL_DEFAULT, cm_malloc, cm_free, cm_realloc, cm_strdup, cm_calloc);
    if (c != CURLE_OK) {
        VG_ERROR(MOD, "libcurl cannot be initialised: %s", curl_easy_strerror(c));
        return VG_EIO;
    }
    return VG_OK;
}

void vg_webhook_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- small helpers -------------------------------------------------------- */

static bool stopping(const struct vg_webhook *w)
{
    return atomic_load_explicit(&w->stop, memory_order_acquire);
}

/* splitmix64: a per-endpoint generator seeded from the name, so that two
 * endpoints do not retry in lockstep yet a run is reproducible. */
static uint64_t rng_next(endpoint_t *ep)
{
    uint64_t z = (ep->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void set_error(endpoint_t *ep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(endpoint_t *ep, const char *fmt, ...)
{
    char buf[sizeof ep->last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ep->mu);
    memcpy(ep->last_error, buf, sizeof buf);
    pthread_mutex_unlock(&ep->mu);
}

/* Sleeps ms unless a stop comes first; returns true if stopping. Nothing
 * but a stop posts the notify meanwhile (want_alerts is false). */
static bool sleep_unless_stopped(endpoint_t *ep, uint64_t ms)
{
    uint64_t deadline = vg_clock_mono_ns() + ms * 1000000ull;
    for (uint64_t now; !stopping(ep->w) && (now = vg_clock_mono_ns()) < deadline;)
        vg_notify_wait(&ep->wake, (int64_t)((deadline - now + 999999u) / 1000000u));
    return stopping(ep->w);
}

/* The alerts watcher (committer thread): wake the endpoint if it waits for
 * alerts. The fence pairs with the one in wait_for_alerts (Dekker): either
 * the thread sees this round's durable seq, or we see its flag. */
static void on_alerts_commit(void *ctx, uint32_t shard, uint64_t durable_seq)
{
    (void)shard;
    (void)durable_seq;
    endpoint_t *ep = ctx;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ep->want_alerts, memory_order_relaxed))
        vg_notify_post(&ep->wake);
}

/* ---- the cursor file -------------------------------------------------------- */

static int cursor_save(endpoint_t *ep)
{
    uint32_t n = ep->w->nshards;
    size_t len = CKPT_HDR + 8 * (size_t)n + 4;
    uint8_t *buf = vg_malloc(WH_MEM, len);
    if (!buf)
        return VG_ENOMEM;
    memcpy(buf, CKPT_MAGIC, 8);
    vg_put_le32(buf + 8, CKPT_VERSION);
    vg_put_le32(buf + 12, n);
    vg_put_le64(buf + 16, (uint64_t)vg_clock_wall_ms());
    for (uint32_t s = 0; s < n; s++)
        vg_put_le64(buf + CKPT_HDR + 8 * (size_t)s, atomic_load_explicit(&ep->cursor[s], memory_order_relaxed));
    vg_put_le32(buf + len - 4, vg_crc32c(0, buf, len - 4));
    int rc = vg_fs_write_atomic(ep->ckpt_path, buf, len);
    vg_free(buf);
    if (rc == VG_OK) {
        ep->dirty = false;
        ep->saved_ns = vg_clock_mono_ns();
    }
    return rc;
}

/* Writes the cursor if it moved: always when force, else at most once per
 * SAVE_INTERVAL_NS. After a failed write (a full disk, say) even forced
 * saves wait SAVE_INTERVAL_NS before the next try — the backoff and idle
 * paths force one per attempt, and a full disk would otherwise cost a
 * write and a log line each time; one line per failure streak, one when it
 * ends. The final save at stop (final) always tries. */
static void cursor_save_when(endpoint_t *ep, bool force, bool final)
{
    if (!ep->dirty)
        return;
    uint64_t now = vg_clock_mono_ns();
    if (!final && (!force || ep->save_failures) && now - ep->saved_ns < SAVE_INTERVAL_NS)
        return;
    int rc = cursor_save(ep);
    if (rc != VG_OK) {
        if (ep->save_failures++ == 0)
            VG_ERROR(MOD, "%s: cannot write the cursor %s: %s; retrying every %llu ms", ep->cfg.name, ep->ckpt_path,
                     vg_strerror(rc), (unsigned long long)(SAVE_INTERVAL_NS / 1000000u));
        ep->saved_ns = now;
    } else if (ep->save_failures) {
        VG_INFO(MOD, "%s: cursor %s written again after %llu failed attempts", ep->cfg.name, ep->ckpt_path,
                (unsigned long long)ep->save_failures);
        ep->save_failures = 0;
    }
}

static void cursor_maybe_save(endpoint_t *ep, bool force)
{
    cursor_save_when(ep, force, false);
}

/* Loads the cursor, or creates it for a new endpoint: at the current end of
 * every shard (from_start: before the oldest record). */
static int cursor_load(endpoint_t *ep)
{
    vg_log_t *alerts = ep->w->o.alerts;
    uint32_t n = ep->w->nshards;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = vg_fs_read_all(ep->ckpt_path, 1u << 20, &buf, &len);
    if (rc == VG_ENOTFOUND) {
        for (uint32_t s = 0; s < n; s++)
            atomic_store(&ep->cursor[s], ep->cfg.from_start ? 0 : vg_log_durable_seq(alerts, s));
        /* Fix the starting point now: an alert appended between this start
         * and a crash must not be skipped as "before the end" next time. */
        ep->dirty = true;
        rc = cursor_save(ep);
        if (rc)
            VG_ERROR(MOD, "%s: cannot create the cursor %s: %s", ep->cfg.name, ep->ckpt_path, vg_strerror(rc));
        else
            VG_INFO(MOD, "%s: new endpoint, delivering from the %s of the alerts stream", ep->cfg.name,
                    ep->cfg.from_start ? "start" : "end");
        return rc;
    }
    if (rc) {
        VG_ERROR(MOD, "%s: cannot read the cursor %s: %s", ep->cfg.name, ep->ckpt_path, vg_strerror(rc));
        return rc;
    }
    rc = VG_ECORRUPT;
    if (len != CKPT_HDR + 8 * (size_t)n + 4 || memcmp(buf, CKPT_MAGIC, 8) != 0 ||
        vg_get_le32(buf + 8) != CKPT_VERSION || vg_get_le32(buf + 12) != n ||
        vg_get_le32(buf + len - 4) != vg_crc32c(0, buf, len - 4)) {
        VG_ERROR(MOD,
                 "%s: cursor %s is damaged or was written for another stream layout; refusing to guess a "
                 "position (delete it to restart delivery from the end of the stream)",
                 ep->cfg.name, ep->ckpt_path);
        goto cleanup;
    }
    uint64_t pending = 0;
    for (uint32_t s = 0; s < n; s++) {
        uint64_t c = vg_get_le64(buf + CKPT_HDR + 8 * (size_t)s), durable = vg_log_durable_seq(alerts, s);
        if (c > durable) {
            /* Only possible when the stream lost its unsynced tail (fsync
             * none/interval and a power loss): the numbers past the end
             * will be reused by new alerts, which must not be skipped. */
            VG_WARN(MOD, "%s: cursor of shard %u (%llu) is past the end of the alerts stream (%llu); rewinding",
                    ep->cfg.name, s, (unsigned long long)c, (unsigned long long)durable);
            c = durable;
            ep->dirty = true;
        }
        atomic_store(&ep->cursor[s], c);
        pending += durable - c;
    }
    VG_INFO(MOD, "%s: resuming delivery, %llu alert events pending", ep->cfg.name, (unsigned long long)pending);
    rc = VG_OK;
cleanup:
    vg_free(buf);
    return rc;
}

/* ---- HTTP ------------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    endpoint_t *ep = ctx;
    size_t n = size * nmemb, room = RESP_KEEP - ep->resp_len;
    size_t k = n < room ? n : room;
    memcpy(ep->resp + ep->resp_len, data, k);
    ep->resp_len += k;
    ep->resp[ep->resp_len] = '\0';
    return n; /* the rest is read and dropped */
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ctx)
{
    endpoint_t *ep = ctx;
    size_t n = size * nitems;
    if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
        char v[64];
        size_t i = 12, k = 0;
        while (i < n && (data[i] == ' ' || data[i] == '\t'))
            i++;
        while (i < n && k + 1 < sizeof v && data[i] != '\r' && data[i] != '\n')
            v[k++] = data[i++];
        v[k] = '\0';
        if (k && isdigit((unsigned char)v[0])) {
            char *end;
            unsigned long long secs = strtoull(v, &end, 10);
            if (*end == '\0' || isspace((unsigned char)*end))
                ep->retry_after_ms = secs > 86400 ? 86400000 : (int64_t)secs * 1000;
        } else if (k) {
            time_t at = curl_getdate(v, NULL); /* the HTTP-date form */
            if (at != -1) {
                int64_t d = (int64_t)at * 1000 - vg_clock_wall_ms();
                ep->retry_after_ms = d < 0 ? 0 : d;
            }
        }
    }
    return n;
}

static int easy_setup(endpoint_t *ep)
{
    const vg_webhook_opts_t *o = &ep->w->o;
    CURL *e = ep->easy;
    CURLcode c = CURLE_OK;
    c |= curl_easy_setopt(e, CURLOPT_URL, ep->cfg.url);
    c |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    c |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    c |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    c |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms);
    c |= curl_easy_setopt(e, CURLOPT_USERAGENT, "vigil");
    c |= curl_easy_setopt(e, CURLOPT_POST, 1L);
    c |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    c |= curl_easy_setopt(e, CURLOPT_WRITEDATA, ep);
    c |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    c |= curl_easy_setopt(e, CURLOPT_HEADERDATA, ep);
    c |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ep->curl_err);
    c |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    return c == CURLE_OK ? VG_OK : VG_EINVAL;
}

/* One POST of rec. Returns VG_OK with *status = the HTTP status when an
 * answer came; VG_EIO (err filled) for a transport failure or timeout;
 * VG_ECLOSED if a stop interrupted it. */
static int http_post(endpoint_t *ep, const vg_record_t *rec, const char *event_id, unsigned attempt, long *status,
                     char *err, size_t errlen)
{
    struct curl_slist *hdrs = NULL, *t;
    char line[EVENT_ID_MAX + 64];
    int rc = VG_EIO;
    const char *fixed[] = {"Content-Type: application/json", "Expect:"}; /* Expect: no 100-continue round trip */
    for (size_t i = 0; i < 2; i++) {
        if (!(t = curl_slist_append(hdrs, fixed[i])))
            goto oom;
        hdrs = t;
    }
    snprintf(line, sizeof line, "X-Vigil-Event-Id: %s", event_id);
    if (!(t = curl_slist_append(hdrs, line)))
        goto oom;
    hdrs = t;
    snprintf(line, sizeof line, "X-Vigil-Delivery-Attempt: %u", attempt);
    if (!(t = curl_slist_append(hdrs, line)))
        goto oom;
    hdrs = t;
    ep->curl_err[0] = '\0';
    ep->resp_len = 0;
    ep->resp[0] = '\0';
    ep->retry_after_ms = -1;
    curl_easy_setopt(ep->easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(ep->easy, CURLOPT_POSTFIELDS, (const char *)rec->value);
    curl_easy_setopt(ep->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rec->value_len);
    CURLMcode mc = curl_multi_add_handle(ep->multi, ep->easy);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "curl: %s", curl_multi_strerror(mc));
        goto cleanup;
    }
    int running = 1;
    bool stopped = false;
    CURLcode result = CURLE_OK;
    for (;;) {
        mc = curl_multi_perform(ep->multi, &running);
        if (mc != CURLM_OK || !running)
            break;
        if (stopping(ep->w)) {
            stopped = true;
            break;
        }
        /* Sleep until a socket is ready or curl's next timer (its
         * timeouts, retries of the connect); a stop wakes the poll. */
        long next = -1;
        if (curl_multi_timeout(ep->multi, &next) != CURLM_OK || next < 0 || next > (long)ep->w->o.timeout_ms)
            next = (long)ep->w->o.timeout_ms;
        if (next > 0) {
            mc = curl_multi_poll(ep->multi, NULL, 0, (int)next, NULL);
            if (mc != CURLM_OK)
                break;
        }
    }
    CURLMsg *m;
    int left;
    bool done = false;
    while ((m = curl_multi_info_read(ep->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            result = m->data.result;
            done = true;
        }
    }
    curl_multi_remove_handle(ep->multi, ep->easy);
    if (stopped) {
        rc = VG_ECLOSED;
    } else if (mc != CURLM_OK || !done) {
        snprintf(err, errlen, "curl: %s", mc != CURLM_OK ? curl_multi_strerror(mc) : "transfer did not finish");
    } else if (result != CURLE_OK) {
        snprintf(err, errlen, "%s", ep->curl_err[0] ? ep->curl_err : curl_easy_strerror(result));
    } else {
        *status = 0;
        curl_easy_getinfo(ep->easy, CURLINFO_RESPONSE_CODE, status);
        rc = VG_OK;
    }
cleanup:
    curl_easy_setopt(ep->easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(ep->easy, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hdrs);
    return rc;
oom:
    snprintf(err, errlen, "out of memory building the request");
    goto cleanup;
}

/* X-Vigil-Event-Id: the alert's eventId, read from the record's meta
 * (alert/alert.h) — the processor wrote it there so consumers need not
 * parse the JSON again; a record without that meta (written by an older
 * build) gets "<shard>-<seq>" of its alerts-stream record, which is stable
 * across replays too. */
static void event_id_of(const vg_record_t *rec, char out[EVENT_ID_MAX + 1])
{
    uint64_t eid;
    if (vg_alert_meta_decode(rec->meta, rec->meta_len, NULL, NULL, NULL, NULL, &eid, NULL) == VG_OK) {
        snprintf(out, EVENT_ID_MAX + 1, "%016llx", (unsigned long long)eid);
        return;
    }
    snprintf(out, EVENT_ID_MAX + 1, "%u-%llu", rec->shard, (unsigned long long)rec->seq);
}

/* ---- dead letters ------------------------------------------------------------ */

static void on_dead_letter_durable(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    endpoint_t *ep = ctx;
    pthread_mutex_lock(&ep->mu);
    ep->dl_status = status;
    ep->dl_done = true;
    pthread_cond_broadcast(&ep->cv);
    pthread_mutex_unlock(&ep->mu);
}

/* Appends rec to the dead-letter stream and waits until it is durable.
 * Returns the append's or the commit's status. */
static int dead_letter(endpoint_t *ep, const vg_record_t *rec, const char *event_id, long status)
{
    char detail[RESP_KEEP + 128], name_esc[VG_WEBHOOK_NAME_MAX * 6 + 1];
    snprintf(detail, sizeof detail, "endpoint %s answered HTTP %ld%s%s", ep->cfg.name, status, ep->resp_len ? ": " : "",
             ep->resp);
    bool text = vg_json_validate((const char *)rec->value, rec->value_len, VG_JSON_MAX_DEPTH) == VG_OK;
    size_t cap = 512 + 6 * sizeof detail + 12 * rec->key_len + (text ? 6 * rec->value_len : 0) +
                 4 * ((rec->value_len + 2) / 3) + sizeof name_esc + EVENT_ID_MAX;
    char *buf = vg_malloc(WH_MEM, cap);
    if (!buf)
        return VG_ENOMEM;
    size_t n = 0;
    int k;
    vg_json_escape(ep->cfg.name, strlen(ep->cfg.name), name_esc, sizeof name_esc);
    n += (size_t)snprintf(buf + n, cap - n, "{\"reason\":\"webhook_rejected\",\"detail\":\"");
    k = vg_json_escape(detail, strlen(detail), buf + n, cap - n);
    n += k > 0 ? (size_t)k : 0;
    n += (size_t)snprintf(buf + n, cap - n, "\",\"topic\":\"alerts/");
    k = vg_json_escape((const char *)rec->key, rec->key_len, buf + n, cap - n);
    n += k > 0 ? (size_t)k : 0;
    n += (size_t)snprintf(buf + n, cap - n,
                          "\",\"endpoint\":\"%s\",\"status\":%ld,\"stream\":\"alerts\",\"shard\":%u,\"seq\":%llu,"
                          "\"eventId\":\"%s\",\"arrivalMs\":%lld",
                          name_esc, status, rec->shard, (unsigned long long)rec->seq, event_id,
                          (long long)rec->arrival_ms);
    if (text) {
        n += (size_t)snprintf(buf + n, cap - n, ",\"payload\":\"");
        k = vg_json_escape((const char *)rec->value, rec->value_len, buf + n, cap - n);
        n += k > 0 ? (size_t)k : 0;
        buf[n++] = '"';
    }
    n += (size_t)snprintf(buf + n, cap - n, ",\"payloadBase64\":\"");
    n += (size_t)EVP_EncodeBlock((unsigned char *)buf + n, rec->value, (int)rec->value_len);
    n += (size_t)snprintf(buf + n, cap - n, "\"}");
    pthread_mutex_lock(&ep->mu);
    ep->dl_done = false;
    pthread_mutex_unlock(&ep->mu);
    int rc = vg_log_append(ep->w->o.deadletter, rec->key, rec->key_len, NULL, 0, buf, n, vg_clock_wall_ms(),
                           on_dead_letter_durable, ep, 0, NULL, NULL);
    vg_free(buf);
    if (rc != VG_OK)
        return rc;
    /* The committer always calls back (durable or failed), also while the
     * log closes, so this wait ends without a stop check. */
    pthread_mutex_lock(&ep->mu);
    while (!ep->dl_done)
        pthread_cond_wait(&ep->cv, &ep->mu);
    rc = ep->dl_status;
    pthread_mutex_unlock(&ep->mu);
    return rc;
}

/* ---- delivery ------------------------------------------------------------------ */

static uint64_t backoff_ms(endpoint_t *ep, unsigned attempt, int64_t retry_after_ms)
{
    uint64_t max = ep->w->o.retry_max_ms, d = ep->w->o.retry_base_ms;
    for (unsigned i = 1; i < attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    /* +-20% so that many endpoints (or vigils) failing together do not
     * retry in lockstep. */
    double f = 0.8 + 0.4 * (double)(rng_next(ep) >> 11) * (1.0 / 9007199254740992.0);
    d = (uint64_t)((double)d * f + 0.5);
    if (retry_after_ms >= 0 && (uint64_t)retry_after_ms > d)
        d = (uint64_t)retry_after_ms;
    return d > max ? max : d;
}

typedef enum { HANDED_OVER, STOPPED } outcome_t;

static bool retryable_status(long st)
{
    return st == 408 || st == 429 || st < 400 || st >= 500;
}

/* Sends one event until it is delivered or rejected for good (returns
 * HANDED_OVER) or a stop comes (STOPPED). */
static outcome_t deliver(endpoint_t *ep, const vg_record_t *rec)
{
    char event_id[EVENT_ID_MAX + 1], err[sizeof ep->last_error];
    event_id_of(rec, event_id);
    for (unsigned attempt = 1;; attempt++) {
        if (stopping(ep->w))
            return STOPPED;
        long status = 0;
        atomic_fetch_add_explicit(&ep->attempts, 1, memory_order_relaxed);
        int rc = http_post(ep, rec, event_id, attempt, &status, err, sizeof err);
        if (rc == VG_ECLOSED)
            return STOPPED;
        if (rc == VG_OK)
            atomic_store_explicit(&ep->last_status, (int)status, memory_order_relaxed);
        if (rc == VG_OK && status >= 200 && status < 300) {
            int64_t lat = vg_clock_wall_ms() - rec->arrival_ms;
            atomic_store_explicit(&ep->latency_ms, lat > 0 ? (uint64_t)lat : 0, memory_order_relaxed);
            atomic_fetch_add_explicit(&ep->delivered, 1, memory_order_relaxed);
            uint64_t streak = atomic_exchange(&ep->consecutive, 0);
            if (streak)
                VG_INFO(MOD, "%s: delivering again after %llu failed attempts", ep->cfg.name,
                        (unsigned long long)streak);
            return HANDED_OVER;
        }
        if (rc == VG_OK && !retryable_status(status)) {
            int drc = dead_letter(ep, rec, event_id, status);
            if (drc == VG_OK) {
                atomic_fetch_add_explicit(&ep->rejected, 1, memory_order_relaxed);
                atomic_store(&ep->consecutive, 0);
                set_error(ep, "HTTP %ld (rejected, dead-lettered)", status);
                VG_WARN(MOD, "%s: event %s (alerts shard %u seq %llu) rejected with HTTP %ld; stored as a dead letter",
                        ep->cfg.name, event_id, rec->shard, (unsigned long long)rec->seq, status);
                return HANDED_OVER;
            }
            /* Not stored: the event must not be skipped; try it again. */
            snprintf(err, sizeof err, "HTTP %ld, and the dead letter could not be stored: %s", status,
                     vg_strerror(drc));
        } else if (rc == VG_OK) {
            snprintf(err, sizeof err, "HTTP %ld", status);
        }
        atomic_fetch_add_explicit(&ep->failures, 1, memory_order_relaxed);
        uint64_t streak = atomic_fetch_add(&ep->consecutive, 1) + 1;
        set_error(ep, "%s", err);
        uint64_t delay = backoff_ms(ep, attempt, rc == VG_OK ? ep->retry_after_ms : -1);
        if ((streak & (streak - 1)) == 0) /* 1, 2, 4, 8, ...: a line per doubling, not per attempt */
            VG_WARN(MOD, "%s: event %s attempt %u failed (%s); %llu failures in a row, retrying in %llu ms",
                    ep->cfg.name, event_id, attempt, err, (unsigned long long)streak, (unsigned long long)delay);
        /* Blocked at this event: make the progress so far durable first. */
        cursor_maybe_save(ep, true);
        atomic_store(&ep->in_backoff, true);
        bool stop = sleep_unless_stopped(ep, delay);
        atomic_store(&ep->in_backoff, false);
        if (stop)
            return STOPPED;
    }
}

/* Makes sure every shard that has durable records beyond what was read has
 * its next record loaded. */
static void fill_heads(endpoint_t *ep)
{
    vg_log_t *alerts = ep->w->o.alerts;
    uint64_t now = vg_clock_mono_ns();
    for (uint32_t s = 0; s < ep->w->nshards; s++) {
        shard_cur_t *sc = &ep->sh[s];
        if (sc->have || vg_log_durable_seq(alerts, s) <= sc->read_seq || now < sc->reopen_at_ns)
            continue;
        if (!sc->r && vg_log_reader_open(alerts, s, sc->read_seq + 1, &sc->r) != VG_OK) {
            sc->r = NULL;
            sc->reopen_at_ns = now + 500000000ull;
            continue;
        }
        int rc = vg_log_reader_next(sc->r, &sc->rec);
        if (rc == VG_OK) {
            if (sc->rec.seq > sc->read_seq + 1 && sc->read_seq)
                VG_WARN(MOD, "%s: alerts shard %u jumps from seq %llu to %llu (records no longer stored)", ep->cfg.name,
                        s, (unsigned long long)sc->read_seq, (unsigned long long)sc->rec.seq);
            sc->rec.shard = s;
            sc->read_seq = sc->rec.seq;
            sc->have = true;
        } else if (rc != VG_AGAIN) {
            VG_ERROR(MOD, "%s: reading alerts shard %u after seq %llu failed: %s; retrying", ep->cfg.name, s,
                     (unsigned long long)sc->read_seq, vg_strerror(rc));
            vg_log_reader_close(sc->r);
            sc->r = NULL;
            sc->reopen_at_ns = now + 500000000ull;
        }
    }
}

/* Nothing to send: announce the wait, look once more (a commit before the
 * announcement is seen here, one after it posts), then sleep until a post
 * (new alerts, stop) or the earliest reader retry. */
static void wait_for_alerts(endpoint_t *ep)
{
    struct vg_webhook *w = ep->w;
    atomic_store_explicit(&ep->want_alerts, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    fill_heads(ep);
    int64_t t = ep->watched == w->nshards ? -1 : IDLE_POLL_MS;
    uint64_t now = vg_clock_mono_ns();
    for (uint32_t s = 0; s < w->nshards && t != 0; s++) {
        shard_cur_t *sc = &ep->sh[s];
        if (sc->have) {
            t = 0;
        } else if (vg_log_durable_seq(w->o.alerts, s) > sc->read_seq) {
            /* records the reader could not give: retry when its pause ends */
            int64_t left = sc->reopen_at_ns > now ? (int64_t)((sc->reopen_at_ns - now + 999999u) / 1000000u)
                                                  : IDLE_POLL_MS;
            t = t < 0 || left < t ? left : t;
        }
    }
    /* A cursor that could not be written (full disk) is tried again once
     * its SAVE_INTERVAL_NS has passed, idle or not: without new alerts
     * nothing else would wake the thread, and the file would stay behind
     * the deliveries (a crash would repeat them all) long after space came
     * back. */
    if (t != 0 && ep->dirty && ep->save_failures) {
        uint64_t due = ep->saved_ns + SAVE_INTERVAL_NS;
        int64_t left = due > now ? (int64_t)((due - now + 999999u) / 1000000u) : 0;
        t = t < 0 || left < t ? left : t;
    }
    if (t != 0 && !stopping(w))
        vg_notify_wait(&ep->wake, t);
    atomic_store_explicit(&ep->want_alerts, false, memory_order_relaxed);
}

static void *endpoint_main(void *arg)
{
    endpoint_t *ep = arg;
    struct vg_webhook *w = ep->w;
    char name[16];
    snprintf(name, sizeof name, "vg-wh-%.8s", ep->cfg.name);
    pthread_setname_np(pthread_self(), name); /* per-thread figures in top -H and /proc */
    for (uint32_t s = 0; s < w->nshards; s++)
        ep->sh[s].read_seq = atomic_load(&ep->cursor[s]);
    /* Watch first, read after (wait_for_alerts looks once more anyway). */
    int wrc = VG_OK;
    while (ep->watched < w->nshards &&
           (wrc = vg_log_watch(w->o.alerts, ep->watched, on_alerts_commit, ep)) == VG_OK)
        ep->watched++;
    if (ep->watched < w->nshards)
        VG_WARN(MOD, "%s: cannot watch alerts shard %u (%s); looking for new alerts every %d ms instead",
                ep->cfg.name, ep->watched, vg_strerror(wrc), IDLE_POLL_MS);
    while (!stopping(w)) {
        fill_heads(ep);
        /* Oldest head first (append time), so that events of different
         * devices leave roughly in the order they were raised; within a
         * shard the stream order holds whatever the times say. */
        int best = -1;
        for (uint32_t s = 0; s < w->nshards; s++)
            if (ep->sh[s].have && (best < 0 || ep->sh[s].rec.arrival_ms < ep->sh[best].rec.arrival_ms))
                best = (int)s;
        if (best < 0) {
            /* Becoming idle: the one cursor save an idle stretch needs. */
            cursor_maybe_save(ep, true);
            wait_for_alerts(ep);
            continue;
        }
        shard_cur_t *sc = &ep->sh[best];
        if (deliver(ep, &sc->rec) == STOPPED)
            break;
        sc->have = false;
        atomic_store_explicit(&ep->cursor[best], sc->rec.seq, memory_order_relaxed);
        ep->dirty = true;
        cursor_maybe_save(ep, false);
    }
    for (uint32_t s = 0; s < ep->watched; s++)
        vg_log_unwatch(w->o.alerts, s, on_alerts_commit, ep);
    ep->watched = 0;
    for (uint32_t s = 0; s < w->nshards; s++) {
        vg_log_reader_close(ep->sh[s].r);
        ep->sh[s].r = NULL;
    }
    cursor_save_when(ep, true, true);
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------- */

static void endpoint_free(endpoint_t *ep)
{
    if (ep->easy)
        curl_easy_cleanup(ep->easy);
    if (ep->multi)
        curl_multi_cleanup(ep->multi);
    if (ep->sync_init) {
        pthread_cond_destroy(&ep->cv);
        pthread_mutex_destroy(&ep->mu);
    }
    vg_free(ep->sh);
    vg_free(ep->cursor);
}

static int endpoint_init(struct vg_webhook *w, endpoint_t *ep, const vg_webhook_endpoint_t *cfg, const char *dir)
{
    ep->w = w;
    ep->cfg = *cfg;
    if (snprintf(ep->ckpt_path, sizeof ep->ckpt_path, "%s/%s.ckpt", dir, cfg->name) >= (int)sizeof ep->ckpt_path)
        return VG_ETOOBIG;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return VG_ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* should a timed wait ever use cv: immune to wall-clock steps */
    int bad = pthread_mutex_init(&ep->mu, NULL);
    bad |= pthread_cond_init(&ep->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (bad)
        return VG_ENOMEM;
    ep->sync_init = true;
    vg_notify_init(&ep->wake);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name seeds the jitter */
    for (const char *p = cfg->name; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    ep->rng = h;
    ep->cursor = vg_calloc(WH_MEM, w->nshards, sizeof *ep->cursor);
    ep->sh = vg_calloc(WH_MEM, w->nshards, sizeof *ep->sh);
    if (!ep->cursor || !ep->sh)
        return VG_ENOMEM;
    ep->multi = curl_multi_init();
    ep->easy = curl_easy_init();
    if (!ep->multi || !ep->easy)
        return VG_ENOMEM;
    int rc = easy_setup(ep);
    if (rc) {
        VG_ERROR(MOD, "%s: libcurl refused the endpoint's settings", cfg->name);
        return rc;
    }
    return cursor_load(ep);
}

int vg_webhook_start(const vg_webhook_opts_t *o, vg_webhook_t **out)
{
    *out = NULL;
    if (o->nendpoints > VG_WEBHOOK_MAX_ENDPOINTS || (o->nendpoints && (!o->alerts || !o->deadletter || !o->data_dir)))
        return VG_EINVAL;
    for (uint32_t i = 0; i < o->nendpoints; i++)
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(o->endpoints[i].name, o->endpoints[j].name) == 0)
                return VG_EINVAL;
    struct vg_webhook *w = vg_calloc(WH_MEM, 1, sizeof *w);
    if (!w)
        return VG_ENOMEM;
    w->o = *o;
    w->o.endpoints = NULL; /* copied into eps */
    if (!w->o.timeout_ms)
        w->o.timeout_ms = 5000;
    if (!w->o.retry_base_ms)
        w->o.retry_base_ms = 500;
    if (!w->o.retry_max_ms)
        w->o.retry_max_ms = 60000;
    if (w->o.retry_max_ms < w->o.retry_base_ms)
        w->o.retry_max_ms = w->o.retry_base_ms;
    int rc = VG_OK;
    if (!o->nendpoints) {
        *out = w;
        return VG_OK;
    }
    w->nshards = vg_log_shard_count(o->alerts);
    w->eps = vg_calloc(WH_MEM, o->nendpoints, sizeof *w->eps);
    if (!w->eps) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    w->n = o->nendpoints;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/consumers/webhook", o->data_dir);
    rc = vg_fs_mkdir_p(dir);
    if (rc)
        goto cleanup;
    for (uint32_t i = 0; i < w->n; i++) {
        rc = endpoint_init(w, &w->eps[i], &o->endpoints[i], dir);
        if (rc)
            goto cleanup;
    }
    for (uint32_t i = 0; i < w->n; i++) {
        if (pthread_create(&w->eps[i].thread, NULL, endpoint_main, &w->eps[i]) != 0) {
            rc = VG_EIO;
            goto cleanup;
        }
        w->eps[i].started = true;
    }
    *out = w;
    return VG_OK;
cleanup:
    vg_webhook_stop(w);
    return rc;
}

void vg_webhook_stop(vg_webhook_t *w)
{
    if (!w)
        return;
    atomic_store_explicit(&w->stop, true, memory_order_release);
    for (uint32_t i = 0; i < w->n; i++) {
        endpoint_t *ep = &w->eps[i];
        if (!ep->started)
            continue;
        vg_notify_post(&ep->wake);
        curl_multi_wakeup(ep->multi);
    }
    for (uint32_t i = 0; i < w->n; i++)
        if (w->eps[i].started)
            pthread_join(w->eps[i].thread, NULL);
    for (uint32_t i = 0; i < w->n; i++)
        endpoint_free(&w->eps[i]);
    vg_free(w->eps);
    vg_free(w);
}

uint32_t vg_webhook_count(const vg_webhook_t *w)
{
    return w ? w->n : 0;
}

void vg_webhook_stats(vg_webhook_t *w, uint32_t i, vg_webhook_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!w || i >= w->n)
        return;
    endpoint_t *ep = &w->eps[i];
    out->name = ep->cfg.name;
    out->delivered = atomic_load_explicit(&ep->delivered, memory_order_relaxed);
    out->attempts = atomic_load_explicit(&ep->attempts, memory_order_relaxed);
    out->failures = atomic_load_explicit(&ep->failures, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&ep->rejected, memory_order_relaxed);
    out->consecutive_failures = atomic_load_explicit(&ep->consecutive, memory_order_relaxed);
    out->last_latency_ms = atomic_load_explicit(&ep->latency_ms, memory_order_relaxed);
    out->last_status = atomic_load_explicit(&ep->last_status, memory_order_relaxed);
    out->in_backoff = atomic_load_explicit(&ep->in_backoff, memory_order_relaxed);
    for (uint32_t s = 0; s < w->nshards; s++) {
        uint64_t durable = vg_log_durable_seq(w->o.alerts, s);
        uint64_t c = atomic_load_explicit(&ep->cursor[s], memory_order_relaxed);
        if (durable > c)
            out->pending += durable - c;
    }
    pthread_mutex_lock(&ep->mu);
    memcpy(out->last_error, ep->last_error, sizeof out->last_error);
    pthread_mutex_unlock(&ep->mu);
}
