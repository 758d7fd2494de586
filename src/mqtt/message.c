/* message.c — routed/queued/retained application messages. See message.h.
 *
 * One allocation per message: the header, then topic, payload and property
 * bytes back to back, so a message costs one malloc however many
 * subscribers it reaches, and freeing it is one free. */
#include "mqtt/message.h"

#include "core/alloc.h"
#include "core/bytes.h"

#include <string.h>

#define MSG_BLOB_VERSION 1
#define MSG_BLOB_HDR 44

static void put_span(char **cur, vg_bytes_t *dst, vg_bytes_t src)
{
    if (src.len)
        memcpy(*cur, src.p, src.len);
    dst->p = (const uint8_t *)*cur;
    dst->len = src.len;
    *cur += src.len;
}

static vg_msg_t *build(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
                       bool retain, bool has_pf, uint8_t pf, vg_bytes_t ct, vg_bytes_t rt, vg_bytes_t cd,
                       vg_bytes_t up, uint32_t upcount, int64_t expire_at)
{
    size_t extra = ct.len + rt.len + cd.len + up.len;
    if (tlen > UINT32_MAX || plen > UINT32_MAX)
        return NULL;
    vg_msg_t *m = vg_malloc(VG_MEM_MQTT, sizeof *m + tlen + plen + extra);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    atomic_init(&m->refs, 1);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint32_t)tlen;
    m->payload_len = (uint32_t)plen;
    m->expire_at_ms = expire_at;
    char *cur = m->data;
    if (tlen)
        memcpy(cur, topic, tlen);
    cur += tlen;
    if (plen)
        memcpy(cur, payload, plen);
    cur += plen;
    if (has_pf) {
        m->props.present |= VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT);
        m->props.payload_format = pf;
    }
    put_span(&cur, &m->props.content_type, ct);
    if (ct.len || ct.p)
        m->props.present |= VG_PROP_BIT(VG_PROP_CONTENT_TYPE);
    put_span(&cur, &m->props.response_topic, rt);
    if (rt.len)
        m->props.present |= VG_PROP_BIT(VG_PROP_RESPONSE_TOPIC);
    put_span(&cur, &m->props.correlation_data, cd);
    if (cd.len || cd.p)
        m->props.present |= VG_PROP_BIT(VG_PROP_CORRELATION_DATA);
    put_span(&cur, &m->props.user_props, up);
    m->props.user_prop_count = upcount;
    if (upcount)
        m->props.present |= VG_PROP_BIT(VG_PROP_USER);
    return m;
}

vg_msg_t *vg_msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos, bool retain,
                     const vg_mqtt_props_t *props, int64_t now_ms)
{
    vg_bytes_t none = {0};
    if (!props)
        return build(topic, tlen, payload, plen, qos, retain, false, 0, none, none, none, none, 0, 0);
    uint64_t pr = props->present;
    int64_t exp = 0;
    if (pr & VG_PROP_BIT(VG_PROP_MESSAGE_EXPIRY))
        exp = now_ms + (int64_t)props->message_expiry * 1000;
    /* Empty-but-present content type / correlation data must survive as
     * present: keep a non-NULL pointer so build() can tell. */
    vg_bytes_t ct = (pr & VG_PROP_BIT(VG_PROP_CONTENT_TYPE)) ? props->content_type : none;
    vg_bytes_t cd = (pr & VG_PROP_BIT(VG_PROP_CORRELATION_DATA)) ? props->correlation_data : none;
    static const uint8_t empty[1];
    if ((pr & VG_PROP_BIT(VG_PROP_CONTENT_TYPE)) && !ct.p)
        ct.p = empty;
    if ((pr & VG_PROP_BIT(VG_PROP_CORRELATION_DATA)) && !cd.p)
        cd.p = empty;
    vg_bytes_t rt = (pr & VG_PROP_BIT(VG_PROP_RESPONSE_TOPIC)) ? props->response_topic : none;
    vg_bytes_t up = (pr & VG_PROP_BIT(VG_PROP_USER)) ? props->user_props : none;
    return build(topic, tlen, payload, plen, qos, retain, (pr & VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT)) != 0,
                 props->payload_format, ct, rt, cd, up,
                 (pr & VG_PROP_BIT(VG_PROP_USER)) ? props->user_prop_count : 0, exp);
}

void vg_msg_unref(vg_msg_t *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        vg_free(m);
}

size_t vg_msg_serialized_size(const vg_msg_t *m)
{
    const vg_mqtt_props_t *p = &m->props;
    return MSG_BLOB_HDR + m->topic_len + m->payload_len + p->content_type.len + p->response_topic.len +
           p->correlation_data.len + p->user_props.len;
}

void vg_msg_serialize(const vg_msg_t *m, uint8_t *out)
{
    const vg_mqtt_props_t *p = &m->props;
    bool has_pf = (p->present & VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT)) != 0;
    bool has_ct = (p->present & VG_PROP_BIT(VG_PROP_CONTENT_TYPE)) != 0;
    bool has_cd = (p->present & VG_PROP_BIT(VG_PROP_CORRELATION_DATA)) != 0;
    out[0] = MSG_BLOB_VERSION;
    out[1] = (uint8_t)((m->qos & 3) | (m->retain ? 4 : 0) | (has_pf ? 8 : 0) | (has_ct ? 16 : 0) | (has_cd ? 32 : 0));
    out[2] = p->payload_format;
    out[3] = 0;
    vg_put_le64(out + 4, (uint64_t)m->expire_at_ms);
    vg_put_le32(out + 12, m->topic_len);
    vg_put_le32(out + 16, m->payload_len);
    vg_put_le32(out + 20, (uint32_t)p->content_type.len);
    vg_put_le32(out + 24, (uint32_t)p->response_topic.len);
    vg_put_le32(out + 28, (uint32_t)p->correlation_data.len);
    vg_put_le32(out + 32, (uint32_t)p->user_props.len);
    vg_put_le32(out + 36, p->user_prop_count);
    vg_put_le32(out + 40, 0);
    memcpy(out + MSG_BLOB_HDR, m->data, vg_msg_serialized_size(m) - MSG_BLOB_HDR);
}

vg_msg_t *vg_msg_parse(const uint8_t *b, size_t len)
{
    if (len < MSG_BLOB_HDR || b[0] != MSG_BLOB_VERSION || (b[1] & 3) == 3)
        return NULL;
    uint64_t lens[6];
    uint64_t total = MSG_BLOB_HDR;
    for (int i = 0; i < 6; i++) {
        lens[i] = vg_get_le32(b + 12 + 4 * i);
        total += lens[i];
    }
    if (total != len)
        return NULL;
    const uint8_t *cur = b + MSG_BLOB_HDR;
    const uint8_t *topic = cur;
    const uint8_t *payload = topic + lens[0];
    vg_bytes_t ct = {payload + lens[1], lens[2]};
    vg_bytes_t rt = {ct.p + lens[2], lens[3]};
    vg_bytes_t cd = {rt.p + lens[3], lens[4]};
    vg_bytes_t up = {cd.p + lens[4], lens[5]};
    if (!(b[1] & 16))
        ct = (vg_bytes_t){0};
    if (!(b[1] & 32))
        cd = (vg_bytes_t){0};
    if (!lens[3])
        rt = (vg_bytes_t){0};
    return build(topic, lens[0], payload, lens[1], b[1] & 3, (b[1] & 4) != 0, (b[1] & 8) != 0, b[2], ct, rt, cd, up,
                 vg_get_le32(b + 36), (int64_t)vg_get_le64(b + 4));
}
