/* test_audit.c — sec/audit: the line format (order, escaping, invalid
 * UTF-8, truncation, always valid JSON), lines written in order with mode
 * 0600, rotation by size with keep N and keep 0, the bounded queue under
 * concurrent posters (written + dropped = posted, never blocking), a write
 * that fails counted, addresses, and a NULL log. */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"
#include "sec/audit.h"
#include "vt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

#define CS(s) ((vg_audit_str_t){s, VG_AUDIT_CSTR})

static void test_format(void)
{
    char out[VG_AUDIT_LINE_MAX];
    vg_audit_rec_t r = {.event = VG_AUDIT_AUTH_FAILURE,
                        .client_id = CS("dev-1"),
                        .source = CS("1.2.3.4:5678"),
                        .reason = CS("bad password")};
    int n = vg_audit_format(&r, 1772366400000LL, out, sizeof out);
    const char *want = "{\"ts\":\"2026-03-01T12:00:00.000Z\",\"event\":\"auth_failure\",\"client_id\":\"dev-1\","
                       "\"source\":\"1.2.3.4:5678\",\"reason\":\"bad password\"}\n";
    VT_CHECK(n == (int)strlen(want) && strcmp(out, want) == 0);
    if (strcmp(out, want) != 0)
        fprintf(stdout, "  got %s", out);

    /* Escaping, slices, every field in order. */
    vg_audit_rec_t e = {.event = VG_AUDIT_POLICY_DENY,
                        .client_id = {"a\"b\\c\nd", 7},
                        .username = {"alice", 3},
                        .source = CS("[::1]:1"),
                        .action = CS("mqtt:Publish"),
                        .resource = CS("x/y"),
                        .reason = CS("\x01")};
    n = vg_audit_format(&e, 0, out, sizeof out);
    VT_CHECK(n > 0 && strcmp(out, "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"event\":\"policy_deny\",\"client_id\":"
                                  "\"a\\\"b\\\\c\\nd\",\"username\":\"ali\",\"source\":\"[::1]:1\",\"action\":"
                                  "\"mqtt:Publish\",\"resource\":\"x/y\",\"reason\":\"\\u0001\"}\n") == 0);

    /* Invalid UTF-8 becomes '?'; valid multi-byte stays. */
    vg_audit_rec_t u = {
        .event = VG_AUDIT_AUTH_SUCCESS, .client_id = CS("caf\xc3\xa9\xff\xc3"), .reason = CS("\xed\xa0\x80")};
    n = vg_audit_format(&u, 0, out, sizeof out);
    VT_CHECK(n > 0 && strstr(out, "\"client_id\":\"caf\xc3\xa9??\"") && strstr(out, "\"reason\":\"???\""));
    VT_CHECK(strstr(out, "truncated") == NULL);

    /* Long values are cut at a character boundary and flagged. */
    char big[1000];
    for (size_t i = 0; i + 1 < sizeof big; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof big - 1] = '\0';
    static char ctl[3000];
    memset(ctl, '\x02', sizeof ctl - 1);
    vg_audit_rec_t l = {.event = VG_AUDIT_RATE_LIMIT,
                        .client_id = CS(big),
                        .username = CS(ctl),
                        .source = CS(ctl),
                        .resource = CS(ctl),
                        .reason = CS(ctl)};
    n = vg_audit_format(&l, 0, out, sizeof out);
    VT_CHECK(n > 0 && n < VG_AUDIT_LINE_MAX && out[n - 1] == '\n');
    VT_CHECK(strstr(out, ",\"truncated\":true}\n") != NULL);
    /* Every line is one valid JSON object. */
    vg_json_member_t m[10];
    size_t cnt;
    VT_EQ_INT(vg_json_object(out, (size_t)n, 4, m, 10, &cnt), VG_OK);
    const vg_json_member_t *cid = vg_json_find(m, cnt, "client_id");
    VT_REQUIRE(cid);
    VT_EQ_INT(cid->raw_len, VG_AUDIT_FIELD_MAX); /* 128 whole two-byte characters */

    /* Errors. */
    vg_audit_rec_t bad = {.event = VG_AUDIT__EVENTS};
    VT_EQ_INT(vg_audit_format(&bad, 0, out, sizeof out), VG_EINVAL);
    VT_EQ_INT(vg_audit_format(&r, 0, out, 20), VG_ENOSPC);
    VT_CHECK(strcmp(vg_audit_event_name(VG_AUDIT_REGISTRY), "registry_change") == 0);
    VT_CHECK(strcmp(vg_audit_event_name(VG_AUDIT__EVENTS), "?") == 0);
    VT_EQ_INT(vg_audit_log(NULL, &r), VG_OK);
}

static size_t count_lines(const char *path, bool check_json)
{
    FILE *f = fopen(path, "r");
    char buf[VG_AUDIT_LINE_MAX + 2];
    size_t n = 0;
    if (!f)
        return 0;
    while (fgets(buf, sizeof buf, f)) {
        size_t len = strlen(buf);
        if (check_json) {
            size_t c;
            VT_CHECK(len > 0 && buf[len - 1] == '\n');
            VT_CHECK(vg_json_object(buf, len, 4, NULL, 0, &c) == VG_OK);
        }
        n++;
    }
    fclose(f);
    return n;
}

static void test_write_and_order(void)
{
    char *dir = vt_tmpdir_new("audit");
    VT_REQUIRE(dir);
    char sub[512], path[600];
    snprintf(sub, sizeof sub, "%s/new/dir", dir);
    vg_audit_config_t cfg = {.dir = sub, .fsync = true};
    vg_audit_t *a = NULL;
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    for (int i = 0; i < 100; i++) {
        char reason[32];
        snprintf(reason, sizeof reason, "n=%d", i);
        vg_audit_rec_t r = {.event = VG_AUDIT_AUTH_FAILURE, .reason = CS(reason)};
        VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    }
    vg_audit_close(a);
    snprintf(path, sizeof path, "%s/audit.log", sub);
    struct stat st;
    VT_REQUIRE(stat(path, &st) == 0);
    VT_EQ_INT(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    VT_REQUIRE(f);
    char line[512];
    int i = 0;
    while (fgets(line, sizeof line, f)) {
        char want[32];
        snprintf(want, sizeof want, "\"reason\":\"n=%d\"}", i++);
        VT_CHECK(strstr(line, want) != NULL);
    }
    fclose(f);
    VT_EQ_INT(i, 100);

    /* Reopening appends. */
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    vg_audit_rec_t r = {.event = VG_AUDIT_POLICY_LOAD};
    VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    vg_audit_close(a);
    VT_EQ_INT(count_lines(path, true), 101);

    vg_audit_config_t none = {0};
    VT_EQ_INT(vg_audit_open(&none, &a), VG_EINVAL);
    vt_tmpdir_free(dir);
}

static void test_rotation(void)
{
    char *dir = vt_tmpdir_new("audit-rot");
    VT_REQUIRE(dir);
    vg_audit_config_t cfg = {.dir = dir, .max_bytes = 1000, .keep = 2};
    vg_audit_t *a = NULL;
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    vg_audit_rec_t r = {.event = VG_AUDIT_AUTH_FAILURE, .client_id = CS("dev-000001"), .reason = CS("bad password")};
    char line[VG_AUDIT_LINE_MAX];
    int len = vg_audit_format(&r, 0, line, sizeof line);
    const int n = 60;
    for (int i = 0; i < n; i++)
        VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    vg_audit_close(a);
    /* Lines per file: as many as fit in 1000 bytes. */
    int per = 1000 / len;
    char path[600];
    size_t total = 0;
    for (int k = 0; k <= 3; k++) {
        if (k == 0)
            snprintf(path, sizeof path, "%s/audit.log", dir);
        else
            snprintf(path, sizeof path, "%s/audit.log.%d", dir, k);
        struct stat st;
        bool exists = stat(path, &st) == 0;
        VT_CHECK(exists == (k <= 2));
        if (!exists)
            continue;
        VT_CHECK(st.st_size <= 1000);
        size_t lines = count_lines(path, true);
        if (k > 0)
            VT_EQ_INT(lines, per);
        total += lines;
    }
    VT_EQ_INT(total, (size_t)(n % per ? n % per : per) + 2 * (size_t)per);

    /* keep 0: the full file is removed. */
    vt_tmpdir_free(dir);
    dir = vt_tmpdir_new("audit-rot0");
    VT_REQUIRE(dir);
    cfg = (vg_audit_config_t){.dir = dir, .max_bytes = 1000, .keep = 0};
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    for (int i = 0; i < n; i++)
        VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    vg_audit_close(a);
    snprintf(path, sizeof path, "%s/audit.log.1", dir);
    VT_CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/audit.log", dir);
    VT_EQ_INT(count_lines(path, true), (size_t)(n % per ? n % per : per));
    vt_tmpdir_free(dir);
}

typedef struct {
    vg_audit_t *a;
    int n, ok, dropped;
    uint64_t ns;
} poster_t;

static void *poster(void *arg)
{
    poster_t *p = arg;
    vg_audit_rec_t r = {.event = VG_AUDIT_RATE_LIMIT, .source = CS("10.0.0.1:1"), .reason = CS("connect rate")};
    uint64_t t0 = vg_clock_mono_ns();
    for (int i = 0; i < p->n; i++) {
        int rc = vg_audit_log(p->a, &r);
        if (rc == VG_OK)
            p->ok++;
        else if (rc == VG_AGAIN)
            p->dropped++;
    }
    p->ns = vg_clock_mono_ns() - t0;
    return NULL;
}

static void test_bounded_queue(void)
{
    char *dir = vt_tmpdir_new("audit-q");
    VT_REQUIRE(dir);
    /* The smallest queue (one line's worth) and an fdatasync per batch: the
     * writer cannot keep up with four posters, so lines are dropped. */
    vg_audit_config_t cfg = {.dir = dir, .queue_bytes = 1, .fsync = true};
    vg_audit_t *a = NULL;
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    poster_t p[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (poster_t){.a = a, .n = 5000};
        VT_REQUIRE(pthread_create(&th[i], NULL, poster, &p[i]) == 0);
    }
    int ok = 0, dropped = 0;
    uint64_t ns = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += p[i].ok;
        dropped += p[i].dropped;
        ns += p[i].ns;
    }
    vg_audit_stats_t st;
    vg_audit_stats(a, &st);
    VT_EQ_INT(st.dropped, dropped);
    vg_audit_close(a); /* writes what was queued */
    char path[600];
    snprintf(path, sizeof path, "%s/audit.log", dir);
    size_t lines = count_lines(path, false);
    fprintf(stdout, "# 20000 posts from 4 threads: %d queued, %d dropped, %.0f ns per post\n", ok, dropped,
            (double)ns / 20000);
    VT_EQ_INT(ok + dropped, 20000);
    VT_CHECK(dropped > 0);
    VT_EQ_INT(lines, (size_t)ok);
    vt_tmpdir_free(dir);
}

static void test_counters_and_failure(void)
{
    char *dir = vt_tmpdir_new("audit-full");
    VT_REQUIRE(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/audit.log", dir);
    VT_REQUIRE(symlink("/dev/full", path) == 0); /* every write fails with ENOSPC */
    vg_audit_config_t cfg = {.dir = dir};
    vg_audit_t *a = NULL;
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    vg_audit_rec_t r = {.event = VG_AUDIT_AUTH_FAILURE, .reason = CS("x")};
    for (int i = 0; i < 10; i++)
        VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    /* Wait for the writer (it reports through the counters). */
    vg_audit_stats_t st;
    for (int i = 0; i < 2000; i++) {
        vg_audit_stats(a, &st);
        if (st.failed + st.written == 10)
            break;
        usleep(1000);
    }
    VT_EQ_INT(st.failed, 10);
    VT_EQ_INT(st.written, 0);
    VT_EQ_INT(st.dropped, 0);
    vg_audit_close(a);
    vt_tmpdir_free(dir);

    dir = vt_tmpdir_new("audit-count");
    VT_REQUIRE(dir);
    cfg = (vg_audit_config_t){.dir = dir, .max_bytes = 300, .keep = 1};
    VT_REQUIRE(vg_audit_open(&cfg, &a) == VG_OK);
    for (int i = 0; i < 10; i++)
        VT_EQ_INT(vg_audit_log(a, &r), VG_OK);
    for (int i = 0; i < 2000; i++) {
        vg_audit_stats(a, &st);
        if (st.written == 10)
            break;
        usleep(1000);
    }
    VT_EQ_INT(st.written, 10);
    VT_CHECK(st.rotations >= 2 && st.bytes > 0 && st.failed == 0); /* ~70-byte lines, 4 per file */
    vg_audit_close(a);
    vg_audit_stats(NULL, &st);
    VT_EQ_INT(st.written, 0);
    vt_tmpdir_free(dir);
}

static void test_addr(void)
{
    char out[64];
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(5678)};
    inet_pton(AF_INET, "1.2.3.4", &in.sin_addr);
    VT_CHECK(strcmp(vg_audit_format_addr((struct sockaddr *)&in, out, sizeof out), "1.2.3.4:5678") == 0);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    VT_CHECK(strcmp(vg_audit_format_addr((struct sockaddr *)&in6, out, sizeof out), "[::1]:1") == 0);
    VT_CHECK(strcmp(vg_audit_format_addr(NULL, out, sizeof out), "unknown") == 0);
}

int main(void)
{
    VT_RUN(test_format);
    VT_RUN(test_write_and_order);
    VT_RUN(test_rotation);
    VT_RUN(test_bounded_queue);
    VT_RUN(test_counters_and_failure);
    VT_RUN(test_addr);
    return VT_DONE();
}
