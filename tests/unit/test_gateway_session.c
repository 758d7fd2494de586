/* Unit tests of the gateway's sessions (gateway/session.c, connect.c):
 * queues of an offline session and their limits, resumption (in-flight
 * messages again with DUP and their packet ids, then the queue, never more
 * than the in-flight window), clean start, and inbound QoS 2 exactly once. */
#include "gwt.h"

static vg_server_t *server(uint32_t window, uint32_t max_queued)
{
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    o.max_inflight_out = window;
    if (max_queued)
        o.max_queued_per_client = max_queued;
    return gwt_server(&o);
}

static vg_server_stats_t stats(vg_server_t *s)
{
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    return st;
}

static bool one_offline(void *arg)
{
    return stats(arg).sessions_persistent_offline == 1;
}

/* A persistent 3.1.1 session subscribed to s/#, then offline. */
static void park_subscriber(vg_server_t *s)
{
    gwt_client_t *a = gwt_connected(s, 0, VG_MQTT_V311, "a", 1, 0);
    VT_REQUIRE(a);
    VT_CHECK(gwt_subscribe(a, "s/#", 1, 0, false, 1));
    gwt_disconnect(a);
    VT_CHECK(gwt_until(s, one_offline, s));
    gwt_close(a);
}

static void publish_n(vg_server_t *s, int n)
{
    gwt_client_t *p = gwt_connected(s, 0, VG_MQTT_V311, "p", 0, 0);
    VT_REQUIRE(p);
    for (int i = 0; i < n; i++) {
        char pl[8];
        snprintf(pl, sizeof pl, "m%d", i);
        gwt_publish(p, "s/x", pl, 1, (uint16_t)(i + 1), false, false);
    }
    for (int i = 0; i < n; i++)
        VT_EQ_INT(gwt_expect_ack(p, VG_MQTT_PUBACK), i + 1);
    gwt_close(p);
}

/* A server (as server()) whose offline subscriber "a" has n messages
 * published for it; NULL if it could not be made. */
static vg_server_t *parked(uint32_t window, uint32_t max_queued, int n)
{
    vg_server_t *s = server(window, max_queued);
    if (s) {
        park_subscriber(s);
        publish_n(s, n);
    }
    return s;
}

/* Reads one PUBLISH and checks payload and DUP; returns its packet id. */
static int expect(gwt_client_t *c, const char *payload, bool dup)
{
    vg_mqtt_publish_t p;
    if (!gwt_expect_publish(c, &p)) {
        VT_CHECK(!"a PUBLISH");
        return -1;
    }
    VT_CHECK(gwt_payload_is(&p, payload));
    VT_EQ_INT(p.dup, dup);
    VT_EQ_INT(p.qos, 1);
    return p.packet_id;
}

static void test_queue_and_resume(void)
{
    vg_server_t *s = parked(2, 0, 5);
    VT_REQUIRE(s);
    VT_EQ_INT(stats(s).queued, 5);

    /* Resumed: the queue goes out, at most the window (2) unacknowledged. */
    gwt_client_t *a = gwt_connected(s, 0, VG_MQTT_V311, "a", 1, 1);
    VT_REQUIRE(a);
    int p0 = expect(a, "m0", false);
    int p1 = expect(a, "m1", false);
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(a));
    gwt_ack(a, VG_MQTT_PUBACK, (uint16_t)p0);
    int p2 = expect(a, "m2", false);
    /* Gone without a DISCONNECT, m1 and m2 unacknowledged. */
    gwt_close(a);
    VT_REQUIRE(gwt_until(s, one_offline, s));

    /* In-flight messages again, in order, with DUP and their ids; then the
     * rest of the queue as the window opens. */
    a = gwt_connected(s, 0, VG_MQTT_V311, "a", 1, 1);
    VT_REQUIRE(a);
    VT_EQ_INT(expect(a, "m1", true), p1);
    VT_EQ_INT(expect(a, "m2", true), p2);
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(a));
    gwt_ack(a, VG_MQTT_PUBACK, (uint16_t)p1);
    gwt_ack(a, VG_MQTT_PUBACK, (uint16_t)p2);
    int p3 = expect(a, "m3", false);
    int p4 = expect(a, "m4", false);
    gwt_ack(a, VG_MQTT_PUBACK, (uint16_t)p3);
    gwt_ack(a, VG_MQTT_PUBACK, (uint16_t)p4);
    gwt_disconnect(a);
    VT_REQUIRE(gwt_until(s, one_offline, s));
    VT_EQ_INT(stats(s).queued, 0);
    GWT_END(s, a);
}

/* An offline session keeps at most max_queued_per_client messages; the
 * rest are dropped and counted. */
static void test_queue_limit(void)
{
    vg_server_t *s = parked(8, 3, 5);
    VT_REQUIRE(s);
    vg_server_stats_t st = stats(s);
    VT_EQ_INT(st.queued, 3);
    VT_EQ_INT(st.queue_dropped_client, 2);
    gwt_client_t *a = gwt_connected(s, 0, VG_MQTT_V311, "a", 1, 1);
    VT_REQUIRE(a);
    expect(a, "m0", false);
    expect(a, "m1", false);
    expect(a, "m2", false);
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(a));
    GWT_END(s, a);
}

/* A clean start ends the old session: nothing resumed, nothing queued. */
static void test_clean_start_drops(void)
{
    vg_server_t *s = parked(8, 0, 2);
    VT_REQUIRE(s);
    VT_EQ_INT(stats(s).queued, 2);
    gwt_client_t *a = gwt_connected(s, 0, VG_MQTT_V311, "a", 0, 0);
    VT_REQUIRE(a);
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(a));
    VT_EQ_INT(stats(s).queued, 0);
    VT_EQ_INT(stats(s).subscriptions, 0);
    GWT_END(s, a);
}

/* Inbound QoS 2: a retransmission before PUBREL is acknowledged again but
 * routed once; after PUBCOMP the packet id is new again. */
static void test_qos2_exactly_once(void)
{
    vg_server_t *s = server(8, 0);
    VT_REQUIRE(s);
    gwt_client_t *b, *p;
    VT_REQUIRE(gwt_sub_pub(s, "b", "q/#", 0, "p", &b, &p));
    gwt_publish(p, "q/1", "once", 2, 7, false, false);
    VT_EQ_INT(gwt_expect_ack(p, VG_MQTT_PUBREC), 7);
    gwt_publish(p, "q/1", "once", 2, 7, false, true);
    VT_EQ_INT(gwt_expect_ack(p, VG_MQTT_PUBREC), 7);
    vg_mqtt_publish_t m;
    VT_CHECK(gwt_expect_publish(b, &m) && gwt_payload_is(&m, "once"));
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(b));
    VT_EQ_INT(stats(s).qos2_duplicates, 1);
    gwt_ack(p, VG_MQTT_PUBREL, 7);
    VT_EQ_INT(gwt_expect_ack(p, VG_MQTT_PUBCOMP), 7);
    gwt_publish(p, "q/1", "again", 2, 7, false, false);
    VT_EQ_INT(gwt_expect_ack(p, VG_MQTT_PUBREC), 7);
    VT_CHECK(gwt_expect_publish(b, &m) && gwt_payload_is(&m, "again"));
    GWT_END(s, p, b);
}

int main(void)
{
    vg_diag_set_level(VG_LOG_ERROR);
    VT_RUN(test_queue_and_resume);
    VT_RUN(test_queue_limit);
    VT_RUN(test_clean_start_drops);
    VT_RUN(test_qos2_exactly_once);
    return VT_DONE();
}
