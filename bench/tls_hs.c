/* tls_hs.c — TLS handshake load tool for the TLS benchmarks (t1, t2 of
 * bench/run.sh): mutual-TLS MQTT connections with per-device client
 * certificates, each counted from connect() to CONNACK.
 *
 * Owns: the client connections (MQTT 3.1.1 over TLS through src/mqttc's TLS
 * transport on one epoll loop), the devices' certificates and keys (read
 * once at start, before anything is timed), the TLS sessions kept per slot,
 * the latency histogram (sim/hist.h) and the JSON report on stdout. Does
 * not own the server: it only reads the server's CPU time from
 * /proc/<--server-pid>/stat at phase boundaries, so that the figure covers
 * one phase.
 *
 * Phases (--phase, repeated, run in order):
 *   full:N     N handshakes over --parallel K slots: slot s connects as
 *              device s, waits for CONNACK, sends DISCONNECT, closes and
 *              connects again, each time with a new session (no resumption).
 *   resumed:N  the same, each slot offering the session its previous
 *              connection got (first one warm-up connection per slot that is
 *              not counted, so that every slot has a session).
 *   storm:N    N devices (device j for connection j) connect at once, at most
 *              K handshakes in flight, and stay connected; the phase ends
 *              when every one has CONNACK or failed: the reconnect storm of a
 *              fleet after an outage. Then all disconnect.
 * A connection's time runs from its connect() to its CONNACK; a phase's
 * rate is its successful connections / the phase's wall time.
 *
 * Devices are <prefix><index> with the simulator's id width (at least six
 * digits), as `vigil device create --count N --prefix P --out DIR` writes
 * DIR/<id>.crt and DIR/<id>.key; the MQTT client id is the device id (vigil
 * requires it to be the certificate's CN).
 *
 * Build: make build/tls_hs (links the vigil library objects).
 * Run:   build/tls_hs --connect 127.0.0.1:8883 --ca DIR/ca.crt --cert-dir DIR
 *            --prefix dev- --devices 10000 --parallel 32 --phase full:5000
 *            --phase resumed:5000 [--server-pid PID]
 * Progress goes to stderr; the result is one JSON object on stdout. Exit
 * status 0 when every phase ran (failures are reported), 1 on a setup
 * failure, 2 on a usage error. */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/rlimit.h"
#include "mqttc/client.h"
#include "sim/hist.h"
#include "sim/payload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define NS 1000000000ull
#define MAX_PHASES 8
#define CONNECT_TIMEOUT (30 * NS)

enum { PH_FULL, PH_RESUMED, PH_STORM };
enum { C_FREE = 0, C_CONNECTING, C_UP };

typedef struct {
    vg_mqttc_t mq; /* first: callbacks find the connection from it */
    int state;
    uint32_t dev;      /* device index */
    uint64_t t0;       /* connect() time */
    bool counted;      /* a timed connection (not a warm-up) */
    bool warmed;       /* its warm-up connection was started (resumed) */
    SSL_SESSION *sess; /* the session this slot's next connection offers (resumed) */
} conn_t;

typedef struct {
    int kind;
    uint32_t n;
} phase_t;

typedef struct {
    uint64_t ok, failed, resumed, warmup;
    uint64_t reasons[16]; /* by vg_mqttc_reason_t */
    vg_simhist_t lat;
} tally_t;

typedef struct {
    struct sockaddr_in addr;
    const char *host, *ca, *cert_dir, *prefix;
    uint32_t devices, parallel;
    long server_pid;
    phase_t ph[MAX_PHASES];
    int n_ph;
    SSL_CTX *ctx;
    X509 **certs;
    EVP_PKEY **keys;
    unsigned id_width;
    int ep;
    conn_t *conns;
    uint32_t n_conns;
    vg_mqttc_cfg_t mq;
    uint8_t scratch[65536];
    uint64_t now;
    /* the running phase */
    int kind;
    uint32_t to_start, started, done, in_flight, next_dev;
    tally_t t;
    bool warming;
} hs_t;

static double server_cpu_s(const hs_t *h)
{
    if (h->server_pid <= 0)
        return -1;
    char path[64], data[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", h->server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(data, 1, sizeof data - 1, f);
    fclose(f);
    data[n] = 0;
    char *p = strrchr(data, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* TcpExtListenOverflows + ListenDrops from /proc/net/netstat (-1: unknown). */
static long long listen_overflows(void)
{
    FILE *f = fopen("/proc/net/netstat", "r");
    if (!f)
        return -1;
    char names[8192], vals[8192];
    long long sum = -1;
    while (fgets(names, sizeof names, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *sn, *sv;
        char *a = strtok_r(names, " \n", &sn), *b = strtok_r(vals, " \n", &sv);
        sum = 0;
        while ((a = strtok_r(NULL, " \n", &sn)) && (b = strtok_r(NULL, " \n", &sv)))
            if (strcmp(a, "ListenOverflows") == 0)
                sum += atoll(b);
    }
    fclose(f);
    return sum;
}

static conn_t *conn_of(vg_mqttc_t *c)
{
    return (conn_t *)c;
}

static hs_t *hs_of(vg_mqttc_t *c)
{
    return vg_mqttc_cfg(c)->ud;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    conn_t *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    SSL_SESSION_free(c->sess);
    c->sess = sess;
    return 1;
}

static void on_connack(vg_mqttc_t *mq, bool sp, const vg_mqtt_props_t *props)
{
    hs_t *h = hs_of(mq);
    conn_t *c = conn_of(mq);
    c->state = C_UP;
    h->in_flight--;
    if (c->counted) {
        h->t.ok++;
        h->t.resumed += SSL_session_reused(vg_mqttc_ssl(mq)) == 1;
        vg_simhist_record(&h->t.lat, (h->now - c->t0) / 1000);
        h->done++;
    } else {
        h->t.warmup++;
    }
    /* Connect-and-go phases say goodbye at once; the storm holds on. The
     * session ticket of TLS 1.3 comes right after the handshake, before the
     * CONNACK, so the slot has its session by now. */
    if (h->kind != PH_STORM)
        vg_mqttc_disconnect(mq, 0);
}

static void on_close(vg_mqttc_t *mq, vg_mqttc_reason_t why, int detail)
{
    hs_t *h = hs_of(mq);
    conn_t *c = conn_of(mq);
    if (c->state == C_CONNECTING) {
        h->in_flight--;
        if (c->counted) {
            h->t.failed++;
            h->t.reasons[why < 16 ? why : 0]++;
            h->done++;
        }
        if (why == VG_MQTTC_R_TLS && h->t.failed + h->t.warmup < 4) {
            const char *r = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, detail));
            fprintf(stderr, "tls_hs: device %u: TLS: %s\n", c->dev, r ? r : "?");
        }
    }
    close(mq->fd);
    vg_mqttc_deinit(mq);
    c->state = C_FREE;
}

static SSL *new_ssl(hs_t *h, conn_t *c, int fd)
{
    SSL *ssl = SSL_new(h->ctx);
    if (!ssl)
        return NULL;
    SSL_set_fd(ssl, fd);
    SSL_set_app_data(ssl, c);
    SSL_set_connect_state(ssl);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->host);
    if (SSL_use_certificate(ssl, h->certs[c->dev]) != 1 || SSL_use_PrivateKey(ssl, h->keys[c->dev]) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (h->kind == PH_RESUMED && c->sess)
        SSL_set_session(ssl, c->sess);
    return ssl;
}

/* Starts connection c as device dev. false if it failed at once (counted). */
static bool start(hs_t *h, conn_t *c, uint32_t dev, bool counted)
{
    int one = 1;
    char id[VG_SIMPAYLOAD_MAX_PREFIX + 16];
    c->dev = dev;
    c->counted = counted;
    c->t0 = h->now = vg_clock_mono_ns();
    int n = vg_simpayload_device_id(h->prefix, h->id_width, dev, id, sizeof id);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || n < 0)
        goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Sources spread over 127.0.0.2.. as the simulator does: 10,000 held
     * connections and a fast churn never run one address out of ports. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | (2u + dev % 200u))};
    (void)bind(fd, (struct sockaddr *)&src, sizeof src);
    int rc = connect(fd, (struct sockaddr *)&h->addr, sizeof h->addr);
    if (rc < 0 && errno != EINPROGRESS)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        goto fail;
    SSL *ssl = new_ssl(h, c, fd);
    if (!ssl || vg_mqttc_start_tls(&c->mq, fd, rc < 0, ssl, id, (size_t)n, h->now) != VG_OK) {
        vg_mqttc_deinit(&c->mq);
        goto fail;
    }
    c->state = C_CONNECTING;
    h->in_flight++;
    h->started += counted;
    return true;
fail:
    if (fd >= 0)
        close(fd);
    if (counted) {
        h->t.failed++;
        h->t.reasons[VG_MQTTC_R_CONNECT]++;
        h->started++;
        h->done++;
    }
    return false;
}

static void set_interest(hs_t *h, conn_t *c)
{
    struct epoll_event ev = {.events = EPOLLIN | (vg_mqttc_wants_write(&c->mq) ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(h->ep, EPOLL_CTL_MOD, c->mq.fd, &ev);
}

static void on_event(hs_t *h, conn_t *c, uint32_t events)
{
    if (c->state == C_FREE)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        vg_mqttc_on_readable(&c->mq, h->now);
    if (c->state != C_FREE && (events & EPOLLOUT))
        vg_mqttc_on_writable(&c->mq, h->now);
    if (c->state != C_FREE) {
        vg_mqttc_flush(&c->mq);
        if (c->state != C_FREE)
            set_interest(h, c);
    }
}

/* Free slots connect again while the phase has connections to start. */
static void refill(hs_t *h)
{
    for (uint32_t s = 0; s < h->n_conns; s++) {
        conn_t *c = &h->conns[s];
        if (c->state != C_FREE)
            continue;
        if (h->kind == PH_STORM) {
            if (h->next_dev >= h->to_start || h->in_flight >= h->parallel)
                return;
            start(h, c, h->next_dev++, true);
        } else if (h->warming) {
            if (!c->warmed) {
                c->warmed = true;
                start(h, c, s, false);
            }
        } else if (h->started < h->to_start) {
            start(h, c, s, true);
        }
    }
}

static void loop_once(hs_t *h, int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(h->ep, evs, 512, timeout_ms);
    h->now = vg_clock_mono_ns();
    for (int k = 0; k < n; k++)
        on_event(h, evs[k].data.ptr, evs[k].events);
    /* Handshake deadlines: one pass a wakeup over the slots is cheap at
     * these counts (a benchmark tool, not the server). */
    for (uint32_t s = 0; s < h->n_conns; s++)
        if (h->conns[s].state == C_CONNECTING)
            vg_mqttc_tick(&h->conns[s].mq, h->now);
}

static const char *phase_name(int k)
{
    return k == PH_FULL ? "full" : k == PH_RESUMED ? "resumed" : "storm";
}

static void run_phase(hs_t *h, const phase_t *p, bool first)
{
    memset(&h->t, 0, sizeof h->t);
    vg_simhist_init(&h->t.lat);
    h->kind = p->kind;
    h->to_start = p->n;
    h->started = h->done = h->next_dev = 0;
    h->n_conns = p->kind == PH_STORM ? p->n : h->parallel;
    if (p->kind == PH_RESUMED) {
        /* Warm-up: one untimed connection per slot, for its session. */
        h->warming = true;
        for (uint32_t s = 0; s < h->n_conns; s++)
            h->conns[s].counted = h->conns[s].warmed = false;
        uint64_t until = vg_clock_mono_ns() + 60 * NS;
        refill(h);
        while (h->in_flight && vg_clock_mono_ns() < until)
            loop_once(h, 100);
        while (vg_clock_mono_ns() < until) { /* every slot closed again */
            bool busy = false;
            for (uint32_t s = 0; s < h->n_conns; s++)
                busy |= h->conns[s].state != C_FREE;
            if (!busy)
                break;
            loop_once(h, 10);
        }
        h->warming = false;
    }
    double cpu0 = server_cpu_s(h), me0 = self_cpu_s();
    long long lo0 = listen_overflows();
    uint64_t t0 = vg_clock_mono_ns(), t_last = t0, next_line = t0 + NS;
    refill(h);
    while (h->done < h->to_start) {
        loop_once(h, 20);
        if (h->done > 0)
            t_last = h->now;
        refill(h);
        if (h->now >= next_line) {
            fprintf(stderr, "[%s] %u/%u done (%llu ok, %llu failed), %u in flight\n", phase_name(h->kind), h->done,
                    h->to_start, (unsigned long long)h->t.ok, (unsigned long long)h->t.failed, h->in_flight);
            next_line += NS;
        }
        if (h->now - t0 > 600 * NS) {
            fprintf(stderr, "tls_hs: phase %s: giving up after 600 s\n", phase_name(h->kind));
            break;
        }
    }
    uint64_t t1 = h->now;
    double cpu1 = server_cpu_s(h), me1 = self_cpu_s();
    long long lo1 = listen_overflows();
    (void)t_last;
    /* The storm's connections are held until here: now they go. */
    for (uint32_t s = 0; s < h->n_conns; s++)
        if (h->conns[s].state == C_UP)
            vg_mqttc_disconnect(&h->conns[s].mq, 0);
    for (uint32_t s = 0; s < h->n_conns; s++)
        if (h->conns[s].state != C_FREE)
            vg_mqttc_close(&h->conns[s].mq);
    double secs = (double)(t1 - t0) / 1e9;
    printf("%s{\"name\":\"%s\",\"connections\":%u,\"parallel\":%u,\"ok\":%llu,\"failed\":%llu,\"resumed\":%llu,"
           "\"warmup\":%llu,\"seconds\":%.3f,\"per_s\":%.1f,",
           first ? "" : ",", phase_name(h->kind), p->n, h->kind == PH_STORM ? h->parallel : h->n_conns,
           (unsigned long long)h->t.ok, (unsigned long long)h->t.failed, (unsigned long long)h->t.resumed,
           (unsigned long long)h->t.warmup, secs, secs > 0 ? (double)h->t.ok / secs : 0.0);
    printf("\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},",
           vg_simhist_percentile(&h->t.lat, 50) / 1000.0, vg_simhist_percentile(&h->t.lat, 90) / 1000.0,
           vg_simhist_percentile(&h->t.lat, 99) / 1000.0, (double)h->t.lat.max / 1000.0);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("\"server_cpu_s\":%.2f,\"server_cpu_ms_per_conn\":%.3f,", cpu1 - cpu0,
               h->t.ok ? (cpu1 - cpu0) * 1000.0 / (double)h->t.ok : 0.0);
    printf("\"client_cpu_s\":%.2f,\"listen_overflows\":%lld,\"failures\":{", me1 - me0,
           lo0 >= 0 && lo1 >= 0 ? lo1 - lo0 : -1);
    bool any = false;
    for (int r = 0; r < 16; r++) {
        if (!h->t.reasons[r])
            continue;
        printf("%s\"%s\":%llu", any ? "," : "", vg_mqttc_reason_name((vg_mqttc_reason_t)r),
               (unsigned long long)h->t.reasons[r]);
        any = true;
    }
    printf("}}");
    fflush(stdout);
    fprintf(stderr, "tls_hs: %s: %llu ok, %llu failed, %llu resumed in %.2f s: %.0f/s, p99 %.2f ms\n",
            phase_name(h->kind), (unsigned long long)h->t.ok, (unsigned long long)h->t.failed,
            (unsigned long long)h->t.resumed, secs, secs > 0 ? (double)h->t.ok / secs : 0.0,
            vg_simhist_percentile(&h->t.lat, 99) / 1000.0);
    /* Let the closes reach the server before the next phase is timed. */
    for (int k = 0; k < 10; k++)
        loop_once(h, 10);
}

static int load_identities(hs_t *h)
{
    h->certs = vg_calloc(VG_MEM_SIM, h->devices, sizeof *h->certs);
    h->keys = vg_calloc(VG_MEM_SIM, h->devices, sizeof *h->keys);
    if (!h->certs || !h->keys)
        return VG_ENOMEM;
    char id[VG_SIMPAYLOAD_MAX_PREFIX + 16], path[4096];
    /* One decoder for every key (as the simulator does): building it per
     * key is most of PEM_read_PrivateKey's time in OpenSSL 3. */
    EVP_PKEY *out = NULL;
    OSSL_DECODER_CTX *dec =
        OSSL_DECODER_CTX_new_for_pkey(&out, "PEM", NULL, NULL, OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
    for (uint32_t i = 0; i < h->devices; i++) {
        vg_simpayload_device_id(h->prefix, h->id_width, i, id, sizeof id);
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s.%s", h->cert_dir, id, k ? "key" : "crt");
            FILE *f = fopen(path, "r");
            if (!f) {
                fprintf(stderr, "tls_hs: %s: %s\n", path, strerror(errno));
                return VG_EIO;
            }
            if (k && dec) {
                BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
                out = NULL;
                if (b && OSSL_DECODER_from_bio(dec, b) == 1)
                    h->keys[i] = out;
                out = NULL;
                BIO_free(b);
            } else if (k) {
                h->keys[i] = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            } else
                h->certs[i] = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
            if (k ? !h->keys[i] : !h->certs[i]) {
                fprintf(stderr, "tls_hs: %s: not a PEM %s\n", path, k ? "key" : "certificate");
                OSSL_DECODER_CTX_free(dec);
                return VG_EINVAL;
            }
        }
    }
    OSSL_DECODER_CTX_free(dec);
    return VG_OK;
}

static int usage(void)
{
    fprintf(stderr, "usage: tls_hs --connect IP:PORT --ca FILE --cert-dir DIR --prefix P --devices N\n"
                    "              [--parallel K] [--server-pid PID] --phase full:N|resumed:N|storm:N ...\n");
    return 2;
}

int main(int argc, char **argv)
{
    static hs_t H;
    hs_t *h = &H;
    h->parallel = 32;
    h->prefix = "dev-";
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(a, "--connect"))
            target = v;
        else if (!strcmp(a, "--ca"))
            h->ca = v;
        else if (!strcmp(a, "--cert-dir"))
            h->cert_dir = v;
        else if (!strcmp(a, "--prefix"))
            h->prefix = v;
        else if (!strcmp(a, "--devices"))
            h->devices = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--parallel"))
            h->parallel = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--server-pid"))
            h->server_pid = atol(v);
        else if (!strcmp(a, "--phase") && h->n_ph < MAX_PHASES) {
            phase_t *p = &h->ph[h->n_ph++];
            const char *colon = strchr(v, ':');
            if (!colon)
                return usage();
            size_t len = (size_t)(colon - v);
            p->kind = !strncmp(v, "full", len)      ? PH_FULL
                      : !strncmp(v, "resumed", len) ? PH_RESUMED
                      : !strncmp(v, "storm", len)   ? PH_STORM
                                                    : -1;
            p->n = (uint32_t)strtoul(colon + 1, NULL, 10);
            if (p->kind < 0 || !p->n)
                return usage();
        } else
            return usage();
        i++;
    }
    if (!target || !h->ca || !h->cert_dir || !h->devices || !h->parallel || !h->n_ph)
        return usage();
    static char host[64];
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof host)
        return usage();
    memcpy(host, target, (size_t)(colon - target));
    h->host = host;
    h->addr.sin_family = AF_INET;
    h->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &h->addr.sin_addr) != 1)
        return usage();
    uint32_t need = 0;
    for (int k = 0; k < h->n_ph; k++) {
        uint32_t slots = h->ph[k].kind == PH_STORM ? h->ph[k].n : h->parallel;
        if (slots > h->devices) {
            fprintf(stderr, "tls_hs: phase %d needs %u devices, --devices is %u\n", k + 1, slots, h->devices);
            return 2;
        }
        need = slots > need ? slots : need;
    }
    signal(SIGPIPE, SIG_IGN);
    (void)vg_rlimit_raise_nofile(0, NULL);
    h->id_width = vg_simpayload_id_width(h->devices);
    double l0 = self_cpu_s();
    if (load_identities(h) != VG_OK)
        return 1;
    fprintf(stderr, "tls_hs: %u identities loaded in %.2f s of CPU\n", h->devices, self_cpu_s() - l0);
    h->ctx = SSL_CTX_new(TLS_client_method());
    if (!h->ctx || SSL_CTX_load_verify_locations(h->ctx, h->ca, NULL) != 1) {
        fprintf(stderr, "tls_hs: cannot load %s\n", h->ca);
        return 1;
    }
    SSL_CTX_set_min_proto_version(h->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(h->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(h->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(h->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(h->ctx, on_new_session);
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->conns = vg_calloc(VG_MEM_SIM, need, sizeof *h->conns);
    if (h->ep < 0 || !h->conns)
        return 1;
    h->mq = (vg_mqttc_cfg_t){
        .level = VG_MQTT_V311,
        .keepalive_s = 60,
        .connect_timeout_ns = CONNECT_TIMEOUT,
        .scratch = h->scratch,
        .scratch_len = sizeof h->scratch,
        .ud = h,
        .on_connack = on_connack,
        .on_close = on_close,
    };
    for (uint32_t s = 0; s < need; s++)
        vg_mqttc_init(&h->conns[s].mq, &h->mq, NULL, 0);
    printf("{\"connect\":\"%s\",\"devices\":%u,\"openssl\":\"%s\",\"phases\":[", target, h->devices,
           OpenSSL_version(OPENSSL_VERSION_STRING));
    for (int k = 0; k < h->n_ph; k++)
        run_phase(h, &h->ph[k], k == 0);
    printf("]}\n");
    for (uint32_t s = 0; s < need; s++)
        SSL_SESSION_free(h->conns[s].sess);
    SSL_CTX_free(h->ctx);
    return 0;
}
