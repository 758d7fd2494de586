/* ledger.h — what a worker sent that an alert can refer to: the labelled
 * anomaly episodes it injected and, per device, its most recent
 * (timestamp, send time) pairs.
 *
 * Owns: recording episodes as their samples are sent, matching an incoming
 * alert to an episode (detected / duplicate / false) and finding the send
 * time of the event an alert names, for the publish→alert latency. Does not
 * own: parsing alerts or counting them (worker.c), reporting (report.h).
 *
 * Matching rule: an alert for device D of type T whose eventTimeMs lies in
 * [first, last] event timestamp of an episode of D of type T detects that
 * episode; further such alerts are duplicates; any other alert is false.
 * Lookups walk only D's own episodes (newest first), never the whole list. */
#ifndef VG_SIM_LEDGER_H
#define VG_SIM_LEDGER_H

#include "sim/device.h"
#include "sim/report.h"

#include <stddef.h>
#include <stdint.h>

#define VG_SIMLEDGER_RECENT 8 /* sends remembered per device besides episode starts */

typedef enum { VG_SIMLEDGER_DETECTED = 0, VG_SIMLEDGER_DUPLICATE, VG_SIMLEDGER_FALSE } vg_simledger_verdict_t;

typedef struct vg_simledger vg_simledger_t;

/* A ledger for devices 0..devices-1. NULL on allocation failure; release
 * with vg_simledger_free (NULL accepted). */
vg_simledger_t *vg_simledger_new(uint32_t devices);
void vg_simledger_free(vg_simledger_t *l);

/* Notes that device dev sent sample s at monotonic time send_ns. Returns
 * VG_OK, or VG_ENOMEM when a new episode could not be recorded (it then
 * stays unmatched and counts as missed; the caller counts it injected). */
int vg_simledger_sent(vg_simledger_t *l, uint32_t dev, const vg_simdev_sample_t *s, uint64_t send_ns);

/* Judges an alert of type (VG_SIMDEV_HIGH / _LOW; anything else is false)
 * for device dev about the event at ts_ms. *send_ns receives the send time
 * of that event if it is still known, else 0. */
vg_simledger_verdict_t vg_simledger_alert(vg_simledger_t *l, uint32_t dev, int type, int64_t ts_ms, uint64_t *send_ns);

/* Episodes recorded, and how many of them an alert detected. */
size_t vg_simledger_episodes(const vg_simledger_t *l);
size_t vg_simledger_detected(const vg_simledger_t *l);

/* Copies the episodes, in the order they started, into out[0..count),
 * adding `first` to the device indices (fleet-wide numbering). */
void vg_simledger_export(const vg_simledger_t *l, uint32_t first, vg_simepisode_t *out);

#endif
