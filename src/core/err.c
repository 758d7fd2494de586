/* err.c — names for the VG_* error codes. */
#include "core/err.h"

const char *vg_strerror(int code)
{
    switch (code) {
    case VG_OK: return "ok";
    case VG_AGAIN: return "again";
    case VG_EINVAL: return "invalid argument";
    case VG_ENOMEM: return "out of memory";
    case VG_EIO: return "i/o error";
    case VG_EMALFORMED: return "malformed input";
    case VG_ETOOBIG: return "too big";
    case VG_EPROTO: return "protocol error";
    case VG_ENOSPC: return "no space";
    case VG_ECORRUPT: return "corrupt data";
    case VG_ELIMIT: return "limit reached";
    case VG_ENOTFOUND: return "not found";
    case VG_ECLOSED: return "closed";
    case VG_EEXIST: return "already exists";
    default: return "unknown error";
    }
}
