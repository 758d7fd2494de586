/* shardmap.c — Kinesis-style hash-key ranges: MD5 of the partition key read
 * as a 128-bit big-endian integer, and the even split of 0..2^128-1 into n
 * ranges that Kinesis uses when it creates a stream.
 *
 * Owns only arithmetic; it holds no state and does no I/O. Which ranges a
 * given stream uses is recorded in its MANIFEST (log.c), not here. */
#include "stream/shardmap.h"

#include "core/diag.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

/* The MD5 implementation, fetched once: an implicit fetch inside every
 * EVP_Digest(EVP_md5()) call costs as much as the hash itself (about 0.6 us
 * of 1.1 us per key). Written once under pthread_once, read-only after. */
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_md;

static void md5_fetch(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    if (!md5_md)
        VG_ERROR("stream", "OpenSSL offers no MD5 (FIPS-only provider?): every key maps to shard 0");
}

vg_hashkey_t vg_shardmap_hash(const void *key, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    pthread_once(&md5_once, md5_fetch);
    /* EVP_Digest only fails when the library itself is broken (no MD5 in a
     * FIPS-only provider); the zeroed digest then maps every key to shard 0,
     * which is wrong but consistent, so a misconfigured host stays usable. */
    if (!md5_md || !EVP_Digest(key, len, md, &mdlen, md5_md, NULL) || mdlen < 16)
        memset(md, 0, 16);
    vg_hashkey_t h = 0;
    for (int i = 0; i < 16; i++)
        h = (h << 8) | md[i];
    return h;
}

/* floor(2^128 / n) for n >= 2. 2^128 does not fit in 128 bits, so start from
 * 2^128 - 1 = q*n + r: 2^128 = q*n + (r + 1), and the floor gains one exactly
 * when r + 1 == n (n divides 2^128, i.e. n is a power of two). */
static vg_hashkey_t step_of(uint32_t n)
{
    const vg_hashkey_t max = ~(vg_hashkey_t)0;
    vg_hashkey_t q = max / n;
    vg_hashkey_t r = max % n;
    return r == (vg_hashkey_t)(n - 1) ? q + 1 : q;
}

void vg_shardmap_range(uint32_t n, uint32_t i, vg_hashkey_t *start, vg_hashkey_t *end)
{
    /* A bad n or i is a caller bug; clamp rather than divide by zero so that
     * the result is at least a valid range. */
    if (n == 0)
        n = 1;
    if (i >= n)
        i = n - 1;
    if (n == 1) {
        *start = 0;
        *end = ~(vg_hashkey_t)0;
        return;
    }
    vg_hashkey_t step = step_of(n);
    *start = step * i;
    *end = i == n - 1 ? ~(vg_hashkey_t)0 : step * (i + 1) - 1;
}

uint32_t vg_shardmap_shard(uint32_t n, vg_hashkey_t h)
{
    if (n <= 1)
        return 0;
    vg_hashkey_t i = h / step_of(n);
    /* Hashes past n * step belong to the last shard, which absorbs the
     * remainder of the split. */
    return i >= n ? n - 1 : (uint32_t)i;
}

uint32_t vg_shardmap_key(uint32_t n, const void *key, size_t len)
{
    return vg_shardmap_shard(n, vg_shardmap_hash(key, len));
}

size_t vg_shardmap_format(vg_hashkey_t h, char *out, size_t cap)
{
    char tmp[40];
    size_t len = 0;
    do {
        tmp[len++] = (char)('0' + (int)(h % 10));
        h /= 10;
    } while (h);
    /* Like snprintf: write what fits, always terminate, return the full length. */
    if (cap == 0)
        return len;
    size_t w = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < w; i++)
        out[i] = tmp[len - 1 - i];
    out[w] = '\0';
    return len;
}
