/* test_alert.c — the alert lifecycle (src/alert/lifecycle.c) and the alert
 * event's ids, JSON and stream meta (src/alert/alert.c): one episode = one
 * OPEN, escalation = UPDATE, clearing = RESOLVED, acknowledgement once,
 * deterministic ids (a replay gives identical ids), slot exhaustion, and
 * JSON that a JSON parser accepts with the documented fields. */
#include "alert/alert.h"
#include "alert/lifecycle.h"
#include "core/err.h"
#include "core/json.h"
#include "vt.h"

#include <string.h>

typedef struct {
    vg_alert_event_t ev[32];
    int n;
} sink_t;

static int collect(void *ctx, const vg_alert_event_t *ev)
{
    sink_t *s = ctx;
    if (s->n < 32)
        s->ev[s->n++] = *ev;
    return VG_OK;
}

static vg_cond_t cond(vg_alert_type_t t, int active, int sev, int64_t at)
{
    vg_cond_t c;
    memset(&c, 0, sizeof c);
    c.type = (uint8_t)t;
    c.active = (uint8_t)active;
    c.severity = (uint8_t)sev;
    c.at_ms = at;
    c.value = 130;
    c.threshold = 120;
    return c;
}

static void test_episode_open_update_resolve(void)
{
    vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS];
    memset(slots, 0, sizeof slots);
    sink_t s = {0};
    vg_cond_t c = cond(VG_ALERT_HIGH_HR_AT_REST, 1, VG_SEV_WARNING, 1000);
    VT_EQ_INT(vg_lifecycle_apply(slots, "d1", 2, 10, &c, 1, collect, &s), VG_OK);
    VT_EQ_INT(s.n, 1);
    VT_EQ_INT(s.ev[0].kind, VG_AEV_OPEN);
    VT_EQ_INT(s.ev[0].revision, 0);
    VT_EQ_INT(s.ev[0].open_seq, 10);
    /* same condition again: nothing new */
    for (int i = 0; i < 5; i++)
        vg_lifecycle_apply(slots, "d1", 2, 11 + (uint64_t)i, &c, 1, collect, &s);
    VT_EQ_INT(s.n, 1);
    /* escalation */
    c.severity = VG_SEV_CRITICAL;
    vg_lifecycle_apply(slots, "d1", 2, 20, &c, 1, collect, &s);
    VT_EQ_INT(s.n, 2);
    VT_EQ_INT(s.ev[1].kind, VG_AEV_UPDATE);
    VT_EQ_INT(s.ev[1].revision, 1);
    VT_CHECK(s.ev[1].alert_id == s.ev[0].alert_id);
    /* lower severity inside the episode: no downgrade event */
    c.severity = VG_SEV_WARNING;
    vg_lifecycle_apply(slots, "d1", 2, 21, &c, 1, collect, &s);
    VT_EQ_INT(s.n, 2);
    /* clears */
    vg_cond_t off = cond(VG_ALERT_HIGH_HR_AT_REST, 0, 0, 5000);
    vg_lifecycle_apply(slots, "d1", 2, 30, &off, 1, collect, &s);
    VT_EQ_INT(s.n, 3);
    VT_EQ_INT(s.ev[2].kind, VG_AEV_RESOLVED);
    VT_CHECK(s.ev[2].alert_id == s.ev[0].alert_id);
    VT_CHECK(s.ev[2].event_id != s.ev[1].event_id);
    /* clearing again: nothing; a new episode gets a new id */
    vg_lifecycle_apply(slots, "d1", 2, 31, &off, 1, collect, &s);
    VT_EQ_INT(s.n, 3);
    c = cond(VG_ALERT_HIGH_HR_AT_REST, 1, VG_SEV_WARNING, 9000);
    vg_lifecycle_apply(slots, "d1", 2, 40, &c, 1, collect, &s);
    VT_EQ_INT(s.n, 4);
    VT_EQ_INT(s.ev[3].kind, VG_AEV_OPEN);
    VT_CHECK(s.ev[3].alert_id != s.ev[0].alert_id);
}

static void test_ids_deterministic(void)
{
    /* A replay of the same input into fresh slots gives the same ids. */
    sink_t a = {0}, b = {0};
    for (int round = 0; round < 2; round++) {
        vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS];
        memset(slots, 0, sizeof slots);
        sink_t *s = round ? &b : &a;
        vg_cond_t c1 = cond(VG_ALERT_EXTREME_HIGH_HR, 1, VG_SEV_CRITICAL, 777);
        vg_cond_t c0 = cond(VG_ALERT_EXTREME_HIGH_HR, 0, 0, 999);
        vg_lifecycle_apply(slots, "dev-9", 5, 123, &c1, 1, collect, s);
        vg_lifecycle_apply(slots, "dev-9", 5, 130, &c0, 1, collect, s);
    }
    VT_REQUIRE(a.n == 2 && b.n == 2);
    for (int i = 0; i < 2; i++) {
        VT_CHECK(a.ev[i].alert_id == b.ev[i].alert_id);
        VT_CHECK(a.ev[i].event_id == b.ev[i].event_id);
    }
    VT_CHECK(vg_alert_id("dev-9", 5, VG_ALERT_EXTREME_HIGH_HR, 123, 777) == a.ev[0].alert_id);
    VT_CHECK(vg_alert_id("dev-9", 5, VG_ALERT_EXTREME_LOW_HR, 123, 777) != a.ev[0].alert_id);
    VT_CHECK(vg_alert_id("dev-8", 5, VG_ALERT_EXTREME_HIGH_HR, 123, 777) != a.ev[0].alert_id);
    VT_CHECK(vg_alert_id("dev-9", 5, VG_ALERT_EXTREME_HIGH_HR, 124, 777) != a.ev[0].alert_id);
}

static void test_types_independent_and_slots_full(void)
{
    vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS];
    memset(slots, 0, sizeof slots);
    sink_t s = {0};
    vg_cond_t cs[VG_LIFECYCLE_SLOTS + 1];
    for (int i = 0; i <= VG_LIFECYCLE_SLOTS; i++)
        cs[i] = cond((vg_alert_type_t)(VG_ALERT_IMPOSSIBLE_VALUE + i), 1, VG_SEV_INFO, 100 + i);
    VT_EQ_INT(vg_lifecycle_apply(slots, "x", 1, 1, cs, VG_LIFECYCLE_SLOTS + 1, collect, &s), VG_ELIMIT);
    VT_EQ_INT(s.n, VG_LIFECYCLE_SLOTS);
    /* one resolves, the refused one can open now */
    vg_cond_t off = cond(VG_ALERT_IMPOSSIBLE_VALUE, 0, 0, 200);
    vg_lifecycle_apply(slots, "x", 1, 2, &off, 1, collect, &s);
    VT_EQ_INT(vg_lifecycle_apply(slots, "x", 1, 3, &cs[VG_LIFECYCLE_SLOTS], 1, collect, &s), VG_OK);
    VT_EQ_INT(s.ev[s.n - 1].kind, VG_AEV_OPEN);
    VT_EQ_INT(s.ev[s.n - 1].type, VG_ALERT_IMPOSSIBLE_VALUE + VG_LIFECYCLE_SLOTS);
}

static void test_ack(void)
{
    vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS];
    memset(slots, 0, sizeof slots);
    sink_t s = {0};
    vg_cond_t c = cond(VG_ALERT_LOW_HR_AT_REST, 1, VG_SEV_WARNING, 50);
    vg_lifecycle_apply(slots, "d", 1, 5, &c, 1, collect, &s);
    uint64_t id = s.ev[0].alert_id;
    VT_EQ_INT(vg_lifecycle_ack(slots, "d", 1, id + 1, collect, &s), VG_ENOTFOUND);
    VT_EQ_INT(vg_lifecycle_ack(slots, "d", 1, id, collect, &s), VG_OK);
    VT_EQ_INT(s.ev[1].kind, VG_AEV_ACK);
    VT_CHECK(s.ev[1].acked);
    VT_CHECK(s.ev[1].cond == NULL);
    VT_EQ_INT(vg_lifecycle_ack(slots, "d", 1, id, collect, &s), VG_EEXIST);
    c.severity = VG_SEV_CRITICAL;
    vg_lifecycle_apply(slots, "d", 1, 6, &c, 1, collect, &s);
    VT_EQ_INT(s.ev[2].kind, VG_AEV_UPDATE);
    VT_CHECK(s.ev[2].acked); /* later events say so */
    vg_cond_t off = cond(VG_ALERT_LOW_HR_AT_REST, 0, 0, 90);
    vg_lifecycle_apply(slots, "d", 1, 7, &off, 1, collect, &s);
    VT_EQ_INT(vg_lifecycle_ack(slots, "d", 1, id, collect, &s), VG_ENOTFOUND); /* resolved */
    VT_CHECK(!vg_lifecycle_mark_acked(slots, "d", 1, id));
}

static void test_render_and_meta(void)
{
    vg_alert_json_t a;
    memset(&a, 0, sizeof a);
    a.kind = VG_AEV_ACK;
    a.type = VG_ALERT_HIGH_HR_AT_REST;
    a.severity = VG_SEV_WARNING;
    a.alert_id = 0xfedcba9876543210ull;
    a.event_id = 0x0123456789abcdefull;
    a.dev_id = "w-\"17\"";
    a.dev_len = strlen(a.dev_id);
    a.value = 0.85;
    a.threshold = 120;
    a.mean_hr = 0.0 / 0.0; /* NaN must not reach the JSON */
    a.event_time_ms = 1764100480000;
    a.ack_by = "nurse \\ 7";
    a.ack_note = "called";
    char buf[2048];
    int n = vg_alert_render(&a, buf, sizeof buf);
    VT_REQUIRE(n > 0);
    VT_EQ_INT(vg_json_validate(buf, (size_t)n, 8), VG_OK);
    VT_CHECK(strstr(buf, "\"eventId\":\"0123456789abcdef\"") != NULL);
    VT_CHECK(strstr(buf, "\"alertId\":\"fedcba9876543210\"") != NULL);
    VT_CHECK(strstr(buf, "\"event\":\"ACKNOWLEDGED\"") != NULL);
    VT_CHECK(strstr(buf, "\"type\":\"SUSTAINED_HIGH_HR_AT_REST\"") != NULL);
    VT_CHECK(strstr(buf, "\"category\":\"cardiac\"") != NULL);
    VT_CHECK(strstr(buf, "\"deviceId\":\"w-\\\"17\\\"\"") != NULL);
    VT_CHECK(strstr(buf, "\"timestamp\":\"2025-11-25T19:54:40.000Z\"") != NULL);
    VT_CHECK(strstr(buf, "\"ack\":{\"by\":\"nurse \\\\ 7\"") != NULL);
    VT_CHECK(strstr(buf, "nan") == NULL);
    /* too small a buffer is an error, never a truncated object */
    VT_EQ_INT(vg_alert_render(&a, buf, 100), VG_ETOOBIG);
    uint64_t id;
    VT_EQ_INT(vg_alert_id_parse("FEDCBA9876543210", 16, &id), VG_OK);
    VT_CHECK(id == a.alert_id);
    VT_EQ_INT(vg_alert_id_parse("fedcba987654321", 15, &id), VG_EINVAL);
    VT_EQ_INT(vg_alert_id_parse("fedcba987654321g", 16, &id), VG_EINVAL);

    uint8_t meta[VG_ALERT_META_LEN];
    vg_alert_meta_encode(meta, 99, VG_ALERT_CLOCK_SKEW, VG_AEV_UPDATE, 3, 0xabcull, 0xdefull);
    uint64_t src, eid, aid;
    uint8_t type, kind;
    uint16_t rev;
    VT_EQ_INT(vg_alert_meta_decode(meta, sizeof meta, &src, &type, &kind, &rev, &eid, &aid), VG_OK);
    VT_CHECK(src == 99 && type == VG_ALERT_CLOCK_SKEW && kind == VG_AEV_UPDATE && rev == 3 && eid == 0xabc &&
             aid == 0xdef);
    VT_EQ_INT(vg_alert_meta_decode(meta, 9, &src, NULL, NULL, NULL, NULL, NULL), VG_EINVAL);
}

static void test_type_names(void)
{
    for (int t = 1; t < VG_ALERT__COUNT; t++) {
        const char *n = vg_alert_type_name((vg_alert_type_t)t);
        VT_CHECK(strcmp(n, "NONE") != 0);
        VT_EQ_INT(vg_alert_type_parse(n, strlen(n)), t);
    }
    VT_EQ_INT(vg_alert_type_parse("EXTREME", 7), VG_ALERT_NONE);
    VT_CHECK(vg_alert_type_is_cardiac(VG_ALERT_RESTING_HR_RISE));
    VT_CHECK(!vg_alert_type_is_cardiac(VG_ALERT_IMPOSSIBLE_VALUE));
    vg_detect_cfg_t c;
    vg_detect_cfg_default(&c);
    VT_CHECK(c.rest_high_bpm == 120 && c.rest_low_bpm == 40 && c.rest_share == 0.8 && c.rest_window_s == 600);
    VT_CHECK(c.extreme_high_bpm == 180 && c.extreme_low_bpm == 35 && c.extreme_sustain_s == 30);
    const char *why = NULL;
    VT_EQ_INT(vg_detect_cfg_set(&c, "rest_high_bpm", 150, &why), VG_OK);
    VT_CHECK(c.rest_high_bpm == 150);
    VT_EQ_INT(vg_detect_cfg_set(&c, "rest_high_bpm", 151, &why), VG_EINVAL);
    VT_EQ_INT(vg_detect_cfg_set(&c, "rest_low_bpm", 29.9, &why), VG_EINVAL);
    VT_EQ_INT(vg_detect_cfg_set(&c, "rest_low_bpm", 0.0 / 0.0, &why), VG_EINVAL);
    VT_EQ_INT(vg_detect_cfg_set(&c, "no_such", 1, &why), VG_ENOTFOUND);
    VT_CHECK(c.rest_high_bpm == 150 && c.rest_low_bpm == 40);
}

int main(void)
{
    VT_RUN(test_episode_open_update_resolve);
    VT_RUN(test_ids_deterministic);
    VT_RUN(test_types_independent_and_slots_full);
    VT_RUN(test_ack);
    VT_RUN(test_render_and_meta);
    VT_RUN(test_type_names);
    return VT_DONE();
}
