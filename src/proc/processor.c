/* processor.c — see processor.h for the contract and the checkpoint format. */
#include "proc/processor.h"

#include "core/alloc.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/crc32c.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/event.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "detect/devtable.h"
#include "stream/shardmap.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MOD "proc"
#define CKPT_MAGIC "VGCKPT01"
#define CKPT_HDR 36
/* 2: CRC-32C, the stream's checksum (1 used zlib's CRC-32). */
#define CKPT_VERSION 2
#define ALERT_META_LEN 9

typedef struct shard_proc {
    struct vg_processor *p;
    uint32_t shard;
    pthread_t thread;
    vg_devtable_t *devs;
    uint64_t last_seq;        /* last processed telemetry seq */
    uint64_t ckpt_seq;        /* last checkpointed seq */
    uint64_t max_emitted_seq; /* highest source seq already in the alerts stream */
    atomic_uint pending;      /* alerts appended, not yet durable */
    atomic_uint_fast64_t processed, alerts, replayed, checkpoints, processed_seq, ndevs;
    char ckpt_path[PATH_MAX];
} shard_proc_t;

struct vg_processor {
    vg_processor_opts_t o;
    uint32_t nshards;
    atomic_bool stop;
    shard_proc_t *shards;
};

typedef struct {
    shard_proc_t *sp;
    size_t topic_len;
    size_t payload_len;
    char data[]; /* topic then payload */
} pending_alert_t;

/* ---- checkpoints ------------------------------------------------------- */

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
    vg_put_le32(buf + 32, (uint32_t)state_len);
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
    int rc = vg_fs_read_all(sp->ckpt_path, (size_t)1 << 31, &buf, &len);
    if (rc == VG_ENOTFOUND)
        return VG_OK; /* first start: from the beginning */
    if (rc)
        return rc;
    rc = VG_ECORRUPT;
    if (len < CKPT_HDR + 4 || memcmp(buf, CKPT_MAGIC, 8) != 0 || vg_get_le32(buf + 8) != CKPT_VERSION ||
        vg_get_le32(buf + 12) != sp->shard)
        goto cleanup;
    uint32_t state_len = vg_get_le32(buf + 32);
    if ((size_t)state_len + CKPT_HDR + 4 != len)
        goto cleanup;
    if (vg_get_le32(buf + CKPT_HDR + state_len) != vg_crc32c(0, buf, CKPT_HDR + state_len))
        goto cleanup;
    rc = vg_devtable_restore(sp->devs, buf + CKPT_HDR, state_len);
    if (rc)
        goto cleanup;
    sp->last_seq = sp->ckpt_seq = vg_get_le64(buf + 16);
cleanup:
    if (rc)
        VG_ERROR(MOD, "checkpoint %s is damaged (%s); refusing to guess a position", sp->ckpt_path, vg_strerror(rc));
    vg_free(buf);
    return rc;
}

/* Highest source seq among this shard's records in the alerts stream. */
static int scan_emitted(shard_proc_t *sp)
{
    vg_log_reader_t *r = NULL;
    int rc = vg_log_reader_open(sp->p->o.alerts, sp->shard, 0, &r);
    if (rc)
        return rc;
    vg_record_t rec;
    while ((rc = vg_log_reader_next(r, &rec)) == VG_OK) {
        if (rec.meta_len == ALERT_META_LEN) {
            uint64_t src = vg_get_le64(rec.meta);
            if (src > sp->max_emitted_seq)
                sp->max_emitted_seq = src;
        }
    }
    vg_log_reader_close(r);
    return rc == VG_AGAIN ? VG_OK : rc;
}

/* ---- alerts ------------------------------------------------------------ */

static void on_alert_durable(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    pending_alert_t *pa = (pending_alert_t *)(uintptr_t)token;
    shard_proc_t *sp = pa->sp;
    if (status == VG_OK) {
        if (sp->p->o.publish)
            sp->p->o.publish(sp->p->o.publish_ctx, pa->data, pa->topic_len, pa->data + pa->topic_len,
                             pa->payload_len);
    } else {
        VG_ERROR(MOD, "alert record for shard %u could not be stored: %s", sp->shard, vg_strerror(status));
    }
    vg_free(pa);
    atomic_fetch_sub_explicit(&sp->pending, 1, memory_order_acq_rel);
}

static void alert_id(const char *dev, size_t dev_len, vg_alert_type_t type, uint32_t shard, uint64_t seq, char out[17])
{
    /* Deterministic: the same source record and type always give the same
     * id, so a replayed alert is recognisable downstream. */
    char key[VG_EVENT_MAX_DEVICE_ID + 64];
    int n = snprintf(key, sizeof key, "%.*s|%s|%u|%llu", (int)dev_len, dev, vg_alert_type_name(type), shard,
                     (unsigned long long)seq);
    vg_hashkey_t h = vg_shardmap_hash(key, (size_t)n);
    snprintf(out, 17, "%016llx", (unsigned long long)(uint64_t)(h >> 64));
}

static int emit_alert(shard_proc_t *sp, const vg_record_t *rec, vg_alert_type_t type, double value, double threshold,
                      int64_t ts_ms)
{
    char id[17], iso[32], devesc[VG_EVENT_MAX_DEVICE_ID * 6 + 1];
    alert_id((const char *)rec->key, rec->key_len, type, sp->shard, rec->seq, id);
    vg_clock_format_iso(ts_ms, iso, sizeof iso);
    int de = vg_json_escape((const char *)rec->key, rec->key_len, devesc, sizeof devesc);
    if (de < 0)
        return de;
    char payload[1024];
    int n = snprintf(payload, sizeof payload,
                     "{\"alertId\":\"%s\",\"deviceId\":\"%.*s\",\"type\":\"%s\",\"value\":%.10g,\"threshold\":%.10g,"
                     "\"eventTimeMs\":%lld,\"timestamp\":\"%s\",\"shard\":%u,\"seq\":%llu,\"detectedAtMs\":%lld}",
                     id, de, devesc, vg_alert_type_name(type), value, threshold, (long long)ts_ms, iso, sp->shard,
                     (unsigned long long)rec->seq, (long long)vg_clock_wall_ms());
    if (n < 0 || (size_t)n >= sizeof payload)
        return VG_ETOOBIG;
    size_t tlen = 7 + rec->key_len;
    pending_alert_t *pa = vg_malloc(VG_MEM_PROC, sizeof *pa + tlen + (size_t)n);
    if (!pa)
        return VG_ENOMEM;
    pa->sp = sp;
    pa->topic_len = tlen;
    pa->payload_len = (size_t)n;
    memcpy(pa->data, "alerts/", 7);
    memcpy(pa->data + 7, rec->key, rec->key_len);
    memcpy(pa->data + tlen, payload, (size_t)n);
    uint8_t meta[ALERT_META_LEN];
    vg_put_le64(meta, rec->seq);
    meta[8] = (uint8_t)type;
    atomic_fetch_add_explicit(&sp->pending, 1, memory_order_acq_rel);
    int rc = vg_log_append_shard(sp->p->o.alerts, sp->shard, rec->key, rec->key_len, meta, sizeof meta, payload,
                                 (size_t)n, vg_clock_wall_ms(), on_alert_durable, sp, (uint64_t)(uintptr_t)pa, NULL);
    if (rc) {
        atomic_fetch_sub_explicit(&sp->pending, 1, memory_order_acq_rel);
        vg_free(pa);
        return rc;
    }
    atomic_fetch_add_explicit(&sp->alerts, 1, memory_order_relaxed);
    return VG_OK;
}

static int process_record(shard_proc_t *sp, const vg_record_t *rec)
{
    double hr;
    int64_t steps, ts;
    if (vg_event_meta_decode(rec->meta, rec->meta_len, &hr, &steps, &ts) != VG_OK) {
        /* Only validated events enter the telemetry stream; a record without
         * parsed fields means a foreign writer: skip it, loudly. */
        VG_WARN(MOD, "shard %u seq %llu has no event metadata; skipped", sp->shard, (unsigned long long)rec->seq);
        return VG_OK;
    }
    vg_threshold_state_t *st = vg_devtable_get(sp->devs, (const char *)rec->key, rec->key_len);
    if (!st)
        return VG_ENOMEM;
    double thr = 0;
    vg_alert_type_t t = vg_threshold_eval(&sp->p->o.threshold, st, hr, ts, &thr);
    if (t == VG_ALERT_NONE)
        return VG_OK;
    if (rec->seq <= sp->max_emitted_seq) {
        atomic_fetch_add_explicit(&sp->replayed, 1, memory_order_relaxed);
        return VG_OK;
    }
    return emit_alert(sp, rec, t, hr, thr, ts);
}

static void maybe_checkpoint(shard_proc_t *sp, bool force)
{
    if (sp->last_seq == sp->ckpt_seq)
        return;
    /* A checkpoint past an alert that is not yet durable could lose that
     * alert in a crash; wait for the alert to land first. */
    if (atomic_load_explicit(&sp->pending, memory_order_acquire) != 0 && !force)
        return;
    if (checkpoint_write(sp) != VG_OK)
        VG_ERROR(MOD, "shard %u: checkpoint failed; will retry", sp->shard);
}

static void *shard_main(void *arg)
{
    shard_proc_t *sp = arg;
    struct vg_processor *p = sp->p;
    vg_log_reader_t *r = NULL;
    uint64_t last_ckpt_ns = vg_clock_mono_ns();
    uint64_t interval_ns = (uint64_t)p->o.checkpoint_interval_ms * 1000000u;
    while (!atomic_load(&p->stop)) {
        if (!r && vg_log_reader_open(p->o.telemetry, sp->shard, sp->last_seq + 1, &r) != VG_OK) {
            VG_ERROR(MOD, "shard %u: cannot open a reader at seq %llu", sp->shard,
                     (unsigned long long)sp->last_seq + 1);
            r = NULL;
            usleep(200000);
            continue;
        }
        vg_record_t rec;
        int rc;
        int budget = 4096;
        while (budget-- > 0 && (rc = vg_log_reader_next(r, &rec)) == VG_OK) {
            if (process_record(sp, &rec) == VG_ENOMEM) {
                VG_ERROR(MOD, "shard %u: out of memory at seq %llu; retrying", sp->shard,
                         (unsigned long long)rec.seq);
                vg_log_reader_close(r);
                r = NULL;
                usleep(100000);
                break;
            }
            sp->last_seq = rec.seq;
            atomic_fetch_add_explicit(&sp->processed, 1, memory_order_relaxed);
            atomic_store_explicit(&sp->processed_seq, rec.seq, memory_order_relaxed);
        }
        atomic_store_explicit(&sp->ndevs, vg_devtable_count(sp->devs), memory_order_relaxed);
        uint64_t now = vg_clock_mono_ns();
        if (now - last_ckpt_ns >= interval_ns) {
            maybe_checkpoint(sp, false);
            last_ckpt_ns = now;
        }
        if (!r || budget > 0) {
            if (r && rc != VG_AGAIN) {
                VG_ERROR(MOD, "shard %u: reading telemetry failed at seq %llu: %s", sp->shard,
                         (unsigned long long)sp->last_seq + 1, vg_strerror(rc));
                vg_log_reader_close(r);
                r = NULL;
                usleep(500000);
                continue;
            }
            vg_log_wait(p->o.telemetry, sp->shard, sp->last_seq, 100);
        }
    }
    vg_log_reader_close(r);
    /* Final checkpoint once this shard's alerts are durable (bounded wait). */
    for (int i = 0; i < 5000 && atomic_load(&sp->pending) != 0; i++)
        usleep(1000);
    if (atomic_load(&sp->pending) == 0)
        maybe_checkpoint(sp, false);
    else
        VG_WARN(MOD, "shard %u: alerts still pending at stop; keeping the older checkpoint", sp->shard);
    return NULL;
}

int vg_processor_start(const vg_processor_opts_t *o, vg_processor_t **out)
{
    int rc = VG_ENOMEM;
    struct vg_processor *p = vg_calloc(VG_MEM_PROC, 1, sizeof *p);
    if (!p)
        return VG_ENOMEM;
    p->o = *o;
    if (!p->o.checkpoint_interval_ms)
        p->o.checkpoint_interval_ms = 1000;
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
        rc = checkpoint_load(sp);
        if (rc)
            goto cleanup;
        rc = scan_emitted(sp);
        if (rc)
            goto cleanup;
        VG_INFO(MOD, "shard %u: resuming after seq %llu with %zu devices (alerts emitted up to seq %llu)", i,
                (unsigned long long)sp->last_seq, vg_devtable_count(sp->devs),
                (unsigned long long)sp->max_emitted_seq);
    }
    for (uint32_t i = 0; i < p->nshards; i++) {
        if (pthread_create(&p->shards[i].thread, NULL, shard_main, &p->shards[i]) != 0) {
            atomic_store(&p->stop, true);
            for (uint32_t j = 0; j < i; j++)
                pthread_join(p->shards[j].thread, NULL);
            rc = VG_EIO;
            goto cleanup;
        }
    }
    *out = p;
    return VG_OK;
cleanup:
    if (p->shards) {
        for (uint32_t i = 0; i < p->nshards; i++)
            vg_devtable_free(p->shards[i].devs);
        vg_free(p->shards);
    }
    vg_free(p);
    return rc;
}

void vg_processor_stop(vg_processor_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    for (uint32_t i = 0; i < p->nshards; i++)
        pthread_join(p->shards[i].thread, NULL);
    for (uint32_t i = 0; i < p->nshards; i++)
        vg_devtable_free(p->shards[i].devs);
    vg_free(p->shards);
    vg_free(p);
}

void vg_processor_stats(vg_processor_t *p, vg_processor_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < p->nshards; i++) {
        shard_proc_t *sp = &p->shards[i];
        out->processed += atomic_load_explicit(&sp->processed, memory_order_relaxed);
        out->alerts += atomic_load_explicit(&sp->alerts, memory_order_relaxed);
        out->alerts_replayed += atomic_load_explicit(&sp->replayed, memory_order_relaxed);
        out->checkpoints += atomic_load_explicit(&sp->checkpoints, memory_order_relaxed);
        out->devices += atomic_load_explicit(&sp->ndevs, memory_order_relaxed);
        uint64_t durable = vg_log_durable_seq(p->o.telemetry, i);
        uint64_t done = atomic_load_explicit(&sp->processed_seq, memory_order_relaxed);
        if (durable > done)
            out->lag += durable - done;
    }
}
