/* devtable.h — per-device state (proc/devstate.h), keyed by device id.
 *
 * An open-addressing hash table (linear probing, power-of-two capacity,
 * grows at 70% load) owned by one processor thread: not thread-safe. Each
 * device has a stable index (0, 1, 2... in order of first appearance) that
 * the processor's timer wheel uses. It can be serialised into a checkpoint
 * and restored from one (format in devtable.c). */
#ifndef VG_PROC_DEVTABLE_H
#define VG_PROC_DEVTABLE_H

#include "proc/devstate.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vg_devtable vg_devtable_t;

int vg_devtable_new(vg_devtable_t **out);
void vg_devtable_free(vg_devtable_t *t);

/* Returns the state for id (creating a zeroed one if absent) and its index
 * in *index (may be NULL), or NULL on allocation failure or an id longer
 * than VG_EVENT_MAX_DEVICE_ID. The pointer is valid until the next get of
 * a new id; the index for the table's life. */
vg_devstate_t *vg_devtable_get(vg_devtable_t *t, const char *id, size_t len, uint32_t *index);
/* The state for id if present (without creating it), else NULL. */
vg_devstate_t *vg_devtable_find(vg_devtable_t *t, const char *id, size_t len, uint32_t *index);
/* The state at index (and its id, not NUL-terminated), or NULL past the end. */
vg_devstate_t *vg_devtable_at(vg_devtable_t *t, uint32_t index, const char **id, size_t *len);
size_t vg_devtable_count(const vg_devtable_t *t);

/* vg_devtable_serialize returns a buffer the caller frees with vg_free. */
int vg_devtable_serialize(const vg_devtable_t *t, uint8_t **out, size_t *out_len);
/* Replaces the table's contents with buf's. VG_EMALFORMED on bad input,
 * VG_EPROTO if buf was written with another state layout (the table is then
 * unchanged). */
int vg_devtable_restore(vg_devtable_t *t, const uint8_t *buf, size_t len);

#endif
