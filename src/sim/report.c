/* report.c — see report.h. */
#include "sim/report.h"

#include "core/alloc.h"
#include "core/err.h"
#include "sim/device.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define MAX_BODY (512u * 1024u * 1024u) /* sanity bound on one message */
#define MISSED_LISTED 10                /* missed episodes named in the text report */

vg_simreport_t *vg_simreport_new(void)
{
    vg_simreport_t *r = vg_calloc(VG_MEM_SIM, 1, sizeof *r);
    if (!r)
        return NULL;
    vg_simhist_init(&r->ack);
    vg_simhist_init(&r->ack_connected);
    vg_simhist_init(&r->alert);
    return r;
}

void vg_simreport_free(vg_simreport_t *r)
{
    if (!r)
        return;
    vg_free(r->episodes);
    vg_free(r);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return VG_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return VG_OK;
}

int vg_simreport_write(int fd, int kind, const vg_simcounters_t *c, const vg_simhist_t *ack,
                       const vg_simhist_t *ack_connected, const vg_simhist_t *alert, const vg_simepisode_t *eps,
                       size_t n)
{
    size_t cap = 8 + sizeof *c + 3 * vg_simhist_encoded_max() + 8 + n * sizeof *eps;
    uint8_t *buf = vg_malloc(VG_MEM_SIM, cap);
    if (!buf)
        return VG_ENOMEM;
    size_t off = 8;
    memcpy(buf + off, c, sizeof *c);
    off += sizeof *c;
    int k = vg_simhist_encode(ack, buf + off, cap - off);
    off += (size_t)k; /* cannot fail: cap holds the maximum */
    k = vg_simhist_encode(ack_connected, buf + off, cap - off);
    off += (size_t)k;
    k = vg_simhist_encode(alert, buf + off, cap - off);
    off += (size_t)k;
    uint64_t count = n;
    memcpy(buf + off, &count, sizeof count);
    off += sizeof count;
    if (n)
        memcpy(buf + off, eps, n * sizeof *eps);
    off += n * sizeof *eps;
    uint32_t head[2] = {(uint32_t)kind, (uint32_t)(off - 8)};
    memcpy(buf, head, sizeof head);
    int rc = write_all(fd, buf, off);
    vg_free(buf);
    return rc;
}

int vg_simreport_read(const uint8_t *buf, size_t len, size_t *used, int *kind, vg_simreport_t *into)
{
    uint32_t head[2];
    if (len < sizeof head)
        return VG_AGAIN;
    memcpy(head, buf, sizeof head);
    if (head[1] > MAX_BODY || (head[0] != VG_SIMREPORT_PROGRESS && head[0] != VG_SIMREPORT_FINAL))
        return VG_EMALFORMED;
    if (len - sizeof head < head[1])
        return VG_AGAIN;
    const uint8_t *p = buf + sizeof head;
    size_t left = head[1], u;
    if (left < sizeof into->c)
        return VG_EMALFORMED;
    memcpy(&into->c, p, sizeof into->c);
    p += sizeof into->c;
    left -= sizeof into->c;
    if (vg_simhist_decode(&into->ack, p, left, &u) != VG_OK)
        return VG_EMALFORMED;
    p += u;
    left -= u;
    if (vg_simhist_decode(&into->ack_connected, p, left, &u) != VG_OK)
        return VG_EMALFORMED;
    p += u;
    left -= u;
    if (vg_simhist_decode(&into->alert, p, left, &u) != VG_OK)
        return VG_EMALFORMED;
    p += u;
    left -= u;
    uint64_t n;
    if (left < sizeof n)
        return VG_EMALFORMED;
    memcpy(&n, p, sizeof n);
    p += sizeof n;
    left -= sizeof n;
    if (n > left / sizeof(vg_simepisode_t) || n * sizeof(vg_simepisode_t) != left)
        return VG_EMALFORMED;
    vg_free(into->episodes);
    into->episodes = NULL;
    into->n_episodes = 0;
    if (n) {
        into->episodes = vg_malloc(VG_MEM_SIM, (size_t)n * sizeof(vg_simepisode_t));
        if (!into->episodes)
            return VG_ENOMEM;
        memcpy(into->episodes, p, (size_t)n * sizeof(vg_simepisode_t));
        into->n_episodes = (size_t)n;
    }
    *used = sizeof head + head[1];
    *kind = (int)head[0];
    return VG_OK;
}

int vg_simreport_merge(vg_simreport_t *dst, const vg_simreport_t *src)
{
    uint64_t *d = (uint64_t *)&dst->c;
    const uint64_t *s = (const uint64_t *)&src->c;
    /* vg_simcounters_t is all u64; send_us is the one that is not a sum. */
    uint64_t send_us = dst->c.send_us > src->c.send_us ? dst->c.send_us : src->c.send_us;
    for (size_t i = 0; i < sizeof dst->c / sizeof(uint64_t); i++)
        d[i] += s[i];
    dst->c.send_us = send_us;
    vg_simhist_merge(&dst->ack, &src->ack);
    vg_simhist_merge(&dst->ack_connected, &src->ack_connected);
    vg_simhist_merge(&dst->alert, &src->alert);
    if (!src->n_episodes)
        return VG_OK;
    vg_simepisode_t *e =
        vg_realloc(VG_MEM_SIM, dst->episodes, (dst->n_episodes + src->n_episodes) * sizeof(vg_simepisode_t));
    if (!e)
        return VG_ENOMEM;
    memcpy(e + dst->n_episodes, src->episodes, src->n_episodes * sizeof *e);
    dst->episodes = e;
    dst->n_episodes += src->n_episodes;
    return VG_OK;
}

_Static_assert(sizeof(((vg_simcounters_t *)0)->cf) / sizeof(uint64_t) == VG_SIMREPORT_CF__COUNT,
               "one counter per connect failure reason");

const char *vg_simreport_cf_name(int reason)
{
    static const char *const names[VG_SIMREPORT_CF__COUNT] = {
        "tcp",
        "timeout",
        "connack_refused",
        "closed",
        "tls_untrusted_server",
        "tls_revoked",
        "tls_certificate_refused",
        "tls_other",
        "credentials",
        "unfinished",
        "other",
    };
    return reason >= 0 && reason < VG_SIMREPORT_CF__COUNT ? names[reason] : "?";
}

static double ms(double us)
{
    return us / 1000.0;
}

static double throughput(const vg_simreport_t *r)
{
    return r->c.send_us ? (double)r->c.sent * 1e6 / (double)r->c.send_us : 0.0;
}

static void text_latency_row(FILE *f, const char *name, const vg_simhist_t *h)
{
    if (!h->count) {
        fprintf(f, "  %-20s %10s %10s %10s %10s %10d\n", name, "-", "-", "-", "-", 0);
        return;
    }
    fprintf(f, "  %-20s %10.3f %10.3f %10.3f %10.3f %10llu\n", name, ms(vg_simhist_percentile(h, 50)),
            ms(vg_simhist_percentile(h, 95)), ms(vg_simhist_percentile(h, 99)), ms((double)h->max),
            (unsigned long long)h->count);
}

void vg_simreport_print_text(FILE *f, const vg_simreport_t *r, const vg_simreport_meta_t *m)
{
    const vg_simcounters_t *c = &r->c;
    fprintf(f, "vigil sim: %llu devices, %u worker%s, QoS %d, interval %g s, target %s\n",
            (unsigned long long)c->devices, m->workers, m->workers == 1 ? "" : "s", m->qos, m->interval_s, m->target);
    fprintf(f, "  %-20s %12.3f s\n", "send phase", (double)c->send_us / 1e6);
    fprintf(f, "  %-20s %12llu   connect failures %llu   disconnects %llu\n", "connected",
            (unsigned long long)c->connected, (unsigned long long)c->connect_failures,
            (unsigned long long)c->disconnects);
    if (c->connect_failures) {
        fprintf(f, "  %-20s", "connect failures");
        for (int k = 0; k < VG_SIMREPORT_CF__COUNT; k++)
            if (c->cf[k])
                fprintf(f, " %s %llu", vg_simreport_cf_name(k), (unsigned long long)c->cf[k]);
        fputc('\n', f);
    }
    if (c->tls_handshakes || c->reconnects)
        fprintf(f, "  %-20s %12llu   resumed %llu   reconnects %llu\n", "TLS handshakes",
                (unsigned long long)c->tls_handshakes, (unsigned long long)c->tls_resumed,
                (unsigned long long)c->reconnects);
    fprintf(f, "  %-20s %12llu   acked %llu   failed %llu   deferred %llu\n", "sent", (unsigned long long)c->sent,
            (unsigned long long)c->acked, (unsigned long long)c->failed, (unsigned long long)c->deferred);
    fprintf(f, "  %-20s %12.1f events/s\n", "throughput", throughput(r));
    fprintf(f, "  %-20s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p95", "p99", "max", "count");
    text_latency_row(f, "publish -> PUBACK", &r->ack);
    text_latency_row(f, "  fleet connected", &r->ack_connected);
    text_latency_row(f, "publish -> alert", &r->alert);
    fprintf(f, "  %-20s injected %llu   detected %llu   missed %llu   resolved %llu   cut %llu\n", "anomaly episodes",
            (unsigned long long)c->injected, (unsigned long long)c->detected,
            (unsigned long long)(c->injected - c->detected), (unsigned long long)c->resolved,
            (unsigned long long)c->episodes_cut);
    fprintf(f, "  %-20s received %llu   false %llu   opened %llu   follow-ups %llu\n", "alerts",
            (unsigned long long)c->alerts_received, (unsigned long long)c->false_alerts,
            (unsigned long long)c->alerts_opened, (unsigned long long)c->alert_followups);
    fprintf(f, "  %-20s duplicate %llu   secondary %llu   data quality %llu\n", "",
            (unsigned long long)c->duplicate_alerts, (unsigned long long)c->secondary_alerts,
            (unsigned long long)c->quality_alerts);
    if (c->injected && c->alert_sub_ok < m->workers)
        fprintf(f, "  note: %llu of %u workers had no alerts/# subscription; their episodes count as missed\n",
                (unsigned long long)(m->workers - c->alert_sub_ok), m->workers);
    size_t listed = 0;
    for (size_t i = 0; i < r->n_episodes && listed < MISSED_LISTED; i++) {
        const vg_simepisode_t *e = &r->episodes[i];
        if (e->detected)
            continue;
        if (!listed++)
            fprintf(f, "  missed episodes (first %d):\n", MISSED_LISTED);
        fprintf(f, "    %s%0*u %-4s eventTimeMs %lld..%lld%s\n", m->prefix, (int)m->id_width, e->device,
                e->type == VG_SIMDEV_HIGH ? "HIGH" : "LOW", (long long)e->first_ts_ms, (long long)e->last_ts_ms,
                e->complete ? "" : " (cut short)");
    }
}

static void json_latency(FILE *f, const char *key, const vg_simhist_t *h)
{
    fprintf(f, "\"%s\":{\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"count\":%llu}", key,
            ms(vg_simhist_percentile(h, 50)), ms(vg_simhist_percentile(h, 95)), ms(vg_simhist_percentile(h, 99)),
            ms((double)h->max), (unsigned long long)h->count);
}

void vg_simreport_print_json(FILE *f, const vg_simreport_t *r, const vg_simreport_meta_t *m)
{
    const vg_simcounters_t *c = &r->c;
    fprintf(f,
            "{\"devices\":%llu,\"workers\":%u,\"qos\":%d,\"interval_s\":%g,\"duration_s\":%.3f,\"connected\":%llu,"
            "\"connect_failures\":%llu,\"sent\":%llu,\"acked\":%llu,\"failed\":%llu,\"disconnects\":%llu,"
            "\"deferred\":%llu,\"throughput_eps\":%.1f,",
            (unsigned long long)c->devices, m->workers, m->qos, m->interval_s, (double)c->send_us / 1e6,
            (unsigned long long)c->connected, (unsigned long long)c->connect_failures, (unsigned long long)c->sent,
            (unsigned long long)c->acked, (unsigned long long)c->failed, (unsigned long long)c->disconnects,
            (unsigned long long)c->deferred, throughput(r));
    json_latency(f, "puback_latency_ms", &r->ack);
    fputc(',', f);
    json_latency(f, "puback_latency_connected_ms", &r->ack_connected);
    fputc(',', f);
    json_latency(f, "alert_latency_ms", &r->alert);
    fprintf(f,
            ",\"anomalies\":{\"injected\":%llu,\"detected\":%llu,\"missed\":%llu,\"resolved\":%llu,"
            "\"cut\":%llu},\"false_alerts\":%llu,\"alerts_received\":%llu,\"alerts_opened\":%llu,"
            "\"alert_followups\":%llu,\"duplicate_alerts\":%llu,\"secondary_alerts\":%llu,"
            "\"quality_alerts\":%llu,",
            (unsigned long long)c->injected, (unsigned long long)c->detected,
            (unsigned long long)(c->injected - c->detected), (unsigned long long)c->resolved,
            (unsigned long long)c->episodes_cut, (unsigned long long)c->false_alerts,
            (unsigned long long)c->alerts_received, (unsigned long long)c->alerts_opened,
            (unsigned long long)c->alert_followups, (unsigned long long)c->duplicate_alerts,
            (unsigned long long)c->secondary_alerts, (unsigned long long)c->quality_alerts);
    fprintf(f, "\"reconnects\":%llu,\"tls\":{\"handshakes\":%llu,\"resumed\":%llu},\"connect_failure_reasons\":{",
            (unsigned long long)c->reconnects, (unsigned long long)c->tls_handshakes,
            (unsigned long long)c->tls_resumed);
    for (int k = 0; k < VG_SIMREPORT_CF__COUNT; k++)
        fprintf(f, "%s\"%s\":%llu", k ? "," : "", vg_simreport_cf_name(k), (unsigned long long)c->cf[k]);
    fputs("}}\n", f);
}
