/* test_strmap.c — put/get/del, growth, deletion keeping probe runs intact. */
#include "core/err.h"
#include "core/strmap.h"
#include "vt.h"

#include <stdio.h>

static void test_basic(void)
{
    vg_strmap_t m;
    vg_strmap_init(&m, VG_MEM_CORE);
    uint64_t v = 0, old = 0;
    VT_EQ_INT(vg_strmap_put(&m, "a", 1, 1, NULL), VG_OK);
    VT_EQ_INT(vg_strmap_put(&m, "a", 1, 2, &old), VG_EEXIST);
    VT_EQ_INT(old, 1);
    VT_EQ_INT(vg_strmap_get(&m, "a", 1, &v), VG_OK);
    VT_EQ_INT(v, 2);
    VT_EQ_INT(vg_strmap_get(&m, "b", 1, &v), VG_ENOTFOUND);
    VT_EQ_INT(vg_strmap_del(&m, "a", 1), VG_OK);
    VT_EQ_INT(vg_strmap_del(&m, "a", 1), VG_ENOTFOUND);
    VT_EQ_INT(m.count, 0);
    vg_strmap_deinit(&m);
}

static void test_many_with_deletes(void)
{
    vg_strmap_t m;
    vg_strmap_init(&m, VG_MEM_CORE);
    char k[32];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(k, sizeof k, "dev-%d", i);
        VT_REQUIRE(vg_strmap_put(&m, k, (size_t)n, (uint64_t)i, NULL) == VG_OK);
    }
    for (int i = 0; i < 20000; i += 3) {
        int n = snprintf(k, sizeof k, "dev-%d", i);
        VT_REQUIRE(vg_strmap_del(&m, k, (size_t)n) == VG_OK);
    }
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(k, sizeof k, "dev-%d", i);
        uint64_t v;
        int rc = vg_strmap_get(&m, k, (size_t)n, &v);
        if (i % 3 == 0 ? rc != VG_ENOTFOUND : (rc != VG_OK || v != (uint64_t)i))
            bad++;
    }
    VT_EQ_INT(bad, 0);
    vg_strmap_deinit(&m);
    VT_EQ_INT(vg_mem_used(VG_MEM_CORE), 0);
}

int main(void)
{
    VT_RUN(test_basic);
    VT_RUN(test_many_with_deletes);
    return VT_DONE();
}
