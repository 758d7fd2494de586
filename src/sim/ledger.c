/* ledger.c — see ledger.h.
 *
 * Episodes live in one growing array in start order; each device keeps the
 * index of its newest episode and each episode the index of the device's
 * previous one, so a device's episodes form a list without a per-device
 * allocation. The recent sends are a fixed ring per device in one array.
 * The send time of an episode's first event is kept in the episode itself,
 * because that is the event a detector alerts on and a fast device's ring
 * may have moved on by the time the alert arrives. */
#include "sim/ledger.h"

#include "core/alloc.h"
#include "core/err.h"

typedef struct {
    uint32_t dev;
    uint8_t type;
    uint8_t detected;
    int32_t prev; /* previous episode of the same device, -1: none */
    int64_t first_ts_ms, last_ts_ms;
    uint64_t first_send_ns;
} episode_t;

typedef struct {
    int64_t ts_ms;
    uint64_t send_ns; /* 0: empty */
} recent_t;

struct vg_simledger {
    uint32_t devices;
    int32_t *newest; /* per device: index of its newest episode, -1: none */
    uint32_t *ring_pos;
    recent_t *recent; /* devices * VG_SIMLEDGER_RECENT */
    episode_t *eps;
    size_t n, cap, detected;
};

vg_simledger_t *vg_simledger_new(uint32_t devices)
{
    vg_simledger_t *l = vg_calloc(VG_MEM_SIM, 1, sizeof *l);
    if (!l)
        return NULL;
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
    if (!s->episode_start) {
        if (l->newest[dev] >= 0)
            l->eps[l->newest[dev]].last_ts_ms = s->ts_ms;
        return VG_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        episode_t *e = cap <= INT32_MAX ? vg_realloc(VG_MEM_SIM, l->eps, cap * sizeof *e) : NULL;
        if (!e) {
            /* Later samples of this episode must not extend an older one. */
            l->newest[dev] = -1;
            return VG_ENOMEM;
        }
        l->eps = e;
        l->cap = cap;
    }
    l->eps[l->n] = (episode_t){
        .dev = dev,
        .type = s->anomaly,
        .prev = l->newest[dev],
        .first_ts_ms = s->ts_ms,
        .last_ts_ms = s->ts_ms,
        .first_send_ns = send_ns,
    };
    l->newest[dev] = (int32_t)l->n++;
    return VG_OK;
}

vg_simledger_verdict_t vg_simledger_alert(vg_simledger_t *l, uint32_t dev, int type, int64_t ts_ms, uint64_t *send_ns)
{
    vg_simledger_verdict_t v = VG_SIMLEDGER_FALSE;
    *send_ns = 0;
    for (int32_t k = l->newest[dev]; k >= 0; k = l->eps[k].prev) {
        episode_t *e = &l->eps[k];
        if (e->type != type || ts_ms < e->first_ts_ms || ts_ms > e->last_ts_ms)
            continue;
        v = e->detected ? VG_SIMLEDGER_DUPLICATE : VG_SIMLEDGER_DETECTED;
        if (!e->detected) {
            e->detected = 1;
            l->detected++;
        }
        if (ts_ms == e->first_ts_ms)
            *send_ns = e->first_send_ns;
        break;
    }
    const recent_t *r = &l->recent[(size_t)dev * VG_SIMLEDGER_RECENT];
    for (int k = 0; k < VG_SIMLEDGER_RECENT && !*send_ns; k++)
        if (r[k].send_ns && r[k].ts_ms == ts_ms)
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

void vg_simledger_export(const vg_simledger_t *l, uint32_t first, vg_simepisode_t *out)
{
    for (size_t k = 0; k < l->n; k++) {
        const episode_t *e = &l->eps[k];
        out[k] = (vg_simepisode_t){
            .device = first + e->dev,
            .type = e->type,
            .detected = e->detected,
            .first_ts_ms = e->first_ts_ms,
            .last_ts_ms = e->last_ts_ms,
        };
    }
}
