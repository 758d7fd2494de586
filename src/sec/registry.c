/* registry.c — the device registry's database: schema, opening, loading
 * rows into the index, writes, scans, refresh, lookups and touch.
 *
 * Owns: the SQLite connection and its prepared statements, the change
 * counter the index reflects (reg->rev), the index's locks. Does not own:
 * the index's data structures (registry_index.c), credentials
 * (registry_cred.c), the background threads (registry_bg.c), SQLite's own
 * file formats.
 *
 * ON-DISK FORMAT (schema version 1)
 *
 * One SQLite 3 database, normally <data-dir>/registry.db, created with
 * mode 0600 (it holds password hashes), in WAL mode with synchronous=FULL:
 * a write returns after its transaction is fsynced. Beside it SQLite keeps
 * registry.db-wal (committed transactions not yet copied into the main
 * file) and registry.db-shm (the WAL index shared between processes);
 * normal locking, so the server and the CLI use the file at once, writers
 * taking turns (busy timeout 10 s). Tables:
 *
 *   CREATE TABLE meta(name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
 *     -- ('schema_version', 1) and ('rev', N): the change counter
 *   CREATE TABLE devices(
 *     id           TEXT PRIMARY KEY NOT NULL,  -- the device id (see registry.h for its characters)
 *     status       TEXT NOT NULL,              -- 'active' | 'revoked' | 'disabled'
 *     groups       TEXT NOT NULL,              -- JSON array of group names, e.g. ["ward-3","icu"]
 *     attributes   TEXT NOT NULL,              -- JSON object of string values, e.g. {"model":"w2"}
 *     created_ms   INTEGER NOT NULL,           -- unix ms
 *     last_seen_ms INTEGER NOT NULL,           -- unix ms of the last connect, 0 = never
 *     provenance   TEXT NOT NULL,              -- 'cli' | 'jitr' (registered at first connect)
 *     rev          INTEGER NOT NULL) WITHOUT ROWID;
 *   CREATE TABLE certificates(
 *     fingerprint        BLOB PRIMARY KEY NOT NULL,  -- SHA-256 of the DER certificate, 32 bytes
 *     device_id          TEXT NOT NULL,              -- the device it speaks for (its CN)
 *     serial             TEXT NOT NULL,              -- lowercase hex
 *     not_before_ms      INTEGER NOT NULL,
 *     not_after_ms       INTEGER NOT NULL,
 *     status             TEXT NOT NULL,              -- 'active' | 'revoked'
 *     issuer_fingerprint BLOB NOT NULL,              -- a cas.fingerprint
 *     rev                INTEGER NOT NULL) WITHOUT ROWID;
 *   CREATE TABLE cas(
 *     fingerprint BLOB PRIMARY KEY NOT NULL,  -- SHA-256 of the DER certificate
 *     subject     TEXT NOT NULL,              -- RFC 2253
 *     pem         TEXT NOT NULL,              -- the certificate
 *     jitr        INTEGER NOT NULL,           -- 1: just-in-time registration of its devices
 *     status      TEXT NOT NULL,              -- 'active' | 'revoked'
 *     created_ms  INTEGER NOT NULL,
 *     rev         INTEGER NOT NULL);
 *   CREATE TABLE credentials(
 *     id         TEXT PRIMARY KEY NOT NULL,  -- 'password:<principal>' or 'token:<token id>'
 *     principal  TEXT NOT NULL,              -- a device id or an operator's name
 *     kind       TEXT NOT NULL,              -- 'password' | 'token'
 *     hash       TEXT NOT NULL,              -- argon2id encoded: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
 *     role       TEXT NOT NULL,              -- 'device' | 'operator'
 *     created_ms INTEGER NOT NULL,
 *     rev        INTEGER NOT NULL);
 *   CREATE TABLE tombstones(
 *     kind INTEGER NOT NULL,  -- 0 device, 1 certificate, 2 CA
 *     key  BLOB NOT NULL,     -- the device id's bytes or the fingerprint
 *     rev  INTEGER NOT NULL,
 *     PRIMARY KEY(kind, key)) WITHOUT ROWID;
 *   plus indexes on every rev column, certificates(device_id) and
 *   credentials(principal). CHECK constraints pin the enumerations.
 *
 * The change counter. Every write transaction (BEGIN IMMEDIATE, so writers
 * are serialised) first increments meta.rev to R and stamps every row it
 * inserts or changes with rev = R; deleting a row records (kind, key, R)
 * in tombstones, one per key (a later delete of the same key replaces it).
 * Transactions commit in rev order, so a reader whose index reflects rev L
 * catches up by reading, in one read transaction, the tombstones and rows
 * with rev > L: deletions first, then rows (a row present in that snapshot
 * is newer than any tombstone of its key). The writer itself applies its
 * own rows (rev = R) to its index before returning. Last-seen times are
 * the exception: the background flush writes them in batches without
 * stamping the rows (they are telemetry, and the index, which touch
 * updates at once, is newer than any row); it still bumps meta.rev.
 *
 * Opening: an empty file gets the schema in one transaction; a file with a
 * meta table must say schema_version 1; anything else fails with
 * VG_EPROTO and is left alone. */
#include "sec/registry_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_VERSION 1

static const char *const schema_sql[] = {
    "CREATE TABLE meta(name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta VALUES('schema_version', 1), ('rev', 0)",
    "CREATE TABLE devices(id TEXT PRIMARY KEY NOT NULL, "
    "status TEXT NOT NULL CHECK(status IN ('active','revoked','disabled')), groups TEXT NOT NULL, "
    "attributes TEXT NOT NULL, created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, "
    "provenance TEXT NOT NULL CHECK(provenance IN ('cli','jitr')), rev INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX devices_rev ON devices(rev)",
    "CREATE TABLE certificates(fingerprint BLOB PRIMARY KEY NOT NULL CHECK(length(fingerprint) = 32), "
    "device_id TEXT NOT NULL, serial TEXT NOT NULL, not_before_ms INTEGER NOT NULL, not_after_ms INTEGER NOT NULL, "
    "status TEXT NOT NULL CHECK(status IN ('active','revoked')), issuer_fingerprint BLOB NOT NULL, "
    "rev INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX certificates_device ON certificates(device_id)",
    "CREATE INDEX certificates_rev ON certificates(rev)",
    "CREATE TABLE cas(fingerprint BLOB PRIMARY KEY NOT NULL CHECK(length(fingerprint) = 32), subject TEXT NOT NULL, "
    "pem TEXT NOT NULL, jitr INTEGER NOT NULL CHECK(jitr IN (0,1)), "
    "status TEXT NOT NULL CHECK(status IN ('active','revoked')), created_ms INTEGER NOT NULL, rev INTEGER NOT NULL)",
    "CREATE INDEX cas_rev ON cas(rev)",
    "CREATE TABLE credentials(id TEXT PRIMARY KEY NOT NULL, principal TEXT NOT NULL, "
    "kind TEXT NOT NULL CHECK(kind IN ('password','token')), hash TEXT NOT NULL, "
    "role TEXT NOT NULL CHECK(role IN ('device','operator')), created_ms INTEGER NOT NULL, rev INTEGER NOT NULL)",
    "CREATE INDEX credentials_principal ON credentials(principal)",
    "CREATE INDEX credentials_rev ON credentials(rev)",
    "CREATE TABLE tombstones(kind INTEGER NOT NULL, key BLOB NOT NULL, rev INTEGER NOT NULL, "
    "PRIMARY KEY(kind, key)) WITHOUT ROWID",
    "CREATE INDEX tombstones_rev ON tombstones(rev)",
};

static const char *const status_names[] = {"active", "revoked", "disabled"};
static const char *const provenance_names[] = {"cli", "jitr"};

const char *vg_registry_status_name(vg_registry_status_t s)
{
    return (unsigned)s < 3 ? status_names[s] : "?";
}

const char *vg_registry_provenance_name(vg_registry_provenance_t p)
{
    return (unsigned)p < 2 ? provenance_names[p] : "?";
}

static int parse_enum(const unsigned char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp((const char *)s, names[i]) == 0)
            return i;
    return -1;
}

/* ---- SQLite plumbing ------------------------------------------------------- */

int reg_sqlite_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return VG_OK;
    case SQLITE_FULL:
        return VG_ENOSPC;
    case SQLITE_NOMEM:
        return VG_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return VG_ECORRUPT;
    case SQLITE_CONSTRAINT:
        return rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE ? VG_EEXIST : VG_EINVAL;
    default:
        return VG_EIO;
    }
}

sqlite3_stmt *reg_stmt(vg_registry_t *reg, const char *sql)
{
    for (size_t i = 0; i < reg->nstmts; i++)
        if (reg->stmts[i].sql == sql || strcmp(reg->stmts[i].sql, sql) == 0) {
            sqlite3_reset(reg->stmts[i].st);
            sqlite3_clear_bindings(reg->stmts[i].st);
            return reg->stmts[i].st;
        }
    sqlite3_stmt *st = NULL;
    if (reg->nstmts == sizeof reg->stmts / sizeof reg->stmts[0]) {
        VG_ERROR(REG_MOD, "statement cache full");
        return NULL;
    }
    if (sqlite3_prepare_v3(reg->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        VG_ERROR(REG_MOD, "%s: cannot prepare `%s`: %s", reg->path, sql, sqlite3_errmsg(reg->db));
        return NULL;
    }
    reg->stmts[reg->nstmts].sql = sql;
    reg->stmts[reg->nstmts++].st = st;
    return st;
}

int reg_step_done(vg_registry_t *reg, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int code = rc == SQLITE_DONE || rc == SQLITE_ROW ? VG_OK : reg_sqlite_rc(sqlite3_extended_errcode(reg->db));
    /* A constraint failure is the caller's answer (VG_EEXIST), not an error. */
    if (code && code != VG_EEXIST)
        VG_ERROR(REG_MOD, "%s: %s", reg->path, sqlite3_errmsg(reg->db));
    sqlite3_reset(st);
    return code;
}

int reg_exec(vg_registry_t *reg, const char *sql)
{
    sqlite3_stmt *st = reg_stmt(reg, sql);
    return st ? reg_step_done(reg, st) : VG_EIO;
}

int reg_query_int(vg_registry_t *reg, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = reg_stmt(reg, sql);
    if (!st)
        return VG_EIO;
    /* Reset at once: a statement left on a row keeps its read snapshot
     * (and, outside a transaction, a read lock) until it is reset. */
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return VG_OK;
    }
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return VG_ENOTFOUND;
    }
    int code = reg_sqlite_rc(sqlite3_extended_errcode(reg->db));
    VG_ERROR(REG_MOD, "%s: %s", reg->path, sqlite3_errmsg(reg->db));
    sqlite3_reset(st);
    return code;
}

/* ---- reading rows ---------------------------------------------------------- */

static int col_copy(sqlite3_stmt *st, int col, void *out, size_t cap, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (n > cap || (n && !p))
        return VG_EMALFORMED;
    memcpy(out, p, n);
    if (len)
        *len = n;
    return VG_OK;
}

/* Columns: id, status, groups, attributes, created_ms, last_seen_ms, provenance. */
int reg_row_device(sqlite3_stmt *st, vg_registry_device_t *d)
{
    const char *id = (const char *)sqlite3_column_text(st, 0);
    int status = parse_enum(sqlite3_column_text(st, 1), status_names, 3);
    int prov = parse_enum(sqlite3_column_text(st, 6), provenance_names, 2);
    if (!id || vg_registry_device_init(d, id, (size_t)sqlite3_column_bytes(st, 0)) || status < 0 || prov < 0)
        return VG_EMALFORMED;
    d->status = (vg_registry_status_t)status;
    d->provenance = (vg_registry_provenance_t)prov;
    d->created_ms = sqlite3_column_int64(st, 4);
    d->last_seen_ms = sqlite3_column_int64(st, 5);
    const char *g = (const char *)sqlite3_column_text(st, 2);
    size_t gl = (size_t)sqlite3_column_bytes(st, 2);
    const char *a = (const char *)sqlite3_column_text(st, 3);
    size_t al = (size_t)sqlite3_column_bytes(st, 3);
    if (!g || !a || reg_parse_groups(d, g, gl) || reg_parse_attrs(d, a, al))
        return VG_EMALFORMED;
    return VG_OK;
}

/* Columns: fingerprint, device_id, serial, not_before_ms, not_after_ms, status, issuer_fingerprint. */
int reg_row_cert(sqlite3_stmt *st, vg_registry_cert_t *c)
{
    memset(c, 0, sizeof *c);
    size_t n = 0;
    int status = parse_enum(sqlite3_column_text(st, 5), status_names, 2);
    if (col_copy(st, 0, c->fingerprint, 32, &n) || n != 32 ||
        col_copy(st, 1, c->device_id, VG_REGISTRY_ID_MAX, &c->device_id_len) ||
        col_copy(st, 2, c->serial_hex, VG_PKI_SERIAL_HEX_MAX, NULL) || col_copy(st, 6, c->issuer_fingerprint, 32, &n) ||
        n != 32 || status < 0)
        return VG_EMALFORMED;
    c->not_before_ms = sqlite3_column_int64(st, 3);
    c->not_after_ms = sqlite3_column_int64(st, 4);
    c->status = (vg_registry_status_t)status;
    return VG_OK;
}

/* Columns: fingerprint, subject, jitr, status, created_ms. */
int reg_row_ca(sqlite3_stmt *st, vg_registry_ca_t *c)
{
    memset(c, 0, sizeof *c);
    size_t n = 0;
    const unsigned char *subj = sqlite3_column_text(st, 1);
    int status = parse_enum(sqlite3_column_text(st, 3), status_names, 2);
    if (col_copy(st, 0, c->fingerprint, 32, &n) || n != 32 || !subj || status < 0)
        return VG_EMALFORMED;
    snprintf(c->subject, sizeof c->subject, "%s", (const char *)subj);
    c->jitr = sqlite3_column_int(st, 2) != 0;
    c->status = (vg_registry_status_t)status;
    c->created_ms = sqlite3_column_int64(st, 4);
    return VG_OK;
}

/* Steps st to its end; a row that does not parse is logged and becomes a
 * tombstone for its key, so an index never keeps an older, valid-looking
 * version of a row it can no longer read (a device that cannot be read
 * cannot connect). */
static int load_rows(vg_registry_t *reg, sqlite3_stmt *st, int kind, reg_delta_t *d, vg_registry_device_t *scratch)
{
    int rc = VG_OK, src = SQLITE_DONE;
    while (rc == VG_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        int prc;
        if (kind == TOMB_DEVICE) {
            if ((prc = reg_row_device(st, scratch)) == VG_OK) {
                reg_dev_t *e = reg_dev_pack(scratch);
                rc = e ? reg_delta_add_dev(d, e) : VG_ENOMEM;
            }
        } else if (kind == TOMB_CERT) {
            vg_registry_cert_t c;
            if ((prc = reg_row_cert(st, &c)) == VG_OK)
                rc = reg_delta_add_cert(d, &c);
        } else {
            vg_registry_ca_t c;
            if ((prc = reg_row_ca(st, &c)) == VG_OK)
                rc = reg_delta_add_ca(d, &c);
        }
        if (prc != VG_OK) {
            const void *key = sqlite3_column_blob(st, 0);
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            VG_WARN(REG_MOD, "%s: unreadable %s row (key of %zu bytes) ignored", reg->path,
                    kind == TOMB_DEVICE ? "devices"
                    : kind == TOMB_CERT ? "certificates"
                                        : "cas",
                    n);
            if (n <= VG_REGISTRY_ID_MAX)
                rc = reg_delta_add_tomb(d, kind, key, n);
        }
    }
    if (rc == VG_OK && src != SQLITE_DONE) {
        VG_ERROR(REG_MOD, "%s: %s", reg->path, sqlite3_errmsg(reg->db));
        rc = reg_sqlite_rc(src);
    }
    /* Also when stopped early: a statement on a row keeps its snapshot. */
    sqlite3_reset(st);
    return rc;
}

/* Reads the tombstones and rows with rev > since into d. db_mu held, in a
 * transaction. since = 0 reads whole tables (every rev is at least 1). */
int reg_load_delta(vg_registry_t *reg, uint64_t since, reg_delta_t *d)
{
    static const char *const all[] = {"SELECT " DEV_COLS " FROM devices", "SELECT " CERT_COLS " FROM certificates",
                                      "SELECT " CA_COLS " FROM cas"};
    static const char *const newer[] = {"SELECT " DEV_COLS " FROM devices WHERE rev > ?1",
                                        "SELECT " CERT_COLS " FROM certificates WHERE rev > ?1",
                                        "SELECT " CA_COLS " FROM cas WHERE rev > ?1"};
    vg_registry_device_t *scratch = vg_malloc(VG_MEM_SEC, sizeof *scratch);
    if (!scratch)
        return VG_ENOMEM;
    int rc = VG_OK;
    if (since) {
        sqlite3_stmt *st = reg_stmt(reg, "SELECT kind, key FROM tombstones WHERE rev > ?1");
        rc = st ? VG_OK : VG_EIO;
        if (st)
            sqlite3_bind_int64(st, 1, (int64_t)since);
        int src = SQLITE_DONE;
        while (rc == VG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
            rc = reg_delta_add_tomb(d, sqlite3_column_int(st, 0), sqlite3_column_blob(st, 1),
                                    (size_t)sqlite3_column_bytes(st, 1));
        if (rc == VG_OK && src != SQLITE_DONE)
            rc = reg_sqlite_rc(src);
        if (st)
            sqlite3_reset(st);
    }
    for (int k = 0; k < 3 && rc == VG_OK; k++) {
        sqlite3_stmt *st = reg_stmt(reg, since ? newer[k] : all[k]);
        if (!st) {
            rc = VG_EIO;
            break;
        }
        if (since)
            sqlite3_bind_int64(st, 1, (int64_t)since);
        rc = load_rows(reg, st, k, d, scratch);
    }
    vg_free(scratch);
    return rc;
}

/* ---- transactions ---------------------------------------------------------- */

int reg_write_begin(vg_registry_t *reg, uint64_t *rev)
{
    int rc = reg_exec(reg, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    int64_t r = 0;
    rc = reg_query_int(reg, "UPDATE meta SET value = value + 1 WHERE name = 'rev' RETURNING value", &r);
    if (rc) {
        reg_write_rollback(reg);
        return rc == VG_ENOTFOUND ? VG_ECORRUPT : rc;
    }
    *rev = (uint64_t)r;
    return VG_OK;
}

void reg_write_rollback(vg_registry_t *reg)
{
    if (!sqlite3_get_autocommit(reg->db))
        reg_exec(reg, "ROLLBACK");
}

int reg_reload_all(vg_registry_t *reg, reg_events_t *ev)
{
    reg_delta_t d = {0};
    reg_index_t ix;
    reg_index_init(&ix);
    int64_t rev = 0;
    int rc = reg_exec(reg, "BEGIN");
    if (rc == VG_OK) {
        if ((rc = reg_query_int(reg, "SELECT value FROM meta WHERE name = 'rev'", &rev)) == VG_OK)
            rc = reg_load_delta(reg, 0, &d);
        reg_write_rollback(reg); /* a read transaction: nothing to keep */
    }
    if (rc == VG_OK)
        rc = reg_index_apply(&ix, &d, NULL);
    if (rc == VG_OK) {
        pthread_rwlock_wrlock(&reg->lock);
        /* Devices gone or newly revoked/disabled, and carry over last-seen times. */
        for (size_t i = 0; i < reg->ix.devs.cap && rc == VG_OK; i++) {
            vg_strmap_slot_t *s = &reg->ix.devs.slots[i];
            if (!s->key)
                continue;
            reg_dev_t *old = (reg_dev_t *)(uintptr_t)s->value;
            uint64_t v;
            if (vg_strmap_get(&ix.devs, s->key, s->key_len, &v) != VG_OK) {
                if (ev)
                    rc = vg_strmap_put(ev, s->key, s->key_len, VG_REG_CHANGE_DELETED, NULL);
                continue;
            }
            reg_dev_t *e = (reg_dev_t *)(uintptr_t)v;
            if (atomic_load(&old->last_seen_ms) > atomic_load(&e->last_seen_ms))
                atomic_store(&e->last_seen_ms, atomic_load(&old->last_seen_ms));
            atomic_store(&e->dirty, atomic_load(&old->dirty));
            if (ev && e->status != old->status && e->status != VG_REG_ACTIVE)
                rc = vg_strmap_put(ev, s->key, s->key_len,
                                   e->status == VG_REG_REVOKED ? VG_REG_CHANGE_REVOKED : VG_REG_CHANGE_DISABLED, NULL);
        }
        /* CAs: rare enough to report without comparing. */
        if (ev && rc == VG_OK)
            rc = vg_strmap_put(ev, "", 0, VG_REG_CHANGE_CAS, NULL);
        reg_index_t dead = reg->ix;
        reg->ix = ix;
        ix = dead;
        atomic_store(&reg->rev, (uint64_t)rev);
        pthread_rwlock_unlock(&reg->lock);
        rc = rc == VG_EEXIST ? VG_OK : rc;
    }
    reg_index_deinit(&ix);
    reg_delta_free(&d);
    return rc;
}

/* Tells a watching process that a transaction committed: SQLite's own
 * writes to the WAL come before the commit is visible, so an inotify event
 * for them can wake a reader too early; this one comes after. */
static void poke(vg_registry_t *reg)
{
    utimensat(AT_FDCWD, reg->path, NULL, 0);
}

int reg_write_commit(vg_registry_t *reg, uint64_t rev)
{
    reg_delta_t d = {0};
    int rc = reg_load_delta(reg, rev - 1, &d);
    if (rc == VG_OK)
        rc = reg_exec(reg, "COMMIT");
    if (rc) {
        reg_write_rollback(reg);
        reg_delta_free(&d);
        return rc;
    }
    poke(reg);
    pthread_rwlock_wrlock(&reg->lock);
    int arc = reg_index_apply(&reg->ix, &d, NULL);
    /* If nobody else wrote since the index was last brought up to date,
     * it now reflects rev; otherwise the next refresh reads from the old
     * rev, this transaction's rows again included. */
    uint64_t expect = rev - 1;
    if (arc == VG_OK)
        atomic_compare_exchange_strong(&reg->rev, &expect, rev);
    pthread_rwlock_unlock(&reg->lock);
    reg_delta_free(&d);
    if (arc) {
        /* Committed, but the index missed part of it: rebuild it now. */
        VG_WARN(REG_MOD, "%s: out of memory applying a write to the index; reloading it", reg->path);
        reg_reload_all(reg, NULL);
    }
    return VG_OK;
}

/* ---- opening --------------------------------------------------------------- */

static int setup_schema(vg_registry_t *reg)
{
    int rc = reg_exec(reg, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    int64_t tables = 0, meta = 0, version = 0;
    if ((rc = reg_query_int(reg, "SELECT count(*) FROM sqlite_master", &tables)) ||
        (rc = reg_query_int(reg, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", &meta)))
        goto cleanup;
    if (tables == 0) {
        for (size_t i = 0; i < sizeof schema_sql / sizeof schema_sql[0] && rc == VG_OK; i++)
            rc = sqlite3_exec(reg->db, schema_sql[i], NULL, NULL, NULL) == SQLITE_OK ? VG_OK : VG_EIO;
        if (rc)
            VG_ERROR(REG_MOD, "%s: cannot create the schema: %s", reg->path, sqlite3_errmsg(reg->db));
    } else if (!meta || reg_query_int(reg, "SELECT value FROM meta WHERE name = 'schema_version'", &version) != VG_OK ||
               version != SCHEMA_VERSION) {
        VG_ERROR(REG_MOD, "%s: not a vigil registry of schema version %d", reg->path, SCHEMA_VERSION);
        rc = VG_EPROTO;
    }
cleanup:
    if (rc == VG_OK)
        rc = reg_exec(reg, "COMMIT");
    if (rc)
        reg_write_rollback(reg);
    return rc;
}

static int db_open(vg_registry_t *reg)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", reg->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int rc = vg_fs_mkdir_p(dir);
        if (rc)
            return rc;
    }
    /* Created here with mode 0600: SQLite would use 0644, and its -wal and
     * -shm files take the main file's mode. */
    int fd = open(reg->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        VG_ERROR(REG_MOD, "%s: cannot open: %s", reg->path, strerror(errno));
        return VG_EIO;
    }
    close(fd);
    int rc = sqlite3_open_v2(reg->path, &reg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        VG_ERROR(REG_MOD, "%s: cannot open: %s", reg->path, reg->db ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc));
        return reg_sqlite_rc(rc);
    }
    sqlite3_extended_result_codes(reg->db, 1);
    sqlite3_busy_timeout(reg->db, 10000);
    char mode[16] = "";
    sqlite3_stmt *st = reg_stmt(reg, "PRAGMA journal_mode=WAL");
    if (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
    int code = reg_sqlite_rc(sqlite3_extended_errcode(reg->db));
    if (st)
        sqlite3_reset(st);
    if (!st || strcmp(mode, "wal") != 0) {
        VG_ERROR(REG_MOD, "%s: cannot use WAL mode (%s): %s", reg->path, mode, sqlite3_errmsg(reg->db));
        return code ? code : VG_EIO;
    }
    if ((rc = reg_exec(reg, "PRAGMA synchronous=FULL")))
        return rc;
    return setup_schema(reg);
}

int vg_registry_open(const char *path, const vg_registry_opts_t *opts, vg_registry_t **out)
{
    *out = NULL;
    vg_registry_t *reg = vg_calloc(VG_MEM_SEC, 1, sizeof *reg);
    if (!reg)
        return VG_ENOMEM;
    if (snprintf(reg->path, sizeof reg->path, "%s", path) >= (int)sizeof reg->path) {
        vg_free(reg);
        return VG_EINVAL;
    }
    pthread_mutex_init(&reg->db_mu, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&reg->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&reg->q_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reg->q_cond, &ca);
    pthread_condattr_destroy(&ca);
    reg->watch_ifd = reg->watch_stopfd = -1;
    reg_index_init(&reg->ix);
    reg->flush_ms = opts ? opts->touch_flush_ms : 0;

    int rc = db_open(reg);
    if (rc == VG_OK) {
        pthread_mutex_lock(&reg->db_mu);
        rc = reg_reload_all(reg, NULL);
        pthread_mutex_unlock(&reg->db_mu);
    }
    if (rc == VG_OK && reg->flush_ms)
        rc = reg_flusher_start(reg);
    if (rc) {
        vg_registry_close(reg);
        return rc;
    }
    *out = reg;
    return VG_OK;
}

int vg_registry_close(vg_registry_t *reg)
{
    if (!reg)
        return VG_OK;
    reg_bg_stop(reg);
    int rc = reg->db ? vg_registry_flush(reg) : VG_OK;
    for (size_t i = 0; i < reg->nstmts; i++)
        sqlite3_finalize(reg->stmts[i].st);
    if (reg->db)
        sqlite3_close(reg->db);
    reg_index_deinit(&reg->ix);
    vg_free(reg->q_buf);
    pthread_mutex_destroy(&reg->db_mu);
    pthread_rwlock_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->q_mu);
    pthread_cond_destroy(&reg->q_cond);
    vg_free(reg);
    return rc;
}

/* ---- lookups --------------------------------------------------------------- */

int vg_registry_device_get(vg_registry_t *reg, const char *id, size_t len, vg_registry_device_t *out)
{
    uint64_t v;
    pthread_rwlock_rdlock(&reg->lock);
    int rc = vg_strmap_get(&reg->ix.devs, id, len, &v);
    if (rc == VG_OK)
        reg_dev_unpack((const reg_dev_t *)(uintptr_t)v, out);
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

int vg_registry_cert_get(vg_registry_t *reg, const uint8_t fp[32], vg_registry_cert_t *out)
{
    uint64_t v;
    pthread_rwlock_rdlock(&reg->lock);
    int rc = vg_strmap_get(&reg->ix.certs, (const char *)fp, 32, &v);
    if (rc == VG_OK)
        *out = *(const vg_registry_cert_t *)(uintptr_t)v;
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

int vg_registry_ca_get(vg_registry_t *reg, const uint8_t fp[32], vg_registry_ca_t *out)
{
    uint64_t v;
    pthread_rwlock_rdlock(&reg->lock);
    int rc = vg_strmap_get(&reg->ix.cas, (const char *)fp, 32, &v);
    if (rc == VG_OK)
        *out = *(const vg_registry_ca_t *)(uintptr_t)v;
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

size_t vg_registry_device_count(vg_registry_t *reg)
{
    pthread_rwlock_rdlock(&reg->lock);
    size_t n = reg->ix.devs.count;
    pthread_rwlock_unlock(&reg->lock);
    return n;
}

uint64_t vg_registry_rev(vg_registry_t *reg)
{
    return atomic_load(&reg->rev);
}
