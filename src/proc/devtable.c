/* devtable.c — per-device state keyed by device id (devtable.h).
 *
 * Owns: the table, its entries and the copies of long device ids, all
 * charged to VG_MEM_DETECT, and the checkpoint encoding of the table. Does
 * not own: the detectors (devstate.c) or the checkpoint file itself
 * (processor.c frames, checksums and fsyncs our bytes).
 *
 * Layout. The open-addressing table (core/set.h's linear probing, power-
 * of-two capacity, at most 70% full) holds 4-byte slots, each 0 for empty
 * or 1 + the index of an entry in a dense array kept in insertion order.
 * An entry is the
 * vg_devstate_t, then the id inline when it fits in 31 bytes (else a
 * pointer to a separate copy), then the id's length. Keeping the entries
 * out of the sparse table means empty slots cost 4 bytes, not an entry.
 * Entries are never removed (devices come back), so the dense array has no
 * holes, an entry's index is stable for the table's life (the processor's
 * timer wheel addresses devices by it) and serialisation walks it in
 * insertion order, which makes checkpoints deterministic.
 *
 * Checkpoint encoding (all integers little-endian):
 *
 *   offset  size     field
 *   0       4        u32 count: number of device records that follow
 *   4       4        u32 layout: VG_DEVSTATE_LAYOUT of the writer
 *   8       4        u32 state_size: sizeof(vg_devstate_t) of the writer
 *   then, count times:
 *   +0      2        u16 id_len (0..VG_EVENT_MAX_DEVICE_ID)
 *   +2      id_len   id bytes, not NUL-terminated
 *   +2+n    state_size  the vg_devstate_t bytes as they are in memory
 *
 * The state is copied verbatim (host byte order: vigil runs on little-endian
 * x86-64 and arm64); layout + size guard against reading another build's
 * state. Nothing follows the last record; restore rejects trailing bytes,
 * duplicate ids and ids over the limit. */
#include "proc/devtable.h"

#include "core/alloc.h"
#include "core/hash.h"
#include "core/set.h"
#include "core/err.h"
#include "core/event.h"

#include <stdbool.h>
#include <string.h>

#define INLINE_ID_MAX 31
#define HEADER 12
#define MIN_SLOT_BITS 4
#define MIN_ENTRIES 16
/* Slot values are 1 + an entry index in 32 bits. */
#define MAX_DEVICES (UINT32_MAX - 1u)

typedef struct {
    vg_devstate_t st;       /* first, so it is 8-byte aligned for callers */
    char id[INLINE_ID_MAX]; /* the id if len <= INLINE_ID_MAX, else a char * to a vg_malloc'd copy */
    uint8_t len;            /* VG_EVENT_MAX_DEVICE_ID fits in a byte */
} entry_t;

_Static_assert(sizeof(entry_t) <= 512 + 32, "entry_t grew: check the per-device budget in devtable.h");
_Static_assert(VG_EVENT_MAX_DEVICE_ID <= UINT8_MAX, "entry_t.len is a byte");
_Static_assert(sizeof(char *) <= INLINE_ID_MAX, "a long id's pointer lives in entry_t.id");

struct vg_devtable {
    entry_t *entries; /* dense, insertion order, room for `room` */
    uint32_t *slots;  /* 1 << bits slots, 0 = empty, else 1 + entry index */
    size_t count;
    size_t room;
    unsigned bits;
};

static uint32_t id_hash(const char *s, size_t n)
{
    return vg_hash_bytes(s, n);
}

static const char *entry_id(const entry_t *e)
{
    if (e->len <= INLINE_ID_MAX)
        return e->id;
    const char *p;
    memcpy(&p, e->id, sizeof(p));
    return p;
}

static void entry_release(entry_t *e)
{
    if (e->len > INLINE_ID_MAX)
        vg_free((void *)entry_id(e));
}

/* The probing is core/set.h's; a slot names an entry, so the comparison
 * needs the table, which travels in the key. No deletion: entries stay. */
typedef struct {
    const entry_t *entries;
    const char *id;
    size_t len;
} probe_key_t;

#define SLOT_EMPTY(v) ((v) == 0)
#define SLOT_MATCH(v, k)                                                                                               \
    ((k).entries[(v)-1].len == (k).len && ((k).len == 0 || memcmp(entry_id(&(k).entries[(v)-1]), (k).id, (k).len) == 0))
VG_SET_DEFINE_FIND(slots, uint32_t, probe_key_t, SLOT_EMPTY, SLOT_MATCH)

/* Slot holding id, or the empty slot where it would go. */
static size_t probe(const vg_devtable_t *t, const char *id, size_t len, uint32_t hv)
{
    return slots_find(t->slots, ((size_t)1 << t->bits) - 1, hv, (probe_key_t){t->entries, id, len});
}

/* Makes room for `want` devices in total: the entry array and, within the
 * 70% load limit, the slot table. On failure the table is unchanged apart
 * from possibly larger capacity. */
static int reserve(vg_devtable_t *t, size_t want)
{
    if (want > MAX_DEVICES)
        return VG_ENOMEM;
    if (want > t->room) {
        /* 1.25x rather than 2x: the entry array is most of the memory, and
         * large reallocs are cheap (glibc moves big blocks with mremap). */
        size_t room = t->room < MIN_ENTRIES ? MIN_ENTRIES : t->room + t->room / 4;
        if (room < want)
            room = want;
        entry_t *e = vg_realloc(VG_MEM_DETECT, t->entries, room * sizeof(*e));
        if (!e)
            return VG_ENOMEM;
        t->entries = e;
        t->room = room;
    }
    unsigned bits = t->slots ? t->bits : MIN_SLOT_BITS;
    while (want * 10 > ((size_t)7 << bits))
        bits++;
    if (t->slots && bits == t->bits)
        return VG_OK;
    uint32_t *slots = vg_calloc(VG_MEM_DETECT, (size_t)1 << bits, sizeof(*slots));
    if (!slots)
        return VG_ENOMEM;
    vg_free(t->slots);
    t->slots = slots;
    t->bits = bits;
    for (size_t i = 0; i < t->count; i++) {
        const entry_t *e = &t->entries[i];
        t->slots[probe(t, entry_id(e), e->len, id_hash(entry_id(e), e->len))] = (uint32_t)(i + 1);
    }
    return VG_OK;
}

/* The state for id, creating it if absent; *created says which. NULL on
 * allocation failure or an id longer than VG_EVENT_MAX_DEVICE_ID. */
static vg_devstate_t *lookup(vg_devtable_t *t, const char *id, size_t len, bool *created, uint32_t *index)
{
    *created = false;
    if (len > VG_EVENT_MAX_DEVICE_ID)
        return NULL;
    uint32_t hv = id_hash(id, len);
    if (t->slots) {
        uint32_t v = t->slots[probe(t, id, len, hv)];
        if (v) {
            *index = v - 1;
            return &t->entries[v - 1].st;
        }
    }

    char *copy = NULL;
    if (len > INLINE_ID_MAX) {
        copy = vg_malloc(VG_MEM_DETECT, len);
        if (!copy)
            return NULL;
        memcpy(copy, id, len);
    }
    if (reserve(t, t->count + 1) != VG_OK) {
        vg_free(copy);
        return NULL;
    }
    entry_t *e = &t->entries[t->count];
    memset(e, 0, sizeof(*e));
    e->len = (uint8_t)len;
    if (copy)
        memcpy(e->id, &copy, sizeof(copy));
    else if (len)
        memcpy(e->id, id, len);
    t->slots[probe(t, id, len, hv)] = (uint32_t)(t->count + 1);
    *index = (uint32_t)t->count;
    t->count++;
    *created = true;
    return &e->st;
}

/* Frees everything t holds, leaving it empty. */
static void release_all(vg_devtable_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        entry_release(&t->entries[i]);
    vg_free(t->entries);
    vg_free(t->slots);
    memset(t, 0, sizeof(*t));
}

int vg_devtable_new(vg_devtable_t **out)
{
    vg_devtable_t *t = vg_calloc(VG_MEM_DETECT, 1, sizeof(*t));
    if (!t)
        return VG_ENOMEM;
    *out = t;
    return VG_OK;
}

void vg_devtable_free(vg_devtable_t *t)
{
    if (!t)
        return;
    release_all(t);
    vg_free(t);
}

vg_devstate_t *vg_devtable_get(vg_devtable_t *t, const char *id, size_t len, uint32_t *index)
{
    bool created;
    uint32_t ix = 0;
    vg_devstate_t *st = lookup(t, id, len, &created, &ix);
    if (index)
        *index = ix;
    return st;
}

vg_devstate_t *vg_devtable_find(vg_devtable_t *t, const char *id, size_t len, uint32_t *index)
{
    if (!t->slots || len > VG_EVENT_MAX_DEVICE_ID)
        return NULL;
    uint32_t v = t->slots[probe(t, id, len, id_hash(id, len))];
    if (!v)
        return NULL;
    if (index)
        *index = v - 1;
    return &t->entries[v - 1].st;
}

vg_devstate_t *vg_devtable_at(vg_devtable_t *t, uint32_t index, const char **id, size_t *len)
{
    if (index >= t->count)
        return NULL;
    entry_t *e = &t->entries[index];
    if (id)
        *id = entry_id(e);
    if (len)
        *len = e->len;
    return &e->st;
}

size_t vg_devtable_count(const vg_devtable_t *t)
{
    return t->count;
}

/* ---- checkpoint encoding ----------------------------------------------------- */

static uint8_t *put_le(uint8_t *p, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint64_t get_le(const uint8_t *p, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int vg_devtable_serialize(const vg_devtable_t *t, uint8_t **out, size_t *out_len)
{
    size_t size = HEADER;
    for (size_t i = 0; i < t->count; i++)
        size += 2 + t->entries[i].len + sizeof(vg_devstate_t);
    uint8_t *buf = vg_malloc(VG_MEM_DETECT, size);
    if (!buf)
        return VG_ENOMEM;

    uint8_t *p = put_le(buf, t->count, 4);
    p = put_le(p, VG_DEVSTATE_LAYOUT, 4);
    p = put_le(p, sizeof(vg_devstate_t), 4);
    for (size_t i = 0; i < t->count; i++) {
        const entry_t *e = &t->entries[i];
        p = put_le(p, e->len, 2);
        if (e->len)
            memcpy(p, entry_id(e), e->len);
        p += e->len;
        memcpy(p, &e->st, sizeof e->st);
        p += sizeof e->st;
    }
    *out = buf;
    *out_len = size;
    return VG_OK;
}

int vg_devtable_restore(vg_devtable_t *t, const uint8_t *buf, size_t len)
{
    /* Decode into a scratch table and swap only on success, so a bad
     * checkpoint leaves the current state untouched. */
    vg_devtable_t tmp = {0};
    int rc = VG_EMALFORMED;

    if (!buf || len < HEADER)
        goto cleanup;
    size_t count = (size_t)get_le(buf, 4);
    if (get_le(buf + 4, 4) != VG_DEVSTATE_LAYOUT || get_le(buf + 8, 4) != sizeof(vg_devstate_t)) {
        rc = VG_EPROTO;
        goto cleanup;
    }
    size_t pos = HEADER;
    const size_t fixed = 2 + sizeof(vg_devstate_t);
    /* Check the claimed count against the bytes present before sizing
     * anything by it. */
    if (count > (len - pos) / fixed)
        goto cleanup;
    if (count && reserve(&tmp, count) != VG_OK) {
        rc = VG_ENOMEM;
        goto cleanup;
    }

    for (size_t i = 0; i < count; i++) {
        if (len - pos < 2)
            goto cleanup;
        size_t id_len = (size_t)get_le(buf + pos, 2);
        pos += 2;
        if (id_len > VG_EVENT_MAX_DEVICE_ID || len - pos < id_len + sizeof(vg_devstate_t))
            goto cleanup;
        const char *id = (const char *)buf + pos;
        pos += id_len;
        bool created;
        uint32_t ix;
        vg_devstate_t *st = lookup(&tmp, id, id_len, &created, &ix);
        if (!st) {
            rc = VG_ENOMEM;
            goto cleanup;
        }
        if (!created)
            goto cleanup; /* the same device twice: not something we wrote */
        memcpy(st, buf + pos, sizeof *st);
        pos += sizeof(vg_devstate_t);
    }
    if (pos != len)
        goto cleanup;

    release_all(t);
    *t = tmp;
    return VG_OK;

cleanup:
    release_all(&tmp);
    return rc;
}
