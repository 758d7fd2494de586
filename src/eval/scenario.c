/* scenario.c — see scenario.h (the model is documented there).
 *
 * Shape: vg_scen_new plans every device's episodes up front (cheap: a few
 * records per device-day) so the labels exist before a sample is made.
 * Samples are then generated lazily, one device at a time, in true time;
 * each device keeps a tiny queue of samples whose arrival is known, and a
 * binary heap over the devices' queue heads yields the fleet in arrival
 * order. Memory is O(devices + episodes), whatever the span: a 14-day fleet
 * never holds more than a few samples per device.
 *
 * Why per-device arrival never goes backwards: the only samples that arrive
 * later than they were measured are a stale backlog (uploaded after the
 * buffering, in order) and a late out-of-order sample (released right after
 * its successor); every later sample arrives after them
 * (arrival = max(natural, previous + 1 ms)). So one queued head per device is
 * enough for a correct fleet-wide merge. */
#include "eval/scenario.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/heap.h"
#include "detect/detect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define SEC_MS 1000LL
#define HR_FLOOR 42.0
#define HR_CEIL 178.0
#define NOISE_SD 2.5
#define WANDER_SD 2.0
#define WANDER_TAU_S 600.0
#define SEPARATION_MS (30 * MIN_MS)
#define HEAD_MARGIN_MS (30 * MIN_MS)
#define TAIL_MARGIN_MS (90 * MIN_MS)
#define PLACE_TRIES 50
#define UPLOAD_SPACING_MS 50 /* backlog upload: 20 samples per second */
#define QCAP 4

static const char *const kind_names[VG_SCEN__KINDS] = {
    "rest_high", "rest_low", "extreme_high", "extreme_low", "sudden",       "drift", "gap",
    "offline",   "flatline", "skew",         "impossible",  "out_of_order", "stale",
};

const char *vg_scen_kind_name(int kind)
{
    return kind >= 0 && kind < VG_SCEN__KINDS ? kind_names[kind] : NULL;
}

int vg_scen_kind_parse(const char *name)
{
    for (int k = 0; k < VG_SCEN__KINDS; k++)
        if (strcmp(kind_names[k], name) == 0)
            return k;
    return -1;
}

/* ---- random numbers ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *s)
{
    return mix64(*s += 0x9e3779b97f4a7c15u);
}

static double uniform(uint64_t *s)
{
    return (double)(next64(s) >> 11) * 0x1.0p-53;
}

static double urange(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * uniform(s);
}

/* Integer uniform in [lo, hi]. */
static int irange(uint64_t *s, int lo, int hi)
{
    return lo + (int)(next64(s) % (uint64_t)(hi - lo + 1));
}

static double gauss(uint64_t *s)
{
    double u1 = uniform(s), u2 = uniform(s);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int poisson(uint64_t *s, double lambda)
{
    if (lambda <= 0)
        return 0;
    double l = exp(-lambda), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= uniform(s);
    } while (p > l && k < 1000);
    return k - 1;
}

/* A seed for stream `salt` of device dev (and an optional index such as a
 * day), independent of every other stream. */
static uint64_t stream_seed(uint64_t seed, uint32_t dev, uint64_t salt, uint64_t idx)
{
    uint64_t z = mix64(seed + 0x9e3779b97f4a7c15u);
    z = mix64(z ^ ((uint64_t)dev * 0xd1b54a32d192ed03u));
    z = mix64(z ^ (salt * 0x8cb92ba72f3d8dd7u));
    return mix64(z ^ (idx * 0xaf251af3b0f025b5u + 1));
}

/* ---- configuration ---- */

void vg_scen_cfg_default(vg_scen_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->devices = 200;
    c->days = 3;
    c->drift_devices = 10;
    c->drift_days = 14;
    c->interval_s = 5;
    c->jitter_s = 0.3;
    c->normal_share = 0.5;
    for (int k = 0; k < VG_SCEN__KINDS; k++)
        c->rate[k] = k == VG_SCEN_DRIFT ? 0 : 0.4;
    c->t0_ms = VG_SCEN_T0_MS;
}

int vg_scen_cfg_check(const vg_scen_cfg_t *c, const char **why)
{
    const char *w = NULL;
    if (c->devices + (uint64_t)c->drift_devices == 0 || c->devices + (uint64_t)c->drift_devices > 1000000)
        w = "the fleet needs 1..1000000 devices";
    else if (c->devices && !(c->days >= 0.1 && c->days <= 366))
        w = "--days must be within 0.1..366";
    else if (c->drift_devices && !(c->drift_days >= 12 && c->drift_days <= 366))
        w = "--drift-days must be within 12..366 (7 stable days, a 2-3 day rise, 2 days up)";
    else if (!(c->interval_s >= 0.5 && c->interval_s <= 600))
        w = "--interval must be within 0.5..600 s";
    else if (!(c->jitter_s >= 0 && c->jitter_s < c->interval_s / 2))
        w = "the jitter must be below half the interval";
    else if (!(c->normal_share >= 0 && c->normal_share <= 1))
        w = "--normal-share must be within 0..1";
    for (int k = 0; !w && k < VG_SCEN__KINDS; k++)
        if (!(c->rate[k] >= 0 && c->rate[k] <= 20))
            w = "episode rates must be within 0..20 per episode day";
    if (w && why)
        *why = w;
    return w ? VG_EINVAL : VG_OK;
}

/* ---- the plan ---- */

typedef struct {
    uint32_t device;
    uint8_t kind;
    uint8_t ov_act;   /* forced activity in [ov_s, ov_e), if ov_e > ov_s */
    uint8_t high;     /* IMPOSSIBLE */
    uint8_t based;    /* SUDDEN: base taken */
    uint8_t flat_set; /* FLATLINE: value taken */
    uint8_t end_set;  /* GAP/OFFLINE: first sample after the gap seen */
    int64_t fs, fe;   /* footprint */
    int64_t ov_s, ov_e;
    int64_t on;              /* onset */
    int64_t ramp, hold, ret; /* cardiac overlay, ms */
    int64_t dur;             /* quality window [on, on + dur) */
    int64_t skew;
    double level, sd, lo, hi, jump;
    int count; /* IMPOSSIBLE samples, OUT_OF_ORDER late samples */
    int done;  /* samples handled so far */
    int flat;
} plan_t;

typedef struct {
    uint64_t rng;
    int64_t end_ms, t, prev_t;
    double r0, drop, tau_up, tau_down;
    double x, w;
    uint8_t act, forced, prev_exercise, started;
    int64_t act_start, act_end;
    double add, cadence, cadence2, hard, easy; /* current bout's parameters */
    int64_t drift_on, drift_len;
    double drift_amt;
    uint32_t ep0, nep, cur;
    vg_scen_sample_t q[QCAP];
    uint8_t qh, qn, holding, done;
    vg_scen_sample_t held;
    int64_t last_arrival;
} fdev_t;

/* The merge heap over device queue heads (core/heap.h). An entry carries
 * its device's head arrival, so sifting never reads the device structs;
 * ties go to the lower device index (the order scenario.h promises), which
 * makes the order total and the merge the same whatever the heap's shape. */
typedef struct {
    int64_t arrival_ms;
    uint32_t dev;
} head_t;
#define HEAD_LESS(a, b) ((a).arrival_ms != (b).arrival_ms ? (a).arrival_ms < (b).arrival_ms : (a).dev < (b).dev)
VG_HEAP_DEFINE(heads, head_t, HEAD_LESS, VG_HEAP_NO_INDEX)

struct vg_scen {
    vg_scen_cfg_t cfg;
    int64_t interval_ms;
    uint32_t n;
    fdev_t *dev;
    plan_t *plan;
    vg_scen_label_t *label;
    size_t nplan, cap_plan;
    size_t unplaced;
    heads_t heap; /* one entry per device with a queued sample */
    uint64_t yielded;
};

static int64_t ms_of(double s)
{
    return (int64_t)llround(s * 1000.0);
}

static uint32_t types_of(int kind)
{
#define B(t) (1u << (t))
    switch (kind) {
    case VG_SCEN_REST_HIGH:
        return B(VG_ALERT_HIGH_HR_AT_REST);
    case VG_SCEN_REST_LOW:
        return B(VG_ALERT_LOW_HR_AT_REST);
    case VG_SCEN_EXTREME_HIGH:
        return B(VG_ALERT_EXTREME_HIGH_HR);
    case VG_SCEN_EXTREME_LOW:
        return B(VG_ALERT_EXTREME_LOW_HR);
    case VG_SCEN_SUDDEN:
        return B(VG_ALERT_SUDDEN_CHANGE);
    case VG_SCEN_DRIFT:
        return B(VG_ALERT_BASELINE_DRIFT) | B(VG_ALERT_RESTING_HR_RISE);
    case VG_SCEN_GAP:
        return B(VG_ALERT_DATA_GAP);
    case VG_SCEN_OFFLINE:
        return B(VG_ALERT_DATA_GAP) | B(VG_ALERT_DEVICE_OFFLINE);
    case VG_SCEN_FLATLINE:
        return B(VG_ALERT_FLATLINE);
    case VG_SCEN_SKEW:
        return B(VG_ALERT_CLOCK_SKEW);
    case VG_SCEN_IMPOSSIBLE:
        return B(VG_ALERT_IMPOSSIBLE_VALUE);
    case VG_SCEN_OUT_OF_ORDER:
        return B(VG_ALERT_OUT_OF_ORDER);
    case VG_SCEN_STALE:
        return B(VG_ALERT_STALE_DATA) | B(VG_ALERT_DATA_GAP) | B(VG_ALERT_DEVICE_OFFLINE);
    default:
        return 0;
    }
#undef B
}

/* Draws kind's parameters (everything but the onset). */
static void draw_params(vg_scen_t *s, uint64_t *r, plan_t *p)
{
    switch (p->kind) {
    case VG_SCEN_REST_HIGH:
        p->ramp = ms_of(urange(r, 60, 120));
        p->hold = ms_of(urange(r, 20 * 60, 40 * 60));
        p->ret = ms_of(urange(r, 60, 120));
        p->level = urange(r, 125, 145);
        p->sd = 2.5;
        p->lo = 121;
        p->hi = 150;
        p->dur = ms_of(urange(r, 6 * 60, 10 * 60)); /* the pre-roll */
        break;
    case VG_SCEN_REST_LOW:
        p->ramp = ms_of(urange(r, 90, 150));
        p->hold = ms_of(urange(r, 20 * 60, 40 * 60));
        p->ret = ms_of(urange(r, 90, 150));
        p->level = urange(r, 36.5, 38.5);
        p->sd = 1.0;
        p->lo = 36;
        p->hi = 39;
        p->dur = ms_of(urange(r, 6 * 60, 10 * 60));
        break;
    case VG_SCEN_EXTREME_HIGH:
    case VG_SCEN_EXTREME_LOW:
        p->ramp = ms_of(urange(r, 10, 30));
        p->hold = ms_of(urange(r, 60, 300));
        p->ret = ms_of(urange(r, 30, 60));
        if (p->kind == VG_SCEN_EXTREME_HIGH) {
            p->level = urange(r, 190, 205);
            p->sd = 2.5;
            p->lo = 185;
            p->hi = 210;
        } else {
            p->level = urange(r, 28, 31);
            p->sd = 1.5;
            p->lo = 26;
            p->hi = 33;
        }
        break;
    case VG_SCEN_SUDDEN:
        p->ramp = ms_of(urange(r, 5, 20));
        p->hold = ms_of(urange(r, 120, 300));
        p->ret = ms_of(urange(r, 120, 180));
        p->jump = urange(r, 40, 60);
        p->sd = 2.5;
        p->dur = ms_of(urange(r, 6 * 60, 10 * 60));
        break;
    case VG_SCEN_GAP:
        p->dur = ms_of(urange(r, 2 * 60, 12 * 60));
        break;
    case VG_SCEN_OFFLINE:
        p->dur = ms_of(urange(r, 20 * 60, 60 * 60));
        break;
    case VG_SCEN_FLATLINE:
        p->dur = ms_of(urange(r, 15 * 60, 30 * 60));
        break;
    case VG_SCEN_SKEW:
        p->dur = ms_of(urange(r, 3600, 3 * 3600));
        p->skew = ms_of(urange(r, 5 * 60, 30 * 60));
        break;
    case VG_SCEN_IMPOSSIBLE:
        p->count = irange(r, 3, 10);
        p->high = uniform(r) < 0.5;
        p->lo = p->high ? 255 : 5;
        p->hi = p->high ? 299 : 20;
        break;
    case VG_SCEN_OUT_OF_ORDER:
        p->count = irange(r, 2, 5);
        break;
    case VG_SCEN_STALE:
        p->dur = ms_of(urange(r, 20 * 60, 40 * 60));
        break;
    default:
        break;
    }
    (void)s;
}

/* Sets the footprint and forced-activity window for onset `on`. */
static void place_at(vg_scen_t *s, plan_t *p, int64_t on)
{
    int64_t iv = s->interval_ms;
    p->on = on;
    p->ov_s = p->ov_e = 0;
    switch (p->kind) {
    case VG_SCEN_REST_HIGH:
    case VG_SCEN_REST_LOW:
    case VG_SCEN_SUDDEN:
        /* dur holds the pre-roll: the wearer is still for that long first. */
        p->fs = on - p->dur;
        p->ov_s = p->fs;
        p->ov_e = on + p->ramp + p->hold + p->ret + 2 * MIN_MS;
        p->ov_act = VG_SCEN_ACT_STILL;
        p->fe = on + p->ramp + p->hold + p->ret + 5 * MIN_MS;
        break;
    case VG_SCEN_EXTREME_HIGH:
    case VG_SCEN_EXTREME_LOW:
        p->fs = on - MIN_MS;
        p->fe = on + p->ramp + p->hold + p->ret + 5 * MIN_MS;
        break;
    case VG_SCEN_GAP:
    case VG_SCEN_OFFLINE:
        p->fs = on - MIN_MS;
        p->fe = on + p->dur + 5 * MIN_MS;
        break;
    case VG_SCEN_FLATLINE:
        p->fs = on - 3 * MIN_MS;
        p->ov_s = p->fs;
        p->ov_e = on + p->dur + 2 * MIN_MS;
        p->ov_act = VG_SCEN_ACT_WALK;
        p->fe = on + p->dur + 5 * MIN_MS;
        break;
    case VG_SCEN_SKEW:
        p->fs = on - MIN_MS;
        p->fe = on + p->dur + p->skew + 10 * MIN_MS;
        break;
    case VG_SCEN_IMPOSSIBLE:
        p->fs = on - MIN_MS;
        p->fe = on + (p->count + 2) * 2 * iv + 5 * MIN_MS;
        break;
    case VG_SCEN_OUT_OF_ORDER:
        p->fs = on - MIN_MS;
        p->fe = on + (2 * p->count + 2) * 2 * iv + 5 * MIN_MS;
        break;
    case VG_SCEN_STALE:
        p->fs = on - MIN_MS;
        p->fe = on + p->dur + (p->dur / iv + 2) * UPLOAD_SPACING_MS + 10 * MIN_MS;
        break;
    default:
        break;
    }
}

static int add_plan(vg_scen_t *s, const plan_t *p)
{
    if (s->nplan == s->cap_plan) {
        size_t cap = s->cap_plan ? 2 * s->cap_plan : 256;
        plan_t *np = vg_realloc(VG_MEM_EVAL, s->plan, cap * sizeof *np);
        if (!np)
            return VG_ENOMEM;
        s->plan = np;
        s->cap_plan = cap;
    }
    s->plan[s->nplan++] = *p;
    return VG_OK;
}

/* Does p keep its distance from the device's episodes placed so far
 * (plan[first .. nplan))? */
static bool fits(const vg_scen_t *s, size_t first, const plan_t *p, int64_t lo, int64_t hi)
{
    if (p->fs < lo || p->fe > hi)
        return false;
    for (size_t i = first; i < s->nplan; i++) {
        const plan_t *o = &s->plan[i];
        if (!(p->fe + SEPARATION_MS <= o->fs || o->fe + SEPARATION_MS <= p->fs))
            return false;
    }
    return true;
}

static int plan_cmp(const void *a, const void *b)
{
    const plan_t *x = a, *y = b;
    if (x->device != y->device)
        return x->device < y->device ? -1 : 1;
    return x->fs < y->fs ? -1 : x->fs > y->fs;
}

static int plan_device(vg_scen_t *s, uint32_t dev)
{
    const vg_scen_cfg_t *c = &s->cfg;
    fdev_t *d = &s->dev[dev];
    uint64_t r = stream_seed(c->seed, dev, 1, 0);
    size_t first = s->nplan;
    d->ep0 = (uint32_t)first;
    if (dev >= c->devices) {
        /* A drift device: one DRIFT episode, nothing else. */
        int days = (int)floor(c->drift_days);
        plan_t p = {.device = dev, .kind = VG_SCEN_DRIFT};
        int day = irange(&r, 7, days - 5);
        p.on = c->t0_ms + day * VG_SCEN_DAY_MS;
        p.dur = ms_of(urange(&r, 2, 3) * 86400.0);
        p.level = urange(&r, 6, 12);
        p.fs = p.on;
        p.fe = d->end_ms;
        d->drift_on = p.on;
        d->drift_len = p.dur;
        d->drift_amt = p.level;
        int rc = add_plan(s, &p);
        d->nep = 1;
        return rc;
    }
    int64_t lo = c->t0_ms + HEAD_MARGIN_MS, hi = d->end_ms - TAIL_MARGIN_MS;
    int ndays = (int)ceil(c->days);
    for (int day = 0; day < ndays; day++) {
        if (uniform(&r) < c->normal_share)
            continue;
        int64_t d0 = c->t0_ms + day * VG_SCEN_DAY_MS;
        for (int k = 0; k < VG_SCEN__KINDS; k++) {
            if (k == VG_SCEN_DRIFT)
                continue;
            int n = poisson(&r, c->rate[k]);
            for (int i = 0; i < n; i++) {
                plan_t p = {.device = dev, .kind = (uint8_t)k};
                draw_params(s, &r, &p);
                bool ok = false;
                for (int tries = 0; tries < PLACE_TRIES && !ok; tries++) {
                    int64_t on;
                    if (k == VG_SCEN_FLATLINE)
                        on = d0 + 8 * HOUR_MS + (int64_t)(uniform(&r) * (double)(13.5 * HOUR_MS));
                    else
                        on = d0 + (int64_t)(uniform(&r) * (double)VG_SCEN_DAY_MS);
                    place_at(s, &p, on);
                    ok = fits(s, first, &p, lo, hi);
                }
                if (!ok) {
                    s->unplaced++;
                    continue;
                }
                int rc = add_plan(s, &p);
                if (rc != VG_OK)
                    return rc;
            }
        }
    }
    d->nep = (uint32_t)(s->nplan - first);
    return VG_OK;
}

/* ---- the device model ---- */

/* Noon-to-noon day index of t (night n is the one around midnight n). */
static int64_t day_of(const vg_scen_t *s, int64_t t)
{
    int64_t rel = t - s->cfg.t0_ms + 12 * HOUR_MS;
    return rel >= 0 ? rel / VG_SCEN_DAY_MS : (rel - VG_SCEN_DAY_MS + 1) / VG_SCEN_DAY_MS;
}

static bool asleep(const vg_scen_t *s, uint32_t dev, int64_t t)
{
    int64_t n = day_of(s, t);
    uint64_t r = stream_seed(s->cfg.seed, dev, 3, (uint64_t)n);
    int64_t mid = s->cfg.t0_ms + n * VG_SCEN_DAY_MS;
    int64_t from = mid - HOUR_MS + (int64_t)urange(&r, -30 * MIN_MS, 30 * MIN_MS);
    int64_t to = mid + 7 * HOUR_MS + (int64_t)urange(&r, -30 * MIN_MS, 30 * MIN_MS);
    return t >= from && t < to;
}

/* The device's resting level at t: r0, the day's variation, the drift. */
static double rest_level(const vg_scen_t *s, const fdev_t *d, uint32_t dev, int64_t t)
{
    uint64_t r = stream_seed(s->cfg.seed, dev, 4, (uint64_t)day_of(s, t));
    double v = d->r0 + gauss(&r);
    if (d->drift_len > 0 && t > d->drift_on) {
        double f = (double)(t - d->drift_on) / (double)d->drift_len;
        v += d->drift_amt * (f > 1 ? 1 : f);
    }
    return v;
}

static bool is_exercise(int act)
{
    return act == VG_SCEN_ACT_WALK || act == VG_SCEN_ACT_RUN || act == VG_SCEN_ACT_HARD || act == VG_SCEN_ACT_EASY;
}

static void start_bout(fdev_t *d, int act, int64_t t, int64_t len)
{
    uint64_t *r = &d->rng;
    d->act = (uint8_t)act;
    d->act_start = t;
    d->act_end = t + len;
    switch (act) {
    case VG_SCEN_ACT_REST:
    case VG_SCEN_ACT_RECOVERY:
    case VG_SCEN_ACT_STILL:
        d->add = urange(r, 0, 8);
        break;
    case VG_SCEN_ACT_WALK:
        d->add = urange(r, 25, 40);
        d->cadence = urange(r, 80, 120);
        break;
    case VG_SCEN_ACT_RUN:
        d->add = urange(r, 135, 165);
        d->cadence = urange(r, 150, 180);
        break;
    case VG_SCEN_ACT_HARD: /* the intervals bout: HARD and EASY alternate */
        d->hard = urange(r, 160, 170);
        d->easy = urange(r, 110, 125);
        d->cadence = urange(r, 150, 180);
        d->cadence2 = urange(r, 80, 120);
        break;
    default:
        break;
    }
}

static void next_bout(fdev_t *d, int64_t t, bool waking)
{
    uint64_t *r = &d->rng;
    if (waking) {
        start_bout(d, VG_SCEN_ACT_REST, t, ms_of(urange(r, 10 * 60, 60 * 60)));
        d->prev_exercise = 0;
        return;
    }
    if (d->prev_exercise) {
        start_bout(d, VG_SCEN_ACT_RECOVERY, t, ms_of(urange(r, 8 * 60, 15 * 60)));
        d->prev_exercise = 0;
        return;
    }
    double u = uniform(r);
    if (u < 0.45) {
        start_bout(d, VG_SCEN_ACT_WALK, t, ms_of(urange(r, 5 * 60, 30 * 60)));
    } else if (u < 0.57) {
        start_bout(d, VG_SCEN_ACT_RUN, t, ms_of(urange(r, 20 * 60, 50 * 60)));
    } else if (u < 0.65) {
        start_bout(d, VG_SCEN_ACT_HARD, t, irange(r, 4, 10) * 4 * MIN_MS);
    } else {
        start_bout(d, VG_SCEN_ACT_REST, t, ms_of(urange(r, 10 * 60, 60 * 60)));
        return;
    }
    d->prev_exercise = 1;
}

static double reflect_clamp(double v, double lo, double hi)
{
    if (v < lo)
        v = lo + (lo - v);
    if (v > hi)
        v = hi - (v - hi);
    return v < lo ? lo : v > hi ? hi : v;
}

static int steps_for(fdev_t *d, int act, double cadence, double dt_s)
{
    if (act == VG_SCEN_ACT_REST) {
        return uniform(&d->rng) < 0.08 ? irange(&d->rng, 1, 3) : 0;
    }
    if (!is_exercise(act))
        return 0;
    double v = cadence * dt_s / 60.0 + 0.7 * gauss(&d->rng);
    return v < 0 ? 0 : (int)lround(v);
}

static void push(fdev_t *d, vg_scen_sample_t *smp, int64_t natural)
{
    int64_t a = natural > d->last_arrival ? natural : d->last_arrival + 1;
    smp->arrival_ms = a;
    d->last_arrival = a;
    d->q[(d->qh + d->qn) % QCAP] = *smp;
    d->qn++;
}

/* Cardiac overlay weight at t: 0 outside, 0..1 in the ramps, 1 in the core. */
static double overlay(const plan_t *p, int64_t t)
{
    if (t < p->on)
        return 0;
    int64_t u = t - p->on;
    if (u < p->ramp)
        return (double)(u + 1) / (double)(p->ramp + 1);
    u -= p->ramp;
    if (u < p->hold)
        return 1;
    u -= p->hold;
    if (u < p->ret)
        return 1.0 - (double)(u + 1) / (double)(p->ret + 1);
    return 0;
}

static void mark(vg_scen_label_t *l, int64_t first, int64_t last)
{
    if (l->start_ms == 0 || first < l->start_ms)
        l->start_ms = first;
    if (last > l->end_ms)
        l->end_ms = last;
}

/* Generates device dev's next measurement and queues what it sends. */
static void gen_one(vg_scen_t *s, uint32_t dev)
{
    fdev_t *d = &s->dev[dev];
    int64_t t = d->t;
    if (t >= d->end_ms) {
        if (d->holding) {
            push(d, &d->held, d->held.true_ms);
            d->holding = 0;
        }
        d->done = 1;
        return;
    }
    double dt_s = d->started ? (double)(t - d->prev_t) / 1000.0 : s->cfg.interval_s;

    /* The episode whose footprint holds t, if any. */
    while (d->cur < d->nep && s->plan[d->ep0 + d->cur].fe <= t)
        d->cur++;
    plan_t *p = NULL;
    uint32_t pi = 0;
    if (d->cur < d->nep && s->plan[d->ep0 + d->cur].fs <= t) {
        pi = d->ep0 + d->cur;
        p = &s->plan[pi];
    }
    vg_scen_label_t *lab = p ? &s->label[pi] : NULL;

    /* Activity: forced by an episode, sleep, or the bout schedule. */
    bool sleeping = asleep(s, dev, t);
    if (p && p->ov_e > p->ov_s && t >= p->ov_s && t < p->ov_e) {
        if (!d->forced) {
            start_bout(d, p->ov_act, t, p->ov_e - t);
            d->forced = 1;
            d->prev_exercise = 0;
        }
    } else if (sleeping) {
        d->act = VG_SCEN_ACT_SLEEP;
        d->forced = 0;
    } else if (!d->started || d->act == VG_SCEN_ACT_SLEEP) {
        next_bout(d, t, true);
    } else if (d->forced || t >= d->act_end) {
        d->forced = 0;
        next_bout(d, t, false);
    }
    int act = d->act;
    double cadence = d->cadence;
    double rl = rest_level(s, d, dev, t), target;
    switch (act) {
    case VG_SCEN_ACT_SLEEP:
        target = rl - d->drop;
        break;
    case VG_SCEN_ACT_STILL:
        target = sleeping ? rl - d->drop : rl + d->add;
        break;
    case VG_SCEN_ACT_WALK:
        target = rl + d->add;
        break;
    case VG_SCEN_ACT_RUN:
        target = d->add;
        break;
    case VG_SCEN_ACT_HARD:
        if (((t - d->act_start) / (2 * MIN_MS)) % 2 == 0) {
            target = d->hard;
        } else {
            target = d->easy;
            act = VG_SCEN_ACT_EASY;
            cadence = d->cadence2;
        }
        break;
    default:
        target = rl + d->add;
        break; /* REST, RECOVERY */
    }
    if (!d->started) {
        d->x = target;
        d->w = WANDER_SD * gauss(&d->rng);
    } else {
        double tau = target > d->x ? d->tau_up : d->tau_down;
        d->x = target + (d->x - target) * exp(-dt_s / tau);
        double a = exp(-dt_s / WANDER_TAU_S);
        d->w = d->w * a + sqrt(1 - a * a) * WANDER_SD * gauss(&d->rng);
    }
    double hr = reflect_clamp(d->x + d->w + NOISE_SD * gauss(&d->rng), HR_FLOOR, HR_CEIL);
    int steps = steps_for(d, act, cadence, dt_s);

    vg_scen_sample_t smp = {
        .device = dev, .steps = steps, .ts_ms = t, .true_ms = t, .label = -1, .activity = (uint8_t)act};
    int64_t natural = t;
    bool drop = false, hold = false, release = false;
    int ihr = (int)lround(hr);

    if (p) {
        switch (p->kind) {
        case VG_SCEN_REST_HIGH:
        case VG_SCEN_REST_LOW:
        case VG_SCEN_EXTREME_HIGH:
        case VG_SCEN_EXTREME_LOW:
        case VG_SCEN_SUDDEN: {
            double a = overlay(p, t);
            if (a <= 0)
                break;
            if (p->kind == VG_SCEN_SUDDEN && !p->based) {
                double base = d->x + d->w;
                p->based = 1;
                p->level = base + p->jump;
                p->lo = base + 35;
                p->hi = base + 65 < HR_CEIL ? base + 65 : HR_CEIL;
                lab->level = p->level;
                lab->core_lo = p->lo;
                lab->core_hi = p->hi;
            }
            double core = p->level + p->sd * gauss(&d->rng);
            core = core < p->lo ? p->lo : core > p->hi ? p->hi : core;
            if (a >= 1) {
                /* Integral bounds, so that rounding keeps the sample inside. */
                ihr = (int)lround(core);
                if (ihr < (int)ceil(p->lo))
                    ihr = (int)ceil(p->lo);
                if (ihr > (int)floor(p->hi))
                    ihr = (int)floor(p->hi);
                smp.phase = VG_SCEN_PHASE_CORE;
            } else {
                ihr = (int)lround((1 - a) * hr + a * core);
                smp.phase = VG_SCEN_PHASE_RAMP;
            }
            smp.label = (int32_t)pi;
            lab->samples++;
            bool beyond = false;
            switch (p->kind) {
            case VG_SCEN_REST_HIGH:
                beyond = ihr > 120;
                break;
            case VG_SCEN_REST_LOW:
                beyond = ihr < 40;
                break;
            case VG_SCEN_EXTREME_HIGH:
                beyond = ihr > 180;
                break;
            case VG_SCEN_EXTREME_LOW:
                beyond = ihr < 35;
                break;
            default: /* SUDDEN: from the jump to the end of the plateau */
                beyond = t < p->on + p->ramp + p->hold;
                break;
            }
            if (beyond)
                mark(lab, t, t);
            break;
        }
        case VG_SCEN_GAP:
        case VG_SCEN_OFFLINE:
            if (t >= p->on && t < p->on + p->dur) {
                drop = true;
                lab->samples++;
                if (lab->start_ms == 0)
                    lab->start_ms = t;
            } else if (t >= p->on + p->dur && !p->end_set) {
                p->end_set = 1;
                lab->end_ms = t;
            }
            break;
        case VG_SCEN_FLATLINE:
            if (t >= p->on && t < p->on + p->dur) {
                if (!p->flat_set) {
                    p->flat_set = 1;
                    p->flat = ihr;
                    lab->level = lab->core_lo = lab->core_hi = ihr;
                }
                ihr = p->flat;
                smp.phase = VG_SCEN_PHASE_CORE;
                smp.label = (int32_t)pi;
                lab->samples++;
                mark(lab, t, t);
            }
            break;
        case VG_SCEN_SKEW:
            if (t >= p->on && t < p->on + p->dur) {
                smp.ts_ms = t + p->skew;
                smp.label = (int32_t)pi;
                lab->samples++;
                mark(lab, t, t);
            }
            break;
        case VG_SCEN_IMPOSSIBLE:
            if (t >= p->on && p->done < p->count) {
                p->done++;
                ihr = irange(&d->rng, (int)p->lo, (int)p->hi);
                smp.phase = VG_SCEN_PHASE_CORE;
                smp.label = (int32_t)pi;
                lab->samples++;
                mark(lab, t, t);
            }
            break;
        case VG_SCEN_OUT_OF_ORDER:
            if (t >= p->on && p->done < 2 * p->count) {
                /* Even steps hold the sample back, odd ones send it and then
                 * the held one: adjacent pairs swapped. */
                smp.label = (int32_t)pi;
                if (p->done % 2 == 0) {
                    hold = true;
                    if (lab->start_ms == 0)
                        lab->start_ms = t;
                } else {
                    release = true;
                }
                p->done++;
            }
            break;
        case VG_SCEN_STALE:
            if (t >= p->on && t < p->on + p->dur) {
                natural = p->on + p->dur + (int64_t)p->done * UPLOAD_SPACING_MS;
                p->done++;
                smp.label = (int32_t)pi;
                lab->samples++;
                if (lab->start_ms == 0)
                    lab->start_ms = t;
            }
            break;
        default:
            break;
        }
    }
    smp.hr = ihr;

    d->started = 1;
    d->prev_t = t;
    double j = s->cfg.jitter_s > 0 ? urange(&d->rng, -s->cfg.jitter_s, s->cfg.jitter_s) : 0;
    d->t = t + s->interval_ms + ms_of(j);

    if (drop)
        return;
    if (hold) {
        d->held = smp;
        d->holding = 1;
        return;
    }
    push(d, &smp, natural);
    if (release && d->holding) {
        push(d, &d->held, d->held.true_ms);
        d->holding = 0;
        lab->samples++;
        lab->end_ms = d->last_arrival;
    }
    if (p && p->kind == VG_SCEN_STALE && smp.label >= 0)
        lab->end_ms = d->last_arrival;
}

static bool ensure_head(vg_scen_t *s, uint32_t dev)
{
    fdev_t *d = &s->dev[dev];
    while (d->qn == 0 && !d->done)
        gen_one(s, dev);
    return d->qn > 0;
}

/* The heap entry for device dev's queue head (ensure_head was true). */
static head_t head_of(const vg_scen_t *s, uint32_t dev)
{
    const fdev_t *d = &s->dev[dev];
    return (head_t){d->q[d->qh].arrival_ms, dev};
}

int vg_scen_new(const vg_scen_cfg_t *cfg, vg_scen_t **out)
{
    *out = NULL;
    if (vg_scen_cfg_check(cfg, NULL) != VG_OK)
        return VG_EINVAL;
    int rc = VG_ENOMEM;
    vg_scen_t *s = vg_calloc(VG_MEM_EVAL, 1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->cfg = *cfg;
    s->interval_ms = ms_of(cfg->interval_s);
    s->n = cfg->devices + cfg->drift_devices;
    s->dev = vg_calloc(VG_MEM_EVAL, s->n, sizeof *s->dev);
    if (!s->dev)
        goto fail;
    for (uint32_t i = 0; i < s->n; i++) {
        fdev_t *d = &s->dev[i];
        bool drift = i >= cfg->devices;
        d->end_ms = cfg->t0_ms + ms_of((drift ? cfg->drift_days : cfg->days) * 86400.0);
        d->rng = stream_seed(cfg->seed, i, 2, 0);
        d->r0 = urange(&d->rng, 52, 75);
        d->drop = urange(&d->rng, 5, 8);
        d->tau_up = urange(&d->rng, 30, 45);
        d->tau_down = urange(&d->rng, 120, 180);
        d->t = cfg->t0_ms + (int64_t)(uniform(&d->rng) * (double)s->interval_ms);
        d->last_arrival = INT64_MIN / 2;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        rc = plan_device(s, i);
        if (rc != VG_OK)
            goto fail;
    }
    /* Planned per device in kind order; generation wants start order. */
    for (uint32_t i = 0; i < s->n; i++) {
        fdev_t *d = &s->dev[i];
        if (d->nep > 1)
            qsort(s->plan + d->ep0, d->nep, sizeof *s->plan, plan_cmp);
    }
    rc = VG_ENOMEM;
    s->label = vg_calloc(VG_MEM_EVAL, s->nplan ? s->nplan : 1, sizeof *s->label);
    if (!s->label)
        goto fail;
    for (size_t i = 0; i < s->nplan; i++) {
        const plan_t *p = &s->plan[i];
        vg_scen_label_t *l = &s->label[i];
        l->device = p->device;
        l->kind = p->kind;
        l->high = p->high;
        l->types = types_of(p->kind);
        l->skew_ms = p->skew;
        l->level = p->level;
        l->core_lo = p->lo;
        l->core_hi = p->hi;
        if (p->kind == VG_SCEN_DRIFT) {
            l->start_ms = p->on;
            l->end_ms = p->fe;
        }
    }
    if (heads_reserve(&s->heap, s->n, VG_MEM_EVAL) != VG_OK)
        goto fail;
    for (uint32_t i = 0; i < s->n; i++)
        if (ensure_head(s, i))
            (void)heads_push(&s->heap, head_of(s, i), VG_MEM_EVAL); /* reserved: cannot fail */
    *out = s;
    return VG_OK;
fail:
    vg_scen_free(s);
    return rc;
}

void vg_scen_free(vg_scen_t *s)
{
    if (!s)
        return;
    vg_free(s->dev);
    heads_free(&s->heap);
    vg_free(s->plan);
    vg_free(s->label);
    vg_free(s);
}

uint32_t vg_scen_devices(const vg_scen_t *s)
{
    return s->n;
}

int vg_scen_device_id(const vg_scen_t *s, uint32_t dev, char *out, size_t cap)
{
    int n = dev < s->cfg.devices ? snprintf(out, cap, "ev-%04u", dev)
                                 : snprintf(out, cap, "evd-%03u", dev - s->cfg.devices);
    return n < 0 || (size_t)n >= cap ? VG_ENOSPC : n;
}

int64_t vg_scen_device_end(const vg_scen_t *s, uint32_t dev)
{
    return dev < s->n ? s->dev[dev].end_ms : 0;
}

bool vg_scen_device_is_drift(const vg_scen_t *s, uint32_t dev)
{
    return dev >= s->cfg.devices && dev < s->n;
}

int vg_scen_next(vg_scen_t *s, vg_scen_sample_t *out)
{
    if (!s->heap.len)
        return VG_ENOTFOUND;
    uint32_t dev = heads_top(&s->heap).dev;
    fdev_t *d = &s->dev[dev];
    *out = d->q[d->qh];
    d->qh = (uint8_t)((d->qh + 1) % QCAP);
    d->qn--;
    s->yielded++;
    if (ensure_head(s, dev)) {
        s->heap.v[0] = head_of(s, dev); /* a later arrival: only moves down */
        heads_fix(&s->heap, 0);
    } else {
        heads_remove(&s->heap, 0);
    }
    return VG_OK;
}

uint64_t vg_scen_yielded(const vg_scen_t *s)
{
    return s->yielded;
}

size_t vg_scen_label_count(const vg_scen_t *s)
{
    return s->nplan;
}

const vg_scen_label_t *vg_scen_labels(const vg_scen_t *s)
{
    return s->label;
}

size_t vg_scen_unplaced(const vg_scen_t *s)
{
    return s->unplaced;
}
