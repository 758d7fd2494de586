/* test_alert_read.c — vg_alert_json_read, the consumers' reader of alert
 * event JSON: what vg_alert_render writes reads back, the old
 * one-message format is an OPEN, and bad members are reported absent. */
#include "alert/alert.h"
#include "core/err.h"
#include "vt.h"

static bool member_eq(const vg_json_member_t *m, const char *s)
{
    return m->key && m->type == VG_JSON_STRING && m->raw_len == strlen(s) && memcmp(m->raw, s, m->raw_len) == 0;
}

static void test_rendered_reads_back(void)
{
    vg_alert_json_t a = {
        .kind = VG_AEV_RESOLVED,
        .type = VG_ALERT_EXTREME_HIGH_HR,
        .severity = VG_SEV_CRITICAL,
        .alert_id = 0xfedcba9876543210ull,
        .event_id = 0x0123456789abcdefull,
        .revision = 2,
        .dev_id = "w-17",
        .dev_len = 4,
        .opened_at_ms = 1764100000000,
        .event_time_ms = 1764100480000,
        .detected_at_ms = 1764190000123,
    };
    char buf[2048];
    int n = vg_alert_render(&a, buf, sizeof buf);
    VT_REQUIRE(n > 0);
    vg_alert_seen_t s;
    VT_EQ_INT(vg_alert_json_read(buf, (size_t)n, &s), VG_OK);
    VT_CHECK(s.lifecycle);
    VT_EQ_INT(s.kind, VG_AEV_RESOLVED);
    VT_CHECK(member_eq(&s.device_id, "w-17"));
    VT_CHECK(member_eq(&s.type, vg_alert_type_name(VG_ALERT_EXTREME_HIGH_HR)));
    VT_CHECK(member_eq(&s.category, "cardiac"));
    VT_CHECK(s.has_event_time && s.event_time_ms == 1764100480000);
    VT_CHECK(s.has_opened_at && s.opened_at_ms == 1764100000000);
    VT_CHECK(s.alert_id == 0xfedcba9876543210ull);
}

static void test_old_format_and_bad_members(void)
{
    static const char old[] = "{\"deviceId\":\"d1\",\"type\":\"HIGH_HEART_RATE\",\"eventTimeMs\":5}";
    vg_alert_seen_t s;
    VT_EQ_INT(vg_alert_json_read(old, sizeof old - 1, &s), VG_OK);
    VT_CHECK(!s.lifecycle);
    VT_EQ_INT(s.kind, VG_AEV_OPEN);
    VT_CHECK(s.has_event_time && s.event_time_ms == 5);
    VT_CHECK(!s.has_opened_at);
    VT_CHECK(!s.category.key);
    VT_CHECK(s.alert_id == 0);

    static const char bad[] = "{\"event\":\"LATER\",\"eventTimeMs\":\"5\",\"alertId\":\"xyz\",\"deviceId\":7}";
    VT_EQ_INT(vg_alert_json_read(bad, sizeof bad - 1, &s), VG_OK);
    VT_CHECK(s.lifecycle);
    VT_EQ_INT(s.kind, 0); /* an event name nobody knows */
    VT_CHECK(!s.has_event_time);
    VT_CHECK(s.alert_id == 0);
    VT_CHECK(s.device_id.key && s.device_id.type != VG_JSON_STRING); /* as found: the caller checks */

    static const char garbage[] = "{\"deviceId\":";
    VT_EQ_INT(vg_alert_json_read(garbage, sizeof garbage - 1, &s), VG_EMALFORMED);
    VT_EQ_INT(s.kind, VG_AEV_OPEN);
    VT_CHECK(!s.device_id.key && !s.lifecycle);
}

int main(void)
{
    VT_RUN(test_rendered_reads_back);
    VT_RUN(test_old_format_and_bad_members);
    return VT_DONE();
}
