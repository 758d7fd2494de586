/* registry.h — the device registry: which devices exist, which
 * certificates speak for them, which CAs are trusted, and the password and
 * token credentials of devices and operators (issue 11, modelled on AWS
 * IoT Core's thing registry).
 *
 * Owns: one SQLite database (normally <data-dir>/registry.db, schema in
 * registry.c), an in-memory index of its devices, certificates and CAs, a
 * thread that writes last-seen times in batches and, when started, a
 * thread that follows changes other processes make. Does not own: what a
 * device may do (the policy engine), TLS (the gateway), key material
 * (sec/pki.h; the registry stores certificates' facts and CA certificates,
 * never a private key).
 *
 * Two ways in, with different costs:
 *   - Lookups (vg_registry_device_get, _cert_get, _ca_get) and
 *     vg_registry_touch read the in-memory index under a read lock: O(1),
 *     no system call, never wait for SQLite. They are for the gateway's
 *     I/O threads. A lookup copies the entry into the caller's struct, so
 *     nothing the caller holds can be freed by a concurrent writer.
 *   - Everything else uses the database and may block: a write commits a
 *     transaction with an fsync and may wait up to 10 s for another
 *     process's transaction; scans read the database; password and token
 *     verification run argon2id on purpose slowly (about 10-50 ms and
 *     19 MiB each, outside any registry lock). Call them off the I/O loop.
 *
 * Several processes may use one database at once (the server and the
 * `vigil device` CLI). Each write bumps a change counter (rev) and stamps
 * the rows it changes with it, so vg_registry_refresh can bring the index
 * up to date by reading only what changed since its last look.
 *
 * Thread-safety: every function may be called from any thread, except that
 * vg_registry_close must be the last call. */
#ifndef VG_SEC_REGISTRY_H
#define VG_SEC_REGISTRY_H

#include "sec/pki.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_REGISTRY_FILE "registry.db"
/* Device ids and principal names: 1..64 bytes of [A-Za-z0-9._:-], not
 * starting with '.'. They are certificate CNs (at most 64 bytes), MQTT
 * client ids and file names (<id>.key), and can go into topic names
 * without escaping ('/', '+', '#' are not allowed). */
#define VG_REGISTRY_ID_MAX VG_PKI_CN_MAX
/* Groups: at most 16 per device, names as ids. Attributes: at most 16,
 * keys as ids, values 0..256 bytes of printable ASCII except '"' and '\'.
 * All of one device's group names and attributes take at most
 * VG_REGISTRY_STRINGS_MAX bytes counting a NUL after each string. */
#define VG_REGISTRY_GROUPS_MAX 16
#define VG_REGISTRY_ATTRS_MAX 16
#define VG_REGISTRY_VALUE_MAX 256
#define VG_REGISTRY_STRINGS_MAX 2048
#define VG_REGISTRY_SUBJECT_MAX 255
/* "vgt_" + 12 characters of token id + 43 of secret (base64url). */
#define VG_REGISTRY_TOKEN_LEN 59

typedef struct vg_registry vg_registry_t;

typedef enum { VG_REG_ACTIVE = 0, VG_REG_REVOKED = 1, VG_REG_DISABLED = 2 } vg_registry_status_t;
typedef enum { VG_REG_CLI = 0, VG_REG_JITR = 1 } vg_registry_provenance_t;
typedef enum { VG_REG_ROLE_DEVICE = 0, VG_REG_ROLE_OPERATOR = 1 } vg_registry_role_t;

/* A string inside a vg_registry_device_t's `strings`: offset and length
 * (the byte after it is a NUL). Offsets, not pointers, so that the struct
 * can be copied by value. */
typedef struct {
    uint16_t off, len;
} vg_registry_span_t;

/* A device as stored. Build one with vg_registry_device_init and the
 * add_group / set_attr functions below; lookups and scans fill one. */
typedef struct {
    char id[VG_REGISTRY_ID_MAX + 1]; /* NUL-terminated */
    size_t id_len;
    vg_registry_status_t status;
    vg_registry_provenance_t provenance;
    int64_t created_ms;   /* unix ms; set by vg_registry_device_add */
    int64_t last_seen_ms; /* unix ms of the last vg_registry_touch; 0 = never */
    uint32_t ngroups, nattrs;
    vg_registry_span_t groups[VG_REGISTRY_GROUPS_MAX];
    vg_registry_span_t attr_keys[VG_REGISTRY_ATTRS_MAX];
    vg_registry_span_t attr_values[VG_REGISTRY_ATTRS_MAX];
    uint32_t strings_len; /* bytes of strings in use */
    char strings[VG_REGISTRY_STRINGS_MAX];
} vg_registry_device_t;

/* A certificate registered for a device. */
typedef struct {
    uint8_t fingerprint[32]; /* SHA-256 of the DER certificate */
    char device_id[VG_REGISTRY_ID_MAX + 1];
    size_t device_id_len;
    char serial_hex[VG_PKI_SERIAL_HEX_MAX + 1];
    int64_t not_before_ms, not_after_ms;
    vg_registry_status_t status; /* VG_REG_ACTIVE or VG_REG_REVOKED */
    uint8_t issuer_fingerprint[32];
} vg_registry_cert_t;

/* A registered CA. */
typedef struct {
    uint8_t fingerprint[32];
    char subject[VG_REGISTRY_SUBJECT_MAX + 1]; /* RFC 2253 text, truncated to fit */
    bool jitr;                   /* devices with a certificate it issued are registered at first connect */
    vg_registry_status_t status; /* VG_REG_ACTIVE (no way to change it yet) */
    int64_t created_ms;
} vg_registry_ca_t;

/* What a refresh found about a device (see vg_registry_refresh). */
typedef enum {
    VG_REG_CHANGE_REVOKED = 0,      /* the device was revoked */
    VG_REG_CHANGE_DISABLED = 1,     /* the device was disabled */
    VG_REG_CHANGE_DELETED = 2,      /* the device was deleted */
    VG_REG_CHANGE_CERT_REVOKED = 3, /* one of its certificates was revoked or deleted, the device was not */
    VG_REG_CHANGE_CAS = 4,          /* no device (id ""): a CA was registered or changed; rebuild trust stores */
} vg_registry_change_t;

/* Called once per device that changed as above (and once with id "" for
 * VG_REG_CHANGE_CAS). Runs on the refreshing
 * thread with no registry lock held: it may call lookups and writes, but
 * should be quick (the gateway posts a close to the connection's thread). */
typedef void (*vg_registry_change_fn)(void *ctx, const char *device_id, size_t id_len, vg_registry_change_t what);

typedef struct {
    /* Last-seen times from vg_registry_touch are written at most this
     * often by a background thread, in one transaction per batch. 0: no
     * thread; they are written by vg_registry_flush and at close. */
    uint32_t touch_flush_ms;
} vg_registry_opts_t;

/* Opens or creates the registry at path (file mode 0600, parent
 * directories created), brings its schema up, loads the index (100,000
 * devices with their certificates in about 0.1 s) and, if opts->touch_flush_ms, starts the
 * last-seen writer. opts may be NULL. On VG_OK *out is the caller's,
 * released with vg_registry_close. Returns VG_ECORRUPT (not a database or
 * damaged), VG_EPROTO (not a registry, or a schema version this build does
 * not know; the file is left alone), VG_EIO, VG_ENOMEM; logged. */
int vg_registry_open(const char *path, const vg_registry_opts_t *opts, vg_registry_t **out);
/* Stops the watcher and the last-seen writer, writes pending last-seen
 * times, closes the database and frees reg. NULL is accepted. Returns
 * VG_OK or the error of the final write (the times are then lost). */
int vg_registry_close(vg_registry_t *reg);

/* ---- building a device for vg_registry_device_add -------------------------- */

/* True if s[0..len) is a valid device id / principal / group name. */
bool vg_registry_id_valid(const char *s, size_t len);
/* Empties d and gives it an id: status active, provenance cli, no groups
 * or attributes. VG_EINVAL for an invalid id. */
int vg_registry_device_init(vg_registry_device_t *d, const char *id, size_t len);
/* VG_OK; VG_EINVAL (invalid name); VG_EEXIST (already a member); VG_ELIMIT
 * (too many groups, or out of string space). */
int vg_registry_device_add_group(vg_registry_device_t *d, const char *name, size_t len);
/* VG_OK; VG_EINVAL (invalid key or value); VG_EEXIST (key already set);
 * VG_ELIMIT (too many attributes, or out of string space). */
int vg_registry_device_set_attr(vg_registry_device_t *d, const char *key, size_t klen, const char *val, size_t vlen);
/* A device's string at span s (NUL-terminated). */
static inline const char *vg_registry_str(const vg_registry_device_t *d, vg_registry_span_t s)
{
    return d->strings + s.off;
}
bool vg_registry_device_in_group(const vg_registry_device_t *d, const char *name, size_t len);
/* The value of attribute key: VG_OK with *val (pointing into d) and *vlen,
 * or VG_ENOTFOUND. */
int vg_registry_device_attr(const vg_registry_device_t *d, const char *key, size_t klen, const char **val,
                            size_t *vlen);
/* Fills c from what sec/pki read out of a certificate: device id = CN,
 * status active. VG_EINVAL if info has no issuer or its CN is not a valid
 * device id. */
int vg_registry_cert_from_info(vg_registry_cert_t *c, const vg_pki_cert_info_t *info);

/* ---- lookups: in memory, O(1), for any thread ------------------------------ */

/* VG_OK with a copy in *out, or VG_ENOTFOUND. */
int vg_registry_device_get(vg_registry_t *reg, const char *id, size_t len, vg_registry_device_t *out);
int vg_registry_cert_get(vg_registry_t *reg, const uint8_t fingerprint[32], vg_registry_cert_t *out);
int vg_registry_ca_get(vg_registry_t *reg, const uint8_t fingerprint[32], vg_registry_ca_t *out);
/* Devices in the index. */
size_t vg_registry_device_count(vg_registry_t *reg);
/* The change counter the index reflects. */
uint64_t vg_registry_rev(vg_registry_t *reg);

/* Records that device id was seen at now_ms: in memory at once (lookups
 * return it), in the database with the next batch. Cheap: a hash lookup
 * under the read lock and, once per device per batch, a short mutex.
 * VG_OK or VG_ENOTFOUND. */
int vg_registry_touch(vg_registry_t *reg, const char *id, size_t len, int64_t now_ms);
/* Writes the pending last-seen times now (one transaction). VG_OK or the
 * write's error (the times stay pending). */
int vg_registry_flush(vg_registry_t *reg);

/* ---- writes: one transaction each, block on SQLite ------------------------- */

/* Registers devs[0..n) in one transaction, created_ms = now, each with
 * certs[i] if certs is non-NULL (certs[i].device_id must be devs[i].id; its
 * issuer must be a registered, active CA). All or nothing: VG_EEXIST if any
 * device id or certificate fingerprint is already registered (or appears
 * twice); VG_EINVAL for a mismatched certificate; VG_EPROTO if an issuer is
 * not a registered CA; VG_EIO / VG_ENOSPC. The index has them on return. */
int vg_registry_device_add(vg_registry_t *reg, const vg_registry_device_t *devs, const vg_registry_cert_t *certs,
                           size_t n);
/* Adds a certificate to an existing device that is not revoked.
 * VG_ENOTFOUND (no device), VG_EPROTO (revoked, or issuer not a registered
 * CA), VG_EEXIST, VG_EIO. */
int vg_registry_cert_add(vg_registry_t *reg, const vg_registry_cert_t *cert);
/* Sets a device's status. Revoking also revokes all its certificates and
 * is final: a revoked device cannot become active or disabled again
 * (VG_EPROTO). VG_ENOTFOUND; VG_EINVAL for a bad status. */
int vg_registry_device_set_status(vg_registry_t *reg, const char *id, size_t len, vg_registry_status_t status);
/* Deletes a device with its certificates and its device-role credentials.
 * VG_ENOTFOUND. */
int vg_registry_device_delete(vg_registry_t *reg, const char *id, size_t len);
/* Registers the CA certificate in pem[0..len) (it must pass
 * vg_pki_check_ca). *out (may be NULL) gets its entry. Returns VG_OK;
 * VG_EEXIST if already registered (*out is the existing entry, unchanged);
 * VG_EMALFORMED / VG_EPROTO with the reason in why[0..why_cap) (may be
 * NULL); VG_EIO. */
int vg_registry_ca_add(vg_registry_t *reg, const char *pem, size_t len, bool jitr, vg_registry_ca_t *out, char *why,
                       size_t why_cap);
/* VG_OK or VG_ENOTFOUND. */
int vg_registry_ca_set_jitr(vg_registry_t *reg, const uint8_t fingerprint[32], bool jitr);

/* ---- scans: from the database, in key order -------------------------------- */

/* fn returns 0 to go on; anything else stops the scan and is returned.
 * They run with the database lock held: fn must not call registry writes,
 * scans, flush or refresh (lookups are fine). */
typedef int (*vg_registry_device_scan_fn)(void *ctx, const vg_registry_device_t *dev);
typedef int (*vg_registry_cert_scan_fn)(void *ctx, const vg_registry_cert_t *cert);
typedef int (*vg_registry_ca_scan_fn)(void *ctx, const vg_registry_ca_t *ca, const char *pem, size_t pem_len);
/* Every device, by id. */
int vg_registry_device_scan(vg_registry_t *reg, vg_registry_device_scan_fn fn, void *ctx);
/* The certificates of device id, by not_before. */
int vg_registry_cert_scan(vg_registry_t *reg, const char *id, size_t len, vg_registry_cert_scan_fn fn, void *ctx);
/* Every CA with its PEM certificate, by subject (for a TLS trust store). */
int vg_registry_ca_scan(vg_registry_t *reg, vg_registry_ca_scan_fn fn, void *ctx);

/* ---- following other processes --------------------------------------------- */

/* Brings the index up to date with rows other processes changed since the
 * last refresh: one query when nothing changed, otherwise the changed rows
 * only. Then calls fn (may be NULL) per device that became revoked,
 * disabled or deleted or lost a certificate, and once if CAs changed. A registry's own writes
 * are in its index when they return and are not reported. Returns VG_OK
 * or VG_EIO (the index is unchanged). */
int vg_registry_refresh(vg_registry_t *reg, vg_registry_change_fn fn, void *ctx);
/* Starts a thread that sleeps on inotify on the database's directory and
 * refreshes (calling fn) whenever the database or its WAL is written or
 * closed by a writer; no timer. Stopped by vg_registry_close. VG_EEXIST if
 * already started; VG_EIO if inotify or the thread cannot be set up. */
int vg_registry_watch_start(vg_registry_t *reg, vg_registry_change_fn fn, void *ctx);

/* ---- credentials: argon2id hashes, never plaintext ------------------------- */

/* Sets (or replaces) principal's password: argon2id (t=2, m=19 MiB, p=1,
 * 16-byte random salt) of password[0..plen) (1..1024 bytes). A device
 * principal must be a registered device (VG_ENOTFOUND). VG_EINVAL for an
 * invalid name or length. */
int vg_registry_password_set(vg_registry_t *reg, const char *principal, size_t len, vg_registry_role_t role,
                             const char *password, size_t plen);
/* VG_OK with *role (may be NULL) if principal has this password;
 * VG_EPROTO if not; VG_ENOTFOUND if it has no password (after the same
 * work as a real check, so timing does not tell which). Callers must not
 * tell a client which of the two failed. */
int vg_registry_password_verify(vg_registry_t *reg, const char *principal, size_t len, const char *password,
                                size_t plen, vg_registry_role_t *role);
/* Creates a token for principal: 32 random bytes, written into
 * token[0..VG_REGISTRY_TOKEN_LEN] (NUL-terminated) as "vgt_<id><secret>".
 * Only its hash is stored: this is the one time it can be seen. A device
 * principal must be a registered device (VG_ENOTFOUND). */
int vg_registry_token_create(vg_registry_t *reg, const char *principal, size_t len, vg_registry_role_t role,
                             char token[VG_REGISTRY_TOKEN_LEN + 1]);
/* Checks a token: the id in it finds the row, argon2id checks the secret.
 * VG_OK with the principal's name in principal[0..VG_REGISTRY_ID_MAX]
 * (NUL-terminated; may be NULL) and *role (may be NULL); VG_EPROTO for a
 * wrong secret or a malformed token; VG_ENOTFOUND for an unknown id. */
int vg_registry_token_verify(vg_registry_t *reg, const char *token, size_t len, char principal[VG_REGISTRY_ID_MAX + 1],
                             vg_registry_role_t *role);

/* Names for the CLI and logs: "active", "cli", "device", "revoked", ... */
const char *vg_registry_status_name(vg_registry_status_t s);
const char *vg_registry_provenance_name(vg_registry_provenance_t p);
const char *vg_registry_role_name(vg_registry_role_t r);

#endif
