/* principal.h — who an authenticated connection is, as the gateway keeps
 * it: role, identity (device id or operator name), the variables its
 * policies refer to, its policy set, and its per-connection decision cache.
 *
 * Owns: one allocation per connection holding copies of every string the
 * policy variables point at (so nothing refers back into the registry),
 * and a reference to the policy set. Not: where the identity was proven
 * (app/security.c), the policies themselves (sec/policystore).
 *
 * Threads: made on any thread; after it is handed to the gateway it is
 * used by the connection's I/O worker only (the cache is unlocked). */
#ifndef VG_APP_PRINCIPAL_H
#define VG_APP_PRINCIPAL_H

#include "sec/policy.h"
#include "sec/policystore.h"
#include "sec/registry.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum { VG_PRINCIPAL_DEVICE = 0, VG_PRINCIPAL_OPERATOR } vg_principal_role_t;

typedef struct vg_principal {
    vg_principal_role_t role;
    const char *method;                /* "certificate", "password", "token" (static) */
    char name[VG_REGISTRY_ID_MAX + 1]; /* device id or operator name */
    size_t name_len;
    char client_id[VG_REGISTRY_ID_MAX + 1]; /* of its CONNECT */
    char username[VG_REGISTRY_ID_MAX + 1];
    char cert_cn[VG_REGISTRY_ID_MAX + 1];
    vg_policy_set_t *set;  /* a reference */
    vg_policy_vars_t vars; /* slices into the fields above and attr_strings */
    vg_policy_attr_t attrs[VG_REGISTRY_ATTRS_MAX];
    vg_policy_cache_t cache;
    char attr_strings[]; /* the device's group and attribute strings, as many bytes as it has */
} vg_principal_t;

/* Builds the principal of an identity: role, name, the client id it
 * connected with, its user name and certificate CN (each may be NULL),
 * the device entry (NULL for operators: groups and attributes come from
 * it), and its policy set from store (role "device" or "operator", the
 * device's groups, the device id). VG_OK with *out (the caller's:
 * vg_principal_free), VG_EINVAL (a string too long), VG_ENOMEM. */
int vg_principal_new(const vg_policystore_t *store, vg_principal_role_t role, const char *name, size_t name_len,
                     const char *client_id, size_t client_id_len, const char *username, size_t username_len,
                     const char *cert_cn, size_t cert_cn_len, const vg_registry_device_t *dev, const char *method,
                     vg_principal_t **out);

/* May p do action on res[0..len)? Through its cache; *why (may be NULL)
 * says what decided. Owner thread only. */
bool vg_principal_check(vg_principal_t *p, vg_policy_action_t action, const char *res, size_t len,
                        vg_policy_why_t *why);

void vg_principal_free(vg_principal_t *p);

#endif
