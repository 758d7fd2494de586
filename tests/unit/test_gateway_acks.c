/* Unit tests of the gateway's inbound path (gateway/publish.c, worker.c):
 * acknowledgements leave in PUBLISH order whatever order their completions
 * (hooks, store durability) arrive in; a completion on the owning worker's
 * thread is deferred (not re-entrant, no inbox, no wake-up); a hook's
 * refusal is never acknowledged nor routed; MQTT and HTTP share the path. */
#include "gwt.h"

#include <stdlib.h>

typedef struct {
    uint64_t tokens[16];
    char client[16][16];
    size_t n;
    int flushes;
} rec_t;

static int rec_hook(void *ctx, const vg_server_pub_t *p, uint64_t token)
{
    rec_t *r = ctx;
    if (p->payload_len == 6 && memcmp(p->payload, "refuse", 6) == 0)
        return VG_EIO;
    if (r->n < 16) {
        snprintf(r->client[r->n], sizeof r->client[0], "%.*s", (int)p->client_id_len, p->client_id);
        r->tokens[r->n++] = token;
    }
    return VG_OK;
}

static void rec_flush(void *ctx)
{
    ((rec_t *)ctx)->flushes++;
}

static char *state_dir; /* vt_tmpdir_new, while a server with a store runs */

static vg_server_t *server_with_hook(rec_t *rec, bool store)
{
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    vg_server_hook_t h = {.filter = "t/#", .fn = rec_hook, .flush = rec_flush, .ctx = rec};
    o.hooks = &h;
    o.nhooks = 1;
    char path[128];
    if (store) {
        state_dir = vt_tmpdir_new("gwt");
        if (!state_dir)
            return NULL;
        snprintf(path, sizeof path, "%s/gateway.db", state_dir);
        o.state_path = path;
    }
    return gwt_server(&o);
}

static void server_done(vg_server_t *s)
{
    vg_server_free(s);
    vt_tmpdir_free(state_dir);
    state_dir = NULL;
}

static ack_t *ack_of(conn_t *c, uint16_t pid)
{
    for (uint32_t i = 0; i < c->ack_count; i++) {
        ack_t *a = &c->acks[(c->ack_head + i) % c->ack_cap];
        if (a->pid == pid)
            return a;
    }
    return NULL;
}

typedef struct {
    rec_t *rec;
    size_t want;
} want_t;

static bool hooks_seen(void *arg)
{
    want_t *w = arg;
    return w->rec->n >= w->want;
}

static gwt_client_t *g_pub;
static bool middle_settled(void *arg)
{
    worker_t *w = arg;
    ack_t *a2 = ack_of(g_pub->c, 2), *a3 = ack_of(g_pub->c, 3);
    return a2 && a3 && a2->pending == 0 && a3->pending == 0 && !vg_mailbox_pending(&w->inbox);
}

/* PUBACKs 1..4 where 1 and 3 wait for a hook, 2 for the store (a retained
 * message), 4 for nothing: completions of 3 (another thread) and 2 (the
 * store thread) first release nothing; 1, completed on the worker's own
 * thread, is deferred, then all four leave in order. */
static void test_ack_order_across_hooks_and_store(void)
{
    rec_t rec = {0};
    vg_server_t *s = server_with_hook(&rec, true);
    VT_REQUIRE(s);
    worker_t *w = &s->workers[0];
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, 0);
    VT_REQUIRE(pub);
    g_pub = pub;
    gwt_publish(pub, "t/a", "one", 1, 1, false, false);
    gwt_publish(pub, "r/x", "two", 1, 2, true, false);
    gwt_publish(pub, "t/b", "three", 1, 3, false, false);
    gwt_publish(pub, "r/y", "four", 1, 4, false, false);
    want_t want = {&rec, 2};
    VT_REQUIRE(gwt_until(s, hooks_seen, &want));
    VT_EQ_INT(rec.n, 2);
    VT_CHECK(strcmp(rec.client[0], "pub") == 0);
    VT_CHECK(rec.flushes >= 1); /* the flush hook ran before the worker slept */
    VT_CHECK(rec.tokens[0] != 0 && rec.tokens[1] != 0);
    VT_EQ_INT(pub->c->ack_count, 4);

    vg_server_complete(s, rec.tokens[1], VG_OK); /* from "another thread": the inbox */
    VT_REQUIRE(gwt_until(s, middle_settled, w));
    VT_CHECK(gwt_nothing_sent(pub)); /* 1 still holds everything behind it */
    VT_EQ_INT(pub->c->ack_count, 4);

    /* On the owning worker's thread: deferred, not run inside the call,
     * and not through the inbox (no lock, no wake-up). */
    gw_worker_bind_thread(w);
    vg_server_complete(s, rec.tokens[0], VG_OK);
    gw_worker_bind_thread(NULL);
    VT_EQ_INT(w->ndeferred, 1);
    VT_CHECK(!vg_mailbox_pending(&w->inbox));
    struct pollfd efd = {.fd = w->efd, .events = POLLIN};
    VT_EQ_INT(poll(&efd, 1, 0), 0);
    VT_EQ_INT(ack_of(pub->c, 1)->pending, 1);

    for (uint16_t pid = 1; pid <= 4; pid++)
        VT_EQ_INT(gwt_expect_ack(pub, VG_MQTT_PUBACK), pid);
    VT_EQ_INT(w->ndeferred, 0);
    gwt_close(pub);
    server_done(s);
}

static bool closed_io(void *arg)
{
    vg_server_t *s = arg;
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    return st.closes[VG_CLOSE_IO] >= 1;
}

/* A completion that failed is never acknowledged: the connection closes
 * (the client sends the message again on a new one). */
static void test_failed_completion_closes(void)
{
    rec_t rec = {0};
    vg_server_t *s = server_with_hook(&rec, false);
    VT_REQUIRE(s);
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, 0);
    VT_REQUIRE(pub);
    gwt_publish(pub, "t/a", "x", 1, 9, false, false);
    want_t want = {&rec, 1};
    VT_REQUIRE(gwt_until(s, hooks_seen, &want));
    vg_server_complete(s, rec.tokens[0], VG_EIO);
    VT_REQUIRE(gwt_until(s, closed_io, s));
    VT_CHECK(gwt_nothing_sent(pub));
    gwt_close(pub);
    server_done(s);
}

/* A hook that refuses: nothing is acknowledged or routed, the publisher's
 * connection closes; QoS 0 the same. */
static void test_refusal_not_routed(void)
{
    rec_t rec = {0};
    vg_server_t *s = server_with_hook(&rec, false);
    VT_REQUIRE(s);
    gwt_client_t *sub, *pub;
    VT_REQUIRE(gwt_sub_pub(s, "sub", "t/#", 1, "pub", &sub, &pub));
    gwt_publish(pub, "t/a", "refuse", 1, 3, false, false);
    VT_REQUIRE(gwt_until(s, closed_io, s));
    VT_CHECK(gwt_nothing_sent(pub));
    VT_CHECK(gwt_nothing_sent(sub));
    VT_EQ_INT(rec.n, 0);
    GWT_CLOSE(pub, sub);
    server_done(s);
}

/* Counts the HTTP status lines received so far; true once there are n. */
typedef struct {
    gwt_client_t *cl;
    int n;
} http_wait_t;

static int http_answers(gwt_client_t *cl, const char *status)
{
    int k = 0;
    gwt_pull(cl);
    for (size_t i = 0; i + 12 <= cl->len; i++)
        if (memcmp(cl->buf + i, "HTTP/1.1 ", 9) == 0 && (!status || memcmp(cl->buf + i + 9, status, 3) == 0))
            k++;
    return k;
}

static bool http_has(void *arg)
{
    http_wait_t *h = arg;
    return http_answers(h->cl, NULL) >= h->n;
}

static void http_post(char *buf, size_t cap, const char *topic, int qos, const char *body)
{
    snprintf(buf, cap, "POST /topics/%s?qos=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", topic, qos,
             strlen(body), body);
}

/* HTTP publishes go through the same path: pipelined requests are answered
 * in order, a QoS 1 one only once its hook completed, a refused one 503
 * (and not routed); the hook sees the client id "http". */
static void test_http_same_path(void)
{
    rec_t rec = {0};
    vg_server_t *s = server_with_hook(&rec, false);
    VT_REQUIRE(s);
    gwt_client_t *sub = gwt_connected(s, 0, VG_MQTT_V311, "sub", 0, 0);
    gwt_client_t *h = gwt_client(s, 0, L_HTTP, 0);
    VT_REQUIRE(sub && h);
    VT_CHECK(gwt_subscribe(sub, "#", 0, 0, false, 1));
    char req[512];
    http_post(req, sizeof req, "t/h", 1, "{\"a\":1}");
    gwt_send(h, req, strlen(req));
    http_post(req, sizeof req, "plain", 0, "p");
    gwt_send(h, req, strlen(req));
    want_t want = {&rec, 1};
    VT_REQUIRE(gwt_until(s, hooks_seen, &want));
    VT_CHECK(strcmp(rec.client[0], "http") == 0);
    vg_mqtt_publish_t p;
    VT_CHECK(gwt_expect_publish(sub, &p) && gwt_payload_is(&p, "{\"a\":1}"));
    VT_CHECK(gwt_expect_publish(sub, &p) && gwt_payload_is(&p, "p"));
    VT_EQ_INT(http_answers(h, NULL), 0); /* the second waits behind the first */
    vg_server_complete(s, rec.tokens[0], VG_OK);
    http_wait_t hw = {h, 2};
    VT_REQUIRE(gwt_until(s, http_has, &hw));
    VT_EQ_INT(http_answers(h, "200"), 2);

    http_post(req, sizeof req, "t/h", 1, "refuse");
    gwt_send(h, req, strlen(req));
    hw.n = 3;
    VT_REQUIRE(gwt_until(s, http_has, &hw));
    VT_EQ_INT(http_answers(h, "503"), 1);
    VT_CHECK(gwt_nothing_sent(sub)); /* refused: not routed */
    GWT_CLOSE(h, sub);
    server_done(s);
}

/* A flush hook that commits at once (as the stream's leader commit does):
 * it completes every token it was given, on the worker's own thread. */
typedef struct {
    vg_server_t *s;
    uint64_t tokens[64];
    size_t n, done;
} leader_t;

static int leader_hook(void *ctx, const vg_server_pub_t *p, uint64_t token)
{
    leader_t *l = ctx;
    if (token && l->n < 64)
        l->tokens[l->n++] = token;
    return VG_OK;
}

static void leader_flush(void *ctx)
{
    leader_t *l = ctx;
    while (l->done < l->n)
        vg_server_complete(l->s, l->tokens[l->done++], VG_OK);
}

/* A connection paused on --max-inflight resumes when its acks drain, and
 * the packets it had buffered call the hook again: they are committed in
 * the same round, not left for a worker that goes to sleep. */
static void test_resumed_publishes_committed_same_round(void)
{
    leader_t l = {0};
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    o.max_inflight = 2;
    vg_server_hook_t h = {.filter = "t/#", .fn = leader_hook, .flush = leader_flush, .ctx = &l};
    o.hooks = &h;
    o.nhooks = 1;
    vg_server_t *s = gwt_server(&o);
    VT_REQUIRE(s);
    l.s = s;
    worker_t *w = &s->workers[0];
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, 0);
    VT_REQUIRE(pub);
    for (uint16_t pid = 1; pid <= 6; pid++)
        gwt_publish(pub, "t/x", "v", 1, pid, false, false);
    gw_worker_bind_thread(w);
    gw_worker_round(w, 1000); /* one round: the six are readable at once */
    gw_worker_bind_thread(NULL);
    VT_EQ_INT(l.n, 6);
    VT_CHECK(!pub->c->paused);
    /* All six PUBACKs were sent in that round (no further round runs). */
    gwt_pull(pub);
    size_t off = 0;
    int acks = 0;
    while (off < pub->len) {
        uint8_t type, flags;
        size_t hl, rl;
        if (vg_mqtt_frame(pub->buf + off, pub->len - off, sizeof pub->buf, &type, &flags, &hl, &rl) != VG_OK)
            break;
        acks += type == VG_MQTT_PUBACK;
        off += hl + rl;
    }
    VT_EQ_INT(acks, 6);
    GWT_END(s, pub);
}

/* A filter that is not one is refused when the server is made. */
static void test_bad_hook_filter(void)
{
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    rec_t rec = {0};
    vg_server_hook_t h = {.filter = "a/#/b", .fn = rec_hook, .ctx = &rec};
    o.hooks = &h;
    o.nhooks = 1;
    VT_CHECK(gwt_server(&o) == NULL);
}

int main(void)
{
    vg_diag_set_level(VG_LOG_ERROR);
    VT_RUN(test_ack_order_across_hooks_and_store);
    VT_RUN(test_failed_completion_closes);
    VT_RUN(test_refusal_not_routed);
    VT_RUN(test_http_same_path);
    VT_RUN(test_resumed_publishes_committed_same_round);
    VT_RUN(test_bad_hook_filter);
    return VT_DONE();
}
