/* test_set.c — core/set.h: the generated probing operations against a
 * reference model (with a hash that collides on purpose, so probe runs wrap
 * around the end of the array and deletions shift), and vg_u64set_t. */
#include "core/err.h"
#include "core/set.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

/* Slots hold keys 1..N (0 = empty); the hash puts eight keys on each home
 * slot and the homes near the end of the array, so runs are long and wrap. */
#define T_EMPTY(e) ((e) == 0)
#define T_HASH(e) ((size_t)((e) / 8) + 60)
#define T_MATCH(e, k) ((e) == (k))
VG_SET_DEFINE(tset, uint32_t, uint32_t, T_EMPTY, T_HASH, T_MATCH)

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static size_t lookup(const uint32_t *slots, size_t mask, uint32_t k)
{
    return tset_find(slots, mask, T_HASH(k), k);
}

static void test_model(void)
{
    enum { CAP = 64, KEYS = 40 }; /* at most 40 of 64 slots used: one always empty */
    uint32_t slots[CAP] = {0};
    bool in[KEYS + 1] = {0};
    size_t n = 0;
    int bad = 0;
    for (int step = 0; step < 200000; step++) {
        uint32_t k = 1 + next_rand() % KEYS;
        size_t i = lookup(slots, CAP - 1, k);
        if ((slots[i] == k) != in[k])
            bad++;
        if (in[k]) {
            tset_delete(slots, CAP - 1, i, 0);
            in[k] = false;
            n--;
        } else if (n < KEYS) {
            tset_put(slots, CAP - 1, k);
            in[k] = true;
            n++;
        }
        if (step % 997 == 0) {
            /* Every key is found where the model says, and nothing else is there. */
            size_t used = 0;
            for (size_t s = 0; s < CAP; s++)
                used += slots[s] != 0;
            if (used != n)
                bad++;
            for (uint32_t q = 1; q <= KEYS; q++)
                if ((slots[lookup(slots, CAP - 1, q)] == q) != in[q])
                    bad++;
        }
    }
    VT_EQ_INT(bad, 0);
}

static void test_rehash(void)
{
    uint32_t small[16] = {0}, big[64] = {0};
    for (uint32_t k = 1; k <= 10; k++)
        tset_put(small, 15, k * 13);
    tset_rehash(big, 63, small, 16);
    int found = 0, used = 0;
    for (uint32_t k = 1; k <= 10; k++)
        found += big[lookup(big, 63, k * 13)] == k * 13;
    for (size_t s = 0; s < 64; s++)
        used += big[s] != 0;
    VT_EQ_INT(found, 10);
    VT_EQ_INT(used, 10);
}

/* Struct slots, as strmap.c uses them. */
typedef struct {
    const char *key; /* NULL = empty */
    uint32_t hash;
} sslot_t;
#define S_EMPTY(e) ((e).key == NULL)
#define S_HASH(e) ((e).hash)
#define S_MATCH(e, k) (strcmp((e).key, (k)) == 0)
VG_SET_DEFINE(sset, sslot_t, const char *, S_EMPTY, S_HASH, S_MATCH)

static void test_struct_slots(void)
{
    sslot_t slots[8] = {{0}};
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        sset_put(slots, 7, (sslot_t){names[i], 3}); /* all on one home slot */
    size_t i = sset_find(slots, 7, 3, "b");
    VT_REQUIRE(slots[i].key && strcmp(slots[i].key, "b") == 0);
    sset_delete(slots, 7, i, (sslot_t){0});
    VT_CHECK(slots[sset_find(slots, 7, 3, "b")].key == NULL);
    VT_CHECK(slots[sset_find(slots, 7, 3, "e")].key != NULL);
    VT_CHECK(slots[sset_find(slots, 7, 3, "a")].key != NULL);
}

static void test_u64set(void)
{
    vg_u64set_t s;
    vg_u64set_init(&s, VG_MEM_CORE);
    VT_CHECK(!vg_u64set_has(&s, 5));
    VT_EQ_INT(vg_u64set_del(&s, 5), VG_ENOTFOUND);
    VT_EQ_INT(vg_u64set_add(&s, 0), VG_EINVAL);
    VT_EQ_INT(vg_u64set_add(&s, 5), VG_OK);
    VT_EQ_INT(vg_u64set_add(&s, 5), VG_EEXIST);
    VT_CHECK(vg_u64set_has(&s, 5));
    /* Ids that differ only in their high bits must not all collide. */
    for (uint64_t i = 1; i <= 50000; i++)
        VT_REQUIRE(vg_u64set_add(&s, i << 40) == VG_OK);
    VT_EQ_INT(s.count, 50001);
    for (uint64_t i = 1; i <= 50000; i += 2)
        VT_REQUIRE(vg_u64set_del(&s, i << 40) == VG_OK);
    int bad = 0;
    for (uint64_t i = 1; i <= 50000; i++)
        bad += vg_u64set_has(&s, i << 40) != (i % 2 == 0);
    VT_EQ_INT(bad, 0);
    VT_CHECK(vg_u64set_has(&s, 5));
    VT_EQ_INT(s.count, 25001);
    vg_u64set_deinit(&s);
    VT_EQ_INT(s.count, 0);
    VT_CHECK(!vg_u64set_has(&s, 5));
    VT_EQ_INT(vg_u64set_add(&s, 7), VG_OK); /* usable again */
    vg_u64set_deinit(&s);
    vg_u64set_deinit(NULL);
}

int main(void)
{
    VT_RUN(test_model);
    VT_RUN(test_rehash);
    VT_RUN(test_struct_slots);
    VT_RUN(test_u64set);
    return VT_DONE();
}
