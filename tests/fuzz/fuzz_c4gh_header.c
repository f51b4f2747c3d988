/* Fuzz target: the input as a Crypt4GH file opened with recipient1's secret (MANIFEST.md). The
 * header is parsed; if it opens, the rest is decrypted segment by segment, and the whole input
 * also goes through the stream reader (edit lists, short final segments). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "crypto/c4gh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t r1_sk[ANT_KEY_LEN] = {
    0x15, 0x9f, 0x28, 0x8f, 0x43, 0x3e, 0x95, 0x41, 0x76, 0x0d, 0xa0, 0x5c, 0x22, 0xad, 0xa9, 0xf6,
    0xe4, 0xe0, 0x0f, 0x6b, 0x28, 0x31, 0x7c, 0x7b, 0xa8, 0x33, 0x71, 0xb1, 0xfd, 0x47, 0x5d, 0x56,
};

/* Made once and kept for the process: the key must outlive every call. */
static struct ant_key *g_ant_fuzz_key;
static struct ant_c4gh_cipher *g_ant_fuzz_cipher;

static int discard(void *arg, const uint8_t *p, size_t len)
{
    (void)arg;
    (void)p;
    (void)len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[ANT_C4GH_SEGMENT_LEN];
    struct ant_c4gh_header *h = NULL;
    struct ant_c4gh_reader *r = NULL;
    struct ant_bytes in = ant_bytes_of(data, size);
    if (g_ant_fuzz_key == NULL && (ant_key_from_secret(r1_sk, &g_ant_fuzz_key) < 0 ||
                                   ant_c4gh_cipher_new(&g_ant_fuzz_cipher) < 0)) {
        abort();
    }
    if (ant_c4gh_header_parse(in, g_ant_fuzz_key, NULL, ANT_C4GH_PARSE_ALLOW_NOKEY, &h, NULL) ==
        0) {
        size_t hl = ant_c4gh_header_len(h);
        uint64_t body = size - hl;
        uint64_t n = ant_c4gh_segment_count(body);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t off;
            size_t len;
            if (ant_c4gh_segment_span(hl, body, i, &off, &len) < 0 ||
                ant_c4gh_segment_decrypt(g_ant_fuzz_cipher, h, ant_bytes_of(data + off, len), out,
                                         sizeof(out)) < 0) {
                break;
            }
        }
        ant_c4gh_header_free(h);
    }
    if (ant_c4gh_reader_new(g_ant_fuzz_key, NULL, discard, NULL, &r) == 0) {
        if (ant_c4gh_reader_write(r, in) == 0) {
            (void)!ant_c4gh_reader_finish(r, NULL);
        }
        ant_c4gh_reader_free(r);
    }
    return 0;
}
