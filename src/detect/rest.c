/* rest.c — the at-rest heart-rate detector behind rest.h.
 *
 * Owns: the bucket ring that summarises the last rest_window_s of one
 * device's samples, and the fire / clear rules of SUSTAINED_HIGH_HR_AT_REST
 * and SUSTAINED_LOW_HR_AT_REST. Does not own: deciding whether a sample is
 * at rest or usable (devstate.c and quality.c fill vg_sample_t), the alert
 * lifecycle (devstate.c), or where the state lives. Pure functions: no
 * allocation, no clock, no I/O. */
#include "detect/rest.h"

#include <math.h>
#include <string.h>

#define NB VG_REST_BUCKETS
#define COUNT_MAX 255
#define SCALE_MAX 15
/* Share comparisons are between integer counts and count x share; the
 * product can be off by one ulp (0.8 x 15 is not exactly 12), and a share
 * exactly at the limit must fire. */
#define EPS 1e-9

enum { HI = 0, LO = 1 };
#define F_ACTIVE(d) (1u << (d))
#define F_FIRST(d) (1u << (2 + (d)))

/* The window's sums, oldest bucket first. */
typedef struct {
    uint32_t n, rest[2], near[2], moving, sum;
    int min, max;
    int64_t oldest_rest[2]; /* bucket index of the oldest bucket with rest[d] > 0 */
} totals_t;

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && (a < 0) != (b < 0))
        q--;
    return q;
}

static unsigned slot(int64_t idx)
{
    int64_t m = idx % NB;
    return (unsigned)(m < 0 ? m + NB : m);
}

static uint32_t bucket_width_ms(const vg_detect_cfg_t *c)
{
    double w = c->rest_window_s * 1000.0 / NB;
    /* detect.c keeps rest_window_s in 60..7200 s; clamp anyway so that a
     * hand-built config cannot divide by zero or overflow. */
    if (!(w >= 1.0))
        return 1;
    if (w > 86400000.0)
        return 86400000;
    return (uint32_t)w;
}

static uint8_t whole_bpm(double hr)
{
    if (!(hr >= 0.0))
        return 0;
    if (hr >= 254.5)
        return 255;
    return (uint8_t)(hr + 0.5);
}

static uint8_t half8(uint8_t v)
{
    return (uint8_t)((v + 1u) >> 1);
}

/* Halves every count, rounding up so that a non-empty bucket stays
 * non-empty; ratios within a bucket move by at most half a unit. */
static void halve_all(vg_rest_state_t *s)
{
    for (unsigned i = 0; i < NB; i++) {
        vg_rest_bucket_t *b = &s->b[i];
        b->n = half8(b->n);
        b->rest[0] = half8(b->rest[0]);
        b->rest[1] = half8(b->rest[1]);
        b->near[0] = half8(b->near[0]);
        b->near[1] = half8(b->near[1]);
        b->moving = half8(b->moving);
        b->sum_hr = (uint16_t)((b->sum_hr + 1u) >> 1);
    }
    s->scale++;
    s->phase = 0;
}

/* The inverse, once the rate has dropped: exact in units of samples. */
static void double_all(vg_rest_state_t *s)
{
    for (unsigned i = 0; i < NB; i++) {
        vg_rest_bucket_t *b = &s->b[i];
        b->n = (uint8_t)(b->n * 2u);
        b->rest[0] = (uint8_t)(b->rest[0] * 2u);
        b->rest[1] = (uint8_t)(b->rest[1] * 2u);
        b->near[0] = (uint8_t)(b->near[0] * 2u);
        b->near[1] = (uint8_t)(b->near[1] * 2u);
        b->moving = (uint8_t)(b->moving * 2u);
        b->sum_hr = (uint16_t)(b->sum_hr * 2u);
    }
    s->scale--;
    s->phase = 0;
}

static void reset_ring(vg_rest_state_t *s, uint32_t width_ms, int64_t idx)
{
    memset(s->b, 0, sizeof s->b);
    s->width_ms = width_ms;
    s->head = idx;
    s->scale = 0;
    s->phase = 0;
    s->flags &= (uint8_t) ~(F_FIRST(HI) | F_FIRST(LO));
    s->first_ms[HI] = s->first_ms[LO] = 0;
}

/* Moves the head forward to idx, emptying the buckets that fall out of the
 * window. A jump of hours costs the same as a jump of one ring: the loop
 * never runs more than NB times. */
static void advance(vg_rest_state_t *s, int64_t idx)
{
    int64_t k = idx - s->head;
    if (k >= NB) {
        reset_ring(s, s->width_ms, idx);
        return;
    }
    for (int64_t i = 1; i <= k; i++)
        memset(&s->b[slot(s->head + i)], 0, sizeof s->b[0]);
    s->head = idx;
    if (s->scale > 0) {
        for (unsigned i = 0; i < NB; i++)
            if (s->b[i].n > COUNT_MAX / 2)
                return;
        double_all(s);
    }
}

/* Which samples are recorded at scale k: those whose sequence number hashes
 * to a multiple of 2^k. Taking every 2^k-th sample instead would alias with
 * periodic input (alternating 130 / 70 at scale 1 would record only 130s). */
static uint32_t select_hash(uint16_t n)
{
    uint32_t h = n * 0x9E3779B1u;
    h ^= h >> 15;
    h *= 0x85EBCA77u;
    h ^= h >> 13;
    return h;
}

/* Adds the sample to bucket idx. Returns false when the sample was not
 * recorded (recording one in 2^scale skipped it, or the rate is beyond even
 * the largest scale). */
static bool record(const vg_detect_cfg_t *c, vg_rest_state_t *s, int64_t idx, const vg_sample_t *x)
{
    vg_rest_bucket_t *b = &s->b[slot(idx)];
    if (b->n == COUNT_MAX) {
        if (s->scale == SCALE_MAX)
            return false;
        halve_all(s);
    }
    if (s->scale > 0 && (select_hash(s->phase++) & ((1u << s->scale) - 1u)) != 0)
        return false;
    double hr = x->hr;
    uint8_t v = whole_bpm(hr);
    if (b->n == 0 || v < b->min_hr)
        b->min_hr = v;
    if (b->n == 0 || v > b->max_hr)
        b->max_hr = v;
    b->n++;
    b->sum_hr = (uint16_t)(b->sum_hr + v);
    if (x->at_rest && hr > c->rest_high_bpm)
        b->rest[HI]++;
    if (x->at_rest && hr < c->rest_low_bpm)
        b->rest[LO]++;
    if (hr > c->rest_high_bpm - c->rest_hysteresis_bpm)
        b->near[HI]++;
    if (hr < c->rest_low_bpm + c->rest_hysteresis_bpm)
        b->near[LO]++;
    if (!x->inactive)
        b->moving++;
    return true;
}

static void sum_window(const vg_rest_state_t *s, totals_t *t)
{
    memset(t, 0, sizeof *t);
    t->oldest_rest[HI] = t->oldest_rest[LO] = INT64_MIN;
    for (int64_t idx = s->head - (NB - 1); idx <= s->head; idx++) {
        const vg_rest_bucket_t *b = &s->b[slot(idx)];
        if (b->n == 0)
            continue;
        if (t->n == 0 || b->min_hr < t->min)
            t->min = b->min_hr;
        if (t->n == 0 || b->max_hr > t->max)
            t->max = b->max_hr;
        t->n += b->n;
        t->sum += b->sum_hr;
        t->moving += b->moving;
        for (int d = HI; d <= LO; d++) {
            t->near[d] += b->near[d];
            t->rest[d] += b->rest[d];
            if (b->rest[d] && t->oldest_rest[d] == INT64_MIN)
                t->oldest_rest[d] = idx;
        }
    }
}

static void evaluate(const vg_detect_cfg_t *c, vg_rest_state_t *s, const totals_t *t, int d, const vg_sample_t *x,
                     vg_cond_t *o)
{
    double n = (double)t->n;
    uint32_t est = t->n > (UINT32_MAX >> s->scale) ? UINT32_MAX : t->n << s->scale;
    double thr = d == HI ? c->rest_high_bpm : c->rest_low_bpm;
    double clear_share = c->rest_clear_share < c->rest_share ? c->rest_clear_share : c->rest_share;
    double mean = t->n ? (double)t->sum / n : 0.0;

    memset(o, 0, sizeof *o);
    o->type = (uint8_t)(d == HI ? VG_ALERT_HIGH_HR_AT_REST : VG_ALERT_LOW_HR_AT_REST);
    o->threshold = thr;

    if (!(s->flags & F_ACTIVE(d))) {
        o->value = t->n ? t->rest[d] / n : 0.0;
        if ((double)est >= c->rest_min_samples && t->n > 0 && (double)t->rest[d] + EPS >= c->rest_share * n) {
            s->flags |= (uint8_t)F_ACTIVE(d);
            /* The bucket start is a lower bound of the first such sample;
             * first_ms is exact unless that sample has left the window. */
            int64_t at = t->oldest_rest[d] * (int64_t)s->width_ms;
            if ((s->flags & F_FIRST(d)) && s->first_ms[d] > at)
                at = s->first_ms[d];
            s->at_ms[d] = at;
        }
    } else {
        o->value = t->n ? t->near[d] / n : 0.0;
        if ((double)t->near[d] + EPS < clear_share * n) {
            s->flags &= (uint8_t)~F_ACTIVE(d);
            s->at_ms[d] = 0;
        }
    }

    o->active = (s->flags & F_ACTIVE(d)) ? 1 : 0;
    if (o->active) {
        bool critical =
            d == HI ? mean >= thr + c->rest_critical_delta_bpm : mean <= thr - c->rest_critical_delta_bpm / 2.0;
        o->severity = (uint8_t)(critical ? VG_SEV_CRITICAL : VG_SEV_WARNING);
        o->at_ms = s->at_ms[d];
    } else {
        o->severity = VG_SEV_NONE;
        o->at_ms = x->ts_ms;
    }
    o->samples = est;
    if (t->n) {
        o->min_hr = (float)t->min;
        o->max_hr = (float)t->max;
        o->mean_hr = (float)mean;
        o->active_share = (float)(t->moving / n);
    }
    o->window_ms = (int64_t)NB * s->width_ms;
}

int vg_rest_feed(const vg_detect_cfg_t *c, vg_rest_state_t *s, const vg_sample_t *x, vg_cond_t *out)
{
    uint32_t w = bucket_width_ms(c);
    int64_t idx = floor_div(x->ts_ms, (int64_t)w);

    if (s->width_ms != w)
        reset_ring(s, w, idx); /* fresh device, or rest_window_s changed: old buckets mean nothing */
    else if (idx > s->head)
        advance(s, idx);

    /* Callers feed in event-time order, but a sample that still falls inside
     * the window is simply counted where it belongs; an older one is not. A
     * heart rate that is not a number carries no information (quality.c
     * should have marked it unusable) and is not counted either. */
    bool recorded = idx > s->head - NB && isfinite(x->hr) && record(c, s, idx, x);

    totals_t t;
    sum_window(s, &t);
    for (int d = HI; d <= LO; d++) {
        bool beyond = x->at_rest && (d == HI ? x->hr > c->rest_high_bpm : x->hr < c->rest_low_bpm);
        if (t.rest[d] == 0) {
            s->flags &= (uint8_t)~F_FIRST(d);
            s->first_ms[d] = 0;
        } else if (recorded && beyond && !(s->flags & F_FIRST(d))) {
            s->first_ms[d] = x->ts_ms;
            s->flags |= (uint8_t)F_FIRST(d);
        }
        evaluate(c, s, &t, d, x, &out[d]);
    }
    return 2;
}
