/* devtable.h — per-device detector state, keyed by device id.
 *
 * An open-addressing hash table (linear probing, power-of-two capacity,
 * grows at 70% load) owned by one processor thread: not thread-safe. Entries
 * hold the device id inline (up to VG_EVENT_MAX_DEVICE_ID bytes, stored in
 * a separate allocation per entry only when longer than 31 bytes) and a
 * vg_threshold_state_t.
 * It can be serialised into a checkpoint and restored from one. */
#ifndef VG_DETECT_DEVTABLE_H
#define VG_DETECT_DEVTABLE_H

#include "detect/threshold.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vg_devtable vg_devtable_t;

int vg_devtable_new(vg_devtable_t **out);
void vg_devtable_free(vg_devtable_t *t);

/* Returns the state for id (creating a zeroed one if absent), or NULL on
 * allocation failure. The pointer is valid until the next get of a new id. */
vg_threshold_state_t *vg_devtable_get(vg_devtable_t *t, const char *id, size_t len);
size_t vg_devtable_count(const vg_devtable_t *t);

/* Serialisation (little-endian):
 *   u32 count, then per device: u16 id_len, id bytes, u8 episode, u32 samples,
 *   i64 last_ts_ms.
 * vg_devtable_serialize returns a buffer the caller frees with vg_free. */
int vg_devtable_serialize(const vg_devtable_t *t, uint8_t **out, size_t *out_len);
/* Replaces the table's contents with buf's. VG_EMALFORMED on bad input. */
int vg_devtable_restore(vg_devtable_t *t, const uint8_t *buf, size_t len);

#endif
