/* authpool.h — threads for the slow part of authentication, away from the
 * I/O loops: argon2id password and token checks (tens of milliseconds of
 * CPU and ~19 MiB each, on purpose), registry writes of just-in-time
 * registration, and the deliberate delay before answering a client that
 * keeps failing.
 *
 * Owns: its threads (one mailbox, notify and timer heap each; jobs go to
 * them round robin) and the jobs while they wait. Not: what a job does (its
 * function), the answer to the gateway (the job's function calls
 * vg_server_auth_done).
 *
 * A job is the caller's allocation with a vg_authpool_job_t first; its
 * function runs on a pool thread and owns the job from then on. It may ask
 * to run again later (vg_authpool_later: the delayed refusal) instead of
 * finishing. When the pool stops, every job still waiting runs once more
 * with `stopping` set, so it can answer and free itself. */
#ifndef VG_APP_AUTHPOOL_H
#define VG_APP_AUTHPOOL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vg_authpool vg_authpool_t;
typedef struct vg_authpool_thread vg_authpool_thread_t;

typedef struct vg_authpool_job vg_authpool_job_t;
/* Runs job on pool thread t. stopping: the pool is shutting down (answer
 * now, do not call vg_authpool_later). */
typedef void (*vg_authpool_fn)(vg_authpool_thread_t *t, vg_authpool_job_t *job, bool stopping);

struct vg_authpool_job {
    vg_authpool_fn fn;
    int64_t at_ms; /* used by the pool */
};

/* Starts n threads (1..16). VG_OK, VG_EINVAL, VG_ENOMEM, VG_EIO. */
int vg_authpool_new(uint32_t n, vg_authpool_t **out);

/* Hands job to a pool thread. Any thread. VG_ENOMEM (the job was not
 * taken and is still the caller's), VG_ECLOSED after stop began. */
int vg_authpool_submit(vg_authpool_t *p, vg_authpool_job_t *job);

/* From a job's function only: run job again on this thread at wall time
 * at_ms. VG_ENOMEM if it cannot be queued (then the function must finish
 * the job now). */
int vg_authpool_later(vg_authpool_thread_t *t, vg_authpool_job_t *job, int64_t at_ms);

/* Jobs submitted or waiting to run again. */
uint64_t vg_authpool_pending(vg_authpool_t *p);

/* Stops the threads after running every waiting job with stopping set;
 * frees the pool. NULL is accepted. */
void vg_authpool_free(vg_authpool_t *p);

#endif
