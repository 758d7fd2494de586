/* housekeep.c — the housekeeping thread: a min-heap of session timers
 * (session expiry, 5.0 delayed wills) and the retained messages' expiry.
 * It sleeps until its next deadline and never wakes on a period. */
#include "gateway/gw.h"

#include <time.h>

void gw_hk_push(struct vg_server *s, session_t *se, uint8_t kind, int64_t at_ms)
{
    hk_item_t it = {.at_ms = at_ms, .epoch = se->epoch, .kind = kind, .sess = se};
    pthread_mutex_lock(&s->hk_mu);
    /* The thread sleeps until the top's deadline: a new top wakes it. */
    bool first = s->hk.len == 0 || at_ms < hk_heap_top(&s->hk).at_ms;
    if (hk_heap_push(&s->hk, it, VG_MEM_MQTT) != VG_OK) {
        pthread_mutex_unlock(&s->hk_mu);
        VG_WARN(MOD, "out of memory scheduling a session timer for %s", se->id);
        return;
    }
    gw_session_ref(se);
    pthread_mutex_unlock(&s->hk_mu);
    if (first)
        pthread_cond_signal(&s->hk_cv);
}

/* The housekeeping thread sleeps until its next deadline: the earliest
 * session timer (the heap's top) or the earliest retained message expiry,
 * whichever comes first, and with neither until it is signalled (gw_hk_push
 * of an earlier timer, gw_hk_note_expiry, stop). It never wakes on a period. */
void *gw_hk_main(void *arg)
{
    struct vg_server *s = arg;
    pthread_setname_np(pthread_self(), "vg-mqtt-hk"); /* for top -H, /proc/PID/task/TID/comm */
    pthread_mutex_lock(&s->hk_mu);
    while (!atomic_load(&s->stopping)) {
        int64_t now = gw_now_wall_ms();
        if (s->hk.len && hk_heap_top(&s->hk).at_ms <= now) {
            hk_item_t it = hk_heap_pop(&s->hk);
            pthread_mutex_unlock(&s->hk_mu);
            session_t *se = it.sess;
            pthread_mutex_lock(&se->mu);
            bool current = !se->online && !se->dead && se->epoch == it.epoch;
            vg_msg_t *will = NULL;
            if (current && it.kind == HK_WILL) {
                will = se->pending_will;
                se->pending_will = NULL;
            }
            pthread_mutex_unlock(&se->mu);
            if (will) {
                gw_publish_server_msg(s, NULL, will);
                vg_msg_unref(will);
            }
            if (current && it.kind == HK_EXPIRE)
                gw_session_end_if_offline(s, se);
            gw_session_unref(s, se);
            pthread_mutex_lock(&s->hk_mu);
            continue;
        }
        int64_t rx = s->retain ? vg_retain_next_expiry(s->retain) : 0;
        if (rx && rx <= now) {
            pthread_mutex_unlock(&s->hk_mu);
            vg_retain_sweep(s->retain, now);
            pthread_mutex_lock(&s->hk_mu);
            continue;
        }
        int64_t wake = s->hk.len ? hk_heap_top(&s->hk).at_ms : INT64_MAX;
        if (rx && rx < wake)
            wake = rx;
        s->hk_wake_at = wake;
        if (wake == INT64_MAX) {
            pthread_cond_wait(&s->hk_cv, &s->hk_mu);
        } else {
            /* at_ms and expiries are wall-clock ms, as the condition's clock */
            struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (long)(wake % 1000) * 1000000};
            pthread_cond_timedwait(&s->hk_cv, &s->hk_mu, &ts);
        }
        s->hk_wake_at = 0; /* awake: nobody needs to signal */
    }
    pthread_mutex_unlock(&s->hk_mu);
    return NULL;
}

/* A retained message now expires at expire_at_ms: wakes the housekeeping
 * thread if it sleeps past that. Called after the message was stored, so
 * either the thread's next look at the store sees it, or it is asleep with
 * its wake-up time in hk_wake_at (both under hk_mu). */
void gw_hk_note_expiry(struct vg_server *s, int64_t expire_at_ms)
{
    pthread_mutex_lock(&s->hk_mu);
    if (s->hk_wake_at && expire_at_ms < s->hk_wake_at)
        pthread_cond_signal(&s->hk_cv);
    pthread_mutex_unlock(&s->hk_mu);
}
