/* Limited JSON parsing; see json.h. */
#include "crypto/base/json.h"

#include <string.h>

/* Iterative bound check on the raw text: jansson recurses while parsing, so a deeply nested
 * document is refused before jansson sees it. Brackets inside strings do not count. */
static bool depth_within(struct ant_bytes in, unsigned max_depth)
{
    unsigned depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.p[i];
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                return false;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}

int ant_json_parse(struct ant_bytes in, size_t max_bytes, unsigned max_depth, json_t **out,
                   struct ant_diag *d)
{
    *out = NULL;
    if (in.len > max_bytes) {
        ant_diag_set(d, "JSON document of %zu bytes is over the limit of %zu", in.len, max_bytes);
        return -E2BIG;
    }
    if (!depth_within(in, max_depth)) {
        ant_diag_set(d, "JSON nested deeper than %u levels", max_depth);
        return -EINVAL;
    }
    json_error_t err;
    json_t *v = json_loadb((const char *)in.p, in.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                           &err);
    if (v == NULL) {
        ant_diag_set(d, "bad JSON at line %d, column %d: %s", err.line, err.column, err.text);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

size_t ant_json_cut_to_text(char *s)
{
    size_t n = strlen(s);
    json_t *t = NULL;
    while (n > 0 && (t = json_stringn(s, n)) == NULL) {
        n--;
    }
    json_decref(t);
    s[n] = '\0';
    return n;
}
