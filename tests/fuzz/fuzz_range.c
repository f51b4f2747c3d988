/* Fuzz target for ant_http_range (the Range header of every download: files, job files,
 * federation): the first 8 bytes are the body size (little-endian), the rest the header value
 * up to its first NUL. Whatever it returns, a satisfiable range must lie inside the body. */
#include "gateway/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t fsize = 0, first = 0, last = 0;
    if (size < 8) {
        return 0;
    }
    for (int i = 7; i >= 0; i--) {
        fsize = (fsize << 8) | data[i];
    }
    char *h = calloc(1, size - 8 + 1); /* exact size + NUL: ASan sees an over-read */
    if (h == NULL) {
        return 0;
    }
    memcpy(h, data + 8, size - 8);
    int rc = ant_http_range(h, fsize, &first, &last);
    if (rc == 1 && (first > last || last >= fsize)) {
        abort();
    }
    if (rc != 1 && rc != 0 && rc != -ERANGE) {
        abort();
    }
    free(h);
    return 0;
}
