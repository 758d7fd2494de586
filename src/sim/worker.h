/* worker.h — one simulator worker process: a slice of the fleet on one
 * epoll loop.
 *
 * Owns: the device connections of its slice (non-blocking sockets, each
 * with an mqttc client, over TLS with --tls; the in-flight rings of all of
 * them in one array), the worker's TLS client context and each device's
 * last TLS session (offered again when it reconnects),
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
    /* The alert subscriber's address (plain MQTT: it is an observer with no
     * device certificate; the server lets anonymous clients in on its plain
     * loopback listener). sub_addr_len 0: no subscriber. */
    struct sockaddr_storage sub_addr;
    socklen_t sub_addr_len;
    /* TLS for the devices' connections: tls_host is what the server's
     * certificate must name (an address or a DNS name; SNI for names),
     * tls_ca the CA file to verify it with (NULL: the system's), cert_dir
     * where device <id> finds <id>.crt and <id>.key (NULL: no client
     * certificate). Each device's files are read at its connect: a fleet of
     * 100,000 starts at once and holds no keys it is not using. */
    int tls;
    const char *tls_host, *tls_ca, *cert_dir;
    double reconnect_s;    /* a device whose connection ended reconnects this much later (0: never) */
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
