/* device.h — one simulated wearable: what it measures and when it misbehaves.
 *
 * Owns: the per-device random stream, the heart-rate random walk with
 * activity bouts (rest / walking / running) and matching step counts, the
 * cosmetic sensor values that pad an event to a realistic size, labelled
 * anomaly episodes (extreme HIGH or LOW heart rate, sustained long enough in
 * event time for the server's extreme detector to fire) and the per-device
 * event timestamps. Does not own: sockets, scheduling, JSON rendering
 * (payload.h) or episode bookkeeping across the fleet (the worker).
 *
 * The normal model is built to stay clear of every cardiac detector of
 * src/detect/detect.h at its defaults, so that any cardiac alert away from
 * an injected episode is a false one:
 *   extreme (> 180 / < 35 bpm for 30 s)   normal samples stay in 45..135;
 *   sustained at rest (> 120 / < 40 bpm for 80% of 10 min while inactive)
 *                                          the resting target is 55..75;
 *   sudden change (>= 30 bpm within a minute, no activity change)
 *                                          large moves only follow a change of
 *                                          activity bout, and the step rate
 *                                          changes in the same sample;
 *   flatline (identical HR for 10 min over >= 20 samples)
 *                                          no value repeats more than
 *                                          VG_SIMDEV_MAX_SAME times in a row;
 *   impossible values (> 400 steps/min)    a sample carries at most ~3.3 steps
 *                                          a second, and devices sending faster
 *                                          than every 0.25 s stay at rest.
 * An injected episode does trip other detectors too (the jump into it is a
 * sudden change); the ledger counts those as secondary, not false.
 *
 * Everything is a pure function of (seed, device index, sequence of calls):
 * a device draws from its own splitmix64 stream, so a run is reproducible no
 * matter how devices are spread over worker processes. The state is ~110
 * bytes, and vg_simdev_next neither allocates nor makes system calls, so it
 * can run 150,000 times a second on one core. */
#ifndef VG_SIM_DEVICE_H
#define VG_SIM_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

/* Normal behaviour stays within these bounds (the extreme detector's
 * thresholds are > 180 and < 35, the old threshold detector's > 140 and
 * < 40; the gaps are deliberate). */
#define VG_SIMDEV_HR_MIN 45
#define VG_SIMDEV_HR_MAX 135
/* Anomaly episodes: every sample of an episode lies in one of these ranges,
 * beyond the extreme detector's thresholds (180 / 35) and far enough from
 * its clearing points (175 / 40) that it never resolves mid-episode. */
#define VG_SIMDEV_HIGH_MIN 185
#define VG_SIMDEV_HIGH_MAX 200
#define VG_SIMDEV_LOW_MIN 28
#define VG_SIMDEV_LOW_MAX 33
/* An episode lasts until its event-time span (first to last sample) is at
 * least sustain_s + 2 intervals, it has at least VG_SIMDEV_EPISODE_MIN
 * samples, and two samples have followed the episode_due one (the first
 * sample at least sustain_s after the start, the one the detector fires
 * on): about ceil(sustain_s / interval) + 3 samples (33 at 1 s, 9 at 5 s,
 * 4 at 60 s). So a detector whose limit is exclusive, or that is a sample
 * late, still fires inside the episode, whatever the send jitter. */
#define VG_SIMDEV_EPISODE_MIN 4  /* samples */
#define VG_SIMDEV_SUSTAIN_S 30.0 /* the server's extreme_sustain_s default */
#define VG_SIMDEV_MAX_SAME 12    /* normal samples in a row with one heart rate, at most */
/* Below this interval devices never walk or run: one step in a sample less
 * than 0.15 s long is more than the 400 steps/min the server's quality
 * detector believes (SENSOR_IMPOSSIBLE_VALUE), and hiding the steps instead
 * would make the heart rate's rise with exercise look unexplained
 * (SUDDEN_HR_CHANGE). Load tests at such rates get a resting fleet. */
#define VG_SIMDEV_MOVE_MIN_INTERVAL_S 0.25

typedef enum { VG_SIMDEV_REST = 0, VG_SIMDEV_WALK = 1, VG_SIMDEV_RUN = 2 } vg_simdev_activity_t;
typedef enum { VG_SIMDEV_NORMAL = 0, VG_SIMDEV_HIGH = 1, VG_SIMDEV_LOW = 2 } vg_simdev_anomaly_t;

typedef struct {
    double interval_s;   /* nominal seconds between events */
    double anomaly_rate; /* probability per device per minute of starting an episode */
    double p_start;      /* derived: probability per sample (vg_simdev_cfg_init) */
    double sustain_s;    /* how long the detector needs an extreme value; VG_SIMDEV_SUSTAIN_S */
    int64_t sustain_ms;  /* derived: sustain_s in ms, rounded up */
    int64_t span_ms;     /* derived: an episode's event-time span, sustain_s + 2 intervals */
    int64_t end_ms;      /* event time at which the device stops sending, 0: never. An
                          * episode (random or forced) starts only if it can end, and be
                          * followed by the normal sample that resolves it, before then */
} vg_simdev_cfg_t;

/* Fills cfg for events every interval_s seconds and anomaly_rate episodes
 * per device per minute (a probability, 0..1), with sustain_s =
 * VG_SIMDEV_SUSTAIN_S and no end; change those with vg_simdev_cfg_sustain
 * and by setting end_ms. */
void vg_simdev_cfg_init(vg_simdev_cfg_t *cfg, double interval_s, double anomaly_rate);

/* Sets the sustain time episodes are built for (the server's
 * extreme_sustain_s, seconds > 0) and recomputes sustain_ms and span_ms. */
void vg_simdev_cfg_sustain(vg_simdev_cfg_t *cfg, double sustain_s);

/* The event time a run needs after an episode's first sample for the whole
 * episode and one normal sample after it (the one that resolves it), with
 * room for send jitter: what end_ms is compared with. */
int64_t vg_simdev_episode_room_ms(const vg_simdev_cfg_t *cfg);

/* Can the extreme detector see an episode at this interval at all? It
 * treats a silence longer than extreme_sustain_s inside a run as missing
 * data and restarts the run, so when the (jittered) interval exceeds
 * sustain_s no episode could ever be detected: devices then inject none. */
bool vg_simdev_episodes_possible(const vg_simdev_cfg_t *cfg);

typedef struct {
    uint64_t rng;
    int64_t last_ts_ms; /* timestamp of the previous event; 0 before the first */
    uint32_t index;     /* device index in the fleet */
    uint32_t seq;       /* sequence number of the next event */
    float hr;           /* the underlying (normal) heart rate */
    float rest_hr;      /* personal resting rate, 55..75 */
    float walk_add;     /* personal increase when walking / running */
    float run_add;
    float cadence;       /* steps per second when walking; running is 1.5x */
    float steps_acc;     /* fractional steps carried to the next event */
    float bout_left_s;   /* seconds left in the current activity bout */
    float battery;       /* percent */
    float skin_temp;     /* °C */
    int64_t ep_start_ms; /* event time of the open episode's first sample */
    uint32_t ep_samples; /* samples of the open episode so far */
    int16_t force_at;    /* sample number at which a forced episode starts, -1: none */
    int16_t last_hr;     /* heart rate of the previous normal sample, -1: none */
    uint8_t same;        /* normal samples in a row with heart rate last_hr */
    uint8_t activity;    /* vg_simdev_activity_t */
    uint8_t anomaly;     /* vg_simdev_anomaly_t of the open episode */
    uint8_t due_seen;    /* 0: the open episode's episode_due sample is still to come; else
                          * 1 + the samples since it (saturating) */
    uint8_t cooldown;    /* normal samples still required before a new episode */
    uint8_t force_type;  /* anomaly type of the forced episode */
    uint8_t firmware;    /* index into the firmware table (payload.c) */
    uint8_t model;       /* index into the model table (payload.c) */
    int8_t rssi;         /* personal base signal strength, dBm */
    uint32_t samples;    /* events generated so far */
} vg_simdev_t;

/* One generated event. */
typedef struct {
    int64_t ts_ms; /* strictly greater than the device's previous one */
    uint32_t seq;
    int heart_rate;
    int steps;
    uint8_t activity;   /* vg_simdev_activity_t */
    uint8_t anomaly;    /* vg_simdev_anomaly_t; NORMAL for normal samples */
    bool episode_start; /* first sample of an episode */
    bool episode_due;   /* first sample at least sustain_s after the episode's start: the
                         * one the extreme detector alerts on (eventTimeMs) */
    bool episode_end;   /* last sample of an episode */
    int battery;        /* percent */
    int spo2;           /* percent */
    int hrv_ms;
    int resp_rate;    /* breaths per minute */
    int rssi;         /* dBm */
    int skin_temp_dc; /* deci-°C */
    int accel_mg[9];  /* three x,y,z readings in milli-g */
} vg_simdev_sample_t;

/* Sets up device `index` of a fleet seeded with `seed`. Never fails. */
void vg_simdev_init(vg_simdev_t *d, uint64_t seed, uint32_t index);

/* Makes the device start an episode of `type` at its `at`-th sample
 * (0-based) regardless of the dice, so that short runs always exercise
 * detection. Like a random one, the forced episode starts only when it can
 * finish before cfg->end_ms (later, if the device is cooling down from
 * another; never, if it cannot finish). */
void vg_simdev_force(vg_simdev_t *d, uint32_t at, vg_simdev_anomaly_t type);

/* Generates the next event at wall-clock time now_ms (the timestamp is
 * max(now_ms, previous + 1) so it is unique per device). */
void vg_simdev_next(vg_simdev_t *d, const vg_simdev_cfg_t *cfg, int64_t now_ms, vg_simdev_sample_t *out);

/* A uniform double in [0, 1) from the device's stream (for send jitter). */
double vg_simdev_uniform(vg_simdev_t *d);

#endif
