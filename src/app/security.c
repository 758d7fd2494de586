/* security.c — see security.h. */
#include "app/security.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"
#include "net/tls.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MOD "security"

struct vg_security {
    vg_tls_t *tls; /* NULL = TLS off */
    char cert[PATH_MAX], key[PATH_MAX], client_ca[PATH_MAX];
    vg_tls_client_auth_t client_auth;
};

/* path, or DATA-DIR/pki/name when path is empty and that file exists
 * ("" when neither). Returns false if the result does not fit. */
static bool resolve(const char *path, const char *data_dir, const char *name, char *out, size_t cap)
{
    if (path[0])
        return (size_t)snprintf(out, cap, "%s", path) < cap;
    if ((size_t)snprintf(out, cap, "%s/pki/%s", data_dir, name) >= cap)
        return false;
    if (access(out, R_OK) != 0)
        out[0] = 0;
    return true;
}

int vg_security_open(const vg_config_t *cfg, vg_security_t **out, FILE *err)
{
    *out = NULL;
    vg_security_t *sec = vg_calloc(VG_MEM_MQTT, 1, sizeof *sec);
    if (!sec)
        return VG_ENOMEM;
    if (!resolve(cfg->tls_cert, cfg->data_dir, "server.crt", sec->cert, sizeof sec->cert) ||
        !resolve(cfg->tls_key, cfg->data_dir, "server.key", sec->key, sizeof sec->key) ||
        !resolve(cfg->tls_client_ca, cfg->data_dir, "ca.crt", sec->client_ca, sizeof sec->client_ca)) {
        fprintf(err, "vigil serve: a TLS file path is too long\n");
        goto fail;
    }
    const char *mode = cfg->tls_client_auth;
    if (!mode[0])
        sec->client_auth = sec->client_ca[0] ? VG_TLS_CLIENT_REQUIRED : VG_TLS_CLIENT_NONE;
    else if (strcmp(mode, "none") == 0)
        sec->client_auth = VG_TLS_CLIENT_NONE;
    else if (strcmp(mode, "optional") == 0)
        sec->client_auth = VG_TLS_CLIENT_OPTIONAL;
    else if (strcmp(mode, "required") == 0)
        sec->client_auth = VG_TLS_CLIENT_REQUIRED;
    else {
        fprintf(err, "vigil serve: --tls-client-auth: expected none, optional or required, got '%s'\n", mode);
        goto fail;
    }
    if (sec->client_auth != VG_TLS_CLIENT_NONE && !sec->client_ca[0]) {
        fprintf(err, "vigil serve: --tls-client-auth %s needs a client CA (--tls-client-ca, or `vigil ca init`)\n",
                mode);
        goto fail;
    }
    if (!sec->cert[0] || !sec->key[0]) {
        if (cfg->tls_cert[0] || cfg->tls_key[0]) {
            fprintf(err, "vigil serve: TLS needs both --tls-cert and --tls-key\n");
            goto fail;
        }
        *out = sec; /* no certificate: TLS off (said at start-up) */
        return VG_OK;
    }
    vg_tls_opts_t to = {.cert_file = sec->cert,
                        .key_file = sec->key,
                        .client_ca_file = sec->client_ca[0] ? sec->client_ca : NULL,
                        .client_auth = sec->client_auth};
    char why[512];
    int rc = vg_tls_new(&to, &sec->tls, why, sizeof why);
    if (rc) {
        fprintf(err, "vigil serve: %s\n", why);
        goto fail;
    }
    *out = sec;
    return VG_OK;
fail:
    vg_security_close(sec);
    return VG_EINVAL;
}

bool vg_security_tls_on(const vg_security_t *sec)
{
    return sec && sec->tls;
}

void vg_security_server_opts(vg_security_t *sec, const vg_config_t *cfg, vg_server_opts_t *so)
{
    so->tls_handshake_timeout_ms = cfg->tls_handshake_timeout_ms;
    if (!sec->tls)
        return;
    so->tls = sec->tls;
    so->mqtts_host = cfg->tls_listen.off ? NULL : cfg->tls_listen.host;
    so->mqtts_port = cfg->tls_listen.port;
    so->wss_host = cfg->wss_listen.off ? NULL : cfg->wss_listen.host;
    so->wss_port = cfg->wss_listen.port;
    so->https_host = cfg->https_listen.off ? NULL : cfg->https_listen.host;
    so->https_port = cfg->https_listen.port;
}

int vg_security_reload(vg_security_t *sec)
{
    if (!sec->tls)
        return VG_OK;
    char why[512];
    int rc = vg_tls_reload(sec->tls, why, sizeof why);
    if (rc == VG_OK)
        VG_INFO(MOD, "TLS certificate, key and client CAs reloaded (%s)", sec->cert);
    return rc;
}

void vg_security_close(vg_security_t *sec)
{
    if (!sec)
        return;
    vg_tls_free(sec->tls);
    vg_free(sec);
}
