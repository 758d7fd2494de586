/* pki.c — the local CA behind pki.h: key generation, certificate building
 * and signing, the CA directory's files, reading certificates.
 *
 * Owns: the OpenSSL objects of a loaded CA (vg_pki_ca_t) and every object
 * made while issuing, each freed before returning. Does not own: OpenSSL's
 * error queue beyond the call (each failure logs it and clears it).
 *
 * Why the extensions are written as OpenSSL config strings
 * (X509V3_EXT_conf_nid) rather than built field by field: the strings are
 * the documented, stable way to get exactly the encodings the `openssl`
 * tool makes, and every value comes from a fixed table or a name checked
 * here first, so nothing a user types is parsed as config syntax. Their
 * cost is a few microseconds against about 100 us of key generation and
 * signing per device certificate.
 *
 * Why the public key and the private key PEM of a P-256 key are encoded
 * here (set_pubkey, p256_key_to_pem): OpenSSL 3.0 routes both through its
 * provider encoders, which cost about 180 us and 60 us a key — three
 * quarters of issuing a device certificate. Both encodings are fixed
 * layouts for one curve; the unit test checks that OpenSSL reads them back
 * and writes the same bytes itself. */
#include "sec/pki.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/fsutil.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define MOD "pki"
/* PEM files are small; anything larger is not ours. */
#define PEM_FILE_MAX (256 * 1024)
/* Clock-skew allowance on notBefore (see pki.h). */
#define BACKDATE_S 300

struct vg_pki_ca {
    EVP_PKEY *key;
    X509 *cert;
    uint8_t fp[32];
};

typedef enum { PROFILE_CA, PROFILE_SERVER, PROFILE_DEVICE } profile_t;

/* Logs the newest OpenSSL error with what we were doing and clears the
 * queue, so a later failure does not report this one. */
static void ossl_fail(const char *what)
{
    char buf[256] = "no OpenSSL error queued";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    VG_ERROR(MOD, "%s: %s", what, buf);
    ERR_clear_error();
}

static int check_days(uint32_t days)
{
    return days >= 1 && days <= VG_PKI_DAYS_MAX ? VG_OK : VG_EINVAL;
}

static int check_cn(const char *cn, size_t len)
{
    if (!cn || len == 0 || len > VG_PKI_CN_MAX || memchr(cn, '\0', len))
        return VG_EINVAL;
    return VG_OK;
}

/* The whole contents of a memory BIO as a new NUL-terminated string. */
static char *bio_to_str(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0)
        return NULL;
    char *s = vg_malloc(VG_MEM_SEC, (size_t)n + 1);
    if (!s)
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

/* The uncompressed public point of an EC P-256 key (65 bytes), or false
 * for any other key. */
static bool p256_point(EVP_PKEY *key, unsigned char point[65])
{
    char group[32];
    size_t n = 0;
    bool ok = EVP_PKEY_is_a(key, "EC") &&
              EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) == 1 &&
              strcmp(group, "prime256v1") == 0 &&
              EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, 65, &n) == 1 && n == 65 &&
              point[0] == 0x04;
    ERR_clear_error();
    return ok;
}

/* PEM of DER bytes der[0..n) under label, 64 characters a line (RFC 7468). */
static char *pem_wrap(const char *label, const unsigned char *der, size_t n)
{
    size_t b64 = (n + 2) / 3 * 4, lines = (b64 + 63) / 64;
    size_t cap = 2 * (strlen(label) + 17) + b64 + lines + 1;
    char *s = vg_malloc(VG_MEM_SEC, cap);
    if (!s)
        return NULL;
    size_t o = (size_t)snprintf(s, cap, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; i < n; i += 48) {
        o += (size_t)EVP_EncodeBlock((unsigned char *)s + o, der + i, (int)(n - i < 48 ? n - i : 48));
        s[o++] = '\n';
    }
    snprintf(s + o, cap - o, "-----END %s-----\n", label);
    return s;
}

/* An EC P-256 private key as PKCS#8 PEM, written field by field for the
 * same reason as set_pubkey: PEM_write_bio_PrivateKey goes through
 * OpenSSL 3.0's encoders, about 60 us a key. The layout is fixed for this
 * curve (RFC 5208 PrivateKeyInfo around RFC 5915 ECPrivateKey, curve named
 * in the outer algorithm, public key included, as OpenSSL writes it; the
 * unit test checks that OpenSSL writes the same bytes):
 *
 *   30 81 87                      PrivateKeyInfo, 135 bytes
 *     02 01 00                    version 0
 *     30 13                       algorithm
 *       06 07 2a8648ce3d0201      id-ecPublicKey
 *       06 08 2a8648ce3d030107    prime256v1
 *     04 6d                       privateKey OCTET STRING, 109 bytes
 *       30 6b                     ECPrivateKey, 107 bytes
 *         02 01 01                version 1
 *         04 20 <32 bytes>        the private scalar, big-endian
 *         a1 44 03 42 00 <65>     [1] publicKey BIT STRING: the point
 */
static char *p256_key_to_pem(EVP_PKEY *key, const unsigned char point[65])
{
    static const unsigned char head[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86,
                                         0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
                                         0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
    static const unsigned char mid[] = {0xa1, 0x44, 0x03, 0x42, 0x00};
    unsigned char der[sizeof head + 32 + sizeof mid + 65];
    BIGNUM *d = NULL;
    char *s = NULL;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 || BN_bn2binpad(d, der + sizeof head, 32) != 32) {
        ossl_fail("cannot read the private key");
        goto cleanup;
    }
    memcpy(der, head, sizeof head);
    memcpy(der + sizeof head + 32, mid, sizeof mid);
    memcpy(der + sizeof head + 32 + sizeof mid, point, 65);
    s = pem_wrap("PRIVATE KEY", der, sizeof der);
cleanup:
    OPENSSL_cleanse(der, sizeof der);
    BN_clear_free(d);
    return s;
}

static char *key_to_pem(EVP_PKEY *key)
{
    unsigned char point[65];
    if (p256_point(key, point))
        return p256_key_to_pem(key, point);
    /* Secure memory BIO: its buffer is wiped when freed. */
    BIO *b = BIO_new(BIO_s_secmem());
    char *s = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_to_str(b);
    else
        ossl_fail("cannot encode private key");
    BIO_free(b);
    return s;
}

static char *crt_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1)
        s = bio_to_str(b);
    else
        ossl_fail("cannot encode certificate");
    BIO_free(b);
    return s;
}

void vg_pki_key_free(char *key_pem)
{
    if (!key_pem)
        return;
    OPENSSL_cleanse(key_pem, strlen(key_pem));
    vg_free(key_pem);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    if (!ok) {
        ossl_fail("cannot add certificate extension");
        return VG_EIO;
    }
    return VG_OK;
}

/* A positive 128-bit random serial number: RFC 5280 wants serials unique
 * per CA and unpredictable; 128 random bits need no counter shared between
 * processes issuing with the same CA. */
static int set_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn = NULL;
    int rc = VG_EIO;
    do {
        if (RAND_bytes(raw, sizeof raw) != 1)
            goto cleanup;
        BN_free(bn);
        bn = BN_bin2bn(raw, sizeof raw, NULL);
        if (!bn)
            goto cleanup;
    } while (BN_is_zero(bn));
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = VG_OK;
cleanup:
    if (rc)
        ossl_fail("cannot make a serial number");
    BN_free(bn);
    return rc;
}

/* Puts key's public half into x's subjectPublicKeyInfo. For an EC P-256
 * key (all of ours) the fields are set directly: X509_set_pubkey encodes
 * the key through OpenSSL 3.0's encoder machinery, which costs about
 * 180 us — more than generating the key and signing the certificate
 * together. The encoding is the standard one (RFC 5480: id-ecPublicKey,
 * the named curve's OID, the uncompressed point), so the DER certificate
 * is the same either way. The in-memory x then has no decoded public key:
 * X509_get0_pubkey(x) fails until the certificate is parsed from its DER
 * again, so nothing here asks it for one. Other keys take the slow way. */
static int set_pubkey(X509 *x, EVP_PKEY *key)
{
    unsigned char point[65];
    if (p256_point(key, point)) {
        unsigned char *enc = OPENSSL_memdup(point, sizeof point);
        if (!enc)
            return VG_ENOMEM;
        if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                                   OBJ_nid2obj(NID_X9_62_prime256v1), enc, (int)sizeof point) == 1)
            return VG_OK;
        OPENSSL_free(enc);
        ossl_fail("cannot set the public key");
        return VG_EIO;
    }
    if (X509_set_pubkey(x, key) != 1) {
        ossl_fail("cannot set the public key");
        return VG_EIO;
    }
    return VG_OK;
}

/* Builds and signs a certificate for key with subject CN=cn. issuer_cert
 * and issuer_key are NULL for the self-signed CA. san is the
 * subjectAltName config value (server only). */
static int build_cert(X509 *issuer_cert, EVP_PKEY *issuer_key, EVP_PKEY *key, const char *cn, size_t cn_len,
                      uint32_t days, profile_t profile, const char *san, X509 **out)
{
    int rc = VG_EIO;
    X509 *x = X509_new();
    if (!x) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || (rc = set_serial(x)) != VG_OK)
        goto cleanup;
    rc = VG_EIO;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, (int)cn_len, -1,
                                   0) != 1) {
        ossl_fail("cannot set the subject name");
        goto cleanup;
    }
    if (X509_set_issuer_name(x, issuer_cert ? X509_get_subject_name(issuer_cert) : name) != 1)
        goto cleanup;
    time_t now = time(NULL);
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -BACKDATE_S, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now)) {
        ossl_fail("cannot set the validity");
        goto cleanup;
    }
    /* Not past the issuer's own end: a chain is valid only while every
     * certificate in it is, so a longer life would be a promise nobody
     * keeps. */
    if (issuer_cert && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer_cert)) > 0 &&
        X509_set1_notAfter(x, X509_get0_notAfter(issuer_cert)) != 1) {
        ossl_fail("cannot set the validity");
        goto cleanup;
    }
    if ((rc = set_pubkey(x, key)))
        goto cleanup;
    /* The subject key id is derived from x's own key, the authority key id
     * from the issuer's subject key id (x itself for the CA). */
    X509 *iss = issuer_cert ? issuer_cert : x;
    switch (profile) {
    case PROFILE_CA:
        if ((rc = add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE")) ||
            (rc = add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign")) ||
            (rc = add_ext(x, iss, NID_subject_key_identifier, "hash")))
            goto cleanup;
        break;
    case PROFILE_SERVER:
    case PROFILE_DEVICE:
        if ((rc = add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE")) ||
            (rc = add_ext(x, iss, NID_key_usage, "critical,digitalSignature")) ||
            (rc = add_ext(x, iss, NID_ext_key_usage, profile == PROFILE_SERVER ? "serverAuth" : "clientAuth")) ||
            (rc = add_ext(x, iss, NID_subject_key_identifier, "hash")) ||
            (rc = add_ext(x, iss, NID_authority_key_identifier, "keyid:always")))
            goto cleanup;
        if (san && (rc = add_ext(x, iss, NID_subject_alt_name, san)))
            goto cleanup;
        break;
    }
    rc = VG_EIO;
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0) {
        ossl_fail("cannot sign certificate");
        goto cleanup;
    }
    *out = x;
    x = NULL;
    rc = VG_OK;
cleanup:
    X509_free(x);
    return rc;
}

static int new_key(EVP_PKEY **out)
{
    *out = EVP_EC_gen("P-256");
    if (!*out) {
        ossl_fail("cannot generate an EC P-256 key");
        return VG_EIO;
    }
    return VG_OK;
}

static int fingerprint(X509 *x, uint8_t fp[32])
{
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), fp, &n) != 1 || n != 32) {
        ossl_fail("cannot hash certificate");
        return VG_EIO;
    }
    return VG_OK;
}

static int path_in(char *out, size_t cap, const char *dir, const char *file)
{
    return snprintf(out, cap, "%s/%s", dir, file) < (int)cap ? VG_OK : VG_EINVAL;
}

/* Writes key (mode 0600) then certificate into dir. */
static int write_pair(const char *dir, const char *key_file, const char *crt_file, EVP_PKEY *key, X509 *x)
{
    char kp[PATH_MAX], cp[PATH_MAX];
    char *kpem = NULL, *cpem = NULL;
    int rc = VG_EINVAL;
    if (path_in(kp, sizeof kp, dir, key_file) || path_in(cp, sizeof cp, dir, crt_file))
        goto cleanup;
    rc = VG_ENOMEM;
    if (!(kpem = key_to_pem(key)) || !(cpem = crt_to_pem(x)))
        goto cleanup;
    if ((rc = vg_fs_write_atomic_mode(kp, kpem, strlen(kpem), 0600)) != VG_OK) {
        VG_ERROR(MOD, "cannot write %s: %s", kp, vg_strerror(rc));
        goto cleanup;
    }
    if ((rc = vg_fs_write_atomic(cp, cpem, strlen(cpem))) != VG_OK)
        VG_ERROR(MOD, "cannot write %s: %s", cp, vg_strerror(rc));
cleanup:
    vg_pki_key_free(kpem);
    vg_free(cpem);
    return rc;
}

static bool exists(const char *dir, const char *file)
{
    char p[PATH_MAX];
    struct stat st;
    return path_in(p, sizeof p, dir, file) == VG_OK && stat(p, &st) == 0;
}

int vg_pki_ca_init(const char *dir, const char *cn, uint32_t days, bool force)
{
    if (!dir || !cn || check_cn(cn, strlen(cn)) || check_days(days))
        return VG_EINVAL;
    if (!force && (exists(dir, "ca.key") || exists(dir, "ca.crt")))
        return VG_EEXIST;
    int rc = vg_fs_mkdir_p(dir);
    if (rc)
        return rc;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    if ((rc = new_key(&key)) || (rc = build_cert(NULL, NULL, key, cn, strlen(cn), days, PROFILE_CA, NULL, &x)))
        goto cleanup;
    rc = write_pair(dir, "ca.key", "ca.crt", key, x);
cleanup:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Reads dir/file into a new buffer; VG_ENOTFOUND if missing. The caller
 * wipes (for keys) and frees it. */
static int read_pem(const char *dir, const char *file, uint8_t **buf, size_t *len)
{
    char p[PATH_MAX];
    if (path_in(p, sizeof p, dir, file))
        return VG_EINVAL;
    int rc = vg_fs_read_all(p, PEM_FILE_MAX, buf, len);
    if (rc && rc != VG_ENOTFOUND)
        VG_ERROR(MOD, "cannot read %s: %s", p, vg_strerror(rc));
    return rc;
}

int vg_pki_ca_load(const char *dir, vg_pki_ca_t **out)
{
    *out = NULL;
    uint8_t *kbuf = NULL, *cbuf = NULL;
    size_t klen = 0, clen = 0;
    BIO *b = NULL;
    vg_pki_ca_t *ca = vg_calloc(VG_MEM_SEC, 1, sizeof *ca);
    int rc = VG_ENOMEM;
    if (!ca)
        goto cleanup;
    if ((rc = read_pem(dir, "ca.key", &kbuf, &klen)) || (rc = read_pem(dir, "ca.crt", &cbuf, &clen)))
        goto cleanup;
    rc = VG_EMALFORMED;
    if (!(b = BIO_new_mem_buf(kbuf, (int)klen)) || !(ca->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
        ossl_fail("ca.key is not a PEM private key");
        goto cleanup;
    }
    BIO_free(b);
    if (!(b = BIO_new_mem_buf(cbuf, (int)clen)) || !(ca->cert = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        ossl_fail("ca.crt is not a PEM certificate");
        goto cleanup;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        VG_ERROR(MOD, "%s: ca.key does not belong to ca.crt", dir);
        ERR_clear_error();
        goto cleanup;
    }
    if (!(X509_get_extension_flags(ca->cert) & EXFLAG_CA)) {
        VG_ERROR(MOD, "%s: ca.crt is not a CA certificate (no basicConstraints CA:TRUE)", dir);
        goto cleanup;
    }
    if ((rc = fingerprint(ca->cert, ca->fp)))
        goto cleanup;
    *out = ca;
    ca = NULL;
cleanup:
    BIO_free(b);
    if (kbuf)
        OPENSSL_cleanse(kbuf, klen);
    vg_free(kbuf);
    vg_free(cbuf);
    vg_pki_ca_free(ca);
    return rc;
}

void vg_pki_ca_free(vg_pki_ca_t *ca)
{
    if (!ca)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    vg_free(ca);
}

X509 *vg_pki_ca_cert(const vg_pki_ca_t *ca)
{
    return ca->cert;
}

const uint8_t *vg_pki_ca_fingerprint(const vg_pki_ca_t *ca)
{
    return ca->fp;
}

/* A DNS name as we accept it for a SAN: letters, digits, '.', '-' and '*'
 * (wildcards), which also keeps config syntax (',' ':' '@') out. */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '*'))
            return false;
    }
    return true;
}

static bool ip_literal(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int vg_pki_issue_server(const vg_pki_ca_t *ca, const char *dir, const char *const *names, size_t n, uint32_t days)
{
    static const char *const defaults[] = {"localhost", "127.0.0.1", "::1"};
    if (n == 0) {
        names = defaults;
        n = sizeof defaults / sizeof defaults[0];
    }
    if (n > VG_PKI_SERVER_NAMES_MAX || check_days(days))
        return VG_EINVAL;
    /* Each entry is at most "DNS:" + 253 bytes + ','. */
    char san[VG_PKI_SERVER_NAMES_MAX * 260];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        bool ip = ip_literal(names[i]);
        if (!ip && !dns_name_ok(names[i]))
            return VG_EINVAL;
        used += (size_t)snprintf(san + used, sizeof san - used, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS", names[i]);
    }
    /* A CN is at most 64 bytes; a longer first name only lives in the SAN. */
    size_t cn_len = strlen(names[0]) > VG_PKI_CN_MAX ? VG_PKI_CN_MAX : strlen(names[0]);
    int rc = vg_fs_mkdir_p(dir);
    if (rc)
        return rc;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    if ((rc = new_key(&key)) ||
        (rc = build_cert(ca->cert, ca->key, key, names[0], cn_len, days, PROFILE_SERVER, san, &x)))
        goto cleanup;
    rc = write_pair(dir, "server.key", "server.crt", key, x);
cleanup:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int vg_pki_issue_device(const vg_pki_ca_t *ca, const char *device_id, size_t id_len, uint32_t days, char **out_key_pem,
                        char **out_crt_pem, uint8_t fp[32], vg_pki_cert_info_t *info)
{
    *out_key_pem = *out_crt_pem = NULL;
    if (check_cn(device_id, id_len) || check_days(days))
        return VG_EINVAL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    char *kpem = NULL, *cpem = NULL;
    int rc;
    if ((rc = new_key(&key)) ||
        (rc = build_cert(ca->cert, ca->key, key, device_id, id_len, days, PROFILE_DEVICE, NULL, &x)))
        goto cleanup;
    rc = VG_ENOMEM;
    if (!(kpem = key_to_pem(key)) || !(cpem = crt_to_pem(x)))
        goto cleanup;
    if ((rc = fingerprint(x, fp)))
        goto cleanup;
    if (info && (rc = vg_pki_cert_info(x, ca->cert, info)))
        goto cleanup;
    *out_key_pem = kpem;
    *out_crt_pem = cpem;
    kpem = cpem = NULL;
cleanup:
    vg_pki_key_free(kpem);
    vg_free(cpem);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static int time_ms(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return VG_EMALFORMED;
    *out = (int64_t)timegm(&tm) * 1000;
    return VG_OK;
}

static int serial_hex(X509 *cert, char out[VG_PKI_SERIAL_HEX_MAX + 1])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int rc = VG_EMALFORMED;
    if (hex && strlen(hex) <= VG_PKI_SERIAL_HEX_MAX) {
        /* BN_bn2hex writes whole bytes in uppercase ("0A"); we store
         * the number's digits in lowercase ("a"), as `openssl x509 -serial`
         * would after lowering, so one serial has one spelling. */
        const char *p = hex;
        char *o = out;
        if (*p == '-')
            *o++ = *p++;
        while (p[0] == '0' && p[1] != '\0')
            p++;
        for (; *p; p++)
            *o++ = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
        *o = '\0';
        rc = VG_OK;
    }
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
    return rc;
}

int vg_pki_cert_info(X509 *cert, X509 *issuer, vg_pki_cert_info_t *info)
{
    memset(info, 0, sizeof *info);
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    /* Exactly one CN: with two, which one names the device would be a
     * matter of convention between us and whoever issued it. */
    if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0)
        return VG_EMALFORMED;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    int rc = VG_EMALFORMED;
    if (n > 0 && n <= VG_PKI_CN_MAX && !memchr(utf8, '\0', (size_t)n)) {
        memcpy(info->cn, utf8, (size_t)n);
        info->cn_len = (size_t)n;
        rc = VG_OK;
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    if (rc || (rc = serial_hex(cert, info->serial_hex)) ||
        (rc = time_ms(X509_get0_notBefore(cert), &info->not_before_ms)) ||
        (rc = time_ms(X509_get0_notAfter(cert), &info->not_after_ms)) || (rc = fingerprint(cert, info->fingerprint)))
        goto cleanup;
    info->is_ca = (X509_get_extension_flags(cert) & EXFLAG_CA) != 0;
    if (issuer) {
        if (X509_check_issued(issuer, cert) != X509_V_OK) {
            rc = VG_EINVAL;
            goto cleanup;
        }
        if ((rc = fingerprint(issuer, info->issuer_fingerprint)))
            goto cleanup;
        info->has_issuer = true;
    }
cleanup:
    if (rc)
        memset(info, 0, sizeof *info);
    return rc;
}

int vg_pki_cert_parse(const char *pem, size_t len, X509 **out)
{
    *out = NULL;
    if (len > INT_MAX)
        return VG_ETOOBIG;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return VG_ENOMEM;
    *out = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ERR_clear_error();
    return *out ? VG_OK : VG_EMALFORMED;
}

int vg_pki_cert_info_pem(const char *pem, size_t len, X509 *issuer, vg_pki_cert_info_t *info)
{
    X509 *x = NULL;
    int rc = vg_pki_cert_parse(pem, len, &x);
    if (rc == VG_OK)
        rc = vg_pki_cert_info(x, issuer, info);
    else
        memset(info, 0, sizeof *info);
    X509_free(x);
    return rc;
}

int vg_pki_check_ca(X509 *x, int64_t now_ms, vg_pki_cert_info_t *info, char *why, size_t why_cap)
{
    vg_pki_cert_info_t local;
    vg_pki_cert_info_t *ci = info ? info : &local;
    const char *reason = NULL;
    /* A CA without a CN is legal X.509 but not one we can name in a list. */
    int rc = vg_pki_cert_info(x, NULL, ci);
    if (rc) {
        reason = "its subject has no single commonName of at most 64 bytes";
        goto cleanup;
    }
    rc = VG_EPROTO;
    uint32_t flags = X509_get_extension_flags(x);
    if (!(flags & EXFLAG_CA))
        reason = "not a CA certificate (no basicConstraints CA:TRUE)";
    else if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))
        reason = "its keyUsage does not allow signing certificates (keyCertSign)";
    else if (ci->not_after_ms < now_ms)
        reason = "expired";
    else if (X509_check_issued(x, x) == X509_V_OK && X509_verify(x, X509_get0_pubkey(x)) != 1)
        reason = "self-signed, but its signature does not verify";
    else
        rc = VG_OK;
cleanup:
    ERR_clear_error();
    if (why && why_cap)
        snprintf(why, why_cap, "%s", reason ? reason : "");
    return rc;
}

void vg_pki_subject(X509 *x, char *out, size_t cap)
{
    if (!cap)
        return;
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0 &&
        (n = BIO_get_mem_data(b, &data)) >= 0)
        snprintf(out, cap, "%.*s", (int)n, data);
    BIO_free(b);
    ERR_clear_error();
}

char *vg_pki_cert_pem(X509 *x)
{
    return crt_to_pem(x);
}

void vg_pki_fp_hex(const uint8_t fp[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[fp[i] >> 4];
        out[2 * i + 1] = hx[fp[i] & 15];
    }
    out[64] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vg_pki_fp_parse(const char *hex, size_t len, uint8_t fp[32])
{
    if (len != 64)
        return VG_EINVAL;
    for (int i = 0; i < 32; i++) {
        int h = hexval(hex[2 * i]), l = hexval(hex[2 * i + 1]);
        if (h < 0 || l < 0)
            return VG_EINVAL;
        fp[i] = (uint8_t)(h << 4 | l);
    }
    return VG_OK;
}
