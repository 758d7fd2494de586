/* lifecycle.h — one episode = one alert: turns the detectors' conditions
 * into OPEN / UPDATE / RESOLVED events, and operator acknowledgements into
 * ACKNOWLEDGED events.
 *
 * Per device, a small fixed array of slots holds the open alerts (at most
 * VG_LIFECYCLE_SLOTS at once; one per type). Rules, applied to conditions
 * in the order given:
 *   active, no open alert of that type         -> OPEN (revision 0)
 *   active, open, severity higher than before  -> UPDATE (revision + 1)
 *   active, open, same or lower severity       -> nothing (no flapping: a
 *                                                 severity never goes down
 *                                                 within an episode)
 *   inactive, open                             -> RESOLVED, slot freed
 *   inactive, not open                         -> nothing
 * Hysteresis is the detectors' job (detect.h), so an episode ends only when
 * its detector's clearing rule says so.
 *
 * Ids are deterministic (alert.h): the same telemetry replayed from a
 * checkpoint gives the same alertId and eventId, which is what lets the
 * processor suppress events it already emitted before a crash.
 * Pure: no allocation, no I/O. */
#ifndef VG_ALERT_LIFECYCLE_H
#define VG_ALERT_LIFECYCLE_H

#include "alert/alert.h"
#include "detect/detect.h"

#include <stddef.h>
#include <stdint.h>

#define VG_LIFECYCLE_SLOTS 4

/* An open alert. Zeroed = free. Stored inside the per-device state, so it
 * is plain data (memcpy'd into checkpoints). The alert id is not stored:
 * it is a function of (device, type, open_seq, opened_at_ms) and is
 * recomputed when needed, which keeps a slot at 24 bytes. */
typedef struct {
    uint64_t open_seq;    /* telemetry seq of the sample that opened it (0 for a tick and for silence) */
    int64_t opened_at_ms; /* the condition's at_ms when it opened */
    uint8_t type;         /* vg_alert_type_t; VG_ALERT_NONE = free slot */
    uint8_t severity;     /* vg_severity_t, the highest reported in this episode */
    uint8_t acked;        /* 1 once ACKNOWLEDGED */
    uint8_t pad;
    uint16_t revision;    /* 0 at OPEN, +1 per UPDATE and at RESOLVED */
    uint16_t pad2;
} vg_alert_slot_t;

_Static_assert(sizeof(vg_alert_slot_t) == 24, "vg_alert_slot_t is part of the per-device budget");

typedef struct {
    vg_alert_event_kind_t kind;
    vg_alert_type_t type;
    vg_severity_t severity;
    uint64_t alert_id;
    uint64_t event_id;
    uint16_t revision;
    bool acked;             /* the alert was acknowledged (at or before this event) */
    int64_t opened_at_ms;
    uint64_t open_seq;
    const vg_cond_t *cond;  /* the condition behind it (evidence); NULL for ACKNOWLEDGED */
} vg_alert_event_t;

/* Called for each event, in order. A non-zero return stops the apply and is
 * returned (the slot change has already been made). */
typedef int (*vg_lifecycle_emit_fn)(void *ctx, const vg_alert_event_t *ev);

/* Applies n conditions of device dev_id. open_seq is the telemetry seq of
 * the sample behind them (it enters the id of an alert opened now); a tick
 * passes 0. Silence alerts (DATA_GAP, DEVICE_OFFLINE) always open with
 * open_seq 0, whether a tick or the sample that ended the silence noticed
 * them: which one comes first depends on timing, while the condition's
 * at_ms does not — so a replay finds the same id either way.
 * Returns VG_OK, the first emit error, or VG_ELIMIT if an OPEN found every
 * slot taken (the condition is then not tracked; the caller counts it). */
int vg_lifecycle_apply(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len, uint64_t seq,
                       const vg_cond_t *conds, int n, vg_lifecycle_emit_fn emit, void *ctx);

/* Marks alert_id acknowledged and emits ACKNOWLEDGED. VG_ENOTFOUND if no
 * open alert has that id, VG_EEXIST if it was already acknowledged. */
int vg_lifecycle_ack(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len, uint64_t alert_id,
                     vg_lifecycle_emit_fn emit, void *ctx);

/* Sets the acked flag without emitting (replay of an ACKNOWLEDGED that is
 * already in the alerts stream). Returns true if the slot was found. */
bool vg_lifecycle_mark_acked(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len,
                             uint64_t alert_id);
/* The id of the alert open in slot s of device dev_id (s must be in use). */
uint64_t vg_lifecycle_slot_id(const vg_alert_slot_t *s, const char *dev_id, size_t dev_len);

#endif
