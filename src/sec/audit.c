/* audit.c — see audit.h. Owns the audit line format, the writer thread and
 * the rotation of the files.
 *
 * On disk: <dir>/audit.log is UTF-8 text, one JSON object per line, each
 * line ended by '\n', appended in the order the lines were queued:
 *
 *   {"ts":"2026-03-01T12:00:00.000Z","event":"auth_failure","client_id":"dev-1",
 *    "username":"dev-1","source":"10.0.0.7:51544","reason":"bad password"}
 *
 * (one line in the file). Members in this order, the absent ones omitted:
 * ts (UTC, milliseconds, when vg_audit_log was called), event (one of the
 * names in audit.h), client_id, username, source, action, resource, reason,
 * and "truncated":true when a value was cut to VG_AUDIT_FIELD_MAX bytes, or
 * further so that its escaped form takes at most 300 bytes (control
 * characters escape to six each), which keeps every field in the line. Strings are escaped by core/json's escaper;
 * bytes that are not UTF-8 are written as '?', so every line is valid JSON.
 *
 * Rotation: before a line would take audit.log past max_bytes, the writer
 * renames audit.log.<keep-1> to audit.log.<keep>, ..., audit.log to
 * audit.log.1 (the oldest, audit.log.<keep>, is replaced and so removed),
 * opens a new audit.log and fsyncs the directory. With keep 0 audit.log is
 * removed instead. A line longer than max_bytes still goes into a fresh
 * file whole. A crash between renames leaves a gap in the numbering, never
 * a lost current file. Lines are whole: a write that fails (disk full)
 * loses its batch, counted in failed, and the file may end in a partial
 * line; a reader skips a last line without '\n'. */
#include "sec/audit.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "core/mailbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "audit"

/* One chunk of a line in the mailbox: a line of n bytes is ceil(n/CHUNK)
 * chunks posted together, the last one with end set. */
#define CHUNK 252
typedef struct {
    uint16_t len;
    bool end;
    char b[CHUNK];
} chunk_t;

/* The writer's output buffer: lines are gathered here and written with
 * one write(2). */
#define OUT_BUF (64 * 1024)

struct vg_audit {
    vg_audit_config_t cfg;
    char *dir;
    char path[4096];
    vg_mailbox_t mb;
    vg_notify_t wake;
    pthread_t thread;
    atomic_size_t queued; /* chunks posted, not yet written */
    size_t max_chunks;
    atomic_bool closing;
    int fd;
    uint64_t size; /* of audit.log: writer thread only */
    bool failing;  /* in a streak of failed writes: writer thread only */
    char line[VG_AUDIT_LINE_MAX];
    size_t line_len;   /* the line being reassembled */
    char out[OUT_BUF]; /* the writer's batch */
    size_t out_len, out_lines;
    atomic_uint_fast64_t written, dropped, failed, rotations, bytes;
};

static const char *const event_names[VG_AUDIT__EVENTS] = {
    "auth_success", "auth_failure", "policy_deny", "rate_limit", "disconnect", "registry_change", "policy_load",
};

const char *vg_audit_event_name(vg_audit_event_t e)
{
    return (unsigned)e < VG_AUDIT__EVENTS ? event_names[e] : "?";
}

/* Length of the valid UTF-8 character at s[0..n), or 0 if invalid. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Copies at most max bytes of s[0..n) into tmp as valid UTF-8 (invalid
 * bytes become '?', a character that does not fit whole is left out).
 * Returns the bytes written; *cut is set if anything was left out. */
static size_t clean(const char *s, size_t n, size_t max, char *tmp, bool *cut)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k = utf8_char((const unsigned char *)s + i, n - i);
        size_t w = k ? k : 1;
        if (o + w > max) {
            *cut = true;
            break;
        }
        if (k)
            memcpy(tmp + o, s + i, k);
        else
            tmp[o] = '?';
        o += w;
        i += k ? k : 1;
    }
    return o;
}

/* The most one escaped value may take, so that all six fields fit in a
 * line however they escape: 60 bytes of ts and event, six times this plus
 * 15 bytes of name and quotes, 20 of tail, under VG_AUDIT_LINE_MAX. (The
 * first version let an early field of control characters use the whole
 * line and dropped the later ones; fuzz_audit found it.) */
#define FIELD_ESCAPED_MAX 300
_Static_assert(60 + 6 * (FIELD_ESCAPED_MAX + 15) + 20 <= VG_AUDIT_LINE_MAX, "six fields fit in a line");

/* Appends ,"name":"value" to out[*o..cap - reserve), cutting the value
 * until its escaped form fits in FIELD_ESCAPED_MAX and the line. */
static void put_field(char *out, size_t *o, size_t cap, size_t reserve, const char *name, vg_audit_str_t v, bool *cut)
{
    char tmp[VG_AUDIT_FIELD_MAX];
    if (!v.ptr)
        return;
    size_t n = v.len == VG_AUDIT_CSTR ? strlen(v.ptr) : v.len;
    size_t head = strlen(name) + 6; /* ,"name":"" */
    if (*o + head + reserve >= cap) {
        *cut = true;
        return;
    }
    size_t room = cap - reserve - *o - head, max = VG_AUDIT_FIELD_MAX;
    if (room > FIELD_ESCAPED_MAX)
        room = FIELD_ESCAPED_MAX;
    for (;;) {
        size_t m = clean(v.ptr, n, max, tmp, cut);
        int e = vg_json_escape(tmp, m, out + *o + head - 1, room + 1);
        if (e >= 0 && (size_t)e <= room) {
            memcpy(out + *o, ",\"", 2);
            memcpy(out + *o + 2, name, head - 6);
            memcpy(out + *o + head - 4, "\":\"", 3);
            /* the value was escaped in place at *o + head - 1 */
            out[*o + head - 1 + (size_t)e] = '"';
            *o += head + (size_t)e;
            return;
        }
        /* Control characters escape to six bytes each: halve and retry. */
        *cut = true;
        max = m / 2;
    }
}

int vg_audit_format(const vg_audit_rec_t *r, int64_t now_ms, char *out, size_t cap)
{
    static const char tail_cut[] = ",\"truncated\":true}\n";
    const size_t reserve = sizeof tail_cut; /* the tail plus the NUL */
    char ts[32];
    bool cut = false;
    if (!r || (unsigned)r->event >= VG_AUDIT__EVENTS)
        return VG_EINVAL;
    vg_clock_format_iso(now_ms, ts, sizeof ts);
    int n = snprintf(out, cap, "{\"ts\":\"%s\",\"event\":\"%s\"", ts, event_names[r->event]);
    if (n < 0 || (size_t)n + reserve > cap)
        return VG_ENOSPC;
    size_t o = (size_t)n;
    put_field(out, &o, cap, reserve, "client_id", r->client_id, &cut);
    put_field(out, &o, cap, reserve, "username", r->username, &cut);
    put_field(out, &o, cap, reserve, "source", r->source, &cut);
    put_field(out, &o, cap, reserve, "action", r->action, &cut);
    put_field(out, &o, cap, reserve, "resource", r->resource, &cut);
    put_field(out, &o, cap, reserve, "reason", r->reason, &cut);
    const char *tail = cut ? tail_cut : "}\n";
    size_t tl = strlen(tail);
    memcpy(out + o, tail, tl + 1);
    return (int)(o + tl);
}

char *vg_audit_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
    return out;
}

int vg_audit_log(vg_audit_t *a, const vg_audit_rec_t *r)
{
    char line[VG_AUDIT_LINE_MAX];
    chunk_t ch[(VG_AUDIT_LINE_MAX + CHUNK - 1) / CHUNK];
    if (!a)
        return VG_OK;
    if (atomic_load_explicit(&a->closing, memory_order_acquire)) {
        atomic_fetch_add_explicit(&a->dropped, 1, memory_order_relaxed);
        return VG_ECLOSED;
    }
    int n = vg_audit_format(r, vg_clock_wall_ms(), line, sizeof line);
    if (n < 0)
        return n;
    size_t k = 0;
    for (size_t off = 0; off < (size_t)n; off += CHUNK, k++) {
        size_t len = (size_t)n - off < CHUNK ? (size_t)n - off : CHUNK;
        ch[k].len = (uint16_t)len;
        ch[k].end = off + len == (size_t)n;
        memcpy(ch[k].b, line + off, len);
    }
    /* Reserve room first, so concurrent posters cannot overshoot the bound
     * together; give it back if the line does not fit. */
    size_t before = atomic_fetch_add_explicit(&a->queued, k, memory_order_relaxed);
    if (before + k > a->max_chunks) {
        atomic_fetch_sub_explicit(&a->queued, k, memory_order_relaxed);
        atomic_fetch_add_explicit(&a->dropped, 1, memory_order_relaxed);
        return VG_AGAIN;
    }
    if (vg_mailbox_post(&a->mb, ch, k) != VG_OK) {
        atomic_fetch_sub_explicit(&a->queued, k, memory_order_relaxed);
        atomic_fetch_add_explicit(&a->dropped, 1, memory_order_relaxed);
        return VG_ENOMEM;
    }
    return VG_OK;
}

static int open_log(vg_audit_t *a)
{
    struct stat st;
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        VG_ERROR(MOD, "open %s: %s", a->path, strerror(errno));
        return VG_EIO;
    }
    a->size = fstat(a->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return VG_OK;
}

/* audit.log -> audit.log.1 -> ... -> audit.log.<keep>, then a new file. */
static void rotate(vg_audit_t *a)
{
    char from[4200], to[4200];
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    if (a->cfg.keep == 0) {
        if (unlink(a->path) != 0 && errno != ENOENT)
            VG_WARN(MOD, "remove %s: %s", a->path, strerror(errno));
    } else {
        for (unsigned i = a->cfg.keep; i > 1; i--) {
            snprintf(from, sizeof from, "%s.%u", a->path, i - 1);
            snprintf(to, sizeof to, "%s.%u", a->path, i);
            if (rename(from, to) != 0 && errno != ENOENT)
                VG_WARN(MOD, "rename %s: %s", from, strerror(errno));
        }
        snprintf(to, sizeof to, "%s.1", a->path);
        if (rename(a->path, to) != 0 && errno != ENOENT)
            VG_WARN(MOD, "rename %s: %s", a->path, strerror(errno));
    }
    if (open_log(a) == VG_OK)
        vg_fs_fsync_dir(a->dir);
    atomic_fetch_add_explicit(&a->rotations, 1, memory_order_relaxed);
}

/* Writes the batch; a failure loses it (counted) and is logged once per
 * streak, so a full disk does not flood the diagnostic log. */
static void flush(vg_audit_t *a)
{
    size_t done = 0;
    if (!a->out_len)
        return;
    while (a->fd >= 0 && done < a->out_len) {
        ssize_t k = write(a->fd, a->out + done, a->out_len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (!a->failing)
                VG_WARN(MOD, "write %s: %s (audit lines are being lost)", a->path, k < 0 ? strerror(errno) : "short");
            a->failing = true;
            break;
        }
        done += (size_t)k;
    }
    a->size += done;
    atomic_fetch_add_explicit(&a->bytes, done, memory_order_relaxed);
    if (done == a->out_len) {
        if (a->failing)
            VG_INFO(MOD, "writing %s again", a->path);
        a->failing = false;
        atomic_fetch_add_explicit(&a->written, a->out_lines, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&a->failed, a->out_lines, memory_order_relaxed);
    }
    if (a->fd < 0 && open_log(a) == VG_OK)
        VG_INFO(MOD, "%s reopened", a->path);
    a->out_len = a->out_lines = 0;
}

/* Adds the reassembled line to the batch, rotating first if it would take
 * the file past max_bytes. */
static void add_line(vg_audit_t *a)
{
    if (a->size + a->out_len + a->line_len > a->cfg.max_bytes && a->size + a->out_len > 0) {
        flush(a);
        rotate(a);
    }
    if (a->out_len + a->line_len > OUT_BUF)
        flush(a);
    memcpy(a->out + a->out_len, a->line, a->line_len);
    a->out_len += a->line_len;
    a->out_lines++;
    a->line_len = 0;
}

static void *writer_main(void *arg)
{
    vg_audit_t *a = arg;
    pthread_setname_np(pthread_self(), "vg-audit");
    for (;;) {
        bool stop = atomic_load_explicit(&a->closing, memory_order_acquire);
        void *items;
        size_t n = vg_mailbox_take(&a->mb, &items);
        const chunk_t *ch = items;
        for (size_t i = 0; i < n; i++) {
            /* A line's chunks arrive together; the bound is a safeguard. */
            if (a->line_len + ch[i].len <= sizeof a->line) {
                memcpy(a->line + a->line_len, ch[i].b, ch[i].len);
                a->line_len += ch[i].len;
            }
            if (ch[i].end)
                add_line(a);
        }
        flush(a);
        if (n && a->cfg.fsync && a->fd >= 0 && fdatasync(a->fd) != 0 && !a->failing)
            VG_WARN(MOD, "fdatasync %s: %s", a->path, strerror(errno));
        atomic_fetch_sub_explicit(&a->queued, n, memory_order_relaxed);
        /* closing was read before the take: everything posted before close
         * set it has now been written. */
        if (stop)
            break;
        if (!n)
            vg_notify_wait(&a->wake, -1);
    }
    return NULL;
}

int vg_audit_open(const vg_audit_config_t *cfg, vg_audit_t **out)
{
    vg_audit_t *a = NULL;
    int rc;
    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->dir[0])
        return VG_EINVAL;
    if (!(a = vg_calloc(VG_MEM_SEC, 1, sizeof *a)))
        return VG_ENOMEM;
    a->cfg = *cfg;
    a->fd = -1;
    if (!a->cfg.max_bytes)
        a->cfg.max_bytes = 16u << 20;
    if (!a->cfg.queue_bytes)
        a->cfg.queue_bytes = 1u << 20;
    a->max_chunks = a->cfg.queue_bytes / CHUNK;
    if (a->max_chunks < (VG_AUDIT_LINE_MAX + CHUNK - 1) / CHUNK)
        a->max_chunks = (VG_AUDIT_LINE_MAX + CHUNK - 1) / CHUNK; /* room for one line at least */
    vg_notify_init(&a->wake);
    if (!(a->dir = vg_strndup(VG_MEM_SEC, cfg->dir, strlen(cfg->dir)))) {
        vg_free(a);
        return VG_ENOMEM;
    }
    a->cfg.dir = a->dir;
    if (snprintf(a->path, sizeof a->path, "%s/audit.log", a->dir) >= (int)sizeof a->path) {
        rc = VG_EINVAL;
        goto fail;
    }
    if ((rc = vg_fs_mkdir_p(a->dir)) != VG_OK || (rc = open_log(a)) != VG_OK) {
        rc = rc == VG_ENOMEM ? rc : VG_EIO;
        goto fail;
    }
    if ((rc = vg_mailbox_init(&a->mb, sizeof(chunk_t), VG_MEM_SEC, &a->wake, -1)) != VG_OK)
        goto fail;
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        VG_ERROR(MOD, "cannot start the audit writer thread");
        vg_mailbox_deinit(&a->mb);
        rc = VG_EIO;
        goto fail;
    }
    *out = a;
    return VG_OK;
fail:
    if (a->fd >= 0)
        close(a->fd);
    vg_free(a->dir);
    vg_free(a);
    return rc;
}

void vg_audit_close(vg_audit_t *a)
{
    if (!a)
        return;
    atomic_store_explicit(&a->closing, true, memory_order_release);
    vg_notify_post(&a->wake);
    pthread_join(a->thread, NULL);
    vg_mailbox_deinit(&a->mb);
    if (a->fd >= 0)
        close(a->fd);
    vg_free(a->dir);
    vg_free(a);
}

void vg_audit_stats(const vg_audit_t *a, vg_audit_stats_t *out)
{
    vg_audit_t *m = (vg_audit_t *)a; /* atomics are read, not changed */
    memset(out, 0, sizeof *out);
    if (!a)
        return;
    out->written = atomic_load_explicit(&m->written, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&m->dropped, memory_order_relaxed);
    out->failed = atomic_load_explicit(&m->failed, memory_order_relaxed);
    out->rotations = atomic_load_explicit(&m->rotations, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&m->bytes, memory_order_relaxed);
}
