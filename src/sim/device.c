/* device.c — see device.h.
 *
 * The heart rate follows its activity's target with a 20-second time
 * constant plus a little noise scaled by the time step, so the walk looks
 * the same whether a device reports every 5 s or every 0.5 ms. Episodes are
 * drawn per sample with the probability that makes --anomaly-rate a
 * per-minute figure, and a device always returns to at least two normal
 * samples after an episode: a threshold detector closes its episode only on
 * a normal sample, so back-to-back episodes would be indistinguishable. */
#include "sim/device.h"

#include <math.h>

#define HR_TAU_S 20.0 /* time constant of the heart rate's approach to its target */
#define HR_NOISE 1.5  /* bpm of noise per 5 s step */
#define HR_CEIL 130.0 /* normal targets never exceed this */
#define COOLDOWN 2    /* normal samples between episodes */

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

void vg_simdev_cfg_init(vg_simdev_cfg_t *cfg, double interval_s, double anomaly_rate)
{
    cfg->interval_s = interval_s;
    cfg->anomaly_rate = anomaly_rate;
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
    *d = (vg_simdev_t){.rng = s, .index = index, .force_at = -1};
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

static void start_episode(vg_simdev_t *d, int type)
{
    d->anomaly = (uint8_t)type;
    d->anomaly_left =
        (uint8_t)(VG_SIMDEV_EPISODE_MIN + next64(&d->rng) % (VG_SIMDEV_EPISODE_MAX - VG_SIMDEV_EPISODE_MIN + 1));
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

    /* Activity bouts and the heart rate following them. */
    d->bout_left_s -= (float)dt;
    if (d->bout_left_s <= 0) {
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
    out->episode_start = false;

    /* Episodes. The first sample of a device is always normal so that a
     * detector has seen the device before it misbehaves. */
    if (!d->anomaly) {
        if (d->cooldown) {
            d->cooldown--;
        } else if (d->force_at >= 0 && d->samples >= (uint32_t)d->force_at) {
            d->force_at = -1;
            start_episode(d, d->force_type);
            out->episode_start = true;
        } else if (d->samples >= 1 && cfg->p_start > 0 && uniform(&d->rng) < cfg->p_start) {
            start_episode(d, (next64(&d->rng) & 1) ? VG_SIMDEV_HIGH : VG_SIMDEV_LOW);
            out->episode_start = true;
        }
    }
    if (d->anomaly) {
        uint64_t r = next64(&d->rng);
        out->anomaly = d->anomaly;
        if (d->anomaly == VG_SIMDEV_HIGH)
            out->heart_rate = VG_SIMDEV_HIGH_MIN + (int)(r % (VG_SIMDEV_HIGH_MAX - VG_SIMDEV_HIGH_MIN + 1));
        else
            out->heart_rate = VG_SIMDEV_LOW_MIN + (int)(r % (VG_SIMDEV_LOW_MAX - VG_SIMDEV_LOW_MIN + 1));
        if (--d->anomaly_left == 0) {
            d->anomaly = VG_SIMDEV_NORMAL;
            d->cooldown = COOLDOWN;
        }
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
