/* ledger.c — see ledger.h.
 *
 * Episodes live in one growing array in start order; each device keeps the
 * index of its newest episode and each episode the index of the device's
 * previous one, so a device's episodes form a list without a per-device
 * allocation. The recent sends are a fixed ring per device in one array.
 * The send times of the events an extreme alert names (the episode's first,
 * and its episode_due sample and the next ones) are kept in the episode
 * itself, because a fast device's ring may have moved on by the time the
 * alert arrives. */
#include "sim/ledger.h"

#include "core/alloc.h"
#include "core/err.h"

typedef struct {
    int64_t ts_ms;
    uint64_t send_ns; /* 0: empty */
} recent_t;

typedef struct {
    uint32_t dev;
    uint8_t type;
    uint8_t detected;
    uint8_t resolved;
    uint8_t complete; /* its episode_end sample was sent */
    uint8_t n_due;    /* entries of due[] filled */
    int32_t prev;     /* previous episode of the same device, -1: none */
    int64_t first_ts_ms, last_ts_ms;
    uint64_t first_send_ns;
    uint64_t alert_id; /* the alert that detected it, 0: none or no id */
    recent_t due[VG_SIMLEDGER_DUE];
} episode_t;

struct vg_simledger {
    uint32_t devices;
    int64_t near_ms; /* the secondary window, each side of an episode */
    int32_t *newest; /* per device: index of its newest episode, -1: none */
    uint32_t *ring_pos;
    recent_t *recent; /* devices * VG_SIMLEDGER_RECENT */
    episode_t *eps;
    size_t n, cap, detected, resolved;
};

vg_simledger_t *vg_simledger_new(uint32_t devices, double interval_s)
{
    vg_simledger_t *l = vg_calloc(VG_MEM_SIM, 1, sizeof *l);
    if (!l)
        return NULL;
    l->near_ms = VG_SIMLEDGER_NEAR_MS + (int64_t)(2000.0 * (interval_s > 0 && interval_s < 86400 ? interval_s : 0));
    size_t n = devices ? devices : 1;
    l->devices = devices;
    l->newest = vg_malloc(VG_MEM_SIM, n * sizeof *l->newest);
    l->ring_pos = vg_calloc(VG_MEM_SIM, n, sizeof *l->ring_pos);
    l->recent = vg_calloc(VG_MEM_SIM, n * VG_SIMLEDGER_RECENT, sizeof *l->recent);
    if (!l->newest || !l->ring_pos || !l->recent) {
        vg_simledger_free(l);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        l->newest[i] = -1;
    return l;
}

void vg_simledger_free(vg_simledger_t *l)
{
    if (!l)
        return;
    vg_free(l->newest);
    vg_free(l->ring_pos);
    vg_free(l->recent);
    vg_free(l->eps);
    vg_free(l);
}

int vg_simledger_sent(vg_simledger_t *l, uint32_t dev, const vg_simdev_sample_t *s, uint64_t send_ns)
{
    recent_t *r = &l->recent[(size_t)dev * VG_SIMLEDGER_RECENT + l->ring_pos[dev]++ % VG_SIMLEDGER_RECENT];
    r->ts_ms = s->ts_ms;
    r->send_ns = send_ns;
    if (!s->anomaly)
        return VG_OK;
    episode_t *e = NULL;
    if (!s->episode_start) {
        if (l->newest[dev] >= 0)
            e = &l->eps[l->newest[dev]];
        if (!e || e->complete || e->type != s->anomaly)
            return VG_OK; /* its start was not recorded (out of memory) */
        e->last_ts_ms = s->ts_ms;
    } else {
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 256;
            episode_t *p = cap <= INT32_MAX ? vg_realloc(VG_MEM_SIM, l->eps, cap * sizeof *p) : NULL;
            if (!p) {
                /* Later samples of this episode must not extend an older one. */
                l->newest[dev] = -1;
                return VG_ENOMEM;
            }
            l->eps = p;
            l->cap = cap;
        }
        e = &l->eps[l->n];
        *e = (episode_t){
            .dev = dev,
            .type = s->anomaly,
            .prev = l->newest[dev],
            .first_ts_ms = s->ts_ms,
            .last_ts_ms = s->ts_ms,
            .first_send_ns = send_ns,
        };
        l->newest[dev] = (int32_t)l->n++;
    }
    if ((s->episode_due || e->n_due) && e->n_due < VG_SIMLEDGER_DUE)
        e->due[e->n_due++] = (recent_t){s->ts_ms, send_ns};
    if (s->episode_end)
        e->complete = 1;
    return VG_OK;
}

/* The send time of episode e's sample at ts, if e kept it. */
static uint64_t episode_send(const episode_t *e, int64_t ts)
{
    if (ts == e->first_ts_ms)
        return e->first_send_ns;
    for (unsigned k = 0; k < e->n_due; k++)
        if (e->due[k].ts_ms == ts)
            return e->due[k].send_ns;
    return 0;
}

static vg_simledger_verdict_t followup(vg_simledger_t *l, uint32_t dev, const vg_simledger_alert_t *a)
{
    if (a->event != VG_SIMLEDGER_EV_RESOLVED || !a->alert_id)
        return VG_SIMLEDGER_FOLLOWUP;
    for (int32_t k = l->newest[dev]; k >= 0; k = l->eps[k].prev) {
        episode_t *e = &l->eps[k];
        if (e->alert_id != a->alert_id)
            continue;
        if (e->resolved)
            return VG_SIMLEDGER_FOLLOWUP; /* redelivered */
        e->resolved = 1;
        l->resolved++;
        return VG_SIMLEDGER_RESOLVED;
    }
    return VG_SIMLEDGER_FOLLOWUP;
}

vg_simledger_verdict_t vg_simledger_alert(vg_simledger_t *l, uint32_t dev, const vg_simledger_alert_t *a,
                                          uint64_t *send_ns)
{
    *send_ns = 0;
    if (a->event != VG_SIMLEDGER_EV_OPEN)
        return followup(l, dev, a);
    int64_t ts = a->ts_ms;
    vg_simledger_verdict_t v = VG_SIMLEDGER_FALSE;
    for (int32_t k = l->newest[dev]; k >= 0; k = l->eps[k].prev) {
        episode_t *e = &l->eps[k];
        if (e->last_ts_ms < ts - l->near_ms)
            break; /* this one and every older one ended long before */
        if (e->first_ts_ms > ts + l->near_ms)
            continue;
        if (!a->type) {
            v = VG_SIMLEDGER_SECONDARY;
            break;
        }
        if (e->type != a->type || ts < e->first_ts_ms || ts > e->last_ts_ms)
            continue;
        if (a->alert_id && a->alert_id == e->alert_id)
            return VG_SIMLEDGER_FOLLOWUP; /* the detecting OPEN, redelivered */
        if (e->detected) {
            v = VG_SIMLEDGER_DUPLICATE;
        } else {
            v = VG_SIMLEDGER_DETECTED;
            e->detected = 1;
            e->alert_id = a->alert_id;
            l->detected++;
        }
        *send_ns = episode_send(e, ts);
        break;
    }
    const recent_t *r = &l->recent[(size_t)dev * VG_SIMLEDGER_RECENT];
    for (int k = 0; k < VG_SIMLEDGER_RECENT && !*send_ns; k++)
        if (r[k].send_ns && r[k].ts_ms == ts)
            *send_ns = r[k].send_ns;
    return v;
}

size_t vg_simledger_episodes(const vg_simledger_t *l)
{
    return l->n;
}

size_t vg_simledger_detected(const vg_simledger_t *l)
{
    return l->detected;
}

size_t vg_simledger_resolved(const vg_simledger_t *l)
{
    return l->resolved;
}

size_t vg_simledger_cut(const vg_simledger_t *l)
{
    size_t n = 0;
    for (size_t k = 0; k < l->n; k++)
        n += !l->eps[k].complete;
    return n;
}

void vg_simledger_export(const vg_simledger_t *l, uint32_t first, vg_simepisode_t *out)
{
    for (size_t k = 0; k < l->n; k++) {
        const episode_t *e = &l->eps[k];
        out[k] = (vg_simepisode_t){
            .device = first + e->dev,
            .type = e->type,
            .detected = e->detected,
            .resolved = e->resolved,
            .complete = e->complete,
            .first_ts_ms = e->first_ts_ms,
            .last_ts_ms = e->last_ts_ms,
        };
    }
}
