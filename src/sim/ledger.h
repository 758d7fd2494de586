/* ledger.h — what a worker sent that an alert can refer to: the labelled
 * anomaly episodes it injected and, per device, its most recent
 * (timestamp, send time) pairs.
 *
 * Owns: recording episodes as their samples are sent, judging an incoming
 * alert event against the episodes (detected / duplicate / secondary /
 * false, or a later event of an alert already seen) and finding the send
 * time of the event an alert names, for the publish→alert latency. Does not
 * own: parsing alerts or counting them (worker.c), reporting (report.h).
 *
 * An alert is a series of events with one alertId (src/alert/alert.h):
 * OPEN, then UPDATE / ACKNOWLEDGED / RESOLVED. Only an OPEN (or an alert in
 * the old one-message format, which has no "event") is a new alert and is
 * judged; the later events never count as duplicates or false alerts.
 *
 * Matching rule for an OPEN of device D about the event at eventTimeMs T:
 *  - an extreme-value alert (EXTREME_HIGH_HR / EXTREME_LOW_HR, or the old
 *    HIGH_HEART_RATE / LOW_HEART_RATE) of type X with T in [first, last]
 *    event timestamp of an episode of D of type X detects that episode;
 *    another such alert (a different alertId) is a duplicate; the same
 *    alertId again is a redelivery, a follow-up;
 *  - any other cardiac alert (sudden change, at rest, baseline...) with T
 *    within VG_SIMLEDGER_NEAR_MS plus two intervals of one of D's episodes
 *    is secondary: the injected episode caused it (the jump into an episode
 *    is a sudden change), so it is neither a detection nor false. (At 5 s
 *    intervals and below such alerts fall inside the episode; at 20-27 s
 *    the sudden-change detector's one-minute level needs a few samples to
 *    settle after the drop out of an episode, and the fall can be
 *    confirmed up to ~140 s after the episode's last sample.)
 *  - anything else is false. (Data-quality alerts never reach the ledger:
 *    the worker counts them on their own.)
 * A RESOLVED event whose alertId is the one that detected an episode marks
 * that episode resolved.
 * Lookups walk only D's own episodes (newest first, stopping at the first
 * that ended long before T), never the whole list.
 *
 * Send times: the ring of VG_SIMLEDGER_RECENT sends per device covers the
 * alerts that arrive while the device is still near the event they name,
 * which at intervals of a millisecond or more is all of them. An episode
 * spans 30 s and more, far longer than the ring, so each episode keeps the
 * send times of the two events an extreme alert can name: its first sample
 * (the old threshold detector fires there) and, from its episode_due
 * sample on, VG_SIMLEDGER_DUE samples (the extreme detector fires on the
 * sample that completes extreme_sustain_s, or the next one if it counts the
 * limit as exclusive) — so a fast device's ring moving on never loses the
 * latency of a detection. */
#ifndef VG_SIM_LEDGER_H
#define VG_SIM_LEDGER_H

#include "sim/device.h"
#include "sim/report.h"

#include <stddef.h>
#include <stdint.h>

#define VG_SIMLEDGER_RECENT 8       /* sends remembered per device besides the episodes' own */
#define VG_SIMLEDGER_DUE 3          /* sends kept per episode from its episode_due sample on */
#define VG_SIMLEDGER_NEAR_MS 120000 /* secondary alerts: this close to an episode (+ 2 intervals) */

/* Which event of an alert's life a message is. */
typedef enum {
    VG_SIMLEDGER_EV_OPEN = 0, /* "OPEN", or no "event" field (old format) */
    VG_SIMLEDGER_EV_UPDATE,
    VG_SIMLEDGER_EV_ACK,
    VG_SIMLEDGER_EV_RESOLVED,
    VG_SIMLEDGER_EV_OTHER /* an event name we do not know: never a new alert */
} vg_simledger_event_t;

typedef enum {
    VG_SIMLEDGER_DETECTED = 0, /* OPEN: the first alert of an episode */
    VG_SIMLEDGER_DUPLICATE,    /* OPEN: another alert of an episode already detected */
    VG_SIMLEDGER_FALSE,        /* OPEN: explained by no episode */
    VG_SIMLEDGER_SECONDARY,    /* OPEN: another cardiac type, near an episode */
    VG_SIMLEDGER_FOLLOWUP,     /* a later event of an alert, or an OPEN redelivered */
    VG_SIMLEDGER_RESOLVED,     /* RESOLVED of the alert that detected an episode */
} vg_simledger_verdict_t;

/* One alert event as the ledger needs it. */
typedef struct {
    int type;          /* VG_SIMDEV_HIGH / _LOW for an extreme-value alert, 0 for any other cardiac type */
    int event;         /* vg_simledger_event_t */
    int64_t ts_ms;     /* eventTimeMs */
    uint64_t alert_id; /* alertId's 16 hex digits as a number; 0: none */
} vg_simledger_alert_t;

typedef struct vg_simledger vg_simledger_t;

/* A ledger for devices 0..devices-1 sending every interval_s seconds (it
 * widens the secondary window). NULL on allocation failure; release with
 * vg_simledger_free (NULL accepted). */
vg_simledger_t *vg_simledger_new(uint32_t devices, double interval_s);
void vg_simledger_free(vg_simledger_t *l);

/* Notes that device dev sent sample s at monotonic time send_ns. Returns
 * VG_OK, or VG_ENOMEM when a new episode could not be recorded (it then
 * stays unmatched and counts as missed; the caller counts it injected). */
int vg_simledger_sent(vg_simledger_t *l, uint32_t dev, const vg_simdev_sample_t *s, uint64_t send_ns);

/* Judges alert event a about device dev (see the matching rule above).
 * *send_ns receives, for an OPEN, the send time of the event at a->ts_ms
 * if it is still known, else 0 (always 0 for follow-ups and redeliveries,
 * so that each alert is timed once). */
vg_simledger_verdict_t vg_simledger_alert(vg_simledger_t *l, uint32_t dev, const vg_simledger_alert_t *a,
                                          uint64_t *send_ns);

/* Episodes recorded; how many of them an alert detected; how many of those
 * the detecting alert's RESOLVED event closed; how many were cut short
 * (their last sample never sent: the run ended, or sending stopped). */
size_t vg_simledger_episodes(const vg_simledger_t *l);
size_t vg_simledger_detected(const vg_simledger_t *l);
size_t vg_simledger_resolved(const vg_simledger_t *l);
size_t vg_simledger_cut(const vg_simledger_t *l);

/* Copies the episodes, in the order they started, into out[0..count),
 * adding `first` to the device indices (fleet-wide numbering). */
void vg_simledger_export(const vg_simledger_t *l, uint32_t first, vg_simepisode_t *out);

#endif
