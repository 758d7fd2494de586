/* test_shardmap.c — MD5 hash keys and Kinesis hash-key ranges. */
#include "stream/shardmap.h"

#include "vt.h"

#include <stdio.h>
#include <string.h>

static vg_hashkey_t from_hex(const char *hex)
{
    vg_hashkey_t v = 0;
    for (; *hex; hex++) {
        int d = *hex <= '9' ? *hex - '0' : *hex - 'a' + 10;
        v = (v << 4) | (vg_hashkey_t)d;
    }
    return v;
}

static const char *fmt(vg_hashkey_t h)
{
    static char buf[40];
    vg_shardmap_format(h, buf, sizeof buf);
    return buf;
}

static void test_md5_vectors(void)
{
    /* RFC 1321 test suite plus the classic pangram. */
    VT_CHECK(vg_shardmap_hash("", 0) == from_hex("d41d8cd98f00b204e9800998ecf8427e"));
    VT_CHECK(vg_shardmap_hash("a", 1) == from_hex("0cc175b9c0f1b6a831c399e269772661"));
    VT_CHECK(vg_shardmap_hash("abc", 3) == from_hex("900150983cd24fb0d6963f7d28e17f72"));
    VT_CHECK(vg_shardmap_hash("message digest", 14) == from_hex("f96b697d7cb7938d525a2f31aaf161d0"));
    const char *fox = "The quick brown fox jumps over the lazy dog";
    VT_CHECK(vg_shardmap_hash(fox, strlen(fox)) == from_hex("9e107d9d372bb6826bd81d3542a419d6"));
}

static void test_format(void)
{
    char buf[40];
    VT_EQ_INT(vg_shardmap_format(0, buf, sizeof buf), 1);
    VT_CHECK(strcmp(buf, "0") == 0);
    VT_EQ_INT(vg_shardmap_format(~(vg_hashkey_t)0, buf, sizeof buf), 39);
    VT_CHECK(strcmp(buf, "340282366920938463463374607431768211455") == 0);
    VT_EQ_INT(vg_shardmap_format(12345, buf, 3), 5); /* truncated like snprintf */
    VT_CHECK(strcmp(buf, "12") == 0);
}

static void test_kinesis_ranges(void)
{
    vg_hashkey_t s, e;
    /* Values as Kinesis prints them for streams created with 4 and 3 shards. */
    vg_shardmap_range(4, 0, &s, &e);
    VT_CHECK(strcmp(fmt(s), "0") == 0);
    VT_CHECK(strcmp(fmt(e), "85070591730234615865843651857942052863") == 0);
    vg_shardmap_range(4, 1, &s, &e);
    VT_CHECK(strcmp(fmt(s), "85070591730234615865843651857942052864") == 0);
    VT_CHECK(strcmp(fmt(e), "170141183460469231731687303715884105727") == 0);
    vg_shardmap_range(4, 3, &s, &e);
    VT_CHECK(strcmp(fmt(s), "255211775190703847597530955573826158592") == 0);
    VT_CHECK(strcmp(fmt(e), "340282366920938463463374607431768211455") == 0);
    vg_shardmap_range(3, 0, &s, &e);
    VT_CHECK(strcmp(fmt(e), "113427455640312821154458202477256070484") == 0);
    vg_shardmap_range(3, 1, &s, &e);
    VT_CHECK(strcmp(fmt(s), "113427455640312821154458202477256070485") == 0);
    VT_CHECK(strcmp(fmt(e), "226854911280625642308916404954512140969") == 0);
    vg_shardmap_range(3, 2, &s, &e);
    VT_CHECK(strcmp(fmt(s), "226854911280625642308916404954512140970") == 0);
    VT_CHECK(e == ~(vg_hashkey_t)0);
    vg_shardmap_range(1, 0, &s, &e);
    VT_CHECK(s == 0 && e == ~(vg_hashkey_t)0);
}

static void test_range_boundaries(void)
{
    for (uint32_t n = 1; n <= VG_SHARDS_MAX; n++) {
        vg_hashkey_t prev_end = 0;
        for (uint32_t i = 0; i < n; i++) {
            vg_hashkey_t s, e;
            vg_shardmap_range(n, i, &s, &e);
            if (i == 0)
                VT_CHECK(s == 0);
            else
                VT_CHECK(s == prev_end + 1);
            VT_CHECK(s <= e);
            VT_EQ_INT(vg_shardmap_shard(n, s), i);
            VT_EQ_INT(vg_shardmap_shard(n, e), i);
            if (s > 0)
                VT_EQ_INT(vg_shardmap_shard(n, s - 1), i - 1);
            prev_end = e;
        }
        VT_CHECK(prev_end == ~(vg_hashkey_t)0);
    }
}

static void test_distribution(void)
{
    enum { KEYS = 100000, N = 4 };
    unsigned count[N] = {0};
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        int len = snprintf(key, sizeof key, "device-%06d", i);
        uint32_t s = vg_shardmap_key(N, key, (size_t)len);
        VT_REQUIRE(s < N);
        VT_EQ_INT(s, vg_shardmap_shard(N, vg_shardmap_hash(key, (size_t)len)));
        count[s]++;
    }
    /* 25000 expected per shard, standard deviation ~137: 3% is over 5 sigma. */
    for (int s = 0; s < N; s++)
        VT_CHECK(count[s] > KEYS / N * 97 / 100 && count[s] < KEYS / N * 103 / 100);
}

int main(void)
{
    VT_RUN(test_md5_vectors);
    VT_RUN(test_format);
    VT_RUN(test_kinesis_ranges);
    VT_RUN(test_range_boundaries);
    VT_RUN(test_distribution);
    return VT_DONE();
}
