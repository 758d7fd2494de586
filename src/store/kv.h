/* kv.h — a durable key-value store on SQLite with asynchronous group commit.
 *
 * Owns: one SQLite database file (schema in kv.c), the queue of writes not
 * yet committed, and the store thread that commits them. Does not own: what
 * the records mean. The gateway keeps MQTT sessions, queued messages and
 * retained messages here so that they survive a restart; this module knows
 * nothing of MQTT.
 *
 * A record is (ns, key, sub) -> value: ns is a small namespace number chosen
 * by the caller, key any bytes (possibly empty), sub a 64-bit number that
 * orders several records under one key (a session's queued messages by
 * sequence number, say; 0 when unused), value any bytes.
 *
 * Writes never touch the disk on the caller's thread: put, del and del_key
 * copy the operation into a queue and return its sequence number at once
 * (they are called from latency-critical I/O threads). The store thread
 * takes everything queued, applies it in one transaction (WAL journal,
 * synchronous=FULL, so a committed batch survives power loss) and then calls
 * on_durable. Operations are applied in sequence-number order, so a put
 * followed by a del of the same record leaves it absent. A full disk
 * (SQLITE_FULL) is a pause, not a failure: the batch is rolled back and
 * applied again with backoff until space returns, nothing is reported
 * durable meanwhile, later writes queue behind it (then VG_AGAIN at
 * max_pending_bytes), and stats.state says VG_KV_DISK_FULL. If a commit fails,
 * the store is marked failed, on_durable reports the error for that batch
 * and every later one, and every later write returns VG_EIO. The caller must
 * treat operations after the last durable sequence number as not stored; a
 * restart may find all or none of a failed batch (the disk may have kept
 * what it was given before the fsync failed), never part of it.
 *
 * Thread-safe: every function may be called from any thread, except that
 * close must be the last call and on_durable must not call sync or close. */
#ifndef VG_STORE_KV_H
#define VG_STORE_KV_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_kv vg_kv_t;

/* Called on the store thread once per batch, in increasing seq order, with
 * the batch's last sequence number. status VG_OK: every operation up to seq
 * is durable. Negative: the store has failed, and the operations after the
 * previous call's seq up to this seq were not made durable (see above).
 * Must be quick; may call put/del (they do not block), must not call
 * vg_kv_sync or vg_kv_close. */
typedef void (*vg_kv_durable_fn)(void *ctx, uint64_t seq, int status);

typedef struct {
    size_t max_pending_bytes;    /* queued, uncommitted bytes at most (op overhead included); 0 = 64 MiB */
    vg_kv_durable_fn on_durable; /* may be NULL */
    void *ctx;                   /* passed to on_durable */
    const char *vfs;             /* SQLite VFS name; NULL = the default. Set by tests to inject I/O failures. */
} vg_kv_opts_t;

/* Opens or creates the store at path (the file is created with mode 0600,
 * its parent directories as needed), checks its schema version and starts
 * the store thread. opts may be NULL (defaults). On success *out is owned by
 * the caller and released with vg_kv_close. Another process (or another
 * vg_kv_t) holding the same file open makes the open fail: the connection
 * keeps an exclusive lock for its whole life.
 * Returns VG_OK; VG_ECORRUPT if the file is not an SQLite database or is
 * damaged; VG_EPROTO if it is a database but not a vigil kv store, or one
 * with a schema version this build does not know (it is never rewritten);
 * VG_EIO for other failures (permissions, locked by another process, disk);
 * VG_ENOMEM. Every failure is also logged with its reason. */
int vg_kv_open(const char *path, const vg_kv_opts_t *opts, vg_kv_t **out);

/* Commits everything queued, stops the store thread, closes the database and
 * frees kv. Returns VG_OK, or the error the store failed with (queued
 * writes were then dropped). NULL is accepted (VG_OK). */
int vg_kv_close(vg_kv_t *kv);

/* Queue a write. The bytes are copied; the caller keeps its buffers. *seq
 * (may be NULL) gets the operation's sequence number: 1, 2, 3, ... in the
 * order the calls took effect, across all threads.
 *   put:     insert or replace (ns, key, sub) -> val
 *   del:     remove (ns, key, sub) if present
 *   del_key: remove every (ns, key, *) (e.g. all queued messages of a session)
 * Return VG_OK; VG_AGAIN if max_pending_bytes are already queued (nothing
 * queued; counted in stats.rejected; retry after on_durable or drop);
 * VG_ETOOBIG for an operation larger than max_pending_bytes or than SQLite
 * can store (it could never be queued); VG_EIO once the store has failed;
 * VG_ECLOSED once close has begun; VG_ENOMEM. */
int vg_kv_put(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen,
              uint64_t *seq);
int vg_kv_del(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t sub, uint64_t *seq);
int vg_kv_del_key(vg_kv_t *kv, uint8_t ns, const void *key, size_t klen, uint64_t *seq);

/* Blocks until every operation up to seq is durable. Returns VG_OK, the
 * failure code if the store failed before that, or VG_EINVAL for a seq not
 * yet handed out. seq 0 returns VG_OK (or the failure) at once. */
int vg_kv_sync(vg_kv_t *kv, uint64_t seq);

/* Called once per record by vg_kv_scan; key and val are valid only during
 * the call (never NULL, even when empty). Return 0 to go on, any other value
 * to stop the scan (vg_kv_scan then returns that value). */
typedef int (*vg_kv_scan_fn)(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen);

/* Reads every committed record of namespace ns in (key, sub) order: keys by
 * bytes (memcmp, a prefix first), subs as unsigned numbers. Queued writes are
 * not visible, so call it at startup before writing. Runs on the caller's
 * thread and holds up commits while it runs. Returns VG_OK, fn's non-zero
 * return, VG_ECORRUPT (damaged file or a record this build did not write)
 * or VG_EIO. */
int vg_kv_scan(vg_kv_t *kv, uint8_t ns, vg_kv_scan_fn fn, void *ctx);

typedef struct {
    uint64_t ops;            /* operations committed */
    uint64_t commits;        /* batches (transactions) committed */
    uint64_t bytes_written;  /* key + value bytes of committed operations */
    uint64_t pending_ops;    /* queued, not yet committed */
    uint64_t pending_bytes;  /* same, as counted for max_pending_bytes */
    uint64_t rejected;       /* writes refused with VG_AGAIN */
    uint64_t last_seq;       /* highest sequence number handed out */
    uint64_t durable_seq;    /* highest sequence number committed */
    uint64_t last_commit_us; /* duration of the last batch: BEGIN to durable COMMIT */
    uint64_t max_commit_us;
    int failed; /* 0, or the error the store failed with (then writes return VG_EIO) */
    int state;  /* VG_KV_OK, VG_KV_DISK_FULL (a batch waits for space), VG_KV_FAILED */
    uint64_t disk_full_pauses;  /* times a commit found the disk full */
    uint64_t disk_full_retries; /* commits tried again while it was */
    uint64_t disk_full_ms;      /* time spent paused (finished pauses) */
} vg_kv_stats_t;

enum { VG_KV_OK = 0, VG_KV_DISK_FULL = 1, VG_KV_FAILED = 2 };

void vg_kv_stats(vg_kv_t *kv, vg_kv_stats_t *out);

#endif
