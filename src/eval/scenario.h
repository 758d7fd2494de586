/* scenario.h — `vigil eval`'s labelled fleet: a seeded, fully deterministic
 * generator of wearable device-days with injected anomaly episodes whose
 * true extent is known (the labels).
 *
 * Owns: the physiology and activity model, the episode plan (where each
 * labelled episode lies), the per-sample effects of each episode, the
 * arrival time of every sample, and the fleet-wide merge that yields the
 * samples in arrival order. Does not own: sockets, JSON, the pipeline,
 * matching alerts to labels (match.h).
 *
 * Everything is a pure function of the configuration (seed included): two
 * runs with the same configuration yield byte-identical samples and labels.
 * Each device draws from its own splitmix64 streams (one for its plan, one
 * for its samples), so the plan does not change when the sample model does.
 *
 * THE MODEL (docs/detection.md repeats it; change both together)
 *
 * Time. Every ordinary device covers [T0, T0 + days); T0 = 2026-01-05T00:00Z.
 * Drift devices (see BASELINE_DRIFT) cover [T0, T0 + drift_days). A device
 * measures every `interval` seconds (default 5) with jitter U(-0.3, +0.3) s;
 * its first sample lies in [T0, T0 + interval). Device local time = UTC.
 * Payload: {"deviceId","heartRate","steps","timestamp"} with heartRate and
 * steps integers (steps since the previous sample) and timestamp in epoch ms.
 *
 * Physiology (per device): resting rate r0 ~ U(52, 75); sleep from
 * 23:00 + U(-30, 30) min to 07:00 + U(-30, 30) min, at r0 - U(5, 8) (drop
 * per device), steps 0; the resting level moves from day to day by
 * N(0, 1) bpm (one value per noon-to-noon day, so a night has one level).
 * The heart rate x follows its activity's target with a time constant of
 * U(30, 45) s going up and U(120, 180) s going down (recovery, tau 2–3 min);
 * on top: a slow wander (AR(1), sd 2 bpm, correlation time 10 min) and
 * sample noise N(0, 2.5). Normal samples are reflected into and clamped to
 * [42, 178]: exercise never reaches the extreme threshold (180) and rest
 * never the low ones.
 * Awake bouts (07:00–23:00):
 *   rest       10–60 min, target r0 + U(0, 8); fidget: 8% of samples carry
 *              1–3 steps, the rest 0
 *   walk       5–30 min, target r0 + U(25, 40), 80–120 steps/min
 *   run        20–50 min, target U(135, 165) (samples ~120–175), 150–180 steps/min
 *   intervals  4–10 cycles of 2 min hard (target U(160, 170), samples
 *              160–178, 150–180 steps/min) and 2 min easy (target U(110, 125),
 *              samples 105–130, 80–120 steps/min)
 *   recovery   after every walk/run/intervals bout: U(8, 15) min with steps 0
 *              while the heart rate decays to the resting level
 * After rest or recovery the next bout is walk 45%, run 12%, intervals 8%,
 * rest 35% — a normal day holds about two hours of running and intervals.
 *
 * Episodes. A device-day is kept free of episodes with probability
 * normal_share (default 0.5); on the other days each kind k is injected
 * Poisson(rate[k]) times (default 0.4 per kind per episode day), at a uniform
 * time of day, never overlapping another episode of the device, with >= 30 min
 * of normal data between the footprints (the episode plus its pre-roll and
 * after-effects), none in the first 30 min or the last 90 min of the span. An
 * episode that does not fit after 50 tries is dropped (counted in
 * vg_scen_unplaced). Labels (type set, start, end) are in true time:
 *   REST_HIGH     SUSTAINED_HIGH_HR_AT_REST. 6–10 min forced rest (steps 0)
 *                 first; HR rises over U(60, 120) s to a level U(125, 145)
 *                 (samples level + N(0, 2.5) clamped to [121, 150]) for
 *                 U(20, 40) min at rest, returns over U(60, 120) s.
 *                 start = first sample > 120, end = last sample > 120.
 *   REST_LOW      SUSTAINED_LOW_HR_AT_REST. Same shape; onset U(90, 150) s to
 *                 a level U(36.5, 38.5) (samples + N(0, 1) clamped to
 *                 [36, 39]: never below the extreme-low 35, so the episode
 *                 is not EXTREME_LOW_HR as well). start/end: samples < 40.
 *   EXTREME_HIGH  EXTREME_HIGH_HR. Any activity; HR ramps over U(10, 30) s to
 *                 U(190, 205) (samples clamped to [185, 210]) for U(60, 300) s,
 *                 back over U(30, 60) s. start/end: samples > 180.
 *   EXTREME_LOW   EXTREME_LOW_HR. Same with level U(28, 31), samples + N(0, 1.5)
 *                 clamped to [26, 33]. start/end: samples < 35.
 *   SUDDEN        SUDDEN_HR_CHANGE. 6–10 min forced rest first; HR jumps by
 *                 U(40, 60) within U(5, 20) s (samples base + jump + N(0, 2.5),
 *                 at least base + 35, at most 178), stays U(120, 300) s (too
 *                 short for a sustained-at-rest episode), then returns over
 *                 U(120, 180) s (slower than the sudden-change rate, so only
 *                 the onset is sudden). start = first sample of the jump,
 *                 end = last sample of the plateau.
 *   DRIFT         BASELINE_DRIFT + RESTING_HR_ELEVATION, only on the
 *                 drift_devices (no other episodes there): from midnight of
 *                 day U{7 .. drift_days - 5} the resting level (awake rest,
 *                 sleep and walking, which are relative to r0) rises linearly
 *                 by U(6, 12) bpm over U(2, 3) days and stays up to the end
 *                 (>= 2 days). start = the day the rise begins, end = span end.
 *   GAP           DATA_GAP: no samples for U(2, 12) min.
 *   OFFLINE       DATA_GAP + DEVICE_OFFLINE: no samples for U(20, 60) min.
 *                 start = first missing sample's time, end = first sample after.
 *   FLATLINE      SENSOR_FLATLINE: between 08:00 and 21:30, while walking
 *                 (forced, so steps vary), the sensor repeats the value of its
 *                 first affected sample for U(15, 30) min.
 *   SKEW          CLOCK_SKEW: for U(1, 3) h the device clock runs U(5, 30) min
 *                 ahead: timestamps shifted, samples sent at the true time.
 *                 start/end = true time of the first/last shifted sample.
 *   IMPOSSIBLE    SENSOR_IMPOSSIBLE_VALUE: 3–10 consecutive samples with HR
 *                 U(255, 299) (half the episodes) or U(5, 20): inside the
 *                 gateway's (0, 300], outside the plausible range.
 *   OUT_OF_ORDER  OUT_OF_ORDER_TIMESTAMP: 2–5 samples each arrive after their
 *                 successor (adjacent pairs swapped: a late delivery, no
 *                 sample lost or duplicated, no event-time gap over two
 *                 intervals). start = first late sample's timestamp,
 *                 end = arrival of the last late sample.
 *   STALE         STALE_DATA + DATA_GAP + DEVICE_OFFLINE: the device buffers
 *                 U(20, 40) min of samples (correct timestamps) and uploads
 *                 the backlog at 20 samples/s when the buffering ends.
 *                 start = first buffered sample, end = last backlog arrival.
 * Arrival: a sample arrives at its measurement time, except backlog samples
 * (the upload) and late out-of-order samples; per device arrival never goes
 * backwards. vg_scen_next yields the whole fleet in arrival order (ties by
 * device index). */
#ifndef VG_EVAL_SCENARIO_H
#define VG_EVAL_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_SCEN_T0_MS 1767571200000LL /* 2026-01-05T00:00:00Z */
#define VG_SCEN_DAY_MS 86400000LL

typedef enum {
    VG_SCEN_REST_HIGH = 0,
    VG_SCEN_REST_LOW,
    VG_SCEN_EXTREME_HIGH,
    VG_SCEN_EXTREME_LOW,
    VG_SCEN_SUDDEN,
    VG_SCEN_DRIFT, /* not rate-driven: one per drift device */
    VG_SCEN_GAP,
    VG_SCEN_OFFLINE,
    VG_SCEN_FLATLINE,
    VG_SCEN_SKEW,
    VG_SCEN_IMPOSSIBLE,
    VG_SCEN_OUT_OF_ORDER,
    VG_SCEN_STALE,
    VG_SCEN__KINDS
} vg_scen_kind_t;

/* "rest_high", "rest_low", "extreme_high", "extreme_low", "sudden", "drift",
 * "gap", "offline", "flatline", "skew", "impossible", "out_of_order",
 * "stale"; NULL past the end. */
const char *vg_scen_kind_name(int kind);
/* The kind called name, or -1. */
int vg_scen_kind_parse(const char *name);

typedef struct {
    uint64_t seed;
    uint32_t devices;            /* ordinary devices (default 200) */
    double days;                 /* their span (default 3) */
    uint32_t drift_devices;      /* devices with a baseline drift (default 10) */
    double drift_days;           /* their span (default 14, at least 12) */
    double interval_s;           /* default 5 */
    double jitter_s;             /* default 0.3 */
    double normal_share;         /* share of device-days kept free of episodes (0.5) */
    double rate[VG_SCEN__KINDS]; /* episodes per kind per episode day (0.4; DRIFT unused) */
    int64_t t0_ms;               /* VG_SCEN_T0_MS */
} vg_scen_cfg_t;

void vg_scen_cfg_default(vg_scen_cfg_t *c);
/* VG_OK, or VG_EINVAL with a static sentence in *why. */
int vg_scen_cfg_check(const vg_scen_cfg_t *c, const char **why);

/* One labelled episode. Alert types as a bit set: bit t = vg_alert_type_t t. */
typedef struct {
    uint32_t device;
    uint8_t kind; /* vg_scen_kind_t */
    uint8_t high; /* IMPOSSIBLE: 1 for the 255–299 variety */
    uint16_t pad;
    uint32_t types;          /* 1u << VG_ALERT_* */
    int64_t start_ms;        /* label start (true time; see the model above) */
    int64_t end_ms;          /* label end */
    int64_t skew_ms;         /* SKEW: how far the device clock runs ahead */
    double level;            /* the plateau level (cardiac), drift amount (DRIFT) */
    double core_lo, core_hi; /* every core-phase sample lies in [core_lo, core_hi] */
    uint32_t samples;        /* samples shaped by the episode (core + ramps, or affected) */
} vg_scen_label_t;

/* One sample in arrival order. */
typedef struct {
    uint32_t device;
    int hr;
    int steps;
    int64_t ts_ms;      /* the payload's timestamp (device clock) */
    int64_t true_ms;    /* when it was measured */
    int64_t arrival_ms; /* when the device sends it */
    int32_t label;      /* index of the episode that shaped it, or -1 */
    uint8_t phase;      /* VG_SCEN_PHASE_* */
    uint8_t activity;   /* VG_SCEN_ACT_* */
} vg_scen_sample_t;

enum { VG_SCEN_PHASE_NORMAL = 0, VG_SCEN_PHASE_RAMP = 1, VG_SCEN_PHASE_CORE = 2 };
enum {
    VG_SCEN_ACT_SLEEP = 0,
    VG_SCEN_ACT_REST,
    VG_SCEN_ACT_WALK,
    VG_SCEN_ACT_RUN,
    VG_SCEN_ACT_HARD, /* intervals, hard part */
    VG_SCEN_ACT_EASY, /* intervals, easy part */
    VG_SCEN_ACT_RECOVERY,
    VG_SCEN_ACT_STILL /* forced rest before/through a rest or sudden episode */
};

typedef struct vg_scen vg_scen_t;

/* Plans every device's episodes. VG_OK, VG_EINVAL (bad configuration) or
 * VG_ENOMEM. The caller owns *out (vg_scen_free). */
int vg_scen_new(const vg_scen_cfg_t *cfg, vg_scen_t **out);
void vg_scen_free(vg_scen_t *s);

/* Devices in the fleet: ordinary ones 0..devices-1 ("ev-0000"), then the
 * drift devices ("evd-000"). */
uint32_t vg_scen_devices(const vg_scen_t *s);
/* Writes the device's id (NUL-terminated); returns its length or VG_ENOSPC. */
int vg_scen_device_id(const vg_scen_t *s, uint32_t dev, char *out, size_t cap);
int64_t vg_scen_device_end(const vg_scen_t *s, uint32_t dev); /* span end, epoch ms */
bool vg_scen_device_is_drift(const vg_scen_t *s, uint32_t dev);

/* The next sample of the fleet in arrival order: VG_OK, or VG_ENOTFOUND
 * when every device has reached the end of its span. */
int vg_scen_next(vg_scen_t *s, vg_scen_sample_t *out);
/* Samples yielded so far. */
uint64_t vg_scen_yielded(const vg_scen_t *s);

/* The labels, ordered by device then start. Start and end are final only
 * once vg_scen_next has returned VG_ENOTFOUND (they are refined from the
 * samples as they are generated); the pointer stays valid until
 * vg_scen_free. */
size_t vg_scen_label_count(const vg_scen_t *s);
const vg_scen_label_t *vg_scen_labels(const vg_scen_t *s);
/* Episodes planned but dropped because they did not fit. */
size_t vg_scen_unplaced(const vg_scen_t *s);

#endif
