/* principal.c — see principal.h. */
#include "app/principal.h"

#include "core/alloc.h"
#include "core/err.h"

#include <string.h>

static bool copy(char *dst, size_t cap, const char *s, size_t len)
{
    if (!s) {
        dst[0] = 0;
        return true;
    }
    if (len >= cap)
        return false;
    memcpy(dst, s, len);
    dst[len] = 0;
    return true;
}

static vg_policy_str_t slice(const char *s)
{
    return s[0] ? (vg_policy_str_t){s, strlen(s)} : (vg_policy_str_t){NULL, 0};
}

int vg_principal_new(const vg_policystore_t *store, vg_principal_role_t role, const char *name, size_t name_len,
                     const char *client_id, size_t client_id_len, const char *username, size_t username_len,
                     const char *cert_cn, size_t cert_cn_len, const vg_registry_device_t *dev, const char *method,
                     vg_principal_t **out)
{
    *out = NULL;
    size_t extra = dev ? dev->strings_len : 0;
    vg_principal_t *p = vg_calloc(VG_MEM_SEC, 1, sizeof *p + extra);
    if (!p)
        return VG_ENOMEM;
    p->role = role;
    p->method = method;
    if (!copy(p->name, sizeof p->name, name, name_len) ||
        !copy(p->client_id, sizeof p->client_id, client_id, client_id_len) ||
        !copy(p->username, sizeof p->username, username, username_len) ||
        !copy(p->cert_cn, sizeof p->cert_cn, cert_cn, cert_cn_len)) {
        vg_free(p);
        return VG_EINVAL;
    }
    p->name_len = name_len;
    const char *groups[VG_REGISTRY_GROUPS_MAX];
    size_t ngroups = 0;
    if (dev) {
        /* The device's strings, copied: groups and attributes. */
        memcpy(p->attr_strings, dev->strings, dev->strings_len);
        for (uint32_t i = 0; i < dev->ngroups && i < VG_REGISTRY_GROUPS_MAX; i++)
            groups[ngroups++] = p->attr_strings + dev->groups[i].off;
        for (uint32_t i = 0; i < dev->nattrs && i < VG_REGISTRY_ATTRS_MAX; i++) {
            p->attrs[i].name = (vg_policy_str_t){p->attr_strings + dev->attr_keys[i].off, dev->attr_keys[i].len};
            p->attrs[i].value = (vg_policy_str_t){p->attr_strings + dev->attr_values[i].off, dev->attr_values[i].len};
        }
        p->vars.attrs = p->attrs;
        p->vars.n_attrs = dev->nattrs;
    }
    /* ${clientid} is the proven identity for a device (so that
     * "client/${clientid}" admits only its own id) and the CONNECT's client
     * id for an operator. */
    p->vars.clientid = role == VG_PRINCIPAL_DEVICE ? slice(p->name) : slice(p->client_id);
    p->vars.username = slice(p->username);
    p->vars.cert_cn = slice(p->cert_cn);
    vg_policy_principal_t who = {.role = role == VG_PRINCIPAL_DEVICE ? "device" : "operator",
                                 .groups = groups,
                                 .n_groups = ngroups,
                                 .device = role == VG_PRINCIPAL_DEVICE ? p->name : NULL};
    int rc = vg_policystore_set_for(store, &who, &p->set);
    if (rc != VG_OK) {
        vg_free(p);
        return rc;
    }
    vg_policy_cache_reset(&p->cache);
    *out = p;
    return VG_OK;
}

bool vg_principal_check(vg_principal_t *p, vg_policy_action_t action, const char *res, size_t len, vg_policy_why_t *why)
{
    return vg_policy_cache_check(&p->cache, p->set, action, res, len, &p->vars, why);
}

void vg_principal_free(vg_principal_t *p)
{
    if (!p)
        return;
    vg_policy_set_unref(p->set);
    vg_free(p);
}
