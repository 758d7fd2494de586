/* tls_transport.c — TLS under the gateway's MQTT, WebSocket and HTTP
 * listeners: the handshake driven on the worker's own non-blocking loop,
 * the client certificate check, and encrypted reads and writes for
 * conn.c's input and output paths.
 *
 * Why on the I/O loop and not on a handshake thread: a handshake is a few
 * hundred microseconds of CPU (one ECDHE and one signature) and otherwise
 * waits for the peer; with a non-blocking socket OpenSSL returns WANT_READ
 * or WANT_WRITE instead of waiting, so a slow or stalled client costs its
 * SSL object and a timer, never time of the worker (10,000 stalled
 * handshakes do not delay a legitimate device). Handing sockets to another
 * thread would add two hand-offs per connection for nothing.
 *
 * Owns: the SSL of each connection on a TLS listener (xport_t.ssl), the
 * handshake deadline (the connection's timer runs tls_handshake_timeout_ms
 * until the handshake ends, then the CONNECT deadline), the worker's list
 * of connections whose input OpenSSL has already decrypted (epoll cannot
 * see those bytes: see gw_tls_again), and the TLS counters.
 * Not: the context, certificates and reload (net/tls.c), what a certificate
 * means (the server's certificate hook: the device registry). */
#include "gw.h"

#include "net/tls.h"
#include "sec/audit.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/epoll.h>

const char *vg_tls_fail_name(vg_tls_fail_t f)
{
    static const char *const names[VG_TLS_FAIL__COUNT] = {"handshake",       "timeout",       "no_certificate",
                                                          "expired",         "not_yet_valid", "unknown_ca",
                                                          "bad_certificate", "revoked",       "unknown_device"};
    return (unsigned)f < VG_TLS_FAIL__COUNT ? names[f] : "?";
}

/* The SSL ex-data slot holding the worker (the verify callback gets only
 * the SSL; the connection is its app data). Registered once per process:
 * OpenSSL's index table is process-wide by design. */
static int worker_idx = -1;
static pthread_once_t worker_idx_once = PTHREAD_ONCE_INIT;
static void worker_idx_init(void)
{
    worker_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static vg_tls_fail_t fail_of_x509(long err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return VG_TLS_FAIL_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return VG_TLS_FAIL_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return VG_TLS_FAIL_UNKNOWN_CA;
    case X509_V_ERR_CERT_REVOKED:
        return VG_TLS_FAIL_REVOKED;
    default:
        return VG_TLS_FAIL_BAD_CERT;
    }
}

void gw_tls_count_fail(worker_t *w, conn_t *c, vg_tls_fail_t why)
{
    if (c->sec->tls_fail == 0xff)
        return; /* counted already */
    c->sec->tls_fail = 0xff;
    atomic_fetch_add_explicit(&w->st_tls_fail[why], 1, memory_order_relaxed);
    VG_DEBUG(MOD, "TLS handshake refused: %s", vg_tls_fail_name(why));
    struct vg_server *s = w->srv;
    if (s->o.tls_refused) {
        char peer[80] = "", cn[VG_TLS_CN_MAX + 1] = "";
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
            vg_audit_format_addr((struct sockaddr *)&ss, peer, sizeof peer);
        X509 *pc = c->sec->ssl ? SSL_get0_peer_certificate(c->sec->ssl) : NULL;
        if (pc)
            vg_tls_cert_cn(pc, cn, sizeof cn, NULL);
        s->o.tls_refused(s->o.cert_ctx, why, peer, cn);
    }
}

/* Fills the hook's view of a certificate. cn is the caller's buffer. */
static void cert_view(X509 *cert, X509 *issuer, char *cn, size_t cncap, vg_server_cert_t *v)
{
    memset(v, 0, sizeof *v);
    size_t n = 0;
    if (vg_tls_cert_cn(cert, cn, cncap, &n) != VG_OK) {
        cn[0] = 0;
        n = 0;
    }
    v->cn = cn;
    v->cn_len = n;
    vg_tls_cert_sha256(cert, v->sha256);
    if (issuer && vg_tls_cert_sha256(issuer, v->issuer_sha256) == VG_OK)
        v->issuer_known = true;
    const ASN1_TIME *na = X509_get0_notAfter(cert);
    struct tm tm;
    if (na && ASN1_TIME_to_tm(na, &tm) == 1)
        v->not_after_ms = (int64_t)timegm(&tm) * 1000;
    v->x509 = cert;
}

/* OpenSSL's verification of the client chain, plus ours for the leaf: the
 * certificate hook (revoked, unknown device) answers during the handshake,
 * so a refused device gets a TLS alert rather than a connection that opens
 * and closes. Records why it refused for the counters. */
static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    conn_t *c = ssl ? SSL_get_app_data(ssl) : NULL;
    worker_t *w = ssl ? SSL_get_ex_data(ssl, worker_idx) : NULL;
    if (!c || !w)
        return ok;
    if (!ok) {
        if (!c->sec->tls_fail)
            c->sec->tls_fail = (uint8_t)(fail_of_x509(X509_STORE_CTX_get_error(sctx)) + 1);
        return 0;
    }
    struct vg_server *s = w->srv;
    if (X509_STORE_CTX_get_error_depth(sctx) != 0 || !s->o.cert_check)
        return 1;
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
    X509 *issuer = chain && sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
    char cn[256];
    vg_server_cert_t v;
    cert_view(X509_STORE_CTX_get_current_cert(sctx), issuer, cn, sizeof cn, &v);
    int rc = s->o.cert_check(s->o.cert_ctx, &v);
    if (rc == 0) {
        memcpy(c->sec->issuer_sha256, v.issuer_sha256, 32);
        c->sec->issuer_known = v.issuer_known;
        return 1;
    }
    c->sec->tls_fail = (uint8_t)(rc + 1);
    X509_STORE_CTX_set_error(sctx,
                             rc == VG_TLS_FAIL_REVOKED ? X509_V_ERR_CERT_REVOKED : X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

int gw_tls_attach(worker_t *w, conn_t *c)
{
    pthread_once(&worker_idx_once, worker_idx_init);
    SSL *ssl = worker_idx >= 0 ? vg_tls_new_ssl(w->srv->o.tls, c->fd) : NULL;
    if (!ssl)
        return VG_ENOMEM;
    SSL_set_app_data(ssl, c);
    SSL_set_ex_data(ssl, worker_idx, w);
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)
        SSL_set_verify(ssl, SSL_get_verify_mode(ssl), verify_cb);
    c->sec->ssl = ssl;
    c->sec->tls_handshake = true;
    return VG_OK;
}

/* Why a handshake that OpenSSL ended with an error failed. */
static vg_tls_fail_t handshake_fail(conn_t *c, unsigned long err)
{
    if (c->sec->tls_fail && c->sec->tls_fail != 0xff)
        return (vg_tls_fail_t)(c->sec->tls_fail - 1);
    if (ERR_GET_REASON(err) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return VG_TLS_FAIL_NO_CERT;
    long vr = SSL_get_verify_result(c->sec->ssl);
    if (vr != X509_V_OK)
        return fail_of_x509(vr);
    return VG_TLS_FAIL_HANDSHAKE;
}

/* The handshake finished: look at the client certificate (again, for a
 * resumed session whose certificate the verify callback never saw), then
 * the connection is its transport's. False if c was closed. */
static bool handshake_done(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    gw_sec_t *x = c->sec;
    bool resumed = SSL_session_reused(x->ssl);
    X509 *peer = SSL_get0_peer_certificate(x->ssl);
    if (peer) {
        char cn[256];
        vg_server_cert_t v;
        cert_view(peer, NULL, cn, sizeof cn, &v);
        int rc = resumed && s->o.cert_check ? s->o.cert_check(s->o.cert_ctx, &v) : 0;
        if (rc != 0) {
            gw_tls_count_fail(w, c, (vg_tls_fail_t)rc);
            gw_conn_close(w, c, VG_CLOSE_CERT_REFUSED);
            return false;
        }
        memcpy(x->cert_sha256, v.sha256, 32);
        x->cert_cn = vg_malloc(VG_MEM_MQTT, v.cn_len + 1);
        if (!x->cert_cn) {
            gw_conn_close(w, c, VG_CLOSE_IO);
            return false;
        }
        memcpy(x->cert_cn, cn, v.cn_len + 1);
        x->tls_cert = true;
    }
    x->tls_handshake = false;
    /* MQTT on the HTTPS port (ALPN, as IoT Core's MQTT on 443): the
     * connection turns into an MQTT one before it read anything. */
    if (c->transport != TR_MQTT && vg_tls_alpn_is_mqtt(x->ssl)) {
        vg_free(c->x);
        c->x = NULL;
        c->transport = TR_MQTT;
        atomic_fetch_add_explicit(&w->st_tls_alpn_mqtt, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&w->st_tls_handshakes, 1, memory_order_relaxed);
    if (resumed)
        atomic_fetch_add_explicit(&w->st_tls_resumed, 1, memory_order_relaxed);
    /* From here the CONNECT (or the WebSocket upgrade, or the HTTP
     * request) has the usual time to arrive. */
    c->timer.deadline_ms = gw_now_mono_ms() + s->o.connect_timeout_ms;
    return true;
}

void gw_tls_handshake(worker_t *w, conn_t *c)
{
    gw_sec_t *x = c->sec;
    ERR_clear_error();
    int r = SSL_do_handshake(x->ssl);
    if (r == 1) {
        if (c->epollout && c->out_len == c->out_off) {
            c->epollout = false;
            gw_epoll_set(w, c);
        }
        if (handshake_done(w, c))
            gw_read_ready(w, c, READ_BUDGET); /* the CONNECT may have come with the Finished */
        return;
    }
    int e = SSL_get_error(x->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        bool want_out = e == SSL_ERROR_WANT_WRITE;
        if (c->epollout != want_out) {
            c->epollout = want_out;
            gw_epoll_set(w, c);
        }
        return;
    }
    unsigned long err = ERR_peek_error();
    vg_tls_fail_t why = handshake_fail(c, err);
    ERR_clear_error();
    x->tls_dead = true; /* no close_notify after a failed handshake: OpenSSL sent its alert */
    gw_tls_count_fail(w, c, why);
    gw_conn_close(w, c, why == VG_TLS_FAIL_HANDSHAKE ? VG_CLOSE_TLS : VG_CLOSE_CERT_REFUSED);
}

ssize_t gw_tls_recv(worker_t *w, conn_t *c, void *dst, size_t room)
{
    gw_sec_t *x = c->sec;
    if (x->tls_dead)
        return -2;
    ERR_clear_error();
    int k = SSL_read(x->ssl, dst, room > INT_MAX ? INT_MAX : (int)room);
    if (k > 0) {
        atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
        return k;
    }
    int e = SSL_get_error(x->ssl, k);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        /* OpenSSL must write before it can read on (a post-handshake
         * message): wait for the socket to be writable, then read again. */
        x->tls_read_wants_write = true;
        if (!c->epollout) {
            c->epollout = true;
            gw_epoll_set(w, c);
        }
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return -1; /* close_notify: the peer closed cleanly */
    x->tls_dead = true;
    /* EOF without close_notify is how most MQTT clients end: a peer close,
     * not a TLS error. */
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE)) {
        ERR_clear_error();
        return -1;
    }
    if (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return -1;
    }
    ERR_clear_error();
    return -2;
}

ssize_t gw_tls_send(worker_t *w, conn_t *c, const void *b, size_t n)
{
    gw_sec_t *x = c->sec;
    if (x->tls_dead || x->tls_handshake)
        return x->tls_dead ? -1 : 0;
    ERR_clear_error();
    int k = SSL_write(x->ssl, b, n > INT_MAX ? INT_MAX : (int)n);
    if (k > 0) {
        atomic_fetch_add_explicit(&w->st_bytes_out, (uint64_t)k, memory_order_relaxed);
        return k;
    }
    int e = SSL_get_error(x->ssl, k);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        return 0;
    ERR_clear_error();
    x->tls_dead = true;
    return -1;
}

bool gw_tls_pending(const conn_t *c)
{
    return c->sec && c->sec->ssl && !c->sec->tls_dead && !c->sec->tls_handshake &&
           (SSL_pending(c->sec->ssl) > 0 || SSL_has_pending(c->sec->ssl));
}

void gw_tls_again(worker_t *w, conn_t *c)
{
    if (c->sec->tls_again)
        return;
    c->sec->tls_again = true;
    c->sec->again_next = w->again_head;
    w->again_head = c;
}

void gw_tls_run_again(worker_t *w)
{
    conn_t *list = w->again_head;
    w->again_head = NULL;
    while (list) {
        conn_t *c = list;
        list = c->sec->again_next;
        c->sec->again_next = NULL;
        c->sec->tls_again = false;
        if ((c->state == ST_NEW || c->state == ST_ACTIVE) && !c->paused && !c->quiesced && !c->takeover_wait &&
            !CONN_THROTTLED(c))
            gw_read_ready(w, c, READ_BUDGET);
    }
}

void gw_tls_close_notify(conn_t *c)
{
    gw_sec_t *x = c->sec;
    if (!x || !x->ssl || x->tls_dead || x->tls_handshake || x->tls_shut)
        return;
    x->tls_shut = true;
    ERR_clear_error();
    (void)SSL_shutdown(x->ssl); /* sends close_notify if the socket takes it; never waits for the peer's */
    ERR_clear_error();
}

void gw_tls_free(worker_t *w, conn_t *c)
{
    gw_sec_t *x = c->sec;
    if (!x)
        return;
    if (x->tls_again) {
        conn_t **pp = &w->again_head;
        while (*pp && *pp != c)
            pp = &(*pp)->sec->again_next;
        if (*pp)
            *pp = x->again_next;
    }
    SSL_free(x->ssl);
    x->ssl = NULL;
    vg_free(x->cert_cn);
    x->cert_cn = NULL;
}
