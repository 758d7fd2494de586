/* registry_int.h — what the files of the device registry share; not for
 * use outside src/sec/registry*.c.
 *
 *   registry.c        the database: schema, open/close, loading rows,
 *                     transactions, lookups
 *   registry_ops.c    writes, scans, refresh, touch and flush
 *   registry_index.c  the in-memory index and the device builder
 *   registry_cred.c   passwords and tokens (argon2id)
 *   registry_bg.c     the two background threads: last-seen writer and
 *                     inotify watcher
 *
 * Locks, always taken in this order when nested:
 *   db_mu   the SQLite connection, its statements, `rev` changes. Held by
 *           every write, scan, refresh and flush for their whole SQL part.
 *   lock    (rwlock) the index. Readers: lookups and touch. Writers: the
 *           apply step of a write or refresh, a few microseconds per row,
 *           after all SQL is done (rows are parsed before it is taken).
 *           Writer-preferring, so a stream of lookups cannot starve it.
 *   q_mu    the queue of touched device ids. Taken by touch inside the
 *           read lock and by the flusher with no other lock. */
#ifndef VG_SEC_REGISTRY_INT_H
#define VG_SEC_REGISTRY_INT_H

#include "core/strmap.h"
#include "sec/registry.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#define REG_MOD "registry"

/* One device in the index: this header, then its spans (ngroups groups,
 * nattrs keys, nattrs values), its id and NUL, then its strings. One
 * allocation; replaced whole, never changed in place, except last_seen_ms
 * and dirty, which touch changes under the read lock (hence atomics). */
typedef struct {
    uint8_t status, provenance, ngroups, nattrs;
    uint16_t id_len, strings_len;
    int64_t created_ms;
    _Atomic int64_t last_seen_ms;
    atomic_int dirty; /* 1 while the id is in the touch queue */
    vg_registry_span_t spans[];
} reg_dev_t;

/* The three maps. Values are pointers to a reg_dev_t, vg_registry_cert_t
 * or vg_registry_ca_t of the map's own (allocated under VG_MEM_SEC). */
typedef struct {
    vg_strmap_t devs;  /* id -> reg_dev_t */
    vg_strmap_t certs; /* fingerprint (32 bytes) -> vg_registry_cert_t */
    vg_strmap_t cas;   /* fingerprint -> vg_registry_ca_t */
} reg_index_t;

enum { TOMB_DEVICE = 0, TOMB_CERT = 1, TOMB_CA = 2 };

typedef struct {
    uint8_t kind;
    uint8_t len;
    uint8_t key[VG_REGISTRY_ID_MAX];
} reg_tomb_t;

/* Rows read from the database, to be applied to the index in one go. */
typedef struct {
    reg_tomb_t *tombs;
    size_t ntombs, tombs_cap;
    reg_dev_t **devs;
    size_t ndevs, devs_cap;
    vg_registry_cert_t **certs;
    size_t ncerts, certs_cap;
    vg_registry_ca_t **cas;
    size_t ncas, cas_cap;
} reg_delta_t;

/* What an apply found, for the change callback: id -> vg_registry_change_t. */
typedef vg_strmap_t reg_events_t;

struct vg_registry {
    char path[PATH_MAX];
    sqlite3 *db;
    pthread_mutex_t db_mu;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } stmts[48]; /* reg_stmt's cache */
    size_t nstmts;
    pthread_rwlock_t lock;
    reg_index_t ix;
    _Atomic uint64_t rev; /* the change counter the index reflects; changed under db_mu and lock */

    /* Touch queue: ids (length byte + bytes) of devices whose last_seen_ms
     * is newer than the database's. */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cond;
    uint8_t *q_buf;
    size_t q_len, q_cap;
    bool q_stop;
    uint32_t flush_ms;
    bool flusher_on;
    pthread_t flusher;

    /* Watcher. */
    bool watching;
    pthread_t watcher;
    int watch_ifd, watch_stopfd;
    vg_registry_change_fn watch_fn;
    void *watch_ctx;
};

/* ---- registry_index.c ---- */
void reg_index_init(reg_index_t *ix);
void reg_index_deinit(reg_index_t *ix);
/* A new index entry for d (VG_MEM_SEC), or NULL. */
reg_dev_t *reg_dev_pack(const vg_registry_device_t *d);
/* The entry's id (NUL-terminated). */
const char *reg_dev_id(const reg_dev_t *e);
void reg_dev_unpack(const reg_dev_t *e, vg_registry_device_t *out);
void reg_delta_free(reg_delta_t *d);
int reg_delta_add_dev(reg_delta_t *d, reg_dev_t *e);
int reg_delta_add_cert(reg_delta_t *d, const vg_registry_cert_t *c);
int reg_delta_add_ca(reg_delta_t *d, const vg_registry_ca_t *c);
int reg_delta_add_tomb(reg_delta_t *d, int kind, const void *key, size_t len);
/* Moves every row of d into ix (the caller holds the write lock), leaving
 * d empty. ev (may be NULL) collects what changed for the callback.
 * VG_ENOMEM leaves the index with part of d applied: the caller then
 * reloads everything. */
int reg_index_apply(reg_index_t *ix, reg_delta_t *d, reg_events_t *ev);
/* Parses the groups column (a JSON array of names) and attributes column
 * (a JSON object of string values) into d. VG_EMALFORMED. */
int reg_parse_groups(vg_registry_device_t *d, const char *s, size_t n);
int reg_parse_attrs(vg_registry_device_t *d, const char *s, size_t n);
/* Writes them as JSON into out[0..cap). Returns the length, or VG_ENOSPC. */
int reg_format_groups(const vg_registry_device_t *d, char *out, size_t cap);
int reg_format_attrs(const vg_registry_device_t *d, char *out, size_t cap);

/* ---- registry.c, for the other files ---- */
#define DEV_COLS "id, status, groups, attributes, created_ms, last_seen_ms, provenance"
#define CERT_COLS "fingerprint, device_id, serial, not_before_ms, not_after_ms, status, issuer_fingerprint"
#define CA_COLS "fingerprint, subject, jitr, status, created_ms"
/* Parse the current row of a statement selecting DEV_COLS, CERT_COLS or
 * CA_COLS. VG_EMALFORMED. */
int reg_row_device(sqlite3_stmt *st, vg_registry_device_t *d);
int reg_row_cert(sqlite3_stmt *st, vg_registry_cert_t *c);
int reg_row_ca(sqlite3_stmt *st, vg_registry_ca_t *c);
/* Reads the tombstones and rows with rev > since into d (0: every row).
 * db_mu held, inside a transaction. */
int reg_load_delta(vg_registry_t *reg, uint64_t since, reg_delta_t *d);
/* Replaces the index with one loaded from scratch (at open, and to
 * recover after an apply ran out of memory). db_mu held. With ev, what
 * differs from the old index is recorded as a refresh would. */
int reg_reload_all(vg_registry_t *reg, reg_events_t *ev);
/* Runs a statement without rows / reads one integer (VG_ENOTFOUND: no row). */
int reg_exec(vg_registry_t *reg, const char *sql);
int reg_query_int(vg_registry_t *reg, const char *sql, int64_t *out);
/* Maps an SQLite result code to VG_E* (SQLITE_FULL: VG_ENOSPC, ...). */
int reg_sqlite_rc(int rc);
/* BEGIN IMMEDIATE and bump rev: *rev gets the new value. db_mu held. */
int reg_write_begin(vg_registry_t *reg, uint64_t *rev);
/* COMMIT, then applies the rows stamped rev to the index. db_mu held. */
int reg_write_commit(vg_registry_t *reg, uint64_t rev);
void reg_write_rollback(vg_registry_t *reg);
/* Prepared statement cache: the statement for sql, reset and with its
 * bindings cleared, owned by reg. db_mu held. NULL on failure (logged). */
sqlite3_stmt *reg_stmt(vg_registry_t *reg, const char *sql);
/* Steps a statement that returns no rows; VG_OK or VG_E*. */
int reg_step_done(vg_registry_t *reg, sqlite3_stmt *st);

/* ---- registry_bg.c ---- */
int reg_flusher_start(vg_registry_t *reg);
/* Stops both threads (either may not be running). */
void reg_bg_stop(vg_registry_t *reg);

#endif
