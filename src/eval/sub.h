/* sub.h — `vigil eval`'s listening side: one MQTT connection, on its own
 * thread, subscribed to alerts/# (QoS 1) and $SYS/vigil/stats (QoS 0).
 *
 * Owns: the connection, a copy of every alert payload received (in order),
 * the latest values of the stats counters eval waits on, and the time of
 * the last alert. Does not own: parsing or judging alerts (eval.c, match.h).
 *
 * Why its own thread: alerts are acknowledged the moment they arrive, even
 * while the publishing loop is blocked on a full window, so the server
 * never queues (or, past its per-client limit, drops) alerts for us. */
#ifndef VG_EVAL_SUB_H
#define VG_EVAL_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct vg_evalsub vg_evalsub_t;

/* The stats counters eval waits on; -1 where the server has not sent them. */
typedef struct {
    uint64_t messages;      /* stats messages received */
    int64_t accepted;       /* telemetry.accepted */
    int64_t deadletter;     /* telemetry.deadletter */
    int64_t processed;      /* proc.processed */
    int64_t lag;            /* proc.lag */
    int64_t emitted;        /* alerts.emitted */
    uint64_t alerts;        /* alert messages received */
    uint64_t last_alert_ns; /* CLOCK_MONOTONIC of the last alert, 0 if none */
    bool failed;            /* the connection broke */
} vg_evalsub_stats_t;

/* Connects with client id `id`, subscribes and waits for the SUBACK (up to
 * timeout_ms), then starts the reading thread. VG_OK, VG_EIO (*why set) or
 * VG_ENOMEM. */
int vg_evalsub_start(const struct sockaddr *addr, socklen_t addr_len, const char *id, int timeout_ms,
                     vg_evalsub_t **out, const char **why);

void vg_evalsub_stats(vg_evalsub_t *s, vg_evalsub_stats_t *out);

/* Stops the thread, closes the connection and hands over the alert
 * payloads received: *payloads[0..*n), each NUL-terminated; the caller
 * frees each with vg_free and the array with vg_free. Frees s. */
void vg_evalsub_finish(vg_evalsub_t *s, char ***payloads, size_t *n);

#endif
