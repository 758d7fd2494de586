/* fuzz_sec.c — libFuzzer harness for what sec/ reads from outside: a peer
 * certificate (vg_pki_cert_info, vg_pki_check_ca on whatever OpenSSL's
 * DER parser accepts; the gateway calls them on every verified client
 * certificate) and the registry's groups and attributes columns (JSON a
 * person may have edited in the database).
 *
 * The first input byte picks the reader. Invariants: cert_info either
 * fails with VG_EMALFORMED or reports a CN of 1..64 bytes without NUL, a
 * lowercase-hex serial and the certificate's own SHA-256; check_ca agrees
 * with cert_info's is_ca; a parsed device formats back to JSON that parses
 * to the same groups and attributes. A broken invariant aborts. */
#include "core/alloc.h"
#include "core/err.h"
#include "sec/pki.h"
#include "sec/registry_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void fuzz_cert(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, (long)size);
    if (!x)
        return;
    vg_pki_cert_info_t info;
    int rc = vg_pki_cert_info(x, x, &info);
    if (rc == VG_EINVAL) /* not self-issued */
        rc = vg_pki_cert_info(x, NULL, &info);
    CHECK(rc == VG_OK || rc == VG_EMALFORMED || rc == VG_EIO);
    if (rc == VG_OK) {
        CHECK(info.cn_len >= 1 && info.cn_len <= VG_PKI_CN_MAX && strlen(info.cn) == info.cn_len);
        for (const char *s = info.serial_hex[0] == '-' ? info.serial_hex + 1 : info.serial_hex; *s; s++)
            CHECK((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'));
        uint8_t fp[32];
        unsigned int n = 0;
        CHECK(X509_digest(x, EVP_sha256(), fp, &n) == 1 && n == 32 && memcmp(fp, info.fingerprint, 32) == 0);
        char why[128];
        int crc = vg_pki_check_ca(x, 0, NULL, why, sizeof why);
        CHECK(crc == VG_OK || crc == VG_EPROTO);
        CHECK(crc != VG_OK || info.is_ca);
    }
    X509_free(x);
}

static void fuzz_columns(const uint8_t *data, size_t size)
{
    /* groups JSON, a NUL, attributes JSON */
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t gl = nul ? (size_t)(nul - s) : size;
    const char *a = nul ? nul + 1 : "{}";
    size_t al = nul ? size - gl - 1 : 2;
    static vg_registry_device_t d, back;
    vg_registry_device_init(&d, "fuzz", 4);
    if (reg_parse_groups(&d, s, gl) != VG_OK || reg_parse_attrs(&d, a, al) != VG_OK)
        return;
    static char g[VG_REGISTRY_STRINGS_MAX + 64], at[VG_REGISTRY_STRINGS_MAX + 128];
    int n1 = reg_format_groups(&d, g, sizeof g), n2 = reg_format_attrs(&d, at, sizeof at);
    CHECK(n1 > 0 && n2 > 0);
    vg_registry_device_init(&back, "fuzz", 4);
    CHECK(reg_parse_groups(&back, g, (size_t)n1) == VG_OK && reg_parse_attrs(&back, at, (size_t)n2) == VG_OK);
    CHECK(back.ngroups == d.ngroups && back.nattrs == d.nattrs && back.strings_len == d.strings_len);
    CHECK(memcmp(back.strings, d.strings, d.strings_len) == 0);
    reg_dev_t *e = reg_dev_pack(&d);
    if (e) {
        reg_dev_unpack(e, &back);
        CHECK(back.strings_len == d.strings_len && memcmp(back.strings, d.strings, d.strings_len) == 0);
        CHECK(back.ngroups == d.ngroups && memcmp(back.groups, d.groups, d.ngroups * sizeof d.groups[0]) == 0);
        vg_free(e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_cert(data + 1, size - 1);
    else
        fuzz_columns(data + 1, size - 1);
    return 0;
}
