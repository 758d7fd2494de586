/* rlimit.h — the open-file limit of processes that hold many sockets (the
 * gateway, the simulator's workers, the load generators).
 *
 * Owns: raising RLIMIT_NOFILE's soft limit to the hard limit, once, and
 * saying whether that is enough. Does not own: what to do when it is not
 * (the caller words its own advice: more workers, a smaller fleet). */
#ifndef VG_CORE_RLIMIT_H
#define VG_CORE_RLIMIT_H

#include <stdint.h>

/* Raises the soft open-file limit to the hard limit and stores the
 * resulting soft limit in *limit (may be NULL; UINT64_MAX for unlimited).
 * Returns VG_OK when it is at least need descriptors (need 0: any),
 * VG_ELIMIT when it is lower, VG_EIO when the limit cannot be read
 * (*limit then says 1024, the usual default). A failed raise is not an
 * error by itself: the limit that stays is reported. */
int vg_rlimit_raise_nofile(uint64_t need, uint64_t *limit);

#endif
