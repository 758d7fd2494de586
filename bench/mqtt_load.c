/* mqtt_load.c — MQTT load generator for the gateway benchmarks (g1–g3 of
 * bench/run.sh): publishers and subscribers as many client connections of
 * one process on one epoll loop.
 *
 * Owns: the client connections (MQTT 3.1.1 or 5.0 through src/mqttc/client.c),
 * the publish schedule, per-message delivery tracking, latency histograms
 * (sim/hist.h: log-linear buckets, < 0.4 % error) and the JSON report on
 * stdout. Does not own: the server (bench/run.sh starts and stops it); it
 * only reads the server's CPU time and RSS from /proc/<--server-pid> at step
 * boundaries, so that those figures cover exactly one step.
 *
 * Because publishers and subscribers share the process, every PUBLISH
 * carries its send time (CLOCK_MONOTONIC) in the payload and delivery
 * latency needs no clock synchronisation. Payload layout (host byte order,
 * the reader is this process): u64 send time ns, u64 global sequence,
 * u64 per-publisher sequence, u32 publisher index, u32 phase number, then
 * zero padding up to --payload bytes.
 *
 * Scenarios (--scenario):
 *   pubsub    --publishers P connections publish to bench/<i>; one
 *             subscriber on '#' at --sub-qos (g1).
 *   fanout    one publisher on bench/fanout; --subscribers N connections
 *             subscribed to it at --sub-qos (g2).
 *   subscale  one publisher on alerts/0; --holders H connections; holder 0
 *             subscribes alerts/0 at setup (the one subscriber that receives
 *             anything); the `bulk` step subscribes alerts/1 ..
 *             alerts/<F-1> (F = --filters) spread evenly over the holders,
 *             --filters-per-packet to a SUBSCRIBE (g3).
 *
 * Steps (--step, repeated, run in order after every connection is set up):
 *   phase:NAME:QOS:RATE:SECONDS  publish at QOS for SECONDS. RATE > 0: paced,
 *       RATE messages/s over all publishers (round-robin), each publisher
 *       keeping at most --ack-window QoS 1/2 publishes unacknowledged.
 *       RATE 0: flat out, each publisher keeping at most --window messages
 *       not yet delivered to every subscriber (a closed loop: the rate is
 *       what the server sustains, and its queues cannot grow without
 *       bound). After SECONDS the phase drains: it waits until every message
 *       reached every subscriber (or passed --msg-timeout) and every ack
 *       arrived; if some message timed out (a server with a backlog), also
 *       until deliveries stop arriving for 1 s, at most --drain-max seconds,
 *       so that the next phase does not start behind an earlier backlog.
 *   bulk     (subscale) the bulk subscription, timed; server RSS before and
 *       after (after a 1 s settle).
 *   pause:SECONDS  run the loop without publishing.
 *
 * A message is *complete* when all expected subscribers got it (1 for
 * pubsub and subscale, N for fanout); its "last" latency is the time until
 * then. Deliveries after --msg-timeout, of an earlier phase, repeated or out
 * of order per (subscriber, publisher) are counted, not timed.
 *
 * Build: make build/mqtt_load (links the vigil library objects).
 * Run:   build/mqtt_load --connect 127.0.0.1:1883 --scenario pubsub
 *            --publishers 100 --sub-qos 1 --step phase:paced:1:10000:10
 *            --step phase:flat:1:0:15 [--server-pid PID]
 * Progress goes to stderr once a second; the result is one JSON object on
 * stdout. Exit status 0 when every step ran (losses are reported, not
 * fatal), 1 on a setup failure, 2 on a usage error. SIGTERM/SIGINT stop
 * the run and still print what was measured ("interrupted": true). */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/rlimit.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"
#include "sim/hist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS 1000000000ull
#define MS 1000000ull
#define PAYLOAD_HDR 32
#define MAX_PACKET (1u << 20)
#define OUT_MAX (16u << 20) /* per connection; can_publish keeps it under 1 MiB + one message */
#define RING_BITS 18 /* messages tracked at once; more is "behind" */
#define RING_SIZE (1u << RING_BITS)
#define MAX_STEPS 16
#define KEEPALIVE_S 600      /* no row runs this long: no PINGREQ needed */
#define CONNECT_PARALLEL 100 /* mosquitto 2.0 listens with a backlog of 100 */
#define SIG_TAG UINT32_MAX

enum { C_IDLE, C_HANDSHAKE, C_READY, C_DEAD };
enum { S_PUBSUB, S_FANOUT, S_SUBSCALE };
enum { ST_PHASE, ST_BULK, ST_PAUSE };

typedef struct {
    vg_mqttc_t mq; /* first: callbacks find the connection from it */
    uint8_t state;
    bool is_pub;
    bool epollout;
    bool counted; /* set up (connected, setup SUBACK back) and counted in ready */
    uint32_t idx;
    /* publisher */
    vg_mqttc_flight_t *ring; /* the client's in-flight ring (--ack-window slots) */
    uint32_t pub;            /* publisher index (payload field) */
    uint32_t outstanding;    /* tracked messages not yet complete */
    uint64_t pseq;
    /* subscriber */
    uint64_t *last_pseq; /* per publisher: highest per-publisher seq seen + 1 */
} conn_t;

typedef struct {
    uint64_t gseq1; /* global seq + 1; 0 = free slot */
    uint64_t send_ns;
    uint32_t count;
    uint32_t pub;
} track_t;

typedef struct {
    int kind;
    char name[32];
    uint8_t qos;
    double rate;
    double seconds;
} step_t;

typedef struct {
    const step_t *st;
    uint32_t id;
    uint64_t t0, t_end, t_drained, t_first_pub, t_last_delivery;
    uint64_t published, acked, delivered, completed, incomplete, lost_deliveries;
    uint64_t late, dup, ack_timeouts, late_acks, ack_errors, blocked;
    double cpu0, cpu1, lg_cpu0, lg_cpu1;
    long rss0, rss1;
    vg_simhist_t lat, last, ack;
} phase_t;

typedef struct {
    /* configuration */
    struct sockaddr_in addr;
    int scenario;
    uint8_t level;
    uint32_t npub, nsub; /* connection counts */
    uint8_t sub_qos;
    uint32_t window, ack_window;
    uint32_t payload;
    uint32_t filters, filters_per_packet;
    double msg_timeout_s, drain_max_s;
    long server_pid;
    step_t steps[MAX_STEPS];
    uint32_t nsteps;
    /* state */
    int ep, sfd;
    bool stop;
    uint64_t now, t_begin;
    uint64_t last_rx; /* when the last PUBLISH arrived at a subscriber */
    conn_t *c;        /* npub publishers, then nsub subscribers */
    uint32_t nconn;
    vg_mqttc_cfg_t mq; /* shared by every connection */
    uint8_t *pl;       /* the payload being published: header + zero padding */
    char (*topic)[32];
    uint32_t *topic_len;
    uint32_t expect; /* deliveries that complete a message */
    track_t *ring;
    uint64_t next_gseq, oldest;
    uint32_t active; /* tracked messages not yet complete */
    phase_t *ph;     /* the running phase, NULL outside phases */
    uint32_t rr;     /* paced round-robin position */
    /* setup */
    uint32_t next_connect, handshakes, ready, connect_failures;
    uint64_t t_setup;
    uint64_t disconnects, protocol_errors, suback_failures;
    char first_error[160];
    uint64_t next_progress;
    uint8_t rbuf[65536]; /* every connection reads into this */
} lg_t;

/* ------------------------------------------------------------------ small */

static void note_error(lg_t *lg, const char *fmt, const char *what)
{
    if (!lg->first_error[0])
        snprintf(lg->first_error, sizeof lg->first_error, fmt, what);
}

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of the server (all threads), -1 without --server-pid. */
static double server_cpu_s(const lg_t *lg)
{
    if (lg->server_pid <= 0)
        return -1;
    char path[64], data[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", lg->server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(data, 1, sizeof data - 1, f);
    fclose(f);
    data[n] = 0;
    char *p = strrchr(data, ')');
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long server_rss_kb(const lg_t *lg)
{
    if (lg->server_pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", lg->server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}


/* ------------------------------------------------------------ connections */

static void conn_dead(lg_t *lg, conn_t *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (c->counted) {
        lg->disconnects++;
        note_error(lg, "a connection was lost: %s", why);
    } else {
        lg->connect_failures++;
        lg->handshakes--;
        note_error(lg, "a connection could not be set up: %s", why);
    }
    c->state = C_DEAD;
    int fd = c->mq.fd;
    vg_mqttc_close(&c->mq); /* on_close ignores our own closes */
    if (fd >= 0) {
        epoll_ctl(lg->ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
    }
    vg_mqttc_deinit(&c->mq);
}

static conn_t *conn_of(vg_mqttc_t *c)
{
    return (conn_t *)((char *)c - offsetof(conn_t, mq));
}

/* The client closed itself: say why in the words of the report. */
static void on_close(vg_mqttc_t *m, vg_mqttc_reason_t why, int detail)
{
    lg_t *lg = vg_mqttc_cfg(m)->ud;
    conn_t *c = conn_of(m);
    char text[64];
    const char *what = text;
    switch (why) {
    case VG_MQTTC_R_LOCAL:
        return;
    case VG_MQTTC_R_IO:
    case VG_MQTTC_R_CONNECT:
        what = strerror(detail);
        break;
    case VG_MQTTC_R_REFUSED:
        what = "CONNACK refused or malformed";
        break;
    case VG_MQTTC_R_MALFORMED:
        what = detail == VG_MQTT_CONNACK   ? "CONNACK refused or malformed"
               : detail == VG_MQTT_SUBACK  ? "bad SUBACK"
               : detail == VG_MQTT_PUBLISH ? "malformed PUBLISH"
               : detail                    ? "malformed ack"
                                           : "bad framing from the server";
        break;
    case VG_MQTTC_R_TOO_BIG:
        what = "bad framing from the server";
        break;
    case VG_MQTTC_R_PROTOCOL:
        lg->protocol_errors++;
        snprintf(text, sizeof text, "unexpected %s", vg_mqtt_type_name((uint8_t)detail));
        break;
    default:
        what = vg_mqttc_reason_name(why);
        break;
    }
    conn_dead(lg, c, what);
}

static void set_epollout(lg_t *lg, conn_t *c, bool on)
{
    if (c->epollout == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = c->idx};
    epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->mq.fd, &ev);
    c->epollout = on;
}

/* Writes what it can now; arms EPOLLOUT only for what is left. */
static void conn_flush(lg_t *lg, conn_t *c)
{
    if (c->state == C_DEAD || c->state == C_IDLE)
        return;
    vg_mqttc_flush(&c->mq);
    if (c->state != C_DEAD)
        set_epollout(lg, c, vg_mqttc_wants_write(&c->mq));
}

static void start_connect(lg_t *lg, conn_t *c)
{
    c->state = C_HANDSHAKE; /* so that conn_dead counts a connect failure */
    lg->handshakes++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_dead(lg, c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char id[48];
    int n = snprintf(id, sizeof id, "lg%ld-%u", (long)getpid(), c->idx);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->idx};
    c->epollout = true;
    if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        conn_dead(lg, c, strerror(errno));
        return;
    }
    int rc = connect(fd, (const struct sockaddr *)&lg->addr, sizeof lg->addr);
    if (rc < 0 && errno != EINPROGRESS) {
        const char *why = strerror(errno);
        epoll_ctl(lg->ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        conn_dead(lg, c, why);
        return;
    }
    if (vg_mqttc_start(&c->mq, fd, rc < 0, id, (size_t)n, lg->now) != VG_OK) {
        epoll_ctl(lg->ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        conn_dead(lg, c, "cannot encode CONNECT");
    }
}

/* Queues one SUBSCRIBE of n filters. */
static int queue_subscribe(lg_t *lg, conn_t *c, const vg_mqtt_sub_t *subs, size_t n)
{
    return vg_mqttc_subscribe(&c->mq, subs, n, NULL, NULL, lg->now);
}

/* The subscription every subscriber makes at setup. */
static void initial_subscribe(lg_t *lg, conn_t *c)
{
    const char *f = NULL;
    if (lg->scenario == S_PUBSUB)
        f = "#";
    else if (lg->scenario == S_FANOUT)
        f = "bench/fanout";
    else if (c->idx == lg->npub) /* subscale: holder 0 */
        f = "alerts/0";
    if (!f)
        return;
    vg_mqtt_sub_t s = {.filter = {(const uint8_t *)f, strlen(f)}, .qos = lg->sub_qos};
    if (queue_subscribe(lg, c, &s, 1) != VG_OK)
        conn_dead(lg, c, "cannot encode SUBSCRIBE");
}

/* Setup of c is finished: connected, and its setup subscription acked. */
static void mark_ready(lg_t *lg, conn_t *c)
{
    c->counted = true;
    lg->handshakes--;
    lg->ready++;
}

/* ---------------------------------------------------------------- tracking */

static void complete(lg_t *lg, track_t *t, bool ok)
{
    phase_t *ph = lg->ph;
    conn_t *p = &lg->c[t->pub];
    if (p->outstanding)
        p->outstanding--;
    lg->active--;
    if (ph) {
        if (ok) {
            ph->completed++;
            vg_simhist_record(&ph->last, (lg->now - t->send_ns) / 1000);
        } else {
            ph->incomplete++;
            ph->lost_deliveries += lg->expect - t->count;
        }
    }
    t->gseq1 = 0;
}

/* Finalises messages past --msg-timeout (as incomplete) and advances oldest. */
static void sweep(lg_t *lg, bool all)
{
    uint64_t limit = (uint64_t)(lg->msg_timeout_s * 1e9);
    while (lg->oldest < lg->next_gseq) {
        track_t *t = &lg->ring[lg->oldest & (RING_SIZE - 1)];
        if (t->gseq1 == lg->oldest + 1) {
            if (!all && lg->now - t->send_ns < limit)
                break;
            complete(lg, t, false);
        }
        lg->oldest++;
    }
}

/* ------------------------------------------------------------------ publish */

/* Can publisher c send one more message of phase ph now? */
static bool can_publish(const lg_t *lg, const conn_t *c, const phase_t *ph)
{
    if (c->state != C_READY || vg_mqttc_pending(&c->mq) > (1u << 20))
        return false;
    if (lg->ring[lg->next_gseq & (RING_SIZE - 1)].gseq1)
        return false; /* ring full: as many messages in flight as we track */
    if (ph->st->qos && vg_mqttc_inflight(&c->mq) >= lg->ack_window)
        return false;
    if (ph->st->rate == 0 && c->outstanding >= lg->window)
        return false;
    return true;
}

static int publish_one(lg_t *lg, conn_t *c, phase_t *ph)
{
    uint8_t *pl = lg->pl; /* the header, then zero padding up to --payload */
    uint64_t gseq = lg->next_gseq, pseq = c->pseq;
    uint64_t now = vg_clock_mono_ns();
    uint32_t phase_id = ph->id;
    memcpy(pl, &now, 8);
    memcpy(pl + 8, &gseq, 8);
    memcpy(pl + 16, &pseq, 8);
    memcpy(pl + 24, &c->pub, 4);
    memcpy(pl + 28, &phase_id, 4);
    vg_mqtt_publish_t m = {
        .qos = ph->st->qos,
        .topic = {(const uint8_t *)lg->topic[c->pub], lg->topic_len[c->pub]},
        .payload = {pl, lg->payload},
    };
    int rc = vg_mqttc_publish(&c->mq, &m, now);
    if (rc != VG_OK)
        return rc;
    track_t *t = &lg->ring[gseq & (RING_SIZE - 1)];
    t->gseq1 = gseq + 1;
    t->send_ns = now;
    t->count = 0;
    t->pub = c->pub;
    lg->next_gseq++;
    lg->active++;
    c->outstanding++;
    c->pseq++;
    if (!ph->published)
        ph->t_first_pub = now;
    ph->published++;
    return VG_OK;
}

/* Sends what the phase's schedule allows now. */
static void pump(lg_t *lg)
{
    phase_t *ph = lg->ph;
    if (!ph || lg->now >= ph->t_end || lg->stop)
        return;
    if (ph->st->rate > 0) {
        uint64_t due = (uint64_t)((double)(lg->now - ph->t0) / 1e9 * ph->st->rate) + 1;
        uint32_t tried = 0;
        while (ph->published < due && tried < lg->npub) {
            conn_t *c = &lg->c[lg->rr];
            lg->rr = (lg->rr + 1) % lg->npub;
            if (!can_publish(lg, c, ph)) {
                tried++;
                continue;
            }
            tried = 0;
            if (publish_one(lg, c, ph) != VG_OK) {
                conn_dead(lg, c, "cannot encode PUBLISH");
                continue;
            }
            conn_flush(lg, c);
        }
        if (ph->published < due)
            ph->blocked++;
    } else {
        for (uint32_t i = 0; i < lg->npub; i++) {
            conn_t *c = &lg->c[i];
            bool any = false;
            while (can_publish(lg, c, ph)) {
                if (publish_one(lg, c, ph) != VG_OK) {
                    conn_dead(lg, c, "cannot encode PUBLISH");
                    break;
                }
                any = true;
            }
            if (any)
                conn_flush(lg, c);
        }
    }
}

/* ----------------------------------------------------------------- receive */

static void on_delivery(lg_t *lg, conn_t *c, const vg_mqtt_publish_t *m)
{
    phase_t *ph = lg->ph;
    if (m->payload.len < PAYLOAD_HDR) {
        lg->protocol_errors++;
        note_error(lg, "%s", "a delivered payload is shorter than our header");
        return;
    }
    uint64_t send_ns, gseq, pseq;
    uint32_t pub, phase_id;
    lg->last_rx = lg->now;
    memcpy(&send_ns, m->payload.p, 8);
    memcpy(&gseq, m->payload.p + 8, 8);
    memcpy(&pseq, m->payload.p + 16, 8);
    memcpy(&pub, m->payload.p + 24, 4);
    memcpy(&phase_id, m->payload.p + 28, 4);
    if (pub >= lg->npub) {
        lg->protocol_errors++;
        return;
    }
    if (!ph || phase_id != ph->id) {
        if (ph)
            ph->late++;
        return;
    }
    if (c->last_pseq[pub] > pseq) {
        ph->dup++;
        return;
    }
    c->last_pseq[pub] = pseq + 1;
    ph->delivered++;
    ph->t_last_delivery = lg->now;
    vg_simhist_record(&ph->lat, (lg->now - send_ns) / 1000);
    track_t *t = &lg->ring[gseq & (RING_SIZE - 1)];
    if (t->gseq1 != gseq + 1) {
        ph->late++; /* already given up on (--msg-timeout) */
        return;
    }
    if (++t->count >= lg->expect)
        complete(lg, t, true);
}

static void on_message(vg_mqttc_t *m, const vg_mqtt_publish_t *msg)
{
    on_delivery(vg_mqttc_cfg(m)->ud, conn_of(m), msg);
}

static void on_ack(vg_mqttc_t *m, const vg_mqttc_ack_t *a)
{
    lg_t *lg = vg_mqttc_cfg(m)->ud;
    phase_t *ph = lg->ph;
    if (!ph)
        return;
    if (a->reason >= 0x80) {
        ph->ack_errors++;
    } else {
        ph->acked++;
        vg_simhist_record(&ph->ack, a->latency_us);
    }
}

/* An ack for a publish its phase already gave up on (ack_timeouts). */
static void on_stray_ack(vg_mqttc_t *m, uint8_t type, uint16_t packet_id)
{
    lg_t *lg = vg_mqttc_cfg(m)->ud;
    if (lg->ph)
        lg->ph->late_acks++;
}

static void on_connack(vg_mqttc_t *m, bool session_present, const vg_mqtt_props_t *props)
{
    lg_t *lg = vg_mqttc_cfg(m)->ud;
    conn_t *c = conn_of(m);
    c->state = C_READY;
    if (!c->is_pub)
        initial_subscribe(lg, c);
    if (c->state == C_READY && !vg_mqttc_subs_pending(&c->mq))
        mark_ready(lg, c);
}

static void on_suback(vg_mqttc_t *m, uint16_t packet_id, const uint8_t *rcs, size_t n)
{
    lg_t *lg = vg_mqttc_cfg(m)->ud;
    conn_t *c = conn_of(m);
    for (size_t i = 0; i < n; i++)
        if (rcs[i] >= 0x80)
            lg->suback_failures++;
    if (!vg_mqttc_subs_pending(m) && !c->counted)
        mark_ready(lg, c); /* its setup subscription */
}

static void on_event(lg_t *lg, uint32_t idx, uint32_t events)
{
    conn_t *c = &lg->c[idx];
    if (c->state == C_DEAD || c->state == C_IDLE)
        return;
    lg->now = vg_clock_mono_ns();
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        vg_mqttc_on_readable(&c->mq, lg->now);
    if (c->state != C_DEAD && (events & EPOLLOUT))
        vg_mqttc_on_writable(&c->mq, lg->now);
    conn_flush(lg, c);
}

/* ------------------------------------------------------------------- loop */

/* One round: wait for events (at most timeout_ms), handle them, keep the
 * setup going, sweep timeouts, publish what is due. */
static void run_once(lg_t *lg, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(lg->ep, evs, 256, timeout_ms);
    lg->now = vg_clock_mono_ns();
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == SIG_TAG) {
            struct signalfd_siginfo si;
            while (read(lg->sfd, &si, sizeof si) == (ssize_t)sizeof si)
                lg->stop = true;
            continue;
        }
        on_event(lg, evs[i].data.u32, evs[i].events);
    }
    while (lg->next_connect < lg->nconn && lg->handshakes < CONNECT_PARALLEL)
        start_connect(lg, &lg->c[lg->next_connect++]);
    sweep(lg, false);
    pump(lg);
}

static void progress(lg_t *lg, const char *what)
{
    if (lg->now < lg->next_progress)
        return;
    lg->next_progress = lg->now + NS;
    double t = (double)(lg->now - lg->t_begin) / 1e9;
    phase_t *ph = lg->ph;
    if (ph) {
        double p99 = vg_simhist_percentile(&ph->lat, 99) / 1000.0;
        fprintf(stderr, "[%6.1fs] %s %s: published %" PRIu64 " delivered %" PRIu64 " acked %" PRIu64 " p99 %.3f ms\n",
                t, what, ph->st->name, ph->published, ph->delivered, ph->acked, p99);
    } else {
        fprintf(stderr, "[%6.1fs] %s: connected %u/%u failed %u\n", t, what, lg->ready, lg->nconn,
                lg->connect_failures);
    }
}

static bool setup_done(const lg_t *lg)
{
    return lg->ready + lg->connect_failures >= lg->nconn;
}

static int setup(lg_t *lg)
{
    lg->t_setup = vg_clock_mono_ns();
    uint64_t deadline = lg->t_setup + 180 * NS;
    while (!setup_done(lg) && !lg->stop) {
        run_once(lg, 50);
        progress(lg, "setup");
        if (lg->now > deadline) {
            note_error(lg, "%s", "setup did not finish in 180 s");
            return VG_EIO;
        }
    }
    lg->t_setup = vg_clock_mono_ns() - lg->t_setup;
    return lg->connect_failures ? VG_EIO : VG_OK;
}

static bool drained(const lg_t *lg)
{
    if (lg->active)
        return false;
    for (uint32_t i = 0; i < lg->npub; i++)
        if (lg->c[i].state == C_READY && vg_mqttc_inflight(&lg->c[i].mq))
            return false;
    return true;
}

static void run_phase(lg_t *lg, phase_t *ph)
{
    ph->t0 = vg_clock_mono_ns();
    ph->t_end = ph->t0 + (uint64_t)(ph->st->seconds * 1e9);
    ph->cpu0 = server_cpu_s(lg);
    ph->lg_cpu0 = cpu_self_s();
    ph->rss0 = server_rss_kb(lg);
    lg->ph = ph;
    lg->rr = 0;
    lg->now = ph->t0;
    while (lg->now < ph->t_end && !lg->stop) {
        run_once(lg, ph->st->rate > 0 ? 1 : 20);
        progress(lg, "phase");
    }
    ph->cpu1 = server_cpu_s(lg);
    ph->lg_cpu1 = cpu_self_s();
    ph->rss1 = server_rss_kb(lg);
    /* Drain: every message delivered or timed out, every ack back. */
    uint64_t deadline = lg->now + (uint64_t)((lg->msg_timeout_s + 2) * 1e9);
    while (!drained(lg) && !lg->stop && lg->now < deadline) {
        run_once(lg, 5);
        progress(lg, "drain");
    }
    sweep(lg, true);
    if (ph->incomplete) {
        /* A backlog: let it arrive (counted as late) before the next phase. */
        deadline = ph->t_end + (uint64_t)(lg->drain_max_s * 1e9);
        while (!lg->stop && lg->now < deadline && lg->now - lg->last_rx < NS) {
            run_once(lg, 20);
            progress(lg, "backlog");
        }
    }
    for (uint32_t i = 0; i < lg->npub; i++)
        ph->ack_timeouts += vg_mqttc_forget(&lg->c[i].mq);
    ph->t_drained = lg->now;
    lg->ph = NULL;
}

typedef struct {
    bool ran;
    uint64_t filters, packets, seconds_ns;
    double cpu_s;
    long rss_before, rss_after;
    uint64_t failures;
} bulk_t;

/* subscale: subscribe alerts/1 .. alerts/<filters-1> over the holders. */
static void run_bulk(lg_t *lg, bulk_t *bk)
{
    uint32_t h = lg->nsub, fpp = lg->filters_per_packet;
    uint64_t per = (lg->filters + h - 1) / h;
    vg_mqtt_sub_t *subs = vg_calloc(VG_MEM_SIM, fpp, sizeof *subs);
    char *names = vg_malloc(VG_MEM_SIM, (size_t)fpp * 24);
    if (!subs || !names) {
        note_error(lg, "%s", "out of memory");
        goto cleanup;
    }
    bk->ran = true;
    bk->rss_before = server_rss_kb(lg);
    double cpu0 = server_cpu_s(lg);
    uint64_t fail0 = lg->suback_failures;
    uint64_t t0 = vg_clock_mono_ns();
    for (uint32_t k = 0; k < h; k++) {
        conn_t *c = &lg->c[lg->npub + k];
        uint64_t lo = (uint64_t)k * per, hi = lo + per;
        if (lo == 0)
            lo = 1; /* alerts/0 is holder 0's since setup */
        if (hi > lg->filters)
            hi = lg->filters;
        while (lo < hi && c->state == C_READY) {
            size_t n = 0;
            for (; n < fpp && lo < hi; n++, lo++) {
                int len = snprintf(names + n * 24, 24, "alerts/%" PRIu64, lo);
                subs[n] = (vg_mqtt_sub_t){.filter = {(const uint8_t *)names + n * 24, (size_t)len}, .qos = lg->sub_qos};
            }
            if (queue_subscribe(lg, c, subs, n) != VG_OK) {
                conn_dead(lg, c, "cannot encode SUBSCRIBE");
                break;
            }
            bk->filters += n;
            bk->packets++;
        }
        conn_flush(lg, c);
    }
    uint64_t deadline = t0 + 600 * NS;
    for (;;) {
        bool waiting = false;
        for (uint32_t k = 0; k < h && !waiting; k++)
            waiting = vg_mqttc_subs_pending(&lg->c[lg->npub + k].mq) > 0;
        if (!waiting || lg->stop)
            break;
        if (lg->now > deadline) {
            note_error(lg, "%s", "bulk SUBSCRIBE not acknowledged within 600 s");
            break;
        }
        run_once(lg, 20);
        progress(lg, "bulk subscribe");
    }
    bk->seconds_ns = vg_clock_mono_ns() - t0;
    bk->cpu_s = server_cpu_s(lg) - cpu0;
    bk->failures = lg->suback_failures - fail0;
    /* settle, then RSS */
    uint64_t until = vg_clock_mono_ns() + NS;
    while (lg->now < until && !lg->stop)
        run_once(lg, 50);
    bk->rss_after = server_rss_kb(lg);
cleanup:
    vg_free(subs);
    vg_free(names);
}

/* ----------------------------------------------------------------- report */

static void print_hist(const char *name, const vg_simhist_t *h, bool comma)
{
    if (!h->count) {
        printf("\"%s\":{\"count\":0}%s", name, comma ? "," : "");
        return;
    }
    printf("\"%s\":{\"count\":%" PRIu64 ",\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
           "\"max\":%.3f}%s",
           name, h->count, (double)h->sum / (double)h->count / 1000.0, vg_simhist_percentile(h, 50) / 1000.0,
           vg_simhist_percentile(h, 90) / 1000.0, vg_simhist_percentile(h, 99) / 1000.0,
           vg_simhist_percentile(h, 99.9) / 1000.0, (double)h->max / 1000.0, comma ? "," : "");
}

static void print_kb(const char *name, long kb)
{
    if (kb < 0)
        printf("\"%s\":null,", name);
    else
        printf("\"%s\":%ld,", name, kb);
}

static void print_phase(const lg_t *lg, const phase_t *ph)
{
    double secs = (double)(ph->t_end - ph->t0) / 1e9;
    double span = ph->t_last_delivery > ph->t_first_pub ? (double)(ph->t_last_delivery - ph->t_first_pub) / 1e9 : 0;
    printf("{\"step\":\"phase\",\"name\":\"%s\",\"qos\":%u,\"rate_offered\":%.0f,\"seconds\":%.3f,", ph->st->name,
           ph->st->qos, ph->st->rate, secs);
    printf("\"drain_s\":%.3f,\"published\":%" PRIu64 ",\"publish_rate\":%.1f,\"acked\":%" PRIu64
           ",\"ack_errors\":%" PRIu64 ",\"ack_timeouts\":%" PRIu64 ",\"late_acks\":%" PRIu64 ",",
           ph->t_drained > ph->t_end ? (double)(ph->t_drained - ph->t_end) / 1e9 : 0.0, ph->published,
           secs > 0 ? (double)ph->published / secs : 0, ph->acked, ph->ack_errors, ph->ack_timeouts, ph->late_acks);
    printf("\"expected_per_message\":%u,\"expected_deliveries\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"deliveries_per_s\":%.1f,\"completed\":%" PRIu64 ",\"incomplete\":%" PRIu64
           ",\"lost_deliveries\":%" PRIu64 ",\"late\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"blocked_ticks\":%" PRIu64
           ",",
           lg->expect, ph->published * lg->expect, ph->delivered, span > 0 ? (double)ph->delivered / span : 0,
           ph->completed, ph->incomplete, ph->lost_deliveries, ph->late, ph->dup, ph->blocked);
    if (ph->cpu0 >= 0 && ph->cpu1 >= 0)
        printf("\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f,", ph->cpu1 - ph->cpu0,
               secs > 0 ? 100 * (ph->cpu1 - ph->cpu0) / secs : 0);
    else
        printf("\"server_cpu_s\":null,\"server_cpu_pct\":null,");
    printf("\"loadgen_cpu_pct\":%.1f,", secs > 0 ? 100 * (ph->lg_cpu1 - ph->lg_cpu0) / secs : 0);
    print_kb("server_rss_start_kb", ph->rss0);
    print_kb("server_rss_end_kb", ph->rss1);
    print_hist("latency_ms", &ph->lat, true);
    print_hist("last_latency_ms", &ph->last, true);
    print_hist("ack_latency_ms", &ph->ack, false);
    printf("}");
}

static void print_bulk(const bulk_t *bk)
{
    double s = (double)bk->seconds_ns / 1e9;
    printf("{\"step\":\"bulk\",\"filters\":%" PRIu64 ",\"packets\":%" PRIu64 ",\"seconds\":%.3f,"
           "\"subscriptions_per_s\":%.0f,\"suback_failures\":%" PRIu64 ",\"server_cpu_s\":%.3f,",
           bk->filters, bk->packets, s, s > 0 ? (double)bk->filters / s : 0, bk->failures, bk->cpu_s);
    print_kb("server_rss_before_kb", bk->rss_before);
    print_kb("server_rss_after_kb", bk->rss_after);
    if (bk->rss_before >= 0 && bk->rss_after >= 0 && bk->filters)
        printf("\"bytes_per_subscription\":%.1f}",
               (double)(bk->rss_after - bk->rss_before) * 1024.0 / (double)bk->filters);
    else
        printf("\"bytes_per_subscription\":null}");
}

/* ------------------------------------------------------------------ setup */

static void usage(void)
{
    fprintf(stderr, "usage: mqtt_load --connect HOST:PORT --scenario pubsub|fanout|subscale [options] --step STEP...\n"
                    "  --publishers N          pubsub: publisher connections (100)\n"
                    "  --subscribers N         fanout: subscriber connections (10000)\n"
                    "  --holders N             subscale: connections holding the filters (100)\n"
                    "  --filters N             subscale: filters alerts/0..N-1 after `bulk` (1000000)\n"
                    "  --filters-per-packet N  subscale: filters per SUBSCRIBE (1000)\n"
                    "  --sub-qos Q             QoS of the subscriptions (1)\n"
                    "  --window N              flat-out phases: messages per publisher not yet delivered (8)\n"
                    "  --ack-window N          QoS 1/2 publishes per publisher awaiting their ack (256)\n"
                    "  --payload BYTES         payload size, >= 32 (64)\n"
                    "  --msg-timeout S         a message not delivered everywhere by then is lost (10)\n"
                    "  --drain-max S           after a phase with lost messages, wait for the backlog at most (120)\n"
                    "  --mqtt 4|5              protocol level: 4 = 3.1.1, 5 = 5.0 (4)\n"
                    "  --server-pid PID        read the server's CPU time and RSS per step\n"
                    "  --step phase:NAME:QOS:RATE:SECONDS | bulk | pause:SECONDS   (RATE 0 = flat out)\n");
}

static int parse_step(const char *s, step_t *st)
{
    memset(st, 0, sizeof *st);
    if (strcmp(s, "bulk") == 0) {
        st->kind = ST_BULK;
        snprintf(st->name, sizeof st->name, "bulk");
        return VG_OK;
    }
    if (strncmp(s, "pause:", 6) == 0) {
        st->kind = ST_PAUSE;
        st->seconds = atof(s + 6);
        snprintf(st->name, sizeof st->name, "pause");
        return st->seconds >= 0 ? VG_OK : VG_EINVAL;
    }
    unsigned qos;
    char name[32];
    if (sscanf(s, "phase:%31[^:]:%u:%lf:%lf", name, &qos, &st->rate, &st->seconds) != 4 || qos > 2 || st->rate < 0 ||
        st->seconds <= 0)
        return VG_EINVAL;
    st->kind = ST_PHASE;
    st->qos = (uint8_t)qos;
    snprintf(st->name, sizeof st->name, "%s", name);
    return VG_OK;
}

static int parse_args(lg_t *lg, int argc, char **argv)
{
    const char *connect_to = NULL, *scenario = NULL;
    lg->npub = 100;
    lg->nsub = 0;
    uint32_t subscribers = 10000, holders = 100;
    lg->sub_qos = 1;
    lg->window = 8;
    lg->ack_window = 256;
    lg->payload = 64;
    lg->filters = 1000000;
    lg->filters_per_packet = 1000;
    lg->msg_timeout_s = 10;
    lg->drain_max_s = 120;
    lg->level = VG_MQTT_V311;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0)
            return VG_EINVAL;
        if (!v)
            return VG_EINVAL;
        i++;
        if (strcmp(a, "--connect") == 0)
            connect_to = v;
        else if (strcmp(a, "--scenario") == 0)
            scenario = v;
        else if (strcmp(a, "--publishers") == 0)
            lg->npub = (uint32_t)atol(v);
        else if (strcmp(a, "--subscribers") == 0)
            subscribers = (uint32_t)atol(v);
        else if (strcmp(a, "--holders") == 0)
            holders = (uint32_t)atol(v);
        else if (strcmp(a, "--filters") == 0)
            lg->filters = (uint32_t)atol(v);
        else if (strcmp(a, "--filters-per-packet") == 0)
            lg->filters_per_packet = (uint32_t)atol(v);
        else if (strcmp(a, "--sub-qos") == 0)
            lg->sub_qos = (uint8_t)atoi(v);
        else if (strcmp(a, "--window") == 0)
            lg->window = (uint32_t)atol(v);
        else if (strcmp(a, "--ack-window") == 0)
            lg->ack_window = (uint32_t)atol(v);
        else if (strcmp(a, "--payload") == 0)
            lg->payload = (uint32_t)atol(v);
        else if (strcmp(a, "--msg-timeout") == 0)
            lg->msg_timeout_s = atof(v);
        else if (strcmp(a, "--drain-max") == 0)
            lg->drain_max_s = atof(v);
        else if (strcmp(a, "--mqtt") == 0)
            lg->level = (uint8_t)atoi(v);
        else if (strcmp(a, "--server-pid") == 0)
            lg->server_pid = atol(v);
        else if (strcmp(a, "--step") == 0) {
            if (lg->nsteps == MAX_STEPS || parse_step(v, &lg->steps[lg->nsteps]) != VG_OK) {
                fprintf(stderr, "mqtt_load: bad step '%s'\n", v);
                return VG_EINVAL;
            }
            lg->nsteps++;
        } else {
            fprintf(stderr, "mqtt_load: unknown option %s\n", a);
            return VG_EINVAL;
        }
    }
    if (!connect_to || !scenario || !lg->nsteps)
        return VG_EINVAL;
    if (strcmp(scenario, "pubsub") == 0) {
        lg->scenario = S_PUBSUB;
        lg->nsub = 1;
    } else if (strcmp(scenario, "fanout") == 0) {
        lg->scenario = S_FANOUT;
        lg->npub = 1;
        lg->nsub = subscribers;
    } else if (strcmp(scenario, "subscale") == 0) {
        lg->scenario = S_SUBSCALE;
        lg->npub = 1;
        lg->nsub = holders;
    } else {
        return VG_EINVAL;
    }
    for (uint32_t i = 0; i < lg->nsteps; i++)
        if (lg->steps[i].kind == ST_BULK && lg->scenario != S_SUBSCALE)
            return VG_EINVAL;
    if (lg->npub == 0 || lg->nsub == 0 || lg->sub_qos > 2 || lg->window == 0 || lg->ack_window == 0 ||
        lg->ack_window > 16384 || lg->payload < PAYLOAD_HDR || lg->payload > 65536 || lg->filters_per_packet == 0 ||
        lg->filters_per_packet > 4096 || lg->msg_timeout_s <= 0 || lg->drain_max_s < 0 ||
        (lg->level != VG_MQTT_V311 && lg->level != VG_MQTT_V5))
        return VG_EINVAL;
    char host[64];
    unsigned port;
    if (sscanf(connect_to, "%63[^:]:%u", host, &port) != 2 || port == 0 || port > 65535)
        return VG_EINVAL;
    lg->addr.sin_family = AF_INET;
    lg->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &lg->addr.sin_addr) != 1) {
        fprintf(stderr, "mqtt_load: --connect needs an IPv4 address, got '%s'\n", host);
        return VG_EINVAL;
    }
    return VG_OK;
}

static int init(lg_t *lg)
{
    lg->nconn = lg->npub + lg->nsub;
    /* The open-file limit: one descriptor per connection plus a few. */
    uint64_t limit;
    int rc = vg_rlimit_raise_nofile((uint64_t)lg->nconn + 16, &limit);
    if (rc == VG_ELIMIT)
        fprintf(stderr, "mqtt_load: %u connections need an open-file limit of %u; the limit is %llu\n", lg->nconn,
                lg->nconn + 16, (unsigned long long)limit);
    if (rc != VG_OK)
        return rc;
    lg->expect = lg->scenario == S_FANOUT ? lg->nsub : 1;
    lg->mq = (vg_mqttc_cfg_t){
        .level = lg->level,
        .keepalive_s = KEEPALIVE_S,
        .max_packet = MAX_PACKET,
        .out_max = OUT_MAX,
        .scratch = lg->rbuf,
        .scratch_len = sizeof lg->rbuf,
        .ud = lg,
        .on_connack = on_connack,
        .on_suback = on_suback,
        .on_message = on_message,
        .on_ack = on_ack,
        .on_stray_ack = on_stray_ack,
        .on_close = on_close,
    };
    lg->c = vg_calloc(VG_MEM_SIM, lg->nconn, sizeof *lg->c);
    lg->ring = vg_calloc(VG_MEM_SIM, RING_SIZE, sizeof *lg->ring);
    lg->topic = vg_calloc(VG_MEM_SIM, lg->npub, sizeof *lg->topic);
    lg->topic_len = vg_calloc(VG_MEM_SIM, lg->npub, sizeof *lg->topic_len);
    lg->pl = vg_calloc(VG_MEM_SIM, lg->payload, 1);
    if (!lg->c || !lg->ring || !lg->topic || !lg->topic_len || !lg->pl)
        return VG_ENOMEM;
    for (uint32_t i = 0; i < lg->npub; i++) {
        int n;
        if (lg->scenario == S_PUBSUB)
            n = snprintf(lg->topic[i], sizeof lg->topic[i], "bench/%u", i);
        else if (lg->scenario == S_FANOUT)
            n = snprintf(lg->topic[i], sizeof lg->topic[i], "bench/fanout");
        else
            n = snprintf(lg->topic[i], sizeof lg->topic[i], "alerts/0");
        lg->topic_len[i] = (uint32_t)n;
    }
    for (uint32_t i = 0; i < lg->nconn; i++) {
        conn_t *c = &lg->c[i];
        c->idx = i;
        c->is_pub = i < lg->npub;
        vg_mqttc_init(&c->mq, &lg->mq, NULL, 0);
        if (c->is_pub) {
            c->pub = i;
            c->ring = vg_calloc(VG_MEM_SIM, lg->ack_window, sizeof *c->ring);
            if (!c->ring)
                return VG_ENOMEM;
            vg_mqttc_init(&c->mq, &lg->mq, c->ring, (uint16_t)lg->ack_window);
        } else {
            c->last_pseq = vg_calloc(VG_MEM_SIM, lg->npub, sizeof *c->last_pseq);
            if (!c->last_pseq)
                return VG_ENOMEM;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    lg->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    lg->ep = epoll_create1(EPOLL_CLOEXEC);
    if (lg->sfd < 0 || lg->ep < 0)
        return VG_EIO;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = SIG_TAG};
    if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, lg->sfd, &ev) < 0)
        return VG_EIO;
    return VG_OK;
}

static void deinit(lg_t *lg)
{
    if (lg->c) {
        for (uint32_t i = 0; i < lg->nconn; i++) {
            conn_t *c = &lg->c[i];
            if (c->mq.fd >= 0)
                close(c->mq.fd);
            vg_mqttc_deinit(&c->mq);
            vg_free(c->ring);
            vg_free(c->last_pseq);
        }
    }
    vg_free(lg->c);
    vg_free(lg->ring);
    vg_free(lg->topic);
    vg_free(lg->topic_len);
    vg_free(lg->pl);
    if (lg->ep >= 0)
        close(lg->ep);
    if (lg->sfd >= 0)
        close(lg->sfd);
}

static const char *scenario_name(int s)
{
    return s == S_PUBSUB ? "pubsub" : s == S_FANOUT ? "fanout" : "subscale";
}

int main(int argc, char **argv)
{
    static lg_t lg_store;
    lg_t *lg = &lg_store;
    lg->ep = lg->sfd = -1;
    if (parse_args(lg, argc, argv) != VG_OK) {
        usage();
        return 2;
    }
    int status = 1;
    phase_t *phases = NULL;
    bulk_t bulk = {0};
    int rc = init(lg);
    if (rc != VG_OK) {
        fprintf(stderr, "mqtt_load: init failed: %s\n", vg_strerror(rc));
        goto cleanup;
    }
    phases = vg_calloc(VG_MEM_SIM, lg->nsteps, sizeof *phases);
    if (!phases)
        goto cleanup;
    lg->t_begin = vg_clock_mono_ns();
    lg->now = lg->t_begin;
    rc = setup(lg);
    uint32_t done = 0;
    if (rc == VG_OK) {
        fprintf(stderr, "mqtt_load: %u connections set up in %.2f s\n", lg->ready, (double)lg->t_setup / 1e9);
        for (; done < lg->nsteps && !lg->stop; done++) {
            const step_t *st = &lg->steps[done];
            phases[done].st = st;
            phases[done].id = done + 1;
            vg_simhist_init(&phases[done].lat);
            vg_simhist_init(&phases[done].last);
            vg_simhist_init(&phases[done].ack);
            if (st->kind == ST_PHASE) {
                run_phase(lg, &phases[done]);
                const phase_t *ph = &phases[done];
                fprintf(stderr,
                        "mqtt_load: %s: published %" PRIu64 " delivered %" PRIu64 " of %" PRIu64
                        " p50 %.3f p99 %.3f ms\n",
                        st->name, ph->published, ph->delivered, ph->published * lg->expect,
                        vg_simhist_percentile(&ph->lat, 50) / 1000.0, vg_simhist_percentile(&ph->lat, 99) / 1000.0);
            } else if (st->kind == ST_BULK) {
                run_bulk(lg, &bulk);
                fprintf(stderr, "mqtt_load: bulk: %" PRIu64 " filters in %.2f s, RSS %ld -> %ld kB\n", bulk.filters,
                        (double)bulk.seconds_ns / 1e9, bulk.rss_before, bulk.rss_after);
            } else {
                uint64_t until = vg_clock_mono_ns() + (uint64_t)(st->seconds * 1e9);
                while (lg->now < until && !lg->stop)
                    run_once(lg, 50);
            }
        }
        status = lg->stop ? 1 : 0;
    }

    printf("{\"tool\":\"mqtt_load\",\"scenario\":\"%s\",\"mqtt_level\":%u,\"publishers\":%u,\"subscribers\":%u,"
           "\"sub_qos\":%u,\"window\":%u,\"ack_window\":%u,\"payload_bytes\":%u,\"msg_timeout_s\":%.1f,",
           scenario_name(lg->scenario), lg->level, lg->npub, lg->nsub, lg->sub_qos, lg->window, lg->ack_window,
           lg->payload, lg->msg_timeout_s);
    if (lg->scenario == S_SUBSCALE)
        printf("\"filters\":%u,\"filters_per_packet\":%u,", lg->filters, lg->filters_per_packet);
    printf("\"connections\":%u,\"connected\":%u,\"connect_failures\":%u,\"setup_s\":%.3f,\"disconnects\":%" PRIu64
           ",\"protocol_errors\":%" PRIu64 ",\"suback_failures\":%" PRIu64 ",\"interrupted\":%s,",
           lg->nconn, lg->ready, lg->connect_failures, (double)lg->t_setup / 1e9, lg->disconnects, lg->protocol_errors,
           lg->suback_failures, lg->stop ? "true" : "false");
    printf("\"first_error\":");
    if (lg->first_error[0]) {
        putchar('"');
        for (const char *p = lg->first_error; *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p >= 0x20)
                putchar(*p);
        putchar('"');
    } else {
        printf("null");
    }
    printf(",\"steps\":[");
    for (uint32_t i = 0; i < done; i++) {
        if (i)
            printf(",");
        if (lg->steps[i].kind == ST_PHASE)
            print_phase(lg, &phases[i]);
        else if (lg->steps[i].kind == ST_BULK)
            print_bulk(&bulk);
        else
            printf("{\"step\":\"pause\",\"seconds\":%.3f}", lg->steps[i].seconds);
    }
    printf("]}\n");
    fflush(stdout);

cleanup:
    vg_free(phases);
    deinit(lg);
    return status;
}
