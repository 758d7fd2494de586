/* payload.h — the simulator's PUBLISH packet: a pre-rendered template whose
 * numbers are overwritten in place for every event.
 *
 * Owns: the event JSON layout (~500 bytes, the four fields vigil reads plus
 * realistic padding), the whole MQTT PUBLISH around it and the device id
 * format. Does not own: the values (device.h) or sending.
 *
 * Why a template: at 150,000 events/s a snprintf per field would cost more
 * CPU than the server has to spare on a shared 2-core machine. Every
 * variable field has a fixed width and is right-aligned with leading spaces
 * (whitespace before a JSON value is legal), so every event of a run has the
 * same length and rendering is one memcpy plus a few digit loops. */
#ifndef VG_SIM_PAYLOAD_H
#define VG_SIM_PAYLOAD_H

#include "sim/device.h"

#include <stddef.h>
#include <stdint.h>

#define VG_SIMPAYLOAD_MAX 1024 /* largest whole packet (topic and prefix are bounded) */
#define VG_SIMPAYLOAD_MAX_PREFIX 64
#define VG_SIMPAYLOAD_MAX_TOPIC 256

typedef struct {
    uint8_t pkt[VG_SIMPAYLOAD_MAX];
    uint16_t pkt_len;
    uint16_t json_off; /* the payload's offset in pkt */
    uint16_t json_len;
    uint16_t pid_off; /* packet id offset; 0 for QoS 0 */
    uint8_t id_width; /* digits of the device number */
    uint16_t off_id, off_seq, off_ts, off_hr, off_steps, off_activity, off_battery, off_spo2, off_hrv, off_resp,
        off_temp, off_fw, off_model, off_rssi, off_accel[9];
} vg_simpayload_t;

/* Caches the formatted date and time of the last second seen, so that most
 * events only format their milliseconds. Zero-initialise. */
typedef struct {
    int64_t sec;
    int valid;
    char text[25]; /* ISO text with its NUL */
} vg_simpayload_clock_t;

/* Number of digits device numbers are zero-padded to for a fleet of n
 * devices (at least 6: "sim-000001"). */
unsigned vg_simpayload_id_width(uint32_t n);

/* Is prefix usable in a client id, a topic level and JSON without escaping
 * ambiguity? Printable ASCII without space, '"', '\\', '/', '+', '#', at
 * most VG_SIMPAYLOAD_MAX_PREFIX bytes. */
int vg_simpayload_prefix_valid(const char *prefix);

/* Writes "<prefix><index zero-padded to width>" into out[0..cap) with a
 * NUL. Returns its length or VG_ENOSPC. */
int vg_simpayload_device_id(const char *prefix, unsigned width, uint32_t index, char *out, size_t cap);

/* Builds the template for events on `topic` with QoS qos (0 or 1).
 * Returns VG_OK, VG_EINVAL for an invalid topic/prefix/QoS, or VG_ENOSPC if
 * it would exceed VG_SIMPAYLOAD_MAX. */
int vg_simpayload_init(vg_simpayload_t *t, const char *topic, const char *prefix, unsigned id_width, int qos);

/* Writes the whole PUBLISH packet for sample s of device d into out (which
 * must have room for t->pkt_len bytes) with packet id pid (ignored for QoS
 * 0). Returns t->pkt_len. */
size_t vg_simpayload_render(const vg_simpayload_t *t, vg_simpayload_clock_t *clk, uint8_t *out, uint16_t pid,
                            const vg_simdev_t *d, const vg_simdev_sample_t *s);

#endif
