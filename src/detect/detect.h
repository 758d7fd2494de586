/* detect.h — the wearable anomaly detectors: shared vocabulary.
 *
 * Every detector is one file under src/detect/ (rest.c, extreme.c, sudden.c,
 * baseline.c, quality.c) with a fixed-size, zero-initialisable, pointer-free
 * per-device state struct and pure functions: no allocation, no clock, no
 * I/O. A detector sees one device's samples in event-time order and reports,
 * for each alert type it owns, a *condition* (vg_cond_t): does the condition
 * hold after this sample, how severe, and the evidence. It does not decide
 * what is news: the alert lifecycle (devstate.c) turns condition changes
 * into OPEN / UPDATE / RESOLVED events, once per episode.
 *
 * Hysteresis belongs to the detector (it knows its own signal): a condition
 * reported active stays active until the detector's own clearing rule says
 * otherwise, so the lifecycle never sees flapping.
 *
 * Time: detectors use two clocks, both carried by the sample:
 *   ts_ms  — the device's event time (its own clock, from the payload);
 *   now_ms — the shard's stream time when the sample was read: the median
 *            event time of the shard's recent records, advanced by wall time
 *            while the shard is idle (processor.c). Live, this is the wall
 *            clock; in a fast replay (vigil eval) it is the replayed time.
 *            Only quality.c (skew, staleness, gaps, offline) uses it.
 *
 * Per-device memory budget (the whole vg_devstate_t must stay <= 512 bytes
 * so that 10 million devices fit in 5 GiB):
 *   common (devstate.c) 48, quality 64, rest 168, extreme 32, sudden 32,
 *   baseline + nightly 96, lifecycle slots 64. Each state header has a
 *   _Static_assert on its size. */
#ifndef VG_DETECT_DETECT_H
#define VG_DETECT_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Alert types. The numeric values are stored in the alerts stream's record
 * meta and in checkpoints: never renumber, only append. */
typedef enum {
    VG_ALERT_NONE = 0,
    VG_ALERT_HIGH_HR_AT_REST = 1,   /* SUSTAINED_HIGH_HR_AT_REST (rest.c) */
    VG_ALERT_LOW_HR_AT_REST = 2,    /* SUSTAINED_LOW_HR_AT_REST (rest.c) */
    VG_ALERT_EXTREME_HIGH_HR = 3,   /* EXTREME_HIGH_HR (extreme.c) */
    VG_ALERT_EXTREME_LOW_HR = 4,    /* EXTREME_LOW_HR (extreme.c) */
    VG_ALERT_SUDDEN_CHANGE = 5,     /* SUDDEN_HR_CHANGE (sudden.c) */
    VG_ALERT_BASELINE_DRIFT = 6,    /* BASELINE_DRIFT (baseline.c) */
    VG_ALERT_RESTING_HR_RISE = 7,   /* RESTING_HR_ELEVATION, nightly (baseline.c) */
    VG_ALERT_IMPOSSIBLE_VALUE = 8,  /* SENSOR_IMPOSSIBLE_VALUE (quality.c) */
    VG_ALERT_FLATLINE = 9,          /* SENSOR_FLATLINE (quality.c) */
    VG_ALERT_DATA_GAP = 10,         /* DATA_GAP (quality.c) */
    VG_ALERT_DEVICE_OFFLINE = 11,   /* DEVICE_OFFLINE (quality.c) */
    VG_ALERT_OUT_OF_ORDER = 12,     /* OUT_OF_ORDER_TIMESTAMP (quality.c) */
    VG_ALERT_STALE_DATA = 13,       /* STALE_DATA (quality.c) */
    VG_ALERT_CLOCK_SKEW = 14,       /* CLOCK_SKEW (quality.c) */
    VG_ALERT__COUNT
} vg_alert_type_t;

typedef enum { VG_SEV_NONE = 0, VG_SEV_INFO = 1, VG_SEV_WARNING = 2, VG_SEV_CRITICAL = 3 } vg_severity_t;

/* "SUSTAINED_HIGH_HR_AT_REST", ...; "NONE" for anything else. */
const char *vg_alert_type_name(vg_alert_type_t t);
/* The type named name (exact, case-sensitive), or VG_ALERT_NONE. */
vg_alert_type_t vg_alert_type_parse(const char *name, size_t len);
/* true for the cardiac types (1..7), false for data-quality types. */
bool vg_alert_type_is_cardiac(vg_alert_type_t t);
/* "info", "warning", "critical", "none". */
const char *vg_severity_name(vg_severity_t s);

/* Every threshold, with its default and allowed range in detect.c's table
 * (vg_detect_cfg_set validates). Times in seconds, rates per minute. */
typedef struct {
    /* activity (devstate.c): a sample is "inactive" when its step rate is
     * <= inactive_steps_per_min; the wearer is "at rest" when every sample
     * of the last rest_after_activity_s was inactive. */
    double inactive_steps_per_min; /* 10 */
    double rest_after_activity_s;  /* 300 */
    /* rest.c */
    double rest_high_bpm;        /* 120, range 100..150 */
    double rest_low_bpm;         /* 40, range 30..50 */
    double rest_share;           /* 0.8: share of the window's samples beyond the threshold, at rest */
    double rest_window_s;        /* 600 */
    double rest_min_samples;     /* 10: fewer samples in the window never fire */
    double rest_hysteresis_bpm;  /* 5: clearing counts samples beyond threshold -/+ this */
    double rest_clear_share;     /* 0.5: clears when the (hysteresis) share falls below this */
    double rest_critical_delta_bpm; /* 20: window mean beyond threshold by this -> critical */
    /* extreme.c */
    double extreme_high_bpm;     /* 180 */
    double extreme_low_bpm;      /* 35 */
    double extreme_sustain_s;    /* 30 */
    double extreme_hysteresis_bpm; /* 5 */
    /* sudden.c */
    double sudden_bpm_per_min;   /* 30: |change| vs the previous minute's level, per minute */
    double sudden_confirm_samples; /* 2 */
    double sudden_clear_s;       /* 120 */
    /* baseline.c: resting heart rate = HR of samples at rest for >= baseline_rest_s */
    double baseline_rest_s;      /* 720 (12 min) */
    double baseline_halflife_h;  /* 72: EW mean/variance half-life, in resting hours */
    double baseline_z;           /* 3.0: robust z-score limit */
    double baseline_window_s;    /* 1800: z must stay above the limit this long (resting time) */
    double baseline_warmup_h;    /* 24: resting hours before any drift alert */
    double baseline_min_sd_bpm;  /* 2.0: floor of the scale in the z-score */
    double night_start_hour;     /* 0 (device local time) */
    double night_end_hour;       /* 6 */
    double tz_offset_min;        /* 0: device local time = UTC + this */
    double nightly_warn_bpm;     /* 3: nightly RHR >= median(previous nights) + this ... */
    double nightly_alert_bpm;    /* 4: ... and + this escalates */
    double nightly_consecutive;  /* 2 nights in a row */
    double nightly_min_nights;   /* 3 nights of history before any alert */
    /* quality.c */
    double hr_min_plausible;     /* 25 */
    double hr_max_plausible;     /* 250 */
    double steps_max_per_min;    /* 400 */
    double flatline_s;           /* 600: identical heart rate this long ... */
    double flatline_min_samples; /* 20: ... over at least this many samples */
    double gap_factor;           /* 3: gap = silence > gap_factor x the device's usual interval */
    double offline_after_s;      /* 900 */
    double stale_after_s;        /* 600: event time this far behind stream time */
    double clock_skew_s;         /* 120: event time off stream time by this, consistently */
    double skew_confirm_samples; /* 3 */
} vg_detect_cfg_t;

void vg_detect_cfg_default(vg_detect_cfg_t *c);
/* The parameter table, for --help and docs: count, then row i's name,
 * default and allowed range. VG_EINVAL past the end. */
size_t vg_detect_param_count(void);
int vg_detect_param_info(size_t i, const char **name, double *def, double *min, double *max);
/* Sets the parameter called name (the field name above, e.g.
 * "rest_high_bpm") to value. VG_ENOTFOUND for an unknown name, VG_EINVAL
 * (and *why set to a static sentence) for a value outside its range. */
int vg_detect_cfg_set(vg_detect_cfg_t *c, const char *name, double value, const char **why);

/* One sample as the detectors see it. devstate.c fills everything. */
typedef struct {
    double hr;              /* bpm, as received */
    int64_t steps;          /* steps since the previous event, as received */
    int64_t ts_ms;          /* device event time */
    int64_t now_ms;         /* shard stream time (see above) */
    uint64_t seq;           /* telemetry stream sequence number */
    bool first;             /* the device's first sample */
    int64_t dt_ms;          /* ts_ms - the previous in-order sample's ts_ms; <= 0 means out of
                             * order or a duplicate timestamp (devstate.c does not move its
                             * "previous" back); 0 when first */
    double steps_per_min;   /* steps / dt (0 when dt is 0) */
    bool inactive;          /* steps_per_min <= inactive_steps_per_min */
    bool at_rest;           /* inactive for >= rest_after_activity_s (and this sample inactive) */
    int64_t inactive_ms;    /* how long the wearer has been inactive up to this sample */
    bool usable;            /* set by quality.c: false for impossible values, out-of-order
                             * samples and flat-lined stretches; cardiac detectors skip
                             * unusable samples entirely */
} vg_sample_t;

/* A detector's verdict on one alert type. */
typedef struct {
    uint8_t type;      /* vg_alert_type_t */
    uint8_t active;    /* 1: the condition holds now */
    uint8_t severity;  /* vg_severity_t, when active */
    uint8_t pad;
    uint32_t samples;  /* evidence: samples in the detector's window */
    float min_hr, mean_hr, max_hr; /* evidence: heart rate over the window (0 if none) */
    float active_share;            /* evidence: share of the window's samples with activity, 0..1 */
    int64_t window_ms;             /* evidence: the window's length */
    int64_t at_ms;     /* event time the condition started (active) or cleared (inactive):
                        * deterministic, used for the alert id */
    double value;      /* what was measured (share, bpm, bpm/min, z, seconds...) */
    double threshold;  /* the limit it was compared with */
} vg_cond_t;

/* Upper bound of conditions one sample or tick can produce, all detectors. */
#define VG_DETECT_MAX_CONDS 24

/* Appends a condition to out[*n] (zeroed evidence), increments *n and
 * returns it so the caller can add evidence. An inactive condition has no
 * severity. Shared by the detectors so every one fills the same fields. */
static inline vg_cond_t *vg_cond_put(vg_cond_t *out, int *n, vg_alert_type_t type, bool active, vg_severity_t sev,
                                     int64_t at_ms, double value, double threshold)
{
    vg_cond_t *k = &out[(*n)++];
    *k = (vg_cond_t){0};
    k->type = (uint8_t)type;
    k->active = active ? 1 : 0;
    k->severity = (uint8_t)(active ? sev : VG_SEV_NONE);
    k->at_ms = at_ms;
    k->value = value;
    k->threshold = threshold;
    return k;
}

#endif
