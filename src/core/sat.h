/* sat.h — saturating integer arithmetic.
 *
 * Owns: adding and subtracting event times and bumping small counters
 * without wrapping. A timestamp comes from a device's payload and may be
 * anything an int64 holds, so "ts + window" must stick at the end of the
 * range rather than overflow (undefined behaviour, and a wrapped time would
 * open or close an episode at random). Not owned: what a saturated value
 * means to the caller (the detectors treat INT64_MAX as "never").
 *
 * Header-only and static inline: the detectors call these per sample. */
#ifndef VG_CORE_SAT_H
#define VG_CORE_SAT_H

#include <stdint.h>

/* a + b, clamped to [INT64_MIN, INT64_MAX]. */
static inline int64_t vg_sat_add_i64(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* a - b, clamped to [INT64_MIN, INT64_MAX]. */
static inline int64_t vg_sat_sub_i64(int64_t a, int64_t b)
{
    if (b < 0 && a > INT64_MAX + b)
        return INT64_MAX;
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    return a - b;
}

/* v + 1, sticking at UINT8_MAX (a run counter in a packed state). */
static inline uint8_t vg_sat_inc_u8(uint8_t v)
{
    return v == UINT8_MAX ? v : (uint8_t)(v + 1);
}

#endif
