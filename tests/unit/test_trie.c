/* test_trie.c — mqtt/trie.h: a node's named children through growth,
 * shrinking and the return to the inline form; iteration; the owner
 * conversion; level arithmetic. (The walks are topic.c's and retain.c's and
 * are tested there.) */
#include "core/alloc.h"
#include "core/err.h"
#include "mqtt/trie.h"
#include "vt.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int tag; /* an owner field before the header, as topic.c and retain.c have */
    vg_trie_node_t t;
} onode_t;

static onode_t *onode_new(const char *key, size_t len, int tag)
{
    onode_t *n = vg_malloc(VG_MEM_MQTT, offsetof(onode_t, t.key) + len);
    if (!n)
        return NULL;
    n->tag = tag;
    vg_trie_node_init(&n->t, key, len, vg_trie_hash(key, len));
    return n;
}

static onode_t *find(onode_t *p, const char *key)
{
    size_t len = strlen(key);
    return VG_TRIE_OWNER(vg_trie_kid_find(&p->t, key, len, vg_trie_hash(key, len)), onode_t, t);
}

static size_t count_kids(const onode_t *p)
{
    size_t n = 0;
    for (vg_trie_node_t *c = vg_trie_kid_next(&p->t, NULL); c; c = vg_trie_kid_next(&p->t, c))
        n++;
    return n;
}

static void test_children(void)
{
    enum { N = 3000 };
    static onode_t *kid[N];
    char k[32];
    onode_t *root = onode_new("", 0, -1);
    VT_REQUIRE(root);
    VT_CHECK(find(root, "dev-0") == NULL);
    for (int i = 0; i < N; i++) {
        int len = snprintf(k, sizeof k, "dev-%d", i);
        kid[i] = onode_new(k, (size_t)len, i);
        VT_REQUIRE(kid[i] && vg_trie_kid_insert(&root->t, &kid[i]->t) == VG_OK);
        if (i == 0)
            VT_EQ_INT(root->t.kbits, 0); /* the first child is inline */
        if (i == 1)
            VT_CHECK(root->t.kbits > 0);
    }
    VT_EQ_INT(root->t.nkids, N);
    VT_EQ_INT(count_kids(root), N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "dev-%d", i);
        onode_t *f = find(root, k);
        bad += !f || f->tag != i;
    }
    VT_EQ_INT(bad, 0);
    VT_CHECK(find(root, "dev-") == NULL);
    VT_CHECK(find(root, "dev-30000") == NULL);
    unsigned big = root->t.kbits;

    /* Remove all but two in a scattered order: the table shrinks, the rest stay findable. */
    bool gone[N] = {0};
    for (int i = 0; i < N - 2; i++) {
        int j = (int)(((unsigned)i * 7919u) % N);
        while (gone[j])
            j = (j + 1) % N;
        gone[j] = true;
        vg_trie_kid_remove(&root->t, &kid[j]->t);
        if (i % 251 == 0)
            for (int q = 0; q < N; q++) {
                snprintf(k, sizeof k, "dev-%d", q);
                bad += (find(root, k) != NULL) == gone[q];
            }
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(root->t.nkids, 2);
    VT_CHECK(root->t.kbits < big);
    VT_EQ_INT(count_kids(root), 2);
    /* One left: back to the inline form. */
    int left[2], nl = 0;
    for (int i = 0; i < N; i++)
        if (!gone[i])
            left[nl++] = i;
    vg_trie_kid_remove(&root->t, &kid[left[0]]->t);
    VT_EQ_INT(root->t.kbits, 0);
    VT_EQ_INT(root->t.nkids, 1);
    snprintf(k, sizeof k, "dev-%d", left[1]);
    VT_CHECK(find(root, k) == kid[left[1]]);
    vg_trie_kid_remove(&root->t, &kid[left[1]]->t);
    VT_EQ_INT(root->t.nkids, 0);
    VT_CHECK(vg_trie_kid_next(&root->t, NULL) == NULL);
    for (int i = 0; i < N; i++)
        vg_free(kid[i]);
    vg_trie_kids_release(&root->t);
    vg_free(root);
}

static void test_release(void)
{
    size_t before = vg_mem_used(VG_MEM_MQTT);
    onode_t *root = onode_new("", 0, 0), *a = onode_new("a", 1, 1), *b = onode_new("b", 1, 2);
    VT_REQUIRE(root && a && b);
    VT_EQ_INT(vg_trie_kid_insert(&root->t, &a->t), VG_OK);
    VT_EQ_INT(vg_trie_kid_insert(&root->t, &b->t), VG_OK);
    /* Collect the children, then drop the table, as the subtree frees do. */
    onode_t *got[2];
    int n = 0;
    for (vg_trie_node_t *c = vg_trie_kid_next(&root->t, NULL); c; c = vg_trie_kid_next(&root->t, c))
        got[n++] = VG_TRIE_OWNER(c, onode_t, t);
    VT_EQ_INT(n, 2);
    VT_CHECK(got[0]->tag + got[1]->tag == 3);
    vg_trie_kids_release(&root->t);
    VT_EQ_INT(root->t.nkids, 0);
    VT_CHECK(vg_trie_kid_next(&root->t, NULL) == NULL);
    vg_free(a);
    vg_free(b);
    vg_free(root);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), before);
    VT_CHECK(VG_TRIE_OWNER((vg_trie_node_t *)NULL, onode_t, t) == NULL);
}

static void test_levels(void)
{
    const char *s = "a//bc/";
    size_t len = strlen(s);
    VT_EQ_INT(vg_trie_level_end(s, len, 0), 1);
    VT_EQ_INT(vg_trie_level_end(s, len, 2), 2); /* an empty level */
    VT_EQ_INT(vg_trie_level_end(s, len, 3), 5);
    VT_EQ_INT(vg_trie_level_end(s, len, 6), 6); /* the empty last level */
    VT_CHECK(vg_trie_is_plus("+", 1) && !vg_trie_is_plus("++", 2) && !vg_trie_is_plus("#", 1));
    VT_CHECK(vg_trie_is_hash("#", 1) && !vg_trie_is_hash("a#", 2));
    /* Keys with equal text but different length do not match. */
    onode_t *root = onode_new("", 0, 0), *a = onode_new("ab", 2, 1);
    VT_REQUIRE(root && a);
    VT_EQ_INT(vg_trie_kid_insert(&root->t, &a->t), VG_OK);
    VT_CHECK(vg_trie_kid_find(&root->t, "ab", 1, vg_trie_hash("ab", 1)) == NULL);
    VT_CHECK(find(root, "ab") == a);
    vg_trie_kid_remove(&root->t, &a->t);
    vg_free(a);
    vg_free(root);
}

int main(void)
{
    VT_RUN(test_children);
    VT_RUN(test_release);
    VT_RUN(test_levels);
    return VT_DONE();
}
