/* child.h — the server `vigil eval` measures: a `vigil serve` child process
 * on a free loopback port with a fresh data directory.
 *
 * Owns: the temporary directory (data/ and server.log inside it), the free
 * port, starting the child (it dies with us: PR_SET_PDEATHSIG), waiting for
 * its listener, stopping it with SIGTERM (SIGKILL only after the grace
 * period, and only this child), removing the directory. Does not own: any
 * MQTT traffic. */
#ifndef VG_EVAL_CHILD_H
#define VG_EVAL_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char dir[512];  /* the temporary directory */
    char data[600]; /* dir/data: --data-dir */
    char log[600];  /* dir/server.log: the child's stdout and stderr */
    struct sockaddr_storage addr;
    socklen_t addr_len;
} vg_evalchild_t;

/* Creates the directory (under $TMPDIR or /tmp), picks a port and starts
 * `exe serve --data-dir ... --listen 127.0.0.1:PORT --ws-listen off
 * --http-listen off` followed by extra[0..n_extra), then waits up to
 * timeout_ms for the listener. VG_OK, or VG_EIO with *why set (the
 * directory is removed again unless keep). */
int vg_evalchild_start(vg_evalchild_t *c, const char *exe, const char *const *extra, size_t n_extra, int timeout_ms,
                       bool keep, const char **why);

/* true while the child runs. */
bool vg_evalchild_alive(vg_evalchild_t *c);

/* SIGTERM, then waits up to timeout_ms (then SIGKILL). Returns the exit
 * status (0 = clean), or -1 if it had to be killed or had died already.
 * Safe to call twice. */
int vg_evalchild_stop(vg_evalchild_t *c, int timeout_ms);

/* Copies the last `lines` lines of the server log to stderr. */
void vg_evalchild_tail_log(const vg_evalchild_t *c, int lines);

/* Removes the directory unless keep (then prints where it is). */
void vg_evalchild_cleanup(vg_evalchild_t *c, bool keep);

#endif
