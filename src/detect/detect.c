/* detect.c — the detectors' shared vocabulary (detect.h): alert type and
 * severity names, and the one table of thresholds with their defaults and
 * allowed ranges.
 *
 * Owns: the parameter table (name, offset, default, range), so that the
 * defaults, the validation of a config file or registry attribute and the
 * documentation can never disagree. Does not own: any detector rule (one
 * file per detector) or per-device state (devstate.c). */
#include "detect/detect.h"

#include "core/err.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t off;
    double def, min, max;
} param_t;

#define P(field, d, lo, hi) {#field, offsetof(vg_detect_cfg_t, field), d, lo, hi}

/* Ranges are what a clinician could sensibly ask for; the issue fixes the
 * at-rest thresholds' ranges (high 100..150, low 30..50). */
static const param_t params[] = {
    P(inactive_steps_per_min, 10, 0, 200),
    P(rest_after_activity_s, 300, 0, 7200),
    P(rest_high_bpm, 120, 100, 150),
    P(rest_low_bpm, 40, 30, 50),
    P(rest_share, 0.8, 0.5, 1.0),
    P(rest_window_s, 600, 60, 7200),
    P(rest_min_samples, 10, 1, 10000),
    P(rest_hysteresis_bpm, 5, 0, 30),
    P(rest_clear_share, 0.5, 0.05, 1.0),
    P(rest_critical_delta_bpm, 20, 1, 100),
    P(extreme_high_bpm, 180, 150, 250),
    P(extreme_low_bpm, 35, 20, 45),
    P(extreme_sustain_s, 30, 1, 3600),
    P(extreme_hysteresis_bpm, 5, 0, 30),
    P(sudden_bpm_per_min, 30, 5, 200),
    P(sudden_confirm_samples, 2, 1, 60),
    P(sudden_clear_s, 120, 10, 7200),
    P(baseline_rest_s, 720, 60, 7200),
    P(baseline_halflife_h, 72, 1, 24 * 60),
    P(baseline_z, 3.0, 1.0, 20.0),
    P(baseline_window_s, 1800, 60, 86400),
    P(baseline_warmup_h, 24, 0, 24 * 60),
    P(baseline_min_sd_bpm, 2.0, 0.1, 50),
    P(night_start_hour, 0, 0, 23.99),
    P(night_end_hour, 6, 0, 23.99),
    P(tz_offset_min, 0, -14 * 60, 14 * 60),
    P(nightly_warn_bpm, 3, 0.5, 50),
    P(nightly_alert_bpm, 4, 0.5, 50),
    P(nightly_consecutive, 2, 1, 14),
    P(nightly_min_nights, 3, 1, 7),
    P(hr_min_plausible, 25, 1, 60),
    P(hr_max_plausible, 250, 150, 300),
    P(steps_max_per_min, 400, 60, 10000),
    P(flatline_s, 600, 10, 86400),
    P(flatline_min_samples, 20, 2, 100000),
    P(gap_factor, 3, 1.5, 100),
    P(offline_after_s, 900, 10, 30 * 86400),
    P(stale_after_s, 600, 10, 30 * 86400),
    P(clock_skew_s, 120, 1, 86400),
    P(skew_confirm_samples, 3, 1, 100),
};

#undef P

_Static_assert(sizeof params / sizeof params[0] == sizeof(vg_detect_cfg_t) / sizeof(double),
               "every vg_detect_cfg_t field needs a row in params[]");

void vg_detect_cfg_default(vg_detect_cfg_t *c)
{
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        memcpy((char *)c + params[i].off, &params[i].def, sizeof(double));
}

int vg_detect_cfg_set(vg_detect_cfg_t *c, const char *name, double value, const char **why)
{
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        if (strcmp(params[i].name, name) != 0)
            continue;
        /* NaN fails both comparisons, so test for it explicitly. */
        if (value != value || value < params[i].min || value > params[i].max) {
            if (why)
                *why = "value outside the parameter's allowed range";
            return VG_EINVAL;
        }
        memcpy((char *)c + params[i].off, &value, sizeof(double));
        return VG_OK;
    }
    if (why)
        *why = "unknown detector parameter";
    return VG_ENOTFOUND;
}

size_t vg_detect_param_count(void)
{
    return sizeof params / sizeof params[0];
}

int vg_detect_param_info(size_t i, const char **name, double *def, double *min, double *max)
{
    if (i >= sizeof params / sizeof params[0])
        return VG_EINVAL;
    *name = params[i].name;
    *def = params[i].def;
    *min = params[i].min;
    *max = params[i].max;
    return VG_OK;
}

static const char *const type_names[VG_ALERT__COUNT] = {
    [VG_ALERT_NONE] = "NONE",
    [VG_ALERT_HIGH_HR_AT_REST] = "SUSTAINED_HIGH_HR_AT_REST",
    [VG_ALERT_LOW_HR_AT_REST] = "SUSTAINED_LOW_HR_AT_REST",
    [VG_ALERT_EXTREME_HIGH_HR] = "EXTREME_HIGH_HR",
    [VG_ALERT_EXTREME_LOW_HR] = "EXTREME_LOW_HR",
    [VG_ALERT_SUDDEN_CHANGE] = "SUDDEN_HR_CHANGE",
    [VG_ALERT_BASELINE_DRIFT] = "BASELINE_DRIFT",
    [VG_ALERT_RESTING_HR_RISE] = "RESTING_HR_ELEVATION",
    [VG_ALERT_IMPOSSIBLE_VALUE] = "SENSOR_IMPOSSIBLE_VALUE",
    [VG_ALERT_FLATLINE] = "SENSOR_FLATLINE",
    [VG_ALERT_DATA_GAP] = "DATA_GAP",
    [VG_ALERT_DEVICE_OFFLINE] = "DEVICE_OFFLINE",
    [VG_ALERT_OUT_OF_ORDER] = "OUT_OF_ORDER_TIMESTAMP",
    [VG_ALERT_STALE_DATA] = "STALE_DATA",
    [VG_ALERT_CLOCK_SKEW] = "CLOCK_SKEW",
};

const char *vg_alert_type_name(vg_alert_type_t t)
{
    if ((unsigned)t >= VG_ALERT__COUNT)
        return "NONE";
    return type_names[t];
}

vg_alert_type_t vg_alert_type_parse(const char *name, size_t len)
{
    for (int t = 1; t < VG_ALERT__COUNT; t++)
        if (strlen(type_names[t]) == len && memcmp(type_names[t], name, len) == 0)
            return (vg_alert_type_t)t;
    return VG_ALERT_NONE;
}

bool vg_alert_type_is_cardiac(vg_alert_type_t t)
{
    return t >= VG_ALERT_HIGH_HR_AT_REST && t <= VG_ALERT_RESTING_HR_RISE;
}

const char *vg_severity_name(vg_severity_t s)
{
    switch (s) {
    case VG_SEV_INFO: return "info";
    case VG_SEV_WARNING: return "warning";
    case VG_SEV_CRITICAL: return "critical";
    default: return "none";
    }
}
