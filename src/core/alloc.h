/* alloc.h — the one allocation wrapper: byte accounting per subsystem and
 * fault injection for tests.
 *
 * Every heap allocation in vigil goes through vg_malloc/vg_calloc/vg_realloc/
 * vg_free so that memory per subsystem can be reported in stats and so that
 * tests can make the Nth allocation fail. The counters are process-wide
 * atomics (like an allocator's own statistics); they are the one piece of
 * shared mutable state we accept, because memory itself is process-wide. */
#ifndef VG_CORE_ALLOC_H
#define VG_CORE_ALLOC_H

#include <stddef.h>

typedef enum {
    VG_MEM_CORE = 0,
    VG_MEM_MQTT,
    VG_MEM_STREAM,
    VG_MEM_PROC,
    VG_MEM_DETECT,
    VG_MEM_SIM,
    VG_MEM_WEBHOOK, /* webhook delivery, libcurl's own memory included */
    VG_MEM_EVAL,
    VG_MEM_SEC, /* security: PKI, device registry, credentials, policies, audit log, rate limits */
    VG_MEM__COUNT
} vg_mem_tag_t;

/* Allocate n bytes charged to tag. Returns NULL on failure (or injected
 * failure). The caller owns the block and releases it with vg_free. */
void *vg_malloc(vg_mem_tag_t tag, size_t n);
void *vg_calloc(vg_mem_tag_t tag, size_t count, size_t size);
/* Resize p (may be NULL); on failure returns NULL and p stays valid. */
void *vg_realloc(vg_mem_tag_t tag, void *p, size_t n);
/* Copy of s[0..n) plus a NUL terminator. */
char *vg_strndup(vg_mem_tag_t tag, const char *s, size_t n);
/* Releases p; NULL is accepted. */
void vg_free(void *p);

/* Bytes currently allocated under tag. */
size_t vg_mem_used(vg_mem_tag_t tag);
const char *vg_mem_tag_name(vg_mem_tag_t tag);

/* Testing: make the allocation after the next n succeed-ones fail (n = 0:
 * the next one fails); a negative n disables injection. */
void vg_mem_fail_after(long n);

#endif
