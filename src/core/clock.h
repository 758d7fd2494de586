/* clock.h — time helpers: monotonic nanoseconds for latency, wall-clock
 * milliseconds for record timestamps, ISO-8601 formatting. */
#ifndef VG_CORE_CLOCK_H
#define VG_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t vg_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t vg_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t vg_clock_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Formats epoch milliseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (needs 25
 * bytes). Returns the length written. */
size_t vg_clock_format_iso(int64_t ms, char *out, size_t cap);

#endif
