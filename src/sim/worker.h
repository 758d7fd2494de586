/* worker.h — one simulator worker process: a slice of the fleet on one
 * epoll loop.
 *
 * Owns: the device connections of its slice (non-blocking sockets, each
 * with an mqttc client; the in-flight rings of all of them in one array),
 * the send schedule (a binary heap of next-send times), one extra
 * connection subscribed to
 * alerts/# that judges alert events against the episodes it injected
 * (ledger.h) and counts data-quality alerts apart, and the
 * per-second and final messages to the parent (report.h). Does not own:
 * option parsing, forking or printing (sim.c).
 *
 * Runs in a forked child, single-threaded, until the send phase and the
 * drain are over; SIGINT/SIGTERM (blocked by the parent before the fork and
 * read here through a signalfd) end the send phase early, a second one ends
 * the drain. */
#ifndef VG_SIM_WORKER_H
#define VG_SIM_WORKER_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    struct sockaddr_storage addr; /* the broker */
    socklen_t addr_len;
    int spread_sources;    /* bind to 127.0.0.(2 + index % 200): target is a 127.x address */
    uint32_t fleet;        /* devices in the whole fleet */
    uint32_t first, count; /* this worker's slice [first, first + count) */
    unsigned worker_id;
    int qos;
    double interval_s, duration_s, drain_s, anomaly_rate, connect_rate;
    double sustain_s; /* the server's extreme_sustain_s, episodes are built for (0: the default) */
    uint64_t seed;
    const char *topic;
    const char *prefix;
    uint64_t t0_ns; /* common start of the run, CLOCK_MONOTONIC */
    int report_fd;  /* write end of the pipe to the parent */
} vg_simworker_cfg_t;

/* Runs the worker to completion and writes its final report to
 * cfg->report_fd. Expects SIGINT and SIGTERM to be blocked. Returns VG_OK,
 * or VG_ENOMEM / VG_EIO / VG_EINVAL if it could not run at all (it still
 * tries to send a final report so the parent's totals stay whole). */
int vg_simworker_run(const vg_simworker_cfg_t *cfg);

#endif
