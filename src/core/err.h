/* err.h — vigil's error codes.
 *
 * Every function that can fail returns int: 0 (VG_OK) on success, a negative
 * VG_E* code on failure, or VG_AGAIN for "not finished, call again" (more
 * input needed, queue full for now). Callers never read errno after we return. */
#ifndef VG_CORE_ERR_H
#define VG_CORE_ERR_H

enum {
    VG_OK = 0,
    VG_AGAIN = -1,      /* not an error: need more bytes / try later */
    VG_EINVAL = -2,     /* bad argument or value */
    VG_ENOMEM = -3,     /* allocation failed */
    VG_EIO = -4,        /* a system call failed (details logged) */
    VG_EMALFORMED = -5, /* input violates its format */
    VG_ETOOBIG = -6,    /* input exceeds a configured limit */
    VG_EPROTO = -7,     /* protocol violation (well-formed but not allowed) */
    VG_ENOSPC = -8,     /* out of buffer or disk space */
    VG_ECORRUPT = -9,   /* stored data failed its checksum */
    VG_ELIMIT = -10,    /* a configured limit was reached */
    VG_ENOTFOUND = -11, /* no such thing */
    VG_ECLOSED = -12,   /* the object was closed / is shutting down */
    VG_EEXIST = -13,    /* already exists */
};

/* Returns a static, human-readable name for a VG_* code. */
const char *vg_strerror(int code);

#endif
