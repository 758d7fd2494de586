/* policystore.h — the policy documents of a server and who they attach to:
 * the built-in ones plus every <data-dir>/policies/NAME.json, and the policy
 * set of a principal (its role, its groups, its device id).
 *
 * Owns: one reference to each document it holds. Does not own: the
 * documents' grammar (sec/policy.h), who a principal is or which role and
 * groups it has (the registry), the sets it builds (the caller's).
 *
 * Attachment is written in each document, not in a separate file, so that a
 * policy and the principals it governs are read and reviewed together:
 *
 *   {"Version": "2012-10-17", "Statement": [...],
 *    "Attach": {"roles": ["operator"], "groups": ["ward-3"], "devices": ["dev-17"]}}
 *
 * A document applies to a principal if its role is in "roles", one of its
 * groups in "groups" or its device id in "devices" (exact, case-sensitive
 * compares). A document without "Attach" is loaded but applies to nobody
 * (it can still be tested by name). The built-ins are VG_POLICY_BUILTIN_DEVICE
 * (roles: device) and VG_POLICY_BUILTIN_OPERATOR (roles: operator); a file of
 * the same name replaces one, its Attach included, so an installation can
 * narrow or widen them without a code change.
 *
 * Loading is strict: one file that does not parse fails the whole load
 * (with the file's message) and the store is left as it was. Ignoring it
 * would silently drop whatever Deny statements it held.
 *
 * Threads: add and load while no one else uses the store; after that any
 * number of threads may build sets and find documents concurrently (they
 * only read). A reload builds a new store and swaps it in; sets built from
 * the old one stay valid, as they hold their own references. */
#ifndef VG_SEC_POLICYSTORE_H
#define VG_SEC_POLICYSTORE_H

#include "sec/policy.h"

#include <stddef.h>

typedef struct vg_policystore vg_policystore_t;

/* Who a set is built for: role (may be NULL), n_groups group names, device
 * id (may be NULL). NUL-terminated strings, borrowed for the call. */
typedef struct {
    const char *role;
    const char *const *groups;
    size_t n_groups;
    const char *device;
} vg_policy_principal_t;

/* An empty store (no built-ins; see vg_policystore_add_builtins). *out is
 * the caller's, freed with vg_policystore_free. VG_OK or VG_ENOMEM. */
int vg_policystore_new(vg_policystore_t **out);
/* Frees the store and drops its references. NULL is accepted. */
void vg_policystore_free(vg_policystore_t *st);

/* Adds (or replaces, by name) doc; the store takes its own reference.
 * VG_OK or VG_ENOMEM. */
int vg_policystore_add(vg_policystore_t *st, vg_policy_doc_t *doc);

/* Adds the two built-in documents for these topics (see policy.h).
 * Returns as vg_policy_default_device; err gets the message. */
int vg_policystore_add_builtins(vg_policystore_t *st, const char *telemetry_topic, const char *ack_topic, char *err,
                                size_t cap);

/* Loads every regular file dir/NAME.json (names starting with '.' are
 * skipped; NAME must be a valid policy name), in name order, each replacing
 * a document of the same name. A missing dir is an empty one (VG_OK, *loaded
 * 0). On success *loaded (may be NULL) is the number of files. On failure
 * nothing was added and err holds one line naming the file: VG_EMALFORMED,
 * VG_ETOOBIG, VG_EINVAL (a bad file name) as vg_policy_parse, VG_EIO,
 * VG_ENOMEM, VG_ELIMIT (more than VG_POLICYSTORE_MAX_FILES). */
#define VG_POLICYSTORE_MAX_FILES 1024
int vg_policystore_load_dir(vg_policystore_t *st, const char *dir, size_t *loaded, char *err, size_t cap);

/* Documents in the store, in the order added (a replacement keeps its
 * place); borrowed while the store lives. */
size_t vg_policystore_count(const vg_policystore_t *st);
const vg_policy_doc_t *vg_policystore_doc(const vg_policystore_t *st, size_t i);
/* The document named name, or NULL. */
const vg_policy_doc_t *vg_policystore_find(const vg_policystore_t *st, const char *name);

/* Builds the set of principal p: the documents attached to its role, then
 * to each of its groups, then to its device id, each once, in store order
 * within each. *out is the caller's (vg_policy_set_unref). A principal
 * nothing attaches to gets an empty set, which denies everything. Returns
 * VG_OK, VG_ETOOBIG (more than VG_POLICY_MAX_SET_DOCS), VG_ENOMEM. */
int vg_policystore_set_for(const vg_policystore_t *st, const vg_policy_principal_t *p, vg_policy_set_t **out);

/* A set of the named documents, in that order (for `vigil policy test
 * --policy NAME`): VG_ENOTFOUND if one is not in the store. */
int vg_policystore_set_of(const vg_policystore_t *st, const char *const *names, size_t n, vg_policy_set_t **out);

#endif
