/* Unit tests of the gateway's routing (gateway/route.c, subs.c, session.c):
 * overlapping subscriptions of one session give one delivery at their
 * highest QoS with every subscription id; a shared group gives each message
 * to one member, round robin, online members first; no local; a fan-out to
 * another worker is one inbox item however many subscribers it has. */
#include "gwt.h"

static vg_server_t *server(uint32_t workers)
{
    vg_server_opts_t o;
    vg_server_opts_default(&o);
    o.workers = workers;
    return gwt_server(&o);
}

static bool has_subid(const vg_mqtt_publish_t *p, uint32_t id)
{
    for (uint32_t i = 0; i < p->props.sub_id_count && i < VG_MQTT_MAX_SUB_IDS; i++)
        if (p->props.sub_ids[i] == id)
            return true;
    return false;
}

static void test_overlapping_one_delivery(void)
{
    vg_server_t *s = server(1);
    VT_REQUIRE(s);
    gwt_client_t *sub = gwt_connected(s, 0, VG_MQTT_V5, "sub", 0, GWT_ANY_PRESENT);
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, GWT_ANY_PRESENT);
    VT_REQUIRE(sub && pub);
    VT_CHECK(gwt_subscribe(sub, "r/+", 0, 1, false, 1));
    VT_CHECK(gwt_subscribe(sub, "r/#", 1, 2, false, 2));
    gwt_publish(pub, "r/a", "x", 1, 1, false, false);
    VT_EQ_INT(gwt_expect_ack(pub, VG_MQTT_PUBACK), 1);
    vg_mqtt_publish_t p;
    VT_REQUIRE(gwt_expect_publish(sub, &p));
    VT_EQ_INT(p.qos, 1); /* the highest of the matching subscriptions */
    VT_EQ_INT(p.props.sub_id_count, 2);
    VT_CHECK(has_subid(&p, 1) && has_subid(&p, 2));
    gwt_ack(sub, VG_MQTT_PUBACK, p.packet_id);
    /* Capped by the message's QoS. */
    gwt_publish(pub, "r/b", "y", 0, 0, false, false);
    VT_REQUIRE(gwt_expect_publish(sub, &p));
    VT_EQ_INT(p.qos, 0);
    VT_CHECK(gwt_payload_is(&p, "y"));
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(sub)); /* once, not once per subscription */
    GWT_END(s, pub, sub);
}

static int drain_count(gwt_client_t *c)
{
    int n = 0;
    vg_mqtt_publish_t p;
    while (!gwt_nothing_sent(c) && gwt_expect_publish(c, &p))
        n++;
    return n;
}

static bool offline_one(void *arg)
{
    vg_server_stats_t st;
    vg_server_stats(arg, &st);
    return st.sessions_persistent_offline == 1;
}

static void test_shared_group(void)
{
    vg_server_t *s = server(1);
    VT_REQUIRE(s);
    gwt_client_t *g1 = gwt_connected(s, 0, VG_MQTT_V311, "g1", 0, GWT_ANY_PRESENT);
    gwt_client_t *g2 = gwt_connected(s, 0, VG_MQTT_V5, "g2", 3600, GWT_ANY_PRESENT);
    gwt_client_t *all = gwt_connected(s, 0, VG_MQTT_V311, "all", 0, GWT_ANY_PRESENT);
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, GWT_ANY_PRESENT);
    VT_REQUIRE(g1 && g2 && all && pub);
    VT_CHECK(gwt_subscribe(g1, "$share/g/q/#", 0, 0, false, 1));
    VT_CHECK(gwt_subscribe(g2, "$share/g/q/#", 0, 0, false, 1));
    VT_CHECK(gwt_subscribe(all, "q/#", 0, 0, false, 1));
    for (int i = 0; i < 4; i++)
        gwt_publish(pub, "q/x", "m", 0, 0, false, false);
    vg_mqtt_publish_t p;
    for (int i = 0; i < 4; i++)
        VT_CHECK(gwt_expect_publish(all, &p));
    gwt_rounds(s);
    /* Round robin between the two members: two each, none twice. */
    VT_EQ_INT(drain_count(g1), 2);
    VT_EQ_INT(drain_count(g2), 2);
    /* g2 offline (its session kept): online members first. */
    gwt_disconnect(g2);
    VT_REQUIRE(gwt_until(s, offline_one, s));
    for (int i = 0; i < 2; i++)
        gwt_publish(pub, "q/x", "n", 0, 0, false, false);
    for (int i = 0; i < 2; i++)
        VT_CHECK(gwt_expect_publish(all, &p));
    gwt_rounds(s);
    VT_EQ_INT(drain_count(g1), 2);
    GWT_END(s, g1, g2, all, pub);
}

static void test_no_local(void)
{
    vg_server_t *s = server(1);
    VT_REQUIRE(s);
    gwt_client_t *me = gwt_connected(s, 0, VG_MQTT_V5, "me", 0, GWT_ANY_PRESENT);
    gwt_client_t *other = gwt_connected(s, 0, VG_MQTT_V311, "other", 0, GWT_ANY_PRESENT);
    VT_REQUIRE(me && other);
    VT_CHECK(gwt_subscribe(me, "n/#", 0, 0, true, 1));
    VT_CHECK(gwt_subscribe(other, "n/#", 0, 0, false, 1));
    gwt_publish(me, "n/1", "mine", 0, 0, false, false);
    vg_mqtt_publish_t p;
    VT_CHECK(gwt_expect_publish(other, &p) && gwt_payload_is(&p, "mine"));
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(me));
    gwt_publish(other, "n/2", "yours", 0, 0, false, false);
    VT_CHECK(gwt_expect_publish(me, &p) && gwt_payload_is(&p, "yours"));
    GWT_END(s, me, other);
}

/* Three subscribers on worker 1, the publisher on worker 0: one inbox item
 * (a batch of three), then each receives the message. */
static void test_fanout_one_item_per_worker(void)
{
    vg_server_t *s = server(2);
    VT_REQUIRE(s);
    gwt_client_t *sub[3];
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "s%d", i);
        sub[i] = gwt_connected(s, 1, VG_MQTT_V311, id, 0, GWT_ANY_PRESENT);
        VT_REQUIRE(sub[i]);
        VT_CHECK(gwt_subscribe(sub[i], "f/#", 1, 0, false, 1));
    }
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, GWT_ANY_PRESENT);
    VT_REQUIRE(pub);
    worker_t *w0 = &s->workers[0], *w1 = &s->workers[1];
    gwt_publish(pub, "f/1", "fan", 1, 1, false, false);
    uint64_t until = gw_now_mono_ms() + GWT_DEADLINE_MS;
    while (!vg_mailbox_pending(&w1->inbox) && gw_now_mono_ms() < until) {
        gw_worker_bind_thread(w0);
        gw_worker_round(w0, 1);
        gw_worker_bind_thread(NULL);
    }
    VT_REQUIRE(w1->inbox.len == 1);
    item_t *posted = (item_t *)w1->inbox.items;
    VT_EQ_INT(posted[0].kind, ITEM_DELIVER_BATCH);
    VT_EQ_INT(posted[0].batch->n, 3);
    vg_mqtt_publish_t p;
    for (int i = 0; i < 3; i++) {
        VT_CHECK(gwt_expect_publish(sub[i], &p) && gwt_payload_is(&p, "fan"));
        VT_EQ_INT(p.qos, 1);
    }
    VT_EQ_INT(gwt_expect_ack(pub, VG_MQTT_PUBACK), 1);
    GWT_END(s, sub[0], sub[1], sub[2], pub);
}

/* One session with many subscriptions (its filter index, SUBIDX_MIN and
 * up): subscribing again replaces, unsubscribing removes exactly that one,
 * and routing follows what is left. */
static void test_many_subscriptions(void)
{
    vg_server_t *s = server(1);
    VT_REQUIRE(s);
    gwt_client_t *sub = gwt_connected(s, 0, VG_MQTT_V311, "many", 0, GWT_ANY_PRESENT);
    gwt_client_t *pub = gwt_connected(s, 0, VG_MQTT_V311, "pub", 0, GWT_ANY_PRESENT);
    VT_REQUIRE(sub && pub);
    char f[32];
    uint16_t pid = 1;
    for (int i = 0; i < 100; i++) {
        snprintf(f, sizeof f, "m/%d", i);
        VT_CHECK(gwt_subscribe(sub, f, 0, 0, false, pid++));
    }
    for (int i = 0; i < 100; i += 3) { /* again: replaced, not added */
        snprintf(f, sizeof f, "m/%d", i);
        VT_CHECK(gwt_subscribe(sub, f, 0, 0, false, pid++));
    }
    vg_server_stats_t st;
    vg_server_stats(s, &st);
    VT_EQ_INT(st.subscriptions, 100);
    for (int i = 0; i < 100; i += 2) {
        snprintf(f, sizeof f, "m/%d", i);
        VT_CHECK(gwt_unsubscribe(sub, f, pid++));
    }
    vg_server_stats(s, &st);
    VT_EQ_INT(st.subscriptions, 50);
    VT_EQ_INT(s->workers[0].conns[sub->c->slot]->sess->nsubs, 50);
    for (int i = 0; i < 100; i++) {
        snprintf(f, sizeof f, "m/%d", i);
        gwt_publish(pub, f, f, 0, 0, false, false);
    }
    vg_mqtt_publish_t p;
    for (int i = 1; i < 100; i += 2) { /* the odd ones only, in order */
        snprintf(f, sizeof f, "m/%d", i);
        VT_CHECK(gwt_expect_publish(sub, &p) && gwt_payload_is(&p, f));
    }
    gwt_rounds(s);
    VT_CHECK(gwt_nothing_sent(sub));
    GWT_END(s, pub, sub);
}

int main(void)
{
    vg_diag_set_level(VG_LOG_ERROR);
    VT_RUN(test_overlapping_one_delivery);
    VT_RUN(test_shared_group);
    VT_RUN(test_no_local);
    VT_RUN(test_fanout_one_item_per_worker);
    VT_RUN(test_many_subscriptions);
    return VT_DONE();
}
