/* device.h — one simulated wearable: what it measures and when it misbehaves.
 *
 * Owns: the per-device random stream, the heart-rate random walk with
 * activity bouts (rest / walking / running) and matching step counts, the
 * cosmetic sensor values that pad an event to a realistic size, labelled
 * anomaly episodes (sustained HIGH or LOW heart rate) and the per-device
 * event timestamps. Does not own: sockets, scheduling, JSON rendering
 * (payload.h) or episode bookkeeping across the fleet (the worker).
 *
 * Everything is a pure function of (seed, device index, sequence of calls):
 * a device draws from its own splitmix64 stream, so a run is reproducible no
 * matter how devices are spread over worker processes. The state is ~90
 * bytes, and vg_simdev_next neither allocates nor makes system calls, so it
 * can run 150,000 times a second on one core. */
#ifndef VG_SIM_DEVICE_H
#define VG_SIM_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

/* Normal behaviour stays within these bounds (the detector's thresholds
 * are > 140 and < 40; the gap is deliberate). */
#define VG_SIMDEV_HR_MIN 45
#define VG_SIMDEV_HR_MAX 135
/* Anomaly episodes: every sample of an episode lies in one of these ranges. */
#define VG_SIMDEV_HIGH_MIN 150
#define VG_SIMDEV_HIGH_MAX 185
#define VG_SIMDEV_LOW_MIN 28
#define VG_SIMDEV_LOW_MAX 37
#define VG_SIMDEV_EPISODE_MIN 3 /* samples */
#define VG_SIMDEV_EPISODE_MAX 6

typedef enum { VG_SIMDEV_REST = 0, VG_SIMDEV_WALK = 1, VG_SIMDEV_RUN = 2 } vg_simdev_activity_t;
typedef enum { VG_SIMDEV_NORMAL = 0, VG_SIMDEV_HIGH = 1, VG_SIMDEV_LOW = 2 } vg_simdev_anomaly_t;

typedef struct {
    double interval_s;   /* nominal seconds between events */
    double anomaly_rate; /* probability per device per minute of starting an episode */
    double p_start;      /* derived: probability per sample (vg_simdev_cfg_init) */
} vg_simdev_cfg_t;

/* Fills cfg for events every interval_s seconds and anomaly_rate episodes
 * per device per minute (a probability, 0..1). */
void vg_simdev_cfg_init(vg_simdev_cfg_t *cfg, double interval_s, double anomaly_rate);

typedef struct {
    uint64_t rng;
    int64_t last_ts_ms; /* timestamp of the previous event; 0 before the first */
    uint32_t index;     /* device index in the fleet */
    uint32_t seq;       /* sequence number of the next event */
    float hr;           /* the underlying (normal) heart rate */
    float rest_hr;      /* personal resting rate, 55..75 */
    float walk_add;     /* personal increase when walking / running */
    float run_add;
    float cadence;     /* steps per second when walking; running is 1.5x */
    float steps_acc;   /* fractional steps carried to the next event */
    float bout_left_s; /* seconds left in the current activity bout */
    float battery;     /* percent */
    float skin_temp;   /* °C */
    int16_t force_at;  /* sample number at which a forced episode starts, -1: none */
    uint8_t activity;  /* vg_simdev_activity_t */
    uint8_t anomaly;   /* vg_simdev_anomaly_t of the open episode */
    uint8_t anomaly_left;
    uint8_t cooldown;   /* normal samples still required before a new episode */
    uint8_t force_type; /* anomaly type of the forced episode */
    uint8_t firmware;   /* index into the firmware table (payload.c) */
    uint8_t model;      /* index into the model table (payload.c) */
    int8_t rssi;        /* personal base signal strength, dBm */
    uint32_t samples;   /* events generated so far */
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
 * detection. */
void vg_simdev_force(vg_simdev_t *d, uint32_t at, vg_simdev_anomaly_t type);

/* Generates the next event at wall-clock time now_ms (the timestamp is
 * max(now_ms, previous + 1) so it is unique per device). */
void vg_simdev_next(vg_simdev_t *d, const vg_simdev_cfg_t *cfg, int64_t now_ms, vg_simdev_sample_t *out);

/* A uniform double in [0, 1) from the device's stream (for send jitter). */
double vg_simdev_uniform(vg_simdev_t *d);

#endif
