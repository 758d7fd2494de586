/* kv.c — the durable key-value store behind kv.h.
 *
 * Owns: the SQLite connection and its prepared statements, the write queue,
 * the store thread, the statistics. Does not own: the meaning of records,
 * SQLite's own file formats (database, WAL), the caller's buffers.
 *
 * ON-DISK FORMAT (schema version 1)
 *
 * One SQLite 3 database file at the configured path, created with mode 0600.
 * While it is open a write-ahead log `<path>-wal` (same mode) sits beside it;
 * it holds committed transactions not yet copied into the main file, so the
 * two files must be kept together (SQLite merges the log at the next open).
 * There is no `-shm` file: the connection runs with locking_mode=EXCLUSIVE,
 * so the WAL index lives in memory and no other connection or process can
 * use the file while we hold it. Its tables:
 *
 *   CREATE TABLE meta(
 *       name  TEXT PRIMARY KEY NOT NULL,
 *       value NOT NULL
 *   ) WITHOUT ROWID;
 *   -- exactly one row: ('schema_version', 1), an INTEGER
 *
 *   CREATE TABLE kv(
 *       ns  INTEGER NOT NULL,  -- namespace, 0..255
 *       key BLOB    NOT NULL,  -- the key bytes, possibly zero-length (never NULL)
 *       sub INTEGER NOT NULL,  -- the 64-bit sub number, biased: sub - 2^63 as a signed integer
 *       val BLOB    NOT NULL,  -- the value bytes, possibly zero-length (never NULL)
 *       PRIMARY KEY(ns, key, sub)
 *   ) WITHOUT ROWID;
 *
 * Why the bias: SQLite integers are signed, and sub is an unsigned 64-bit
 * number whose order matters to scans (queued messages in sequence order).
 * Subtracting 2^63 maps 0..2^64-1 onto INT64_MIN..INT64_MAX preserving
 * order, so the primary key's b-tree order is exactly (ns, key bytes as
 * memcmp with a prefix first, unsigned sub) and a scan needs no sort. In the
 * sqlite3 shell, sub 0 reads as -9223372036854775808.
 * WITHOUT ROWID stores each record once, in the primary key's b-tree,
 * instead of a rowid table plus an index that repeats the key.
 *
 * Opening: an empty file (no tables) is initialised with the schema above in
 * one transaction. Any other file must have a meta table whose
 * schema_version is 1; a different version or a missing meta table fails
 * the open with VG_EPROTO and leaves the file untouched, so an older build
 * never damages a newer store. A file that is not a database fails with
 * VG_ECORRUPT.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so COMMIT returns only
 * after the log is fsynced; on_durable is called only after that.
 *
 * Threads. Callers post operations (pointers to op_t) to a core/mailbox
 * while holding `mu`, where they get their sequence number, so queue order
 * is sequence order. The post wakes the store thread (a futex word, `wake`)
 * only if the queue was empty. The store thread takes the whole queue at
 * once (group commit: whatever arrived while the previous fsync ran goes
 * into the next transaction), applies it with
 * prepared statements inside BEGIN/COMMIT holding `db_mu`, publishes the
 * durable sequence number under `mu` and calls on_durable with no lock held.
 * `db_mu` exists only so that vg_kv_scan can use the connection from another
 * thread; SQLite is opened without its own mutexes since we serialise. */
#include "store/kv.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/mailbox.h"
#include "core/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KV_SCHEMA_VERSION 1
#define KV_DEFAULT_MAX_PENDING ((size_t)64 << 20)
/* A close while the disk is full keeps trying this long, then gives up. */
#define KV_FULL_CLOSE_GRACE_MS 1000u
#define SUB_BIAS ((uint64_t)1 << 63)

/* The allocator has no tag of our own yet; the store's memory is the queue. */
#define KV_MEM VG_MEM_CORE

enum { OP_PUT = 1, OP_DEL, OP_DEL_KEY };

typedef struct op op_t;
struct op {
    uint64_t seq;
    uint64_t sub;
    uint32_t klen, vlen;
    uint8_t kind;
    uint8_t ns;
    unsigned char data[]; /* key bytes, then value bytes */
};

struct vg_kv {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *st_put, *st_del, *st_del_key, *st_begin, *st_commit, *st_rollback, *st_scan;
    size_t max_len; /* largest key or value SQLite will take */

    pthread_mutex_t db_mu; /* the connection: the store thread during a batch, or a scan */
    vg_mailbox_t queue;    /* op_t *, posted under mu; taken by the store thread */
    vg_notify_t wake;      /* the store thread sleeps here: ops posted to an empty queue, close */
    pthread_mutex_t mu;    /* everything below */
    pthread_cond_t done;   /* vg_kv_sync waits here for durable_seq */
    bool closing;
    uint64_t closing_ns; /* when close began (mono), for the disk-full grace */
    int failed;
    size_t max_pending;
    vg_kv_stats_t st;

    vg_kv_durable_fn on_durable;
    void *ctx;
    pthread_t thread;
    bool thread_started, mu_ready;
};

/* ---- SQLite helpers -------------------------------------------------------------- */

/* Maps an SQLite result code to ours. */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return VG_OK;
    case SQLITE_NOMEM:
        return VG_ENOMEM;
    case SQLITE_FULL:
        return VG_ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return VG_ECORRUPT;
    default:
        return VG_EIO;
    }
}

static int64_t sub_to_db(uint64_t sub)
{
    return sub >= SUB_BIAS ? (int64_t)(sub - SUB_BIAS) : (int64_t)sub - INT64_MAX - 1;
}

static uint64_t sub_from_db(int64_t v)
{
    return v >= 0 ? (uint64_t)v + SUB_BIAS : (uint64_t)(v + INT64_MAX + 1);
}

/* Runs one statement to completion and resets it. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Runs SQL text that returns no rows we need (schema setup, pragmas). */
static int exec_sql(vg_kv_t *kv, const char *sql)
{
    int rc = sqlite3_exec(kv->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        VG_ERROR("kv", "%s: `%s` failed: %s", kv->path, sql, sqlite3_errmsg(kv->db));
    return rc;
}

/* Runs a one-row query; its first column as text into out (or "" if no row). */
static int query_text(vg_kv_t *kv, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    int rc = sqlite3_prepare_v2(kv->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(out, cap, "%s", t ? (const char *)t : "");
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- opening ------------------------------------------------------------------------- */

/* Creates path's parent directories and the file itself with mode 0600.
 * We create it rather than let SQLite do so because SQLite would use 0644:
 * the store holds session state and queued messages, readable by no one
 * else. SQLite gives the WAL the main file's mode. A new file's directory
 * entry is made durable before anything is committed into it. */
static int create_file(const char *path)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return VG_EINVAL;
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int rc = vg_fs_mkdir_p(dir);
    if (rc)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return VG_OK;
        VG_ERROR("kv", "cannot create %s: %s", path, strerror(errno));
        return VG_EIO;
    }
    close(fd);
    if (vg_fs_fsync_dir(dir) != VG_OK) {
        VG_ERROR("kv", "fsync of directory %s failed: %s", dir, strerror(errno));
        return VG_EIO;
    }
    return VG_OK;
}

/* Creates the schema in an empty database, or checks an existing one. */
static int check_schema(vg_kv_t *kv)
{
    char buf[64];
    int rc = query_text(kv, "SELECT count(*) FROM sqlite_schema", buf, sizeof buf);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: cannot read the schema: %s", kv->path, sqlite3_errmsg(kv->db));
        return map_rc(rc);
    }
    if (strcmp(buf, "0") == 0) {
        static const char schema[] =
            "BEGIN;"
            "CREATE TABLE meta(name TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID;"
            "INSERT INTO meta(name, value) VALUES('schema_version', 1);"
            "CREATE TABLE kv(ns INTEGER NOT NULL, key BLOB NOT NULL, sub INTEGER NOT NULL, val BLOB NOT NULL,"
            " PRIMARY KEY(ns, key, sub)) WITHOUT ROWID;"
            "COMMIT;";
        rc = exec_sql(kv, schema);
        if (rc != SQLITE_OK) {
            if (!sqlite3_get_autocommit(kv->db))
                sqlite3_exec(kv->db, "ROLLBACK", NULL, NULL, NULL);
            return map_rc(rc);
        }
        VG_INFO("kv", "%s: created (schema version %d)", kv->path, KV_SCHEMA_VERSION);
        return VG_OK;
    }
    rc = query_text(kv, "SELECT value FROM meta WHERE name = 'schema_version'", buf, sizeof buf);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: not a vigil kv store (%s)", kv->path, sqlite3_errmsg(kv->db));
        return map_rc(rc) == VG_EIO ? VG_EPROTO : map_rc(rc);
    }
    if (buf[0] == '\0') {
        VG_ERROR("kv", "%s: not a vigil kv store (no schema_version in meta)", kv->path);
        return VG_EPROTO;
    }
    char want[16];
    snprintf(want, sizeof want, "%d", KV_SCHEMA_VERSION);
    if (strcmp(buf, want) != 0) {
        VG_ERROR("kv", "%s: schema version %s, this build knows only %d; the file is left as it is", kv->path, buf,
                 KV_SCHEMA_VERSION);
        return VG_EPROTO;
    }
    return VG_OK;
}

static int prepare(vg_kv_t *kv, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v3(kv->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: cannot prepare `%s`: %s", kv->path, sql, sqlite3_errmsg(kv->db));
        return map_rc(rc) == VG_EIO ? VG_EPROTO : map_rc(rc);
    }
    return VG_OK;
}

/* Opens the connection and brings it into the state the header describes. */
static int db_open(vg_kv_t *kv, const char *vfs)
{
    int rc = sqlite3_open_v2(kv->path, &kv->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: cannot open: %s", kv->path, kv->db ? sqlite3_errmsg(kv->db) : sqlite3_errstr(rc));
        return map_rc(rc);
    }
    sqlite3_extended_result_codes(kv->db, 1);
    /* Exclusive locking first: entering WAL then keeps the WAL index in
     * memory (no -shm file), and the lock taken at first access is held
     * until close, so a second process fails at open instead of writing
     * into our file. The first access is the journal_mode pragma, which is
     * where a file that is not a database is detected. */
    char mode[32];
    if (exec_sql(kv, "PRAGMA locking_mode=EXCLUSIVE") != SQLITE_OK)
        return VG_EIO;
    rc = query_text(kv, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc != SQLITE_OK) {
        int code = map_rc(rc);
        if (code == VG_ECORRUPT)
            VG_ERROR("kv", "%s: not an SQLite database or damaged (%s)", kv->path, sqlite3_errmsg(kv->db));
        else if ((rc & 0xff) == SQLITE_BUSY)
            VG_ERROR("kv", "%s: in use by another process or connection (%s)", kv->path, sqlite3_errmsg(kv->db));
        else
            VG_ERROR("kv", "%s: cannot enter WAL mode: %s", kv->path, sqlite3_errmsg(kv->db));
        return code;
    }
    if (strcmp(mode, "wal") != 0) {
        VG_ERROR("kv", "%s: journal mode is %s, not wal", kv->path, mode);
        return VG_EIO;
    }
    if (exec_sql(kv, "PRAGMA synchronous=FULL") != SQLITE_OK)
        return VG_EIO;
    rc = check_schema(kv);
    if (rc)
        return rc;
    int lim = sqlite3_limit(kv->db, SQLITE_LIMIT_LENGTH, -1);
    kv->max_len = lim > 0 ? (size_t)lim : 0;

    if ((rc = prepare(kv, "INSERT OR REPLACE INTO kv(ns, key, sub, val) VALUES(?1, ?2, ?3, ?4)", &kv->st_put)) ||
        (rc = prepare(kv, "DELETE FROM kv WHERE ns = ?1 AND key = ?2 AND sub = ?3", &kv->st_del)) ||
        (rc = prepare(kv, "DELETE FROM kv WHERE ns = ?1 AND key = ?2", &kv->st_del_key)) ||
        (rc = prepare(kv, "BEGIN", &kv->st_begin)) || (rc = prepare(kv, "COMMIT", &kv->st_commit)) ||
        (rc = prepare(kv, "ROLLBACK", &kv->st_rollback)) ||
        (rc = prepare(kv, "SELECT key, sub, val FROM kv WHERE ns = ?1 ORDER BY key, sub", &kv->st_scan)))
        return rc;
    return VG_OK;
}

/* Finalizes the statements and closes the connection; NULLs are fine. */
static int db_close(vg_kv_t *kv)
{
    sqlite3_stmt **all[] = {&kv->st_put,    &kv->st_del,      &kv->st_del_key, &kv->st_begin,
                            &kv->st_commit, &kv->st_rollback, &kv->st_scan};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        sqlite3_finalize(*all[i]);
        *all[i] = NULL;
    }
    int rc = sqlite3_close(kv->db);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: close failed: %s", kv->path, sqlite3_errstr(rc));
        return map_rc(rc);
    }
    kv->db = NULL;
    return VG_OK;
}

/* ---- the store thread ------------------------------------------------------------------ */

static const void *bytes_or_empty(const void *p, size_t n)
{
    return n ? p : "";
}

/* Applies one operation inside the open transaction. */
static int apply_op(vg_kv_t *kv, const op_t *op)
{
    sqlite3_stmt *st = op->kind == OP_PUT ? kv->st_put : op->kind == OP_DEL ? kv->st_del : kv->st_del_key;
    /* A zero-length blob needs a non-NULL pointer, or SQLite binds NULL. */
    sqlite3_bind_int(st, 1, op->ns);
    sqlite3_bind_blob(st, 2, bytes_or_empty(op->data, op->klen), (int)op->klen, SQLITE_STATIC);
    if (op->kind != OP_DEL_KEY)
        sqlite3_bind_int64(st, 3, sub_to_db(op->sub));
    if (op->kind == OP_PUT)
        sqlite3_bind_blob(st, 4, bytes_or_empty(op->data + op->klen, op->vlen), (int)op->vlen, SQLITE_STATIC);
    return step_done(st);
}

/* Applies a batch in one transaction. Returns VG_OK once it is durable. */
static int apply_batch(vg_kv_t *kv, op_t *const *batch, size_t n)
{
    pthread_mutex_lock(&kv->db_mu);
    const char *what = "BEGIN";
    int rc = step_done(kv->st_begin);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        what = "a write";
        rc = apply_op(kv, batch[i]);
    }
    if (rc == SQLITE_OK) {
        what = "COMMIT";
        rc = step_done(kv->st_commit);
    }
    int code = map_rc(rc);
    if (rc != SQLITE_OK) {
        VG_ERROR("kv", "%s: %s failed, the store stops accepting writes: %s", kv->path, what, sqlite3_errmsg(kv->db));
        /* SQLite may already have rolled back (e.g. after an I/O error). */
        if (!sqlite3_get_autocommit(kv->db))
            step_done(kv->st_rollback);
    }
    pthread_mutex_unlock(&kv->db_mu);
    return code;
}

/* Disk full (SQLITE_FULL) is a pause, not a failure: the transaction was
 * rolled back, so the same batch is applied again after 10 ms, doubling up
 * to 1 s, until it commits. Nothing is reported durable meanwhile (callers
 * keep waiting: the gateway holds the PUBACKs and SUBACKs that need these
 * writes) and later writes queue behind it up to max_pending_bytes, then
 * get VG_AGAIN. Other errors end the pause as failures. A close during the
 * pause retries for KV_FULL_CLOSE_GRACE_MS more, then gives up (VG_ENOSPC).
 * Returns the batch's final status. Called on the store thread without mu. */
static int wait_for_space(vg_kv_t *kv, op_t *const *batch, size_t n)
{
    uint32_t backoff_ms = 10;
    uint64_t since = vg_clock_mono_ns();
    int status = VG_ENOSPC;
    pthread_mutex_lock(&kv->mu);
    kv->st.state = VG_KV_DISK_FULL;
    kv->st.disk_full_pauses++;
    pthread_mutex_unlock(&kv->mu);
    VG_WARN("kv", "%s: disk full; writes are paused (nothing acknowledged that needs them) and retried", kv->path);
    while (status == VG_ENOSPC) {
        pthread_mutex_lock(&kv->mu);
        uint64_t now = vg_clock_mono_ns();
        if (kv->closing && now >= kv->closing_ns + KV_FULL_CLOSE_GRACE_MS * 1000000ull) {
            pthread_mutex_unlock(&kv->mu);
            VG_ERROR("kv", "%s: closing while the disk is still full: the last writes are not stored", kv->path);
            break;
        }
        bool closing = kv->closing;
        kv->st.disk_full_retries++;
        pthread_mutex_unlock(&kv->mu);
        /* Woken early by a write posted to the empty queue or by close, as
         * before the pause: either may mean space is worth trying again. */
        if (!closing)
            (void)vg_notify_wait(&kv->wake, backoff_ms);
        else
            usleep(10000);
        if (!closing)
            backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
        status = apply_batch(kv, batch, n);
    }
    pthread_mutex_lock(&kv->mu);
    kv->st.disk_full_ms += (vg_clock_mono_ns() - since) / 1000000u;
    kv->st.state = status == VG_OK ? VG_KV_OK : VG_KV_FAILED;
    pthread_mutex_unlock(&kv->mu);
    if (status == VG_OK)
        VG_INFO("kv", "%s: space is back; writes resumed", kv->path);
    return status;
}

/* Whether close has begun (read under mu). */
static bool is_closing(vg_kv_t *kv)
{
    pthread_mutex_lock(&kv->mu);
    bool closing = kv->closing;
    pthread_mutex_unlock(&kv->mu);
    return closing;
}

static void *store_main(void *arg)
{
    vg_kv_t *kv = arg;
    pthread_setname_np(pthread_self(), "vg-store");
    for (;;) {
        void *items;
        size_t n = vg_mailbox_take(&kv->queue, &items);
        if (n == 0) {
            /* Posts happen under mu after a look at closing, so once we see
             * closing there, everything posted before it is in the queue. */
            if (is_closing(kv)) {
                n = vg_mailbox_take(&kv->queue, &items);
                if (n == 0)
                    break; /* closing, and everything queued before it is done */
            } else {
                (void)vg_notify_wait(&kv->wake, -1);
                continue;
            }
        }
        op_t **batch = items; /* ours until the next take */
        pthread_mutex_lock(&kv->mu);
        int status = kv->failed;
        pthread_mutex_unlock(&kv->mu);

        uint64_t t0 = vg_clock_mono_ns();
        if (status == VG_OK)
            status = apply_batch(kv, batch, n);
        if (status == VG_ENOSPC)
            status = wait_for_space(kv, batch, n);
        uint64_t us = (vg_clock_mono_ns() - t0) / 1000;
        uint64_t last = 0, bytes = 0, cost = 0;
        for (size_t i = 0; i < n; i++) {
            op_t *op = batch[i];
            last = op->seq;
            bytes += (uint64_t)op->klen + op->vlen;
            cost += sizeof(*op) + op->klen + op->vlen;
            vg_free(op);
        }

        pthread_mutex_lock(&kv->mu);
        kv->st.pending_ops -= n;
        kv->st.pending_bytes -= cost;
        if (status == VG_OK) {
            kv->st.durable_seq = last;
            kv->st.ops += n;
            kv->st.commits++;
            kv->st.bytes_written += bytes;
            kv->st.last_commit_us = us;
            if (us > kv->st.max_commit_us)
                kv->st.max_commit_us = us;
        } else if (kv->failed == VG_OK) {
            kv->failed = status;
            kv->st.state = VG_KV_FAILED;
        }
        pthread_cond_broadcast(&kv->done);
        pthread_mutex_unlock(&kv->mu);

        if (kv->on_durable)
            kv->on_durable(kv->ctx, last, status);
    }
    return NULL;
}

/* Frees what vg_kv_open set up around the database: the locks and the queue
 * (if it got that far: mu_ready), the path and kv itself. The database is
 * closed and the store thread joined (or never started) by then. Shared by
 * the failure path of vg_kv_open and by vg_kv_close. */
static void kv_free(vg_kv_t *kv)
{
    if (kv->mu_ready) {
        pthread_cond_destroy(&kv->done);
        pthread_mutex_destroy(&kv->mu);
        pthread_mutex_destroy(&kv->db_mu);
        vg_mailbox_deinit(&kv->queue);
    }
    vg_free(kv->path);
    vg_free(kv);
}

/* ---- public API ------------------------------------------------------------------------ */

int vg_kv_open(const char *path, const vg_kv_opts_t *opts, vg_kv_t **out)
{
    vg_kv_opts_t o = {0};
    if (opts)
        o = *opts;
    if (!path || !*path)
        return VG_EINVAL;
    vg_kv_t *kv = vg_calloc(KV_MEM, 1, sizeof(*kv));
    if (!kv)
        return VG_ENOMEM;
    int rc = VG_ENOMEM;
    kv->path = vg_strndup(KV_MEM, path, strlen(path));
    if (!kv->path)
        goto cleanup;
    kv->max_pending = o.max_pending_bytes ? o.max_pending_bytes : KV_DEFAULT_MAX_PENDING;
    kv->on_durable = o.on_durable;
    kv->ctx = o.ctx;

    rc = create_file(path);
    if (rc)
        goto cleanup;
    rc = db_open(kv, o.vfs);
    if (rc)
        goto cleanup;

    rc = VG_EIO;
    vg_notify_init(&kv->wake);
    if (vg_mailbox_init(&kv->queue, sizeof(op_t *), KV_MEM, &kv->wake, -1) != VG_OK)
        goto cleanup;
    if (pthread_mutex_init(&kv->db_mu, NULL) != 0) {
        vg_mailbox_deinit(&kv->queue);
        goto cleanup;
    }
    if (pthread_mutex_init(&kv->mu, NULL) != 0) {
        pthread_mutex_destroy(&kv->db_mu);
        vg_mailbox_deinit(&kv->queue);
        goto cleanup;
    }
    pthread_cond_init(&kv->done, NULL);
    kv->mu_ready = true;
    if (pthread_create(&kv->thread, NULL, store_main, kv) != 0) {
        VG_ERROR("kv", "%s: cannot start the store thread", path);
        goto cleanup;
    }
    kv->thread_started = true;
    *out = kv;
    return VG_OK;

cleanup:
    if (kv->db)
        db_close(kv);
    kv_free(kv);
    return rc;
}

int vg_kv_close(vg_kv_t *kv)
{
    if (!kv)
        return VG_OK;
    pthread_mutex_lock(&kv->mu);
    kv->closing = true;
    kv->closing_ns = vg_clock_mono_ns();
    pthread_mutex_unlock(&kv->mu);
    vg_notify_post(&kv->wake);
    pthread_join(kv->thread, NULL);

    int rc = kv->failed;
    int crc = db_close(kv);
    if (rc == VG_OK)
        rc = crc;
    kv_free(kv);
    return rc;
}

/* Copies one operation into the queue. */
static int enqueue(vg_kv_t *kv, uint8_t kind, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val,
                   size_t vlen, uint64_t *seq)
{
    if (klen > kv->max_len || vlen > kv->max_len || klen > UINT32_MAX || vlen > UINT32_MAX)
        return VG_ETOOBIG;
    size_t cost = sizeof(op_t) + klen + vlen;
    if (cost > kv->max_pending)
        return VG_ETOOBIG;
    /* Copy before locking: values can be large, and other callers wait on mu. */
    op_t *op = vg_malloc(KV_MEM, cost);
    if (!op)
        return VG_ENOMEM;
    op->sub = sub;
    op->klen = (uint32_t)klen;
    op->vlen = (uint32_t)vlen;
    op->kind = kind;
    op->ns = ns;
    if (klen)
        memcpy(op->data, key, klen);
    if (vlen)
        memcpy(op->data + klen, val, vlen);

    int rc = VG_OK;
    pthread_mutex_lock(&kv->mu);
    if (kv->closing) {
        rc = VG_ECLOSED;
    } else if (kv->failed) {
        rc = VG_EIO;
    } else if (kv->st.pending_bytes + cost > kv->max_pending) {
        kv->st.rejected++;
        rc = VG_AGAIN;
    } else {
        op->seq = kv->st.last_seq + 1;
        /* Posted under mu, so that queue order is sequence order; the post
         * wakes the store thread only if the queue was empty. */
        rc = vg_mailbox_post(&kv->queue, &op, 1);
        if (rc == VG_OK) {
            kv->st.last_seq = op->seq;
            if (seq)
                *seq = op->seq;
            kv->st.pending_ops++;
            kv->st.pending_bytes += cost;
            op = NULL;
        }
    }
    pthread_mutex_unlock(&kv->mu);
    vg_free(op);
    return rc;
}

int vg_kv_put(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen,
              uint64_t *seq)
{
    return enqueue(kv, OP_PUT, ns, key, klen, sub, val, vlen, seq);
}

int vg_kv_del(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t sub, uint64_t *seq)
{
    return enqueue(kv, OP_DEL, ns, key, klen, sub, NULL, 0, seq);
}

int vg_kv_del_key(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t *seq)
{
    return enqueue(kv, OP_DEL_KEY, ns, key, klen, 0, NULL, 0, seq);
}

int vg_kv_sync(vg_kv_t *kv, uint64_t seq)
{
    pthread_mutex_lock(&kv->mu);
    int rc;
    if (seq > kv->st.last_seq) {
        rc = VG_EINVAL;
    } else {
        while (kv->st.durable_seq < seq && !kv->failed)
            pthread_cond_wait(&kv->done, &kv->mu);
        rc = kv->st.durable_seq >= seq ? VG_OK : kv->failed;
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

int vg_kv_scan(vg_kv_t *kv, uint8_t ns, vg_kv_scan_fn fn, void *ctx)
{
    sqlite3_stmt *st = kv->st_scan;
    int rc = VG_OK, src;
    pthread_mutex_lock(&kv->db_mu);
    sqlite3_bind_int(st, 1, ns);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_BLOB || sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 2) != SQLITE_BLOB) {
            VG_ERROR("kv", "%s: a record of namespace %u has the wrong column types", kv->path, ns);
            rc = VG_ECORRUPT;
            goto cleanup;
        }
        /* A zero-length blob reads as NULL; callers get a valid pointer. */
        const void *key = sqlite3_column_blob(st, 0);
        size_t klen = (size_t)sqlite3_column_bytes(st, 0);
        uint64_t sub = sub_from_db(sqlite3_column_int64(st, 1));
        const void *val = sqlite3_column_blob(st, 2);
        size_t vlen = (size_t)sqlite3_column_bytes(st, 2);
        rc = fn(ctx, key ? key : "", klen, sub, val ? val : "", vlen);
        if (rc)
            goto cleanup;
    }
    if (src != SQLITE_DONE) {
        VG_ERROR("kv", "%s: scan of namespace %u failed: %s", kv->path, ns, sqlite3_errmsg(kv->db));
        rc = map_rc(src);
    }

cleanup:
    sqlite3_reset(st);
    pthread_mutex_unlock(&kv->db_mu);
    return rc;
}

void vg_kv_stats(vg_kv_t *kv, vg_kv_stats_t *out)
{
    pthread_mutex_lock(&kv->mu);
    *out = kv->st;
    out->failed = kv->failed;
    pthread_mutex_unlock(&kv->mu);
}
