/* pki.h — vigil's local certificate authority: the CA itself, the broker's
 * server certificate and one client certificate per device, all with
 * OpenSSL 3's EVP and X509 APIs (no `openssl` processes).
 *
 * Owns: key generation (EC P-256 everywhere), certificate contents and
 * signing, the PEM files of the CA and the server under one directory, and
 * reading the facts the rest of vigil needs out of a certificate
 * (vg_pki_cert_info). Does not own: which devices exist or which
 * certificates are trusted (sec/registry.h), TLS sessions (the gateway),
 * where device key files go (the CLI writes what vg_pki_issue_device
 * returns).
 *
 * FILES under the CA directory (all PEM; written atomically: temp file,
 * fsync, rename, fsync of the directory):
 *   ca.key      the CA's private key, PKCS#8, unencrypted, mode 0600
 *   ca.crt      the CA certificate, self-signed
 *   server.key  the broker's private key, PKCS#8, mode 0600
 *   server.crt  the broker's certificate (the leaf alone; clients verify it
 *               with ca.crt)
 *
 * CERTIFICATE PROFILES (X.509 v3, signed ECDSA with SHA-256, 128-bit random
 * serial numbers, notBefore five minutes in the past so that a peer whose
 * clock is slightly behind accepts a certificate made just now, notAfter
 * never later than the CA's):
 *   CA      subject = issuer = CN=<cn>; basicConstraints critical CA:TRUE;
 *           keyUsage critical keyCertSign, cRLSign; subjectKeyIdentifier
 *   server  CN=<first name>; subjectAltName DNS:/IP: per name; basicConstraints
 *           critical CA:FALSE; keyUsage critical digitalSignature;
 *           extendedKeyUsage serverAuth; subject and authority key ids
 *   device  CN=<device id>; basicConstraints critical CA:FALSE; keyUsage
 *           critical digitalSignature; extendedKeyUsage clientAuth; subject
 *           and authority key ids
 *
 * Thread-safety: a loaded CA is read-only, so any number of threads may
 * issue with it at once; every other function works on its arguments only. */
#ifndef VG_SEC_PKI_H
#define VG_SEC_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* A device id (certificate CN) is at most this long: X.509's upper bound
 * for a commonName (RFC 5280, ub-common-name). */
#define VG_PKI_CN_MAX 64
/* A serial number as lowercase hex: RFC 5280 allows 20 octets; a few more
 * are accepted when reading certificates made elsewhere. */
#define VG_PKI_SERIAL_HEX_MAX 64
#define VG_PKI_DAYS_MAX 36500
/* A server certificate names at most this many hosts and addresses. */
#define VG_PKI_SERVER_NAMES_MAX 32

/* A loaded CA: its key, its certificate and what issuing needs from them. */
typedef struct vg_pki_ca vg_pki_ca_t;

/* What vigil reads out of a certificate. */
typedef struct {
    char cn[VG_PKI_CN_MAX + 1]; /* the subject's commonName, NUL-terminated */
    size_t cn_len;
    char serial_hex[VG_PKI_SERIAL_HEX_MAX + 1]; /* lowercase, no leading zeros, NUL-terminated */
    int64_t not_before_ms;                      /* unix milliseconds */
    int64_t not_after_ms;
    uint8_t fingerprint[32];        /* SHA-256 of the DER certificate */
    uint8_t issuer_fingerprint[32]; /* SHA-256 of the issuer's DER certificate; zero if not known */
    bool has_issuer;                /* issuer_fingerprint was filled in */
    bool is_ca;                     /* basicConstraints CA:TRUE */
} vg_pki_cert_info_t;

/* Creates a new CA in dir (created with its parents if missing): an EC
 * P-256 key in dir/ca.key (mode 0600) and a self-signed certificate with
 * subject CN=cn valid for `days` days in dir/ca.crt. If either file exists
 * and force is false nothing is written and VG_EEXIST is returned; with
 * force both are replaced (certificates issued by the old CA stay valid
 * wherever the old CA is still trusted). Returns VG_OK; VG_EINVAL (empty or
 * too long cn, days outside 1..VG_PKI_DAYS_MAX); VG_EIO / VG_ENOSPC from
 * the file system; VG_ENOMEM. Failures are logged. */
int vg_pki_ca_init(const char *dir, const char *cn, uint32_t days, bool force);

/* Loads dir/ca.key and dir/ca.crt, checks that the key belongs to the
 * certificate and that the certificate is a CA, and prepares what issuing
 * needs. On VG_OK *out is the caller's, released with vg_pki_ca_free.
 * Returns VG_ENOTFOUND if a file is missing, VG_EMALFORMED if one is not
 * what it should be (logged), VG_ENOMEM, VG_EIO. */
int vg_pki_ca_load(const char *dir, vg_pki_ca_t **out);
/* NULL is accepted. */
void vg_pki_ca_free(vg_pki_ca_t *ca);

/* The CA's certificate (borrowed: valid until vg_pki_ca_free; take a
 * reference with X509_up_ref to keep it longer) and its SHA-256
 * fingerprint. */
X509 *vg_pki_ca_cert(const vg_pki_ca_t *ca);
const uint8_t *vg_pki_ca_fingerprint(const vg_pki_ca_t *ca);

/* Issues the broker's certificate with a new key into dir/server.key (mode
 * 0600) and dir/server.crt, replacing them. names[0..n) are host names
 * (DNS SANs) and IPv4/IPv6 literals (IP SANs); n = 0 means "localhost",
 * "127.0.0.1" and "::1". The CN is the first name. Returns VG_OK; VG_EINVAL
 * for a bad name (empty, longer than 253 bytes, characters outside
 * [A-Za-z0-9.*-]), more than VG_PKI_SERVER_NAMES_MAX names or bad days;
 * VG_EIO / VG_ENOSPC; VG_ENOMEM. */
int vg_pki_issue_server(const vg_pki_ca_t *ca, const char *dir, const char *const *names, size_t n, uint32_t days);

/* Issues a device certificate: a new EC P-256 key and a certificate with
 * CN=device_id (1..VG_PKI_CN_MAX bytes, no NUL) valid for `days` days.
 * On VG_OK *out_key_pem (PKCS#8 PEM, unencrypted) and *out_crt_pem are new
 * NUL-terminated strings owned by the caller: release the key with
 * vg_pki_key_free (which wipes it) and the certificate with vg_free.
 * fingerprint gets the certificate's SHA-256 fingerprint; info (may be
 * NULL) gets everything vg_pki_cert_info would say, issuer included.
 * Returns VG_EINVAL for a bad id or days, VG_ENOMEM, VG_EIO if OpenSSL
 * fails (logged); on failure the outputs are NULL. Thread-safe. */
int vg_pki_issue_device(const vg_pki_ca_t *ca, const char *device_id, size_t id_len, uint32_t days, char **out_key_pem,
                        char **out_crt_pem, uint8_t fingerprint[32], vg_pki_cert_info_t *info);

/* Wipes and frees a private key returned above. NULL is accepted. */
void vg_pki_key_free(char *key_pem);

/* Reads a certificate's facts. cert is borrowed. issuer (may be NULL) is
 * the certificate that issued it, e.g. the next one in a verified TLS
 * chain: if given, it must match cert's issuer name and authority key id
 * (X509_check_issued; the signature is the TLS stack's business) and its
 * fingerprint fills issuer_fingerprint. Returns VG_OK; VG_EMALFORMED if the
 * certificate has no commonName, more than one, one longer than
 * VG_PKI_CN_MAX or containing a NUL, or unreadable times or serial;
 * VG_EINVAL if issuer did not issue it. Cheap enough for the I/O loop
 * (a SHA-256 over about 500 bytes, no signature check). */
int vg_pki_cert_info(X509 *cert, X509 *issuer, vg_pki_cert_info_t *info);
/* The same for the first certificate in pem[0..len). VG_EMALFORMED if
 * there is none. */
int vg_pki_cert_info_pem(const char *pem, size_t len, X509 *issuer, vg_pki_cert_info_t *info);

/* Parses the first certificate in pem[0..len). On VG_OK *out is the
 * caller's (X509_free). VG_EMALFORMED if there is none. */
int vg_pki_cert_parse(const char *pem, size_t len, X509 **out);

/* Checks that x (borrowed) is a CA certificate that can sign device
 * certificates: basicConstraints CA:TRUE, keyUsage (if present) with
 * keyCertSign, not expired at now_ms and, if self-signed, with a valid
 * signature. Fills info (may be NULL). Returns VG_OK; VG_EMALFORMED (not
 * exactly one commonName of at most VG_PKI_CN_MAX bytes, which vigil uses
 * to name it); VG_EPROTO (not a CA, expired, bad self-signature); the
 * reason goes to why[0..why_cap) (may be NULL). */
int vg_pki_check_ca(X509 *x, int64_t now_ms, vg_pki_cert_info_t *info, char *why, size_t why_cap);

/* x's subject as RFC 2253 text in out[0..cap) (NUL-terminated, truncated
 * to fit). */
void vg_pki_subject(X509 *x, char *out, size_t cap);
/* x as PEM: a new NUL-terminated string (vg_free), or NULL. */
char *vg_pki_cert_pem(X509 *x);

/* Lowercase hex of fp[0..32) into out[65] (NUL-terminated). */
void vg_pki_fp_hex(const uint8_t fp[32], char out[65]);
/* Parses 64 hex digits (either case) into fp. VG_OK or VG_EINVAL. */
int vg_pki_fp_parse(const char *hex, size_t len, uint8_t fp[32]);

#endif
