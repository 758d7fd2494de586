/* audit.h — the security audit log: one JSON object per line in
 * <dir>/audit.log, rotated by size, written by its own thread.
 *
 * Owns: the log files, the writer thread, a bounded queue of formatted
 * lines (a core/mailbox) and the counters. Does not own: deciding what is
 * worth auditing (the gateway, registry and CLI call vg_audit_log), the
 * diagnostic log (core/diag), secrets: the record has no field for a
 * password, token or key, so none can be written by mistake.
 *
 * Why a thread: the I/O loops report authentication failures and denials
 * while they serve connections and must never wait for a disk. vg_audit_log
 * formats the line on the caller's thread (a few hundred bytes, no I/O, no
 * allocation once the queue has grown), copies it into the mailbox and
 * returns; the writer takes everything queued once per wake-up (STYLE.md 16),
 * writes it with one write(2) per batch and optionally fdatasyncs it. When
 * the queue holds queue_bytes of lines (a disk that stalls, a flood of
 * failures) further lines are dropped and counted, never waited for.
 *
 * Why lines travel as 256-byte chunks: mailbox items have one fixed size,
 * and audit lines range from 150 bytes to VG_AUDIT_LINE_MAX; a line's
 * chunks are posted in one call, so they stay together and in order, and a
 * queued line costs its length rounded up to a chunk, not the maximum.
 *
 * Threads: vg_audit_log and vg_audit_stats from any thread; open and close
 * from one owner while no other thread calls in (close joins the writer
 * after it has written everything queued). */
#ifndef VG_SEC_AUDIT_H
#define VG_SEC_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* Field limits: longer values are cut (at a UTF-8 character boundary) and
 * the line carries "truncated":true; so are values whose escaped form
 * passes 300 bytes, so that every field given always appears. A line is at
 * most VG_AUDIT_LINE_MAX bytes with its newline. */
#define VG_AUDIT_LINE_MAX 2048
#define VG_AUDIT_FIELD_MAX 256 /* bytes of one field before escaping */

typedef enum {
    VG_AUDIT_AUTH_SUCCESS = 0, /* "auth_success": a CONNECT authenticated */
    VG_AUDIT_AUTH_FAILURE,     /* "auth_failure": bad credentials, unknown device, bad certificate */
    VG_AUDIT_POLICY_DENY,      /* "policy_deny": an action refused by policy (action, resource) */
    VG_AUDIT_RATE_LIMIT,       /* "rate_limit": refused by a rate or connection limit */
    VG_AUDIT_DISCONNECT,       /* "disconnect": a connection closed for a security reason */
    VG_AUDIT_REGISTRY,         /* "registry_change": a device, credential or certificate changed */
    VG_AUDIT_POLICY_LOAD,      /* "policy_load": the policy documents were (re)loaded */
    VG_AUDIT__EVENTS
} vg_audit_event_t;

/* One record. Every string is a slice (ptr, len) or, with len
 * VG_AUDIT_CSTR, a NUL-terminated string; a NULL ptr omits the field. The
 * strings are copied (escaped) before vg_audit_log returns. */
#define VG_AUDIT_CSTR ((size_t)-1)
typedef struct {
    const char *ptr;
    size_t len;
} vg_audit_str_t;

typedef struct {
    vg_audit_event_t event;
    vg_audit_str_t client_id; /* "client_id" */
    vg_audit_str_t username;  /* "username": the name, never the password */
    vg_audit_str_t source;    /* "source": "1.2.3.4:5678", "[::1]:5678" (vg_audit_format_addr) */
    vg_audit_str_t action;    /* "action": "mqtt:Publish", ... */
    vg_audit_str_t resource;  /* "resource": the topic, filter or client id acted on */
    vg_audit_str_t reason;    /* "reason": why, in words ("bad password", "statement 2 of policy x") */
} vg_audit_rec_t;

typedef struct {
    const char *dir;    /* where audit.log lives; created if missing */
    uint64_t max_bytes; /* rotate before a line would take audit.log past this (0: 16 MiB) */
    unsigned keep;      /* rotated files kept: audit.log.1 (newest) .. audit.log.<keep> (0: none) */
    size_t queue_bytes; /* bytes of lines queued before new ones are dropped (0: 1 MiB) */
    bool fsync;         /* fdatasync after each batch */
} vg_audit_config_t;

typedef struct {
    uint64_t written;   /* lines written */
    uint64_t dropped;   /* lines refused: queue full or log closed */
    uint64_t failed;    /* lines lost to a failed write */
    uint64_t rotations; /* files rotated */
    uint64_t bytes;     /* bytes written */
} vg_audit_stats_t;

typedef struct vg_audit vg_audit_t;

/* Opens (creates, appends to) <dir>/audit.log with mode 0600 and starts
 * the writer thread. *out is the caller's, closed with vg_audit_close.
 * Returns VG_OK, VG_EINVAL (no dir), VG_EIO (the directory or file could
 * not be made, or the thread not started; logged), VG_ENOMEM. */
int vg_audit_open(const vg_audit_config_t *cfg, vg_audit_t **out);

/* Writes everything queued, stops the writer and frees a. NULL accepted. */
void vg_audit_close(vg_audit_t *a);

/* Formats r as one line stamped with the current UTC time and queues it.
 * Returns VG_OK; VG_AGAIN if it was dropped because the queue is full,
 * VG_ECLOSED after close began, VG_ENOMEM if the queue could not grow (all
 * three counted in dropped); VG_EINVAL for an unknown event. Never blocks on I/O; any thread. a NULL: nothing (VG_OK),
 * so callers need not test whether auditing is configured. */
int vg_audit_log(vg_audit_t *a, const vg_audit_rec_t *r);

/* Formats r as vg_audit_log would at time now_ms (epoch milliseconds) into
 * out[0..cap), newline included, NUL-terminated. Returns the length, or
 * VG_EINVAL / VG_ENOSPC (cap < VG_AUDIT_LINE_MAX may not do). For tests and
 * for tools that print what would be logged. */
int vg_audit_format(const vg_audit_rec_t *r, int64_t now_ms, char *out, size_t cap);

/* "auth_failure", ...; "?" if out of range. */
const char *vg_audit_event_name(vg_audit_event_t e);

/* A snapshot of the counters (relaxed reads; each exact, not all at one
 * instant). */
void vg_audit_stats(const vg_audit_t *a, vg_audit_stats_t *out);

/* Writes an IPv4 or IPv6 address and port as "1.2.3.4:5678" or
 * "[::1]:5678" into out (cap >= 64 always suffices); other families give
 * "unknown". Returns out. */
char *vg_audit_format_addr(const struct sockaddr *sa, char *out, size_t cap);

#endif
