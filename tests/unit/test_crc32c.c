/* test_crc32c.c — CRC-32C known vectors; hardware and table agree. */
#include "core/crc32c.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

static void test_vectors(void)
{
    VT_EQ_INT(vg_crc32c(0, "123456789", 9), 0xE3069283u);
    VT_EQ_INT(vg_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    VT_EQ_INT(vg_crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0}, ones[32];
    for (int i = 0; i < 32; i++)
        ones[i] = 0xff;
    /* RFC 3720 (iSCSI) B.4 test patterns. */
    VT_EQ_INT(vg_crc32c(0, zeros, 32), 0x8A9136AAu);
    VT_EQ_INT(vg_crc32c(0, ones, 32), 0x62A8AB43u);
}

static void test_incremental_and_agreement(void)
{
    uint8_t buf[4099];
    srand(7);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)rand();
    int bad = 0;
    for (size_t len = 0; len < sizeof buf; len += 37) {
        for (size_t off = 0; off < 9 && off <= len; off++) {
            uint32_t whole = vg_crc32c(0, buf + off, len - off);
            if (whole != vg_crc32c_sw(0, buf + off, len - off))
                bad++;
            size_t cut = (len - off) / 3;
            if (vg_crc32c(vg_crc32c(0, buf + off, cut), buf + off + cut, len - off - cut) != whole)
                bad++;
        }
    }
    VT_EQ_INT(bad, 0);
}

int main(void)
{
    VT_RUN(test_vectors);
    VT_RUN(test_incremental_and_agreement);
    return VT_DONE();
}
