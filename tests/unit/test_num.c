/* test_num.c — a whole string as a number: what passes, what is refused,
 * and that a refusal leaves the output alone. */
#include "core/err.h"
#include "core/num.h"
#include "vt.h"

#include <float.h>

static void test_accepts(void)
{
    double v = 0;
    VT_EQ_INT(vg_num_parse_double("1.5", &v), VG_OK);
    VT_CHECK(v == 1.5);
    VT_EQ_INT(vg_num_parse_double("-2e3", &v), VG_OK);
    VT_CHECK(v == -2000.0);
    VT_EQ_INT(vg_num_parse_double("0", &v), VG_OK);
    VT_CHECK(v == 0.0);
    /* strtod's syntax, leading white space included (callers trim or not). */
    VT_EQ_INT(vg_num_parse_double(" 7", &v), VG_OK);
    VT_CHECK(v == 7.0);
    VT_EQ_INT(vg_num_parse_double("+0x10", &v), VG_OK);
    VT_CHECK(v == 16.0);
    VT_EQ_INT(vg_num_parse_double("1.7976931348623157e308", &v), VG_OK);
    VT_CHECK(v == DBL_MAX);
}

static void test_refuses(void)
{
    const char *bad[] = {"", " ", "1.5x", "1.5 ", "x", "-", "inf", "-infinity", "nan", "1e999", "1e-999", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 42.0;
        int rc = vg_num_parse_double(bad[i], &v);
        if (rc != VG_EINVAL || v != 42.0)
            fprintf(stdout, "  accepted or clobbered: \"%s\"\n", bad[i]);
        VT_EQ_INT(rc, VG_EINVAL);
        VT_CHECK(v == 42.0);
    }
    double v = 42.0;
    VT_EQ_INT(vg_num_parse_double(NULL, &v), VG_EINVAL);
    VT_CHECK(v == 42.0);
}

int main(void)
{
    VT_RUN(test_accepts);
    VT_RUN(test_refuses);
    return VT_DONE();
}
