/* tls.c — the server's TLS context (see tls.h): building an SSL_CTX from
 * files, swapping it on reload, and small certificate helpers. */
#include "net/tls.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MOD "tls"

/* ECDHE for forward secrecy and AEAD ciphers only; ECDSA first because the
 * certificates vigil issues are P-256. */
#define DEFAULT_CIPHERS                                                                                                \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Session id context: resumption is only offered within this server
 * (OpenSSL refuses to resume a session with a client certificate without one). */
static const unsigned char SID_CTX[] = "vigil-gateway";

struct vg_tls {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* current; under mu */
    uint64_t generation;
    vg_tls_opts_t o;
    char *cert_file, *key_file, *client_ca_file, *ciphers, *ciphersuites;
};

/* The first error on OpenSSL's queue as text (and the queue cleared). */
static void ossl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "unknown error");
    ERR_clear_error();
}

static char *dup_or_null(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = vg_malloc(VG_MEM_MQTT, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ALPN (RFC 7301): MQTT and HTTPS on one port, as IoT Core offers MQTT on
 * 443. A client that offers "mqtt" (or IoT Core's "x-amzn-mqtt-ca") gets
 * it and is served MQTT; one that offers "http/1.1" gets that; a client
 * without ALPN is served what its listener serves. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const char *const prefer[] = {"mqtt", "x-amzn-mqtt-ca", "http/1.1"};
    for (size_t k = 0; k < sizeof prefer / sizeof prefer[0]; k++) {
        size_t pl = strlen(prefer[k]);
        for (unsigned int i = 0; i < inlen;) {
            unsigned int n = in[i];
            if (i + 1 + n > inlen)
                return SSL_TLSEXT_ERR_NOACK;
            if (n == pl && memcmp(in + i + 1, prefer[k], pl) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)n;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + n;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

bool vg_tls_alpn_is_mqtt(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return (n == 4 && memcmp(p, "mqtt", 4) == 0) || (n == 14 && memcmp(p, "x-amzn-mqtt-ca", 14) == 0);
}

/* A new context from t's options, or NULL with why filled in. */
static SSL_CTX *build_ctx(vg_tls_t *t, char *why, size_t whylen)
{
    char reason[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ossl_reason(reason, sizeof reason);
        snprintf(why, whylen, "cannot create a TLS context: %s", reason);
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : DEFAULT_CIPHERS) ||
        (t->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, t->ciphersuites))) {
        ossl_reason(reason, sizeof reason);
        snprintf(why, whylen, "TLS cipher settings refused: %s", reason);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 (t->o.no_tickets ? SSL_OP_NO_TICKET : 0));
    /* Partial writes: the gateway writes its output buffer as far as the
     * socket takes it and keeps the rest, as it does without TLS; the buffer
     * may move (it grows) between a write that would block and its retry. */
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        ossl_reason(reason, sizeof reason);
        snprintf(why, whylen, "cannot load the TLS certificate %s: %s", t->cert_file, reason);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        ossl_reason(reason, sizeof reason);
        snprintf(why, whylen, "cannot load the TLS key %s: %s", t->key_file, reason);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ossl_reason(reason, sizeof reason);
        snprintf(why, whylen, "the TLS key %s does not match the certificate %s: %s", t->key_file, t->cert_file,
                 reason);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_session_id_context(ctx, SID_CTX, sizeof SID_CTX - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, t->o.session_cache_size ? t->o.session_cache_size : 20000);
    SSL_CTX_set_timeout(ctx, t->o.session_timeout_s ? t->o.session_timeout_s : 7200);
    /* One TLS 1.3 ticket per handshake (OpenSSL sends two by default): a
     * device reconnects from one place, and every ticket is bytes on the wire
     * and a signature-free but not free encryption. */
    SSL_CTX_set_num_tickets(ctx, t->o.no_tickets ? 0 : 1);
    if (t->o.client_auth != VG_TLS_CLIENT_NONE) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        if (t->client_ca_file) {
            if (SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1) {
                ossl_reason(reason, sizeof reason);
                snprintf(why, whylen, "cannot load the client CA file %s: %s", t->client_ca_file, reason);
                goto fail;
            }
            /* The CA names sent in the CertificateRequest: clients holding
             * several certificates pick the right one. */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
        if (t->o.trust && t->o.trust(t->o.trust_ctx, st) < 0) {
            snprintf(why, whylen, "cannot add the registered CAs to the TLS trust store");
            goto fail;
        }
        int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        if (t->o.client_auth == VG_TLS_CLIENT_REQUIRED)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int vg_tls_new(const vg_tls_opts_t *o, vg_tls_t **out, char *why, size_t whylen)
{
    *out = NULL;
    if (!o->cert_file || !o->key_file) {
        snprintf(why, whylen, "TLS needs a certificate and a key file");
        return VG_EINVAL;
    }
    vg_tls_t *t = vg_calloc(VG_MEM_MQTT, 1, sizeof *t);
    if (!t)
        return VG_ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->o = *o;
    t->cert_file = dup_or_null(o->cert_file);
    t->key_file = dup_or_null(o->key_file);
    t->client_ca_file = dup_or_null(o->client_ca_file);
    t->ciphers = dup_or_null(o->ciphers);
    t->ciphersuites = dup_or_null(o->ciphersuites);
    if (!t->cert_file || !t->key_file || (o->client_ca_file && !t->client_ca_file) || (o->ciphers && !t->ciphers) ||
        (o->ciphersuites && !t->ciphersuites)) {
        vg_tls_free(t);
        return VG_ENOMEM;
    }
    t->ctx = build_ctx(t, why, whylen);
    if (!t->ctx) {
        vg_tls_free(t);
        return VG_EINVAL;
    }
    t->generation = 1;
    *out = t;
    return VG_OK;
}

int vg_tls_reload(vg_tls_t *t, char *why, size_t whylen)
{
    SSL_CTX *nctx = build_ctx(t, why, whylen);
    if (!nctx) {
        VG_WARN(MOD, "reload failed, keeping the current certificates: %s", why);
        return VG_EINVAL;
    }
    pthread_mutex_lock(&t->mu);
    /* Carry the ticket keys over: tickets issued before the reload stay
     * valid (a reload is about certificates, not about forgetting clients). */
    unsigned char keys[80];
    if (SSL_CTX_get_tlsext_ticket_keys(t->ctx, keys, sizeof keys) == 1)
        SSL_CTX_set_tlsext_ticket_keys(nctx, keys, sizeof keys);
    OPENSSL_cleanse(keys, sizeof keys);
    SSL_CTX *old = t->ctx;
    t->ctx = nctx;
    t->generation++;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* connections made on it hold their own references */
    return VG_OK;
}

SSL *vg_tls_new_ssl(vg_tls_t *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

uint64_t vg_tls_generation(vg_tls_t *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t g = t->generation;
    pthread_mutex_unlock(&t->mu);
    return g;
}

void vg_tls_free(vg_tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    vg_free(t->cert_file);
    vg_free(t->key_file);
    vg_free(t->client_ca_file);
    vg_free(t->ciphers);
    vg_free(t->ciphersuites);
    pthread_mutex_destroy(&t->mu);
    vg_free(t);
}

int vg_tls_cert_sha256(X509 *cert, uint8_t out[32])
{
    unsigned int n = 0;
    if (X509_digest(cert, EVP_sha256(), out, &n) != 1 || n != 32)
        return VG_EINVAL;
    return VG_OK;
}

int vg_tls_cert_cn(X509 *cert, char *buf, size_t cap, size_t *len)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (i < 0)
        return VG_ENOTFOUND;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n < 0)
        return VG_EINVAL;
    int rc = VG_OK;
    if ((size_t)n >= cap || memchr(u, 0, (size_t)n)) {
        rc = (size_t)n >= cap ? VG_ETOOBIG : VG_EINVAL;
    } else {
        memcpy(buf, u, (size_t)n);
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    OPENSSL_free(u);
    return rc;
}
