/* sub.c — see sub.h.
 *
 * The thread drives one mqttc client (mqttc/client.h) with poll() and a
 * short timeout, so that finish() can stop it without signals; the client
 * acknowledges alerts itself, and its acks are written from the same loop
 * (POLLOUT only while some are left). Alerts are copied under the mutex
 * into a growing array. */
#include "eval/sub.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_MAX (8u << 20)
#define READ_CHUNK 65536
#define STATS_TOPIC "$SYS/vigil/stats"

enum { PH_FAILED = -1, PH_CONNACK, PH_SUBACK, PH_UP };

struct vg_evalsub {
    vg_mqttc_t mq;
    vg_mqttc_cfg_t cfg;
    int fd;
    int phase; /* PH_*: how far the handshake got */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    vg_evalsub_stats_t st;
    char **alerts;
    size_t n_alerts, cap_alerts;
    uint8_t rbuf[READ_CHUNK];
};

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

static void on_message(vg_mqttc_t *c, const vg_mqtt_publish_t *pub)
{
    vg_evalsub_t *s = vg_mqttc_cfg(c)->ud;
    const char *topic = (const char *)pub->topic.p;
    if (pub->topic.len == sizeof STATS_TOPIC - 1 && memcmp(topic, STATS_TOPIC, pub->topic.len) == 0)
        on_stats(s, (const char *)pub->payload.p, pub->payload.len);
    else if (pub->topic.len > 7 && memcmp(topic, "alerts/", 7) == 0)
        on_alert(s, (const char *)pub->payload.p, pub->payload.len);
}

static void on_connack(vg_mqttc_t *c, bool session_present, const vg_mqtt_props_t *props)
{
    vg_evalsub_t *s = vg_mqttc_cfg(c)->ud;
    static const char alerts[] = "alerts/#";
    vg_mqtt_sub_t subs[2] = {
        {.filter = {(const uint8_t *)alerts, sizeof alerts - 1}, .qos = 1},
        {.filter = {(const uint8_t *)STATS_TOPIC, sizeof STATS_TOPIC - 1}, .qos = 0},
    };
    if (vg_mqttc_subscribe(c, subs, 2, NULL, NULL, vg_clock_mono_ns()) != VG_OK) {
        s->phase = PH_FAILED;
        vg_mqttc_close(c);
        return;
    }
    s->phase = PH_SUBACK;
}

static void on_suback(vg_mqttc_t *c, uint16_t packet_id, const uint8_t *rcs, size_t n)
{
    vg_evalsub_t *s = vg_mqttc_cfg(c)->ud;
    if (n != 2 || rcs[0] == VG_MQTT_SUBACK_FAILURE || rcs[1] == VG_MQTT_SUBACK_FAILURE) {
        s->phase = PH_FAILED;
        vg_mqttc_close(c);
        return;
    }
    s->phase = PH_UP;
}

/* Waits up to timeout_ms for the socket, reads once, writes what is
 * queued (the acks). VG_OK or VG_EIO once the connection is closed. */
static int pump(vg_evalsub_t *s, int timeout_ms)
{
    uint64_t now = vg_clock_mono_ns();
    if (vg_mqttc_flush(&s->mq) != VG_OK && !vg_mqttc_wants_write(&s->mq))
        return VG_EIO;
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN | (vg_mqttc_wants_write(&s->mq) ? POLLOUT : 0)};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr < 0)
        return errno == EINTR ? VG_OK : VG_EIO;
    now = vg_clock_mono_ns();
    if (pfd.revents & (POLLIN | POLLERR | POLLHUP))
        if (vg_mqttc_on_readable(&s->mq, now) != VG_OK)
            return VG_EIO;
    if (pfd.revents & POLLOUT)
        if (vg_mqttc_on_writable(&s->mq, now) != VG_OK)
            return VG_EIO;
    int rc = vg_mqttc_flush(&s->mq);
    return rc == VG_OK || rc == VG_AGAIN ? VG_OK : VG_EIO;
}

/* Runs the loop until the handshake reaches phase want (or fails). */
static int await(vg_evalsub_t *s, int want, int timeout_ms)
{
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (s->phase != PH_FAILED && s->phase < want) {
        if (pump(s, 50) != VG_OK)
            return VG_EIO;
        if (vg_clock_mono_ns() > deadline)
            return VG_AGAIN;
    }
    return s->phase == PH_FAILED ? VG_EIO : VG_OK;
}

static void *run(void *arg)
{
    vg_evalsub_t *s = arg;
    while (!atomic_load(&s->stop)) {
        if (pump(s, 100) != VG_OK) {
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
    s->cfg = (vg_mqttc_cfg_t){
        .level = VG_MQTT_V311,
        .keepalive_s = 0,
        .max_packet = IN_MAX / 2,
        .scratch = s->rbuf,
        .scratch_len = sizeof s->rbuf,
        .ud = s,
        .on_connack = on_connack,
        .on_suback = on_suback,
        .on_message = on_message,
    };
    vg_mqttc_init(&s->mq, &s->cfg, NULL, 0);
    int rc = VG_EIO;
    s->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Blocking connect on loopback is immediate; then non-blocking. */
    int fl = s->fd >= 0 && connect(s->fd, addr, addr_len) == 0 ? fcntl(s->fd, F_GETFL) : -1;
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        *why = "cannot connect the alert subscriber";
        goto fail;
    }
    if (vg_mqttc_start(&s->mq, s->fd, false, id, strlen(id), vg_clock_mono_ns()) != VG_OK ||
        await(s, PH_SUBACK, timeout_ms) != VG_OK) {
        *why = "the alert subscriber got no CONNACK";
        goto fail;
    }
    if (await(s, PH_UP, timeout_ms) != VG_OK) {
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
    vg_mqttc_disconnect(&s->mq, 0);
    if (s->fd >= 0)
        close(s->fd);
    vg_mqttc_deinit(&s->mq);
    *payloads = s->alerts;
    *n = s->n_alerts;
    pthread_mutex_destroy(&s->mu);
    vg_free(s);
}
