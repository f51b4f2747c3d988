/* JSON from untrusted sources (HTTP bodies, tokens, exports): one place that applies the limits
 * jansson does not (document size, nesting depth) and the ones it does (duplicate keys). */
#ifndef ANT_JSON_H
#define ANT_JSON_H

#include "crypto/base/base.h"

#include <jansson.h>

/* Nesting deeper than this is refused everywhere untrusted JSON is read. */
#define ANT_JSON_MAX_DEPTH 16

/* Parses exactly one JSON value filling all of `in` (no trailing data), refusing duplicate
 * object keys, documents over max_bytes (-E2BIG) and nesting over max_depth (-EINVAL).
 * Returns 0 and a new reference in *out, or -EINVAL / -E2BIG with diag saying what and where. */
ANT_MUST_CHECK int ant_json_parse(struct ant_bytes in, size_t max_bytes, unsigned max_depth,
                                  json_t **out, struct ant_diag *d);

/* Cuts s (a NUL-terminated string, in place) where it stops being text a JSON string can hold:
 * before the first byte that is not part of valid UTF-8, such as a character a fixed-size
 * message cut in two. Returns the new length. */
size_t ant_json_cut_to_text(char *s);

#endif
