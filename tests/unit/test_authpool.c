/* Unit tests of app/authpool: jobs run on the pool's threads, a job that
 * asks to run later runs at (not before) its time, and stopping runs every
 * waiting job once more with `stopping` set so nothing is lost. */
#include "app/authpool.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/notify.h"
#include "vt.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    vg_authpool_job_t base;
    atomic_int *done, *stopped;
    int64_t delay_ms, ran_at_ms, first_ms;
    int runs;
} job_t;

static void job_fn(vg_authpool_thread_t *t, vg_authpool_job_t *j, bool stopping)
{
    job_t *x = (job_t *)j;
    x->runs++;
    if (x->runs == 1 && x->delay_ms && !stopping) {
        x->first_ms = vg_clock_wall_ms();
        if (vg_authpool_later(t, j, x->first_ms + x->delay_ms) == VG_OK)
            return;
    }
    x->ran_at_ms = vg_clock_wall_ms();
    if (stopping)
        atomic_fetch_add(x->stopped, 1);
    atomic_fetch_add(x->done, 1);
}

static void wait_for(atomic_int *v, int n)
{
    int64_t until = vg_clock_wall_ms() + 5000;
    while (atomic_load(v) < n && vg_clock_wall_ms() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_jobs_and_later(void)
{
    vg_authpool_t *p = NULL;
    VT_REQUIRE(vg_authpool_new(2, &p) == VG_OK);
    atomic_int done = 0, stopped = 0;
    job_t jobs[50];
    for (int i = 0; i < 50; i++) {
        jobs[i] = (job_t){.base.fn = job_fn, .done = &done, .stopped = &stopped, .delay_ms = i == 7 ? 200 : 0};
        VT_CHECK(vg_authpool_submit(p, &jobs[i].base) == VG_OK);
    }
    wait_for(&done, 50);
    VT_EQ_INT(atomic_load(&done), 50);
    VT_EQ_INT(jobs[7].runs, 2);
    VT_CHECK(jobs[7].ran_at_ms - jobs[7].first_ms >= 200);
    VT_EQ_INT((int)vg_authpool_pending(p), 0);
    vg_authpool_free(p);
    VT_EQ_INT(atomic_load(&stopped), 0);
}

static void test_stop_runs_waiting_jobs(void)
{
    vg_authpool_t *p = NULL;
    VT_REQUIRE(vg_authpool_new(1, &p) == VG_OK);
    atomic_int done = 0, stopped = 0;
    job_t j = {.base.fn = job_fn, .done = &done, .stopped = &stopped, .delay_ms = 60000};
    VT_CHECK(vg_authpool_submit(p, &j.base) == VG_OK);
    int64_t until = vg_clock_wall_ms() + 5000;
    while (j.runs == 0 && vg_clock_wall_ms() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int64_t t0 = vg_clock_wall_ms();
    vg_authpool_free(p); /* does not wait the minute */
    VT_CHECK(vg_clock_wall_ms() - t0 < 2000);
    VT_EQ_INT(atomic_load(&done), 1);
    VT_EQ_INT(atomic_load(&stopped), 1);
    VT_EQ_INT(j.runs, 2);
}

int main(void)
{
    VT_RUN(test_jobs_and_later);
    VT_RUN(test_stop_runs_waiting_jobs);
    return VT_DONE();
}
