/* processor.c — see processor.h for the contract and the checkpoint format. */
#include "proc/processor.h"

#include "alert/alert.h"
#include "alert/lifecycle.h"
#include "core/alloc.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/crc32c.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/event.h"
#include "core/fsutil.h"
#include "core/iwheel.h"
#include "core/mailbox.h"
#include "core/notify.h"
#include "core/set.h"
#include "proc/devtable.h"
#include "stream/shardmap.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "proc"
#define CKPT_MAGIC "VGCKPT01"
#define CKPT_VERSION 4
#define RING 16
#define CKPT_HDR 188
#define CKPT_V3_HDR 180 /* version 3: read for upgrades (see checkpoint_load) */
/* Wheel: 1 s ticks, 4096 slots (68 min); later deadlines come round early
 * and are re-added. */
#define WHEEL_SLOTS 4096
#define WHEEL_TICK_MS 1000
#define ACK_BY_MAX 64
#define ACK_NOTE_MAX 256
/* Without a telemetry watcher (none left on the shard): how often to look. */
#define POLL_FALLBACK_MS 50
/* How long stop waits for a shard's alerts in flight before giving up on
 * its final checkpoint. */
#define FINAL_WAIT_MS 5000

typedef struct {
    uint64_t alert_id;
    uint64_t token;
    char by[ACK_BY_MAX + 1];
    char note[ACK_NOTE_MAX + 1];
    uint16_t dev_len;
    char dev[VG_EVENT_MAX_DEVICE_ID];
} ack_req_t;

typedef struct shard_proc {
    struct vg_processor *p;
    uint32_t shard;
    pthread_t thread;
    vg_devtable_t *devs;
    vg_iwheel_t wheel;
    uint64_t last_seq; /* last processed telemetry seq */
    uint64_t ckpt_seq; /* last checkpointed seq */
    uint64_t ckpt_failures; /* checkpoint writes failed in a row (one log line per streak) */
    /* replay after a restart */
    vg_u64set_t emitted;   /* eventIds already in the alerts stream (ids are never 0) */
    vg_u64set_t acked;     /* alertIds acknowledged in the alerts stream */
    uint64_t replay_until; /* highest source seq among them; sets freed past it */
    /* Where the silence wheel stood when it emitted the stored alerts that
     * had no record behind them (see "Exactly-once" in processor.h), in
     * source seq order; replay raises the wheel to each after its record. */
    struct wheel_mark {
        uint64_t src;  /* emitted after this record was processed */
        int64_t at_ms; /* the wheel's stream time then */
    } *marks;
    size_t nmarks, marks_cap, mark_next;
    /* Stream time (processor.h): at a record, a function of the records
     * alone — so that a replay sees the same time at the same record —
     * and while idle, that plus the wall time since the last record. */
    int64_t ring[RING];   /* the last RING event times, ring order */
    int64_t sorted[RING]; /* the same, ascending (the median without a sort) */
    uint32_t ring_n, ring_pos;
    int64_t now_base;     /* stream time at the last record, never decreasing */
    int64_t arr_base;     /* arrival time (the log's, wall ms) of that record */
    uint64_t mono_last;   /* monotonic ns when it was processed (idle advance) */
    uint64_t src_seq;     /* source seq for events without a record: the record being processed, else the last */
    /* the record (or tick) being handled, for emit() */
    const vg_record_t *cur_rec;
    const char *cur_dev;
    size_t cur_dev_len;
    int64_t cur_time_ms;
    const ack_req_t *cur_ack;
    vg_mailbox_t acks;   /* ack_req_t from vg_processor_ack; wakes `wake` */
    atomic_uint pending; /* alerts appended, not yet durable */
    /* The thread's one wake-up: posted by the telemetry shard's watcher
     * (new durable records), by vg_processor_ack, by the alert durable
     * callback when pending drops to 0, and by stop. Everything else the
     * thread waits for is a deadline it computes itself. */
    vg_notify_t wake;
    atomic_uint_fast64_t processed, alerts, replayed, checkpoints, processed_seq, ndevs, overflow, emit_err, ticks;
    atomic_uint_fast64_t kinds[5];
    atomic_int_fast64_t open_now;
    atomic_uint_fast64_t by_type[VG_ALERT__COUNT];
    char ckpt_path[PATH_MAX];
} shard_proc_t;

struct vg_processor {
    vg_processor_opts_t o;
    uint32_t nshards;
    atomic_bool stop;
    shard_proc_t *shards;
    /* 1 for the owner (dropped by vg_processor_stop) + 1 per alert appended
     * and not yet called back. Whoever drops the last reference frees p:
     * normally stop; but an alert still in flight when stop gives up
     * waiting (a full disk, say) is called back later, from
     * vg_log_close of the alerts stream, and must find p alive. */
    atomic_uint refs;
};

typedef struct {
    shard_proc_t *sp;
    uint64_t ack_token; /* 0: not an acknowledgement */
    uint64_t alert_id;
    size_t topic_len;
    size_t payload_len;
    char data[]; /* topic then payload */
} pending_alert_t;

/* ---- stream time --------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Stream time never runs ahead of a record's arrival (the wall clock when
 * it was received) by more than this. A device whose clock is in the
 * future must not drag its shard's time along (on a shard with one other
 * device it could be half the median's records): everyone else would look
 * stale and, for as long as the skew, offline. A replay of the past is
 * never near the cap. The cap is taken from the record, not from the clock
 * at processing time, so a replay caps exactly as the first pass did. */
#define FUTURE_MAX_MS 60000

static int64_t cap_future(int64_t t, int64_t arrival_ms)
{
    int64_t lim = (arrival_ms > 0 ? arrival_ms : vg_clock_wall_ms()) + FUTURE_MAX_MS;
    return t > lim ? lim : t;
}

/* Rebuilds sorted[] from ring[] (after a checkpoint load). */
static void sorted_rebuild(shard_proc_t *sp)
{
    memcpy(sp->sorted, sp->ring, sizeof sp->sorted);
    qsort(sp->sorted, sp->ring_n, sizeof sp->sorted[0], cmp_i64);
}

/* Notes a record's event time and arrival and moves stream time:
 *   now = max(median of the last 16 event times (capped),
 *             now at the previous record + the arrival time between them).
 * The second term is the "advanced by wall time while idle" of
 * processor.h, measured between the records' arrival stamps, which the
 * stream stores: so stream time at a record is the same in a replay as it
 * was live, whenever the processor gets to read it. (Taken from the
 * processing clock, as it once was, a replay after a crash ran behind the
 * first pass: a device's "last heard" time and the DEVICE_OFFLINE episode
 * dated from it came out different, and so did the alert id.) */
static void time_note(shard_proc_t *sp, int64_t ts, int64_t arrival_ms)
{
    if (sp->ring_n == RING) {
        /* drop the oldest from sorted[] */
        int64_t old = sp->ring[sp->ring_pos];
        uint32_t i = 0;
        while (i + 1 < RING && sp->sorted[i] != old)
            i++;
        memmove(sp->sorted + i, sp->sorted + i + 1, (RING - 1 - i) * sizeof sp->sorted[0]);
        sp->ring_n--;
    }
    uint32_t j = sp->ring_n;
    while (j > 0 && sp->sorted[j - 1] > ts) {
        sp->sorted[j] = sp->sorted[j - 1];
        j--;
    }
    sp->sorted[j] = ts;
    sp->ring_n++;
    sp->ring[sp->ring_pos] = ts;
    sp->ring_pos = (sp->ring_pos + 1) % RING;
    int64_t med = cap_future(sp->sorted[sp->ring_n / 2], arrival_ms);
    if (sp->now_base == 0) {
        sp->now_base = med; /* the very first record */
    } else {
        int64_t idle = arrival_ms > sp->arr_base ? arrival_ms - sp->arr_base : 0;
        int64_t cur = sp->now_base + idle;
        sp->now_base = med > cur ? med : cur; /* never backwards */
    }
    sp->arr_base = arrival_ms;
    sp->mono_last = vg_clock_mono_ns();
}

/* Stream time now: at the last record, plus the wall time since it was
 * processed while the shard is idle. (While busy that term stays small, so
 * a backlog is not pushed ahead by the time it takes to read it.) */
static int64_t stream_now(const shard_proc_t *sp)
{
    if (!sp->now_base)
        return 0;
    return sp->now_base + (int64_t)((vg_clock_mono_ns() - sp->mono_last) / 1000000u);
}

/* ---- checkpoints --------------------------------------------------------- */

static int checkpoint_write(shard_proc_t *sp)
{
    uint8_t *state = NULL, *buf = NULL;
    size_t state_len = 0;
    int rc = vg_devtable_serialize(sp->devs, &state, &state_len);
    if (rc)
        return rc;
    size_t len = CKPT_HDR + state_len + 4;
    buf = vg_malloc(VG_MEM_PROC, len);
    if (!buf) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    memcpy(buf, CKPT_MAGIC, 8);
    vg_put_le32(buf + 8, CKPT_VERSION);
    vg_put_le32(buf + 12, sp->shard);
    vg_put_le64(buf + 16, sp->last_seq);
    vg_put_le64(buf + 24, (uint64_t)vg_clock_wall_ms());
    vg_put_le64(buf + 32, (uint64_t)sp->now_base);
    vg_put_le64(buf + 40, (uint64_t)sp->arr_base);
    for (int i = 0; i < RING; i++)
        vg_put_le64(buf + 48 + 8 * i, (uint64_t)sp->ring[i]);
    vg_put_le32(buf + 176, sp->ring_n);
    vg_put_le32(buf + 180, sp->ring_pos);
    vg_put_le32(buf + 184, (uint32_t)state_len);
    if (state_len)
        memcpy(buf + CKPT_HDR, state, state_len);
    vg_put_le32(buf + CKPT_HDR + state_len, vg_crc32c(0, buf, CKPT_HDR + state_len));
    rc = vg_fs_write_atomic(sp->ckpt_path, buf, len);
    if (rc == VG_OK) {
        sp->ckpt_seq = sp->last_seq;
        atomic_fetch_add_explicit(&sp->checkpoints, 1, memory_order_relaxed);
    }
cleanup:
    vg_free(state);
    vg_free(buf);
    return rc;
}

static int checkpoint_load(shard_proc_t *sp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = vg_fs_read_all(sp->ckpt_path, (size_t)1 << 34, &buf, &len);
    if (rc == VG_ENOTFOUND)
        return VG_OK; /* first start: from the beginning */
    if (rc)
        return rc;
    rc = VG_ECORRUPT;
    if (len < 16 || memcmp(buf, CKPT_MAGIC, 8) != 0)
        goto cleanup;
    uint32_t version = vg_get_le32(buf + 8);
    if (version != CKPT_VERSION && version != 3) {
        VG_ERROR(MOD, "checkpoint %s has version %u; this build reads versions 3 and %u", sp->ckpt_path, version,
                 CKPT_VERSION);
        rc = VG_EPROTO;
        goto cleanup;
    }
    /* Version 3 (the upgrade path) lacks the arrival time at offset 40 and
     * stored the stream time of the moment of writing; taking that moment
     * as the arrival base continues stream time the same way. */
    size_t hdr = version == 3 ? CKPT_V3_HDR : CKPT_HDR, ring_at = version == 3 ? 40 : 48;
    if (len < hdr + 4 || vg_get_le32(buf + 12) != sp->shard)
        goto cleanup;
    uint32_t state_len = vg_get_le32(buf + hdr - 4);
    if ((size_t)state_len + hdr + 4 != len)
        goto cleanup;
    if (vg_get_le32(buf + hdr + state_len) != vg_crc32c(0, buf, hdr + state_len))
        goto cleanup;
    rc = vg_devtable_restore(sp->devs, buf + hdr, state_len);
    if (rc == VG_EPROTO) {
        VG_WARN(MOD, "checkpoint %s holds device state of another layout (an upgrade): keeping the position, "
                     "restarting device state from zero (baselines are relearned; alerts open before are not resolved)",
                sp->ckpt_path);
        rc = VG_OK;
    }
    if (rc)
        goto cleanup;
    sp->last_seq = sp->ckpt_seq = vg_get_le64(buf + 16);
    sp->now_base = (int64_t)vg_get_le64(buf + 32);
    sp->arr_base = (int64_t)vg_get_le64(buf + (version == 3 ? 24 : 40));
    sp->mono_last = vg_clock_mono_ns();
    for (int i = 0; i < RING; i++)
        sp->ring[i] = (int64_t)vg_get_le64(buf + ring_at + 8 * i);
    sp->ring_n = vg_get_le32(buf + ring_at + 128);
    sp->ring_pos = vg_get_le32(buf + ring_at + 132);
    if (sp->ring_n > RING || sp->ring_pos >= RING || (sp->ring_n < RING && sp->ring_pos != sp->ring_n)) {
        rc = VG_ECORRUPT;
        goto cleanup;
    }
    sorted_rebuild(sp);
cleanup:
    if (rc)
        VG_ERROR(MOD, "checkpoint %s is unusable (%s); refusing to guess a position", sp->ckpt_path, vg_strerror(rc));
    vg_free(buf);
    return rc;
}

/* The integer after key (e.g. "\"eventTimeMs\":") in a JSON text of len
 * bytes (not NUL-terminated). VG_ENOTFOUND if absent. */
static int json_int_after(const uint8_t *v, size_t len, const char *key, int64_t *out)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < len; i++) {
        if (v[i] != (uint8_t)key[0] || memcmp(v + i, key, kl) != 0)
            continue;
        char num[24];
        size_t k = 0;
        for (size_t j = i + kl; j < len && k + 1 < sizeof num && (v[j] == '-' || (v[j] >= '0' && v[j] <= '9')); j++)
            num[k++] = (char)v[j];
        num[k] = '\0';
        if (!k)
            return VG_ENOTFOUND;
        *out = strtoll(num, NULL, 10);
        return VG_OK;
    }
    return VG_ENOTFOUND;
}

static bool silence_type(uint8_t type)
{
    return type == VG_ALERT_DATA_GAP || type == VG_ALERT_DEVICE_OFFLINE;
}

static int mark_add(shard_proc_t *sp, uint64_t src, int64_t at_ms)
{
    if (sp->nmarks && sp->marks[sp->nmarks - 1].src == src) {
        if (at_ms > sp->marks[sp->nmarks - 1].at_ms)
            sp->marks[sp->nmarks - 1].at_ms = at_ms;
        return VG_OK;
    }
    if (sp->nmarks == sp->marks_cap) {
        size_t cap = sp->marks_cap ? sp->marks_cap * 2 : 16;
        struct wheel_mark *m = vg_realloc(VG_MEM_PROC, sp->marks, cap * sizeof *m);
        if (!m)
            return VG_ENOMEM;
        sp->marks = m;
        sp->marks_cap = cap;
    }
    sp->marks[sp->nmarks++] = (struct wheel_mark){src, at_ms};
    return VG_OK;
}

/* Adds id to a replay set; only running out of memory is an error (an id
 * seen twice is the same id, and 0 is never an id). */
static int remember(vg_u64set_t *set, uint64_t id)
{
    return vg_u64set_add(set, id) == VG_ENOMEM ? VG_ENOMEM : VG_OK;
}

/* Events already in the alerts stream at or after the checkpoint, so a
 * replay does not emit them twice; acknowledgements to re-apply; and the
 * wheel marks: for every stored silence OPEN that no sample caused (a
 * sample's detection stores OPEN and RESOLVED together, at its own seq),
 * where the wheel stood when it fired — its eventTimeMs, the stream time
 * of the tick. Records are in processing order, so the marks come sorted
 * by source seq. */
static int scan_emitted(shard_proc_t *sp)
{
    vg_log_reader_t *r = NULL;
    int rc = vg_log_reader_open(sp->p->o.alerts, sp->shard, 0, &r);
    if (rc)
        return rc;
    vg_record_t rec;
    /* the last silence OPEN seen, until we know whether a sample caused it */
    uint64_t open_src = 0, open_aid = 0;
    int64_t open_at = 0; /* its eventTimeMs */
    bool have_open = false;
    while ((rc = vg_log_reader_next(r, &rec)) == VG_OK) {
        uint64_t src, eid, aid;
        uint8_t kind, type;
        if (vg_alert_meta_decode(rec.meta, rec.meta_len, &src, &type, &kind, NULL, &eid, &aid) != VG_OK)
            continue; /* a record of an older format: nothing to suppress */
        if (src < sp->ckpt_seq)
            continue;
        if (remember(&sp->emitted, eid) != VG_OK || (kind == VG_AEV_ACK && remember(&sp->acked, aid) != VG_OK)) {
            rc = VG_ENOMEM;
            break;
        }
        if (src > sp->replay_until)
            sp->replay_until = src;
        if (!silence_type(type))
            continue;
        if (kind == VG_AEV_RESOLVED && have_open && aid == open_aid && src == open_src) {
            have_open = false; /* opened and resolved by one sample: not the wheel's */
            continue;
        }
        if (kind != VG_AEV_OPEN)
            continue;
        if (have_open && mark_add(sp, open_src, open_at) != VG_OK) {
            rc = VG_ENOMEM;
            break;
        }
        int64_t at = 0;
        have_open = json_int_after(rec.value, rec.value_len, "\"eventTimeMs\":", &at) == VG_OK;
        /* A tick's stream time was at most a minute past the wall clock,
         * which was at most this record's append time: a larger value is
         * not a tick's (an OPEN whose RESOLVED was lost); never raise the
         * wheel beyond what the first pass can have reached. */
        if (rec.arrival_ms > 0 && at > rec.arrival_ms + FUTURE_MAX_MS)
            at = rec.arrival_ms + FUTURE_MAX_MS;
        open_src = src;
        open_aid = aid;
        open_at = at;
    }
    if ((rc == VG_AGAIN || rc == VG_OK) && have_open && mark_add(sp, open_src, open_at) != VG_OK)
        rc = VG_ENOMEM;
    vg_log_reader_close(r);
    return rc == VG_AGAIN ? VG_OK : rc;
}

/* ---- alerts -------------------------------------------------------------- */

static void shards_free(struct vg_processor *p);

/* Drops one reference (see struct vg_processor); the last one frees p. */
static void processor_unref(struct vg_processor *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        shards_free(p);
        vg_free(p);
    }
}

static void on_alert_durable(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    pending_alert_t *pa = (pending_alert_t *)(uintptr_t)token;
    shard_proc_t *sp = pa->sp;
    struct vg_processor *p = sp->p;
    if (status == VG_OK) {
        if (p->o.publish)
            p->o.publish(p->o.publish_ctx, pa->data, pa->topic_len, pa->data + pa->topic_len, pa->payload_len);
    } else {
        VG_ERROR(MOD, "alert record for shard %u could not be stored: %s", sp->shard, vg_strerror(status));
    }
    if (pa->ack_token && p->o.ack_done)
        p->o.ack_done(p->o.ack_ctx, pa->ack_token, status, pa->alert_id, pa->data + 7, pa->topic_len - 7);
    vg_free(pa);
    /* The last alert in flight: a checkpoint (or the final one at stop) may
     * be waiting for exactly this. */
    if (atomic_fetch_sub_explicit(&sp->pending, 1, memory_order_acq_rel) == 1)
        vg_notify_post(&sp->wake);
    processor_unref(p); /* last touch of p and sp */
}

/* The telemetry shard's watcher (committer thread): new durable records. */
static void on_telemetry(void *ctx, uint32_t shard, uint64_t durable_seq)
{
    (void)shard;
    (void)durable_seq;
    vg_notify_post(&((shard_proc_t *)ctx)->wake);
}

static const vg_detect_cfg_t *cfg_for(const struct vg_processor *p, const char *dev, size_t len)
{
    if (p->o.device_cfg && p->o.device_cfg->count) {
        uint64_t v;
        if (vg_strmap_get(p->o.device_cfg, dev, len, &v) == VG_OK)
            return (const vg_detect_cfg_t *)(uintptr_t)v;
    }
    return p->o.cfg;
}

/* The lifecycle's emit: render, append, publish once durable. */
static int emit(void *ctx, const vg_alert_event_t *ev)
{
    shard_proc_t *sp = ctx;
    if (vg_u64set_has(&sp->emitted, ev->event_id)) {
        atomic_fetch_add_explicit(&sp->replayed, 1, memory_order_relaxed);
        return VG_OK;
    }
    vg_alert_json_t a;
    memset(&a, 0, sizeof a);
    a.kind = ev->kind;
    a.type = ev->type;
    a.severity = ev->severity;
    a.alert_id = ev->alert_id;
    a.event_id = ev->event_id;
    a.revision = ev->revision;
    a.acked = ev->acked;
    a.dev_id = sp->cur_dev;
    a.dev_len = sp->cur_dev_len;
    if (ev->cond) {
        a.value = ev->cond->value;
        a.threshold = ev->cond->threshold;
        a.samples = ev->cond->samples;
        a.min_hr = ev->cond->min_hr;
        a.mean_hr = ev->cond->mean_hr;
        a.max_hr = ev->cond->max_hr;
        a.active_share = ev->cond->active_share;
        a.window_ms = ev->cond->window_ms;
    }
    a.opened_at_ms = ev->opened_at_ms;
    a.event_time_ms = sp->cur_time_ms;
    a.detected_at_ms = vg_clock_wall_ms();
    a.shard = sp->shard;
    a.seq = sp->cur_rec ? sp->cur_rec->seq : sp->src_seq;
    a.open_seq = ev->open_seq;
    uint64_t ack_token = 0;
    if (ev->kind == VG_AEV_ACK && sp->cur_ack) {
        a.ack_by = sp->cur_ack->by;
        a.ack_note = sp->cur_ack->note;
        a.ack_at_ms = vg_clock_wall_ms();
        ack_token = sp->cur_ack->token;
    }
    char payload[2048];
    int n = vg_alert_render(&a, payload, sizeof payload);
    if (n < 0) {
        atomic_fetch_add_explicit(&sp->emit_err, 1, memory_order_relaxed);
        VG_ERROR(MOD, "shard %u: alert for %.*s does not render: %s", sp->shard, (int)sp->cur_dev_len, sp->cur_dev,
                 vg_strerror(n));
        return VG_OK;
    }
    size_t tlen = 7 + sp->cur_dev_len;
    pending_alert_t *pa = vg_malloc(VG_MEM_PROC, sizeof *pa + tlen + (size_t)n);
    if (!pa)
        return VG_ENOMEM;
    pa->sp = sp;
    pa->ack_token = ack_token;
    pa->alert_id = ev->alert_id;
    pa->topic_len = tlen;
    pa->payload_len = (size_t)n;
    memcpy(pa->data, "alerts/", 7);
    memcpy(pa->data + 7, sp->cur_dev, sp->cur_dev_len);
    memcpy(pa->data + tlen, payload, (size_t)n);
    uint8_t meta[VG_ALERT_META_LEN];
    vg_alert_meta_encode(meta, a.seq, ev->type, ev->kind, ev->revision, ev->event_id, ev->alert_id);
    atomic_fetch_add_explicit(&sp->pending, 1, memory_order_acq_rel);
    atomic_fetch_add_explicit(&sp->p->refs, 1, memory_order_relaxed);
    int rc = vg_log_append_shard(sp->p->o.alerts, sp->shard, sp->cur_dev, sp->cur_dev_len, meta, sizeof meta, payload,
                                 (size_t)n, vg_clock_wall_ms(), on_alert_durable, sp, (uint64_t)(uintptr_t)pa, NULL);
    if (rc) {
        atomic_fetch_sub_explicit(&sp->pending, 1, memory_order_acq_rel);
        atomic_fetch_sub_explicit(&sp->p->refs, 1, memory_order_relaxed); /* the owner's keeps it above 0 */
        vg_free(pa);
        atomic_fetch_add_explicit(&sp->emit_err, 1, memory_order_relaxed);
        VG_ERROR(MOD, "shard %u: alert append failed: %s", sp->shard, vg_strerror(rc));
        return rc;
    }
    atomic_fetch_add_explicit(&sp->alerts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sp->kinds[ev->kind], 1, memory_order_relaxed);
    if (ev->kind == VG_AEV_OPEN) {
        atomic_fetch_add_explicit(&sp->by_type[ev->type], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sp->open_now, 1, memory_order_relaxed);
    } else if (ev->kind == VG_AEV_RESOLVED) {
        atomic_fetch_sub_explicit(&sp->open_now, 1, memory_order_relaxed);
    }
    return VG_OK;
}

/* Runs the lifecycle on conds for the device at index ix. */
static void apply(shard_proc_t *sp, vg_devstate_t *st, uint64_t open_seq, const vg_cond_t *conds, int n)
{
    if (n <= 0)
        return;
    int rc = vg_lifecycle_apply(st->slots, sp->cur_dev, sp->cur_dev_len, open_seq, conds, n, emit, sp);
    if (rc == VG_ELIMIT) {
        atomic_fetch_add_explicit(&sp->overflow, 1, memory_order_relaxed);
        VG_WARN(MOD, "device %.*s has %d alerts open: a new condition is not tracked", (int)sp->cur_dev_len,
                sp->cur_dev, VG_LIFECYCLE_SLOTS);
    }
    /* After a restart: an alert acknowledged before the crash is opened
     * again by the replay (suppressed); give it back its flag. */
    if (sp->acked.count)
        for (int i = 0; i < VG_LIFECYCLE_SLOTS; i++)
            if (st->slots[i].type != VG_ALERT_NONE && !st->slots[i].acked &&
                vg_u64set_has(&sp->acked, vg_lifecycle_slot_id(&st->slots[i], sp->cur_dev, sp->cur_dev_len)))
                st->slots[i].acked = 1;
}

static void on_deadline(void *ctx, uint32_t ix);

static void schedule(shard_proc_t *sp, uint32_t ix, const vg_detect_cfg_t *c, const vg_devstate_t *st)
{
    /* The wheel's clock starts at the stream time of the first schedule:
     * started from a deadline instead, every earlier deadline added later
     * would wait for that one. */
    if (sp->wheel.cur_tick == INT64_MIN) {
        int64_t now = stream_now(sp);
        if (!now)
            now = st->common.last_ts_ms;
        vg_iwheel_advance(&sp->wheel, now, on_deadline, sp);
    }
    int64_t d = vg_devstate_deadline(c, st);
    if (d == INT64_MAX)
        return; /* nothing to watch; a linked node fires once and is dropped */
    if (vg_iwheel_reserve(&sp->wheel, ix + 1) != VG_OK)
        return; /* no memory for the node: silence goes unnoticed for this device; counted by the allocator */
    if (vg_iwheel_linked(&sp->wheel, ix)) {
        if (vg_iwheel_deadline(&sp->wheel, ix) <= d)
            return; /* lazy: it fires early and is re-added */
        vg_iwheel_remove(&sp->wheel, ix);
    }
    vg_iwheel_add(&sp->wheel, ix, d);
}

static void on_deadline(void *ctx, uint32_t ix)
{
    shard_proc_t *sp = ctx;
    const char *dev;
    size_t dlen;
    vg_devstate_t *st = vg_devtable_at(sp->devs, ix, &dev, &dlen);
    if (!st)
        return;
    const vg_detect_cfg_t *c = cfg_for(sp->p, dev, dlen);
    int64_t now = sp->cur_time_ms;
    int64_t d = vg_devstate_deadline(c, st);
    if (d > now) {
        if (d != INT64_MAX)
            vg_iwheel_add(&sp->wheel, ix, d);
        return;
    }
    vg_cond_t conds[VG_DETECT_MAX_CONDS];
    int n = vg_devstate_tick(c, st, now, conds);
    atomic_fetch_add_explicit(&sp->ticks, 1, memory_order_relaxed);
    sp->cur_dev = dev;
    sp->cur_dev_len = dlen;
    apply(sp, st, 0, conds, n);
    /* apply may have grown nothing (no new devices), so st is still valid */
    int64_t nd = vg_devstate_deadline(c, st);
    if (nd != INT64_MAX) {
        if (nd <= now)
            nd = now + WHEEL_TICK_MS; /* never spin on a deadline that does not move */
        vg_iwheel_add(&sp->wheel, ix, nd);
    }
}

/* Runs the silence checks due by stream time now; events they emit carry
 * src_seq as their source (the record being processed, or the last one). */
static void run_deadlines(shard_proc_t *sp, int64_t now, uint64_t src_seq)
{
    if (!now)
        return;
    const vg_record_t *saved = sp->cur_rec;
    sp->cur_rec = NULL;
    sp->cur_time_ms = now;
    sp->src_seq = src_seq;
    vg_iwheel_advance(&sp->wheel, now, on_deadline, sp);
    sp->cur_rec = saved;
}

/* Replay: the wheel marks of records up to seq (see scan_emitted). Raising
 * the wheel to where it stood when it emitted a stored alert re-runs that
 * tick here, at the same place in the telemetry, so the alert is
 * recomputed (and suppressed) before the replay leaves the records the
 * alerts stream knows — instead of firing again later, after the sets that
 * suppress it are gone. */
static void apply_marks(shard_proc_t *sp, uint64_t seq)
{
    while (sp->mark_next < sp->nmarks && sp->marks[sp->mark_next].src <= seq) {
        const struct wheel_mark *m = &sp->marks[sp->mark_next++];
        run_deadlines(sp, m->at_ms, m->src);
    }
    if (sp->nmarks && sp->mark_next == sp->nmarks) {
        vg_free(sp->marks);
        sp->marks = NULL;
        sp->nmarks = sp->marks_cap = sp->mark_next = 0;
    }
}

static int process_record(shard_proc_t *sp, const vg_record_t *rec)
{
    double hr;
    int64_t steps, ts;
    if (vg_event_meta_decode(rec->meta, rec->meta_len < VG_EVENT_META_LEN ? rec->meta_len : VG_EVENT_META_LEN, &hr,
                             &steps, &ts) != VG_OK) {
        /* Only validated events enter the telemetry stream; a record without
         * parsed fields means a foreign writer: skip it, loudly. */
        VG_WARN(MOD, "shard %u seq %llu has no event metadata; skipped", sp->shard, (unsigned long long)rec->seq);
        return VG_OK;
    }
    uint32_t ix;
    vg_devstate_t *st = vg_devtable_get(sp->devs, (const char *)rec->key, rec->key_len, &ix);
    if (!st)
        return VG_ENOMEM; /* before time_note: the retry must not count the record twice */
    time_note(sp, ts, rec->arrival_ms);
    int64_t now = sp->now_base; /* the record's stream time; no processing-clock term */
    const char *dev;
    size_t dlen;
    vg_devtable_at(sp->devs, ix, &dev, &dlen);
    const vg_detect_cfg_t *c = cfg_for(sp->p, dev, dlen);
    vg_cond_t conds[VG_DETECT_MAX_CONDS];
    int n = vg_devstate_feed(c, st, hr, steps, ts, now, rec->seq, conds);
    sp->cur_rec = rec;
    sp->cur_dev = dev;
    sp->cur_dev_len = dlen;
    sp->cur_time_ms = ts;
    apply(sp, st, rec->seq, conds, n);
    schedule(sp, ix, c, st);
    sp->cur_rec = NULL;
    run_deadlines(sp, now, rec->seq);
    return VG_OK;
}

static void handle_acks(shard_proc_t *sp)
{
    if (!vg_mailbox_pending(&sp->acks))
        return;
    void *items;
    size_t n = vg_mailbox_take(&sp->acks, &items);
    ack_req_t *reqs = items;
    struct vg_processor *p = sp->p;
    for (size_t i = 0; i < n; i++) {
        ack_req_t *q = &reqs[i];
        uint32_t ix = 0;
        int rc = VG_ENOTFOUND;
        vg_devstate_t *st = vg_devtable_find(sp->devs, q->dev, q->dev_len, &ix);
        if (st) {
            const char *dev;
            size_t dlen;
            vg_devtable_at(sp->devs, ix, &dev, &dlen);
            sp->cur_dev = dev;
            sp->cur_dev_len = dlen;
            sp->cur_rec = NULL;
            sp->src_seq = sp->last_seq;
            sp->cur_time_ms = stream_now(sp);
            sp->cur_ack = q;
            rc = vg_lifecycle_ack(st->slots, dev, dlen, q->alert_id, emit, sp);
            sp->cur_ack = NULL;
            if (rc == VG_OK)
                continue; /* reported once the ACKNOWLEDGED record is durable */
        }
        if (p->o.ack_done)
            p->o.ack_done(p->o.ack_ctx, q->token, rc, q->alert_id, q->dev, q->dev_len);
    }
}

static void maybe_checkpoint(shard_proc_t *sp)
{
    if (sp->last_seq == sp->ckpt_seq)
        return;
    /* A checkpoint past an alert that is not yet durable could lose that
     * alert in a crash; wait for the alert to land first. */
    if (atomic_load_explicit(&sp->pending, memory_order_acquire) != 0)
        return;
    int rc = checkpoint_write(sp);
    if (rc != VG_OK) {
        /* A full disk fails every try until space returns: one line when
         * the streak starts, one when it ends, not one per batch. */
        if (sp->ckpt_failures++ == 0)
            VG_ERROR(MOD, "shard %u: cannot write the checkpoint %s: %s; will retry", sp->shard, sp->ckpt_path,
                     vg_strerror(rc));
    } else if (sp->ckpt_failures) {
        VG_INFO(MOD, "shard %u: checkpoint written again after %llu failed attempts", sp->shard,
                (unsigned long long)sp->ckpt_failures);
        sp->ckpt_failures = 0;
    }
}

/* Milliseconds until the silence wheel next has something due, on stream
 * time (which advances with wall time while the shard is idle), or -1 if
 * nothing is armed. */
static int64_t wheel_wait_ms(shard_proc_t *sp)
{
    int64_t due = vg_iwheel_next_due(&sp->wheel);
    int64_t now = stream_now(sp);
    if (due == INT64_MAX || !now)
        return -1; /* without a stream time run_deadlines does nothing: no use waking for it */
    return due > now ? due - now : 0;
}

static int64_t min_wait(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Sleeps until something for this shard may have changed: a post (records,
 * an acknowledgement, the last alert durable, stop) or one of the deadlines
 * the thread keeps (silence wheel; the checkpoint interval, but only while
 * there is progress to checkpoint and no alert in flight — when alerts are
 * in flight, the post of the last one comes first). */
static void idle_wait(shard_proc_t *sp, uint64_t last_ckpt_ns, uint64_t interval_ns)
{
    int64_t t = wheel_wait_ms(sp);
    if (sp->last_seq != sp->ckpt_seq && atomic_load_explicit(&sp->pending, memory_order_acquire) == 0) {
        uint64_t now = vg_clock_mono_ns(), due = last_ckpt_ns + interval_ns;
        t = min_wait(t, due > now ? (int64_t)((due - now + 999999u) / 1000000u) : 0);
    }
    vg_notify_wait(&sp->wake, t);
}

/* A pause before retrying after an error; a stop ends it. */
static void error_pause(shard_proc_t *sp, int64_t ms)
{
    uint64_t until = vg_clock_mono_ns() + (uint64_t)ms * 1000000u;
    for (uint64_t now; !atomic_load(&sp->p->stop) && (now = vg_clock_mono_ns()) < until;)
        vg_notify_wait(&sp->wake, (int64_t)((until - now + 999999u) / 1000000u));
}

static void *shard_main(void *arg)
{
    shard_proc_t *sp = arg;
    struct vg_processor *p = sp->p;
    vg_log_reader_t *r = NULL;
    char name[16];
    snprintf(name, sizeof name, "vg-proc-%u", sp->shard);
    pthread_setname_np(pthread_self(), name); /* per-thread figures in top -H and /proc */
    /* Watch first, read after: a commit between the two still posts. */
    int wrc = vg_log_watch(p->o.telemetry, sp->shard, on_telemetry, sp);
    if (wrc != VG_OK)
        VG_WARN(MOD, "shard %u: cannot watch the telemetry shard (%s); polling every %d ms instead", sp->shard,
                vg_strerror(wrc), POLL_FALLBACK_MS);
    uint64_t last_ckpt_ns = vg_clock_mono_ns();
    uint64_t interval_ns = (uint64_t)p->o.checkpoint_interval_ms * 1000000u;
    while (!atomic_load(&p->stop)) {
        if (!r && vg_log_reader_open(p->o.telemetry, sp->shard, sp->last_seq + 1, &r) != VG_OK) {
            VG_ERROR(MOD, "shard %u: cannot open a reader at seq %llu", sp->shard,
                     (unsigned long long)sp->last_seq + 1);
            r = NULL;
            error_pause(sp, 200);
            continue;
        }
        vg_record_t rec;
        int rc = VG_OK;
        int budget = 4096;
        while (budget-- > 0 && (rc = vg_log_reader_next(r, &rec)) == VG_OK) {
            apply_marks(sp, rec.seq - 1);
            if (process_record(sp, &rec) == VG_ENOMEM) {
                VG_ERROR(MOD, "shard %u: out of memory at seq %llu; retrying", sp->shard,
                         (unsigned long long)rec.seq);
                vg_log_reader_close(r);
                r = NULL;
                error_pause(sp, 100);
                break;
            }
            sp->last_seq = rec.seq;
            atomic_fetch_add_explicit(&sp->processed, 1, memory_order_relaxed);
            atomic_store_explicit(&sp->processed_seq, rec.seq, memory_order_relaxed);
            if (sp->replay_until && rec.seq > sp->replay_until) {
                /* past everything the alerts stream knew: stop checking */
                vg_u64set_deinit(&sp->emitted);
                vg_u64set_deinit(&sp->acked);
                sp->replay_until = 0;
            }
        }
        handle_acks(sp);
        /* Idle shards still see time pass (devices going silent). */
        apply_marks(sp, sp->last_seq);
        run_deadlines(sp, stream_now(sp), sp->last_seq);
        atomic_store_explicit(&sp->ndevs, vg_devtable_count(sp->devs), memory_order_relaxed);
        uint64_t now = vg_clock_mono_ns();
        if (now - last_ckpt_ns >= interval_ns) {
            maybe_checkpoint(sp);
            last_ckpt_ns = now;
        }
        if (!r || budget > 0) {
            if (r && rc != VG_AGAIN) {
                VG_ERROR(MOD, "shard %u: reading telemetry failed at seq %llu: %s", sp->shard,
                         (unsigned long long)sp->last_seq + 1, vg_strerror(rc));
                vg_log_reader_close(r);
                r = NULL;
                error_pause(sp, 500);
                continue;
            }
            if (!vg_mailbox_pending(&sp->acks) && !atomic_load(&p->stop)) {
                if (wrc == VG_OK)
                    idle_wait(sp, last_ckpt_ns, interval_ns);
                else
                    vg_notify_wait(&sp->wake, POLL_FALLBACK_MS);
            }
        }
    }
    if (wrc == VG_OK)
        vg_log_unwatch(p->o.telemetry, sp->shard, on_telemetry, sp);
    vg_log_reader_close(r);
    handle_acks(sp);
    /* Final checkpoint once this shard's alerts are durable (bounded wait;
     * the callback of the last one posts). */
    uint64_t until = vg_clock_mono_ns() + FINAL_WAIT_MS * 1000000ull;
    for (uint64_t now; atomic_load(&sp->pending) != 0 && (now = vg_clock_mono_ns()) < until;)
        vg_notify_wait(&sp->wake, (int64_t)((until - now + 999999u) / 1000000u));
    if (atomic_load(&sp->pending) == 0)
        maybe_checkpoint(sp);
    else
        VG_WARN(MOD, "shard %u: alerts still pending at stop; keeping the older checkpoint", sp->shard);
    return NULL;
}

/* Rebuilds the wheel from restored device state. */
static int schedule_all(shard_proc_t *sp)
{
    size_t n = vg_devtable_count(sp->devs);
    if (n && vg_iwheel_reserve(&sp->wheel, (uint32_t)n) != VG_OK)
        return VG_ENOMEM;
    int64_t open = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *dev;
        size_t dlen;
        vg_devstate_t *st = vg_devtable_at(sp->devs, i, &dev, &dlen);
        schedule(sp, i, cfg_for(sp->p, dev, dlen), st);
        for (int k = 0; k < VG_LIFECYCLE_SLOTS; k++)
            open += st->slots[k].type != VG_ALERT_NONE;
    }
    atomic_store(&sp->open_now, open);
    return VG_OK;
}

static void shards_free(struct vg_processor *p)
{
    if (!p->shards)
        return;
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        vg_devtable_free(sp->devs);
        vg_iwheel_deinit(&sp->wheel);
        vg_u64set_deinit(&sp->emitted);
        vg_u64set_deinit(&sp->acked);
        vg_free(sp->marks);
        vg_mailbox_deinit(&sp->acks);
    }
    vg_free(p->shards);
    p->shards = NULL;
}

int vg_processor_start(const vg_processor_opts_t *o, vg_processor_t **out)
{
    int rc = VG_ENOMEM;
    struct vg_processor *p = vg_calloc(VG_MEM_PROC, 1, sizeof *p);
    if (!p)
        return VG_ENOMEM;
    p->o = *o;
    atomic_init(&p->refs, 1);
    if (!p->o.checkpoint_interval_ms)
        p->o.checkpoint_interval_ms = 1000;
    if (!p->o.cfg) {
        VG_ERROR(MOD, "no detector configuration given");
        vg_free(p);
        return VG_EINVAL;
    }
    p->nshards = vg_log_shard_count(o->telemetry);
    if (vg_log_shard_count(o->alerts) != p->nshards) {
        VG_ERROR(MOD, "alerts stream has %u shards, telemetry %u: they must match", vg_log_shard_count(o->alerts),
                 p->nshards);
        vg_free(p);
        return VG_EINVAL;
    }
    p->shards = vg_calloc(VG_MEM_PROC, p->nshards, sizeof *p->shards);
    if (!p->shards)
        goto cleanup;
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        vg_notify_init(&sp->wake);
        vg_u64set_init(&sp->emitted, VG_MEM_PROC);
        vg_u64set_init(&sp->acked, VG_MEM_PROC);
        /* One wake-up for everything the shard thread waits for: acks post it too. */
        if (vg_mailbox_init(&sp->acks, sizeof(ack_req_t), VG_MEM_PROC, &sp->wake, -1) != VG_OK) {
            rc = VG_EIO;
            goto cleanup;
        }
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/consumers/detector", o->data_dir);
    rc = vg_fs_mkdir_p(dir);
    if (rc)
        goto cleanup;
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        sp->p = p;
        sp->shard = i;
        snprintf(sp->ckpt_path, sizeof sp->ckpt_path, "%s/%u.ckpt", dir, i);
        rc = vg_devtable_new(&sp->devs);
        if (rc)
            goto cleanup;
        rc = vg_iwheel_init(&sp->wheel, WHEEL_SLOTS, WHEEL_TICK_MS);
        if (rc)
            goto cleanup;
        rc = checkpoint_load(sp);
        if (rc)
            goto cleanup;
        rc = scan_emitted(sp);
        if (rc)
            goto cleanup;
        rc = schedule_all(sp);
        if (rc)
            goto cleanup;
        VG_INFO(MOD,
                "shard %u: resuming after seq %llu with %zu devices (%zu alert events after it already stored; the "
                "silence timer fired at %zu points among them)",
                i, (unsigned long long)sp->last_seq, vg_devtable_count(sp->devs), sp->emitted.count, sp->nmarks);
    }
    for (uint32_t i = 0; i < p->nshards; i++) {
        if (pthread_create(&p->shards[i].thread, NULL, shard_main, &p->shards[i]) != 0) {
            atomic_store(&p->stop, true);
            for (uint32_t j = 0; j < i; j++)
                vg_notify_post(&p->shards[j].wake);
            for (uint32_t j = 0; j < i; j++)
                pthread_join(p->shards[j].thread, NULL);
            rc = VG_EIO;
            goto cleanup;
        }
    }
    *out = p;
    return VG_OK;
cleanup:
    shards_free(p);
    vg_free(p);
    return rc;
}

void vg_processor_stop(vg_processor_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    for (uint32_t i = 0; i < p->nshards; i++)
        vg_notify_post(&p->shards[i].wake);
    for (uint32_t i = 0; i < p->nshards; i++)
        pthread_join(p->shards[i].thread, NULL);
    /* Requests that arrived after a shard's last look: answer them. */
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        void *items;
        size_t n = vg_mailbox_take(&sp->acks, &items);
        const ack_req_t *q = items;
        for (size_t k = 0; k < n; k++)
            if (p->o.ack_done)
                p->o.ack_done(p->o.ack_ctx, q[k].token, VG_ECLOSED, q[k].alert_id, q[k].dev, q[k].dev_len);
    }
    unsigned left = atomic_load(&p->refs) - 1;
    if (left)
        VG_WARN(MOD, "%u alerts still in flight at stop; their callbacks come when the alerts stream closes", left);
    processor_unref(p);
}

int vg_processor_ack(vg_processor_t *p, const char *dev_id, size_t dev_len, uint64_t alert_id, const char *by,
                     const char *note, uint64_t token)
{
    if (!dev_len || dev_len > VG_EVENT_MAX_DEVICE_ID)
        return VG_EINVAL;
    if (atomic_load(&p->stop))
        return VG_ECLOSED;
    uint32_t shard = vg_shardmap_shard(p->nshards, vg_shardmap_hash(dev_id, dev_len));
    shard_proc_t *sp = &p->shards[shard];
    ack_req_t q;
    memset(&q, 0, sizeof q);
    q.alert_id = alert_id;
    q.token = token;
    snprintf(q.by, sizeof q.by, "%s", by ? by : "");
    snprintf(q.note, sizeof q.note, "%s", note ? note : "");
    q.dev_len = (uint16_t)dev_len;
    memcpy(q.dev, dev_id, dev_len);
    /* Wakes the shard thread only if its mailbox was empty. */
    return vg_mailbox_post(&sp->acks, &q, 1);
}

void vg_processor_stats(vg_processor_t *p, vg_processor_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        out->processed += atomic_load_explicit(&sp->processed, memory_order_relaxed);
        out->alerts += atomic_load_explicit(&sp->alerts, memory_order_relaxed);
        out->opened += atomic_load_explicit(&sp->kinds[VG_AEV_OPEN], memory_order_relaxed);
        out->updated += atomic_load_explicit(&sp->kinds[VG_AEV_UPDATE], memory_order_relaxed);
        out->resolved += atomic_load_explicit(&sp->kinds[VG_AEV_RESOLVED], memory_order_relaxed);
        out->acknowledged += atomic_load_explicit(&sp->kinds[VG_AEV_ACK], memory_order_relaxed);
        out->alerts_replayed += atomic_load_explicit(&sp->replayed, memory_order_relaxed);
        out->slot_overflow += atomic_load_explicit(&sp->overflow, memory_order_relaxed);
        out->emit_errors += atomic_load_explicit(&sp->emit_err, memory_order_relaxed);
        out->ticks += atomic_load_explicit(&sp->ticks, memory_order_relaxed);
        out->checkpoints += atomic_load_explicit(&sp->checkpoints, memory_order_relaxed);
        out->devices += atomic_load_explicit(&sp->ndevs, memory_order_relaxed);
        int64_t open = atomic_load_explicit(&sp->open_now, memory_order_relaxed);
        out->open_alerts += open > 0 ? (uint64_t)open : 0;
        for (int t = 0; t < VG_ALERT__COUNT; t++)
            out->by_type[t] += atomic_load_explicit(&sp->by_type[t], memory_order_relaxed);
        uint64_t durable = vg_log_durable_seq(p->o.telemetry, i);
        uint64_t done = atomic_load_explicit(&sp->processed_seq, memory_order_relaxed);
        if (durable > done)
            out->lag += durable - done;
    }
}
