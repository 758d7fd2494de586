/* retain.h — the retained-message store: one message per topic, in memory.
 *
 * Owns: a copy of each retained message (an opaque blob in the caller's
 * serialization), its expiry time, the limits and their counters. Does not
 * own: topic validation (topics arrive checked by vg_mqtt_topic_valid and
 * filters by vg_mqtt_filter_valid), the meaning of the blob, persistence
 * (the gateway mirrors sets and deletes into the kv store) or delivery.
 *
 * Thread-safe: sets, deletes and sweeps take an internal write lock, matches
 * and stats a read lock, so many I/O threads may match at once.
 *
 * Topics are kept in a trie with one node per level whose children live in a
 * hash table, so a literal filter costs O(levels) and `status/+` costs
 * O(children of status) however many unrelated topics are retained. Expiring
 * messages are also kept in a min-heap by expiry so that a sweep costs
 * O(expired x log n), not a scan. Memory, measured by test_million in
 * tests/unit/test_retain.c for 1,000,000 topics shaped like
 * "fleet/site7/dev0001234/state" with 20-byte blobs: 141 bytes per entry as
 * counted by vg_malloc (92 of them beyond the topic and blob bytes: two
 * nodes, the message header, a hash slot), about 235 bytes of RSS. (Before
 * the trie was shared with topic.c: 135 and 220; a node's header is now the
 * shared 24 bytes, 5 more than this store alone needed.) */
#ifndef VG_MQTT_RETAIN_H
#define VG_MQTT_RETAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_retain vg_retain_t;

typedef struct {
    size_t max_messages; /* retained topics at most; 0 = unlimited */
    size_t max_bytes;    /* sum of topic length + blob length over all entries at most; 0 = unlimited */
} vg_retain_limits_t;

/* Creates an empty store. lim may be NULL (no limits); it is copied. On
 * success *out is owned by the caller and released with vg_retain_free.
 * Returns VG_OK, VG_ENOMEM or VG_EIO (the lock could not be created). */
int vg_retain_new(const vg_retain_limits_t *lim, vg_retain_t **out);

/* Frees the store and every message in it. NULL is accepted. No other call
 * may be running on r. */
void vg_retain_free(vg_retain_t *r);

/* Sets or replaces the retained message of topic[0..tlen) with a copy of
 * blob[0..blen); the caller keeps its buffers. expire_at_ms is the wall-clock
 * time (ms) from which on the message is no longer delivered, 0 (or a
 * negative value) = never.
 * blen == 0 deletes the topic's message (MQTT: a retained PUBLISH with an
 * empty payload), whatever expire_at_ms says.
 * Returns VG_OK; VG_ENOTFOUND for a delete of a topic without a message;
 * VG_ELIMIT when storing would exceed max_messages or max_bytes (counted in
 * `rejected`; the store is unchanged, an old message for the topic stays);
 * VG_EINVAL for an empty topic or one over 65,535 bytes (the MQTT limit);
 * VG_ETOOBIG for a blob of 4 GiB or more; VG_ENOMEM (store unchanged).
 * The topic must otherwise be a valid topic name (no '+' or '#'); that is
 * not checked again here. Entries that expired but were not yet swept still
 * count against the limits. */
int vg_retain_set(vg_retain_t *r, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t expire_at_ms);

/* Called once per retained message matching a filter. topic (NUL-terminated
 * for convenience) and blob are valid only during the call: copy what you need. Return 0 to go on, any
 * other value to stop the match early (e.g. the client's queue is full). */
typedef int (*vg_retain_match_fn)(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen,
                                  int64_t expire_at_ms);

/* Calls fn for every retained message whose topic matches filter[0..flen)
 * (MQTT §4.7: '+' is exactly one level, '#' this level and every level below
 * including the parent itself — "a/#" matches "a"; a topic starting with '$'
 * is not matched by a filter whose first level is '+' or '#'; empty levels
 * are levels). Messages with 0 < expire_at_ms <= now_ms are skipped. The
 * order of calls is unspecified. fn runs under the read lock: it must not
 * call into this store and should be quick (sets wait for it).
 * *matched (may be NULL) gets the number of calls made.
 * Returns VG_OK, or VG_ENOMEM if a buffer for a topic longer than 512 bytes
 * could not be allocated (the calls made so far stand). */
int vg_retain_match(vg_retain_t *r, const char *filter, size_t flen, int64_t now_ms, vg_retain_match_fn fn, void *ctx,
                    size_t *matched);

/* Removes every message with 0 < expire_at_ms <= now_ms; returns how many. */
size_t vg_retain_sweep(vg_retain_t *r, int64_t now_ms);

/* The earliest expire_at_ms of the messages held (swept or not), 0 if none
 * expires: when the next vg_retain_sweep has something to do. O(1). */
int64_t vg_retain_next_expiry(vg_retain_t *r);

/* Current number of retained messages and their bytes (as counted for
 * max_bytes; expired but not yet swept messages included), and the number
 * of sets refused with VG_ELIMIT since creation. Any pointer may be NULL. */
void vg_retain_stats(vg_retain_t *r, size_t *count, size_t *bytes, uint64_t *rejected);

#endif
