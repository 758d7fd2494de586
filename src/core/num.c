/* num.c — see num.h. */
#include "core/num.h"

#include "core/err.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int vg_num_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return VG_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return VG_EINVAL;
    *out = v;
    return VG_OK;
}
