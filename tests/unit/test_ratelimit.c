/* test_ratelimit.c — sec/ratelimit: SipHash's test vector, bucket
 * arithmetic (burst, refill, slow rates, the wait it reports, 32-bit time
 * wrap), connections per source (rate, maximum, IPv6 prefixes, mapped IPv4),
 * failure delays (growth, cap, drain, the larger of the two keys, success
 * forgets the client id), eviction (idle first, never a source with open
 * connections, table full), publishes, the shared mode under threads, and
 * the cost of the calls (printed as "# bench" lines). */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "sec/ratelimit.h"
#include "vt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_siphash(void)
{
    /* The paper's vector: key 00..0f, message 00..0e. */
    uint64_t key[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    unsigned char msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (unsigned char)i;
    VT_CHECK(vg_rl_siphash(key, msg, 15) == 0xa129ca6149be45e5ull);
    VT_CHECK(vg_rl_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ull);
}

static void test_bucket(void)
{
    vg_rl_rate_t r = vg_rl_rate(10, 5); /* 10/s, burst 5 */
    vg_rl_bucket_t b;
    VT_EQ_INT(sizeof b, 8);
    vg_rl_bucket_init(&b, &r, 1000);
    for (int i = 0; i < 5; i++)
        VT_EQ_INT(vg_rl_bucket_take(&b, &r, 1000), 0);
    VT_EQ_INT(vg_rl_bucket_take(&b, &r, 1000), 100); /* one token every 100 ms */
    VT_EQ_INT(vg_rl_bucket_take(&b, &r, 1050), 50);
    VT_EQ_INT(vg_rl_bucket_take(&b, &r, 1100), 0);
    VT_CHECK(vg_rl_bucket_take(&b, &r, 1100) > 0);
    /* A long pause refills to the burst, not beyond. */
    int got = 0;
    while (vg_rl_bucket_take(&b, &r, 100000) == 0)
        got++;
    VT_EQ_INT(got, 5);

    /* Slow rates: one every 10 s, taken in 1 ms steps, loses no time. */
    vg_rl_rate_t slow = vg_rl_rate(0.1, 1);
    vg_rl_bucket_init(&b, &slow, 0);
    VT_EQ_INT(vg_rl_bucket_take(&b, &slow, 0), 0);
    VT_EQ_INT(vg_rl_bucket_take(&b, &slow, 0), 10000);
    int taken = 0;
    for (uint64_t t = 1; t <= 30000; t++)
        taken += vg_rl_bucket_take(&b, &slow, t) == 0;
    VT_EQ_INT(taken, 3);

    /* The 32-bit clock wraps harmlessly. */
    uint64_t base = 0xfffffff0ull;
    vg_rl_bucket_init(&b, &r, base);
    for (int i = 0; i < 5; i++)
        VT_EQ_INT(vg_rl_bucket_take(&b, &r, base), 0);
    VT_EQ_INT(vg_rl_bucket_take(&b, &r, base + 100), 0); /* across the wrap */

    /* Unlimited. */
    vg_rl_rate_t none = vg_rl_rate(0, 0);
    VT_EQ_INT(none.rate_mps, 0);
    for (int i = 0; i < 1000; i++)
        VT_EQ_INT(vg_rl_bucket_take(&b, &none, 0), 0);
}

static vg_rl_t *mk(vg_rl_config_t c)
{
    vg_rl_t *rl = NULL;
    c.seed[0] = 1;
    c.seed[1] = 2;
    if (vg_rl_new(&c, &rl) != VG_OK)
        return NULL;
    return rl;
}

static void test_connections(void)
{
    vg_rl_t *rl = mk((vg_rl_config_t){.conn_per_sec = 1, .conn_burst = 3, .max_conns_per_source = 2});
    VT_REQUIRE(rl);
    struct sockaddr_in a = v4("10.0.0.1", 1), a2 = v4("10.0.0.1", 2), b = v4("10.0.0.2", 1);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(a2), 0), VG_RL_OK); /* the port is not part of the key */
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_CONN_MAX);
    vg_rl_disconnect(rl, SA(a), 0);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_OK);
    vg_rl_disconnect(rl, SA(a), 0);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_CONN_RATE); /* burst of 3 spent */
    VT_EQ_INT(vg_rl_connect(rl, SA(b), 0), VG_RL_OK);        /* another source */
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 1000), VG_RL_OK);
    vg_rl_stats_t st;
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.conn_max_refused, 1);
    VT_EQ_INT(st.conn_rate_refused, 1);
    VT_CHECK(strcmp(vg_rl_verdict_name(VG_RL_CONN_MAX), "connections_per_source") == 0);
    vg_rl_free(rl);

    /* IPv6 by /64, mapped IPv4 as IPv4. */
    rl = mk((vg_rl_config_t){.max_conns_per_source = 1});
    VT_REQUIRE(rl);
    struct sockaddr_in6 x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff::9"), z = v6("2001:db8:1:3::1");
    VT_EQ_INT(vg_rl_connect(rl, SA(x), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(y), 0), VG_RL_CONN_MAX);
    VT_EQ_INT(vg_rl_connect(rl, SA(z), 0), VG_RL_OK);
    struct sockaddr_in6 m = v6("::ffff:10.0.0.1");
    struct sockaddr_in c = v4("10.0.0.1", 9);
    VT_EQ_INT(vg_rl_connect(rl, SA(c), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(m), 0), VG_RL_CONN_MAX);
    vg_rl_free(rl);
    rl = mk((vg_rl_config_t){.max_conns_per_source = 1, .v6_prefix = 128});
    VT_REQUIRE(rl);
    VT_EQ_INT(vg_rl_connect(rl, SA(x), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(y), 0), VG_RL_OK);
    vg_rl_free(rl);

    /* No connection limits: no table work, always ok. */
    rl = mk((vg_rl_config_t){0});
    VT_REQUIRE(rl);
    for (int i = 0; i < 100; i++)
        VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_OK);
    vg_rl_free(rl);

    vg_rl_config_t bad = {.v6_prefix = 129};
    VT_EQ_INT(vg_rl_new(&bad, &rl), VG_EINVAL);
}

static void test_auth_delays(void)
{
    /* 3 failures free, then 100 ms doubling up to 1 s; one forgiven per 10 s. */
    vg_rl_t *rl =
        mk((vg_rl_config_t){.fail_per_sec = 0.1, .fail_burst = 3, .fail_delay_ms = 100, .fail_delay_max_ms = 1000});
    VT_REQUIRE(rl);
    struct sockaddr_in a = v4("10.0.0.1", 1), b = v4("10.0.0.2", 1);
    uint32_t want[] = {0, 0, 0, 100, 200, 400, 800, 1000, 1000};
    for (int i = 0; i < 9; i++)
        VT_EQ_INT(vg_rl_auth_failed(rl, SA(a), "dev-1", 5, 0), want[i]);
    /* Another source guessing the same client id is delayed by the id. */
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(b), "dev-1", 5, 0), 1000);
    /* A fresh id from a fresh source: free. */
    struct sockaddr_in c = v4("10.0.0.3", 1);
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(c), "dev-2", 5, 0), 0);
    /* The source alone is remembered too (no client id). */
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(a), NULL, 0, 0), 1000);

    /* Draining: after 60 s, six failures are forgiven. a's score was 10. */
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(a), NULL, 0, 60000), 200); /* 10 - 6 + 1 = 5: two past the burst */

    /* Success forgets the client id, not the source. */
    vg_rl_auth_succeeded(rl, "dev-1", 5, 60000);
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(c), "dev-1", 5, 60000), 0);
    VT_EQ_INT(vg_rl_auth_failed(rl, SA(a), "dev-1", 5, 60000), 400);
    vg_rl_stats_t st;
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.auth_failures, 15);
    VT_EQ_INT(st.auth_delayed, 10);
    vg_rl_free(rl);

    /* fail_delay_ms 0: never delayed. */
    rl = mk((vg_rl_config_t){.fail_burst = 1});
    VT_REQUIRE(rl);
    for (int i = 0; i < 10; i++)
        VT_EQ_INT(vg_rl_auth_failed(rl, SA(a), "x", 1, 0), 0);
    vg_rl_free(rl);
}

static void test_eviction(void)
{
    /* One group of 4 slots: every key shares it. */
    vg_rl_t *rl = mk((vg_rl_config_t){.conn_per_sec = 1, .conn_burst = 1, .max_conns_per_source = 10, .entries = 4});
    VT_REQUIRE(rl);
    struct sockaddr_in s[6];
    char ip[32];
    for (int i = 0; i < 6; i++) {
        snprintf(ip, sizeof ip, "10.0.1.%d", i + 1);
        s[i] = v4(ip, 1);
    }
    /* Four sources with open connections fill it: a fifth is refused. */
    for (int i = 0; i < 4; i++)
        VT_EQ_INT(vg_rl_connect(rl, SA(s[i]), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(s[4]), 0), VG_RL_TABLE_FULL);
    /* s[0] and s[1] close; their buckets are still empty at 500 ms (not
     * idle), so a new source takes the older one's slot, counted. */
    vg_rl_disconnect(rl, SA(s[0]), 0);
    vg_rl_disconnect(rl, SA(s[1]), 0);
    VT_EQ_INT(vg_rl_connect(rl, SA(s[4]), 500), VG_RL_OK);
    vg_rl_stats_t st;
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.evictions, 1);
    /* s[0] was forgotten: it starts with a full bucket (lenient), and takes
     * s[1]'s slot. */
    VT_EQ_INT(vg_rl_connect(rl, SA(s[0]), 500), VG_RL_OK);
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.evictions, 2);
    /* Closed and refilled by 5 s: idle slots are taken first, uncounted. */
    vg_rl_disconnect(rl, SA(s[0]), 5000);
    vg_rl_disconnect(rl, SA(s[4]), 5000);
    VT_EQ_INT(vg_rl_connect(rl, SA(s[5]), 5000), VG_RL_OK);
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.evictions, 2);
    VT_EQ_INT(st.table_full_refused, 1);
    /* The sources that stayed open were never touched. */
    VT_EQ_INT(vg_rl_connect(rl, SA(s[2]), 5000), VG_RL_OK);
    vg_rl_free(rl);
}

static void test_publish(void)
{
    vg_rl_t *rl = mk((vg_rl_config_t){.pub_per_sec = 100, .pub_burst = 10});
    VT_REQUIRE(rl);
    vg_rl_bucket_t b;
    vg_rl_publish_init(rl, &b, 0);
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += vg_rl_publish(rl, &b, 0) == 0;
    VT_EQ_INT(ok, 10);
    VT_EQ_INT(vg_rl_publish(rl, &b, 5), 5);
    VT_EQ_INT(vg_rl_publish(rl, &b, 10), 0);
    vg_rl_stats_t st;
    vg_rl_stats(rl, &st);
    VT_EQ_INT(st.publish_refused, 11);
    vg_rl_free(rl);
}

typedef struct {
    vg_rl_t *rl;
    int id, ok;
} th_t;

static void *th_main(void *arg)
{
    th_t *t = arg;
    struct sockaddr_in a = v4("10.9.9.9", 1);
    for (int i = 0; i < 20000; i++) {
        if (vg_rl_connect(t->rl, SA(a), 0) == VG_RL_OK) {
            t->ok++;
            vg_rl_disconnect(t->rl, SA(a), 0);
        }
        char id[16];
        snprintf(id, sizeof id, "t%d-%d", t->id, i % 50);
        vg_rl_auth_failed(t->rl, SA(a), id, strlen(id), (uint64_t)i);
    }
    return NULL;
}

static void test_shared(void)
{
    /* Four threads on one shared limiter: every admitted connect is
     * matched by a disconnect, so the count stays exact (never above the
     * maximum, never lost) and afterwards exactly two more fit. */
    vg_rl_t *rl = mk((vg_rl_config_t){.max_conns_per_source = 2,
                                      .fail_burst = 5,
                                      .fail_delay_ms = 1,
                                      .fail_per_sec = 1000,
                                      .entries = 64,
                                      .shared = true});
    VT_REQUIRE(rl);
    th_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (th_t){.rl = rl, .id = i};
        VT_REQUIRE(pthread_create(&th[i], NULL, th_main, &t[i]) == 0);
    }
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += t[i].ok;
    }
    vg_rl_stats_t st;
    vg_rl_stats(rl, &st);
    VT_EQ_INT(ok + (int)st.conn_max_refused, 80000);
    VT_EQ_INT(st.auth_failures, 80000);
    /* All closed: two more fit, a third does not. */
    struct sockaddr_in a = v4("10.9.9.9", 1);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_OK);
    VT_EQ_INT(vg_rl_connect(rl, SA(a), 0), VG_RL_CONN_MAX);
    vg_rl_free(rl);
}

static void test_bench(void)
{
    vg_rl_t *rl = mk((vg_rl_config_t){.conn_per_sec = 1e6,
                                      .conn_burst = 1e6,
                                      .max_conns_per_source = 1000000,
                                      .fail_per_sec = 1,
                                      .fail_burst = 5,
                                      .fail_delay_ms = 100,
                                      .pub_per_sec = 1e6,
                                      .pub_burst = 1e6});
    VT_REQUIRE(rl);
    const long n = 1000000;
    struct sockaddr_in a[64];
    char ip[32];
    for (int i = 0; i < 64; i++) {
        snprintf(ip, sizeof ip, "10.1.%d.%d", i / 8, i % 8);
        a[i] = v4(ip, 1);
    }
    uint64_t t0 = vg_clock_mono_ns();
    for (long i = 0; i < n; i++) {
        vg_rl_connect(rl, SA(a[i & 63]), (uint64_t)i);
        vg_rl_disconnect(rl, SA(a[i & 63]), (uint64_t)i);
    }
    fprintf(stdout, "# bench: %.1f ns per connect + disconnect (64 sources)\n",
            (double)(vg_clock_mono_ns() - t0) / (double)n);
    t0 = vg_clock_mono_ns();
    for (long i = 0; i < n; i++)
        vg_rl_auth_failed(rl, SA(a[i & 63]), "dev-000123", 10, (uint64_t)i);
    fprintf(stdout, "# bench: %.1f ns per failed authentication\n", (double)(vg_clock_mono_ns() - t0) / (double)n);
    vg_rl_bucket_t b;
    vg_rl_publish_init(rl, &b, 0);
    volatile uint32_t sink = 0;
    t0 = vg_clock_mono_ns();
    for (long i = 0; i < n; i++)
        sink += vg_rl_publish(rl, &b, (uint64_t)i / 1000);
    fprintf(stdout, "# bench: %.1f ns per publish bucket take\n", (double)(vg_clock_mono_ns() - t0) / (double)n);
    vg_rl_free(rl);
}

int main(void)
{
    VT_RUN(test_siphash);
    VT_RUN(test_bucket);
    VT_RUN(test_connections);
    VT_RUN(test_auth_delays);
    VT_RUN(test_eviction);
    VT_RUN(test_publish);
    VT_RUN(test_shared);
    VT_RUN(test_bench);
    return VT_DONE();
}
