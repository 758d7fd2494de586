/* webhook.h — delivery of alert events to HTTP endpoints (webhooks).
 *
 * Owns: one delivery thread per configured endpoint, its HTTP client
 * (libcurl), its delivery cursor on disk, its retry policy and counters.
 * Does not own: the alerts stream (the outbox; borrowed), the dead-letter
 * stream (borrowed), what an alert means (alert/alert.h).
 *
 * The outbox is the `alerts` stream itself. Each endpoint keeps a cursor —
 * the last delivered sequence number of every shard — in
 * <data_dir>/consumers/webhook/<name>.ckpt (format at the top of webhook.c)
 * and reads every shard from there, so neither an outage of the receiver nor
 * a crash of vigil loses an event: delivery resumes at the cursor. Delivery
 * is at least once (an event can arrive again after a crash or a timed-out
 * request that the receiver did process); receivers drop duplicates by the
 * X-Vigil-Event-Id header.
 *
 * Per endpoint, events of one shard (so of one device) leave in stream
 * order, and an event that fails blocks its endpoint until it succeeds or is
 * rejected for good (head of line), so OPEN always arrives before RESOLVED.
 * Each event is one POST whose body is the record's value (the alert JSON)
 * unchanged. 2xx = delivered. Transport errors, timeouts, 5xx, 408 and 429
 * are retried with exponential backoff and jitter (Retry-After honoured);
 * any other 4xx is a permanent rejection: the event goes to the `deadletter`
 * stream (reason "webhook_rejected") and delivery moves on. Endpoints are
 * independent: one that is down does not delay another. */
#ifndef VG_ALERT_WEBHOOK_H
#define VG_ALERT_WEBHOOK_H

#include "stream/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_WEBHOOK_MAX_ENDPOINTS 8
#define VG_WEBHOOK_NAME_MAX 32
#define VG_WEBHOOK_URL_MAX 1024

/* One endpoint as configured. The name identifies the endpoint's cursor: an
 * endpoint renamed starts afresh, one whose URL changes keeps its place. */
typedef struct {
    char name[VG_WEBHOOK_NAME_MAX + 1]; /* [A-Za-z0-9_-]{1,32} */
    char url[VG_WEBHOOK_URL_MAX];       /* http:// or https:// */
    bool from_start;                    /* without a cursor: start at the oldest stored alert, not the newest */
} vg_webhook_endpoint_t;

/* Parses "NAME=URL" optionally followed by whitespace and "from=start" or
 * "from=end" (the default) into *out. Pure. On error returns VG_EINVAL and
 * writes a one-line reason into why. */
int vg_webhook_endpoint_parse(const char *spec, vg_webhook_endpoint_t *out, char *why, size_t whylen);

/* Initialises libcurl (and routes its memory through core/alloc). Call once
 * from main before any thread starts and before vg_webhook_start; pair with
 * vg_webhook_global_cleanup after every webhook has stopped. VG_EIO if
 * libcurl cannot be initialised. */
int vg_webhook_global_init(void);
void vg_webhook_global_cleanup(void);

typedef struct {
    const char *data_dir;                   /* cursors go under <data_dir>/consumers/webhook */
    vg_log_t *alerts;                       /* borrowed: read; must stay open until vg_webhook_stop returns */
    vg_log_t *deadletter;                   /* borrowed: permanent rejections are appended; same lifetime */
    const vg_webhook_endpoint_t *endpoints; /* copied */
    uint32_t nendpoints;                    /* 0..VG_WEBHOOK_MAX_ENDPOINTS */
    uint32_t timeout_ms;                    /* whole request, connect included (default 5000) */
    uint32_t retry_base_ms;                 /* first retry delay (default 500) */
    uint32_t retry_max_ms;                  /* cap of every retry delay, Retry-After included (default 60000) */
} vg_webhook_opts_t;

typedef struct vg_webhook vg_webhook_t;

/* Loads (or, for a new endpoint, creates) each endpoint's cursor and starts
 * its delivery thread. On success *out is owned by the caller and released
 * with vg_webhook_stop. A damaged cursor file is an error (VG_ECORRUPT,
 * logged with its path): delivery never guesses a position. nendpoints = 0
 * gives a valid object with no threads. */
int vg_webhook_start(const vg_webhook_opts_t *o, vg_webhook_t **out);

/* Stops every delivery thread promptly (an HTTP request in progress is
 * abandoned, a backoff sleep cut short; the event will be sent again),
 * saves the cursors and frees. Returns within about a second whatever the
 * receivers do. NULL is accepted. */
void vg_webhook_stop(vg_webhook_t *w);

typedef struct {
    const char *name;              /* the endpoint's name (valid while w lives) */
    uint64_t delivered;            /* events answered 2xx */
    uint64_t attempts;             /* POSTs started (a stop mid-request counts one) */
    uint64_t failures;             /* retryable failures: transport errors, timeouts, 5xx, 408, 429, other */
    uint64_t rejected;             /* permanent rejections (other 4xx), each now in the dead-letter stream */
    uint64_t pending;              /* durable alert records beyond the cursor */
    uint64_t consecutive_failures; /* retryable failures since the last delivery or rejection */
    uint64_t last_latency_ms;      /* of the last delivery: from the record's append time to its 2xx */
    int last_status;               /* HTTP status of the last answer, 0 = none yet (or no answer) */
    bool in_backoff;               /* waiting to retry now */
    char last_error[128];          /* the last failure or rejection, "" = none yet */
} vg_webhook_stats_t;

/* Number of endpoints (0 for NULL). */
uint32_t vg_webhook_count(const vg_webhook_t *w);

/* Fills *out with endpoint i's counters (i < vg_webhook_count). Thread-safe;
 * may be called from any thread while w lives. */
void vg_webhook_stats(vg_webhook_t *w, uint32_t i, vg_webhook_stats_t *out);

#endif
