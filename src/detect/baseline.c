/* baseline.c — the personal resting-heart-rate detector behind baseline.h.
 *
 * Owns: what "resting" means for the baseline, the learnt personal baseline
 * and its short-term level, the nightly resting heart rate and its
 * reference history, and the rules of BASELINE_DRIFT and
 * RESTING_HR_ELEVATION. Does not own: activity bookkeeping (inactive,
 * inactive_ms come from devstate.c), sample validation (quality.c decides
 * usable), or alert events (the lifecycle). Pure functions, no allocation.
 *
 * Resting sample: x->inactive and x->inactive_ms >= baseline_rest_s. Every
 * resting sample is credited with the resting time since the previous
 * sample (dt, at most REST_CREDIT_MAX_MS); all learning is in resting time.
 *
 * BASELINE_DRIFT (warning; critical at z >= 2 x baseline_z):
 *   baseline  EW mean and variance of resting heart rate, half-life
 *             baseline_halflife_h of resting time, every update Huber-clipped
 *             to mean +/- 2.5 sd (sd floored at baseline_min_sd_bpm);
 *   level     EW mean of resting heart rate, half-life LEVEL_HALFLIFE_MS of
 *             resting time, each input clipped to level +/- 2.5 sd;
 *   scale     sqrt of the EW mean square of (level - mean), same half-life
 *             as the baseline, Huber-clipped at 2.5 scale;
 *   z         (level - mean) / max(scale, baseline_min_sd_bpm).
 *   While z >= baseline_z - 1 (after warm-up) the baseline and both spreads
 *   learn at a quarter of their rate. No verdict before baseline_warmup_h
 *   of resting time. Active once z has stayed >= baseline_z for
 *   baseline_window_s of resting time (at_ms = the sample where it
 *   crossed); clears once z has stayed < max(baseline_z - 2, 0.5) for 4 x
 *   baseline_window_s of resting time.
 *   Resting asleep and resting awake are one population here, although
 *   sleep runs 5-8 bpm lower: the scale learns that spread, which costs
 *   sensitivity (a +6 bpm rise rarely reaches z 3; +10..12 over two days
 *   does) but cannot misfire. Splitting by the configured night window was
 *   tried and rejected: with a wrong tz_offset_min, an occasional awake rest
 *   inside the window looks exactly like an elevation. Small slow rises are
 *   the nightly detector's job.
 *
 * RESTING_HR_ELEVATION (warning; critical, see below):
 *   A night is [night_start_hour, night_end_hour) local time (UTC +
 *   tz_offset_min; it may wrap midnight). Its resting HR is the mean of its
 *   resting samples; with fewer than NIGHT_MIN_SAMPLES it does not count. A
 *   night is closed by the first sample at or after its end. The first
 *   nightly_min_nights qualifying nights only fill the reference; after that
 *   each night is compared with the median of the reference (the last up
 *   to 7 unremarkable nights): elevated if >= median + nightly_warn_bpm.
 *   Active after nightly_consecutive elevated nights in a row (at_ms = start
 *   of the first); critical while the last nightly_consecutive nights were
 *   all >= median + nightly_alert_bpm; clears on a night < median + warn - 1
 *   (at_ms = that night's end). Nights that do not count are skipped, they
 *   neither break nor extend a run. */
#include "detect/baseline.h"

#include "core/sat.h"

#include <math.h>
#include <string.h>

#define DAY_MS 86400000LL
#define HOUR_MS 3600000.0
/* Half-life of the short-term resting level: long enough to average a few
 * dozen samples of a 1-minute device (single-sample noise of ~2.5 bpm
 * becomes ~0.4 bpm), short enough that a 30-minute window sees it settle. */
#define LEVEL_HALFLIFE_MS (20.0 * 60.0 * 1000.0)
/* Huber clip, in standard deviations. */
#define CLIP_SD 2.5
/* One sample never stands for more resting time than this: after a gap in
 * the data nobody knows whether the wearer rested, and a long silence must
 * not look like a long night. 15 minutes still credits slow devices fully. */
#define REST_CREDIT_MAX_MS (15 * 60 * 1000)
/* A night's mean needs this many resting samples (half an hour of a
 * 1-minute device) to be worth comparing. */
#define NIGHT_MIN_SAMPLES 30
/* A level the nightly detector has kept out of the reference for this many
 * qualifying nights in a row is the wearer's new normal, not an acute
 * change: the reference is relearnt, otherwise the alert could never close
 * and the detector would be blind to the next change. */
#define REBASE_NIGHTS 14

enum {
    BF_SEEN = 1u << 0,     /* the baseline has been initialised */
    BF_RUN = 1u << 1,      /* z is in a run towards a state change, timed by run_ms */
    BF_DRIFT = 1u << 2,    /* BASELINE_DRIFT active */
    BF_NIGHT = 1u << 3,    /* a night is being collected */
    BF_NIGHT_ON = 1u << 4, /* RESTING_HR_ELEVATION active */
};

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- BASELINE_DRIFT --------------------------------------------------------------- */

/* Resting time, in baseline windows, the level must stay back near the
 * baseline before a drift alert closes. */
#define CLEAR_WINDOWS 4.0

static void drift(const vg_detect_cfg_t *c, vg_baseline_state_t *s, const vg_sample_t *x, int64_t credit,
                  vg_cond_t *out, int *n)
{
    double hr = x->hr;
    if (!(s->flags & BF_SEEN)) {
        s->mean = s->level = (float)hr;
        s->var = s->level_var = 0.0f;
        s->rest_ms = credit;
        s->flags |= BF_SEEN;
        return;
    }

    /* Time-based weight: a sample counts by the resting time it stands for,
     * so a 1-second device and a 1-minute device learn at the same pace.
     * Until about a half-life of resting time has been seen the plain
     * running mean weighs more, so the start-up value is forgotten quickly. */
    double hl = c->baseline_halflife_h * HOUR_MS;
    double a = 1.0 - exp2(-(double)credit / hl);
    double total = (double)s->rest_ms + (double)credit;
    double warm = total > 0 ? (double)credit / total : 1.0;
    if (warm > a)
        a = warm;

    double mean = s->mean, var = s->var, level = s->level, lvar = s->level_var;
    double sd = sqrt(var), w = sd > c->baseline_min_sd_bpm ? sd : c->baseline_min_sd_bpm;
    double ls = sqrt(lvar), lw = ls > c->baseline_min_sd_bpm ? ls : c->baseline_min_sd_bpm;
    double warm_ms = c->baseline_warmup_h * HOUR_MS;
    /* While the level already stands out (z >= limit - 1 before this
     * sample), the baseline and both spreads learn four times slower: a
     * fresh elevation must not teach the baseline that it is normal before
     * the alarm can be raised. Slower, not frozen, so that a lasting change
     * (a new medication, a new habit of long daytime rests) is still
     * accepted within a couple of weeks and the alert can close. */
    bool high = (double)s->rest_ms >= warm_ms && (level - mean) / lw >= c->baseline_z - 1.0;
    double ab = high ? a / 4.0 : a;

    /* Huber: a sample far from the baseline moves it as if it were only
     * 2.5 sd away, so artefacts do not drag it. */
    double d = clampd(hr, mean - CLIP_SD * w, mean + CLIP_SD * w) - mean;
    mean += ab * d;
    var = (1.0 - ab) * (var + ab * d * d);

    double al = 1.0 - exp2(-(double)credit / LEVEL_HALFLIFE_MS);
    level += al * (clampd(hr, level - CLIP_SD * w, level + CLIP_SD * w) - level);

    /* The scale is the spread of the quantity being scored, the level's
     * distance from the baseline, not the spread of single samples. The
     * level averages away most sample noise (2.5 bpm becomes ~0.4), so a
     * per-sample sd would be several times too wide and hide exactly the
     * few-bpm shifts this detector is for; what the level does move with is
     * day-to-day variation and, above all, the difference between resting
     * asleep and resting awake (5-8 bpm), and its spread around the baseline
     * measures just that. It is the mean square (not the variance) because
     * the distance from the baseline is what we divide by, learnt at the
     * baseline's pace and Huber-clipped likewise. The z of this sample uses
     * the scale learnt before it. */
    double e = level - mean;
    double z = e / lw;
    double ec = clampd(e, -CLIP_SD * lw, CLIP_SD * lw);
    lvar = (1.0 - ab) * lvar + ab * ec * ec;

    s->mean = (float)mean;
    s->var = (float)var;
    s->level = (float)level;
    s->level_var = (float)lvar;
    s->rest_ms = vg_sat_add_i64(s->rest_ms, credit);
    if ((double)s->rest_ms < warm_ms)
        return; /* no verdict yet, so nothing to report */

    double lim = c->baseline_z, window = c->baseline_window_s * 1000.0;
    uint32_t cr = (uint32_t)credit;
    /* One run timer serves both directions: before activation it times
     * z >= limit over one window; once active it times z < limit - 2 (at
     * least 0.5) over CLEAR_WINDOWS windows. The wide hysteresis is what
     * keeps a drift one alert: while a drift goes on, the level dips
     * towards the baseline in every night's deep sleep and the baseline
     * slowly absorbs part of the rise, so "below limit - 1 for half an hour"
     * closed and reopened the same episode (vigil eval: 5 duplicates in 10
     * drifts). */
    bool on = s->flags & BF_DRIFT;
    double clear_z = lim - 2.0 > 0.5 ? lim - 2.0 : 0.5;
    bool in_run = on ? z < clear_z : z >= lim;
    if (on)
        window *= CLEAR_WINDOWS;
    if (!in_run) {
        s->flags &= (uint8_t)~BF_RUN;
        s->run_ms = 0;
    } else if (!(s->flags & BF_RUN)) {
        s->flags |= BF_RUN;
        s->run_ms = 0;
        if (!on)
            s->cross_ms = x->ts_ms;
    } else
        s->run_ms = s->run_ms > UINT32_MAX - cr ? UINT32_MAX : s->run_ms + cr;
    if (in_run && (double)s->run_ms >= window) {
        s->flags ^= BF_DRIFT;
        s->flags &= (uint8_t)~BF_RUN;
        s->run_ms = 0;
        on = !on;
    }

    vg_cond_t *q = vg_cond_put(out, n, VG_ALERT_BASELINE_DRIFT, on, z >= 2.0 * lim ? VG_SEV_CRITICAL : VG_SEV_WARNING,
                               on ? s->cross_ms : x->ts_ms, z, lim);
    q->mean_hr = (float)level;
    q->min_hr = (float)(mean - sqrt(var));
    q->max_hr = (float)(mean + sqrt(var));
    q->window_ms = (int64_t)window;
}

/* ---- RESTING_HR_ELEVATION ---------------------------------------------------------- */

typedef struct {
    int32_t day;      /* local day number in which the night starts */
    bool in_night;    /* the instant lies inside that night */
    int64_t start_ms; /* the night's start, UTC event time */
    int64_t end_ms;   /* its end */
    int64_t len_ms;
} night_t;

static int64_t night_len_ms(const vg_detect_cfg_t *c)
{
    double h = fmod(c->night_end_hour - c->night_start_hour + 24.0, 24.0);
    return (int64_t)llround(h * HOUR_MS);
}

/* Places the night of local day `day` (the day in which it starts). */
static void night_at_day(const vg_detect_cfg_t *c, int32_t day, night_t *nt)
{
    int64_t tz = (int64_t)llround(c->tz_offset_min * 60000.0);
    int64_t st = (int64_t)llround(c->night_start_hour * HOUR_MS);
    nt->day = day;
    nt->len_ms = night_len_ms(c);
    nt->start_ms = (int64_t)day * DAY_MS + st - tz; /* |day| < 2^31: far from overflow */
    nt->end_ms = nt->start_ms + nt->len_ms;
    nt->in_night = false;
}

/* The night an instant belongs to. False for instants millions of years
 * away, whose day number does not fit the state (such timestamps are
 * garbage; they simply never count as night). */
static bool night_of(const vg_detect_cfg_t *c, int64_t ts, night_t *nt)
{
    int64_t tz = (int64_t)llround(c->tz_offset_min * 60000.0);
    int64_t st = (int64_t)llround(c->night_start_hour * HOUR_MS);
    /* Shift so that every night starts at a multiple of DAY_MS. */
    int64_t t = vg_sat_add_i64(vg_sat_add_i64(ts, tz), -st);
    int64_t day = t / DAY_MS, off = t % DAY_MS;
    if (off < 0) {
        day--;
        off += DAY_MS;
    }
    if (day <= INT32_MIN || day >= INT32_MAX)
        return false;
    night_at_day(c, (int32_t)day, nt);
    nt->in_night = off < nt->len_ms;
    return true;
}

static double hist_median(const vg_baseline_state_t *s)
{
    uint16_t v[VG_BASELINE_NIGHTS];
    int n = s->hist_n;
    memcpy(v, s->hist, sizeof v);
    /* The ring holds exactly hist_n valid entries in its first slots until
     * it is full, then all of them: sorting the first hist_n is right. */
    for (int i = 1; i < n; i++) {
        uint16_t k = v[i];
        int j = i - 1;
        for (; j >= 0 && v[j] > k; j--)
            v[j + 1] = v[j];
        v[j + 1] = k;
    }
    double m = n % 2 ? v[n / 2] : ((double)v[n / 2 - 1] + v[n / 2]) / 2.0;
    return m / 10.0;
}

static void hist_push(vg_baseline_state_t *s, double rhr)
{
    double d = clampd(rhr * 10.0, 0.0, (double)UINT16_MAX);
    s->hist[s->hist_pos] = (uint16_t)lround(d);
    s->hist_pos = (uint8_t)((s->hist_pos + 1) % VG_BASELINE_NIGHTS);
    if (s->hist_n < VG_BASELINE_NIGHTS)
        s->hist_n++;
}

static void close_night(const vg_detect_cfg_t *c, vg_baseline_state_t *s, vg_cond_t *out, int *n)
{
    night_t nt;
    night_at_day(c, s->night, &nt);
    uint32_t cnt = s->night_n;
    double rhr = cnt ? s->night_sum / cnt : 0.0;
    s->flags &= (uint8_t)~BF_NIGHT;
    s->night_sum = 0.0;
    s->night_n = 0;
    if (cnt < NIGHT_MIN_SAMPLES)
        return; /* too little rest that night to say anything */

    double min_nights = c->nightly_min_nights < 1 ? 1 : c->nightly_min_nights;
    if ((double)s->hist_n < min_nights) {
        hist_push(s, rhr); /* still learning what a normal night is */
        return;
    }

    double med = hist_median(s), delta = rhr - med;
    bool elevated = delta >= c->nightly_warn_bpm;
    bool was_on = s->flags & BF_NIGHT_ON;
    if (elevated) {
        s->elev_n = vg_sat_inc_u8(s->elev_n);
        s->alert_n = delta >= c->nightly_alert_bpm ? vg_sat_inc_u8(s->alert_n) : 0;
        if (s->elev_n == 1 && !was_on)
            s->elev_ms = nt.start_ms;
    } else {
        s->elev_n = 0;
        s->alert_n = 0;
    }
    double need = c->nightly_consecutive < 1 ? 1 : c->nightly_consecutive;
    if (!was_on && (double)s->elev_n >= need)
        s->flags |= BF_NIGHT_ON;
    else if (was_on && delta < c->nightly_warn_bpm - 1.0)
        s->flags &= (uint8_t)~BF_NIGHT_ON;

    /* The reference learns only unremarkable nights: an elevated night, or
     * any night of an open episode, would let the median absorb the very
     * illness it is meant to reveal. */
    bool on = s->flags & BF_NIGHT_ON;
    if (!elevated && !on) {
        hist_push(s, rhr);
        s->held_n = 0;
    } else {
        s->held_n = vg_sat_inc_u8(s->held_n);
        if (s->held_n >= REBASE_NIGHTS) {
            s->hist_n = s->hist_pos = 0;
            memset(s->hist, 0, sizeof s->hist);
            s->held_n = s->elev_n = s->alert_n = 0;
            s->flags &= (uint8_t)~BF_NIGHT_ON;
            hist_push(s, rhr);
            on = false;
        }
    }

    vg_severity_t sev = (double)s->alert_n >= need ? VG_SEV_CRITICAL : VG_SEV_WARNING;
    vg_cond_t *k =
        vg_cond_put(out, n, VG_ALERT_RESTING_HR_RISE, on, sev, on ? s->elev_ms : nt.end_ms, delta, c->nightly_warn_bpm);
    k->samples = cnt;
    k->mean_hr = (float)rhr;
    k->min_hr = (float)med; /* the reference the night was compared with */
    k->max_hr = (float)rhr;
    k->window_ms = nt.len_ms;
}

static void nightly(const vg_detect_cfg_t *c, vg_baseline_state_t *s, const vg_sample_t *x, bool resting,
                    vg_cond_t *out, int *n)
{
    if (night_len_ms(c) <= 0)
        return; /* start == end: no night configured */
    if (s->flags & BF_NIGHT) {
        night_t cur;
        night_at_day(c, s->night, &cur);
        if (x->ts_ms >= cur.end_ms)
            close_night(c, s, out, n);
    }
    if (!resting)
        return;
    night_t nt;
    if (!night_of(c, x->ts_ms, &nt) || !nt.in_night)
        return;
    if (!(s->flags & BF_NIGHT)) {
        s->flags |= BF_NIGHT;
        s->night = nt.day;
        s->night_sum = 0.0;
        s->night_n = 0;
    } else if (s->night != nt.day)
        return; /* earlier than the open night: cannot happen in event-time order */
    s->night_sum += x->hr;
    if (s->night_n != UINT32_MAX)
        s->night_n++;
}

/* ---- entry point ------------------------------------------------------------------- */

int vg_baseline_feed(const vg_detect_cfg_t *c, vg_baseline_state_t *s, const vg_sample_t *x, vg_cond_t *out)
{
    int n = 0;
    /* quality.c keeps implausible heart rates away; the range check here
     * only guarantees that the float state never sees a value it cannot
     * hold. */
    bool resting =
        x->inactive && (double)x->inactive_ms >= c->baseline_rest_s * 1000.0 && x->hr > 0.0 && x->hr < 1000.0;
    nightly(c, s, x, resting, out, &n);
    if (resting) {
        int64_t credit = x->dt_ms < 0 ? 0 : x->dt_ms > REST_CREDIT_MAX_MS ? REST_CREDIT_MAX_MS : x->dt_ms;
        drift(c, s, x, credit, out, &n);
    }
    return n;
}
