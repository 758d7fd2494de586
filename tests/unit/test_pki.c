/* test_pki.c — unit tests for the local CA (src/sec/pki.c).
 *
 * ca_init writes a key with mode 0600 and a self-signed CA certificate with
 * the profile pki.h describes, refuses to overwrite without force; ca_load
 * rejects a key that does not match; device and server certificates verify
 * against the CA with OpenSSL's own verifier (X509_verify_cert with the
 * purpose each is for) and carry the names, serials and fingerprints
 * cert_info reports; check_ca_pem tells CA certificates from others. The
 * last test measures issuing speed (ms per device) and prints it. */
#include "sec/pki.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "vt.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static X509 *read_crt(const char *dir, const char *file)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vg_fs_read_all(p, 1 << 20, &buf, &len) != VG_OK)
        return NULL;
    X509 *x = NULL;
    vg_pki_cert_parse((const char *)buf, len, &x);
    vg_free(buf);
    return x;
}

/* OpenSSL's verdict on leaf against the single trust anchor ca, for the
 * given purpose (X509_PURPOSE_SSL_CLIENT / _SERVER). */
static int verify(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    int ok = X509_verify_cert(ctx);
    int err = ok == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return err;
}

static void test_ca_init_and_load(void)
{
    char *dir = vt_tmpdir_new("pki");
    VT_REQUIRE(dir);
    char pki[512];
    snprintf(pki, sizeof pki, "%s/pki", dir);
    VT_EQ_INT(vg_pki_ca_init(pki, "", 10, false), VG_EINVAL);
    VT_EQ_INT(vg_pki_ca_init(pki, "vigil test CA", 0, false), VG_EINVAL);
    VT_EQ_INT(vg_pki_ca_init(pki, "vigil test CA", 3650, false), VG_OK);
    VT_EQ_INT(vg_pki_ca_init(pki, "other", 3650, false), VG_EEXIST);

    char kp[600];
    snprintf(kp, sizeof kp, "%s/ca.key", pki);
    struct stat st;
    VT_REQUIRE(stat(kp, &st) == 0);
    VT_EQ_INT(st.st_mode & 0777, 0600);

    X509 *x = read_crt(pki, "ca.crt");
    VT_REQUIRE(x);
    vg_pki_cert_info_t ci;
    VT_EQ_INT(vg_pki_cert_info(x, x, &ci), VG_OK);
    VT_CHECK(strcmp(ci.cn, "vigil test CA") == 0);
    VT_CHECK(ci.is_ca);
    VT_CHECK(ci.has_issuer && memcmp(ci.fingerprint, ci.issuer_fingerprint, 32) == 0);
    VT_CHECK(ci.not_after_ms - ci.not_before_ms > 3649LL * 86400 * 1000);
    /* basicConstraints and keyUsage are critical, SKI present. */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    VT_CHECK(bc && bc->ca && crit == 1);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    VT_CHECK(ku && crit == 1);
    ASN1_BIT_STRING_free(ku);
    VT_CHECK((X509_get_key_usage(x) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    VT_CHECK(X509_get0_subject_key_id(x) != NULL);

    vg_pki_ca_t *ca = NULL;
    VT_EQ_INT(vg_pki_ca_load(pki, &ca), VG_OK);
    VT_REQUIRE(ca);
    VT_CHECK(memcmp(vg_pki_ca_fingerprint(ca), ci.fingerprint, 32) == 0);
    vg_pki_ca_free(ca);

    /* force replaces; then a key from the old CA no longer matches. */
    uint8_t *oldkey = NULL;
    size_t oldlen = 0;
    VT_REQUIRE(vg_fs_read_all(kp, 1 << 20, &oldkey, &oldlen) == VG_OK);
    VT_EQ_INT(vg_pki_ca_init(pki, "vigil test CA 2", 30, true), VG_OK);
    VT_EQ_INT(vg_pki_ca_load(pki, &ca), VG_OK);
    VT_CHECK(ca && memcmp(vg_pki_ca_fingerprint(ca), ci.fingerprint, 32) != 0);
    vg_pki_ca_free(ca);
    VT_REQUIRE(vg_fs_write_atomic_mode(kp, oldkey, oldlen, 0600) == VG_OK);
    VT_EQ_INT(vg_pki_ca_load(pki, &ca), VG_EMALFORMED);
    VT_CHECK(ca == NULL);
    vg_free(oldkey);

    char missing[600];
    snprintf(missing, sizeof missing, "%s/none", dir);
    VT_EQ_INT(vg_pki_ca_load(missing, &ca), VG_ENOTFOUND);
    X509_free(x);
    vt_tmpdir_free(dir);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static void test_device_cert(void)
{
    char *dir = vt_tmpdir_new("pki");
    VT_REQUIRE(dir);
    VT_REQUIRE(vg_pki_ca_init(dir, "CA", 100, false) == VG_OK);
    vg_pki_ca_t *ca = NULL;
    VT_REQUIRE(vg_pki_ca_load(dir, &ca) == VG_OK);

    char *key = NULL, *crt = NULL;
    uint8_t fp[32];
    vg_pki_cert_info_t info;
    VT_EQ_INT(vg_pki_issue_device(ca, "", 0, 10, &key, &crt, fp, NULL), VG_EINVAL);
    char longid[VG_PKI_CN_MAX + 2];
    memset(longid, 'a', sizeof longid);
    VT_EQ_INT(vg_pki_issue_device(ca, longid, VG_PKI_CN_MAX + 1, 10, &key, &crt, fp, NULL), VG_EINVAL);
    VT_CHECK(key == NULL && crt == NULL);
    VT_EQ_INT(vg_pki_issue_device(ca, longid, VG_PKI_CN_MAX, 10, &key, &crt, fp, NULL), VG_OK);
    vg_pki_key_free(key);
    vg_free(crt);

    VT_REQUIRE(vg_pki_issue_device(ca, "dev-1", 5, 30, &key, &crt, fp, &info) == VG_OK);
    VT_CHECK(strstr(key, "-----BEGIN PRIVATE KEY-----") == key);
    VT_CHECK(strstr(crt, "-----BEGIN CERTIFICATE-----") == crt);
    VT_CHECK(strcmp(info.cn, "dev-1") == 0 && info.cn_len == 5);
    VT_CHECK(memcmp(info.fingerprint, fp, 32) == 0);
    VT_CHECK(info.has_issuer && memcmp(info.issuer_fingerprint, vg_pki_ca_fingerprint(ca), 32) == 0);
    VT_CHECK(!info.is_ca);
    /* 128 random bits: at most 32 hex digits, almost surely more than 24. */
    VT_CHECK(strlen(info.serial_hex) <= 32 && strlen(info.serial_hex) > 24);
    int64_t now = vg_clock_wall_ms();
    VT_CHECK(info.not_before_ms <= now && info.not_before_ms > now - 600 * 1000);
    VT_CHECK(info.not_after_ms > now + 29LL * 86400 * 1000);

    /* The PEM parses back to the same facts, and OpenSSL accepts it as a
     * TLS client certificate (not as a server's) under the CA. */
    X509 *x = NULL;
    VT_REQUIRE(vg_pki_cert_parse(crt, strlen(crt), &x) == VG_OK);
    vg_pki_cert_info_t again;
    VT_EQ_INT(vg_pki_cert_info(x, vg_pki_ca_cert(ca), &again), VG_OK);
    VT_CHECK(memcmp(&again, &info, sizeof info) == 0);
    VT_EQ_INT(verify(vg_pki_ca_cert(ca), x, X509_PURPOSE_SSL_CLIENT), 0);
    VT_CHECK(verify(vg_pki_ca_cert(ca), x, X509_PURPOSE_SSL_SERVER) != 0);
    VT_CHECK(X509_get0_authority_key_id(x) != NULL);
    /* The key belongs to the certificate. */
    BIO *b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    VT_CHECK(pk && X509_check_private_key(x, pk) == 1);
    /* Our hand-made PKCS#8 is byte for byte what OpenSSL's encoder writes. */
    BIO *w = BIO_new(BIO_s_mem());
    VT_CHECK(pk && PEM_write_bio_PrivateKey(w, pk, NULL, NULL, 0, NULL, NULL) == 1);
    char *wd = NULL;
    long wn = BIO_get_mem_data(w, &wd);
    VT_CHECK(wn == (long)strlen(key) && memcmp(wd, key, (size_t)wn) == 0);
    BIO_free(w);
    /* And the public key in the certificate is what OpenSSL would encode. */
    X509 *y = X509_dup(x);
    VT_CHECK(y && pk && X509_set_pubkey(y, pk) == 1);
    unsigned char *d1 = NULL, *d2 = NULL;
    int n1 = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &d1), n2 = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(y), &d2);
    VT_CHECK(n1 == 91 && n1 == n2 && memcmp(d1, d2, (size_t)n1) == 0);
    OPENSSL_free(d1);
    OPENSSL_free(d2);
    X509_free(y);
    EVP_PKEY_free(pk);
    BIO_free(b);

    /* A certificate is not its own issuer; the CA is not issued by it. */
    VT_EQ_INT(vg_pki_cert_info(x, x, &again), VG_EINVAL);
    VT_EQ_INT(vg_pki_cert_info_pem(crt, strlen(crt), NULL, &again), VG_OK);
    VT_CHECK(!again.has_issuer);
    VT_EQ_INT(vg_pki_cert_info_pem("garbage", 7, NULL, &again), VG_EMALFORMED);

    /* A device certificate does not outlive its CA (100 days here). */
    vg_pki_cert_info_t ca_info, longer;
    char *k3 = NULL, *c3 = NULL;
    VT_REQUIRE(vg_pki_cert_info(vg_pki_ca_cert(ca), NULL, &ca_info) == VG_OK);
    VT_REQUIRE(vg_pki_issue_device(ca, "dev-long", 8, 3650, &k3, &c3, fp, &longer) == VG_OK);
    VT_EQ_INT(longer.not_after_ms, ca_info.not_after_ms);
    vg_pki_key_free(k3);
    vg_free(c3);

    /* Two issues never share a serial or a fingerprint. */
    char *key2 = NULL, *crt2 = NULL;
    uint8_t fp2[32];
    vg_pki_cert_info_t info2;
    VT_REQUIRE(vg_pki_issue_device(ca, "dev-1", 5, 30, &key2, &crt2, fp2, &info2) == VG_OK);
    VT_CHECK(memcmp(fp, fp2, 32) != 0 && strcmp(info.serial_hex, info2.serial_hex) != 0);

    char hex[65];
    uint8_t back[32];
    vg_pki_fp_hex(fp, hex);
    VT_EQ_INT(strlen(hex), 64);
    VT_EQ_INT(vg_pki_fp_parse(hex, 64, back), VG_OK);
    VT_CHECK(memcmp(back, fp, 32) == 0);
    VT_EQ_INT(vg_pki_fp_parse(hex, 63, back), VG_EINVAL);
    hex[5] = 'g';
    VT_EQ_INT(vg_pki_fp_parse(hex, 64, back), VG_EINVAL);

    X509_free(x);
    vg_pki_key_free(key);
    vg_free(crt);
    vg_pki_key_free(key2);
    vg_free(crt2);
    vg_pki_ca_free(ca);
    vt_tmpdir_free(dir);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static bool has_san(X509 *x, int type, const char *want)
{
    GENERAL_NAMES *gn = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; gn && i < sk_GENERAL_NAME_num(gn); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gn, i);
        if (g->type != type)
            continue;
        if (type == GEN_DNS)
            found |= strcmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), want) == 0;
        else if (type == GEN_IPADD) {
            unsigned char a[16];
            int alen = inet_pton(AF_INET, want, a) == 1 ? 4 : inet_pton(AF_INET6, want, a) == 1 ? 16 : 0;
            found |= alen && ASN1_STRING_length(g->d.iPAddress) == alen &&
                     memcmp(ASN1_STRING_get0_data(g->d.iPAddress), a, (size_t)alen) == 0;
        }
    }
    GENERAL_NAMES_free(gn);
    return found;
}

static void test_server_cert(void)
{
    char *dir = vt_tmpdir_new("pki");
    VT_REQUIRE(dir);
    VT_REQUIRE(vg_pki_ca_init(dir, "CA", 100, false) == VG_OK);
    vg_pki_ca_t *ca = NULL;
    VT_REQUIRE(vg_pki_ca_load(dir, &ca) == VG_OK);
    VT_EQ_INT(vg_pki_issue_server(ca, dir, NULL, 0, 365), VG_OK);
    X509 *x = read_crt(dir, "server.crt");
    VT_REQUIRE(x);
    VT_CHECK(has_san(x, GEN_DNS, "localhost"));
    VT_CHECK(has_san(x, GEN_IPADD, "127.0.0.1"));
    VT_CHECK(has_san(x, GEN_IPADD, "::1"));
    VT_EQ_INT(verify(vg_pki_ca_cert(ca), x, X509_PURPOSE_SSL_SERVER), 0);
    VT_EQ_INT(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    VT_EQ_INT(X509_check_ip_asc(x, "::1", 0), 1);
    X509_free(x);
    char kp[600];
    snprintf(kp, sizeof kp, "%s/server.key", dir);
    struct stat st;
    VT_CHECK(stat(kp, &st) == 0 && (st.st_mode & 0777) == 0600);

    const char *names[] = {"broker.example", "10.0.0.7", "*.vigil.test"};
    VT_EQ_INT(vg_pki_issue_server(ca, dir, names, 3, 365), VG_OK);
    x = read_crt(dir, "server.crt");
    VT_REQUIRE(x);
    VT_CHECK(has_san(x, GEN_DNS, "broker.example") && has_san(x, GEN_IPADD, "10.0.0.7"));
    VT_CHECK(!has_san(x, GEN_DNS, "localhost"));
    VT_EQ_INT(X509_check_host(x, "a.vigil.test", 0, 0, NULL), 1);
    vg_pki_cert_info_t ci;
    VT_EQ_INT(vg_pki_cert_info(x, vg_pki_ca_cert(ca), &ci), VG_OK);
    VT_CHECK(strcmp(ci.cn, "broker.example") == 0);
    X509_free(x);

    /* Config syntax in a name is refused, not interpreted. */
    const char *bad[] = {"a,DNS:evil"};
    VT_EQ_INT(vg_pki_issue_server(ca, dir, bad, 1, 365), VG_EINVAL);
    const char *empty[] = {""};
    VT_EQ_INT(vg_pki_issue_server(ca, dir, empty, 1, 365), VG_EINVAL);
    vg_pki_ca_free(ca);
    vt_tmpdir_free(dir);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static void test_check_ca(void)
{
    char *dir = vt_tmpdir_new("pki");
    VT_REQUIRE(dir);
    VT_REQUIRE(vg_pki_ca_init(dir, "Root", 100, false) == VG_OK);
    vg_pki_ca_t *ca = NULL;
    VT_REQUIRE(vg_pki_ca_load(dir, &ca) == VG_OK);
    char why[128];
    vg_pki_cert_info_t ci;
    int64_t now = vg_clock_wall_ms();
    X509 *root = vg_pki_ca_cert(ca);
    VT_EQ_INT(vg_pki_check_ca(root, now, &ci, why, sizeof why), VG_OK);
    VT_CHECK(strcmp(ci.cn, "Root") == 0 && ci.is_ca);
    char subj[64];
    vg_pki_subject(root, subj, sizeof subj);
    VT_CHECK(strcmp(subj, "CN=Root") == 0);
    char *rpem = vg_pki_cert_pem(root);
    VT_CHECK(rpem && strstr(rpem, "-----BEGIN CERTIFICATE-----") == rpem);
    vg_free(rpem);
    /* Expired, seen from 200 days on. */
    VT_EQ_INT(vg_pki_check_ca(root, now + 200LL * 86400 * 1000, NULL, why, sizeof why), VG_EPROTO);
    VT_CHECK(strcmp(why, "expired") == 0);

    char *key = NULL, *pem = NULL;
    uint8_t fp[32];
    VT_REQUIRE(vg_pki_issue_device(ca, "d", 1, 1, &key, &pem, fp, NULL) == VG_OK);
    X509 *leaf = NULL;
    VT_REQUIRE(vg_pki_cert_parse(pem, strlen(pem), &leaf) == VG_OK);
    VT_EQ_INT(vg_pki_check_ca(leaf, now, NULL, why, sizeof why), VG_EPROTO);
    VT_CHECK(strstr(why, "not a CA") != NULL);
    X509_free(leaf);
    vg_pki_key_free(key);
    vg_free(pem);
    vg_pki_ca_free(ca);
    vt_tmpdir_free(dir);
}

/* Issuing speed: ms per device certificate (key, certificate, both PEMs,
 * fingerprint). VG_PKI_BENCH_N sets the count (default 500). */
static void test_issue_speed(void)
{
    char *dir = vt_tmpdir_new("pki");
    VT_REQUIRE(dir);
    VT_REQUIRE(vg_pki_ca_init(dir, "CA", 100, false) == VG_OK);
    vg_pki_ca_t *ca = NULL;
    VT_REQUIRE(vg_pki_ca_load(dir, &ca) == VG_OK);
    const char *env = getenv("VG_PKI_BENCH_N");
    int n = env ? atoi(env) : 500;
    double t0 = now_s();
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char id[32], *key, *crt;
        uint8_t fp[32];
        vg_pki_cert_info_t info;
        int len = snprintf(id, sizeof id, "dev-%d", i);
        bad += vg_pki_issue_device(ca, id, (size_t)len, 365, &key, &crt, fp, &info) != VG_OK;
        vg_pki_key_free(key);
        vg_free(crt);
    }
    double dt = now_s() - t0;
    VT_EQ_INT(bad, 0);
    printf("  issue_device: %d certificates in %.2f s, %.3f ms per device\n", n, dt, dt * 1000 / n);
    vg_pki_ca_free(ca);
    vt_tmpdir_free(dir);
}

int main(void)
{
    VT_RUN(test_ca_init_and_load);
    VT_RUN(test_device_cert);
    VT_RUN(test_server_cert);
    VT_RUN(test_check_ca);
    VT_RUN(test_issue_speed);
    return VT_DONE();
}
