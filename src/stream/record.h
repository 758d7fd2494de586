/* record.h — one stream record on disk and in memory.
 *
 * On-disk layout of a record (all integers little-endian):
 *   off  size  field
 *     0     4  body_len   bytes from offset 8 to the end of the record
 *     4     4  crc        CRC-32C (Castagnoli, core/crc32c.h) of the body_len
 *                          bytes at offset 8 (segment format version 2; version
 *                          1 used zlib's CRC-32 and is refused, never "repaired")
 *     8     8  seq        per-shard sequence number (first is 1, +1 each)
 *    16     8  arrival_ms server receive time, epoch milliseconds
 *    24     2  key_len    partition key length (<= 1024)
 *    26     2  meta_len   length of parsed-field metadata (<= 1024)
 *    28     4  value_len  payload length
 *    32     .  key, then meta, then value
 *   body_len = 24 + key_len + meta_len + value_len
 * A record whose length field, bounds or CRC do not check is a torn or
 * corrupt tail: recovery truncates the segment at its first byte. */
#ifndef VG_STREAM_RECORD_H
#define VG_STREAM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define VG_RECORD_HDR 32
#define VG_RECORD_MAX_KEY 1024
#define VG_RECORD_MAX_META 1024
#define VG_RECORD_MAX_VALUE (16u * 1024u * 1024u)

typedef struct {
    uint64_t seq;
    int64_t arrival_ms;
    uint32_t shard;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *meta;
    size_t meta_len;
    const uint8_t *value;
    size_t value_len;
} vg_record_t;

/* Encoded size of a record with these lengths. */
static inline size_t vg_record_size(size_t key_len, size_t meta_len, size_t value_len)
{
    return VG_RECORD_HDR + key_len + meta_len + value_len;
}

/* Encodes r (shard ignored) into out[0..cap). Returns bytes written (> 0),
 * VG_ENOSPC if cap is too small, VG_ETOOBIG if a length exceeds its limit. */
int vg_record_encode(uint8_t *out, size_t cap, const vg_record_t *r);

/* Decodes one record from buf[0..len). Returns the record's size (> 0) and
 * fills *r with pointers into buf; VG_AGAIN if buf holds only part of a
 * record (len too short for the header or the body); VG_ECORRUPT if the
 * header is impossible (lengths over the limits or inconsistent) or the CRC
 * does not match. */
int vg_record_decode(const uint8_t *buf, size_t len, vg_record_t *r);

#endif
