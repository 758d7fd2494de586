/* idle_fleet.c — holds N idle MQTT 3.1.1 connections open against a broker,
 * for the idle-cost half of the cost row (e) of bench/run.sh: what a server
 * spends on a connected fleet that publishes nothing.
 *
 * Owns: the client connections (CONNECT, the keepalive's PINGREQs, a
 * DISCONNECT at the end), their connect schedule and retries, and the JSON
 * report on stdout. Does not own the server or any measurement of it:
 * bench/report.py (`idlerun`) samples the server's /proc while this holds the
 * fleet, and stops this with SIGTERM.
 *
 * It does not link vigil's library on purpose (only core/rlimit.c, the
 * shared open-file-limit raise): the three packets it sends and the two it
 * expects are written out below, so a fault in vigil's codec or MQTT client
 * cannot hide on both ends of the measurement, and the tool builds even
 * while src/ is being changed.
 *
 * Keepalive. Each connection sends PINGREQ every --keepalive seconds, as a
 * device with nothing to publish must (MQTT 3.1.1 §3.1.2.10; the server may
 * close it after 1.5 × keepalive of silence). Connection i's first PINGREQ
 * goes out i/N of a keepalive after its CONNACK, so the fleet's pings are
 * spread evenly — N / keepalive per second from the first second on, as with
 * devices that connected at random times — instead of arriving as one burst
 * a keepalive after the connect ramp (which a 30 s measuring window would
 * either miss entirely or catch whole). Every connection has exactly one
 * timer (connect deadline while connecting, next PINGREQ once up), kept in a
 * binary min-heap.
 *
 * Connecting. At most --parallel handshakes (TCP connect + CONNACK) are in
 * flight (mosquitto 2.0 listens with a backlog of 100); a handshake that
 * fails or takes longer than --connect-timeout is retried up to 3 attempts
 * in all, then counted as a connect failure. A connection lost once up is
 * counted, not reconnected: the run reports it and the harness flags it.
 *
 * Output. stderr: a progress line once a second, and one as soon as every
 * connection is up or given up on:
 *   [  12.0s] connected 10000/10000  failed 0  lost 0  pings 1834  pongs 1834
 * stdout: one JSON object at exit. Exit status 0 when every connection came
 * up and none was lost, 1 otherwise (or on a setup error), 2 on a usage
 * error.
 *
 * Build: make build/idle_fleet. Run:
 *   build/idle_fleet --connect 127.0.0.1:1883 --connections 10000 --keepalive 60 [--hold S]
 * The open-file limit is raised to the hard limit; N + 16 descriptors are
 * needed, so past that split the fleet over processes with --id-offset. */
#include "core/err.h"
#include "core/rlimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000ull
#define MAX_ATTEMPTS 3
#define SIG_TAG UINT32_MAX
#define OUT_CAP 96 /* CONNECT with a 64-byte client id is the largest thing queued */
#define MAX_ID_PREFIX 40

enum { C_QUEUED, C_TCP, C_CONNACK, C_READY, C_DEAD };
/* Receive parser phases: fixed header byte, remaining length, body. */
enum { RX_HDR, RX_LEN, RX_BODY };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t attempts;
    bool ping_out;     /* a PINGREQ awaits its PINGRESP */
    bool want_out;     /* EPOLLOUT armed */
    uint32_t heap_pos; /* UINT32_MAX: no timer */
    uint64_t timer_ns; /* connect deadline, or the next PINGREQ */
    /* receive parser (resumable, byte by byte: packets here are 2-4 bytes) */
    uint8_t rx_phase, rx_type, rx_shift, rx_nbody;
    uint8_t rx_body[2];
    uint32_t rx_rem, rx_got;
    /* bytes not yet written */
    uint8_t out[OUT_CAP];
    uint8_t out_off, out_len;
} conn_t;

typedef struct {
    struct sockaddr_in addr;
    uint32_t n, id_offset, parallel;
    uint16_t keepalive;
    double hold_s, connect_timeout_s;
    char id_prefix[MAX_ID_PREFIX + 1];
    const char *target;
    int ep, sfd;
    conn_t *c;
    uint32_t *heap, nheap;
    uint32_t *queue, q_head, q_len; /* connections waiting for a handshake slot (ring of n) */
    uint32_t handshakes, ready, failed, ready_max;
    uint64_t retries, lost, refused, pings, pongs, ping_timeouts, unexpected;
    uint64_t t0, t_setup, t_end;
    bool setup_done, interrupted;
} fleet_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- timer heap */

static void heap_swap(fleet_t *f, uint32_t a, uint32_t b)
{
    uint32_t x = f->heap[a];
    f->heap[a] = f->heap[b];
    f->heap[b] = x;
    f->c[f->heap[a]].heap_pos = a;
    f->c[f->heap[b]].heap_pos = b;
}

static bool heap_less(const fleet_t *f, uint32_t a, uint32_t b)
{
    return f->c[f->heap[a]].timer_ns < f->c[f->heap[b]].timer_ns;
}

static void heap_up(fleet_t *f, uint32_t i)
{
    while (i > 0 && heap_less(f, i, (i - 1) / 2)) {
        heap_swap(f, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(fleet_t *f, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < f->nheap && heap_less(f, l, m))
            m = l;
        if (r < f->nheap && heap_less(f, r, m))
            m = r;
        if (m == i)
            return;
        heap_swap(f, i, m);
        i = m;
    }
}

static void timer_clear(fleet_t *f, uint32_t idx)
{
    uint32_t i = f->c[idx].heap_pos;
    if (i == UINT32_MAX)
        return;
    f->c[idx].heap_pos = UINT32_MAX;
    if (--f->nheap == i)
        return;
    f->heap[i] = f->heap[f->nheap];
    f->c[f->heap[i]].heap_pos = i;
    heap_up(f, i);
    heap_down(f, f->c[f->heap[i]].heap_pos);
}

static void timer_set(fleet_t *f, uint32_t idx, uint64_t at)
{
    conn_t *c = &f->c[idx];
    if (c->heap_pos == UINT32_MAX) {
        c->heap_pos = f->nheap;
        f->heap[f->nheap++] = idx;
    }
    c->timer_ns = at;
    heap_up(f, c->heap_pos);
    heap_down(f, c->heap_pos);
}

/* ---------------------------------------------------------------- output */

/* Writes what is queued; arms EPOLLOUT only for what is left. Returns 0, or
 * -1 when the socket failed. */
static int flush_out(fleet_t *f, uint32_t idx)
{
    conn_t *c = &f->c[idx];
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, (size_t)(c->out_len - c->out_off), MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off = (uint8_t)(c->out_off + w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    bool want = c->out_len > 0 || c->state == C_TCP;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = idx};
        if (epoll_ctl(f->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            return -1;
        c->want_out = want;
    }
    return 0;
}

static bool queue_bytes(conn_t *c, const uint8_t *p, size_t n)
{
    if (c->out_len + n > OUT_CAP)
        return false;
    memcpy(c->out + c->out_len, p, n);
    c->out_len = (uint8_t)(c->out_len + n);
    return true;
}

/* MQTT 3.1.1 CONNECT (§3.1): clean session, keepalive, client id only. */
static bool queue_connect(fleet_t *f, uint32_t idx)
{
    char id[MAX_ID_PREFIX + 16];
    int idlen = snprintf(id, sizeof id, "%s%" PRIu32, f->id_prefix, f->id_offset + idx);
    uint8_t p[OUT_CAP];
    size_t rem = 10 + 2 + (size_t)idlen, k = 0;
    p[k++] = 0x10;
    p[k++] = (uint8_t)rem; /* < 128: one length byte */
    const uint8_t vh[10] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, (uint8_t)(f->keepalive >> 8), (uint8_t)f->keepalive};
    memcpy(p + k, vh, sizeof vh);
    k += sizeof vh;
    p[k++] = (uint8_t)(idlen >> 8);
    p[k++] = (uint8_t)idlen;
    memcpy(p + k, id, (size_t)idlen);
    k += (size_t)idlen;
    return queue_bytes(&f->c[idx], p, k);
}

/* ---------------------------------------------------------------- connections */

static void close_conn(fleet_t *f, uint32_t idx)
{
    conn_t *c = &f->c[idx];
    if (c->fd >= 0) {
        epoll_ctl(f->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    timer_clear(f, idx);
}

static void enqueue(fleet_t *f, uint32_t idx)
{
    f->queue[(f->q_head + f->q_len) % f->n] = idx;
    f->q_len++;
    f->c[idx].state = C_QUEUED;
}

/* A handshake failed (refused, timed out, closed before CONNACK): retry it
 * later, or count the connection as failed. */
static void handshake_failed(fleet_t *f, uint32_t idx)
{
    close_conn(f, idx);
    f->handshakes--;
    if (f->c[idx].attempts < MAX_ATTEMPTS) {
        f->retries++;
        enqueue(f, idx);
    } else {
        f->c[idx].state = C_DEAD;
        f->failed++;
    }
}

/* Connection lost after it was up: counted, not reconnected. */
static void lost(fleet_t *f, uint32_t idx)
{
    close_conn(f, idx);
    f->c[idx].state = C_DEAD;
    f->ready--;
    f->lost++;
}

static void start_handshake(fleet_t *f, uint32_t idx, uint64_t now)
{
    conn_t *c = &f->c[idx];
    c->attempts++;
    c->rx_phase = RX_HDR;
    c->out_off = c->out_len = 0;
    c->ping_out = false;
    f->handshakes++;
    c->state = C_TCP;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        handshake_failed(f, idx);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = idx};
    c->want_out = true;
    if ((connect(c->fd, (const struct sockaddr *)&f->addr, sizeof f->addr) < 0 && errno != EINPROGRESS) ||
        epoll_ctl(f->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        handshake_failed(f, idx);
        return;
    }
    timer_set(f, idx, now + (uint64_t)(f->connect_timeout_s * 1e9));
}

static void fill_handshakes(fleet_t *f, uint64_t now)
{
    while (f->q_len > 0 && f->handshakes < f->parallel) {
        uint32_t idx = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % f->n;
        f->q_len--;
        start_handshake(f, idx, now);
    }
}

static void on_packet(fleet_t *f, uint32_t idx, uint64_t now)
{
    conn_t *c = &f->c[idx];
    uint8_t type = c->rx_type >> 4;
    if (type == 2 && c->state == C_CONNACK && c->rx_rem == 2) { /* CONNACK */
        f->handshakes--;
        if (c->rx_body[1] != 0) {
            f->refused++;
            close_conn(f, idx);
            c->state = C_DEAD;
            f->failed++;
            return;
        }
        c->state = C_READY;
        f->ready++;
        if (f->ready > f->ready_max)
            f->ready_max = f->ready;
        /* first PINGREQ (idx + 1) / N of a keepalive from now: see the top */
        timer_set(f, idx, now + (uint64_t)((double)f->keepalive * 1e9 * ((double)idx + 1) / f->n));
    } else if (type == 13 && c->state == C_READY && c->rx_rem == 0) { /* PINGRESP */
        if (c->ping_out)
            f->pongs++;
        else
            f->unexpected++;
        c->ping_out = false;
    } else {
        f->unexpected++;
    }
}

/* Feeds received bytes through the connection's packet parser. */
static void on_bytes(fleet_t *f, uint32_t idx, const uint8_t *p, size_t n, uint64_t now)
{
    conn_t *c = &f->c[idx];
    for (size_t i = 0; i < n && c->fd >= 0; i++) {
        uint8_t b = p[i];
        switch (c->rx_phase) {
        case RX_HDR:
            c->rx_type = b;
            c->rx_rem = 0;
            c->rx_shift = 0;
            c->rx_got = 0;
            c->rx_nbody = 0;
            c->rx_phase = RX_LEN;
            break;
        case RX_LEN:
            c->rx_rem |= (uint32_t)(b & 0x7f) << c->rx_shift;
            c->rx_shift = (uint8_t)(c->rx_shift + 7);
            if (b & 0x80) {
                if (c->rx_shift > 21) { /* more than 4 length bytes: malformed */
                    f->unexpected++;
                    c->rx_phase = RX_HDR;
                    if (c->state == C_READY)
                        lost(f, idx);
                    else
                        handshake_failed(f, idx);
                    return;
                }
                break;
            }
            c->rx_phase = RX_BODY;
            if (c->rx_rem == 0) {
                c->rx_phase = RX_HDR;
                on_packet(f, idx, now);
            }
            break;
        default:
            if (c->rx_nbody < sizeof c->rx_body)
                c->rx_body[c->rx_nbody++] = b;
            if (++c->rx_got == c->rx_rem) {
                c->rx_phase = RX_HDR;
                on_packet(f, idx, now);
            }
            break;
        }
    }
}

static void on_event(fleet_t *f, uint32_t idx, uint32_t events, uint64_t now)
{
    conn_t *c = &f->c[idx];
    if (c->fd < 0)
        return;
    if (c->state == C_TCP && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            handshake_failed(f, idx);
            return;
        }
        c->state = C_CONNACK;
        if (!queue_connect(f, idx) || flush_out(f, idx) < 0) {
            handshake_failed(f, idx);
            return;
        }
    } else if (events & EPOLLOUT) {
        if (flush_out(f, idx) < 0) {
            if (c->state == C_READY)
                lost(f, idx);
            else
                handshake_failed(f, idx);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    uint8_t buf[512];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0) {
            on_bytes(f, idx, buf, (size_t)r, now);
            if (c->fd < 0)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or error */
        if (c->state == C_READY)
            lost(f, idx);
        else
            handshake_failed(f, idx);
        return;
    }
}

/* A connection's timer: a handshake past its deadline, or time for the
 * keepalive's PINGREQ. */
static void on_timer(fleet_t *f, uint32_t idx, uint64_t now)
{
    conn_t *c = &f->c[idx];
    if (c->state == C_TCP || c->state == C_CONNACK) {
        handshake_failed(f, idx);
        return;
    }
    if (c->state != C_READY) {
        timer_clear(f, idx);
        return;
    }
    if (c->ping_out)
        f->ping_timeouts++; /* no PINGRESP within a whole keepalive */
    static const uint8_t pingreq[2] = {0xc0, 0x00};
    if (!queue_bytes(c, pingreq, sizeof pingreq) || flush_out(f, idx) < 0) {
        lost(f, idx);
        return;
    }
    c->ping_out = true;
    f->pings++;
    timer_set(f, idx, now + (uint64_t)f->keepalive * NS);
}

static void progress(const fleet_t *f, uint64_t now)
{
    fprintf(stderr,
            "[%6.1fs] connected %" PRIu32 "/%" PRIu32 "  failed %" PRIu32 "  lost %" PRIu64 "  pings %" PRIu64
            "  pongs %" PRIu64 "\n",
            (double)(now - f->t0) / 1e9, f->ready, f->n, f->failed, f->lost, f->pings, f->pongs);
}

/* Sends DISCONNECT on every connection that is up and closes them all. */
static void shut_down(fleet_t *f)
{
    static const uint8_t disconnect[2] = {0xe0, 0x00};
    for (uint32_t i = 0; i < f->n; i++) {
        conn_t *c = &f->c[i];
        if (c->fd < 0)
            continue;
        if (c->state == C_READY)
            (void)send(c->fd, disconnect, sizeof disconnect, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(c->fd);
        c->fd = -1;
    }
}

static void report(const fleet_t *f)
{
    uint64_t end = f->t_end ? f->t_end : now_ns();
    printf("{\"tool\":\"idle_fleet\",\"connections\":%" PRIu32 ",\"connected\":%" PRIu32 ",\"connected_max\":%" PRIu32
           ",\"connect_failures\":%" PRIu32 ",\"connect_retries\":%" PRIu64 ",\"connack_refused\":%" PRIu64
           ",\"setup_s\":%.3f,\"held_s\":%.3f,\"keepalive_s\":%u,\"disconnects\":%" PRIu64 ",\"pings_sent\":%" PRIu64
           ",\"pongs\":%" PRIu64 ",\"ping_timeouts\":%" PRIu64 ",\"unexpected_packets\":%" PRIu64
           ",\"interrupted\":%s}\n",
           f->n, f->ready, f->ready_max, f->failed, f->retries, f->refused,
           f->setup_done ? (double)(f->t_setup - f->t0) / 1e9 : -1.0,
           f->setup_done ? (double)(end - f->t_setup) / 1e9 : 0.0, f->keepalive, f->lost, f->pings, f->pongs,
           f->ping_timeouts, f->unexpected, f->interrupted ? "true" : "false");
    fflush(stdout);
}

/* ---------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: idle_fleet --connect HOST:PORT --connections N [--keepalive S (60)] [--hold S (0: until "
                    "SIGTERM)]\n"
                    "                  [--parallel N (100)] [--connect-timeout S (10)] [--id-prefix P (idle-)] "
                    "[--id-offset N (0)]\n");
    return 2;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static int parse_args(fleet_t *f, int argc, char **argv)
{
    const char *target = NULL;
    uint32_t ka = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "idle_fleet: %s needs a value\n", a);
            return -1;
        }
        bool ok = true;
        if (strcmp(a, "--connect") == 0)
            target = v;
        else if (strcmp(a, "--connections") == 0)
            ok = parse_u32(v, 1, 10000000, &f->n);
        else if (strcmp(a, "--keepalive") == 0)
            ok = parse_u32(v, 1, 65535, &ka);
        else if (strcmp(a, "--hold") == 0)
            ok = parse_double(v, 0, 1e7, &f->hold_s);
        else if (strcmp(a, "--parallel") == 0)
            ok = parse_u32(v, 1, 100000, &f->parallel);
        else if (strcmp(a, "--connect-timeout") == 0)
            ok = parse_double(v, 0.1, 3600, &f->connect_timeout_s);
        else if (strcmp(a, "--id-offset") == 0)
            ok = parse_u32(v, 0, 1000000000, &f->id_offset);
        else if (strcmp(a, "--id-prefix") == 0) {
            ok = strlen(v) <= MAX_ID_PREFIX;
            if (ok)
                snprintf(f->id_prefix, sizeof f->id_prefix, "%s", v);
        } else {
            fprintf(stderr, "idle_fleet: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "idle_fleet: bad value for %s: '%s'\n", a, v);
            return -1;
        }
        i++;
    }
    if (!target || !f->n)
        return -1;
    f->keepalive = (uint16_t)ka;
    f->target = target;
    const char *colon = strrchr(target, ':');
    char host[64];
    uint32_t port;
    if (!colon || (size_t)(colon - target) >= sizeof host || !parse_u32(colon + 1, 1, 65535, &port)) {
        fprintf(stderr, "idle_fleet: --connect: expected IPv4:PORT, got '%s'\n", target);
        return -1;
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    f->addr.sin_family = AF_INET;
    f->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &f->addr.sin_addr) != 1) {
        fprintf(stderr, "idle_fleet: --connect: '%s' is not an IPv4 address\n", host);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    fleet_t fl = {.parallel = 100, .connect_timeout_s = 10, .ep = -1, .sfd = -1};
    fleet_t *f = &fl;
    int rc = 1;
    snprintf(f->id_prefix, sizeof f->id_prefix, "idle-");
    if (parse_args(f, argc, argv) < 0)
        return usage();

    /* Every connection is a descriptor: raise the soft limit to the hard one. */
    uint64_t limit;
    if (vg_rlimit_raise_nofile((uint64_t)f->n + 16, &limit) == VG_ELIMIT) {
        fprintf(stderr,
                "idle_fleet: %" PRIu32 " connections need %" PRIu32 " open files, the limit is %llu: split the "
                "fleet over processes (--connections, --id-offset)\n",
                f->n, f->n + 16, (unsigned long long)limit);
        return 1;
    }

    f->c = calloc(f->n, sizeof *f->c);
    f->heap = calloc(f->n, sizeof *f->heap);
    f->queue = calloc(f->n, sizeof *f->queue);
    struct epoll_event *evs = calloc(1024, sizeof *evs);
    if (!f->c || !f->heap || !f->queue || !evs) {
        fprintf(stderr, "idle_fleet: out of memory\n");
        goto cleanup;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    f->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    f->ep = epoll_create1(EPOLL_CLOEXEC);
    if (f->sfd < 0 || f->ep < 0) {
        fprintf(stderr, "idle_fleet: signalfd/epoll: %s\n", strerror(errno));
        goto cleanup;
    }
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = SIG_TAG};
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, f->sfd, &sev) < 0) {
        fprintf(stderr, "idle_fleet: epoll_ctl: %s\n", strerror(errno));
        goto cleanup;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        f->c[i].fd = -1;
        f->c[i].heap_pos = UINT32_MAX;
        enqueue(f, i);
    }

    f->t0 = now_ns();
    uint64_t next_progress = f->t0 + NS;
    fprintf(stderr, "idle_fleet: %" PRIu32 " connections -> %s, keepalive %u s\n", f->n, f->target, f->keepalive);
    fill_handshakes(f, f->t0);
    while (!f->interrupted) {
        uint64_t now = now_ns();
        uint64_t wake = next_progress;
        if (f->nheap && f->c[f->heap[0]].timer_ns < wake)
            wake = f->c[f->heap[0]].timer_ns;
        if (f->setup_done && f->hold_s > 0) {
            uint64_t stop = f->t_setup + (uint64_t)(f->hold_s * 1e9);
            if (now >= stop)
                break;
            if (stop < wake)
                wake = stop;
        }
        int timeout = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        int n = epoll_wait(f->ep, evs, 1024, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "idle_fleet: epoll_wait: %s\n", strerror(errno));
            break;
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == SIG_TAG) {
                f->interrupted = true;
                continue;
            }
            on_event(f, evs[i].data.u32, evs[i].events, now);
        }
        while (f->nheap && f->c[f->heap[0]].timer_ns <= now)
            on_timer(f, f->heap[0], now);
        fill_handshakes(f, now);
        if (!f->setup_done && f->q_len == 0 && f->handshakes == 0) {
            f->setup_done = true;
            f->t_setup = now;
            progress(f, now);
            fprintf(stderr,
                    "idle_fleet: all set up: %" PRIu32 " of %" PRIu32 " connected in %.2f s, %" PRIu32 " failed\n",
                    f->ready, f->n, (double)(now - f->t0) / 1e9, f->failed);
        }
        if (now >= next_progress) {
            progress(f, now);
            while (next_progress <= now)
                next_progress += NS;
        }
    }
    f->t_end = now_ns();
    progress(f, f->t_end);
    shut_down(f);
    report(f);
    rc = (f->setup_done && f->failed == 0 && f->lost == 0) ? 0 : 1;

cleanup:
    if (f->ep >= 0)
        close(f->ep);
    if (f->sfd >= 0)
        close(f->sfd);
    free(evs);
    free(f->queue);
    free(f->heap);
    free(f->c);
    return rc;
}
