/* security.h — what `vigil serve` puts in front of the gateway to know who
 * is connecting: the TLS context (certificate, key, client CAs) and its
 * reload on SIGHUP, and the hooks the gateway calls with a client
 * certificate.
 *
 * Owns the vg_tls_t the gateway's TLS listeners share. Resolves the
 * defaults: with no --tls-cert, DATA-DIR/pki/server.crt and server.key (made
 * by `vigil ca init`) if they exist; with no --tls-client-ca,
 * DATA-DIR/pki/ca.crt. Without a certificate the TLS listeners stay off and
 * the start-up log says so; naming a certificate that cannot be loaded is an
 * error.
 *
 * Threads: open/close/reload on the main thread; the hooks run on the
 * gateway's I/O workers. */
#ifndef VG_APP_SECURITY_H
#define VG_APP_SECURITY_H

#include "app/config.h"
#include "gateway/server.h"

typedef struct vg_security vg_security_t;

/* Builds the TLS context from cfg if a certificate is configured or found.
 * On error prints one line to err and returns VG_EINVAL. *out is the
 * caller's (vg_security_close), also when TLS stays off. */
int vg_security_open(const vg_config_t *cfg, vg_security_t **out, FILE *err);

/* Fills the TLS listener fields and hooks of so (pointers into sec and
 * cfg: both must outlive the server). */
void vg_security_server_opts(vg_security_t *sec, const vg_config_t *cfg, vg_server_opts_t *so);

/* Whether the TLS listeners are on (a certificate was loaded). */
bool vg_security_tls_on(const vg_security_t *sec);

/* SIGHUP: reloads certificate, key and client CAs; connections stay.
 * Negative (and logged) when the new files are refused: the old ones stay. */
int vg_security_reload(vg_security_t *sec);

void vg_security_close(vg_security_t *sec);

#endif
