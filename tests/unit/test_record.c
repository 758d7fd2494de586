/* test_record.c — the record codec: roundtrip, corruption, truncation. */
#include "stream/record.h"

#include "core/err.h"
#include "vt.h"

#include <stdint.h>
#include <string.h>

static uint8_t buf[4096];

static int encode_sample(uint64_t seq)
{
    vg_record_t r = {.seq = seq,
                     .arrival_ms = 1700000000123,
                     .key = (const uint8_t *)"device-1",
                     .key_len = 8,
                     .meta = (const uint8_t *)"META",
                     .meta_len = 4,
                     .value = (const uint8_t *)"{\"heartRate\":72}",
                     .value_len = 16};
    return vg_record_encode(buf, sizeof buf, &r);
}

static void test_roundtrip(void)
{
    int n = encode_sample(42);
    VT_EQ_INT(n, vg_record_size(8, 4, 16));
    vg_record_t r;
    VT_EQ_INT(vg_record_decode(buf, (size_t)n, &r), n);
    VT_EQ_INT(r.seq, 42);
    VT_EQ_INT(r.arrival_ms, 1700000000123);
    VT_CHECK(r.key_len == 8 && memcmp(r.key, "device-1", 8) == 0);
    VT_CHECK(r.meta_len == 4 && memcmp(r.meta, "META", 4) == 0);
    VT_CHECK(r.value_len == 16 && memcmp(r.value, "{\"heartRate\":72}", 16) == 0);
    /* Layout of record.h: body_len at 0, seq at 8, little-endian. */
    VT_EQ_INT(buf[0], n - 8);
    VT_EQ_INT(buf[8], 42);
    /* A larger buffer decodes the first record only. */
    VT_EQ_INT(vg_record_decode(buf, sizeof buf, &r), n);
}

static void test_empty_fields(void)
{
    vg_record_t r = {.seq = 1};
    int n = vg_record_encode(buf, sizeof buf, &r);
    VT_EQ_INT(n, VG_RECORD_HDR);
    vg_record_t d;
    VT_EQ_INT(vg_record_decode(buf, (size_t)n, &d), n);
    VT_CHECK(d.key_len == 0 && d.meta_len == 0 && d.value_len == 0 && d.seq == 1);
}

static void test_corrupt_crc(void)
{
    int n = encode_sample(7);
    vg_record_t r;
    for (int i = 0; i < n; i++) {
        buf[i] ^= 0x01;
        int rc = vg_record_decode(buf, (size_t)n, &r);
        /* A flipped length field makes the header inconsistent; any other
         * flipped bit breaks the CRC. */
        VT_EQ_INT(rc, VG_ECORRUPT);
        buf[i] ^= 0x01;
    }
    VT_EQ_INT(vg_record_decode(buf, (size_t)n, &r), n);
}

static void test_truncated(void)
{
    int n = encode_sample(9);
    vg_record_t r;
    for (int len = 0; len < n; len++)
        VT_EQ_INT(vg_record_decode(buf, (size_t)len, &r), VG_AGAIN);
}

static void test_impossible_header(void)
{
    vg_record_t r;
    int n = encode_sample(3);
    buf[24] = 0xff; /* key_len 0x..ff over the limit */
    buf[25] = 0xff;
    VT_EQ_INT(vg_record_decode(buf, VG_RECORD_HDR, &r), VG_ECORRUPT);
    n = encode_sample(3);
    buf[0]++; /* body_len inconsistent with the three lengths */
    VT_EQ_INT(vg_record_decode(buf, (size_t)n, &r), VG_ECORRUPT);
    memset(buf, 0, VG_RECORD_HDR); /* a zero-filled tail */
    VT_EQ_INT(vg_record_decode(buf, VG_RECORD_HDR, &r), VG_ECORRUPT);
}

static void test_encode_limits(void)
{
    static uint8_t big[VG_RECORD_MAX_KEY + 1];
    vg_record_t r = {.seq = 1, .key = big, .key_len = sizeof big};
    VT_EQ_INT(vg_record_encode(buf, sizeof buf, &r), VG_ETOOBIG);
    r.key_len = 10;
    VT_EQ_INT(vg_record_encode(buf, VG_RECORD_HDR + 9, &r), VG_ENOSPC);
    VT_EQ_INT(vg_record_encode(buf, VG_RECORD_HDR + 10, &r), VG_RECORD_HDR + 10);
    r.key_len = 0;
    r.meta = big;
    r.meta_len = VG_RECORD_MAX_META + 1;
    VT_EQ_INT(vg_record_encode(buf, sizeof buf, &r), VG_ETOOBIG);
}

static void test_back_to_back(void)
{
    vg_record_t a = {.seq = 1, .value = (const uint8_t *)"one", .value_len = 3};
    vg_record_t b = {
        .seq = 2, .key = (const uint8_t *)"k", .key_len = 1, .value = (const uint8_t *)"two", .value_len = 3};
    int na = vg_record_encode(buf, sizeof buf, &a);
    int nb = vg_record_encode(buf + na, sizeof buf - (size_t)na, &b);
    VT_REQUIRE(na > 0 && nb > 0);
    vg_record_t r;
    VT_EQ_INT(vg_record_decode(buf, (size_t)(na + nb), &r), na);
    VT_EQ_INT(r.seq, 1);
    VT_EQ_INT(vg_record_decode(buf + na, (size_t)nb, &r), nb);
    VT_EQ_INT(r.seq, 2);
    VT_CHECK(r.value_len == 3 && memcmp(r.value, "two", 3) == 0);
}

int main(void)
{
    VT_RUN(test_roundtrip);
    VT_RUN(test_empty_fields);
    VT_RUN(test_corrupt_crc);
    VT_RUN(test_truncated);
    VT_RUN(test_impossible_header);
    VT_RUN(test_encode_limits);
    VT_RUN(test_back_to_back);
    return VT_DONE();
}
