/* streamcmd.c — `vigil stream ls|tail`: inspect the streams on disk. Opens
 * them read-only, so it works while a server is writing them. */
#include "app/streamcmd.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/event.h"
#include "core/json.h"
#include "mqtt/codec.h"
#include "stream/log.h"
#include "stream/shardmap.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: vigil stream ls [--data-dir DIR]\n"
                 "       vigil stream tail NAME [--data-dir DIR] [--shard N] [--from trim|latest|SEQ] [--follow] "
                 "[--json]\n\n"
                 "ls    lists each stream with its retention and its shards: hash-key range, first sequence number\n"
                 "      still stored (the trim horizon, which retention moves up), last, record count and the age\n"
                 "      of the oldest record\n"
                 "tail  prints records, shard by shard in sequence order (--json: one JSON object per line)\n");
}

typedef struct {
    const char *data_dir;
    int rc;
} ls_ctx_t;

/* A retention setting as the flags take it: the largest unit that divides it. */
static void fmt_duration(char *out, size_t cap, uint64_t ms)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } u[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        if (ms % u[i].mul == 0) {
            snprintf(out, cap, "%llu%s", (unsigned long long)(ms / u[i].mul), u[i].unit);
            return;
        }
}

/* An age for people: 3.2s, 14m, 5.5h, 3.0d. */
static void fmt_age(char *out, size_t cap, int64_t ms)
{
    double s = ms < 0 ? 0 : ms / 1000.0;
    if (s < 120)
        snprintf(out, cap, "%.1fs", s);
    else if (s < 7200)
        snprintf(out, cap, "%.0fm", s / 60);
    else if (s < 172800)
        snprintf(out, cap, "%.1fh", s / 3600);
    else
        snprintf(out, cap, "%.1fd", s / 86400);
}

static void ls_one(void *ctx, const char *name)
{
    ls_ctx_t *c = ctx;
    vg_log_t *log = NULL;
    if (vg_log_open_readonly(c->data_dir, name, &log) != VG_OK) {
        fprintf(stderr, "vigil stream ls: cannot open stream %s\n", name);
        c->rc = 1;
        return;
    }
    uint32_t n = vg_log_shard_count(log);
    uint64_t rms, rbytes;
    char age[32] = "unknown", size[48] = "unknown";
    if (vg_log_retention(log, &rms, &rbytes)) {
        if (rms)
            fmt_duration(age, sizeof age, rms);
        else
            snprintf(age, sizeof age, "forever");
        if (rbytes)
            snprintf(size, sizeof size, "%llu bytes", (unsigned long long)rbytes);
        else
            snprintf(size, sizeof size, "none");
    }
    printf("%s  (%u shard%s; retention %s, size cap %s)\n", name, n, n == 1 ? "" : "s", age, size);
    printf("  %-5s %-40s %-40s %12s %12s %12s %8s\n", "shard", "starting hash key", "ending hash key", "first seq",
           "last seq", "records", "oldest");
    for (uint32_t i = 0; i < n; i++) {
        vg_hashkey_t s, e;
        char sb[48], eb[48];
        vg_log_shard_range(log, i, &s, &e);
        vg_shardmap_format(s, sb, sizeof sb);
        vg_shardmap_format(e, eb, sizeof eb);
        uint64_t first = vg_log_first_seq(log, i), last = vg_log_durable_seq(log, i);
        uint64_t count = last && first ? last - first + 1 : 0;
        /* A shard that retention emptied: nothing below last + 1 is stored. */
        if (!first && last)
            first = last + 1;
        int64_t oldest = vg_log_oldest_ms(log, i);
        char ob[32] = "-";
        if (oldest != INT64_MIN && count)
            fmt_age(ob, sizeof ob, vg_clock_wall_ms() - oldest);
        printf("  %-5u %-40s %-40s %12llu %12llu %12llu %8s\n", i, sb, eb, (unsigned long long)first,
               (unsigned long long)last, (unsigned long long)count, ob);
    }
    vg_log_close(log);
}

static void print_record(const char *name, const vg_record_t *r, bool json, char **scratch, size_t *scap)
{
    if (!json) {
        printf("%s shard=%u seq=%llu arrival=%lld key=%.*s %.*s\n", name, r->shard, (unsigned long long)r->seq,
               (long long)r->arrival_ms, (int)r->key_len, (const char *)r->key, (int)r->value_len,
               (const char *)r->value);
        return;
    }
    size_t need = 6 * (r->key_len + r->value_len) + 256;
    if (need > *scap) {
        char *n = vg_realloc(VG_MEM_CORE, *scratch, need);
        if (!n)
            return;
        *scratch = n;
        *scap = need;
    }
    char *buf = *scratch;
    int k = vg_json_escape((const char *)r->key, r->key_len, buf, *scap);
    printf("{\"stream\":\"%s\",\"shard\":%u,\"seq\":%llu,\"arrivalMs\":%lld,\"key\":\"%.*s\",\"data\":", name, r->shard,
           (unsigned long long)r->seq, (long long)r->arrival_ms, k > 0 ? k : 0, buf);
    if (vg_json_validate((const char *)r->value, r->value_len, 64) == VG_OK) {
        fwrite(r->value, 1, r->value_len, stdout);
    } else {
        k = vg_json_escape((const char *)r->value, r->value_len, buf, *scap);
        printf("\"%.*s\"", k > 0 ? k : 0, buf);
    }
    /* Telemetry meta: parsed fields, then MQTT 5 user properties (ingest.h). */
    if (r->meta_len > VG_EVENT_META_LEN && strcmp(name, "telemetry") == 0) {
        vg_mqtt_props_t pr = {0};
        pr.user_props.p = r->meta + VG_EVENT_META_LEN;
        pr.user_props.len = r->meta_len - VG_EVENT_META_LEN;
        vg_bytes_t key, val;
        size_t pos = 0;
        char kb[6 * 1024 + 8], vb[6 * 1024 + 8];
        fputs(",\"userProperties\":[", stdout);
        for (bool first = true; vg_mqtt_user_props_next(&pr, &pos, &key, &val); first = false) {
            int kk = vg_json_escape((const char *)key.p, key.len, kb, sizeof kb);
            int vk = vg_json_escape((const char *)val.p, val.len, vb, sizeof vb);
            printf("%s[\"%.*s\",\"%.*s\"]", first ? "" : ",", kk > 0 ? kk : 0, kb, vk > 0 ? vk : 0, vb);
        }
        fputs("]", stdout);
    }
    fputs("}\n", stdout);
}

static atomic_bool g_interrupted; /* set by SIGINT during --follow only */

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&g_interrupted, true);
}

/* Parses a decimal unsigned number, the whole string; false on anything else
 * (so a typo is an error, not a silent start from the beginning). */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static int tail(const char *data_dir, const char *name, int shard, const char *from, bool follow, bool json)
{
    vg_log_t *log = NULL;
    int rc = vg_log_open_readonly(data_dir, name, &log);
    if (rc) {
        fprintf(stderr, "vigil stream tail: no stream '%s' under %s\n", name, data_dir);
        return 1;
    }
    uint64_t start = 0;
    if (strcmp(from, "trim") == 0) {
        start = 0;
    } else if (strcmp(from, "latest") == 0) {
        start = UINT64_MAX;
    } else if (!parse_u64(from, &start)) {
        fprintf(stderr, "vigil stream tail: --from takes trim, latest or a sequence number, not '%s'\n", from);
        vg_log_close(log);
        return 2;
    }
    uint32_t n = vg_log_shard_count(log);
    if (shard >= (int)n) {
        fprintf(stderr, "vigil stream tail: stream %s has %u shards\n", name, n);
        vg_log_close(log);
        return 2;
    }
    uint32_t lo = shard >= 0 ? (uint32_t)shard : 0, hi = shard >= 0 ? (uint32_t)shard + 1 : n;
    vg_log_reader_t *readers[VG_SHARDS_MAX] = {0};
    char *scratch = NULL;
    size_t scap = 0;
    int exit_code = 0;
    for (uint32_t i = lo; i < hi; i++) {
        if (vg_log_reader_open(log, i, start, &readers[i]) != VG_OK) {
            fprintf(stderr, "vigil stream tail: cannot read shard %u\n", i);
            exit_code = 1;
            goto cleanup;
        }
    }
    if (follow)
        signal(SIGINT, on_sigint);
    for (;;) {
        bool any = false;
        for (uint32_t i = lo; i < hi; i++) {
            vg_record_t r;
            while ((rc = vg_log_reader_next(readers[i], &r)) == VG_OK) {
                print_record(name, &r, json, &scratch, &scap);
                any = true;
            }
            if (rc != VG_AGAIN) {
                fprintf(stderr, "vigil stream tail: shard %u: %s\n", i, vg_strerror(rc));
                exit_code = 1;
            }
        }
        fflush(stdout);
        if (!follow || atomic_load(&g_interrupted))
            break;
        if (!any)
            usleep(100000);
    }
cleanup:
    for (uint32_t i = lo; i < hi; i++)
        vg_log_reader_close(readers[i]);
    vg_free(scratch);
    vg_log_close(log);
    return exit_code;
}

int vg_streamcmd_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *data_dir = "./data", *name = NULL, *from = "trim";
    int shard = -1;
    bool follow = false, json = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--data-dir") == 0 && i + 1 < argc)
            data_dir = argv[++i];
        else if (strcmp(a, "--shard") == 0 && i + 1 < argc) {
            uint64_t v;
            if (!parse_u64(argv[++i], &v) || v >= VG_SHARDS_MAX) {
                fprintf(stderr, "vigil stream tail: --shard takes a shard number, not '%s'\n", argv[i]);
                return 2;
            }
            shard = (int)v;
        }
        else if (strcmp(a, "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0)
            follow = true;
        else if (strcmp(a, "--json") == 0)
            json = true;
        else if (a[0] != '-' && !name)
            name = a;
        else {
            fprintf(stderr, "vigil stream: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(argv[1], "ls") == 0) {
        ls_ctx_t c = {data_dir, 0};
        if (vg_log_list(data_dir, ls_one, &c) != VG_OK) {
            fprintf(stderr, "vigil stream ls: cannot list %s/stream\n", data_dir);
            return 1;
        }
        return c.rc;
    }
    if (strcmp(argv[1], "tail") == 0) {
        if (!name) {
            usage(stderr);
            return 2;
        }
        return tail(data_dir, name, shard, from, follow, json);
    }
    usage(stderr);
    return 2;
}
