/* pub.h — `vigil eval`'s publishing side: MQTT 3.1.1 connections carrying
 * QoS 1 PUBLISHes pipelined through a per-connection window, on one epoll
 * loop in the calling thread.
 *
 * Owns: the connections (non-blocking sockets, each with an mqttc client
 * that does CONNECT/CONNACK, PUBLISH encoding and PUBACK matching), the
 * global window and the lead limit.
 * Does not own: what is published, in which order, or which device uses
 * which connection (the caller publishes in arrival order and keeps each
 * device on one connection, so per-device order holds), alerts (sub.h), the
 * server process (child.h).
 *
 * Why a lead limit besides the windows: the processor's stream time is the
 * median event time of recent records in a shard, and the data-quality
 * detectors compare each device's samples (and silences) with it. The
 * server appends what one connection has buffered in a row, so whatever is
 * unacknowledged may reach the processors out of arrival order. A publish
 * therefore waits while its arrival time is more than lead_ms past the
 * oldest unacknowledged publish of the whole fleet: the disorder the server
 * can see is bounded by lead_ms of arrival time, whatever the windows. (A
 * device can then look silent for its interval + 2 x lead_ms of stream
 * time; eval's default lead, 0.4 intervals, keeps that well under the gap
 * detector's three intervals.) */
#ifndef VG_EVAL_PUB_H
#define VG_EVAL_PUB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct vg_evalpub vg_evalpub_t;

typedef struct {
    uint32_t window;        /* unacknowledged publishes per connection (default 256) */
    uint32_t global_window; /* unacknowledged publishes in all (default 8192) */
    int64_t lead_ms;        /* arrival-time spread of what is unacknowledged (default 2000) */
    const char *topic;      /* "iot/wearable/data" */
} vg_evalpub_opts_t;

/* Opens nconn connections to addr, client ids ids[0..nconn) (copied), and
 * waits (up to timeout_ms) until every CONNACK has arrived. Returns VG_OK,
 * VG_EIO (a connection failed or was refused; *why set to a static
 * sentence), VG_ENOMEM. On failure *out is NULL and everything is closed. */
int vg_evalpub_open(const struct sockaddr *addr, socklen_t addr_len, uint32_t nconn, const char *const *ids,
                    const vg_evalpub_opts_t *o, int timeout_ms, vg_evalpub_t **out, const char **why);

/* Queues one QoS 1 PUBLISH of payload[0..len), the sample that arrives at
 * arrival_ms, on connection conn. Calls must come in arrival order.
 * VG_OK; VG_AGAIN when the connection's window or the global window is full or
 * arrival_ms is too far ahead of the oldest unacknowledged publish (call
 * vg_evalpub_poll and retry: the caller must not skip ahead); VG_EIO when a
 * connection has failed (the run is over); VG_ENOMEM. */
int vg_evalpub_publish(vg_evalpub_t *p, uint32_t conn, int64_t arrival_ms, const char *payload, size_t len);

/* Writes what is queued, then waits up to timeout_ms for acknowledgements
 * and handles them. VG_OK or VG_EIO (a connection failed: see
 * vg_evalpub_error). */
int vg_evalpub_poll(vg_evalpub_t *p, int timeout_ms);

/* Polls until every publish is acknowledged or timeout_ms passes without
 * any progress. VG_OK, VG_AGAIN (stalled) or VG_EIO. */
int vg_evalpub_drain(vg_evalpub_t *p, int timeout_ms);

uint64_t vg_evalpub_sent(const vg_evalpub_t *p);
uint64_t vg_evalpub_acked(const vg_evalpub_t *p);
/* A static sentence describing the first failure, or NULL. */
const char *vg_evalpub_error(const vg_evalpub_t *p);

/* Sends DISCONNECT (best effort), closes and frees. NULL accepted. */
void vg_evalpub_close(vg_evalpub_t *p);

#endif
