/* registry_ops.c — the registry's writes, scans, refresh, touch and flush
 * (registry.h). The schema and the change counter they follow are
 * described in registry.c.
 *
 * Owns: nothing beyond a call: each function runs with db_mu held for its
 * SQL and takes the index's write lock only to apply what it read. Does
 * not own: the connection, the index, the background threads. */
#include "sec/registry_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <string.h>

static void bind_id(sqlite3_stmt *st, int i, const char *id, size_t len)
{
    sqlite3_bind_text(st, i, id, (int)len, SQLITE_STATIC);
}

static void bind_fp(sqlite3_stmt *st, int i, const uint8_t fp[32])
{
    sqlite3_bind_blob(st, i, fp, 32, SQLITE_STATIC);
}

/* A statement with one text or blob parameter, stepped for its first
 * row's first column as text into out (may be NULL). VG_ENOTFOUND. */
static int lookup_text(vg_registry_t *reg, const char *sql, const void *key, size_t len, bool blob, char *out,
                       size_t cap)
{
    sqlite3_stmt *st = reg_stmt(reg, sql);
    if (!st)
        return VG_EIO;
    if (blob)
        sqlite3_bind_blob(st, 1, key, (int)len, SQLITE_STATIC);
    else
        bind_id(st, 1, key, len);
    int rc = sqlite3_step(st), code = VG_OK;
    if (rc == SQLITE_ROW) {
        if (out)
            snprintf(out, cap, "%s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    } else if (rc == SQLITE_DONE) {
        code = VG_ENOTFOUND;
    } else {
        code = reg_sqlite_rc(sqlite3_extended_errcode(reg->db));
        VG_ERROR(REG_MOD, "%s: %s", reg->path, sqlite3_errmsg(reg->db));
    }
    sqlite3_reset(st);
    return code;
}

/* VG_OK if fp is a registered, active CA; VG_EPROTO if not. */
static int issuer_ok(vg_registry_t *reg, const uint8_t fp[32])
{
    char status[16];
    int rc = lookup_text(reg, "SELECT status FROM cas WHERE fingerprint = ?1", fp, 32, true, status, sizeof status);
    if (rc == VG_ENOTFOUND || (rc == VG_OK && strcmp(status, "active") != 0))
        return VG_EPROTO;
    return rc;
}

static int insert_cert(vg_registry_t *reg, const vg_registry_cert_t *c, uint64_t rev)
{
    sqlite3_stmt *st =
        reg_stmt(reg, "INSERT INTO certificates(" CERT_COLS ", rev) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!st)
        return VG_EIO;
    bind_fp(st, 1, c->fingerprint);
    bind_id(st, 2, c->device_id, c->device_id_len);
    sqlite3_bind_text(st, 3, c->serial_hex, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, c->not_before_ms);
    sqlite3_bind_int64(st, 5, c->not_after_ms);
    sqlite3_bind_text(st, 6, c->status == VG_REG_REVOKED ? "revoked" : "active", -1, SQLITE_STATIC);
    bind_fp(st, 7, c->issuer_fingerprint);
    sqlite3_bind_int64(st, 8, (int64_t)rev);
    return reg_step_done(reg, st);
}

static int insert_device(vg_registry_t *reg, const vg_registry_device_t *d, int64_t now, uint64_t rev)
{
    char groups[VG_REGISTRY_STRINGS_MAX + 64], attrs[VG_REGISTRY_STRINGS_MAX + 128];
    int gl = reg_format_groups(d, groups, sizeof groups), al = reg_format_attrs(d, attrs, sizeof attrs);
    if (gl < 0 || al < 0)
        return VG_EINVAL;
    sqlite3_stmt *st = reg_stmt(reg, "INSERT INTO devices(" DEV_COLS ", rev) VALUES(?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)");
    if (!st)
        return VG_EIO;
    bind_id(st, 1, d->id, d->id_len);
    sqlite3_bind_text(st, 2, vg_registry_status_name(d->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, groups, gl, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, attrs, al, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_text(st, 6, vg_registry_provenance_name(d->provenance), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (int64_t)rev);
    return reg_step_done(reg, st);
}

/* Runs body between reg_write_begin and commit (or rollback on failure)
 * with db_mu held. */
#define WRITE_TXN(reg, rev, body)                                                                                      \
    do {                                                                                                               \
        pthread_mutex_lock(&(reg)->db_mu);                                                                             \
        rc = reg_write_begin((reg), &(rev));                                                                           \
        if (rc == VG_OK) {                                                                                             \
            body;                                                                                                      \
            if (rc == VG_OK)                                                                                           \
                rc = reg_write_commit((reg), (rev));                                                                   \
            else                                                                                                       \
                reg_write_rollback(reg);                                                                               \
        }                                                                                                              \
        pthread_mutex_unlock(&(reg)->db_mu);                                                                           \
    } while (0)

int vg_registry_device_add(vg_registry_t *reg, const vg_registry_device_t *devs, const vg_registry_cert_t *certs,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!vg_registry_id_valid(devs[i].id, devs[i].id_len) || devs[i].status > VG_REG_DISABLED ||
            devs[i].provenance > VG_REG_JITR)
            return VG_EINVAL;
        if (certs &&
            (certs[i].device_id_len != devs[i].id_len || memcmp(certs[i].device_id, devs[i].id, devs[i].id_len) != 0))
            return VG_EINVAL;
    }
    int64_t now = vg_clock_wall_ms();
    uint64_t rev = 0;
    int rc;
    WRITE_TXN(reg, rev, {
        /* Nearly always one issuer for the whole batch: look it up once. */
        const uint8_t *checked = NULL;
        for (size_t i = 0; i < n && rc == VG_OK; i++) {
            rc = insert_device(reg, &devs[i], now, rev);
            if (rc == VG_OK && certs) {
                if (!checked || memcmp(checked, certs[i].issuer_fingerprint, 32) != 0) {
                    rc = issuer_ok(reg, certs[i].issuer_fingerprint);
                    checked = certs[i].issuer_fingerprint;
                }
                if (rc == VG_OK)
                    rc = insert_cert(reg, &certs[i], rev);
            }
        }
    });
    return rc;
}

int vg_registry_cert_add(vg_registry_t *reg, const vg_registry_cert_t *cert)
{
    if (!vg_registry_id_valid(cert->device_id, cert->device_id_len))
        return VG_EINVAL;
    uint64_t rev = 0;
    int rc;
    char status[16];
    WRITE_TXN(reg, rev, {
        rc = lookup_text(reg, "SELECT status FROM devices WHERE id = ?1", cert->device_id, cert->device_id_len, false,
                         status, sizeof status);
        if (rc == VG_OK && strcmp(status, "revoked") == 0)
            rc = VG_EPROTO;
        if (rc == VG_OK)
            rc = issuer_ok(reg, cert->issuer_fingerprint);
        if (rc == VG_OK)
            rc = insert_cert(reg, cert, rev);
    });
    return rc;
}

int vg_registry_device_set_status(vg_registry_t *reg, const char *id, size_t len, vg_registry_status_t status)
{
    if ((unsigned)status > VG_REG_DISABLED)
        return VG_EINVAL;
    uint64_t rev = 0;
    int rc;
    char cur[16];
    WRITE_TXN(reg, rev, {
        rc = lookup_text(reg, "SELECT status FROM devices WHERE id = ?1", id, len, false, cur, sizeof cur);
        if (rc == VG_OK && strcmp(cur, "revoked") == 0 && status != VG_REG_REVOKED)
            rc = VG_EPROTO;
        sqlite3_stmt *st = NULL;
        if (rc == VG_OK && !(st = reg_stmt(reg, "UPDATE devices SET status = ?2, rev = ?3 WHERE id = ?1")))
            rc = VG_EIO;
        if (rc == VG_OK) {
            bind_id(st, 1, id, len);
            sqlite3_bind_text(st, 2, vg_registry_status_name(status), -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (int64_t)rev);
            rc = reg_step_done(reg, st);
        }
        if (rc == VG_OK && status == VG_REG_REVOKED) {
            st = reg_stmt(reg, "UPDATE certificates SET status = 'revoked', rev = ?2 "
                               "WHERE device_id = ?1 AND status != 'revoked'");
            if (!st)
                rc = VG_EIO;
            else {
                bind_id(st, 1, id, len);
                sqlite3_bind_int64(st, 2, (int64_t)rev);
                rc = reg_step_done(reg, st);
            }
        }
    });
    return rc;
}

int vg_registry_device_delete(vg_registry_t *reg, const char *id, size_t len)
{
    static const char *const sql[] = {
        "INSERT OR REPLACE INTO tombstones(kind, key, rev) SELECT 1, fingerprint, ?2 FROM certificates "
        "WHERE device_id = ?1",
        "INSERT OR REPLACE INTO tombstones(kind, key, rev) VALUES(0, CAST(?1 AS BLOB), ?2)",
        "DELETE FROM certificates WHERE device_id = ?1",
        "DELETE FROM devices WHERE id = ?1",
        "DELETE FROM credentials WHERE principal = ?1 AND role = 'device'",
    };
    uint64_t rev = 0;
    int rc;
    WRITE_TXN(reg, rev, {
        rc = lookup_text(reg, "SELECT status FROM devices WHERE id = ?1", id, len, false, NULL, 0);
        for (size_t i = 0; i < sizeof sql / sizeof sql[0] && rc == VG_OK; i++) {
            sqlite3_stmt *st = reg_stmt(reg, sql[i]);
            if (!st) {
                rc = VG_EIO;
                break;
            }
            bind_id(st, 1, id, len);
            sqlite3_bind_int64(st, 2, (int64_t)rev);
            rc = reg_step_done(reg, st);
        }
    });
    return rc;
}

int vg_registry_ca_add(vg_registry_t *reg, const char *pem, size_t len, bool jitr, vg_registry_ca_t *out, char *why,
                       size_t why_cap)
{
    X509 *x = NULL;
    char *canon = NULL;
    vg_pki_cert_info_t info;
    vg_registry_ca_t ca;
    memset(&ca, 0, sizeof ca);
    if (why && why_cap)
        why[0] = '\0';
    int rc = vg_pki_cert_parse(pem, len, &x);
    if (rc) {
        if (why && why_cap)
            snprintf(why, why_cap, "no PEM certificate in it");
        goto cleanup;
    }
    if ((rc = vg_pki_check_ca(x, vg_clock_wall_ms(), &info, why, why_cap)))
        goto cleanup;
    /* The certificate alone, re-encoded: whatever else the file held
     * (text, a key, more certificates) is not kept. */
    if (!(canon = vg_pki_cert_pem(x))) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    memcpy(ca.fingerprint, info.fingerprint, 32);
    vg_pki_subject(x, ca.subject, sizeof ca.subject);
    ca.jitr = jitr;
    ca.status = VG_REG_ACTIVE;
    ca.created_ms = vg_clock_wall_ms();
    uint64_t rev = 0;
    WRITE_TXN(reg, rev, {
        sqlite3_stmt *st =
            reg_stmt(reg, "INSERT INTO cas(" CA_COLS ", pem, rev) VALUES(?1, ?2, ?3, 'active', ?4, ?5, ?6)");
        if (!st)
            rc = VG_EIO;
        else {
            bind_fp(st, 1, ca.fingerprint);
            sqlite3_bind_text(st, 2, ca.subject, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 3, jitr);
            sqlite3_bind_int64(st, 4, ca.created_ms);
            sqlite3_bind_text(st, 5, canon, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, (int64_t)rev);
            rc = reg_step_done(reg, st);
        }
        /* Registered already: report the stored entry (read here, not
         * from the index, which may not have it yet). */
        if (rc == VG_EEXIST && (st = reg_stmt(reg, "SELECT " CA_COLS " FROM cas WHERE fingerprint = ?1"))) {
            bind_fp(st, 1, ca.fingerprint);
            if (sqlite3_step(st) == SQLITE_ROW)
                reg_row_ca(st, &ca);
            sqlite3_reset(st);
        }
    });
    if ((rc == VG_OK || rc == VG_EEXIST) && out)
        *out = ca;
cleanup:
    vg_free(canon);
    X509_free(x);
    return rc;
}

int vg_registry_ca_set_jitr(vg_registry_t *reg, const uint8_t fp[32], bool jitr)
{
    uint64_t rev = 0;
    int rc;
    WRITE_TXN(reg, rev, {
        sqlite3_stmt *st = reg_stmt(reg, "UPDATE cas SET jitr = ?2, rev = ?3 WHERE fingerprint = ?1");
        if (!st)
            rc = VG_EIO;
        else {
            bind_fp(st, 1, fp);
            sqlite3_bind_int(st, 2, jitr);
            sqlite3_bind_int64(st, 3, (int64_t)rev);
            rc = reg_step_done(reg, st);
            if (rc == VG_OK && sqlite3_changes(reg->db) == 0)
                rc = VG_ENOTFOUND;
        }
    });
    return rc;
}

/* ---- scans ----------------------------------------------------------------- */

/* Steps st, parsing each row with parse into a scratch object and handing
 * it to call; stops at the first nonzero return. */
static int scan(vg_registry_t *reg, sqlite3_stmt *st, int kind, void *fn, void *ctx)
{
    vg_registry_device_t *dev = kind == TOMB_DEVICE ? vg_malloc(VG_MEM_SEC, sizeof *dev) : NULL;
    if (kind == TOMB_DEVICE && !dev)
        return VG_ENOMEM;
    int rc = VG_OK, src = SQLITE_DONE;
    while (rc == VG_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (kind == TOMB_DEVICE) {
            if (reg_row_device(st, dev) != VG_OK)
                continue;
            /* This process's last-seen time may be newer than the row's. */
            vg_registry_device_t cur;
            if (vg_registry_device_get(reg, dev->id, dev->id_len, &cur) == VG_OK &&
                cur.last_seen_ms > dev->last_seen_ms)
                dev->last_seen_ms = cur.last_seen_ms;
            rc = ((vg_registry_device_scan_fn)fn)(ctx, dev);
        } else if (kind == TOMB_CERT) {
            vg_registry_cert_t c;
            if (reg_row_cert(st, &c) == VG_OK)
                rc = ((vg_registry_cert_scan_fn)fn)(ctx, &c);
        } else {
            vg_registry_ca_t c;
            const char *pem = (const char *)sqlite3_column_text(st, 5);
            if (reg_row_ca(st, &c) == VG_OK && pem)
                rc = ((vg_registry_ca_scan_fn)fn)(ctx, &c, pem, (size_t)sqlite3_column_bytes(st, 5));
        }
    }
    if (rc == VG_OK && src != SQLITE_DONE) {
        rc = reg_sqlite_rc(sqlite3_extended_errcode(reg->db));
        VG_ERROR(REG_MOD, "%s: %s", reg->path, sqlite3_errmsg(reg->db));
    }
    sqlite3_reset(st);
    vg_free(dev);
    return rc;
}

int vg_registry_device_scan(vg_registry_t *reg, vg_registry_device_scan_fn fn, void *ctx)
{
    pthread_mutex_lock(&reg->db_mu);
    sqlite3_stmt *st = reg_stmt(reg, "SELECT " DEV_COLS " FROM devices ORDER BY id");
    int rc = st ? scan(reg, st, TOMB_DEVICE, (void *)fn, ctx) : VG_EIO;
    pthread_mutex_unlock(&reg->db_mu);
    return rc;
}

int vg_registry_cert_scan(vg_registry_t *reg, const char *id, size_t len, vg_registry_cert_scan_fn fn, void *ctx)
{
    pthread_mutex_lock(&reg->db_mu);
    sqlite3_stmt *st = reg_stmt(reg, "SELECT " CERT_COLS
                                     " FROM certificates WHERE device_id = ?1 ORDER BY not_before_ms, fingerprint");
    int rc = VG_EIO;
    if (st) {
        bind_id(st, 1, id, len);
        rc = scan(reg, st, TOMB_CERT, (void *)fn, ctx);
    }
    pthread_mutex_unlock(&reg->db_mu);
    return rc;
}

int vg_registry_ca_scan(vg_registry_t *reg, vg_registry_ca_scan_fn fn, void *ctx)
{
    pthread_mutex_lock(&reg->db_mu);
    sqlite3_stmt *st = reg_stmt(reg, "SELECT " CA_COLS ", pem FROM cas ORDER BY subject, fingerprint");
    int rc = st ? scan(reg, st, TOMB_CA, (void *)fn, ctx) : VG_EIO;
    pthread_mutex_unlock(&reg->db_mu);
    return rc;
}

/* ---- refresh --------------------------------------------------------------- */

int vg_registry_refresh(vg_registry_t *reg, vg_registry_change_fn fn, void *ctx)
{
    reg_events_t ev;
    vg_strmap_init(&ev, VG_MEM_SEC);
    reg_delta_t d = {0};
    int64_t now_rev = 0;
    bool reload = false;
    pthread_mutex_lock(&reg->db_mu);
    uint64_t have = atomic_load(&reg->rev);
    int rc = reg_exec(reg, "BEGIN");
    if (rc == VG_OK) {
        rc = reg_query_int(reg, "SELECT value FROM meta WHERE name = 'rev'", &now_rev);
        /* A counter that went back means another file: start over. */
        if (rc == VG_OK && (uint64_t)now_rev < have)
            reload = true;
        else if (rc == VG_OK && (uint64_t)now_rev > have)
            rc = reg_load_delta(reg, have, &d);
        reg_write_rollback(reg);
    }
    if (rc == VG_OK && reload) {
        rc = reg_reload_all(reg, &ev);
    } else if (rc == VG_OK && (uint64_t)now_rev > have) {
        pthread_rwlock_wrlock(&reg->lock);
        rc = reg_index_apply(&reg->ix, &d, &ev);
        if (rc == VG_OK)
            atomic_store(&reg->rev, (uint64_t)now_rev);
        pthread_rwlock_unlock(&reg->lock);
        if (rc) {
            VG_WARN(REG_MOD, "%s: out of memory applying a refresh; reloading the index", reg->path);
            rc = reg_reload_all(reg, &ev);
        }
    }
    pthread_mutex_unlock(&reg->db_mu);
    reg_delta_free(&d);
    for (size_t i = 0; fn && i < ev.cap; i++)
        if (ev.slots[i].key)
            fn(ctx, ev.slots[i].key, ev.slots[i].key_len, (vg_registry_change_t)ev.slots[i].value);
    vg_strmap_deinit(&ev);
    return rc;
}

/* ---- touch and flush ------------------------------------------------------- */

/* Appends id to the touch queue; wakes the flusher if the queue was empty. */
static int enqueue(vg_registry_t *reg, const char *id, size_t len)
{
    int rc = VG_OK;
    pthread_mutex_lock(&reg->q_mu);
    bool was_empty = reg->q_len == 0;
    if (reg->q_len + 1 + len > reg->q_cap) {
        size_t nc = reg->q_cap ? reg->q_cap * 2 : 4096;
        uint8_t *nb = vg_realloc(VG_MEM_SEC, reg->q_buf, nc);
        if (!nb)
            rc = VG_ENOMEM;
        else {
            reg->q_buf = nb;
            reg->q_cap = nc;
        }
    }
    if (rc == VG_OK) {
        reg->q_buf[reg->q_len] = (uint8_t)len;
        memcpy(reg->q_buf + reg->q_len + 1, id, len);
        reg->q_len += 1 + len;
        if (was_empty)
            pthread_cond_signal(&reg->q_cond);
    }
    pthread_mutex_unlock(&reg->q_mu);
    return rc;
}

int vg_registry_touch(vg_registry_t *reg, const char *id, size_t len, int64_t now_ms)
{
    uint64_t v;
    pthread_rwlock_rdlock(&reg->lock);
    int rc = vg_strmap_get(&reg->ix.devs, id, len, &v);
    if (rc == VG_OK) {
        reg_dev_t *e = (reg_dev_t *)(uintptr_t)v;
        int64_t cur = atomic_load_explicit(&e->last_seen_ms, memory_order_relaxed);
        while (now_ms > cur && !atomic_compare_exchange_weak(&e->last_seen_ms, &cur, now_ms))
            ;
        /* Queued once per batch: the flusher clears dirty when it takes it. */
        if (atomic_exchange(&e->dirty, 1) == 0 && (rc = enqueue(reg, id, len)) != VG_OK)
            atomic_store(&e->dirty, 0);
    }
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

int vg_registry_flush(vg_registry_t *reg)
{
    pthread_mutex_lock(&reg->q_mu);
    uint8_t *buf = reg->q_buf;
    size_t len = reg->q_len;
    reg->q_buf = NULL;
    reg->q_len = reg->q_cap = 0;
    pthread_mutex_unlock(&reg->q_mu);
    if (!len) {
        vg_free(buf);
        return VG_OK;
    }
    /* Each queued id with the time to write, read under the read lock. */
    size_t n = 0;
    for (size_t o = 0; o < len; o += 1 + buf[o])
        n++;
    int64_t *times = vg_malloc(VG_MEM_SEC, n * sizeof *times);
    int rc = VG_ENOMEM;
    if (!times)
        goto requeue;
    pthread_rwlock_rdlock(&reg->lock);
    size_t i = 0;
    for (size_t o = 0; o < len; o += 1 + buf[o], i++) {
        uint64_t v;
        times[i] = -1; /* deleted since: nothing to write */
        if (vg_strmap_get(&reg->ix.devs, (const char *)buf + o + 1, buf[o], &v) == VG_OK) {
            reg_dev_t *e = (reg_dev_t *)(uintptr_t)v;
            atomic_store(&e->dirty, 0);
            times[i] = atomic_load(&e->last_seen_ms);
        }
    }
    pthread_rwlock_unlock(&reg->lock);
    uint64_t rev = 0;
    WRITE_TXN(reg, rev, {
        sqlite3_stmt *st = reg_stmt(reg, "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1 AND last_seen_ms < ?2");
        i = 0;
        for (size_t o = 0; st && o < len && rc == VG_OK; o += 1 + buf[o], i++) {
            if (times[i] < 0)
                continue;
            bind_id(st, 1, (const char *)buf + o + 1, buf[o]);
            sqlite3_bind_int64(st, 2, times[i]);
            rc = reg_step_done(reg, st);
        }
        if (!st)
            rc = VG_EIO;
    });
    vg_free(times);
    if (rc == VG_OK) {
        vg_free(buf);
        return VG_OK;
    }
requeue:
    /* Written next time: mark them pending again (touch may have already). */
    VG_WARN(REG_MOD, "%s: last-seen times not written (%s); retrying with the next batch", reg->path, vg_strerror(rc));
    pthread_rwlock_rdlock(&reg->lock);
    for (size_t o = 0; o < len; o += 1 + buf[o]) {
        uint64_t v;
        if (vg_strmap_get(&reg->ix.devs, (const char *)buf + o + 1, buf[o], &v) == VG_OK &&
            atomic_exchange(&((reg_dev_t *)(uintptr_t)v)->dirty, 1) == 0)
            enqueue(reg, (const char *)buf + o + 1, buf[o]);
    }
    pthread_rwlock_unlock(&reg->lock);
    vg_free(buf);
    return rc;
}
