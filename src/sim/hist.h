/* hist.h — the simulator's latency histogram: log-linear buckets over
 * microseconds, mergeable across worker processes.
 *
 * Owns: recording, merging, percentiles and a compact byte encoding for the
 * worker→parent pipe. Does not own: what is measured or how it is reported.
 *
 * Layout (HDR-histogram-like): values below 256 µs get one bucket each; above
 * that every power-of-two range [2^k, 2^(k+1)) is split into 128 equal
 * buckets, so a bucket is at most 1/128 of its lower bound wide. Percentiles
 * report the bucket's midpoint, which is therefore within 0.4% of any value in
 * it (the brief asks for <= 1%). Values beyond ~25 days land in the last
 * bucket; min and max are kept exactly. The struct is a flat array (~35 KB),
 * so one lives in each worker and the parent merges by adding counts. */
#ifndef VG_SIM_HIST_H
#define VG_SIM_HIST_H

#include <stddef.h>
#include <stdint.h>

#define VG_SIMHIST_SUB_BITS 7                         /* 128 buckets per power of two */
#define VG_SIMHIST_LINEAR (2u << VG_SIMHIST_SUB_BITS) /* 256 exact buckets */
#define VG_SIMHIST_MAX_BIT 41                         /* largest msb tracked: 2^42 µs ≈ 50 days */
#define VG_SIMHIST_BUCKETS                                                                                             \
    (VG_SIMHIST_LINEAR + (VG_SIMHIST_MAX_BIT - VG_SIMHIST_SUB_BITS) * (1u << VG_SIMHIST_SUB_BITS))

typedef struct {
    uint64_t count;
    uint64_t min; /* exact; UINT64_MAX when empty */
    uint64_t max; /* exact */
    uint64_t sum;
    uint64_t b[VG_SIMHIST_BUCKETS];
} vg_simhist_t;

/* Empties h. A zero-filled struct is NOT a valid empty histogram (min). */
void vg_simhist_init(vg_simhist_t *h);

/* Adds one value (microseconds). */
void vg_simhist_record(vg_simhist_t *h, uint64_t us);

/* Adds every value of src to dst. */
void vg_simhist_merge(vg_simhist_t *dst, const vg_simhist_t *src);

/* The value at percentile p (0..100] in microseconds: the midpoint of the
 * bucket holding the ceil(p% * count)-th smallest value, clamped to
 * [min, max]; p >= 100 returns max exactly. 0 for an empty histogram. */
double vg_simhist_percentile(const vg_simhist_t *h, double p);

/* Encoded size upper bound, for sizing buffers. */
size_t vg_simhist_encoded_max(void);

/* Writes h sparsely into out[0..cap): count, min, max, sum, number of
 * non-empty buckets, then (u32 index, u64 count) pairs, all little-endian
 * host order (the reader is a fork of the writer). Returns bytes written or
 * VG_ENOSPC. */
int vg_simhist_encode(const vg_simhist_t *h, uint8_t *out, size_t cap);

/* Reads an encoding produced by vg_simhist_encode from in[0..len) into h
 * (which it initialises). *used receives the bytes consumed. Returns VG_OK
 * or VG_EMALFORMED. */
int vg_simhist_decode(vg_simhist_t *h, const uint8_t *in, size_t len, size_t *used);

#endif
