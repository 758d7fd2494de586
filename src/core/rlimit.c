/* rlimit.c — see rlimit.h. */
#include "core/rlimit.h"

#include "core/err.h"

#include <sys/resource.h>

int vg_rlimit_raise_nofile(uint64_t need, uint64_t *limit)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        if (limit)
            *limit = 1024;
        return VG_EIO;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    uint64_t cur = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    if (limit)
        *limit = cur;
    return cur >= need ? VG_OK : VG_ELIMIT;
}
