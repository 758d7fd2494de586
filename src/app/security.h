/* security.h — what `vigil serve` puts in front of the gateway to know who
 * is connecting and what they may do: the TLS context (certificate, key,
 * client CAs) and its reload on SIGHUP, the device registry, the policies,
 * the audit log, the rate limits and the threads that check passwords; and
 * the hooks through which the gateway asks (see security.c for the order
 * of the decisions).
 *
 * Owns all of the above. Resolves the defaults: with no --tls-cert,
 * DATA-DIR/pki/server.crt and server.key (made by `vigil ca init`) if they
 * exist; with no --tls-client-ca, DATA-DIR/pki/ca.crt; the registry is
 * DATA-DIR/registry.db, policies DATA-DIR/policies/ *.json (plus the
 * built-in vigil-device and vigil-operator), the audit log
 * DATA-DIR/audit.log. Without a certificate the TLS listeners stay off and
 * the start-up log says so; naming a certificate that cannot be loaded is an
 * error. A plain listener on a non-loopback address is an error unless
 * allow_anonymous is set (secure by default).
 *
 * Threads: open/attach/reload/stop/close on the main thread; the hooks run
 * on the gateway's I/O workers and the auth pool. */
#ifndef VG_APP_SECURITY_H
#define VG_APP_SECURITY_H

#include "app/config.h"
#include "gateway/server.h"

typedef struct vg_security vg_security_t;

/* Why an authentication was refused (counted: auth.refused.<name>). */
typedef enum {
    VG_SEC_FAIL_ANONYMOUS = 0,   /* no credentials where they are required */
    VG_SEC_FAIL_BAD_CREDENTIALS, /* wrong or unknown user name, password or token */
    VG_SEC_FAIL_UNKNOWN_DEVICE,  /* a certificate of no registered device */
    VG_SEC_FAIL_NOT_ACTIVE,      /* the device or its certificate is revoked or disabled */
    VG_SEC_FAIL_CLIENT_ID,       /* a device connecting under another client id */
    VG_SEC_FAIL_CONNECT_DENIED,  /* its policies do not allow mqtt:Connect */
    VG_SEC_FAIL_REGISTRATION,    /* just-in-time registration failed */
    VG_SEC_FAIL_INTERNAL,        /* out of memory, shutting down */
    VG_SEC_FAIL__COUNT
} vg_security_fail_t;

const char *vg_security_fail_name(vg_security_fail_t f);

typedef struct {
    uint64_t auth_ok_certificate, auth_ok_password, auth_ok_token, auth_ok_anonymous;
    uint64_t auth_fail[VG_SEC_FAIL__COUNT];
    uint64_t auth_pending;       /* password checks and registrations in progress or held back */
    uint64_t auth_delayed;       /* refusals answered late (repeated failures) */
    uint64_t jitr_registered;    /* devices registered at their first connection */
    uint64_t revoked_disconnects;/* connections closed because their device was revoked */
    uint64_t devices;            /* in the registry */
    uint64_t conn_rate_refused, conn_max_refused, publish_throttled;
    uint64_t audit_written, audit_dropped;
} vg_security_stats_t;

/* Opens everything from cfg (kept: it must outlive sec). On error prints
 * one line to err and returns VG_EINVAL. *out is the caller's
 * (vg_security_close), also when TLS stays off. */
int vg_security_open(const vg_config_t *cfg, vg_security_t **out, FILE *err);

/* Fills the TLS listener fields and hooks of so (pointers into sec and
 * cfg: both must outlive the server). */
void vg_security_server_opts(vg_security_t *sec, const vg_config_t *cfg, vg_server_opts_t *so);

/* The server is made: answers to the auth pool's checks go to it, and
 * registry changes by other processes (revocations) start being followed.
 * Says at start-up who may connect. */
int vg_security_attach(vg_security_t *sec, vg_server_t *server);

/* Whether the TLS listeners are on (a certificate was loaded). */
bool vg_security_tls_on(const vg_security_t *sec);

/* SIGHUP: reloads policies, certificate, key and client CAs; connections
 * stay. Negative (and logged) when something new was refused: the old
 * stays. */
int vg_security_reload(vg_security_t *sec);

void vg_security_stats(vg_security_t *sec, vg_security_stats_t *out);

/* The policy store serve uses: the built-ins for cfg's telemetry and
 * control topics, then DATA-DIR/policies/ *.json (for `vigil policy`).
 * *out is the caller's (vg_policystore_free); err says what failed. */
struct vg_policystore;
int vg_security_load_policies(const vg_config_t *cfg, struct vg_policystore **out, char *err, size_t cap);

/* The device a principal authenticated as (NULL for none: anonymous, an
 * operator); *len its length. */
const char *vg_security_device_of(const void *principal, size_t *len);

/* After vg_server_stop, before vg_server_free: stops the auth pool. */
void vg_security_stop(vg_security_t *sec);

void vg_security_close(vg_security_t *sec);

#endif
