/* topic.h — the subscription tree: topic filters to subscribers.
 *
 * A trie with one node per topic level; each node's children live in a hash
 * table keyed by the level text, plus dedicated '+' and '#' children, so that
 * matching a topic costs O(levels x matching branches) whatever the number of
 * unrelated subscriptions (1,000,000 `alerts/<id>` filters cost the same to
 * match as ten). Not thread-safe: the broker holds a lock around it.
 * Subscribers are opaque pointers owned by the caller; the tree stores them
 * and never dereferences them. One (filter, subscriber) pair is stored once;
 * subscribing again replaces its QoS (MQTT 3.1.1 §3.8.4). */
#ifndef VG_MQTT_TOPIC_H
#define VG_MQTT_TOPIC_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_topic_tree vg_topic_tree_t;

int vg_topic_tree_new(vg_topic_tree_t **out);
void vg_topic_tree_free(vg_topic_tree_t *t);

/* Adds or updates (filter, sub) with qos. The filter must already be valid
 * (vg_mqtt_filter_valid). Returns VG_OK (new), VG_EEXIST (existing pair,
 * QoS updated), VG_ENOMEM, VG_EINVAL (a level over 65535 bytes). */
int vg_topic_tree_subscribe(vg_topic_tree_t *t, const char *filter, size_t len, void *sub, uint8_t qos);

/* Removes (filter, sub). VG_OK or VG_ENOTFOUND. Empty nodes are freed. */
int vg_topic_tree_unsubscribe(vg_topic_tree_t *t, const char *filter, size_t len, void *sub);

/* Calls fn(ctx, sub, qos) once per matching (filter, sub) pair. A subscriber
 * with several matching filters is reported once per filter; the caller
 * merges (keeping the maximum QoS). Topics beginning with '$' are not
 * matched by filters whose first level is '+' or '#'. */
void vg_topic_tree_match(const vg_topic_tree_t *t, const char *topic, size_t len,
                         void (*fn)(void *ctx, void *sub, uint8_t qos), void *ctx);

/* Number of (filter, subscriber) pairs stored. */
size_t vg_topic_tree_count(const vg_topic_tree_t *t);

#endif
