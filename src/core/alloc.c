/* alloc.c — accounting allocator. Each block carries a 16-byte header with
 * its size and tag so that vg_free can uncharge the right subsystem without
 * the caller passing the size back. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t size;
    uint32_t tag;
    uint32_t magic;
} hdr_t;

#define HDR_MAGIC 0x56474d45u /* "VGME" */

static atomic_size_t used[VG_MEM__COUNT];
static atomic_long fail_countdown = -1;

static int should_fail(void)
{
    long v = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (v < 0)
        return 0;
    if (v == 0) {
        atomic_store(&fail_countdown, -1);
        return 1;
    }
    atomic_fetch_sub(&fail_countdown, 1);
    return 0;
}

void *vg_malloc(vg_mem_tag_t tag, size_t n)
{
    if ((unsigned)tag >= VG_MEM__COUNT || n > SIZE_MAX - sizeof(hdr_t) || should_fail())
        return NULL;
    hdr_t *h = malloc(sizeof(hdr_t) + n);
    if (!h)
        return NULL;
    h->size = n;
    h->tag = tag;
    h->magic = HDR_MAGIC;
    atomic_fetch_add_explicit(&used[tag], n, memory_order_relaxed);
    return h + 1;
}

void *vg_calloc(vg_mem_tag_t tag, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = vg_malloc(tag, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *vg_realloc(vg_mem_tag_t tag, void *p, size_t n)
{
    if (!p)
        return vg_malloc(tag, n);
    if (n > SIZE_MAX - sizeof(hdr_t) || should_fail())
        return NULL;
    hdr_t *old = (hdr_t *)p - 1;
    size_t old_size = old->size;
    uint32_t old_tag = old->tag;
    hdr_t *h = realloc(old, sizeof(hdr_t) + n);
    if (!h)
        return NULL;
    atomic_fetch_sub_explicit(&used[old_tag], old_size, memory_order_relaxed);
    h->size = n;
    h->tag = tag;
    atomic_fetch_add_explicit(&used[tag], n, memory_order_relaxed);
    return h + 1;
}

char *vg_strndup(vg_mem_tag_t tag, const char *s, size_t n)
{
    char *p = vg_malloc(tag, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void vg_free(void *p)
{
    if (!p)
        return;
    hdr_t *h = (hdr_t *)p - 1;
    atomic_fetch_sub_explicit(&used[h->tag], h->size, memory_order_relaxed);
    h->magic = 0;
    free(h);
}

size_t vg_mem_used(vg_mem_tag_t tag)
{
    if ((unsigned)tag >= VG_MEM__COUNT)
        return 0;
    return atomic_load_explicit(&used[tag], memory_order_relaxed);
}

const char *vg_mem_tag_name(vg_mem_tag_t tag)
{
    static const char *const names[VG_MEM__COUNT] = {"core", "mqtt",    "stream", "proc", "detect",
                                                     "sim",  "webhook", "eval",   "sec"};
    return (unsigned)tag < VG_MEM__COUNT ? names[tag] : "?";
}

void vg_mem_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}
