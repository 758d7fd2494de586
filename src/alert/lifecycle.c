/* lifecycle.c — alert episodes from conditions (lifecycle.h).
 *
 * Owns: the slot rules (OPEN / UPDATE / RESOLVED / ACKNOWLEDGED) and the
 * revision numbering. Does not own: the conditions (detectors), the ids'
 * hash (alert.c), rendering or delivery (processor.c). */
#include "alert/lifecycle.h"

#include "core/err.h"

#include <string.h>

/* Silence (DATA_GAP, DEVICE_OFFLINE) is found either by the timer when
 * stream time passes the device's deadline, or, if no tick came first, by
 * the sample that ends it. Which one wins depends on timing (how busy the
 * processor was, where a replay after a crash stands), while the episode's
 * start (at_ms) does not: so its id never takes the sample's seq, and both
 * ways name the same alert. */
static bool dated_by_silence(uint8_t type)
{
    return type == VG_ALERT_DATA_GAP || type == VG_ALERT_DEVICE_OFFLINE;
}

static vg_alert_slot_t *find_type(vg_alert_slot_t *slots, uint8_t type)
{
    for (int i = 0; i < VG_LIFECYCLE_SLOTS; i++)
        if (slots[i].type == type)
            return &slots[i];
    return NULL;
}

uint64_t vg_lifecycle_slot_id(const vg_alert_slot_t *s, const char *dev_id, size_t dev_len)
{
    return vg_alert_id(dev_id, dev_len, (vg_alert_type_t)s->type, s->open_seq, s->opened_at_ms);
}

static void fill(vg_alert_event_t *ev, const vg_alert_slot_t *s, uint64_t alert_id, vg_alert_event_kind_t kind,
                 const vg_cond_t *c)
{
    ev->kind = kind;
    ev->type = (vg_alert_type_t)s->type;
    ev->severity = (vg_severity_t)s->severity;
    ev->alert_id = alert_id;
    ev->revision = s->revision;
    ev->acked = s->acked != 0;
    ev->opened_at_ms = s->opened_at_ms;
    ev->open_seq = s->open_seq;
    ev->cond = c;
    ev->event_id = vg_alert_event_id(alert_id, kind, s->revision);
}

int vg_lifecycle_apply(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len, uint64_t seq,
                       const vg_cond_t *conds, int n, vg_lifecycle_emit_fn emit, void *ctx)
{
    int rc = VG_OK;
    for (int i = 0; i < n; i++) {
        const vg_cond_t *c = &conds[i];
        if (c->type == VG_ALERT_NONE || c->type >= VG_ALERT__COUNT)
            continue;
        vg_alert_slot_t *s = find_type(slots, c->type);
        vg_alert_event_t ev;
        if (c->active) {
            uint8_t sev = c->severity ? c->severity : VG_SEV_WARNING;
            if (!s) {
                s = find_type(slots, VG_ALERT_NONE);
                if (!s) {
                    rc = VG_ELIMIT;
                    continue;
                }
                memset(s, 0, sizeof *s);
                s->type = c->type;
                s->severity = sev;
                s->open_seq = dated_by_silence(c->type) ? 0 : seq;
                s->opened_at_ms = c->at_ms;
                fill(&ev, s, vg_lifecycle_slot_id(s, dev_id, dev_len), VG_AEV_OPEN, c);
            } else if (sev > s->severity) {
                s->severity = sev;
                s->revision++;
                fill(&ev, s, vg_lifecycle_slot_id(s, dev_id, dev_len), VG_AEV_UPDATE, c);
            } else {
                continue;
            }
        } else {
            if (!s)
                continue;
            s->revision++;
            fill(&ev, s, vg_lifecycle_slot_id(s, dev_id, dev_len), VG_AEV_RESOLVED, c);
            memset(s, 0, sizeof *s);
        }
        int e = emit(ctx, &ev);
        if (e)
            return e;
    }
    return rc;
}

int vg_lifecycle_ack(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len, uint64_t alert_id,
                     vg_lifecycle_emit_fn emit, void *ctx)
{
    for (int i = 0; i < VG_LIFECYCLE_SLOTS; i++) {
        vg_alert_slot_t *s = &slots[i];
        if (s->type == VG_ALERT_NONE || vg_lifecycle_slot_id(s, dev_id, dev_len) != alert_id)
            continue;
        if (s->acked)
            return VG_EEXIST;
        s->acked = 1;
        vg_alert_event_t ev;
        fill(&ev, s, alert_id, VG_AEV_ACK, NULL);
        return emit(ctx, &ev);
    }
    return VG_ENOTFOUND;
}

bool vg_lifecycle_mark_acked(vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS], const char *dev_id, size_t dev_len,
                             uint64_t alert_id)
{
    for (int i = 0; i < VG_LIFECYCLE_SLOTS; i++)
        if (slots[i].type != VG_ALERT_NONE && vg_lifecycle_slot_id(&slots[i], dev_id, dev_len) == alert_id) {
            slots[i].acked = 1;
            return true;
        }
    return false;
}
