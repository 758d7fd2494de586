/* json.h — a small, strict, allocation-free JSON reader and string escaper.
 *
 * Why our own: the ingest hot path reads four fields out of every ~500-byte
 * event; a DOM library would allocate a tree per message. This reader
 * validates the whole text (RFC 8259, strict: no comments, no trailing
 * commas, no leading zeros, no NaN, no control characters in strings, valid
 * UTF-8, valid \u escapes incl. surrogate pairs) and reports the members of
 * the top-level object as slices into the caller's buffer.
 * Depth is limited by the caller (default 32) so hostile input cannot exhaust
 * the stack. */
#ifndef VG_CORE_JSON_H
#define VG_CORE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The nesting limit callers use unless they have a reason to differ. */
#define VG_JSON_DEFAULT_DEPTH 32
/* Depth counts open containers: the top-level object is at depth 1, so "{}"
 * needs max_depth >= 1 and a scalar needs none (a negative max_depth acts
 * as 0). VG_JSON_MAX_DEPTH is a hard ceiling: the reader keeps one byte per
 * open container on its stack, so a larger max_depth is treated as it. */
#define VG_JSON_MAX_DEPTH 1024

typedef enum {
    VG_JSON_NULL = 0,
    VG_JSON_FALSE,
    VG_JSON_TRUE,
    VG_JSON_NUMBER,
    VG_JSON_STRING,
    VG_JSON_OBJECT,
    VG_JSON_ARRAY,
} vg_json_type_t;

typedef struct {
    const char *key;  /* raw key bytes between the quotes (escapes NOT decoded) */
    size_t key_len;
    vg_json_type_t type;
    const char *raw;  /* the value's text: for strings, between the quotes
                         (escapes not decoded); otherwise the whole token /
                         the whole {...} or [...] */
    size_t raw_len;
    bool key_escaped; /* key contains a backslash escape */
    bool str_escaped; /* string value contains a backslash escape */
} vg_json_member_t;

/* Validates buf[0..len) as one JSON value surrounded by optional whitespace,
 * which must be an object, and writes its first `cap` members into out.
 * *count receives the total number of members (may exceed cap; extra ones
 * are validated but not stored).
 * Returns VG_OK; VG_EMALFORMED if the text is not valid JSON; VG_EINVAL if
 * it is valid JSON but not an object; VG_ETOOBIG if nesting exceeds
 * max_depth. On failure *count is 0. out may be NULL when cap is 0. */
int vg_json_object(const char *buf, size_t len, int max_depth, vg_json_member_t *out, size_t cap, size_t *count);

/* Validates like vg_json_object and, in the same pass, stores in out[i] the
 * first member whose key equals names[i] (compared after decoding escapes,
 * as vg_json_find does); out[i].key is NULL when no member has that name.
 * *count (may be NULL) receives the total number of members. Unlike
 * vg_json_object this never misses a field because too many others came
 * first, so it suits readers that want a few known keys out of objects of
 * unbounded width. Same returns as vg_json_object; out is zeroed on failure. */
int vg_json_object_pick(const char *buf, size_t len, int max_depth, const char *const *names, size_t n,
                        vg_json_member_t *out, size_t *count);

/* Validates buf[0..len) like vg_json_object, but the value must be an array:
 * its first `cap` elements go to out in order, as members whose key is NULL
 * (key_len 0); *count receives the number of elements. Returns VG_OK;
 * VG_EMALFORMED, VG_ETOOBIG as above; VG_EINVAL if it is valid JSON but not
 * an array. A member's raw text of type ARRAY can be given back to it to
 * read a nested array. */
int vg_json_array(const char *buf, size_t len, int max_depth, vg_json_member_t *out, size_t cap, size_t *count);

/* Validates buf[0..len) as any one JSON value. Same returns as above minus
 * VG_EINVAL. */
int vg_json_validate(const char *buf, size_t len, int max_depth);

/* Finds the member whose key equals name (compared after decoding escapes).
 * Returns a pointer into members or NULL. */
const vg_json_member_t *vg_json_find(const vg_json_member_t *members, size_t n, const char *name);

/* Parses a NUMBER member's text as a double. VG_EINVAL if not a number or
 * out of double range. (Out of range means too large: a magnitude too small
 * for a double rounds to 0 or a subnormal, as strtod does, and succeeds.) */
int vg_json_number(const vg_json_member_t *m, double *out);
/* Parses a NUMBER that must be an integer (no fraction/exponent that leaves
 * a fraction) within int64. VG_EINVAL otherwise. */
int vg_json_int64(const vg_json_member_t *m, int64_t *out);

/* Decodes the escapes of a string's raw text into out[0..cap) (UTF-8, not
 * NUL-terminated unless room remains — it always NUL-terminates if
 * *out_len < cap). Returns VG_OK, VG_ENOSPC if cap is too small,
 * VG_EMALFORMED for a bad escape. Bytes outside escapes are copied as they
 * are. On failure *out_len is 0 (and out is "" if cap > 0). */
int vg_json_unescape(const char *raw, size_t raw_len, char *out, size_t cap, size_t *out_len);

/* Writes s[0..n) as a JSON string body (no surrounding quotes) into
 * out[0..cap), escaping '"', '\\' and control characters. Returns the
 * length written, or VG_ENOSPC. Like vg_json_unescape it NUL-terminates
 * when the result is shorter than cap; other bytes (UTF-8 included) are
 * copied unchanged. */
int vg_json_escape(const char *s, size_t n, char *out, size_t cap);

#endif
