/* Fuzz target: the limited JSON reader every HTTP body and token payload goes through. */
#include "crypto/base/json.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    struct ant_diag d;
    if (ant_json_parse((struct ant_bytes){data, size}, 64 * 1024, ANT_JSON_MAX_DEPTH, &v, &d) ==
        0) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        free(s);
        json_decref(v);
    }
    return 0;
}
