/* Fuzz target: the logical-path validator every user-supplied staging path goes through.
 * Besides not crashing, an accepted path must hold the properties the confined opens rely on;
 * a violation aborts so that the fuzzer keeps the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "staging/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: a read past the end is an ASan report */
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(p, data, size);
    }
    if (ant_stage_path_check((struct ant_bytes){p, size}) == 0) {
        size_t comp = 0, depth = 1;
        must(size > 0 && size <= ANT_STAGE_PATH_MAX);
        must(p[0] != '/' && p[size - 1] != '/');
        for (size_t i = 0; i <= size; i++) {
            if (i == size || p[i] == '/') {
                const uint8_t *c = p + i - comp;
                must(comp > 0 && comp <= ANT_STAGE_NAME_MAX);
                must(!(comp == 1 && c[0] == '.'));
                must(!(comp == 2 && c[0] == '.' && c[1] == '.'));
                depth += i < size;
                comp = 0;
                continue;
            }
            must(p[i] >= 0x20 && p[i] != 0x7f);
            comp++;
        }
        must(depth <= ANT_STAGE_DEPTH_MAX);
    }
    free(p);
    return 0;
}
