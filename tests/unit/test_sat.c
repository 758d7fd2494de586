/* test_sat.c — saturating arithmetic at both ends of the range and in the
 * middle, where it must be plain arithmetic. */
#include "core/sat.h"
#include "vt.h"

#include <stdint.h>

static void test_add_sub(void)
{
    VT_CHECK(vg_sat_add_i64(2, 3) == 5);
    VT_CHECK(vg_sat_add_i64(-2, -3) == -5);
    VT_CHECK(vg_sat_add_i64(INT64_MAX, 1) == INT64_MAX);
    VT_CHECK(vg_sat_add_i64(INT64_MAX - 1, 1) == INT64_MAX);
    VT_CHECK(vg_sat_add_i64(INT64_MIN, -1) == INT64_MIN);
    VT_CHECK(vg_sat_add_i64(INT64_MIN, INT64_MAX) == -1);
    VT_CHECK(vg_sat_add_i64(INT64_MAX, INT64_MIN) == -1);
    VT_CHECK(vg_sat_sub_i64(5, 3) == 2);
    VT_CHECK(vg_sat_sub_i64(INT64_MIN, 1) == INT64_MIN);
    VT_CHECK(vg_sat_sub_i64(INT64_MAX, -1) == INT64_MAX);
    VT_CHECK(vg_sat_sub_i64(0, INT64_MIN) == INT64_MAX);
    VT_CHECK(vg_sat_sub_i64(-1, INT64_MIN) == INT64_MAX);
    VT_CHECK(vg_sat_sub_i64(INT64_MIN, INT64_MIN) == 0);
}

static void test_inc_u8(void)
{
    VT_EQ_INT(vg_sat_inc_u8(0), 1);
    VT_EQ_INT(vg_sat_inc_u8(254), 255);
    VT_EQ_INT(vg_sat_inc_u8(255), 255);
}

int main(void)
{
    VT_RUN(test_add_sub);
    VT_RUN(test_inc_u8);
    return VT_DONE();
}
