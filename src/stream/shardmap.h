/* shardmap.h — Kinesis-style partitioning: MD5(partition key) read as a
 * 128-bit big-endian unsigned integer, mapped to the shard whose hash-key
 * range [start, end] contains it. Ranges split 0..2^128-1 evenly (the last
 * shard absorbs the remainder), exactly as Kinesis creates a stream. */
#ifndef VG_STREAM_SHARDMAP_H
#define VG_STREAM_SHARDMAP_H

#include <stddef.h>
#include <stdint.h>

#define VG_SHARDS_MAX 256

typedef unsigned __int128 vg_hashkey_t;

/* MD5 of key[0..len) as a 128-bit integer (first digest byte most
 * significant). Uses OpenSSL's EVP MD5. */
vg_hashkey_t vg_shardmap_hash(const void *key, size_t len);

/* Starting and ending hash key of shard i of n (inclusive), evenly split. */
void vg_shardmap_range(uint32_t n, uint32_t i, vg_hashkey_t *start, vg_hashkey_t *end);

/* Shard index for a hash among n even ranges (n in 1..VG_SHARDS_MAX). */
uint32_t vg_shardmap_shard(uint32_t n, vg_hashkey_t h);

/* Shard index for a key: vg_shardmap_shard(n, vg_shardmap_hash(key, len)). */
uint32_t vg_shardmap_key(uint32_t n, const void *key, size_t len);

/* Writes the decimal text of h (as Kinesis prints hash keys) into out (needs
 * 40 bytes). Returns the length. */
size_t vg_shardmap_format(vg_hashkey_t h, char *out, size_t cap);

#endif
