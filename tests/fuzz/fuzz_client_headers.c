/* Fuzz target: the header lines of a download's answer as the client reads them
 * (ant_client_header_line: ETag, Content-Range), which the server or anyone between chose. The
 * input is split after each '\n' into lines, each handed over in an exact-size copy as curl
 * hands them (no NUL: ASan sees a read past the line). What is kept must be safe to use: an
 * ETag goes back into an If-Range header line and a sidecar file, so it must be a quoted run
 * of visible ASCII; a Content-Range start must be the number the line gave. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

/* set: this line changed range_start (line is NUL-terminated, without a NUL inside) */
static void check(const char *line, bool set, const struct ant_client_hdrs *h)
{
    size_t n = strnlen(h->etag, sizeof(h->etag));
    must(n < sizeof(h->etag));
    if (n > 0) {
        must(n >= 2 && h->etag[0] == '"' && h->etag[n - 1] == '"');
        for (size_t i = 0; i < n; i++) {
            must(h->etag[i] >= 0x21 && h->etag[i] <= 0x7e);
        }
    }
    must(h->range_start >= -1);
    if (set && h->range_start >= 0) {
        /* "content-range:" blanks "bytes " digits '-' */
        const char *p = strchr(line, ':');
        must(p != NULL);
        p++;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        must(strncmp(p, "bytes ", 6) == 0);
        int64_t v = 0;
        for (p += 6; *p >= '0' && *p <= '9'; p++) {
            must(v <= (INT64_MAX - (*p - '0')) / 10);
            v = v * 10 + (*p - '0');
        }
        must(*p == '-' && v == h->range_start);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ant_client_hdrs h = {.range_start = -1, .etag = ""};
    size_t off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl != NULL ? (size_t)(nl - (data + off)) + 1 : size - off;
        /* exact size for the call; a NUL-terminated copy for the checks */
        char *line = malloc(len ? len : 1), *z = malloc(len + 1);
        if (line == NULL || z == NULL) {
            free(line);
            free(z);
            return 0;
        }
        memcpy(line, data + off, len);
        memcpy(z, data + off, len);
        z[len] = '\0';
        int64_t before = h.range_start;
        ant_client_header_line(line, len, &h);
        check(z, h.range_start != before && strlen(z) == len, &h);
        free(line);
        free(z);
        off += len;
    }
    return 0;
}
