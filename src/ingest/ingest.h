/* ingest.h — the telemetry ingest: the step between the gateway and the
 * stream. Validates each telemetry payload (core/event.h), appends valid
 * events to the telemetry stream (partition key = deviceId, record meta =
 * the 24 bytes of parsed fields (core/event.h) followed by the PUBLISH's
 * MQTT 5 user properties as their raw wire run, if any) and everything else to the dead-letter stream with the
 * reason, then reports completion for QoS 1 once the record is durable.
 * Nothing is dropped: an invalid payload is still stored (dead-lettered)
 * and acknowledged, because the device cannot fix it by retrying. */
#ifndef VG_INGEST_INGEST_H
#define VG_INGEST_INGEST_H

#include "core/event.h"
#include "stream/log.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vg_ingest vg_ingest_t;

/* Completion sink (the MQTT server): called from the stream's committer
 * thread with the token given to vg_ingest_publish. */
typedef void (*vg_ingest_complete_fn)(void *ctx, uint64_t token, int status);

typedef struct {
    vg_log_t *telemetry;   /* borrowed; outlives the ingest */
    vg_log_t *deadletter;  /* borrowed */
    const char *topic;     /* telemetry topic, recorded in dead letters */
    vg_ingest_complete_fn complete;
    void *complete_ctx;
} vg_ingest_opts_t;

int vg_ingest_new(const vg_ingest_opts_t *o, vg_ingest_t **out);
void vg_ingest_free(vg_ingest_t *in);
/* The completion sink may be set after creation (the server is created with
 * the ingest hook, so the two point at each other). */
void vg_ingest_set_complete(vg_ingest_t *in, vg_ingest_complete_fn fn, void *ctx);

/* Called through the gateway's telemetry hook (app/serve.c ingest_hook,
 * a vg_server_hook_fn): ctx is the vg_ingest_t. token 0 = QoS 0.
 * identity: the device the connection authenticated as (NULL = not
 * authenticated as a device: an anonymous or operator connection). An
 * event whose deviceId is another device goes to the dead-letter stream
 * as identity_mismatch: a device speaks only for itself, so the record's
 * device id is always the authenticated one. */
int vg_ingest_publish(void *ctx, const char *client_id, size_t client_id_len, const char *identity,
                      size_t identity_len, const uint8_t *payload, size_t payload_len, const uint8_t *user_props,
                      size_t user_props_len, int64_t arrival_ms, uint64_t token);

/* Matches vg_server_flush_fn: commits the telemetry appended so far on the
 * calling thread if the stream is idle (vg_log_flush). */
void vg_ingest_flush(void *ctx);

typedef struct {
    uint64_t accepted;
    uint64_t deadletter;
    uint64_t reasons[VG_EVENT__COUNT];
    uint64_t failed; /* append errors */
} vg_ingest_stats_t;

void vg_ingest_stats(vg_ingest_t *in, vg_ingest_stats_t *out);

#endif
