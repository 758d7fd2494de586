/* record.c — encoding and decoding of one stream record; the byte layout is
 * documented in record.h, next to the struct it mirrors, because readers in
 * other modules need it more than this file does.
 *
 * Owns only the codec: pure functions, no I/O, no allocation, so the decoder
 * can be fuzzed on its own. Does not know about segments or sequence order;
 * segment.c checks that sequence numbers follow one another. */
#include "stream/record.h"

#include "core/bytes.h"
#include "core/crc32c.h"
#include "core/err.h"

#include <string.h>

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    return vg_crc32c(0, p, n);
}

int vg_record_encode(uint8_t *out, size_t cap, const vg_record_t *r)
{
    if (r->key_len > VG_RECORD_MAX_KEY || r->meta_len > VG_RECORD_MAX_META || r->value_len > VG_RECORD_MAX_VALUE)
        return VG_ETOOBIG;
    size_t size = vg_record_size(r->key_len, r->meta_len, r->value_len);
    if (size > cap)
        return VG_ENOSPC;
    vg_put_le32(out, (uint32_t)(size - 8));
    vg_put_le64(out + 8, r->seq);
    vg_put_le64(out + 16, (uint64_t)r->arrival_ms);
    vg_put_le16(out + 24, (uint16_t)r->key_len);
    vg_put_le16(out + 26, (uint16_t)r->meta_len);
    vg_put_le32(out + 28, (uint32_t)r->value_len);
    uint8_t *p = out + VG_RECORD_HDR;
    /* memcpy with a NULL source is undefined even for 0 bytes. */
    if (r->key_len)
        memcpy(p, r->key, r->key_len);
    p += r->key_len;
    if (r->meta_len)
        memcpy(p, r->meta, r->meta_len);
    p += r->meta_len;
    if (r->value_len)
        memcpy(p, r->value, r->value_len);
    vg_put_le32(out + 4, crc_of(out + 8, size - 8));
    return (int)size;
}

int vg_record_decode(const uint8_t *buf, size_t len, vg_record_t *r)
{
    if (len < VG_RECORD_HDR)
        return VG_AGAIN;
    uint32_t body_len = vg_get_le32(buf);
    size_t key_len = vg_get_le16(buf + 24);
    size_t meta_len = vg_get_le16(buf + 26);
    size_t value_len = vg_get_le32(buf + 28);
    /* Check the header before asking for more bytes, so that a garbage length
     * is reported as corruption at once instead of making a reader wait for
     * (or allocate) gigabytes that will never come. */
    if (key_len > VG_RECORD_MAX_KEY || meta_len > VG_RECORD_MAX_META || value_len > VG_RECORD_MAX_VALUE)
        return VG_ECORRUPT;
    if ((size_t)body_len != VG_RECORD_HDR - 8 + key_len + meta_len + value_len)
        return VG_ECORRUPT;
    size_t size = 8 + (size_t)body_len;
    if (len < size)
        return VG_AGAIN;
    if (crc_of(buf + 8, body_len) != vg_get_le32(buf + 4))
        return VG_ECORRUPT;
    r->seq = vg_get_le64(buf + 8);
    r->arrival_ms = (int64_t)vg_get_le64(buf + 16);
    r->shard = 0;
    r->key = buf + VG_RECORD_HDR;
    r->key_len = key_len;
    r->meta = r->key + key_len;
    r->meta_len = meta_len;
    r->value = r->meta + meta_len;
    r->value_len = value_len;
    return (int)size;
}
