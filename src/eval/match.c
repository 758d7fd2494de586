/* match.c — see match.h (the rules are documented there).
 *
 * Labels are sorted by device, so a device's labels are one contiguous run
 * found once (first[dev], count[dev]); judging an alert walks only its own
 * device's few labels. */
#include "eval/match.h"

#include "core/alloc.h"
#include "core/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool vg_evalmatch_in_days(int type)
{
    return type == VG_ALERT_BASELINE_DRIFT || type == VG_ALERT_RESTING_HR_RISE;
}

static int64_t grace_ms(const vg_scen_label_t *l, int type)
{
    if (type > 0 && vg_alert_type_is_cardiac((vg_alert_type_t)type))
        return VG_EVALMATCH_CARDIAC_GRACE_MS;
    int64_t len = l->end_ms - l->start_ms;
    return len > 0 ? len : 0;
}

/* The widest window any of the label's types gets. */
static int64_t max_grace(const vg_scen_label_t *l)
{
    int64_t g = 0;
    for (int t = 1; t < VG_ALERT__COUNT; t++)
        if ((l->types >> t) & 1u) {
            int64_t x = grace_ms(l, t);
            if (x > g)
                g = x;
        }
    return g;
}

/* Does time x fall in label l's window for type t? *shift receives what to
 * subtract from a time in the window before taking a delay. */
static bool in_window(const vg_scen_label_t *l, int t, int64_t x, int64_t *shift)
{
    int64_t lo = l->start_ms - VG_EVALMATCH_SLACK_MS, hi = l->end_ms + grace_ms(l, t);
    /* A skewed device's own clock first: a skew episode is longer than its
     * skew, so a time in the shifted window is usually in the plain one too,
     * and the detector reports the sample's (shifted) timestamp. */
    if (l->skew_ms && x >= lo + l->skew_ms && x <= hi + l->skew_ms) {
        *shift = l->skew_ms;
        return true;
    }
    if (x >= lo && x <= hi) {
        *shift = 0;
        return true;
    }
    return false;
}

static bool near_label(const vg_scen_label_t *l, int64_t x)
{
    int64_t lo = l->start_ms - VG_EVALMATCH_SECONDARY_MS;
    int64_t hi = l->end_ms + VG_EVALMATCH_SECONDARY_MS;
    if (x >= lo && x <= hi)
        return true;
    return l->skew_ms && x >= lo + l->skew_ms && x <= hi + l->skew_ms;
}

/* Within a minute of the label's own extent (either clock for a skew). */
static bool at_label(const vg_scen_label_t *l, int64_t x)
{
    int64_t lo = l->start_ms - VG_EVALMATCH_SLACK_MS, hi = l->end_ms + VG_EVALMATCH_SLACK_MS;
    if (x >= lo && x <= hi)
        return true;
    return l->skew_ms && x >= lo + l->skew_ms && x <= hi + l->skew_ms;
}

static int alert_cmp(const void *a, const void *b)
{
    const vg_evalalert_t *x = a, *y = b;
    if (x->event_ms != y->event_ms)
        return x->event_ms < y->event_ms ? -1 : 1;
    if (x->device != y->device)
        return x->device < y->device ? -1 : 1;
    return (int)x->type - (int)y->type;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const vg_evalmatch_in_t *in;
    size_t *first, *count;
    uint8_t *normal; /* per device and day: 1 = normal */
    size_t days_max;
} ctx_t;

static bool day_is_normal(const ctx_t *c, uint32_t dev, int64_t x)
{
    if (x < c->in->t0_ms)
        return false;
    size_t day = (size_t)((x - c->in->t0_ms) / VG_SCEN_DAY_MS);
    return day < c->days_max && c->normal[(size_t)dev * c->days_max + day];
}

int vg_evalmatch_run(const vg_evalmatch_in_t *in, vg_evalalert_t *alerts, size_t n, const vg_evalrule_t *rule,
                     size_t nr, vg_evalmatch_t *out)
{
    memset(out, 0, sizeof *out);
    for (int t = 0; t < VG_ALERT__COUNT; t++)
        out->type[t].delay_median = out->type[t].delay_p95 = NAN;
    int rc = VG_ENOMEM;
    ctx_t c = {.in = in};
    double *delays[VG_ALERT__COUNT] = {0};
    uint8_t *rule_hit = NULL;
    int64_t span_max = 0;
    for (uint32_t d = 0; d < in->devices; d++)
        if (in->span_end[d] - in->t0_ms > span_max)
            span_max = in->span_end[d] - in->t0_ms;
    c.days_max = (size_t)((span_max + VG_SCEN_DAY_MS - 1) / VG_SCEN_DAY_MS);
    if (c.days_max == 0)
        c.days_max = 1;
    c.first = vg_calloc(VG_MEM_EVAL, in->devices + 1, sizeof *c.first);
    c.count = vg_calloc(VG_MEM_EVAL, in->devices + 1, sizeof *c.count);
    c.normal = vg_calloc(VG_MEM_EVAL, (size_t)in->devices * c.days_max + 1, 1);
    out->label_delay = vg_calloc(VG_MEM_EVAL, in->n_labels * VG_ALERT__COUNT + 1, sizeof *out->label_delay);
    out->label_dups = vg_calloc(VG_MEM_EVAL, in->n_labels * VG_ALERT__COUNT + 1, sizeof *out->label_dups);
    rule_hit = vg_calloc(VG_MEM_EVAL, in->n_labels * VG_ALERT__COUNT + 1, 1);
    out->verdict = vg_calloc(VG_MEM_EVAL, n + 1, 1);
    out->alert_label = vg_calloc(VG_MEM_EVAL, n + 1, sizeof *out->alert_label);
    for (int t = 0; t < VG_ALERT__COUNT; t++)
        delays[t] = vg_calloc(VG_MEM_EVAL, in->n_labels + 1, sizeof(double));
    if (!c.first || !c.count || !c.normal || !out->label_delay || !out->label_dups || !rule_hit || !out->verdict ||
        !out->alert_label)
        goto cleanup;
    for (int t = 0; t < VG_ALERT__COUNT; t++)
        if (!delays[t])
            goto cleanup;
    for (size_t i = 0; i < in->n_labels * VG_ALERT__COUNT; i++)
        out->label_delay[i] = NAN;

    /* Labels per device, episodes per type. */
    for (size_t i = 0; i < in->n_labels; i++) {
        const vg_scen_label_t *l = &in->labels[i];
        if (l->device >= in->devices)
            continue;
        if (c.count[l->device] == 0)
            c.first[l->device] = i;
        c.count[l->device]++;
        for (int t = 1; t < VG_ALERT__COUNT; t++)
            if ((l->types >> t) & 1u) {
                out->type[t].episodes++;
                out->rule.episodes[t]++;
            }
    }

    /* Device-days and normal device-days. */
    for (uint32_t d = 0; d < in->devices; d++) {
        int64_t span = in->span_end[d] - in->t0_ms;
        out->device_days += (double)span / (double)VG_SCEN_DAY_MS;
        for (size_t k = 0; k < c.days_max; k++) {
            int64_t a = in->t0_ms + (int64_t)k * VG_SCEN_DAY_MS, b = a + VG_SCEN_DAY_MS;
            if (a >= in->span_end[d])
                break;
            if (b > in->span_end[d])
                b = in->span_end[d];
            bool normal = true;
            for (size_t j = 0; j < c.count[d] && normal; j++) {
                const vg_scen_label_t *l = &in->labels[c.first[d] + j];
                int64_t lo = l->start_ms - VG_EVALMATCH_SLACK_MS;
                int64_t hi = l->end_ms + max_grace(l) + l->skew_ms;
                if (lo < b && hi >= a)
                    normal = false;
            }
            c.normal[(size_t)d * c.days_max + k] = normal;
            if (normal)
                out->normal_device_days += (double)(b - a) / (double)VG_SCEN_DAY_MS;
        }
    }

    /* The pipeline's alerts, in event-time order. */
    if (n)
        qsort(alerts, n, sizeof *alerts, alert_cmp);
    for (size_t i = 0; i < n; i++) {
        const vg_evalalert_t *a = &alerts[i];
        int t = a->type < VG_ALERT__COUNT ? a->type : VG_ALERT_NONE;
        vg_evaltype_t *ts = &out->type[t];
        ts->opens++;
        out->alert_label[i] = -1;
        out->verdict[i] = VG_EVALMATCH_FALSE;
        if (a->device >= in->devices) {
            out->unknown_device++;
            ts->false_alerts++;
            continue;
        }
        if (a->event_ms >= in->span_end[a->device] - in->offline_after_ms) {
            ts->ignored++;
            out->verdict[i] = VG_EVALMATCH_IGNORED;
            continue;
        }
        size_t f = c.first[a->device], cnt = c.count[a->device];
        /* Detected: the first undetected label of this type whose window
         * holds the alert; else a duplicate of a detected one. */
        long hit = -1, dup = -1;
        int64_t hit_shift = 0;
        for (size_t j = 0; t != VG_ALERT_NONE && j < cnt; j++) {
            const vg_scen_label_t *l = &in->labels[f + j];
            if (!((l->types >> t) & 1u))
                continue;
            int64_t s1 = 0, s2 = 0;
            bool w1 = in_window(l, t, a->opened_ms, &s1), w2 = in_window(l, t, a->event_ms, &s2);
            if (!w1 && !w2)
                continue;
            size_t k = (f + j) * VG_ALERT__COUNT + (size_t)t;
            if (isnan(out->label_delay[k])) {
                hit = (long)(f + j);
                hit_shift = w2 ? s2 : s1;
                break;
            }
            if (dup < 0)
                dup = (long)(f + j);
        }
        if (hit >= 0) {
            const vg_scen_label_t *l = &in->labels[hit];
            double delay = (double)(a->event_ms - hit_shift - l->start_ms) / 1000.0;
            if (vg_evalmatch_in_days(t))
                delay /= 86400.0;
            out->label_delay[(size_t)hit * VG_ALERT__COUNT + (size_t)t] = delay;
            delays[t][ts->n_delays++] = delay;
            ts->detected++;
            out->verdict[i] = VG_EVALMATCH_DETECTED;
            out->alert_label[i] = (int32_t)hit;
            continue;
        }
        /* Inside an already detected label's (generous) window but right at
         * another episode: caused by that one, not a second alert for the
         * first (a stale upload read as a clock skew an hour after a skew). */
        for (size_t j = 0; dup >= 0 && j < cnt; j++) {
            const vg_scen_label_t *l = &in->labels[f + j];
            if ((long)(f + j) != dup && (at_label(l, a->opened_ms) || at_label(l, a->event_ms)))
                dup = -1;
        }
        if (dup >= 0) {
            out->label_dups[(size_t)dup * VG_ALERT__COUNT + (size_t)t]++;
            ts->duplicates++;
            out->verdict[i] = VG_EVALMATCH_DUPLICATE;
            out->alert_label[i] = (int32_t)dup;
            continue;
        }
        bool secondary = false;
        for (size_t j = 0; j < cnt && !secondary; j++) {
            const vg_scen_label_t *l = &in->labels[f + j];
            secondary = near_label(l, a->opened_ms) || near_label(l, a->event_ms);
            if (secondary)
                out->alert_label[i] = (int32_t)(f + j);
        }
        if (secondary) {
            ts->secondary++;
            out->verdict[i] = VG_EVALMATCH_SECONDARY;
            continue;
        }
        ts->false_alerts++;
        if (day_is_normal(&c, a->device, a->event_ms)) {
            ts->false_normal++;
            out->verdict[i] = VG_EVALMATCH_FALSE_NORMAL;
            if (t == VG_ALERT_NONE)
                out->false_normal_other++;
            else if (vg_alert_type_is_cardiac((vg_alert_type_t)t))
                out->false_normal_cardiac++;
            else
                out->false_normal_quality++;
        }
    }
    for (int t = 1; t < VG_ALERT__COUNT; t++) {
        vg_evaltype_t *ts = &out->type[t];
        ts->missed = ts->episodes - ts->detected;
        if (ts->n_delays) {
            qsort(delays[t], ts->n_delays, sizeof(double), dbl_cmp);
            size_t m = ts->n_delays;
            ts->delay_median = m % 2 ? delays[t][m / 2] : (delays[t][m / 2 - 1] + delays[t][m / 2]) / 2;
            size_t rank = (size_t)ceil(0.95 * (double)m);
            ts->delay_p95 = delays[t][rank ? rank - 1 : 0];
        }
    }

    /* The naive rule. */
    vg_evalrulestats_t *rs = &out->rule;
    for (size_t i = 0; i < nr; i++) {
        const vg_evalrule_t *r = &rule[i];
        if (r->device >= in->devices)
            continue;
        if (r->ts_ms >= in->span_end[r->device] - in->offline_after_ms) {
            rs->ignored++;
            continue;
        }
        rs->alerts++;
        size_t f = c.first[r->device], cnt = c.count[r->device];
        bool matched = false, secondary = false;
        for (size_t j = 0; j < cnt; j++) {
            const vg_scen_label_t *l = &in->labels[f + j];
            for (int t = 1; t < VG_ALERT__COUNT; t++) {
                int64_t s;
                if (((l->types >> t) & 1u) && in_window(l, t, r->ts_ms, &s)) {
                    matched = true;
                    rule_hit[(f + j) * VG_ALERT__COUNT + (size_t)t] = 1;
                }
            }
            if (near_label(l, r->ts_ms))
                secondary = true;
        }
        if (matched) {
            rs->matched++;
        } else if (secondary) {
            rs->secondary++;
        } else {
            rs->false_alerts++;
            if (day_is_normal(&c, r->device, r->ts_ms))
                rs->false_normal++;
        }
    }
    for (size_t i = 0; i < in->n_labels; i++)
        for (int t = 1; t < VG_ALERT__COUNT; t++)
            rs->detected[t] += rule_hit[i * VG_ALERT__COUNT + (size_t)t];
    rc = VG_OK;

cleanup:
    vg_free(c.first);
    vg_free(c.count);
    vg_free(c.normal);
    vg_free(rule_hit);
    for (int t = 0; t < VG_ALERT__COUNT; t++)
        vg_free(delays[t]);
    if (rc != VG_OK)
        vg_evalmatch_free(out);
    return rc;
}

void vg_evalmatch_free(vg_evalmatch_t *m)
{
    if (!m)
        return;
    vg_free(m->label_delay);
    vg_free(m->label_dups);
    vg_free(m->verdict);
    vg_free(m->alert_label);
    m->label_delay = NULL;
    m->label_dups = NULL;
    m->verdict = NULL;
    m->alert_label = NULL;
}
