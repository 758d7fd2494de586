/* num.h — a whole string as a number, for command-line flags and the
 * fields of text files (vigil eval's flags and --csv rows, vigil sim's
 * flags).
 *
 * Owns: the rule that the whole string must be the number, so that a typo
 * ("1.5x", "") is an error rather than a silent prefix. Does not own ranges
 * or messages (the caller knows the flag) nor JSON numbers (core/json.h,
 * whose grammar is stricter). */
#ifndef VG_CORE_NUM_H
#define VG_CORE_NUM_H

/* Parses s, a NUL-terminated string, as a finite double (strtod's syntax:
 * leading white space, a sign, decimal or hex; no trailing characters).
 * VG_OK and *out; VG_EINVAL, *out untouched, for NULL, an empty string,
 * trailing characters, an infinity or NaN, or a value out of range
 * (strtod's ERANGE, underflow included). Clobbers errno. */
int vg_num_parse_double(const char *s, double *out);

#endif
