/* device.c — see device.h.
 *
 * The heart rate follows its activity's target with a 20-second time
 * constant plus a little noise scaled by the time step, so the walk looks
 * the same whether a device reports every 5 s or every 0.5 ms. Episodes are
 * drawn per sample with the probability that makes --anomaly-rate a
 * per-minute figure, and a device always returns to at least two normal
 * samples after an episode: the detector resolves an episode only on a
 * normal sample, so back-to-back episodes would be indistinguishable.
 *
 * An episode's length is measured in event time, not in samples, because
 * that is what the extreme detector measures: send jitter (0.9..1.1
 * intervals) or a device catching up after a stall would make a fixed
 * sample count fall short of sustain_s now and then. */
#include "sim/device.h"

#include <math.h>

#define HR_TAU_S 20.0      /* time constant of the heart rate's approach to its target */
#define HR_NOISE 1.5       /* bpm of noise per 5 s step */
#define HR_CEIL 130.0      /* normal targets never exceed this */
#define COOLDOWN 2         /* normal samples between episodes */
#define JITTER_MAX 1.1     /* the worker sends 0.9..1.1 intervals apart */
#define ROOM_SLACK_MS 1000 /* scheduling slack in vg_simdev_episode_room_ms */

static uint64_t next64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return (double)(next64(s) >> 11) * 0x1.0p-53;
}

/* Approximately standard normal: the sum of four uniforms has variance 1/3. */
static double gauss(uint64_t *s)
{
    uint64_t r = next64(s);
    double sum = 0;
    for (int i = 0; i < 4; i++)
        sum += (double)((r >> (16 * i)) & 0xffff) * (1.0 / 65536.0);
    return (sum - 2.0) * 1.7320508075688772;
}

/* How long a bout of activity a lasts, in seconds. */
static float bout_length(uint64_t *s, int a)
{
    static const float lo[] = {60, 30, 30}, span[] = {540, 270, 180};
    return lo[a] + span[a] * (float)uniform(s);
}

static int next_activity(uint64_t *s, int a)
{
    double u = uniform(s);
    switch (a) {
    case VG_SIMDEV_REST:
        return u < 0.6 ? VG_SIMDEV_WALK : u < 0.7 ? VG_SIMDEV_RUN : VG_SIMDEV_REST;
    case VG_SIMDEV_WALK:
        return u < 0.6 ? VG_SIMDEV_REST : u < 0.8 ? VG_SIMDEV_RUN : VG_SIMDEV_WALK;
    default:
        return u < 0.6 ? VG_SIMDEV_WALK : VG_SIMDEV_REST;
    }
}

static double target_hr(const vg_simdev_t *d)
{
    double t = d->rest_hr;
    if (d->activity == VG_SIMDEV_WALK)
        t += d->walk_add;
    else if (d->activity == VG_SIMDEV_RUN)
        t += d->run_add;
    return t > HR_CEIL ? HR_CEIL : t;
}

void vg_simdev_cfg_sustain(vg_simdev_cfg_t *cfg, double sustain_s)
{
    cfg->sustain_s = sustain_s;
    cfg->sustain_ms = (int64_t)ceil(sustain_s * 1000.0);
    cfg->span_ms = (int64_t)ceil((sustain_s + 2.0 * cfg->interval_s) * 1000.0);
}

int64_t vg_simdev_episode_room_ms(const vg_simdev_cfg_t *cfg)
{
    /* The due sample comes less than one (jittered) interval after
     * sustain_ms and the last one at most two after it, or less than one
     * after span_ms, whichever is later; the resolving one follows one
     * interval later. */
    return cfg->sustain_ms + (int64_t)ceil(4.0 * JITTER_MAX * cfg->interval_s * 1000.0) + ROOM_SLACK_MS;
}

void vg_simdev_cfg_init(vg_simdev_cfg_t *cfg, double interval_s, double anomaly_rate)
{
    cfg->interval_s = interval_s;
    cfg->anomaly_rate = anomaly_rate;
    cfg->end_ms = 0;
    vg_simdev_cfg_sustain(cfg, VG_SIMDEV_SUSTAIN_S);
    /* P(no start in a minute) = (1 - p)^(60 / interval) = 1 - rate. */
    if (anomaly_rate <= 0)
        cfg->p_start = 0;
    else if (anomaly_rate >= 1)
        cfg->p_start = 1;
    else
        cfg->p_start = -expm1(log1p(-anomaly_rate) * interval_s / 60.0);
}

void vg_simdev_init(vg_simdev_t *d, uint64_t seed, uint32_t index)
{
    uint64_t s = seed;
    s = next64(&s) ^ ((uint64_t)index * 0xd1b54a32d192ed03u);
    next64(&s);
    *d = (vg_simdev_t){.rng = s, .index = index, .force_at = -1, .last_hr = -1};
    d->rest_hr = 55.0f + 20.0f * (float)uniform(&d->rng);
    d->walk_add = 22.0f + 12.0f * (float)uniform(&d->rng);
    d->run_add = 45.0f + 12.0f * (float)uniform(&d->rng);
    d->cadence = 1.6f + 0.4f * (float)uniform(&d->rng);
    double u = uniform(&d->rng);
    d->activity = u < 0.7 ? VG_SIMDEV_REST : u < 0.9 ? VG_SIMDEV_WALK : VG_SIMDEV_RUN;
    d->bout_left_s = bout_length(&d->rng, d->activity) * (float)uniform(&d->rng);
    d->hr = (float)target_hr(d);
    d->battery = 25.0f + 75.0f * (float)uniform(&d->rng);
    d->skin_temp = 32.5f + 1.5f * (float)uniform(&d->rng);
    uint64_t r = next64(&d->rng);
    d->firmware = (uint8_t)(r & 3);
    d->model = (uint8_t)((r >> 8) & 3);
    d->rssi = (int8_t)(-45 - (int)((r >> 16) % 40));
}

void vg_simdev_force(vg_simdev_t *d, uint32_t at, vg_simdev_anomaly_t type)
{
    d->force_at = (int16_t)(at > 1000 ? 1000 : at);
    d->force_type = (uint8_t)type;
}

double vg_simdev_uniform(vg_simdev_t *d)
{
    return uniform(&d->rng);
}

static void start_episode(vg_simdev_t *d, int type, int64_t ts)
{
    d->anomaly = (uint8_t)type;
    d->ep_start_ms = ts;
    d->ep_samples = 0;
    d->due_seen = 0;
}

bool vg_simdev_episodes_possible(const vg_simdev_cfg_t *cfg)
{
    return cfg->interval_s * JITTER_MAX * 1000.0 <= (double)cfg->sustain_ms;
}

/* Can an episode starting at ts be detected and finish before the device
 * stops? */
static bool episode_fits(const vg_simdev_cfg_t *cfg, int64_t ts)
{
    return vg_simdev_episodes_possible(cfg) && (!cfg->end_ms || ts + vg_simdev_episode_room_ms(cfg) <= cfg->end_ms);
}

/* Keeps a normal heart rate from repeating VG_SIMDEV_MAX_SAME + 1 times in
 * a row (a flat line is a sensor fault to the server): the repeat is
 * nudged one bpm towards the underlying rate. */
static int unflatten(vg_simdev_t *d, int v, double hr)
{
    if (v == d->last_hr && d->same >= VG_SIMDEV_MAX_SAME) {
        int step = hr >= v ? 1 : -1;
        if (v + step < VG_SIMDEV_HR_MIN || v + step > VG_SIMDEV_HR_MAX)
            step = -step;
        v += step;
    }
    if (v == d->last_hr) {
        d->same++;
    } else {
        d->last_hr = (int16_t)v;
        d->same = 1;
    }
    return v;
}

void vg_simdev_next(vg_simdev_t *d, const vg_simdev_cfg_t *cfg, int64_t now_ms, vg_simdev_sample_t *out)
{
    int64_t ts = now_ms;
    if (d->last_ts_ms && ts <= d->last_ts_ms)
        ts = d->last_ts_ms + 1;
    double dt = d->last_ts_ms ? (double)(ts - d->last_ts_ms) / 1000.0 : cfg->interval_s;
    if (dt > 60.0)
        dt = 60.0;
    d->last_ts_ms = ts;

    /* Activity bouts and the heart rate following them. A device sending
     * too fast to report a step plausibly stays at rest (see
     * VG_SIMDEV_MOVE_MIN_INTERVAL_S), from its first sample on. */
    d->bout_left_s -= (float)dt;
    if (cfg->interval_s < VG_SIMDEV_MOVE_MIN_INTERVAL_S) {
        if (d->activity != VG_SIMDEV_REST) {
            d->activity = VG_SIMDEV_REST;
            d->steps_acc = 0;
            d->hr = (float)target_hr(d);
        }
    } else if (d->bout_left_s <= 0) {
        d->activity = (uint8_t)next_activity(&d->rng, d->activity);
        d->bout_left_s = bout_length(&d->rng, d->activity);
        if (d->activity == VG_SIMDEV_REST)
            d->steps_acc = 0;
    }
    double alpha = dt / (dt + HR_TAU_S);
    double sigma = HR_NOISE * sqrt((dt < 5.0 ? dt : 5.0) / 5.0);
    double hr = d->hr + alpha * (target_hr(d) - d->hr) + sigma * gauss(&d->rng);
    if (hr < VG_SIMDEV_HR_MIN + 3)
        hr = VG_SIMDEV_HR_MIN + 3;
    if (hr > VG_SIMDEV_HR_MAX - 3)
        hr = VG_SIMDEV_HR_MAX - 3;
    d->hr = (float)hr;

    double rate = d->activity == VG_SIMDEV_WALK ? d->cadence : d->activity == VG_SIMDEV_RUN ? 1.5 * d->cadence : 0;
    d->steps_acc += (float)(rate * dt);
    int steps = (int)d->steps_acc;
    d->steps_acc -= (float)steps;

    out->ts_ms = ts;
    out->seq = d->seq++;
    out->activity = d->activity;
    out->steps = steps;
    out->heart_rate = (int)lrint(hr);
    if (out->heart_rate < VG_SIMDEV_HR_MIN)
        out->heart_rate = VG_SIMDEV_HR_MIN;
    if (out->heart_rate > VG_SIMDEV_HR_MAX)
        out->heart_rate = VG_SIMDEV_HR_MAX;
    out->anomaly = VG_SIMDEV_NORMAL;
    out->episode_start = out->episode_due = out->episode_end = false;

    /* Episodes. The first sample of a device is always normal so that a
     * detector has seen the device before it misbehaves. The dice are
     * rolled whether or not the episode fits, so that the run's end does
     * not shift a device's random stream. */
    if (!d->anomaly) {
        if (d->cooldown) {
            d->cooldown--;
        } else if (d->force_at >= 0 && d->samples >= (uint32_t)d->force_at) {
            d->force_at = -1;
            if (episode_fits(cfg, ts)) {
                start_episode(d, d->force_type, ts);
                out->episode_start = true;
            }
        } else if (d->samples >= 1 && cfg->p_start > 0 && uniform(&d->rng) < cfg->p_start) {
            int type = (next64(&d->rng) & 1) ? VG_SIMDEV_HIGH : VG_SIMDEV_LOW;
            if (episode_fits(cfg, ts)) {
                start_episode(d, type, ts);
                out->episode_start = true;
            }
        }
    }
    if (d->anomaly) {
        uint64_t r = next64(&d->rng);
        out->anomaly = d->anomaly;
        if (d->anomaly == VG_SIMDEV_HIGH)
            out->heart_rate = VG_SIMDEV_HIGH_MIN + (int)(r % (VG_SIMDEV_HIGH_MAX - VG_SIMDEV_HIGH_MIN + 1));
        else
            out->heart_rate = VG_SIMDEV_LOW_MIN + (int)(r % (VG_SIMDEV_LOW_MAX - VG_SIMDEV_LOW_MIN + 1));
        int64_t span = ts - d->ep_start_ms;
        d->ep_samples++;
        if (d->due_seen) {
            if (d->due_seen < 255)
                d->due_seen++;
        } else if (span >= cfg->sustain_ms) {
            d->due_seen = 1;
            out->episode_due = true;
        }
        /* Jitter could put the due sample late and the next one early
         * enough to reach span_ms: two samples after the due one are
         * required as well. */
        if (d->ep_samples >= VG_SIMDEV_EPISODE_MIN && span >= cfg->span_ms && d->due_seen >= 3) {
            out->episode_end = true;
            d->anomaly = VG_SIMDEV_NORMAL;
            d->cooldown = COOLDOWN;
        }
        d->last_hr = -1; /* the next normal value starts a new run */
        d->same = 0;
    } else {
        out->heart_rate = unflatten(d, out->heart_rate, hr);
    }

    /* Cosmetic sensor values: cheap, plausible, drawn from one or two
     * random words. */
    d->battery -= (float)(dt * (0.8 / 3600.0)); /* 0.8% an hour */
    if (d->battery < 5.0f)
        d->battery = 100.0f;
    d->skin_temp += (float)(0.02 * sqrt(dt) * gauss(&d->rng));
    if (d->skin_temp < 31.0f)
        d->skin_temp = 31.0f;
    if (d->skin_temp > 35.5f)
        d->skin_temp = 35.5f;
    uint64_t r = next64(&d->rng);
    out->battery = (int)d->battery;
    out->spo2 = 95 + (int)(r & 3) + (out->anomaly == VG_SIMDEV_LOW ? -3 : 1);
    out->hrv_ms = 25 + (int)((r >> 2) & 31) + (d->activity == VG_SIMDEV_REST ? 20 : 0);
    out->resp_rate = 12 + out->heart_rate / 25 + (int)((r >> 7) & 3);
    out->rssi = d->rssi + (int)((r >> 9) % 7) - 3;
    out->skin_temp_dc = (int)lrintf(d->skin_temp * 10.0f);
    static const int amp_mg[] = {15, 250, 700};
    int amp = amp_mg[d->activity];
    uint64_t a = next64(&d->rng);
    for (int i = 0; i < 9; i++) {
        int n = (int)((a >> (7 * i)) & 127) - 64; /* -64..63 */
        out->accel_mg[i] = n * amp / 64 + (i % 3 == 2 ? -980 : 0);
    }
    d->samples++;
}
