/* sub.c — see sub.h.
 *
 * The thread blocks in poll() with a short timeout so that finish() can
 * stop it without signals. Alerts are copied under the mutex into a growing
 * array; acknowledgements are written with blocking send() (a few bytes;
 * the server reads them promptly). */
#include "eval/sub.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"
#include "mqtt/codec.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_MAX (8u << 20)
#define STATS_TOPIC "$SYS/vigil/stats"

struct vg_evalsub {
    int fd;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    vg_evalsub_stats_t st;
    char **alerts;
    size_t n_alerts, cap_alerts;
    uint8_t *in;
    size_t in_len, in_cap;
};

static int send_all(int fd, const uint8_t *b, size_t n)
{
    while (n) {
        ssize_t r = send(fd, b, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return VG_EIO;
        b += r;
        n -= (size_t)r;
    }
    return VG_OK;
}

static void on_stats(vg_evalsub_t *s, const char *p, size_t len)
{
    static const char *const names[] = {"telemetry.accepted", "telemetry.deadletter", "proc.processed", "proc.lag",
                                        "alerts.emitted"};
    vg_json_member_t m[5];
    if (vg_json_object_pick(p, len, VG_JSON_DEFAULT_DEPTH, names, 5, m, NULL) != VG_OK)
        return;
    int64_t v[5];
    for (int i = 0; i < 5; i++)
        if (!m[i].key || vg_json_int64(&m[i], &v[i]) != VG_OK)
            v[i] = -1;
    pthread_mutex_lock(&s->mu);
    s->st.accepted = v[0];
    s->st.deadletter = v[1];
    s->st.processed = v[2];
    s->st.lag = v[3];
    s->st.emitted = v[4];
    s->st.messages++;
    pthread_mutex_unlock(&s->mu);
}

static void on_alert(vg_evalsub_t *s, const char *p, size_t len)
{
    char *copy = vg_strndup(VG_MEM_EVAL, p, len);
    pthread_mutex_lock(&s->mu);
    if (copy && s->n_alerts == s->cap_alerts) {
        size_t cap = s->cap_alerts ? 2 * s->cap_alerts : 1024;
        char **na = vg_realloc(VG_MEM_EVAL, s->alerts, cap * sizeof *na);
        if (na) {
            s->alerts = na;
            s->cap_alerts = cap;
        }
    }
    if (copy && s->n_alerts < s->cap_alerts)
        s->alerts[s->n_alerts++] = copy;
    else
        vg_free(copy);
    s->st.alerts++;
    s->st.last_alert_ns = vg_clock_mono_ns();
    pthread_mutex_unlock(&s->mu);
}

/* One packet after the handshake. */
static int on_packet(vg_evalsub_t *s, uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    if (type != VG_MQTT_PUBLISH)
        return VG_OK;
    vg_mqtt_publish_t pub;
    if (vg_mqtt_decode_publish(VG_MQTT_V311, flags, body, len, &pub) != VG_OK)
        return VG_EIO;
    const char *topic = (const char *)pub.topic.p;
    if (pub.topic.len == sizeof STATS_TOPIC - 1 && memcmp(topic, STATS_TOPIC, pub.topic.len) == 0)
        on_stats(s, (const char *)pub.payload.p, pub.payload.len);
    else if (pub.topic.len > 7 && memcmp(topic, "alerts/", 7) == 0)
        on_alert(s, (const char *)pub.payload.p, pub.payload.len);
    if (pub.qos == 1) {
        uint8_t ack[4];
        int n = vg_mqtt_encode_ack(ack, sizeof ack, VG_MQTT_V311, VG_MQTT_PUBACK, pub.packet_id, 0, NULL);
        if (n < 0 || send_all(s->fd, ack, (size_t)n) != VG_OK)
            return VG_EIO;
    }
    return VG_OK;
}

/* Reads once (waiting up to timeout_ms) and hands complete packets to fn
 * (or, with fn NULL, returns the first one's type in *first). */
static int pump(vg_evalsub_t *s, int timeout_ms, uint8_t *first)
{
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr < 0)
        return errno == EINTR ? VG_OK : VG_EIO;
    if (pr == 0)
        return VG_OK;
    if (s->in_cap - s->in_len < 65536) {
        size_t cap = s->in_cap ? 2 * s->in_cap : 131072;
        if (cap > IN_MAX)
            return VG_EIO;
        uint8_t *ni = vg_realloc(VG_MEM_EVAL, s->in, cap);
        if (!ni)
            return VG_ENOMEM;
        s->in = ni;
        s->in_cap = cap;
    }
    ssize_t r = read(s->fd, s->in + s->in_len, s->in_cap - s->in_len);
    if (r == 0)
        return VG_EIO;
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? VG_OK : VG_EIO;
    s->in_len += (size_t)r;
    size_t off = 0;
    while (off < s->in_len) {
        uint8_t type, flags;
        size_t hl, rl;
        int rc = vg_mqtt_frame(s->in + off, s->in_len - off, IN_MAX / 2, &type, &flags, &hl, &rl);
        if (rc == VG_AGAIN)
            break;
        if (rc != VG_OK)
            return VG_EIO;
        const uint8_t *body = s->in + off + hl;
        off += hl + rl;
        if (first) {
            if (!*first) {
                *first = type;
                if (type == VG_MQTT_CONNACK) {
                    bool sp;
                    uint8_t crc;
                    if (vg_mqtt_decode_connack(VG_MQTT_V311, body, rl, &sp, &crc, NULL) != VG_OK || crc != 0)
                        return VG_EIO;
                } else if (type == VG_MQTT_SUBACK) {
                    uint16_t pid;
                    uint8_t rcs[2];
                    size_t n;
                    if (vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, body, rl, &pid, NULL, rcs, 2, &n) !=
                            VG_OK ||
                        n != 2 || rcs[0] == VG_MQTT_SUBACK_FAILURE || rcs[1] == VG_MQTT_SUBACK_FAILURE)
                        return VG_EIO;
                }
                continue;
            }
        }
        rc = on_packet(s, type, flags, body, rl);
        if (rc != VG_OK)
            return rc;
    }
    memmove(s->in, s->in + off, s->in_len - off);
    s->in_len -= off;
    return VG_OK;
}

/* Waits for a packet of type want, handling anything else on the way. */
static int await(vg_evalsub_t *s, uint8_t want, int timeout_ms)
{
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint8_t first = 0;
        int rc = pump(s, 50, &first);
        if (rc != VG_OK)
            return rc;
        if (first == want)
            return VG_OK;
        if (first)
            return VG_EIO;
        if (vg_clock_mono_ns() > deadline)
            return VG_AGAIN;
    }
}

static void *run(void *arg)
{
    vg_evalsub_t *s = arg;
    while (!atomic_load(&s->stop)) {
        if (pump(s, 100, NULL) != VG_OK) {
            pthread_mutex_lock(&s->mu);
            s->st.failed = true;
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    return NULL;
}

int vg_evalsub_start(const struct sockaddr *addr, socklen_t addr_len, const char *id, int timeout_ms,
                     vg_evalsub_t **out, const char **why)
{
    *out = NULL;
    *why = NULL;
    vg_evalsub_t *s = vg_calloc(VG_MEM_EVAL, 1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->st.accepted = s->st.deadletter = s->st.processed = s->st.lag = s->st.emitted = -1;
    int rc = VG_EIO;
    uint8_t buf[256];
    s->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || connect(s->fd, addr, addr_len) < 0) {
        *why = "cannot connect the alert subscriber";
        goto fail;
    }
    vg_mqtt_connect_t cc = {
        .protocol_level = VG_MQTT_V311,
        .clean_session = true,
        .keepalive = 0,
        .client_id = {(const uint8_t *)id, strlen(id)},
    };
    int n = vg_mqtt_encode_connect(buf, sizeof buf, &cc);
    if (n < 0 || send_all(s->fd, buf, (size_t)n) != VG_OK || await(s, VG_MQTT_CONNACK, timeout_ms) != VG_OK) {
        *why = "the alert subscriber got no CONNACK";
        goto fail;
    }
    static const char alerts[] = "alerts/#";
    vg_mqtt_sub_t subs[2] = {
        {.filter = {(const uint8_t *)alerts, sizeof alerts - 1}, .qos = 1},
        {.filter = {(const uint8_t *)STATS_TOPIC, sizeof STATS_TOPIC - 1}, .qos = 0},
    };
    n = vg_mqtt_encode_subscribe(buf, sizeof buf, VG_MQTT_V311, 1, NULL, subs, 2);
    if (n < 0 || send_all(s->fd, buf, (size_t)n) != VG_OK || await(s, VG_MQTT_SUBACK, timeout_ms) != VG_OK) {
        *why = "the alert subscriber's SUBSCRIBE failed";
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        *why = "cannot start the alert subscriber thread";
        goto fail;
    }
    s->started = true;
    *out = s;
    return VG_OK;
fail:;
    char **p;
    size_t k;
    vg_evalsub_finish(s, &p, &k);
    for (size_t i = 0; i < k; i++)
        vg_free(p[i]);
    vg_free(p);
    return rc;
}

void vg_evalsub_stats(vg_evalsub_t *s, vg_evalsub_stats_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

void vg_evalsub_finish(vg_evalsub_t *s, char ***payloads, size_t *n)
{
    *payloads = NULL;
    *n = 0;
    if (!s)
        return;
    if (s->started) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
    }
    if (s->fd >= 0) {
        static const uint8_t bye[2] = {0xe0, 0x00};
        (void)!send(s->fd, bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(s->fd);
    }
    *payloads = s->alerts;
    *n = s->n_alerts;
    vg_free(s->in);
    pthread_mutex_destroy(&s->mu);
    vg_free(s);
}
