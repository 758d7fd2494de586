/* test_scenario.c — the eval scenario generator (eval/scenario.h): determinism,
 * arrival order, labels that do not overlap, physiology within its documented
 * bounds, every episode kind within its documented ranges; and the matching
 * rules of eval/match.h on hand-made labels and alerts. */
#include "vt.h"

#include "core/alloc.h"
#include "core/err.h"
#include "detect/detect.h"
#include "eval/match.h"
#include "eval/scenario.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MIN_MS 60000LL
#define SEC_MS 1000LL

/* All samples of one run, in arrival order. */
typedef struct {
    vg_scen_sample_t *v;
    size_t n, cap;
} samples_t;

static int collect(vg_scen_t *s, samples_t *out)
{
    vg_scen_sample_t x;
    while (vg_scen_next(s, &x) == VG_OK) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 65536;
            vg_scen_sample_t *nv = realloc(out->v, cap * sizeof *nv);
            if (!nv)
                return VG_ENOMEM;
            out->v = nv;
            out->cap = cap;
        }
        out->v[out->n++] = x;
    }
    return VG_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t stream_hash(const vg_scen_cfg_t *c, size_t *count)
{
    vg_scen_t *s;
    if (vg_scen_new(c, &s) != VG_OK)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    vg_scen_sample_t x;
    size_t n = 0;
    while (vg_scen_next(s, &x) == VG_OK) {
        int64_t f[6] = {x.device, x.hr, x.steps, x.ts_ms, x.arrival_ms, x.label};
        h = fnv(h, f, sizeof f);
        n++;
    }
    const vg_scen_label_t *L = vg_scen_labels(s);
    for (size_t i = 0; i < vg_scen_label_count(s); i++) {
        int64_t f[5] = {L[i].device, L[i].kind, L[i].types, L[i].start_ms, L[i].end_ms};
        h = fnv(h, f, sizeof f);
    }
    vg_scen_free(s);
    *count = n;
    return h;
}

/* A busy configuration: every kind several times. */
static void busy_cfg(vg_scen_cfg_t *c)
{
    vg_scen_cfg_default(c);
    c->seed = 7;
    c->devices = 8;
    c->days = 3;
    c->drift_devices = 2;
    c->drift_days = 12;
    c->normal_share = 0.2;
    for (int k = 0; k < VG_SCEN__KINDS; k++)
        c->rate[k] = k == VG_SCEN_DRIFT ? 0 : 1.0;
}

static void test_determinism(void)
{
    vg_scen_cfg_t c;
    busy_cfg(&c);
    c.drift_devices = 1;
    size_t n1, n2, n3;
    uint64_t h1 = stream_hash(&c, &n1), h2 = stream_hash(&c, &n2);
    VT_CHECK(h1 != 0);
    VT_CHECK(h1 == h2);
    VT_EQ_INT(n1, n2);
    c.seed = 8;
    uint64_t h3 = stream_hash(&c, &n3);
    VT_CHECK(h3 != h1);
}

static void test_bad_config(void)
{
    vg_scen_cfg_t c;
    vg_scen_cfg_default(&c);
    const char *why = NULL;
    VT_EQ_INT(vg_scen_cfg_check(&c, &why), VG_OK);
    c.drift_days = 10;
    VT_EQ_INT(vg_scen_cfg_check(&c, &why), VG_EINVAL);
    VT_CHECK(why != NULL);
    vg_scen_cfg_default(&c);
    c.interval_s = 0;
    VT_EQ_INT(vg_scen_cfg_check(&c, &why), VG_EINVAL);
    vg_scen_t *s = NULL;
    VT_EQ_INT(vg_scen_new(&c, &s), VG_EINVAL);
    VT_CHECK(s == NULL);
    VT_EQ_INT(vg_scen_kind_parse("stale"), VG_SCEN_STALE);
    VT_EQ_INT(vg_scen_kind_parse("nope"), -1);
}

static void test_samples_and_labels(void)
{
    vg_scen_cfg_t c;
    busy_cfg(&c);
    vg_scen_t *s;
    VT_REQUIRE(vg_scen_new(&c, &s) == VG_OK);
    samples_t all = {0};
    VT_REQUIRE(collect(s, &all) == VG_OK);
    const vg_scen_label_t *L = vg_scen_labels(s);
    size_t nl = vg_scen_label_count(s);
    uint32_t ndev = vg_scen_devices(s);
    VT_EQ_INT(ndev, 10);

    /* Sample count: about span / interval per device, minus dropped ones. */
    double expect = (8 * 3 + 2 * 12) * 86400.0 / 5.0;
    VT_CHECK(all.n > expect * 0.95 && all.n < expect * 1.01);

    /* Arrival order: fleet-wide non-decreasing, per device increasing. */
    int64_t *last_arrival = calloc(ndev, sizeof *last_arrival);
    int64_t *last_true = calloc(ndev, sizeof *last_true);
    VT_REQUIRE(last_arrival && last_true);
    size_t order_bad = 0, dev_bad = 0, normal_bad = 0, core_bad = 0, fast = 0, over140 = 0, sleep = 0;
    size_t normal = 0, skew_bad = 0;
    for (size_t i = 0; i < all.n; i++) {
        const vg_scen_sample_t *x = &all.v[i];
        if (i && x->arrival_ms < all.v[i - 1].arrival_ms)
            order_bad++;
        if (last_arrival[x->device] && x->arrival_ms <= last_arrival[x->device])
            dev_bad++;
        last_arrival[x->device] = x->arrival_ms;
        if (x->phase == VG_SCEN_PHASE_NORMAL) {
            normal++;
            if (x->hr < 42 || x->hr > 178)
                normal_bad++;
            if (x->label < 0) {
                fast += x->activity == VG_SCEN_ACT_RUN || x->activity == VG_SCEN_ACT_HARD;
                over140 += x->hr > 140;
                sleep += x->activity == VG_SCEN_ACT_SLEEP;
            }
        } else if (x->phase == VG_SCEN_PHASE_CORE) {
            VT_REQUIRE(x->label >= 0 && (size_t)x->label < nl);
            const vg_scen_label_t *l = &L[x->label];
            if (x->hr < l->core_lo || x->hr > l->core_hi)
                core_bad++;
        }
        if (x->label >= 0 && L[x->label].kind == VG_SCEN_SKEW && x->ts_ms - x->true_ms != L[x->label].skew_ms)
            skew_bad++;
        if (x->label < 0 && x->ts_ms != x->true_ms)
            skew_bad++;
    }
    VT_EQ_INT(order_bad, 0);
    VT_EQ_INT(dev_bad, 0);
    VT_EQ_INT(normal_bad, 0);
    VT_EQ_INT(core_bad, 0);
    VT_EQ_INT(skew_bad, 0);
    /* Plenty of exercise, well above the naive rule's 140, and sleep. */
    VT_CHECK(fast > normal / 20);
    VT_CHECK(over140 > normal / 50);
    VT_CHECK(sleep > normal / 5);

    /* Every kind appears; labels are ordered, inside the span, apart. */
    size_t per_kind[VG_SCEN__KINDS] = {0};
    for (size_t i = 0; i < nl; i++) {
        const vg_scen_label_t *l = &L[i];
        per_kind[l->kind]++;
        VT_CHECK(l->device < ndev);
        VT_CHECK(l->start_ms > 0 && l->end_ms >= l->start_ms);
        VT_CHECK(l->start_ms >= c.t0_ms && l->end_ms <= vg_scen_device_end(s, l->device));
        VT_CHECK(l->types != 0);
        if (i + 1 < nl && L[i + 1].device == l->device) {
            VT_CHECK(L[i + 1].start_ms >= l->end_ms + 30 * MIN_MS);
        }
        int64_t len = l->end_ms - l->start_ms;
        switch (l->kind) {
        case VG_SCEN_REST_HIGH:
            VT_CHECK(l->types == 1u << VG_ALERT_HIGH_HR_AT_REST);
            VT_CHECK(l->level >= 125 && l->level <= 145);
            VT_CHECK(len >= 20 * MIN_MS && len <= 44 * MIN_MS);
            break;
        case VG_SCEN_REST_LOW:
            VT_CHECK(l->types == 1u << VG_ALERT_LOW_HR_AT_REST);
            VT_CHECK(l->level >= 36.5 && l->level <= 38.5 && l->core_lo >= 36);
            VT_CHECK(len >= 20 * MIN_MS && len <= 45 * MIN_MS);
            break;
        case VG_SCEN_EXTREME_HIGH:
            VT_CHECK(l->level >= 190 && l->level <= 205 && l->core_lo >= 185 && l->core_hi <= 210);
            VT_CHECK(len >= 50 * SEC_MS && len <= 400 * SEC_MS);
            break;
        case VG_SCEN_EXTREME_LOW:
            VT_CHECK(l->level >= 28 && l->level <= 31 && l->core_lo >= 26 && l->core_hi <= 33);
            VT_CHECK(len >= 50 * SEC_MS && len <= 400 * SEC_MS);
            break;
        case VG_SCEN_SUDDEN: {
            double base = l->core_lo - 35;
            VT_CHECK(l->level - base >= 40 - 1e-9 && l->level - base <= 60 + 1e-9);
            VT_CHECK(l->core_hi <= 178);
            VT_CHECK(len >= 120 * SEC_MS && len <= 325 * SEC_MS);
            break;
        }
        case VG_SCEN_DRIFT:
            VT_CHECK(l->types == ((1u << VG_ALERT_BASELINE_DRIFT) | (1u << VG_ALERT_RESTING_HR_RISE)));
            VT_CHECK(vg_scen_device_is_drift(s, l->device));
            VT_CHECK((l->start_ms - c.t0_ms) % VG_SCEN_DAY_MS == 0);
            VT_CHECK(l->start_ms - c.t0_ms >= 7 * VG_SCEN_DAY_MS);
            VT_CHECK(l->end_ms == vg_scen_device_end(s, l->device));
            VT_CHECK(l->level >= 6 && l->level <= 12);
            break;
        case VG_SCEN_GAP:
            VT_CHECK(l->types == 1u << VG_ALERT_DATA_GAP);
            VT_CHECK(len >= 2 * MIN_MS - 6 * SEC_MS && len <= 12 * MIN_MS + 6 * SEC_MS);
            break;
        case VG_SCEN_OFFLINE:
            VT_CHECK(l->types == ((1u << VG_ALERT_DATA_GAP) | (1u << VG_ALERT_DEVICE_OFFLINE)));
            VT_CHECK(len >= 20 * MIN_MS - 6 * SEC_MS && len <= 60 * MIN_MS + 6 * SEC_MS);
            break;
        case VG_SCEN_FLATLINE: {
            VT_CHECK(len >= 15 * MIN_MS - 6 * SEC_MS && len <= 30 * MIN_MS);
            int64_t hour = ((l->start_ms - c.t0_ms) % VG_SCEN_DAY_MS) / (60 * MIN_MS);
            VT_CHECK(hour >= 8 && hour < 22);
            VT_CHECK(l->core_lo == l->core_hi);
            break;
        }
        case VG_SCEN_SKEW:
            VT_CHECK(l->skew_ms >= 5 * MIN_MS && l->skew_ms <= 30 * MIN_MS);
            VT_CHECK(len >= 60 * MIN_MS - 6 * SEC_MS && len <= 180 * MIN_MS);
            break;
        case VG_SCEN_IMPOSSIBLE:
            VT_CHECK(l->samples >= 3 && l->samples <= 10);
            VT_CHECK(l->high ? l->core_lo == 255 && l->core_hi == 299 : l->core_lo == 5 && l->core_hi == 20);
            break;
        case VG_SCEN_OUT_OF_ORDER:
            VT_CHECK(l->samples >= 2 && l->samples <= 5);
            break;
        case VG_SCEN_STALE:
            VT_CHECK(l->types ==
                     ((1u << VG_ALERT_STALE_DATA) | (1u << VG_ALERT_DATA_GAP) | (1u << VG_ALERT_DEVICE_OFFLINE)));
            VT_CHECK(len >= 20 * MIN_MS && len <= 41 * MIN_MS);
            break;
        default:
            VT_CHECK(0);
        }
    }
    for (int k = 0; k < VG_SCEN__KINDS; k++) {
        if (per_kind[k] == 0)
            printf("  no episode of kind %s\n", vg_scen_kind_name(k));
        VT_CHECK(per_kind[k] > 0);
    }

    /* At rest before rest and sudden episodes: no steps for >= 6 min. */
    for (size_t i = 0; i < nl; i++) {
        const vg_scen_label_t *l = &L[i];
        if (l->kind != VG_SCEN_REST_HIGH && l->kind != VG_SCEN_REST_LOW && l->kind != VG_SCEN_SUDDEN)
            continue;
        size_t seen = 0, moving = 0;
        for (size_t j = 0; j < all.n; j++) {
            const vg_scen_sample_t *x = &all.v[j];
            if (x->device == l->device && x->true_ms >= l->start_ms - 6 * MIN_MS && x->true_ms <= l->end_ms) {
                seen++;
                moving += x->steps != 0;
            }
        }
        VT_CHECK(seen > 70);
        VT_EQ_INT(moving, 0);
    }

    /* Gaps drop their samples; stale backlogs arrive after the buffering;
     * out-of-order samples arrive after a later timestamp. */
    for (size_t i = 0; i < nl; i++) {
        const vg_scen_label_t *l = &L[i];
        size_t inside = 0, late = 0;
        int64_t max_ts = INT64_MIN;
        for (size_t j = 0; j < all.n; j++) {
            const vg_scen_sample_t *x = &all.v[j];
            if (x->device != l->device)
                continue;
            if ((l->kind == VG_SCEN_GAP || l->kind == VG_SCEN_OFFLINE) && x->true_ms >= l->start_ms &&
                x->true_ms < l->end_ms)
                inside++;
            if (l->kind == VG_SCEN_STALE && x->label == (int32_t)i && x->arrival_ms < l->start_ms + 20 * MIN_MS)
                inside++;
            if (l->kind == VG_SCEN_OUT_OF_ORDER && x->label == (int32_t)i && x->ts_ms < max_ts)
                late++;
            if (x->ts_ms > max_ts && (x->label < 0 || L[x->label].kind != VG_SCEN_SKEW))
                max_ts = x->ts_ms;
        }
        VT_EQ_INT(inside, 0);
        if (l->kind == VG_SCEN_OUT_OF_ORDER)
            VT_EQ_INT(late, l->samples);
    }
    free(last_arrival);
    free(last_true);
    free(all.v);
    vg_scen_free(s);
}

static void test_normal_only(void)
{
    vg_scen_cfg_t c;
    vg_scen_cfg_default(&c);
    c.devices = 3;
    c.days = 1;
    c.drift_devices = 0;
    c.normal_share = 1.0;
    vg_scen_t *s;
    VT_REQUIRE(vg_scen_new(&c, &s) == VG_OK);
    VT_EQ_INT(vg_scen_label_count(s), 0);
    vg_scen_sample_t x;
    size_t n = 0, bad = 0;
    while (vg_scen_next(s, &x) == VG_OK) {
        n++;
        bad += x.hr < 42 || x.hr > 178 || x.label >= 0;
    }
    VT_EQ_INT(bad, 0);
    VT_CHECK(n > 3 * 17000);
    vg_scen_free(s);
}

/* ---- matching ---- */

static void test_match_rules(void)
{
    const int64_t t0 = VG_SCEN_T0_MS;
    vg_scen_label_t L[4] = {
        {.device = 0,
         .kind = VG_SCEN_EXTREME_HIGH,
         .types = 1u << VG_ALERT_EXTREME_HIGH_HR,
         .start_ms = t0 + 3600000,
         .end_ms = t0 + 3600000 + 120000},
        {.device = 0,
         .kind = VG_SCEN_GAP,
         .types = 1u << VG_ALERT_DATA_GAP,
         .start_ms = t0 + 7200000,
         .end_ms = t0 + 7200000 + 300000},
        {.device = 0,
         .kind = VG_SCEN_FLATLINE,
         .types = 1u << VG_ALERT_FLATLINE,
         .start_ms = t0 + 7700000,
         .end_ms = t0 + 8600000},
        {.device = 1,
         .kind = VG_SCEN_SKEW,
         .types = 1u << VG_ALERT_CLOCK_SKEW,
         .start_ms = t0 + 3600000,
         .end_ms = t0 + 3 * 3600000,
         .skew_ms = 600000},
    };
    int64_t span_end[3] = {t0 + VG_SCEN_DAY_MS, t0 + VG_SCEN_DAY_MS, t0 + VG_SCEN_DAY_MS};
    vg_evalmatch_in_t in = {
        .labels = L, .n_labels = 4, .devices = 3, .span_end = span_end, .t0_ms = t0, .offline_after_ms = 900000};
    vg_evalalert_t A[] = {
        /* detects label 0 after 35 s, then a duplicate */
        {0, VG_ALERT_EXTREME_HIGH_HR, t0 + 3600000, t0 + 3635000},
        {0, VG_ALERT_EXTREME_HIGH_HR, t0 + 3700000, t0 + 3700000},
        /* a sudden change at the onset: secondary */
        {0, VG_ALERT_SUDDEN_CHANGE, t0 + 3610000, t0 + 3610000},
        /* gap: detected within its own length after the end */
        {0, VG_ALERT_DATA_GAP, t0 + 7200000, t0 + 7200000 + 500000},
        /* in the gap's window, but at the flatline that follows: secondary, not a duplicate */
        {0, VG_ALERT_DATA_GAP, t0 + 7710000, t0 + 7710000},
        /* skew seen in the device's clock: mapped back, delay 15 s */
        {1, VG_ALERT_CLOCK_SKEW, t0 + 3600000 + 600000 + 15000, t0 + 3600000 + 600000 + 15000},
        /* false on device 2's normal day */
        {2, VG_ALERT_HIGH_HR_AT_REST, t0 + 5 * 3600000, t0 + 5 * 3600000},
        /* at the end of the span: ignored */
        {2, VG_ALERT_DEVICE_OFFLINE, t0 + VG_SCEN_DAY_MS - 60000, t0 + VG_SCEN_DAY_MS - 60000},
        /* unknown device and type */
        {UINT32_MAX, VG_ALERT_DATA_GAP, t0, t0},
        {2, VG_ALERT_NONE, t0 + 60000, t0 + 60000},
    };
    vg_evalrule_t R[] = {{0, t0 + 3601000}, {2, t0 + 4 * 3600000}};
    vg_evalmatch_t m;
    VT_REQUIRE(vg_evalmatch_run(&in, A, sizeof A / sizeof A[0], R, 2, &m) == VG_OK);
    const vg_evaltype_t *x = &m.type[VG_ALERT_EXTREME_HIGH_HR];
    VT_EQ_INT(x->episodes, 1);
    VT_EQ_INT(x->detected, 1);
    VT_EQ_INT(x->duplicates, 1);
    VT_CHECK(fabs(x->delay_median - 35) < 1e-9);
    VT_EQ_INT(m.type[VG_ALERT_SUDDEN_CHANGE].secondary, 1);
    VT_EQ_INT(m.type[VG_ALERT_SUDDEN_CHANGE].false_alerts, 0);
    VT_EQ_INT(m.type[VG_ALERT_DATA_GAP].detected, 1);
    VT_CHECK(fabs(m.type[VG_ALERT_DATA_GAP].delay_median - 500) < 1e-9);
    VT_EQ_INT(m.type[VG_ALERT_DATA_GAP].duplicates, 0);
    VT_EQ_INT(m.type[VG_ALERT_DATA_GAP].secondary, 1);
    VT_EQ_INT(m.type[VG_ALERT_CLOCK_SKEW].detected, 1);
    VT_CHECK(fabs(m.type[VG_ALERT_CLOCK_SKEW].delay_median - 15) < 1e-9);
    VT_EQ_INT(m.type[VG_ALERT_HIGH_HR_AT_REST].false_alerts, 1);
    VT_EQ_INT(m.type[VG_ALERT_HIGH_HR_AT_REST].false_normal, 1);
    VT_EQ_INT(m.type[VG_ALERT_DEVICE_OFFLINE].ignored, 1);
    VT_EQ_INT(m.unknown_device, 1);
    VT_EQ_INT(m.false_normal_cardiac, 1);
    VT_EQ_INT(m.false_normal_other, 1);
    VT_CHECK(fabs(m.device_days - 3) < 1e-9);
    VT_CHECK(fabs(m.normal_device_days - 1) < 1e-9); /* only device 2 has no label */
    VT_EQ_INT(m.rule.alerts, 2);
    VT_EQ_INT(m.rule.matched, 1);
    VT_EQ_INT(m.rule.false_alerts, 1);
    VT_EQ_INT(m.rule.detected[VG_ALERT_EXTREME_HIGH_HR], 1);
    VT_EQ_INT(m.rule.detected[VG_ALERT_DATA_GAP], 0);
    vg_evalmatch_free(&m);
}

int main(void)
{
    VT_RUN(test_determinism);
    VT_RUN(test_bad_config);
    VT_RUN(test_samples_and_labels);
    VT_RUN(test_normal_only);
    VT_RUN(test_match_rules);
    return VT_DONE();
}
