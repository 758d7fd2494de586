/* test_message.c — the routed/queued message: properties carried, the
 * stored form round-trips exactly, damaged blobs are refused. */
#include "core/alloc.h"
#include "core/err.h"
#include "mqtt/codec.h"
#include "mqtt/message.h"
#include "vt.h"

#include <stdio.h>
#include <string.h>

/* A raw user-property run: (0x26, key, value) entries as on the wire. */
static size_t user_run(uint8_t *out, const char *const *kv, size_t pairs)
{
    size_t o = 0;
    for (size_t i = 0; i < 2 * pairs; i++) {
        if (i % 2 == 0)
            out[o++] = VG_PROP_USER;
        size_t n = strlen(kv[i]);
        out[o++] = (uint8_t)(n >> 8);
        out[o++] = (uint8_t)n;
        memcpy(out + o, kv[i], n);
        o += n;
    }
    return o;
}

static vg_msg_t *full_message(int64_t now)
{
    static uint8_t run[128];
    static const char *const kv[] = {"site", "ward 3", "fw", "1.2"};
    vg_mqtt_props_t p = {0};
    p.present = VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT) | VG_PROP_BIT(VG_PROP_MESSAGE_EXPIRY) |
                VG_PROP_BIT(VG_PROP_CONTENT_TYPE) | VG_PROP_BIT(VG_PROP_RESPONSE_TOPIC) |
                VG_PROP_BIT(VG_PROP_CORRELATION_DATA) | VG_PROP_BIT(VG_PROP_USER) | VG_PROP_BIT(VG_PROP_TOPIC_ALIAS);
    p.payload_format = 1;
    p.message_expiry = 30;
    p.content_type = (vg_bytes_t){(const uint8_t *)"application/json", 16};
    p.response_topic = (vg_bytes_t){(const uint8_t *)"resp/dev1", 9};
    p.correlation_data = (vg_bytes_t){(const uint8_t *)"\x00\x01\x02", 3};
    p.user_props = (vg_bytes_t){run, user_run(run, kv, 2)};
    p.user_prop_count = 2;
    p.topic_alias = 7; /* per connection: must not travel with the message */
    return vg_msg_new((const uint8_t *)"a/b", 3, (const uint8_t *)"{\"x\":1}", 7, 2, true, &p, now);
}

static bool same_bytes(vg_bytes_t a, vg_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void test_new_copies_message_properties(void)
{
    vg_msg_t *m = full_message(1000);
    VT_REQUIRE(m);
    VT_EQ_INT(m->qos, 2);
    VT_CHECK(m->retain);
    VT_EQ_INT(m->expire_at_ms, 1000 + 30 * 1000);
    VT_CHECK(memcmp(vg_msg_topic(m), "a/b", 3) == 0);
    VT_CHECK(memcmp(vg_msg_payload(m), "{\"x\":1}", 7) == 0);
    VT_CHECK(!(m->props.present & VG_PROP_BIT(VG_PROP_TOPIC_ALIAS)));
    VT_CHECK(!(m->props.present & VG_PROP_BIT(VG_PROP_MESSAGE_EXPIRY))); /* kept as expire_at_ms */
    VT_EQ_INT(m->props.payload_format, 1);
    VT_CHECK(same_bytes(m->props.content_type, (vg_bytes_t){(const uint8_t *)"application/json", 16}));
    VT_CHECK(same_bytes(m->props.correlation_data, (vg_bytes_t){(const uint8_t *)"\x00\x01\x02", 3}));
    size_t pos = 0;
    vg_bytes_t k, v;
    VT_CHECK(vg_mqtt_user_props_next(&m->props, &pos, &k, &v) && k.len == 4 && memcmp(v.p, "ward 3", 6) == 0);
    VT_CHECK(vg_mqtt_user_props_next(&m->props, &pos, &k, &v) && k.len == 2 && memcmp(v.p, "1.2", 3) == 0);
    VT_CHECK(!vg_mqtt_user_props_next(&m->props, &pos, &k, &v));
    VT_CHECK(!vg_msg_expired(m, 1000 + 29999));
    VT_CHECK(vg_msg_expired(m, 1000 + 30000));
    vg_msg_unref(m);
}

static void test_roundtrip_exact(void)
{
    vg_msg_t *m = full_message(5000);
    VT_REQUIRE(m);
    size_t n = vg_msg_serialized_size(m);
    uint8_t buf[512];
    VT_REQUIRE(n <= sizeof buf);
    vg_msg_serialize(m, buf);
    vg_msg_t *r = vg_msg_parse(buf, n);
    VT_REQUIRE(r);
    VT_EQ_INT(r->qos, m->qos);
    VT_EQ_INT(r->retain, m->retain);
    VT_EQ_INT(r->expire_at_ms, m->expire_at_ms);
    VT_EQ_INT(r->props.present, m->props.present);
    VT_EQ_INT(r->props.payload_format, m->props.payload_format);
    VT_CHECK(same_bytes(r->props.content_type, m->props.content_type));
    VT_CHECK(same_bytes(r->props.response_topic, m->props.response_topic));
    VT_CHECK(same_bytes(r->props.correlation_data, m->props.correlation_data));
    VT_CHECK(same_bytes(r->props.user_props, m->props.user_props));
    VT_EQ_INT(r->props.user_prop_count, 2);
    VT_EQ_INT(r->topic_len, 3);
    VT_EQ_INT(r->payload_len, 7);
    /* Re-serializing the parsed message gives the same bytes. */
    uint8_t buf2[512];
    VT_EQ_INT(vg_msg_serialized_size(r), n);
    vg_msg_serialize(r, buf2);
    VT_CHECK(memcmp(buf, buf2, n) == 0);
    vg_msg_unref(r);
    vg_msg_unref(m);
}

static void test_empty_but_present_properties(void)
{
    /* An empty content type or correlation data is still "present". */
    vg_mqtt_props_t p = {0};
    p.present = VG_PROP_BIT(VG_PROP_CONTENT_TYPE) | VG_PROP_BIT(VG_PROP_CORRELATION_DATA);
    vg_msg_t *m = vg_msg_new((const uint8_t *)"t", 1, NULL, 0, 0, false, &p, 0);
    VT_REQUIRE(m);
    VT_EQ_INT(m->props.present, p.present);
    uint8_t buf[128];
    vg_msg_serialize(m, buf);
    vg_msg_t *r = vg_msg_parse(buf, vg_msg_serialized_size(m));
    VT_REQUIRE(r);
    VT_EQ_INT(r->props.present, p.present);
    VT_EQ_INT(r->expire_at_ms, 0);
    vg_msg_unref(r);
    vg_msg_unref(m);
}

static void test_parse_refuses_damage(void)
{
    vg_msg_t *m = full_message(0);
    VT_REQUIRE(m);
    size_t n = vg_msg_serialized_size(m);
    uint8_t buf[512];
    vg_msg_serialize(m, buf);
    for (size_t cut = 0; cut < n; cut++)
        VT_CHECK(vg_msg_parse(buf, cut) == NULL); /* every truncation */
    uint8_t bad[512];
    memcpy(bad, buf, n);
    bad[0] = 99; /* unknown version */
    VT_CHECK(vg_msg_parse(bad, n) == NULL);
    memcpy(bad, buf, n);
    bad[1] |= 3; /* QoS 3 */
    VT_CHECK(vg_msg_parse(bad, n) == NULL);
    memcpy(bad, buf, n);
    bad[12] ^= 0x40; /* topic length disagrees with the blob */
    VT_CHECK(vg_msg_parse(bad, n) == NULL);
    vg_msg_unref(m);
}

static void test_refcount_frees(void)
{
    size_t before = vg_mem_used(VG_MEM_MQTT);
    vg_msg_t *m = full_message(0);
    VT_REQUIRE(m);
    vg_msg_ref(m);
    vg_msg_unref(m);
    VT_CHECK(vg_mem_used(VG_MEM_MQTT) > before);
    vg_msg_unref(m);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), before);
}

int main(void)
{
    VT_RUN(test_new_copies_message_properties);
    VT_RUN(test_roundtrip_exact);
    VT_RUN(test_empty_but_present_properties);
    VT_RUN(test_parse_refuses_damage);
    VT_RUN(test_refcount_frees);
    return VT_DONE();
}
