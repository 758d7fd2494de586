/* sim.c — see sim.h.
 *
 * The parent parses options, resolves the broker once, blocks SIGINT/SIGTERM
 * (so that they arrive through signalfds, here and in the workers, and no
 * handler or global flag is needed), forks one worker per slice of the fleet
 * and then only reads their pipes: one cumulative snapshot per worker per
 * second, from which it prints the progress line, and one final message,
 * from which it builds the report. Workers are processes rather than
 * threads because the fleet may need more sockets than one process may
 * open (a hard limit of 20,000 here). */
#include "sim/sim.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/num.h"
#include "mqtt/codec.h"
#include "sim/device.h"
#include "sim/hist.h"
#include "sim/payload.h"
#include "sim/report.h"
#include "sim/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define MOD "sim"
#define NS 1000000000ull
#define PER_WORKER 15000u /* connections one worker holds by default, under the 20,000 fd limit */
#define MAX_WORKERS 64
#define MAX_DEVICES 10000000u

typedef struct {
    char target[300];
    char host[256];
    char port[8];
} target_t;

typedef struct {
    target_t broker;
    target_t alerts; /* the alert subscriber's broker address */
    bool connect_given, alerts_given, alerts_off;
    bool tls;
    const char *ca, *cert_dir;
    double reconnect_s;
    uint32_t devices;
    double interval_s, duration_s, anomaly_rate, drain_s, connect_rate, sustain_s;
    int qos;
    uint64_t seed;
    bool json;
    const char *topic;
    const char *prefix;
    unsigned workers; /* 0: choose */
} opts_t;

typedef struct {
    pid_t pid;
    int fd; /* read end of its pipe, -1 once closed */
    uint32_t first, count;
    bool final;
    bool reported; /* at least one message arrived */
    uint8_t *buf;
    size_t len, cap;
    vg_simreport_t *rep;
} wstate_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil sim [options]\n"
               "Simulates a fleet of wearables, one MQTT connection each, and reports throughput,\n"
               "PUBACK and alert latency and how many injected anomalies were detected.\n"
               "\n"
               "  --connect HOST:PORT   broker address (default 127.0.0.1:1883, with --tls 127.0.0.1:8883)\n"
               "  --tls                 devices connect over TLS; the server's certificate must name HOST\n"
               "  --ca FILE             CA certificate(s) to verify the server with (PEM; default: the system's)\n"
               "  --cert-dir DIR        device <id> presents DIR/<id>.crt with key DIR/<id>.key (as written\n"
               "                        by 'vigil device create --out DIR'; default: no client certificate)\n"
               "  --alerts-connect HOST:PORT|off\n"
               "                        where the alerts/# subscriber connects, over plain MQTT (default: the\n"
               "                        broker address; with --tls its host on port 1883, the server's plain\n"
               "                        loopback listener)\n"
               "  --reconnect S         a device whose connection ended (or failed) connects again S seconds\n"
               "                        later, offering its last TLS session (default 0: never)\n"
               "  --devices N           devices (default 1000)\n"
               "  --interval S          seconds between events per device (default 5)\n"
               "  --duration S          seconds of sending (default 60: room for anomaly episodes)\n"
               "  --qos 0|1             QoS of the events (default 1)\n"
               "  --anomaly-rate R      probability per device per minute of an anomaly episode (default 0.05)\n"
               "  --extreme-sustain S   the server's extreme_sustain_s: an episode (185-200 or 28-33 bpm)\n"
               "                        lasts S plus two intervals of event time (default 30)\n"
               "  --seed N              random seed (default 1)\n"
               "  --json                final report as one JSON object on stdout\n"
               "  --topic T             topic of the events (default iot/wearable/data)\n"
               "  --workers N           worker processes (default: one per 15,000 devices)\n"
               "  --prefix P            device id prefix (default sim-)\n"
               "  --connect-rate N      new connections per second per worker (default 2000)\n"
               "  --drain S             seconds to wait for acks and alerts after the last publish (default 3)\n"
               "  --help                this text\n"
               "Exit status: 0 the run completed, 1 nothing could connect, 2 usage error.\n");
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
    double v;
    if (vg_num_parse_double(s, &v) != VG_OK || v < lo || v > hi) {
        fprintf(stderr, "sim: --%s: expected a number in [%g, %g], got '%s'\n", name, lo, hi, s);
        return VG_EINVAL;
    }
    *out = v;
    return VG_OK;
}

static int parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi) {
        fprintf(stderr, "sim: --%s: expected an integer in [%llu, %llu], got '%s'\n", name, (unsigned long long)lo,
                (unsigned long long)hi, s);
        return VG_EINVAL;
    }
    *out = v;
    return VG_OK;
}

/* HOST:PORT, [V6]:PORT. */
static int parse_target(target_t *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(s) >= sizeof o->target)
        goto bad;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']')
            goto bad;
        h++;
        hlen -= 2;
    }
    uint64_t port;
    if (hlen == 0 || hlen >= sizeof o->host || parse_u64("connect", colon + 1, 1, 65535, &port) != VG_OK)
        goto bad;
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    snprintf(o->port, sizeof o->port, "%u", (unsigned)port);
    snprintf(o->target, sizeof o->target, "%s", s);
    return VG_OK;
bad:
    fprintf(stderr, "sim: expected HOST:PORT, got '%s'\n", s);
    return VG_EINVAL;
}

/* Returns VG_OK, 1 for --help, or VG_EINVAL (message printed). */
static int parse_opts(int argc, char **argv, opts_t *o)
{
    enum {
        O_CONNECT = 256,
        O_DEVICES,
        O_INTERVAL,
        O_DURATION,
        O_QOS,
        O_RATE,
        O_SEED,
        O_JSON,
        O_TOPIC,
        O_WORKERS,
        O_PREFIX,
        O_CRATE,
        O_DRAIN,
        O_SUSTAIN,
        O_TLS,
        O_CA,
        O_CERT_DIR,
        O_ALERTS,
        O_RECONNECT,
        O_HELP
    };
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, O_CONNECT},
        {"devices", required_argument, NULL, O_DEVICES},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"duration", required_argument, NULL, O_DURATION},
        {"qos", required_argument, NULL, O_QOS},
        {"anomaly-rate", required_argument, NULL, O_RATE},
        {"seed", required_argument, NULL, O_SEED},
        {"json", no_argument, NULL, O_JSON},
        {"topic", required_argument, NULL, O_TOPIC},
        {"workers", required_argument, NULL, O_WORKERS},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"connect-rate", required_argument, NULL, O_CRATE},
        {"drain", required_argument, NULL, O_DRAIN},
        {"extreme-sustain", required_argument, NULL, O_SUSTAIN},
        {"tls", no_argument, NULL, O_TLS},
        {"ca", required_argument, NULL, O_CA},
        {"cert-dir", required_argument, NULL, O_CERT_DIR},
        {"alerts-connect", required_argument, NULL, O_ALERTS},
        {"reconnect", required_argument, NULL, O_RECONNECT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (opts_t){
        .devices = 1000,
        .interval_s = 5,
        .duration_s = 60,
        .anomaly_rate = 0.05,
        .drain_s = 3,
        .sustain_s = VG_SIMDEV_SUSTAIN_S,
        .connect_rate = 2000,
        .qos = 1,
        .seed = 1,
        .topic = "iot/wearable/data",
        .prefix = "sim-",
    };
    if (parse_target(&o->broker, "127.0.0.1:1883") != VG_OK)
        return VG_EINVAL;
    optind = 0; /* GNU: full re-initialisation, in case the caller used getopt too */
    int c, rc = VG_OK;
    uint64_t u;
    while (rc == VG_OK && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_CONNECT:
            rc = parse_target(&o->broker, optarg);
            o->connect_given = true;
            break;
        case O_TLS:
            o->tls = true;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_CERT_DIR:
            o->cert_dir = optarg;
            break;
        case O_ALERTS:
            o->alerts_given = true;
            o->alerts_off = strcmp(optarg, "off") == 0;
            if (!o->alerts_off)
                rc = parse_target(&o->alerts, optarg);
            break;
        case O_RECONNECT:
            rc = parse_double("reconnect", optarg, 0, 86400, &o->reconnect_s);
            break;
        case O_DEVICES:
            rc = parse_u64("devices", optarg, 1, MAX_DEVICES, &u);
            o->devices = (uint32_t)u;
            break;
        case O_INTERVAL:
            rc = parse_double("interval", optarg, 0.00001, 86400, &o->interval_s);
            break;
        case O_DURATION:
            rc = parse_double("duration", optarg, 0.001, 30 * 86400.0, &o->duration_s);
            break;
        case O_QOS:
            rc = parse_u64("qos", optarg, 0, 1, &u);
            o->qos = (int)u;
            break;
        case O_RATE:
            rc = parse_double("anomaly-rate", optarg, 0, 1, &o->anomaly_rate);
            break;
        case O_SEED:
            rc = parse_u64("seed", optarg, 0, UINT64_MAX, &o->seed);
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_TOPIC:
            o->topic = optarg;
            if (strlen(optarg) > VG_SIMPAYLOAD_MAX_TOPIC ||
                !vg_mqtt_topic_valid((const uint8_t *)optarg, strlen(optarg))) {
                fprintf(stderr, "sim: --topic: '%s' is not a valid MQTT topic name\n", optarg);
                rc = VG_EINVAL;
            }
            break;
        case O_WORKERS:
            rc = parse_u64("workers", optarg, 1, MAX_WORKERS, &u);
            o->workers = (unsigned)u;
            break;
        case O_PREFIX:
            o->prefix = optarg;
            if (!vg_simpayload_prefix_valid(optarg)) {
                fprintf(stderr,
                        "sim: --prefix: at most %d printable characters without space, quotes, "
                        "backslash, '/', '+' or '#'\n",
                        VG_SIMPAYLOAD_MAX_PREFIX);
                rc = VG_EINVAL;
            }
            break;
        case O_CRATE:
            rc = parse_double("connect-rate", optarg, 1, 1e6, &o->connect_rate);
            break;
        case O_DRAIN:
            rc = parse_double("drain", optarg, 0, 3600, &o->drain_s);
            break;
        case O_SUSTAIN: /* the range of extreme_sustain_s (src/detect/detect.c) */
            rc = parse_double("extreme-sustain", optarg, 1, 3600, &o->sustain_s);
            break;
        case O_HELP:
            return 1;
        default: /* getopt printed why */
            rc = VG_EINVAL;
        }
    }
    if (rc == VG_OK && optind < argc) {
        fprintf(stderr, "sim: unexpected argument '%s'\n", argv[optind]);
        rc = VG_EINVAL;
    }
    if (rc == VG_OK && (o->ca || o->cert_dir) && !o->tls) {
        fprintf(stderr, "sim: --ca and --cert-dir need --tls\n");
        rc = VG_EINVAL;
    }
    if (rc == VG_OK && o->ca && access(o->ca, R_OK) != 0) {
        fprintf(stderr, "sim: --ca: cannot read %s: %s\n", o->ca, strerror(errno));
        rc = VG_EINVAL;
    }
    if (rc == VG_OK && o->cert_dir && access(o->cert_dir, R_OK | X_OK) != 0) {
        fprintf(stderr, "sim: --cert-dir: cannot read %s: %s\n", o->cert_dir, strerror(errno));
        rc = VG_EINVAL;
    }
    if (rc != VG_OK)
        return rc;
    if (o->tls && !o->connect_given)
        (void)parse_target(&o->broker, "127.0.0.1:8883");
    if (!o->alerts_given) {
        /* The subscriber is an observer without a device certificate: over
         * TLS it goes to the same host's plain listener. */
        o->alerts = o->broker;
        if (o->tls) {
            snprintf(o->alerts.port, sizeof o->alerts.port, "1883");
            bool v6 = strchr(o->broker.host, ':') != NULL;
            snprintf(o->alerts.target, sizeof o->alerts.target, "%s%s%s:1883", v6 ? "[" : "", o->broker.host,
                     v6 ? "]" : "");
        }
    }
    if (!o->workers)
        o->workers = (unsigned)((o->devices + PER_WORKER - 1) / PER_WORKER);
    if (o->workers > MAX_WORKERS)
        o->workers = MAX_WORKERS;
    if (o->workers > o->devices)
        o->workers = o->devices;
    return VG_OK;
}

/* Resolves t into addr/len; *loopback4 (may be NULL): an IPv4 loopback address. */
static int resolve_one(const target_t *t, struct sockaddr_storage *addr, socklen_t *len, int *loopback4)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "sim: cannot resolve %s: %s\n", t->host, gai_strerror(rc));
        return VG_EINVAL;
    }
    /* Prefer IPv4: "localhost" should get the loopback source spreading. */
    const struct addrinfo *ai = res;
    for (const struct addrinfo *p = res; p; p = p->ai_next) {
        if (p->ai_family == AF_INET) {
            ai = p;
            break;
        }
    }
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    if (loopback4)
        *loopback4 = ai->ai_family == AF_INET &&
                     (ntohl(((const struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    freeaddrinfo(res);
    return VG_OK;
}

static int resolve(const opts_t *o, vg_simworker_cfg_t *cfg)
{
    if (resolve_one(&o->broker, &cfg->addr, &cfg->addr_len, &cfg->spread_sources) != VG_OK)
        return VG_EINVAL;
    if (o->alerts_off)
        return VG_OK;
    return resolve_one(&o->alerts, &cfg->sub_addr, &cfg->sub_addr_len, NULL);
}

/* Child side of the fork: never returns. */
static void run_child(const vg_simworker_cfg_t *cfg, pid_t parent)
{
    /* A worker orphaned by a crashed parent stops instead of loading the
     * server forever. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    int rc = vg_simworker_run(cfg);
    _exit(rc == VG_OK ? 0 : 1);
}

/* Reads what a worker's pipe holds; returns false at EOF or error. */
static bool pump(wstate_t *ws)
{
    if (ws->cap - ws->len < 65536) {
        size_t cap = ws->cap ? ws->cap * 2 : 262144;
        uint8_t *p = vg_realloc(VG_MEM_SIM, ws->buf, cap);
        if (!p)
            return false;
        ws->buf = p;
        ws->cap = cap;
    }
    ssize_t r = read(ws->fd, ws->buf + ws->len, ws->cap - ws->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (r <= 0)
        return false;
    ws->len += (size_t)r;
    size_t off = 0, used;
    int kind;
    for (;;) {
        int rc = vg_simreport_read(ws->buf + off, ws->len - off, &used, &kind, ws->rep);
        if (rc == VG_AGAIN)
            break;
        if (rc != VG_OK) {
            VG_ERROR(MOD, "unreadable report from worker %d: %s", (int)ws->pid, vg_strerror(rc));
            return false;
        }
        off += used;
        ws->reported = true;
        if (kind == VG_SIMREPORT_FINAL)
            ws->final = true;
    }
    memmove(ws->buf, ws->buf + off, ws->len - off);
    ws->len -= off;
    return true;
}

static void progress_line(const wstate_t *ws, unsigned n, uint32_t devices, uint64_t elapsed_ns, uint64_t *prev_sent,
                          uint64_t *prev_ns, vg_simhist_t *scratch)
{
    vg_simcounters_t t = {0};
    vg_simhist_init(scratch);
    for (unsigned k = 0; k < n; k++) {
        if (!ws[k].reported)
            continue;
        const vg_simcounters_t *c = &ws[k].rep->c;
        t.connected += c->connected;
        t.sent += c->sent;
        t.acked += c->acked;
        t.alerts_received += c->alerts_received;
        t.disconnects += c->disconnects;
        t.connect_failures += c->connect_failures;
        t.reconnects += c->reconnects;
        vg_simhist_merge(scratch, &ws[k].rep->ack);
    }
    /* With --reconnect a device can connect many times: the line says how
     * many are up now, not how many CONNACKs there were. */
    if (t.reconnects)
        t.connected -= t.disconnects < t.connected ? t.disconnects : t.connected;
    double dt = (double)(elapsed_ns - *prev_ns) / 1e9;
    double rate = dt > 0 ? (double)(t.sent - *prev_sent) / dt : 0;
    *prev_sent = t.sent;
    *prev_ns = elapsed_ns;
    fprintf(stderr, "[%6.1fs] connected %llu/%u", (double)elapsed_ns / 1e9, (unsigned long long)t.connected, devices);
    if (t.connect_failures || t.disconnects)
        fprintf(stderr, " (failed %llu, lost %llu)", (unsigned long long)t.connect_failures,
                (unsigned long long)t.disconnects);
    fprintf(stderr, "  sent %llu  acked %llu  rate %.0f/s  alerts %llu  p99 ack %.3f ms\n", (unsigned long long)t.sent,
            (unsigned long long)t.acked, rate, (unsigned long long)t.alerts_received,
            vg_simhist_percentile(scratch, 99) / 1000.0);
}

/* Forwards a Ctrl-C / SIGTERM to the workers (they may already have their
 * own copy from the terminal; a worker treats copies that arrive together
 * as one). */
static void forward_signals(int sfd, const wstate_t *ws, unsigned n)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        for (unsigned k = 0; k < n; k++)
            if (ws[k].pid > 0 && ws[k].fd >= 0)
                kill(ws[k].pid, (int)si.ssi_signo);
    }
}

int vg_sim_main(int argc, char **argv)
{
    opts_t o;
    vg_simworker_cfg_t base = {0};
    wstate_t *ws = NULL;
    vg_simreport_t *total = NULL;
    vg_simhist_t *scratch = NULL;
    int sfd = -1, exit_code = 1;
    sigset_t block, old;
    bool masked = false;
    unsigned started = 0;

    int prc = parse_opts(argc, argv, &o);
    if (prc == 1) {
        usage(stdout);
        return 0;
    }
    if (prc != VG_OK) {
        fprintf(stderr, "try 'vigil sim --help'\n");
        return 2;
    }
    if (resolve(&o, &base) != VG_OK)
        return 1;

    struct rlimit rl;
    uint32_t per = (o.devices + o.workers - 1) / o.workers;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && per + 32 > rl.rlim_max)
        VG_WARN(MOD, "%u devices per worker exceed the open-file limit (%llu); use more --workers", per,
                (unsigned long long)rl.rlim_max);

    ws = vg_calloc(VG_MEM_SIM, o.workers, sizeof *ws);
    total = vg_simreport_new();
    scratch = vg_malloc(VG_MEM_SIM, sizeof *scratch);
    if (!ws || !total || !scratch) {
        VG_ERROR(MOD, "out of memory");
        goto cleanup;
    }
    for (unsigned k = 0; k < o.workers; k++) {
        ws[k].fd = -1;
        ws[k].pid = -1;
        ws[k].first = (uint32_t)((uint64_t)o.devices * k / o.workers);
        ws[k].count = (uint32_t)((uint64_t)o.devices * (k + 1) / o.workers) - ws[k].first;
        ws[k].rep = vg_simreport_new();
        if (!ws[k].rep) {
            VG_ERROR(MOD, "out of memory");
            goto cleanup;
        }
    }

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &block, &old) == 0)
        masked = true;
    sfd = signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        VG_ERROR(MOD, "signalfd: %s", strerror(errno));
        goto cleanup;
    }

    base.fleet = o.devices;
    base.qos = o.qos;
    base.interval_s = o.interval_s;
    base.duration_s = o.duration_s;
    base.drain_s = o.drain_s;
    base.anomaly_rate = o.anomaly_rate;
    base.sustain_s = o.sustain_s;
    base.connect_rate = o.connect_rate;
    base.seed = o.seed;
    base.topic = o.topic;
    base.prefix = o.prefix;
    base.tls = o.tls;
    base.tls_host = o.broker.host;
    base.tls_ca = o.ca;
    base.cert_dir = o.cert_dir;
    base.reconnect_s = o.reconnect_s;
    base.t0_ns = vg_clock_mono_ns();
    fprintf(stderr, "sim: %u devices on %u worker%s -> %s%s%s, interval %g s, %g s, QoS %d\n", o.devices, o.workers,
            o.workers == 1 ? "" : "s", o.tls ? "tls://" : "", o.broker.target,
            o.tls ? (o.cert_dir ? " (client certificates)" : " (no client certificates)") : "", o.interval_s,
            o.duration_s, o.qos);
    if (o.anomaly_rate > 0) {
        vg_simdev_cfg_t dc;
        vg_simdev_cfg_init(&dc, o.interval_s, o.anomaly_rate);
        vg_simdev_cfg_sustain(&dc, o.sustain_s);
        double room_s = (double)vg_simdev_episode_room_ms(&dc) / 1000.0;
        if (!vg_simdev_episodes_possible(&dc))
            fprintf(stderr,
                    "sim: note: at --interval %g the server's extreme detector cannot confirm a %g s episode "
                    "(a silence longer than --extreme-sustain breaks it); none will be injected\n",
                    o.interval_s, o.sustain_s);
        else if (room_s + o.interval_s >= o.duration_s)
            fprintf(stderr,
                    "sim: note: an anomaly episode needs %.1f s of the run (--extreme-sustain %g plus intervals); "
                    "with --duration %g none will be injected\n",
                    room_s + o.interval_s, o.sustain_s, o.duration_s);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t self = getpid();
    for (unsigned k = 0; k < o.workers; k++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
            VG_ERROR(MOD, "pipe: %s", strerror(errno));
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            VG_ERROR(MOD, "fork: %s", strerror(errno));
            close(fds[0]);
            close(fds[1]);
            break;
        }
        if (pid == 0) {
            close(fds[0]);
            close(sfd);
            for (unsigned j = 0; j < k; j++)
                close(ws[j].fd);
            vg_simworker_cfg_t cfg = base;
            cfg.first = ws[k].first;
            cfg.count = ws[k].count;
            cfg.worker_id = k;
            cfg.report_fd = fds[1];
            run_child(&cfg, self);
        }
        close(fds[1]);
        ws[k].pid = pid;
        ws[k].fd = fds[0];
        started++;
    }

    /* Read reports until every worker has closed its pipe; a progress line
     * each second, slightly after the workers' own per-second snapshots. */
    struct pollfd pfd[MAX_WORKERS + 1];
    uint64_t next_line = base.t0_ns + NS + NS / 10, prev_sent = 0, prev_ns = 0;
    for (;;) {
        nfds_t np = 0;
        pfd[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (unsigned k = 0; k < started; k++)
            if (ws[k].fd >= 0)
                pfd[np++] = (struct pollfd){.fd = ws[k].fd, .events = POLLIN};
        if (np == 1)
            break;
        uint64_t now = vg_clock_mono_ns();
        int timeout = next_line > now ? (int)((next_line - now) / 1000000 + 1) : 0;
        int n = poll(pfd, np, timeout);
        if (n < 0 && errno != EINTR) {
            VG_ERROR(MOD, "poll: %s", strerror(errno));
            break;
        }
        if (n > 0 && (pfd[0].revents & POLLIN))
            forward_signals(sfd, ws, started);
        for (unsigned k = 0; n > 0 && k < started; k++) {
            if (ws[k].fd < 0)
                continue;
            for (nfds_t j = 1; j < np; j++) {
                if (pfd[j].fd == ws[k].fd && pfd[j].revents && !pump(&ws[k])) {
                    close(ws[k].fd);
                    ws[k].fd = -1;
                }
            }
        }
        now = vg_clock_mono_ns();
        if (now >= next_line) {
            bool all_final = true;
            for (unsigned k = 0; k < started; k++)
                all_final &= ws[k].final;
            if (!all_final)
                progress_line(ws, started, o.devices, now - base.t0_ns, &prev_sent, &prev_ns, scratch);
            while (next_line <= now)
                next_line += NS;
        }
    }
    for (unsigned k = 0; k < started; k++) {
        int status;
        while (waitpid(ws[k].pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (!ws[k].final)
            VG_WARN(MOD, "worker %u (pid %d) ended without a final report; using its last snapshot", k, (int)ws[k].pid);
    }

    for (unsigned k = 0; k < o.workers; k++) {
        if (!ws[k].reported) {
            /* Never started or never reported: its devices did not connect. */
            ws[k].rep->c.devices = ws[k].count;
            ws[k].rep->c.connect_failures = ws[k].count;
            ws[k].rep->c.cf[VG_SIMREPORT_CF_UNFINISHED] = ws[k].count;
        } else if (!ws[k].final) {
            ws[k].rep->c.failed = o.qos ? ws[k].rep->c.sent - ws[k].rep->c.acked : 0;
        }
        if (vg_simreport_merge(total, ws[k].rep) != VG_OK)
            VG_WARN(MOD, "out of memory merging episode lists; the missed-episode list is incomplete");
    }
    vg_simreport_meta_t meta = {
        .target = o.broker.target,
        .workers = o.workers,
        .qos = o.qos,
        .interval_s = o.interval_s,
        .prefix = o.prefix,
        .id_width = vg_simpayload_id_width(o.devices),
    };
    if (o.json)
        vg_simreport_print_json(stdout, total, &meta);
    else
        vg_simreport_print_text(stdout, total, &meta);
    fflush(stdout);
    exit_code = total->c.connected ? 0 : 1;

cleanup:
    if (ws) {
        for (unsigned k = 0; k < o.workers; k++) {
            if (ws[k].fd >= 0)
                close(ws[k].fd);
            vg_free(ws[k].buf);
            vg_simreport_free(ws[k].rep);
        }
    }
    vg_free(ws);
    vg_simreport_free(total);
    vg_free(scratch);
    if (sfd >= 0) {
        /* Consume signals still pending so that unblocking them does not
         * kill us before the exit code is returned. */
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
            ;
        close(sfd);
    }
    if (masked)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return exit_code;
}
