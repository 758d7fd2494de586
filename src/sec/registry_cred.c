/* registry_cred.c — password and token credentials in the registry's
 * credentials table (schema in registry.c): argon2id hashes through
 * Debian's libargon2, salts and tokens from OpenSSL's RAND_bytes.
 *
 * Owns: the hash parameters, the token format, and the rule that
 * plaintext is never stored or logged (secrets on the stack are wiped).
 * Does not own: who may use a credential for what (the policy engine).
 *
 * Parameters: argon2id, t=2 passes over m=19456 KiB with p=1 lane, a
 * 16-byte salt and a 32-byte tag — OWASP's first recommended setting,
 * about 20-40 ms per hash on this class of machine. It is slow and
 * memory-hard on purpose, to make offline guessing from a stolen database
 * expensive; hence never on an I/O loop. libargon2 allocates its 19 MiB
 * itself (malloc), outside vigil's accounting.
 *
 * TOKENS are "vgt_" + 12 + 43 characters of base64url (RFC 4648 §5, no
 * padding): 9 random bytes of id, then 32 random bytes of secret. The id
 * finds the row ('token:<id>') without scanning, only the secret's hash is
 * stored. The secret's 256 bits would not need a slow hash; argon2id is
 * used anyway so that one verifier and one stored format cover both
 * kinds. */
#include "sec/registry_int.h"

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <argon2.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define T_COST 2
#define M_COST 19456
#define LANES 1
#define SALT_LEN 16
#define TAG_LEN 32
#define ENCODED_MAX 160
#define PASSWORD_MAX 1024
#define TOKEN_PREFIX "vgt_"
#define TOKEN_ID_CHARS 12
#define TOKEN_SECRET_CHARS 43

const char *vg_registry_role_name(vg_registry_role_t r)
{
    return r == VG_REG_ROLE_OPERATOR ? "operator" : r == VG_REG_ROLE_DEVICE ? "device" : "?";
}

static int argon_rc(int r)
{
    if (r == ARGON2_OK)
        return VG_OK;
    if (r == ARGON2_VERIFY_MISMATCH)
        return VG_EPROTO;
    if (r == ARGON2_MEMORY_ALLOCATION_ERROR)
        return VG_ENOMEM;
    VG_ERROR(REG_MOD, "argon2: %s", argon2_error_message(r));
    return r == ARGON2_DECODING_FAIL ? VG_ECORRUPT : VG_EIO;
}

static int hash_secret(const void *secret, size_t len, char out[ENCODED_MAX])
{
    uint8_t salt[SALT_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return VG_EIO;
    return argon_rc(
        argon2id_hash_encoded(T_COST, M_COST, LANES, secret, len, salt, sizeof salt, TAG_LEN, out, ENCODED_MAX));
}

/* The work of one verification, for an unknown principal or token id:
 * the caller then fails in about the same time as a wrong secret. */
static void dummy_hash(const void *secret, size_t len)
{
    static const uint8_t salt[SALT_LEN];
    uint8_t tag[TAG_LEN];
    argon2id_hash_raw(T_COST, M_COST, LANES, secret, len, salt, sizeof salt, tag, sizeof tag);
    OPENSSL_cleanse(tag, sizeof tag);
}

/* RFC 4648 base64url without padding. out gets (n * 4 + 2) / 3 characters
 * and a NUL. */
static void b64url(const uint8_t *in, size_t n, char *out)
{
    char tmp[64];
    int k = EVP_EncodeBlock((unsigned char *)tmp, in, (int)n);
    size_t o = 0;
    for (int i = 0; i < k && tmp[i] != '='; i++)
        out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
    out[o] = '\0';
    OPENSSL_cleanse(tmp, sizeof tmp);
}

static bool b64url_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Inserts or replaces credential row `id`. A device principal must exist. */
static int store(vg_registry_t *reg, const char *id, const char *principal, size_t len, const char *kind,
                 vg_registry_role_t role, const char *encoded)
{
    int64_t now = vg_clock_wall_ms();
    uint64_t rev = 0;
    pthread_mutex_lock(&reg->db_mu);
    int rc = reg_write_begin(reg, &rev);
    if (rc == VG_OK && role == VG_REG_ROLE_DEVICE) {
        sqlite3_stmt *st = reg_stmt(reg, "SELECT 1 FROM devices WHERE id = ?1");
        if (!st)
            rc = VG_EIO;
        else {
            sqlite3_bind_text(st, 1, principal, (int)len, SQLITE_STATIC);
            int s = sqlite3_step(st);
            rc = s == SQLITE_ROW ? VG_OK : s == SQLITE_DONE ? VG_ENOTFOUND : reg_sqlite_rc(s);
            sqlite3_reset(st);
        }
    }
    if (rc == VG_OK) {
        sqlite3_stmt *st = reg_stmt(reg, "INSERT OR REPLACE INTO credentials(id, principal, kind, hash, role, "
                                         "created_ms, rev) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        if (!st)
            rc = VG_EIO;
        else {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, principal, (int)len, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, encoded, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, vg_registry_role_name(role), -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, now);
            sqlite3_bind_int64(st, 7, (int64_t)rev);
            rc = reg_step_done(reg, st);
        }
    }
    if (rc == VG_OK)
        rc = reg_write_commit(reg, rev);
    else
        reg_write_rollback(reg);
    pthread_mutex_unlock(&reg->db_mu);
    return rc;
}

/* Reads credential row `id`: its hash, role and principal. VG_ENOTFOUND. */
static int load(vg_registry_t *reg, const char *id, char hash[ENCODED_MAX], vg_registry_role_t *role,
                char principal[VG_REGISTRY_ID_MAX + 1])
{
    pthread_mutex_lock(&reg->db_mu);
    sqlite3_stmt *st = reg_stmt(reg, "SELECT hash, role, principal FROM credentials WHERE id = ?1");
    int rc = VG_EIO;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        const char *h = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        const char *r = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 1) : NULL;
        const char *p = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 2) : NULL;
        if (s == SQLITE_DONE)
            rc = VG_ENOTFOUND;
        else if (s != SQLITE_ROW)
            rc = reg_sqlite_rc(s);
        else if (!h || !r || !p || strlen(h) >= ENCODED_MAX || strlen(p) > VG_REGISTRY_ID_MAX)
            rc = VG_ECORRUPT;
        else {
            snprintf(hash, ENCODED_MAX, "%s", h);
            *role = strcmp(r, "operator") == 0 ? VG_REG_ROLE_OPERATOR : VG_REG_ROLE_DEVICE;
            snprintf(principal, VG_REGISTRY_ID_MAX + 1, "%s", p);
            rc = VG_OK;
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&reg->db_mu);
    return rc;
}

static bool role_ok(vg_registry_role_t role)
{
    return role == VG_REG_ROLE_DEVICE || role == VG_REG_ROLE_OPERATOR;
}

int vg_registry_password_set(vg_registry_t *reg, const char *principal, size_t len, vg_registry_role_t role,
                             const char *password, size_t plen)
{
    if (!vg_registry_id_valid(principal, len) || !role_ok(role) || plen == 0 || plen > PASSWORD_MAX)
        return VG_EINVAL;
    char encoded[ENCODED_MAX], id[16 + VG_REGISTRY_ID_MAX];
    snprintf(id, sizeof id, "password:%.*s", (int)len, principal);
    /* Hashed before any lock is taken: it is the slow part. */
    int rc = hash_secret(password, plen, encoded);
    if (rc == VG_OK)
        rc = store(reg, id, principal, len, "password", role, encoded);
    return rc;
}

int vg_registry_password_verify(vg_registry_t *reg, const char *principal, size_t len, const char *password,
                                size_t plen, vg_registry_role_t *role)
{
    if (plen > PASSWORD_MAX)
        return VG_EPROTO;
    char hash[ENCODED_MAX], id[16 + VG_REGISTRY_ID_MAX], who[VG_REGISTRY_ID_MAX + 1];
    vg_registry_role_t r = VG_REG_ROLE_DEVICE;
    int rc = VG_ENOTFOUND;
    if (vg_registry_id_valid(principal, len)) {
        snprintf(id, sizeof id, "password:%.*s", (int)len, principal);
        rc = load(reg, id, hash, &r, who);
    }
    if (rc == VG_ENOTFOUND) {
        dummy_hash(password, plen);
        return VG_ENOTFOUND;
    }
    if (rc == VG_OK && (rc = argon_rc(argon2id_verify(hash, password, plen))) == VG_OK && role)
        *role = r;
    return rc;
}

int vg_registry_token_create(vg_registry_t *reg, const char *principal, size_t len, vg_registry_role_t role,
                             char token[VG_REGISTRY_TOKEN_LEN + 1])
{
    token[0] = '\0';
    if (!vg_registry_id_valid(principal, len) || !role_ok(role))
        return VG_EINVAL;
    uint8_t raw[9 + 32];
    char idtxt[TOKEN_ID_CHARS + 1], secret[TOKEN_SECRET_CHARS + 1], encoded[ENCODED_MAX];
    char id[8 + TOKEN_ID_CHARS];
    int rc = RAND_bytes(raw, sizeof raw) == 1 ? VG_OK : VG_EIO;
    if (rc == VG_OK) {
        b64url(raw, 9, idtxt);
        b64url(raw + 9, 32, secret);
        snprintf(id, sizeof id, "token:%s", idtxt);
        rc = hash_secret(secret, TOKEN_SECRET_CHARS, encoded);
    }
    if (rc == VG_OK)
        rc = store(reg, id, principal, len, "token", role, encoded);
    if (rc == VG_OK)
        snprintf(token, VG_REGISTRY_TOKEN_LEN + 1, TOKEN_PREFIX "%s%s", idtxt, secret);
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

int vg_registry_token_verify(vg_registry_t *reg, const char *token, size_t len, char principal[VG_REGISTRY_ID_MAX + 1],
                             vg_registry_role_t *role)
{
    const size_t pre = sizeof TOKEN_PREFIX - 1;
    if (principal)
        principal[0] = '\0';
    if (len != VG_REGISTRY_TOKEN_LEN || memcmp(token, TOKEN_PREFIX, pre) != 0 || !b64url_chars(token + pre, len - pre))
        return VG_EPROTO;
    char id[8 + TOKEN_ID_CHARS], hash[ENCODED_MAX], who[VG_REGISTRY_ID_MAX + 1];
    snprintf(id, sizeof id, "token:%.*s", TOKEN_ID_CHARS, token + pre);
    const char *secret = token + pre + TOKEN_ID_CHARS;
    vg_registry_role_t r = VG_REG_ROLE_DEVICE;
    int rc = load(reg, id, hash, &r, who);
    if (rc == VG_ENOTFOUND) {
        dummy_hash(secret, TOKEN_SECRET_CHARS);
        return VG_ENOTFOUND;
    }
    if (rc == VG_OK && (rc = argon_rc(argon2id_verify(hash, secret, TOKEN_SECRET_CHARS))) == VG_OK) {
        if (principal)
            snprintf(principal, VG_REGISTRY_ID_MAX + 1, "%s", who);
        if (role)
            *role = r;
    }
    return rc;
}
