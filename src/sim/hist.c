/* hist.c — see hist.h. */
#include "sim/hist.h"

#include "core/err.h"

#include <string.h>

#define SUB (1u << VG_SIMHIST_SUB_BITS)

static size_t bucket_of(uint64_t v)
{
    if (v < VG_SIMHIST_LINEAR)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb > VG_SIMHIST_MAX_BIT)
        return VG_SIMHIST_BUCKETS - 1;
    unsigned shift = msb - VG_SIMHIST_SUB_BITS;
    size_t top = (size_t)(v >> shift); /* in [SUB, 2*SUB) */
    return VG_SIMHIST_LINEAR + (size_t)(msb - VG_SIMHIST_SUB_BITS - 1) * SUB + (top - SUB);
}

/* Midpoint of the values bucket i covers. */
static double bucket_mid(size_t i)
{
    if (i < VG_SIMHIST_LINEAR)
        return (double)i;
    size_t g = (i - VG_SIMHIST_LINEAR) / SUB;
    unsigned shift = (unsigned)g + 1;
    uint64_t low = (uint64_t)(SUB + (i - VG_SIMHIST_LINEAR) % SUB) << shift;
    uint64_t width = (uint64_t)1 << shift;
    return (double)low + (double)(width - 1) / 2.0;
}

void vg_simhist_init(vg_simhist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void vg_simhist_record(vg_simhist_t *h, uint64_t us)
{
    h->b[bucket_of(us)]++;
    h->count++;
    h->sum += us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void vg_simhist_merge(vg_simhist_t *dst, const vg_simhist_t *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < VG_SIMHIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

double vg_simhist_percentile(const vg_simhist_t *h, double p)
{
    if (h->count == 0)
        return 0.0;
    if (p >= 100.0)
        return (double)h->max;
    if (p < 0.0)
        p = 0.0;
    /* The rank of the wanted value, 1-based: the smallest value with at
     * least p% of the values at or below it. */
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < VG_SIMHIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double v = bucket_mid(i);
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

size_t vg_simhist_encoded_max(void)
{
    return 5 * sizeof(uint64_t) + (size_t)VG_SIMHIST_BUCKETS * (sizeof(uint32_t) + sizeof(uint64_t));
}

int vg_simhist_encode(const vg_simhist_t *h, uint8_t *out, size_t cap)
{
    uint64_t nonzero = 0;
    for (size_t i = 0; i < VG_SIMHIST_BUCKETS; i++)
        nonzero += h->b[i] != 0;
    size_t need = 5 * sizeof(uint64_t) + (size_t)nonzero * (sizeof(uint32_t) + sizeof(uint64_t));
    if (need > cap)
        return VG_ENOSPC;
    uint64_t head[5] = {h->count, h->min, h->max, h->sum, nonzero};
    memcpy(out, head, sizeof head);
    size_t off = sizeof head;
    for (size_t i = 0; i < VG_SIMHIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        uint32_t idx = (uint32_t)i;
        memcpy(out + off, &idx, sizeof idx);
        memcpy(out + off + sizeof idx, &h->b[i], sizeof h->b[i]);
        off += sizeof idx + sizeof h->b[i];
    }
    return (int)off;
}

int vg_simhist_decode(vg_simhist_t *h, const uint8_t *in, size_t len, size_t *used)
{
    uint64_t head[5];
    vg_simhist_init(h);
    if (len < sizeof head)
        return VG_EMALFORMED;
    memcpy(head, in, sizeof head);
    const size_t pair = sizeof(uint32_t) + sizeof(uint64_t);
    if (head[4] > VG_SIMHIST_BUCKETS || head[4] * pair > len - sizeof head)
        return VG_EMALFORMED;
    size_t off = sizeof head;
    uint64_t total = 0;
    for (uint64_t k = 0; k < head[4]; k++) {
        uint32_t idx;
        uint64_t n;
        memcpy(&idx, in + off, sizeof idx);
        memcpy(&n, in + off + sizeof idx, sizeof n);
        off += pair;
        if (idx >= VG_SIMHIST_BUCKETS)
            return VG_EMALFORMED;
        h->b[idx] += n;
        total += n;
    }
    if (total != head[0])
        return VG_EMALFORMED;
    h->count = head[0];
    h->min = head[1];
    h->max = head[2];
    h->sum = head[3];
    *used = off;
    return VG_OK;
}
