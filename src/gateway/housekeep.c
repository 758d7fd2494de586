/* housekeep.c — the housekeeping thread: a min-heap of session timers
 * (session expiry, 5.0 delayed wills) and the retained messages' expiry.
 * It sleeps until its next deadline and never wakes on a period. */
#include "gateway/gw.h"

#include <time.h>

void gw_hk_push(struct vg_server *s, session_t *se, uint8_t kind, int64_t at_ms)
{
    pthread_mutex_lock(&s->hk_mu);
    if (s->hk_n == s->hk_cap) {
        size_t ncap = s->hk_cap ? s->hk_cap * 2 : 64;
        hk_item_t *nh = vg_realloc(VG_MEM_MQTT, s->hk, ncap * sizeof *nh);
        if (!nh) {
            pthread_mutex_unlock(&s->hk_mu);
            VG_WARN(MOD, "out of memory scheduling a session timer for %s", se->id);
            return;
        }
        s->hk = nh;
        s->hk_cap = ncap;
    }
    gw_session_ref(se);
    hk_item_t it = {.at_ms = at_ms, .epoch = se->epoch, .kind = kind, .sess = se};
    size_t i = s->hk_n++;
    while (i > 0 && s->hk[(i - 1) / 2].at_ms > it.at_ms) {
        s->hk[i] = s->hk[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->hk[i] = it;
    bool first = i == 0;
    pthread_mutex_unlock(&s->hk_mu);
    if (first)
        pthread_cond_signal(&s->hk_cv);
}

static hk_item_t hk_pop_locked(struct vg_server *s)
{
    hk_item_t top = s->hk[0];
    hk_item_t last = s->hk[--s->hk_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hk_item_t *mv = &last;
        if (l < s->hk_n && s->hk[l].at_ms < mv->at_ms) {
            m = l;
            mv = &s->hk[l];
        }
        if (r < s->hk_n && s->hk[r].at_ms < mv->at_ms)
            m = r;
        if (m == i)
            break;
        s->hk[i] = s->hk[m];
        i = m;
    }
    if (s->hk_n)
        s->hk[i] = last;
    return top;
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
        if (s->hk_n && s->hk[0].at_ms <= now) {
            hk_item_t it = hk_pop_locked(s);
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
        int64_t gw_wake = s->hk_n ? s->hk[0].at_ms : INT64_MAX;
        if (rx && rx < gw_wake)
            gw_wake = rx;
        s->hk_wake_at = gw_wake;
        if (gw_wake == INT64_MAX) {
            pthread_cond_wait(&s->hk_cv, &s->hk_mu);
        } else {
            /* at_ms and expiries are wall-clock ms, as the condition's clock */
            struct timespec ts = {.tv_sec = gw_wake / 1000, .tv_nsec = (long)(gw_wake % 1000) * 1000000};
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
 * its gw_wake-up time in hk_wake_at (both under hk_mu). */
void gw_hk_note_expiry(struct vg_server *s, int64_t expire_at_ms)
{
    pthread_mutex_lock(&s->hk_mu);
    if (s->hk_wake_at && expire_at_ms < s->hk_wake_at)
        pthread_cond_signal(&s->hk_cv);
    pthread_mutex_unlock(&s->hk_mu);
}
