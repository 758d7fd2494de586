/* test_mailbox.c — core/mailbox: order, the swapped arrays, waking only
 * when empty (futex word and eventfd), no lost wake-up under concurrent
 * posters, failure leaves nothing behind. */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/mailbox.h"
#include "vt.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct {
    uint32_t producer;
    uint32_t n;
} item_t;

static void test_order_and_swap(void)
{
    vg_notify_t wake;
    vg_notify_init(&wake);
    vg_mailbox_t mb;
    VT_REQUIRE(vg_mailbox_init(&mb, sizeof(item_t), VG_MEM_CORE, &wake, -1) == VG_OK);
    VT_CHECK(!vg_mailbox_pending(&mb));
    void *got;
    VT_EQ_INT(vg_mailbox_take(&mb, &got), 0);
    /* Nothing posted yet: no wake-up either. */
    VT_EQ_INT(vg_notify_wait(&wake, 0), VG_AGAIN);

    item_t batch[3] = {{0, 1}, {0, 2}, {0, 3}};
    VT_EQ_INT(vg_mailbox_post(&mb, batch, 3), VG_OK);
    VT_EQ_INT(vg_mailbox_post(&mb, &batch[0], 1), VG_OK);
    VT_CHECK(vg_mailbox_pending(&mb));
    /* Two posts, one wake-up: the second found the mailbox non-empty. */
    VT_EQ_INT(vg_notify_wait(&wake, 0), VG_OK);
    VT_EQ_INT(vg_notify_wait(&wake, 0), VG_AGAIN);
    VT_EQ_INT(vg_mailbox_take(&mb, &got), 4);
    const item_t *it = got;
    VT_CHECK(it[0].n == 1 && it[1].n == 2 && it[2].n == 3 && it[3].n == 1);
    VT_CHECK(!vg_mailbox_pending(&mb));

    /* Steady state allocates nothing: two arrays take turns. */
    size_t used = 0;
    void *first = NULL, *second = NULL;
    for (int round = 0; round < 10; round++) {
        VT_EQ_INT(vg_mailbox_post(&mb, batch, 3), VG_OK);
        VT_EQ_INT(vg_notify_wait(&wake, 0), VG_OK); /* empty again before each round: woken each time */
        VT_EQ_INT(vg_mailbox_take(&mb, &got), 3);
        if (round == 2)
            first = got;
        if (round == 3)
            second = got;
        if (round >= 4)
            VT_CHECK(got == (round % 2 ? second : first));
        if (round == 2)
            used = vg_mem_used(VG_MEM_CORE);
        if (round > 2)
            VT_EQ_INT(vg_mem_used(VG_MEM_CORE), used);
    }
    VT_CHECK(first != second);
    vg_mailbox_deinit(&mb);
}

static void test_eventfd(void)
{
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    VT_REQUIRE(efd >= 0);
    vg_mailbox_t mb;
    VT_REQUIRE(vg_mailbox_init(&mb, sizeof(item_t), VG_MEM_CORE, NULL, efd) == VG_OK);
    item_t x = {1, 1};
    VT_EQ_INT(vg_mailbox_post(&mb, &x, 1), VG_OK);
    VT_EQ_INT(vg_mailbox_post(&mb, &x, 1), VG_OK);
    void *got;
    VT_EQ_INT(vg_mailbox_take(&mb, &got), 2); /* reads the eventfd */
    uint64_t v;
    VT_CHECK(read(efd, &v, sizeof v) < 0); /* nothing left to read */
    VT_EQ_INT(vg_mailbox_post(&mb, &x, 1), VG_OK);
    VT_CHECK(read(efd, &v, sizeof v) == sizeof v && v == 1); /* one write for one empty→non-empty */
    vg_mailbox_deinit(&mb);
    close(efd);
}

static void test_enomem(void)
{
    vg_mailbox_t mb;
    VT_REQUIRE(vg_mailbox_init(&mb, sizeof(item_t), VG_MEM_CORE, NULL, -1) == VG_OK);
    item_t x = {1, 1};
    vg_mem_fail_after(0);
    int rc = vg_mailbox_post(&mb, &x, 1);
    vg_mem_fail_after(-1);
    VT_EQ_INT(rc, VG_ENOMEM);
    VT_CHECK(!vg_mailbox_pending(&mb));
    void *got;
    VT_EQ_INT(vg_mailbox_take(&mb, &got), 0);
    VT_EQ_INT(vg_mailbox_post(&mb, &x, 0), VG_OK);
    VT_CHECK(!vg_mailbox_pending(&mb));
    vg_mailbox_deinit(&mb);
}

enum { PRODUCERS = 3, PER = 100000 };

typedef struct {
    vg_mailbox_t *mb;
    uint32_t id;
} prod_t;

static void *producer(void *arg)
{
    prod_t *p = arg;
    for (uint32_t i = 0; i < PER; i++) {
        item_t it = {p->id, i};
        while (vg_mailbox_post(p->mb, &it, 1) != VG_OK)
            ;
    }
    return NULL;
}

/* The owner sleeps on the futex word whenever it finds nothing; a lost
 * wake-up would leave it asleep with items posted, which the deadline turns
 * into a failure instead of a hang. */
static void test_concurrent(void)
{
    vg_notify_t wake;
    vg_notify_init(&wake);
    vg_mailbox_t mb;
    VT_REQUIRE(vg_mailbox_init(&mb, sizeof(item_t), VG_MEM_CORE, &wake, -1) == VG_OK);
    pthread_t th[PRODUCERS];
    prod_t pr[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pr[i] = (prod_t){&mb, i};
        VT_REQUIRE(pthread_create(&th[i], NULL, producer, &pr[i]) == 0);
    }
    uint32_t next[PRODUCERS] = {0};
    size_t total = 0, takes = 0;
    int bad = 0, stuck = 0;
    uint64_t deadline = vg_clock_mono_ns() + 60ull * 1000000000u;
    while (total < (size_t)PRODUCERS * PER && vg_clock_mono_ns() < deadline) {
        void *got;
        size_t n = vg_mailbox_take(&mb, &got);
        const item_t *it = got;
        for (size_t i = 0; i < n; i++) {
            if (it[i].producer >= PRODUCERS || it[i].n != next[it[i].producer])
                bad++;
            else
                next[it[i].producer]++;
        }
        total += n;
        takes += n > 0;
        if (n == 0 && !vg_mailbox_pending(&mb) && vg_notify_wait(&wake, 2000) == VG_AGAIN && vg_mailbox_pending(&mb))
            stuck++; /* items waited through a whole timeout: the post did not wake us */
    }
    for (uint32_t i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    VT_EQ_INT(total, (size_t)PRODUCERS * PER);
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(stuck, 0);
    VT_CHECK(takes > 0);
    vg_mailbox_deinit(&mb);
}

int main(void)
{
    VT_RUN(test_order_and_swap);
    VT_RUN(test_eventfd);
    VT_RUN(test_enomem);
    VT_RUN(test_concurrent);
    return VT_DONE();
}
