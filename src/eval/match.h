/* match.h — judging alerts against the scenario's labels: detected,
 * duplicate, secondary, false or ignored; detection delays; the naive
 * "heart rate > 140" rule judged by the same labels.
 *
 * Owns: the matching rules below and every number of the report. Pure: no
 * I/O, no clock; inputs in, results out (unit-testable on its own).
 *
 * RULES (docs/detection.md repeats them)
 * Only OPEN events count (UPDATE/ACKNOWLEDGED/RESOLVED belong to an alert
 * already opened). Alert time: openedAtMs and eventTimeMs; the delay is
 * eventTimeMs - label start.
 *  1. Ignored: an OPEN whose eventTimeMs lies in the last offline_after_s of
 *     its device's span (the end of a replay looks like the fleet going
 *     offline) or after it.
 *  2. Detected: an OPEN of type T for device D whose openedAtMs or
 *     eventTimeMs lies in [start - 60 s, end + grace] of a label of D that
 *     carries T; grace = 10 min for cardiac types, the label's own length
 *     for data-quality types. For CLOCK_SKEW the window shifted by the
 *     label's skew counts as well (the device's own clock), and a time in
 *     it is mapped back before the delay is taken. The first such OPEN
 *     (in eventTimeMs order) detects the label; further ones are duplicates
 *     ("one episode = one alert") — unless they lie within a minute of
 *     another label of the device, which then caused them (rule 3).
 *  3. Secondary: an OPEN that detects nothing but lies within 10 min of any
 *     label of its device (e.g. SUDDEN_HR_CHANGE at the onset of an extreme
 *     episode). Neither true nor false; reported in its own column.
 *  4. False: everything else. A device-day is normal when no label of the
 *     device (its matching window) touches it; false alerts on normal days
 *     are reported per type and in total per category.
 * Delays are in seconds, except BASELINE_DRIFT and RESTING_HR_ELEVATION
 * (days). Precision = (detected + duplicates) / (detected + duplicates +
 * false). The naive rule raises one alert per excursion above 140 bpm (at
 * its first sample); an excursion inside a label's window detects every
 * type of that label; otherwise secondary/false as above. */
#ifndef VG_EVAL_MATCH_H
#define VG_EVAL_MATCH_H

#include "detect/detect.h"
#include "eval/scenario.h"

#include <stddef.h>
#include <stdint.h>

#define VG_EVALMATCH_SLACK_MS 60000LL          /* before the label start */
#define VG_EVALMATCH_CARDIAC_GRACE_MS 600000LL /* after the label end */
#define VG_EVALMATCH_SECONDARY_MS 600000LL

/* One OPEN event as eval received it. */
typedef struct {
    uint32_t device; /* index; UINT32_MAX for a device the run does not know */
    uint8_t type;    /* vg_alert_type_t; VG_ALERT_NONE for a type name we do not know */
    int64_t opened_ms, event_ms;
} vg_evalalert_t;

/* The naive rule's alert: device, and the timestamp of its first sample > 140. */
typedef struct {
    uint32_t device;
    int64_t ts_ms;
} vg_evalrule_t;

typedef struct {
    const vg_scen_label_t *labels; /* sorted by device, then start */
    size_t n_labels;
    uint32_t devices;
    const int64_t *span_end; /* per device */
    int64_t t0_ms;           /* every device's span starts here */
    int64_t offline_after_ms;
} vg_evalmatch_in_t;

typedef struct {
    uint64_t episodes, detected, missed, duplicates, secondary, false_alerts, false_normal, ignored, opens;
    size_t n_delays;
    double delay_median, delay_p95; /* seconds or days (see above); NaN when nothing was detected */
} vg_evaltype_t;

typedef struct {
    uint64_t alerts, matched, secondary, false_alerts, false_normal, ignored;
    uint64_t episodes[VG_ALERT__COUNT], detected[VG_ALERT__COUNT];
} vg_evalrulestats_t;

typedef struct {
    vg_evaltype_t type[VG_ALERT__COUNT]; /* [VG_ALERT_NONE]: types we do not know (all false) */
    double device_days, normal_device_days;
    uint64_t false_normal_cardiac, false_normal_quality, false_normal_other;
    uint64_t unknown_device;
    vg_evalrulestats_t rule;
    /* Per label and type: the delay of its detection (same unit as above),
     * NaN if missed; and its duplicates. Indexed [label * VG_ALERT__COUNT + type]. */
    double *label_delay;
    uint32_t *label_dups;
    /* Per alert (in the sorted order vg_evalmatch_run leaves them in): its
     * verdict (VG_EVALMATCH_*) and, for detections and duplicates, the label. */
    uint8_t *verdict;
    int32_t *alert_label;
} vg_evalmatch_t;

enum {
    VG_EVALMATCH_DETECTED = 0,
    VG_EVALMATCH_DUPLICATE,
    VG_EVALMATCH_SECONDARY,
    VG_EVALMATCH_FALSE,        /* on a device-day with a label */
    VG_EVALMATCH_FALSE_NORMAL, /* on a normal device-day */
    VG_EVALMATCH_IGNORED,
};

/* true for the types whose delay is in days. */
bool vg_evalmatch_in_days(int type);

/* Judges alerts[0..n) (sorted in place by eventTimeMs) and rule[0..nr)
 * against in. VG_OK or VG_ENOMEM. Release with vg_evalmatch_free. */
int vg_evalmatch_run(const vg_evalmatch_in_t *in, vg_evalalert_t *alerts, size_t n, const vg_evalrule_t *rule,
                     size_t nr, vg_evalmatch_t *out);
void vg_evalmatch_free(vg_evalmatch_t *m);

#endif
