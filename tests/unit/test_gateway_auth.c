/* Unit tests of the gateway's authentication and authorization
 * (gateway/auth.c and its callers): an auth hook that refuses, accepts, or
 * answers later from "another thread" while the CONNECT waits; the
 * principal reaching the publish hooks and being freed once; PUBLISH denied
 * (5.0: PUBACK 0x87 and nothing routed; 3.1.1: the connection closes);
 * SUBSCRIBE denied per filter (0x80 / 0x87); a delivery denied by receive
 * is dropped while the rest of the subscription's messages arrive. */
#include "gwt.h"

/* The test's "policy": a principal is its client id; it may publish and
 * subscribe under "<id>/" and publish to and subscribe to "open/#"; nobody
 * may receive "open/secret". */
typedef struct {
    int allocated, freed;
    uint64_t wait_token; /* of the last CONNECT answered later (0 is a valid token) */
    int waits;
    const void *hook_principal;
    int hook_calls;
} env_t;

static int auth(void *ctx, const vg_server_auth_t *req, vg_server_auth_result_t *res)
{
    env_t *e = ctx;
    if (req->client_id_len >= 5 && memcmp(req->client_id, "wait-", 5) == 0) {
        e->wait_token = req->token;
        e->waits++;
        return VG_AGAIN;
    }
    if (req->client_id_len >= 3 && memcmp(req->client_id, "ok-", 3) == 0) {
        res->principal = strndup(req->client_id, req->client_id_len);
        e->allocated++;
        return VG_OK;
    }
    res->status = 1;
    res->v3_rc = VG_MQTT_CONNACK_BAD_CREDENTIALS;
    res->v5_rc = VG_RC_BAD_USER_OR_PASSWORD;
    res->why = "unknown device";
    return VG_OK;
}

static bool under(const char *topic, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len > n && memcmp(topic, prefix, n) == 0 && topic[n] == '/';
}

static bool authz(void *ctx, void *principal, vg_server_action_t action, const char *topic, size_t len)
{
    const char *me = principal;
    if (!me)
        return false;
    if (action == VG_ACT_RECEIVE)
        return !(len == 11 && memcmp(topic, "open/secret", 11) == 0);
    if (action == VG_ACT_RETAIN)
        return false;
    return under(topic, len, me) || under(topic, len, "open");
}

static void principal_free(void *ctx, void *principal)
{
    env_t *e = ctx;
    e->freed++;
    free(principal);
}

static int hook(void *ctx, const vg_server_pub_t *pub, uint64_t token)
{
    env_t *e = ctx;
    e->hook_principal = pub->principal;
    e->hook_calls++;
    return VG_OK;
}

static vg_server_t *server(env_t *e)
{
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    o.workers = 1;
    o.auth = auth;
    o.authz = authz;
    o.principal_free = principal_free;
    o.auth_ctx = e;
    static vg_server_hook_t hooks[1];
    hooks[0] = (vg_server_hook_t){.filter = "ok-h/data", .fn = hook, .ctx = e};
    o.hooks = hooks;
    o.nhooks = 1;
    return gwt_server(&o);
}

/* Sends a clean CONNECT for id (connack_of reads the answer). */
static void send_connect(gwt_client_t *cl, const char *id)
{
    vg_mqtt_connect_t ck;
    memset(&ck, 0, sizeof ck);
    ck.protocol_level = cl->level;
    ck.clean_session = true;
    ck.keepalive = 60;
    ck.client_id.p = (const uint8_t *)id;
    ck.client_id.len = strlen(id);
    uint8_t b[256];
    int n = vg_mqtt_encode_connect(b, sizeof b, &ck);
    gwt_send(cl, b, (size_t)n);
}

/* The CONNACK's code, -1 if none came within ms. */
static int connack_of(gwt_client_t *cl, int ms)
{
    uint8_t type, flags;
    const uint8_t *body;
    size_t len;
    if (!gwt_read_packet_within(cl, ms, &type, &flags, &body, &len) || type != VG_MQTT_CONNACK)
        return -1;
    bool present = false;
    uint8_t rc = 0xff;
    if (vg_mqtt_decode_connack(cl->level, body, len, &present, &rc, NULL) != VG_OK)
        return -1;
    return rc;
}

static void test_refused_and_accepted(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *bad3 = gwt_client(s, 0, L_MQTT, VG_MQTT_V311);
    gwt_client_t *bad5 = gwt_client(s, 0, L_MQTT, VG_MQTT_V5);
    VT_REQUIRE(bad3 && bad5);
    send_connect(bad3, "stranger");
    VT_EQ_INT(connack_of(bad3, GWT_DEADLINE_MS), VG_MQTT_CONNACK_BAD_CREDENTIALS);
    send_connect(bad5, "stranger5");
    VT_EQ_INT(connack_of(bad5, GWT_DEADLINE_MS), VG_RC_BAD_USER_OR_PASSWORD);
    gwt_client_t *ok = gwt_connected(s, 0, VG_MQTT_V311, "ok-a", 0, 0);
    VT_REQUIRE(ok);
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    VT_EQ_INT(st.auth_refused, 2);
    VT_EQ_INT(st.auth_accepted, 1);
    GWT_END(s, bad3, bad5, ok);
    VT_EQ_INT(e.allocated, 1);
    VT_EQ_INT(e.freed, 1);
}

static void test_answer_later(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *c = gwt_client(s, 0, L_MQTT, VG_MQTT_V311);
    VT_REQUIRE(c);
    send_connect(c, "wait-1");
    /* The CONNECT waits: no CONNACK, and a PINGREQ behind it is not read. */
    const uint8_t ping[2] = {0xC0, 0};
    gwt_send(c, ping, 2);
    VT_EQ_INT(connack_of(c, 200), -1);
    VT_EQ_INT(e.waits, 1);
    char *p = strdup("wait-1");
    e.allocated++;
    vg_server_auth_result_t res = {.status = 0, .principal = p};
    vg_server_auth_done(s, e.wait_token, &res); /* from "another thread": through the inbox */
    VT_EQ_INT(connack_of(c, GWT_DEADLINE_MS), 0);
    uint8_t type, flags;
    const uint8_t *body;
    size_t len;
    VT_CHECK(gwt_read_packet(c, &type, &flags, &body, &len) && type == VG_MQTT_PINGRESP);
    /* Refused later. */
    gwt_client_t *d = gwt_client(s, 0, L_MQTT, VG_MQTT_V5);
    VT_REQUIRE(d);
    send_connect(d, "wait-2");
    VT_EQ_INT(connack_of(d, 100), -1);
    vg_server_auth_result_t no = {.status = 1, .v5_rc = VG_RC_NOT_AUTHORIZED, .why = "later no"};
    vg_server_auth_done(s, e.wait_token, &no);
    VT_EQ_INT(connack_of(d, GWT_DEADLINE_MS), VG_RC_NOT_AUTHORIZED);
    /* An answer for a connection that is gone frees its principal. */
    gwt_client_t *g = gwt_client(s, 0, L_MQTT, VG_MQTT_V311);
    VT_REQUIRE(g);
    send_connect(g, "wait-3");
    VT_EQ_INT(connack_of(g, 100), -1);
    uint64_t tok = e.wait_token;
    close(g->fd);
    g->fd = -1;
    gwt_rounds(s);
    gwt_rounds(s);
    char *p3 = strdup("wait-3");
    e.allocated++;
    vg_server_auth_result_t late = {.status = 0, .principal = p3};
    vg_server_auth_done(s, tok, &late);
    gwt_rounds(s);
    VT_EQ_INT(e.freed, 1);
    free(g);
    GWT_END(s, c, d);
    VT_EQ_INT(e.freed, e.allocated);
}

static void test_publish_denied(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *sub = gwt_connected(s, 0, VG_MQTT_V5, "ok-sub", 0, 0);
    gwt_client_t *p5 = gwt_connected(s, 0, VG_MQTT_V5, "ok-p5", 0, 0);
    gwt_client_t *p3 = gwt_connected(s, 0, VG_MQTT_V311, "ok-p3", 0, 0);
    VT_REQUIRE(sub && p5 && p3);
    VT_CHECK(gwt_subscribe(sub, "open/#", 1, 0, false, 1));
    /* 5.0, QoS 1, a topic of someone else: PUBACK 0x87, nothing routed. */
    gwt_publish(p5, "open/../ok-sub", "x", 1, 7, false, false); /* allowed: under open/ */
    vg_mqtt_publish_t m;
    VT_REQUIRE(gwt_expect_publish(sub, &m));
    gwt_ack(sub, VG_MQTT_PUBACK, m.packet_id);
    VT_EQ_INT(gwt_expect_ack(p5, VG_MQTT_PUBACK), 7);
    gwt_publish(p5, "ok-sub/inbox", "spoof", 1, 8, false, false);
    uint8_t t, fl;
    const uint8_t *body;
    size_t len;
    VT_REQUIRE(gwt_read_packet(p5, &t, &fl, &body, &len) && t == VG_MQTT_PUBACK);
    vg_mqtt_ack_t a;
    VT_CHECK(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_PUBACK, body, len, &a) == VG_OK && a.packet_id == 8 &&
             a.reason == VG_RC_NOT_AUTHORIZED);
    /* Retain is its own permission. */
    gwt_publish(p5, "ok-p5/state", "r", 1, 9, true, false);
    VT_REQUIRE(gwt_read_packet(p5, &t, &fl, &body, &len) && t == VG_MQTT_PUBACK);
    VT_CHECK(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_PUBACK, body, len, &a) == VG_OK &&
             a.reason == VG_RC_NOT_AUTHORIZED);
    /* 3.1.1: no reason codes; the connection closes. */
    gwt_publish(p3, "ok-sub/inbox", "spoof", 1, 3, false, false);
    VT_EQ_INT(gwt_expect_ack(p3, VG_MQTT_PUBACK), -1);
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(sub));
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    VT_EQ_INT(st.denied[VG_ACT_PUBLISH], 2);
    VT_EQ_INT(st.denied[VG_ACT_RETAIN], 1);
    VT_EQ_INT(st.closes[VG_CLOSE_NOT_AUTHORIZED], 1);
    GWT_END(s, sub, p5, p3);
    VT_EQ_INT(e.freed, e.allocated);
}

static int suback_rc(gwt_client_t *cl, const char *filter, uint16_t pid)
{
    vg_mqtt_sub_t sb = {.filter = {(const uint8_t *)filter, strlen(filter)}, .qos = 1};
    uint8_t b[512];
    int n = vg_mqtt_encode_subscribe(b, sizeof b, cl->level, pid, NULL, &sb, 1);
    gwt_send(cl, b, (size_t)n);
    uint8_t type, flags, rc = 0;
    const uint8_t *body;
    size_t len, cnt = 0;
    uint16_t apid = 0;
    if (!gwt_read_packet(cl, &type, &flags, &body, &len) || type != VG_MQTT_SUBACK ||
        vg_mqtt_decode_suback(cl->level, VG_MQTT_SUBACK, body, len, &apid, NULL, &rc, 1, &cnt) != VG_OK)
        return -1;
    return rc;
}

static void test_subscribe_and_receive_denied(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *s3 = gwt_connected(s, 0, VG_MQTT_V311, "ok-s3", 0, 0);
    gwt_client_t *s5 = gwt_connected(s, 0, VG_MQTT_V5, "ok-s5", 0, 0);
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "ok-pub", 0, 0);
    VT_REQUIRE(s3 && s5 && pub);
    VT_EQ_INT(suback_rc(s3, "#", 1), VG_MQTT_SUBACK_FAILURE);
    VT_EQ_INT(suback_rc(s5, "ok-s3/#", 2), VG_RC_NOT_AUTHORIZED);
    VT_EQ_INT(suback_rc(s5, "open/#", 3), 1);
    gwt_publish(pub, "open/secret", "no", 1, 1, false, false);
    VT_EQ_INT(gwt_expect_ack(pub, VG_MQTT_PUBACK), 1);
    gwt_publish(pub, "open/fine", "yes", 1, 2, false, false);
    VT_EQ_INT(gwt_expect_ack(pub, VG_MQTT_PUBACK), 2);
    vg_mqtt_publish_t m;
    VT_REQUIRE(gwt_expect_publish(s5, &m));
    VT_CHECK(gwt_payload_is(&m, "yes")); /* the secret one never came */
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    VT_EQ_INT(st.denied[VG_ACT_SUBSCRIBE], 2);
    VT_EQ_INT(st.denied[VG_ACT_RECEIVE], 1);
    GWT_END(s, s3, s5, pub);
}

static void test_hooks_see_the_principal(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *c = gwt_connected(s, 0, VG_MQTT_V311, "ok-h", 0, 0);
    VT_REQUIRE(c);
    gwt_publish(c, "ok-h/data", "{}", 0, 0, false, false);
    gwt_rounds(s);
    gwt_rounds(s);
    VT_EQ_INT(e.hook_calls, 1);
    VT_CHECK(e.hook_principal && strcmp(e.hook_principal, "ok-h") == 0);
    GWT_END(s, c);
}

static void test_kick(void)
{
    env_t e = {0};
    vg_server_t *s = server(&e);
    VT_REQUIRE(s);
    gwt_client_t *c = gwt_connected(s, 0, VG_MQTT_V5, "ok-k", 0, 0);
    VT_REQUIRE(c);
    VT_CHECK(!vg_server_kick(s, "ok-nobody", 9));
    VT_CHECK(vg_server_kick(s, "ok-k", 4));
    uint8_t t, fl;
    const uint8_t *body;
    size_t len;
    VT_REQUIRE(gwt_read_packet(c, &t, &fl, &body, &len));
    VT_EQ_INT(t, VG_MQTT_DISCONNECT);
    VT_CHECK(len >= 1 && body[0] == VG_RC_NOT_AUTHORIZED);
    gwt_rounds(s);
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    VT_EQ_INT(st.closes[VG_CLOSE_REVOKED], 1);
    GWT_END(s, c);
    VT_EQ_INT(e.freed, e.allocated);
}

int main(void)
{
    VT_RUN(test_refused_and_accepted);
    VT_RUN(test_answer_later);
    VT_RUN(test_publish_denied);
    VT_RUN(test_subscribe_and_receive_denied);
    VT_RUN(test_hooks_see_the_principal);
    VT_RUN(test_kick);
    return VT_DONE();
}
