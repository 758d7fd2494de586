/* tls.h — the server's TLS context: certificate, key, client-certificate
 * trust, protocol and cipher policy, session resumption, reload.
 *
 * Owns one OpenSSL SSL_CTX at a time, built from files named in the
 * options. vg_tls_reload builds a new context from the same files and
 * swaps it in: connections made before keep the context they were made with
 * (each SSL holds a reference to its SSL_CTX), so a reload drops nobody,
 * and a reload that fails (a missing or mismatched file) keeps the old
 * context and says why. The session-ticket keys are carried over to the new
 * context, so a client that resumed before a reload still resumes after it.
 *
 * What it does not own: sockets and handshakes (the gateway drives SSL
 * objects on its own non-blocking I/O loops: gateway/tls_transport.c), and
 * which certificates belong to which device (the registry decides that
 * through the gateway's certificate hook; this module only checks that a
 * client certificate chains to a trusted CA and is within its validity).
 *
 * Policy: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and AEAD ciphers only
 * (forward secrecy, no CBC), renegotiation refused, the server's cipher
 * order; TLS 1.3 with OpenSSL's default suites. Stateless session tickets
 * (one per handshake) plus a server-side session cache for TLS 1.2 clients
 * without ticket support. Read and write buffers are released while a
 * connection is idle (SSL_MODE_RELEASE_BUFFERS): 10,000 idle TLS
 * connections must not hold 10,000 × 34 KiB of buffers.
 *
 * Thread safety: vg_tls_new_ssl and vg_tls_reload may be called from any
 * threads at once. */
#ifndef VG_NET_TLS_H
#define VG_NET_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_tls vg_tls_t;

typedef enum {
    VG_TLS_CLIENT_NONE = 0, /* no client certificate asked for */
    VG_TLS_CLIENT_OPTIONAL, /* asked for; a client without one may still authenticate otherwise (password) */
    VG_TLS_CLIENT_REQUIRED, /* a handshake without a valid client certificate fails */
} vg_tls_client_auth_t;

/* Adds extra trust anchors (e.g. the CAs users registered) to the store
 * each time a context is built. Returns 0, or negative to fail the build. */
typedef int (*vg_tls_trust_fn)(void *ctx, X509_STORE *store);

typedef struct {
    const char *cert_file;      /* server certificate chain, PEM (leaf first) */
    const char *key_file;       /* its private key, PEM */
    const char *client_ca_file; /* CAs client certificates must chain to, PEM; NULL = none */
    vg_tls_client_auth_t client_auth;
    vg_tls_trust_fn trust; /* NULL = none */
    void *trust_ctx;
    const char *ciphers;         /* TLS 1.2 cipher list; NULL = the default above */
    const char *ciphersuites;    /* TLS 1.3 suites; NULL = OpenSSL's default */
    bool no_tickets;             /* true: no session tickets (resumption by session id only) */
    uint32_t session_cache_size; /* TLS 1.2 server session cache entries (0 = 20,000) */
    uint32_t session_timeout_s;  /* resumption lifetime (0 = 7,200 s) */
} vg_tls_opts_t;

/* Builds the context from the files in o (copied). On failure logs the
 * file and OpenSSL's reason, writes one line into why and returns VG_EINVAL
 * (VG_ENOMEM when out of memory). *out is the caller's: vg_tls_free. */
int vg_tls_new(const vg_tls_opts_t *o, vg_tls_t **out, char *why, size_t whylen);

/* Rebuilds the context from the same files and options; new connections
 * get it, existing ones keep theirs. On failure the current context stays,
 * why says what failed, and the result is negative. */
int vg_tls_reload(vg_tls_t *t, char *why, size_t whylen);

/* A new server-side SSL for the connected socket fd, in accept state, on
 * the current context; NULL when out of memory. The caller owns it
 * (SSL_free). */
SSL *vg_tls_new_ssl(vg_tls_t *t, int fd);

/* Whether the handshake of ssl agreed on MQTT by ALPN ("mqtt" or
 * "x-amzn-mqtt-ca"): the connection is MQTT whatever its listener. */
bool vg_tls_alpn_is_mqtt(SSL *ssl);

/* Times the context was built successfully (1 after vg_tls_new). */
uint64_t vg_tls_generation(vg_tls_t *t);

void vg_tls_free(vg_tls_t *t);

/* The SHA-256 fingerprint of a certificate's DER encoding. */
int vg_tls_cert_sha256(X509 *cert, uint8_t out[32]);

/* The certificate's subject common name into buf (NUL-terminated);
 * VG_ENOTFOUND if it has none, VG_ETOOBIG if it does not fit. */
int vg_tls_cert_cn(X509 *cert, char *buf, size_t cap, size_t *len);

#endif
