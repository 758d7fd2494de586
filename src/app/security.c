/* security.c — see security.h.
 *
 * The decisions, in the order a connection meets them:
 *   1. TLS handshake (gateway/tls_transport.c): the client certificate
 *      must chain to a trusted CA (the client CA file, default
 *      DATA-DIR/pki/ca.crt, plus every CA in the registry) and be within
 *      its validity; then cert_check here: a registered certificate must be
 *      active and its device active (else "revoked"); an unregistered one
 *      is accepted only if its issuer is a registered CA with just-in-time
 *      registration on (else "unknown_device").
 *   2. CONNECT (auth): a certificate names the device (CN); the client id
 *      must be that device id; an unregistered device of a JITR CA is
 *      registered now (on the auth pool: a registry write). Without a
 *      certificate, a user name and password (argon2id, on the pool) or a
 *      token in the password field ("vgt_..."). Without credentials:
 *      anonymous, allowed only on plain loopback listeners or with
 *      --allow-anonymous. Failures are answered late, more so the more a
 *      client id or source keeps failing (sec/ratelimit).
 *   3. Every PUBLISH, SUBSCRIBE and delivery (authz): the principal's
 *      policies (sec/policy), through its per-connection cache. Anonymous
 *      connections are not restricted (they exist only where allowed).
 * Every refusal is counted and written to the audit log (sec/audit). */
#include "app/security.h"

#include "app/authpool.h"
#include "app/principal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "net/tls.h"
#include "sec/audit.h"
#include "sec/pki.h"
#include "sec/policystore.h"
#include "sec/ratelimit.h"
#include "sec/registry.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MOD "security"

struct vg_security {
    const vg_config_t *cfg;
    vg_tls_t *tls; /* NULL = TLS off */
    char cert[PATH_MAX], key[PATH_MAX], client_ca[PATH_MAX];
    vg_tls_client_auth_t client_auth;
    vg_registry_t *reg;
    pthread_mutex_t store_mu;
    vg_policystore_t *store;   /* replaced on reload (under store_mu); principals hold their own sets */
    vg_policystore_t *retired; /* the store before the last reload (see vg_security_reload) */
    vg_audit_t *audit;
    vg_rl_t *rl;
    vg_authpool_t *pool;
    vg_server_t *server;
    atomic_uint_fast64_t st_ok_cert, st_ok_password, st_ok_token, st_ok_anonymous, st_jitr;
    atomic_uint_fast64_t st_fail[VG_SEC_FAIL__COUNT];
    atomic_uint_fast64_t st_kicked;
};

const char *vg_security_fail_name(vg_security_fail_t f)
{
    static const char *const names[VG_SEC_FAIL__COUNT] = {
        "anonymous_refused",  "bad_credentials", "unknown_device",      "device_not_active",
        "client_id_mismatch", "connect_denied",  "registration_failed", "internal"};
    return (unsigned)f < VG_SEC_FAIL__COUNT ? names[f] : "?";
}

/* ---- helpers -------------------------------------------------------------- */

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

static bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static vg_audit_str_t astr(const char *s, size_t len)
{
    return (vg_audit_str_t){s, s ? len : 0};
}

static void audit_auth(vg_security_t *sec, bool ok, const vg_server_auth_t *req, const char *client_id,
                       size_t client_id_len, const char *username, size_t username_len, const char *reason)
{
    if (!sec->audit)
        return;
    vg_audit_rec_t r = {.event = ok ? VG_AUDIT_AUTH_SUCCESS : VG_AUDIT_AUTH_FAILURE,
                        .client_id = astr(client_id, client_id_len),
                        .username = astr(username, username_len),
                        .source = astr(req ? req->peer : NULL, VG_AUDIT_CSTR),
                        .reason = astr(reason, VG_AUDIT_CSTR)};
    vg_audit_log(sec->audit, &r);
}

static vg_policystore_t *store_get(vg_security_t *sec)
{
    pthread_mutex_lock(&sec->store_mu);
    vg_policystore_t *st = sec->store;
    pthread_mutex_unlock(&sec->store_mu);
    return st;
}

int vg_security_load_policies(const vg_config_t *cfg, vg_policystore_t **out, char *err, size_t cap)
{
    vg_policystore_t *st = NULL;
    int rc = vg_policystore_new(&st);
    if (rc)
        return rc;
    rc = vg_policystore_add_builtins(st, cfg->telemetry_topic, cfg->control_topic, err, cap);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/policies", cfg->data_dir);
    size_t loaded = 0;
    if (rc == VG_OK)
        rc = vg_policystore_load_dir(st, dir, &loaded, err, cap);
    if (rc != VG_OK) {
        vg_policystore_free(st);
        return rc;
    }
    VG_INFO(MOD, "policies: %zu documents (%zu from %s)", vg_policystore_count(st), loaded, dir);
    *out = st;
    return VG_OK;
}

/* ---- the TLS trust store: the registry's CAs ----------------------------- */

static int add_ca(void *ctx, const vg_registry_ca_t *ca, const char *pem, size_t pem_len)
{
    X509_STORE *store = ctx;
    X509 *x = NULL;
    if (ca->status != VG_REG_ACTIVE || vg_pki_cert_parse(pem, pem_len, &x) != VG_OK)
        return 0;
    X509_STORE_add_cert(store, x); /* a CA also in the client CA file is added once */
    X509_free(x);
    return 0;
}

static int trust_registry(void *ctx, X509_STORE *store)
{
    vg_security_t *sec = ctx;
    return vg_registry_ca_scan(sec->reg, add_ca, store) < 0 ? -1 : 0;
}

static int count_ca(void *ctx, const vg_registry_ca_t *ca, const char *pem, size_t pem_len)
{
    (*(size_t *)ctx)++;
    return 0;
}

/* ---- the gateway's hooks -------------------------------------------------- */

/* During the handshake (and after a resumed one): a registered certificate
 * must be active and its device active; an unregistered one needs a JITR
 * issuer. */
static int cert_check(void *ctx, const vg_server_cert_t *v)
{
    vg_security_t *sec = ctx;
    vg_registry_cert_t rc;
    vg_registry_device_t *d = NULL;
    int result = VG_TLS_FAIL_UNKNOWN_DEVICE;
    if (vg_registry_cert_get(sec->reg, v->sha256, &rc) == VG_OK) {
        if (rc.status != VG_REG_ACTIVE)
            return VG_TLS_FAIL_REVOKED;
        d = vg_malloc(VG_MEM_SEC, sizeof *d);
        if (!d)
            return VG_TLS_FAIL_UNKNOWN_DEVICE;
        result = vg_registry_device_get(sec->reg, rc.device_id, rc.device_id_len, d) != VG_OK
                     ? VG_TLS_FAIL_UNKNOWN_DEVICE
                 : d->status != VG_REG_ACTIVE ? VG_TLS_FAIL_REVOKED
                                              : 0;
        vg_free(d);
        return result;
    }
    vg_registry_ca_t ca;
    if (v->issuer_known && vg_registry_ca_get(sec->reg, v->issuer_sha256, &ca) == VG_OK && ca.jitr &&
        ca.status == VG_REG_ACTIVE) {
        /* A known device id with a new certificate of a JITR CA: only if
         * that device is active (a revoked one stays out). */
        d = vg_malloc(VG_MEM_SEC, sizeof *d);
        if (!d)
            return VG_TLS_FAIL_UNKNOWN_DEVICE;
        if (vg_registry_device_get(sec->reg, v->cn, v->cn_len, d) == VG_OK && d->status != VG_REG_ACTIVE)
            result = VG_TLS_FAIL_REVOKED;
        else
            result = 0;
        vg_free(d);
    }
    return result;
}

static void tls_refused(void *ctx, vg_tls_fail_t why, const char *peer, const char *cn)
{
    vg_security_t *sec = ctx;
    if (!sec->audit)
        return;
    char reason[80];
    snprintf(reason, sizeof reason, "TLS handshake refused: %s", vg_tls_fail_name(why));
    vg_audit_rec_t r = {.event = VG_AUDIT_AUTH_FAILURE,
                        .client_id = astr(cn && cn[0] ? cn : NULL, VG_AUDIT_CSTR),
                        .source = astr(peer, VG_AUDIT_CSTR),
                        .reason = astr(reason, VG_AUDIT_CSTR)};
    vg_audit_log(sec->audit, &r);
}

/* A refusal: counted, audited, and the CONNACK codes. */
static void refuse(vg_security_t *sec, const vg_server_auth_t *req, const char *client_id, size_t idlen,
                   const char *username, size_t ulen, vg_security_fail_t why, vg_server_auth_result_t *res)
{
    static const char *const text[VG_SEC_FAIL__COUNT] = {"authentication required",
                                                         "bad user name or password",
                                                         "unknown device",
                                                         "device is not active",
                                                         "client id must be the device id",
                                                         "connect not allowed by policy",
                                                         "registration failed",
                                                         "internal error"};
    atomic_fetch_add_explicit(&sec->st_fail[why], 1, memory_order_relaxed);
    res->status = 1;
    res->principal = NULL;
    bool creds = why == VG_SEC_FAIL_BAD_CREDENTIALS;
    res->v3_rc = creds ? 4 : 5; /* bad user name or password : not authorized */
    res->v5_rc = creds ? 0x86 : why == VG_SEC_FAIL_CLIENT_ID ? 0x85 : why == VG_SEC_FAIL_INTERNAL ? 0x80 : 0x87;
    res->why = text[why];
    audit_auth(sec, false, req, client_id, idlen, username, ulen, text[why]);
}

/* Makes the principal of an identity proven one way or another and checks
 * its connect permission. Fills res; returns nothing (res says it). */
static void admit(vg_security_t *sec, const vg_server_auth_t *req, vg_principal_role_t role, const char *name,
                  size_t name_len, const vg_registry_device_t *dev, const char *method, vg_server_auth_result_t *res)
{
    const char *cid = req->client_id ? req->client_id : name;
    size_t cidlen = req->client_id ? req->client_id_len : name_len;
    if (role == VG_PRINCIPAL_DEVICE && (cidlen != name_len || memcmp(cid, name, name_len) != 0)) {
        refuse(sec, req, cid, cidlen, req->username, req->username_len, VG_SEC_FAIL_CLIENT_ID, res);
        return;
    }
    vg_principal_t *p = NULL;
    int rc = vg_principal_new(store_get(sec), role, name, name_len, cid, cidlen, req->username, req->username_len,
                              req->cert_cn, req->cert_cn_len, dev, method, &p);
    if (rc != VG_OK) {
        refuse(sec, req, cid, cidlen, req->username, req->username_len,
               rc == VG_EINVAL ? VG_SEC_FAIL_CLIENT_ID : VG_SEC_FAIL_INTERNAL, res);
        return;
    }
    /* HTTP has no CONNECT (no client id): its requests are checked as
     * publishes. */
    if (req->client_id && !vg_principal_check(p, VG_POLICY_CONNECT, cid, cidlen, NULL)) {
        vg_principal_free(p);
        refuse(sec, req, cid, cidlen, req->username, req->username_len, VG_SEC_FAIL_CONNECT_DENIED, res);
        return;
    }
    if (role == VG_PRINCIPAL_DEVICE)
        vg_registry_touch(sec->reg, name, name_len, vg_clock_wall_ms());
    if (req->peer_addr && sec->rl)
        vg_rl_auth_succeeded(sec->rl, cid, cidlen, vg_clock_mono_ns() / 1000000);
    res->status = 0;
    res->principal = p;
    char reason[64];
    snprintf(reason, sizeof reason, "%s as %s", method, role == VG_PRINCIPAL_DEVICE ? "device" : "operator");
    audit_auth(sec, true, req, cid, cidlen, req->username, req->username_len, reason);
}

/* A job for the pool: a copy of the request. */
typedef struct {
    vg_authpool_job_t base;
    vg_security_t *sec;
    vg_server_auth_t req; /* its pointers point into the fields below */
    char client_id[VG_REGISTRY_ID_MAX + 1], username[VG_REGISTRY_ID_MAX + 1], cert_cn[VG_REGISTRY_ID_MAX + 1];
    char peer[64];
    struct sockaddr_storage addr;
    uint8_t cert_sha256[32], issuer_sha256[32];
    X509 *cert; /* JITR: a reference */
    bool jitr;
    bool answered_later; /* the refusal was held back and this is its second run */
    vg_server_auth_result_t res;
    size_t password_len;
    char password[]; /* wiped before free */
} job_t;

static void job_free(job_t *j)
{
    X509_free(j->cert);
    OPENSSL_cleanse(j->password, j->password_len);
    vg_free(j);
}

static void job_answer(job_t *j)
{
    vg_server_auth_done(j->sec->server, j->req.token, &j->res);
    job_free(j);
}

/* Copies req into a new job (NULL when something does not fit or out of
 * memory). */
static job_t *job_new(vg_security_t *sec, const vg_server_auth_t *req, vg_authpool_fn fn)
{
    if ((req->client_id && req->client_id_len > VG_REGISTRY_ID_MAX) ||
        (req->username && req->username_len > VG_REGISTRY_ID_MAX) ||
        (req->cert_cn && req->cert_cn_len > VG_REGISTRY_ID_MAX) || req->password_len > 4096)
        return NULL;
    job_t *j = vg_calloc(VG_MEM_SEC, 1, sizeof *j + req->password_len + 1);
    if (!j)
        return NULL;
    j->base.fn = fn;
    j->sec = sec;
    j->req = *req;
    if (req->client_id) {
        memcpy(j->client_id, req->client_id, req->client_id_len);
        j->req.client_id = j->client_id;
    }
    if (req->username) {
        memcpy(j->username, req->username, req->username_len);
        j->req.username = j->username;
    }
    if (req->cert_cn) {
        memcpy(j->cert_cn, req->cert_cn, req->cert_cn_len);
        j->req.cert_cn = j->cert_cn;
    }
    if (req->password) {
        memcpy(j->password, req->password, req->password_len);
        j->password_len = req->password_len;
        j->req.password = (const uint8_t *)j->password;
    }
    snprintf(j->peer, sizeof j->peer, "%s", req->peer ? req->peer : "");
    j->req.peer = j->peer;
    if (req->peer_addr) {
        memcpy(&j->addr, req->peer_addr,
               req->peer_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
        j->req.peer_addr = (const struct sockaddr *)&j->addr;
    }
    if (req->cert_sha256) {
        memcpy(j->cert_sha256, req->cert_sha256, 32);
        j->req.cert_sha256 = j->cert_sha256;
    }
    if (req->issuer_sha256) {
        memcpy(j->issuer_sha256, req->issuer_sha256, 32);
        j->req.issuer_sha256 = j->issuer_sha256;
    }
    if (req->cert) {
        j->cert = (X509 *)req->cert;
        X509_up_ref(j->cert);
    }
    j->req.cert = NULL;
    return j;
}

/* A refused credential: answered after the delay the failure counters
 * give (0 at first, doubling while a client id or source keeps failing). */
static void job_refuse_late(vg_authpool_thread_t *t, job_t *j, vg_security_fail_t why, bool stopping)
{
    refuse(j->sec, &j->req, j->req.client_id, j->req.client_id_len, j->req.username, j->req.username_len, why, &j->res);
    uint32_t delay = 0;
    if (j->sec->rl && j->req.peer_addr)
        delay = vg_rl_auth_failed(j->sec->rl, j->req.peer_addr, j->req.client_id, j->req.client_id_len,
                                  vg_clock_mono_ns() / 1000000);
    j->answered_later = true;
    if (delay && !stopping && vg_authpool_later(t, &j->base, vg_clock_wall_ms() + delay) == VG_OK)
        return;
    job_answer(j);
}

/* Pool: a user name and password, or a token in the password field. */
static void password_job(vg_authpool_thread_t *t, vg_authpool_job_t *base, bool stopping)
{
    job_t *j = (job_t *)base;
    vg_security_t *sec = j->sec;
    if (j->answered_later) {
        job_answer(j); /* the held-back refusal */
        return;
    }
    if (stopping) {
        refuse(sec, &j->req, j->req.client_id, j->req.client_id_len, j->req.username, j->req.username_len,
               VG_SEC_FAIL_INTERNAL, &j->res);
        job_answer(j);
        return;
    }
    char name[VG_REGISTRY_ID_MAX + 1];
    vg_registry_role_t role = VG_REG_ROLE_DEVICE;
    bool token = j->password_len > 4 && memcmp(j->password, "vgt_", 4) == 0;
    int rc;
    if (token) {
        rc = vg_registry_token_verify(sec->reg, j->password, j->password_len, name, &role);
    } else if (!j->req.username) {
        rc = VG_EPROTO; /* a password without a user name */
    } else {
        rc = vg_registry_password_verify(sec->reg, j->username, j->req.username_len, j->password, j->password_len,
                                         &role);
        memcpy(name, j->username, j->req.username_len + 1);
    }
    if (rc != VG_OK) {
        job_refuse_late(t, j, VG_SEC_FAIL_BAD_CREDENTIALS, stopping);
        return;
    }
    size_t nlen = strlen(name);
    if (token && !j->req.username) {
        /* A token names its principal: it is the user name policies see. */
        memcpy(j->username, name, nlen + 1);
        j->req.username = j->username;
        j->req.username_len = nlen;
    }
    if (role == VG_REG_ROLE_OPERATOR) {
        admit(sec, &j->req, VG_PRINCIPAL_OPERATOR, name, nlen, NULL, token ? "token" : "password", &j->res);
    } else {
        vg_registry_device_t *d = vg_malloc(VG_MEM_SEC, sizeof *d);
        if (!d || vg_registry_device_get(sec->reg, name, nlen, d) != VG_OK) {
            vg_free(d);
            job_refuse_late(t, j, VG_SEC_FAIL_BAD_CREDENTIALS, stopping);
            return;
        }
        if (d->status != VG_REG_ACTIVE)
            refuse(sec, &j->req, j->req.client_id, j->req.client_id_len, j->req.username, j->req.username_len,
                   VG_SEC_FAIL_NOT_ACTIVE, &j->res);
        else
            admit(sec, &j->req, VG_PRINCIPAL_DEVICE, name, nlen, d, token ? "token" : "password", &j->res);
        vg_free(d);
    }
    if (j->res.status == 0)
        atomic_fetch_add_explicit(token ? &sec->st_ok_token : &sec->st_ok_password, 1, memory_order_relaxed);
    job_answer(j);
}

/* Pool: just-in-time registration of a device whose certificate a JITR CA
 * issued, at its first CONNECT. */
static void jitr_job(vg_authpool_thread_t *t, vg_authpool_job_t *base, bool stopping)
{
    job_t *j = (job_t *)base;
    vg_security_t *sec = j->sec;
    vg_registry_device_t *d = vg_malloc(VG_MEM_SEC, sizeof *d);
    vg_pki_cert_info_t info;
    vg_registry_cert_t rc;
    int r = d && !stopping ? VG_OK : VG_ENOMEM;
    if (r == VG_OK)
        r = vg_pki_cert_info(j->cert, NULL, &info);
    if (r == VG_OK) {
        memcpy(info.issuer_fingerprint, j->issuer_sha256, 32);
        info.has_issuer = true;
        r = vg_registry_cert_from_info(&rc, &info);
    }
    const char *cn = j->cert_cn;
    size_t cnlen = j->req.cert_cn_len;
    if (r == VG_OK) {
        if (vg_registry_device_get(sec->reg, cn, cnlen, d) == VG_OK) {
            r = d->status == VG_REG_ACTIVE ? vg_registry_cert_add(sec->reg, &rc) : VG_EPROTO;
        } else if ((r = vg_registry_device_init(d, cn, cnlen)) == VG_OK) {
            d->provenance = VG_REG_JITR;
            r = vg_registry_device_add(sec->reg, d, &rc, 1);
        }
        if (r == VG_EEXIST)
            r = VG_OK; /* another connection of the same device registered it first */
    }
    if (r == VG_OK && vg_registry_device_get(sec->reg, cn, cnlen, d) == VG_OK) {
        atomic_fetch_add_explicit(&sec->st_jitr, 1, memory_order_relaxed);
        VG_INFO(MOD, "registered device %.*s at its first connection (JITR)", (int)cnlen, cn);
        if (sec->audit) {
            vg_audit_rec_t ar = {.event = VG_AUDIT_REGISTRY,
                                 .client_id = astr(cn, cnlen),
                                 .source = astr(j->peer, VG_AUDIT_CSTR),
                                 .reason =
                                     astr("device registered just in time (certificate of a JITR CA)", VG_AUDIT_CSTR)};
            vg_audit_log(sec->audit, &ar);
        }
        admit(sec, &j->req, VG_PRINCIPAL_DEVICE, cn, cnlen, d, "certificate", &j->res);
        if (j->res.status == 0)
            atomic_fetch_add_explicit(&sec->st_ok_cert, 1, memory_order_relaxed);
    } else {
        refuse(sec, &j->req, j->req.client_id, j->req.client_id_len, NULL, 0,
               r == VG_EPROTO ? VG_SEC_FAIL_NOT_ACTIVE : VG_SEC_FAIL_REGISTRATION, &j->res);
    }
    vg_free(d);
    job_answer(j);
}

static int auth(void *ctx, const vg_server_auth_t *req, vg_server_auth_result_t *res)
{
    vg_security_t *sec = ctx;
    if (req->cert_sha256 && req->cert_cn) {
        vg_registry_device_t *d = vg_malloc(VG_MEM_SEC, sizeof *d);
        if (!d) {
            refuse(sec, req, req->client_id, req->client_id_len, NULL, 0, VG_SEC_FAIL_INTERNAL, res);
            return VG_OK;
        }
        vg_registry_cert_t rc;
        bool known = vg_registry_cert_get(sec->reg, req->cert_sha256, &rc) == VG_OK;
        if (known && vg_registry_device_get(sec->reg, rc.device_id, rc.device_id_len, d) == VG_OK) {
            if (d->status != VG_REG_ACTIVE || rc.status != VG_REG_ACTIVE)
                refuse(sec, req, req->client_id, req->client_id_len, NULL, 0, VG_SEC_FAIL_NOT_ACTIVE, res);
            else
                admit(sec, req, VG_PRINCIPAL_DEVICE, rc.device_id, rc.device_id_len, d, "certificate", res);
            if (res->status == 0)
                atomic_fetch_add_explicit(&sec->st_ok_cert, 1, memory_order_relaxed);
            vg_free(d);
            return VG_OK;
        }
        vg_free(d);
        /* Not registered: the handshake let it in, so its issuer is a JITR
         * CA (cert_check); the registration is a registry write. */
        if (!req->issuer_sha256 || !req->cert) {
            refuse(sec, req, req->client_id, req->client_id_len, NULL, 0, VG_SEC_FAIL_UNKNOWN_DEVICE, res);
            return VG_OK;
        }
        job_t *j = job_new(sec, req, jitr_job);
        if (!j || vg_authpool_submit(sec->pool, &j->base) != VG_OK) {
            if (j)
                job_free(j);
            refuse(sec, req, req->client_id, req->client_id_len, NULL, 0, VG_SEC_FAIL_INTERNAL, res);
            return VG_OK;
        }
        return VG_AGAIN;
    }
    /* A password needs a user name to be checked against, unless it is a
     * token; MQTT 5 allows a password alone, which then authenticates
     * nobody and the connection is anonymous (allowed or not below). */
    bool token = req->password && req->password_len > 4 && memcmp(req->password, "vgt_", 4) == 0;
    if (req->password && (req->username || token)) {
        job_t *j = job_new(sec, req, password_job);
        if (!j || vg_authpool_submit(sec->pool, &j->base) != VG_OK) {
            if (j)
                job_free(j);
            refuse(sec, req, req->client_id, req->client_id_len, req->username, req->username_len, VG_SEC_FAIL_INTERNAL,
                   res);
            return VG_OK;
        }
        return VG_AGAIN;
    }
    if ((!req->tls && req->loopback) || sec->cfg->allow_anonymous) {
        atomic_fetch_add_explicit(&sec->st_ok_anonymous, 1, memory_order_relaxed);
        res->status = 0;
        res->principal = NULL;
        return VG_OK;
    }
    refuse(sec, req, req->client_id, req->client_id_len, req->username, req->username_len, VG_SEC_FAIL_ANONYMOUS, res);
    return VG_OK;
}

static const vg_policy_action_t ACTION_OF[] = {
    [VG_ACT_PUBLISH] = VG_POLICY_PUBLISH,
    [VG_ACT_SUBSCRIBE] = VG_POLICY_SUBSCRIBE,
    [VG_ACT_RECEIVE] = VG_POLICY_RECEIVE,
    [VG_ACT_RETAIN] = VG_POLICY_RETAIN,
};

static bool authz(void *ctx, void *principal, vg_server_action_t action, const char *topic, size_t len)
{
    vg_security_t *sec = ctx;
    vg_principal_t *p = principal;
    if (!p)
        return true; /* anonymous: only where anonymous access is allowed at all */
    vg_policy_why_t why;
    if (vg_principal_check(p, ACTION_OF[action], topic, len, &why))
        return true;
    if (sec->audit) {
        char reason[160];
        if (why.effect == VG_POLICY_DENY_EXPLICIT && why.doc >= 0)
            snprintf(reason, sizeof reason, "denied by statement %d of policy %s", why.statement + 1,
                     vg_policy_doc_name(vg_policy_set_doc(p->set, (size_t)why.doc)));
        else
            snprintf(reason, sizeof reason, "no policy allows it");
        vg_audit_rec_t r = {.event = VG_AUDIT_POLICY_DENY,
                            .client_id = astr(p->client_id, VG_AUDIT_CSTR),
                            .username = astr(p->username[0] ? p->username : NULL, VG_AUDIT_CSTR),
                            .action = astr(vg_policy_action_name(ACTION_OF[action]), VG_AUDIT_CSTR),
                            .resource = astr(topic, len),
                            .reason = astr(reason, VG_AUDIT_CSTR)};
        vg_audit_log(sec->audit, &r);
    }
    return false;
}

static void principal_free(void *ctx, void *principal)
{
    vg_principal_free(principal);
}

const char *vg_security_device_of(const void *principal, size_t *len)
{
    const vg_principal_t *p = principal;
    *len = 0;
    if (!p || p->role != VG_PRINCIPAL_DEVICE)
        return NULL;
    *len = p->name_len;
    return p->name;
}

/* The registry saw another process (the CLI) revoke, disable or delete a
 * device, or revoke one of its certificates: its connection goes. */
static void registry_changed(void *ctx, const char *id, size_t len, vg_registry_change_t what)
{
    vg_security_t *sec = ctx;
    if (what == VG_REG_CHANGE_CAS) {
        /* `vigil ca register` in another process: the TLS trust store is
         * rebuilt (a reload: connections stay). */
        char why[512];
        if (sec->tls && vg_tls_reload(sec->tls, why, sizeof why) == VG_OK)
            VG_INFO(MOD, "registry: the registered CAs changed; TLS trust store rebuilt");
        return;
    }
    static const char *const text[] = {"device revoked", "device disabled", "device deleted", "certificate revoked"};
    if ((unsigned)what >= sizeof text / sizeof text[0])
        return;
    bool kicked = sec->server && vg_server_kick(sec->server, id, len);
    if (kicked)
        atomic_fetch_add_explicit(&sec->st_kicked, 1, memory_order_relaxed);
    VG_INFO(MOD, "registry: %s: %.*s%s", text[what], (int)len, id, kicked ? " (its connection closed)" : "");
    if (sec->audit) {
        vg_audit_rec_t r = {.event = kicked ? VG_AUDIT_DISCONNECT : VG_AUDIT_REGISTRY,
                            .client_id = astr(id, len),
                            .reason = astr(text[what], VG_AUDIT_CSTR)};
        vg_audit_log(sec->audit, &r);
    }
}

/* ---- lifetime ------------------------------------------------------------- */

/* Secure by default: a plain listener that is not on loopback would take
 * anonymous clients from the network; it needs --allow-anonymous. */
static int check_listeners(const vg_config_t *cfg, FILE *err)
{
    struct {
        const char *what, *host;
        bool off;
    } l[] = {{"--listen", cfg->listen_host, false},
             {"--ws-listen", cfg->ws_listen.host, cfg->ws_listen.off},
             {"--http-listen", cfg->http_listen.host, cfg->http_listen.off}};
    for (size_t i = 0; i < sizeof l / sizeof l[0]; i++) {
        if (l[i].off || host_is_loopback(l[i].host))
            continue;
        if (!cfg->allow_anonymous) {
            fprintf(err,
                    "vigil serve: %s %s is not a loopback address: plain listeners there would let anyone in "
                    "without credentials; use the TLS listeners (vigil ca init), or set allow_anonymous = true\n",
                    l[i].what, l[i].host);
            return VG_EINVAL;
        }
    }
    return VG_OK;
}

int vg_security_open(const vg_config_t *cfg, vg_security_t **out, FILE *err)
{
    *out = NULL;
    if (check_listeners(cfg, err) != VG_OK)
        return VG_EINVAL;
    vg_security_t *sec = vg_calloc(VG_MEM_SEC, 1, sizeof *sec);
    if (!sec)
        return VG_ENOMEM;
    sec->cfg = cfg;
    pthread_mutex_init(&sec->store_mu, NULL);
    char path[PATH_MAX + 32], why[512];
    snprintf(path, sizeof path, "%s/%s", cfg->data_dir, VG_REGISTRY_FILE);
    vg_registry_opts_t ro = {.touch_flush_ms = 5000};
    if (vg_registry_open(path, &ro, &sec->reg) != VG_OK) {
        fprintf(err, "vigil serve: cannot open the device registry %s\n", path);
        goto fail;
    }
    if (vg_security_load_policies(cfg, &sec->store, why, sizeof why) != VG_OK) {
        fprintf(err, "vigil serve: %s\n", why);
        goto fail;
    }
    vg_audit_config_t ac = {.dir = cfg->data_dir, .keep = 5};
    if (vg_audit_open(&ac, &sec->audit) != VG_OK) {
        fprintf(err, "vigil serve: cannot open the audit log in %s\n", cfg->data_dir);
        goto fail;
    }
    vg_rl_config_t rl = {.conn_per_sec = cfg->conn_rate_per_source,
                         .conn_burst = cfg->conn_rate_per_source * 2,
                         .max_conns_per_source = cfg->max_connections_per_source,
                         .fail_per_sec = 0.2,
                         .fail_burst = 3,
                         .fail_delay_ms = cfg->auth_fail_delay_ms,
                         .fail_delay_max_ms = 30000,
                         .pub_per_sec = cfg->publish_rate,
                         .pub_burst = cfg->publish_rate * 2,
                         .shared = true};
    if (vg_rl_new(&rl, &sec->rl) != VG_OK) {
        fprintf(err, "vigil serve: cannot set up the rate limits\n");
        goto fail;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (vg_authpool_new(ncpu < 1 ? 1 : ncpu > 8 ? 8 : (uint32_t)ncpu, &sec->pool) != VG_OK) {
        fprintf(err, "vigil serve: cannot start the authentication threads\n");
        goto fail;
    }
    if (!resolve(cfg->tls_cert, cfg->data_dir, "server.crt", sec->cert, sizeof sec->cert) ||
        !resolve(cfg->tls_key, cfg->data_dir, "server.key", sec->key, sizeof sec->key) ||
        !resolve(cfg->tls_client_ca, cfg->data_dir, "ca.crt", sec->client_ca, sizeof sec->client_ca)) {
        fprintf(err, "vigil serve: a TLS file path is too long\n");
        goto fail;
    }
    size_t ncas = 0;
    vg_registry_ca_scan(sec->reg, count_ca, &ncas);
    const char *mode = cfg->tls_client_auth;
    if (!mode[0])
        sec->client_auth = sec->client_ca[0] || ncas ? VG_TLS_CLIENT_REQUIRED : VG_TLS_CLIENT_NONE;
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
    if (sec->client_auth != VG_TLS_CLIENT_NONE && !sec->client_ca[0] && !ncas) {
        fprintf(err,
                "vigil serve: --tls-client-auth %s needs a client CA (--tls-client-ca, `vigil ca init` or "
                "`vigil ca register`)\n",
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
                        .client_auth = sec->client_auth,
                        .trust = trust_registry,
                        .trust_ctx = sec};
    if (vg_tls_new(&to, &sec->tls, why, sizeof why) != VG_OK) {
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
    so->auth = auth;
    so->authz = authz;
    so->principal_free = principal_free;
    so->auth_ctx = sec;
    if (cfg->conn_rate_per_source > 0 || cfg->max_connections_per_source)
        so->rl_conn = sec->rl;
    if (cfg->publish_rate > 0)
        so->rl_publish = sec->rl;
    if (!sec->tls)
        return;
    so->tls = sec->tls;
    so->cert_check = cert_check;
    so->tls_refused = tls_refused;
    so->cert_ctx = sec;
    so->mqtts_host = cfg->tls_listen.off ? NULL : cfg->tls_listen.host;
    so->mqtts_port = cfg->tls_listen.port;
    so->wss_host = cfg->wss_listen.off ? NULL : cfg->wss_listen.host;
    so->wss_port = cfg->wss_listen.port;
    so->https_host = cfg->https_listen.off ? NULL : cfg->https_listen.host;
    so->https_port = cfg->https_listen.port;
}

int vg_security_attach(vg_security_t *sec, vg_server_t *server)
{
    const vg_config_t *cfg = sec->cfg;
    sec->server = server;
    if (vg_registry_watch_start(sec->reg, registry_changed, sec) != VG_OK)
        VG_WARN(MOD, "cannot follow registry changes: revocations apply to new connections only");
    VG_INFO(MOD, "device registry: %zu devices", vg_registry_device_count(sec->reg));
    if (cfg->allow_anonymous)
        VG_WARN(MOD, "allow_anonymous = true: clients without credentials are accepted on every listener, "
                     "also from the network");
    else
        VG_INFO(MOD,
                "anonymous access is allowed on the plain loopback listeners only (%s:%u mqtt%s%s); every "
                "other connection must authenticate",
                cfg->listen_host, cfg->listen_port, cfg->ws_listen.off ? "" : ", websocket",
                cfg->http_listen.off ? "" : ", http");
    return VG_OK;
}

int vg_security_reload(vg_security_t *sec)
{
    int rc = VG_OK;
    char why[512];
    vg_policystore_t *st = NULL;
    if (vg_security_load_policies(sec->cfg, &st, why, sizeof why) == VG_OK) {
        /* Connections keep the sets they were given; a store is only read
         * while a principal is made (microseconds, on a worker or the
         * pool), so the store replaced now is freed at the next reload:
         * reloads come from an operator's SIGHUP, far apart. */
        pthread_mutex_lock(&sec->store_mu);
        vg_policystore_t *older = sec->retired;
        sec->retired = sec->store;
        sec->store = st;
        pthread_mutex_unlock(&sec->store_mu);
        vg_policystore_free(older);
        if (sec->audit) {
            vg_audit_rec_t r = {.event = VG_AUDIT_POLICY_LOAD, .reason = astr("policies reloaded", VG_AUDIT_CSTR)};
            vg_audit_log(sec->audit, &r);
        }
    } else {
        VG_WARN(MOD, "policy reload failed, keeping the current policies: %s", why);
        rc = VG_EINVAL;
    }
    if (sec->tls) {
        if (vg_tls_reload(sec->tls, why, sizeof why) == VG_OK)
            VG_INFO(MOD, "TLS certificate, key and client CAs reloaded (%s)", sec->cert);
        else
            rc = VG_EINVAL;
    }
    return rc;
}

void vg_security_stats(vg_security_t *sec, vg_security_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->auth_ok_certificate = atomic_load(&sec->st_ok_cert);
    out->auth_ok_password = atomic_load(&sec->st_ok_password);
    out->auth_ok_token = atomic_load(&sec->st_ok_token);
    out->auth_ok_anonymous = atomic_load(&sec->st_ok_anonymous);
    out->jitr_registered = atomic_load(&sec->st_jitr);
    out->revoked_disconnects = atomic_load(&sec->st_kicked);
    for (int i = 0; i < VG_SEC_FAIL__COUNT; i++)
        out->auth_fail[i] = atomic_load(&sec->st_fail[i]);
    out->devices = vg_registry_device_count(sec->reg);
    out->auth_pending = sec->pool ? vg_authpool_pending(sec->pool) : 0;
    vg_rl_stats_t rs;
    vg_rl_stats(sec->rl, &rs);
    out->conn_rate_refused = rs.conn_rate_refused;
    out->conn_max_refused = rs.conn_max_refused + rs.table_full_refused;
    out->auth_delayed = rs.auth_delayed;
    out->publish_throttled = rs.publish_refused;
    vg_audit_stats_t as;
    vg_audit_stats(sec->audit, &as);
    out->audit_written = as.written;
    out->audit_dropped = as.dropped + as.failed;
}

void vg_security_stop(vg_security_t *sec)
{
    if (!sec)
        return;
    vg_authpool_free(sec->pool); /* answers what waits: the server drops the answers, it is stopped */
    sec->pool = NULL;
}

void vg_security_close(vg_security_t *sec)
{
    if (!sec)
        return;
    vg_security_stop(sec);
    vg_tls_free(sec->tls);
    vg_registry_close(sec->reg);
    vg_policystore_free(sec->store);
    vg_policystore_free(sec->retired);
    vg_audit_close(sec->audit);
    vg_rl_free(sec->rl);
    pthread_mutex_destroy(&sec->store_mu);
    vg_free(sec);
}
