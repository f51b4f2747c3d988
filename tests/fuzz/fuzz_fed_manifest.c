/* Fuzz target: the federation manifest parser (staging/fetch.h). The signature is checked
 * before it runs, but a peer is still another organisation: its bytes are parsed with limits.
 * An accepted manifest must hold only valid logical paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/store.h"
#include "staging/fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: a read past the end is an ASan report */
    uint8_t *p = malloc(size ? size : 1);
    struct ant_fetch_manifest m;
    if (p == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(p, data, size);
    }
    if (ant_fetch_manifest_parse((struct ant_bytes){p, size}, "site-a", "ds_1", &m, NULL) == 0) {
        for (size_t i = 0; i < m.nfiles; i++) {
            if (!ant_path_is_valid(m.files[i].path)) {
                abort();
            }
        }
        ant_fetch_manifest_fini(&m);
    }
    free(p);
    return 0;
}
