/* Fuzz target: a Crypt4GH file as uploads, peers' answers and downloads deliver it, in pieces
 * (fuzz_c4gh_header hands the reader the whole input at once). The input is the file, opened
 * with recipient1's secret (MANIFEST.md):
 * - every prefix goes through ant_c4gh_header_measure, as an upload's or a fetch's growing
 *   buffer does: until the header is complete it must ask for more (-EAGAIN, with a length past
 *   what it has, or a reader would spin) or fail as the whole header does, never disagree;
 * - ant_c4gh_header_read_fd reads it from a file and must stop exactly at the header's end;
 * - the streaming reader gets it whole and then in pieces of irregular sizes, and both runs
 *   must give the same results, the same plaintext and the same digests. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crypto/c4gh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t r1_sk[ANT_KEY_LEN] = {
    0x15, 0x9f, 0x28, 0x8f, 0x43, 0x3e, 0x95, 0x41, 0x76, 0x0d, 0xa0, 0x5c, 0x22, 0xad, 0xa9, 0xf6,
    0xe4, 0xe0, 0x0f, 0x6b, 0x28, 0x31, 0x7c, 0x7b, 0xa8, 0x33, 0x71, 0xb1, 0xfd, 0x47, 0x5d, 0x56,
};

/* Made once and kept for the process: the key must outlive every call. */
static struct ant_key *g_ant_fuzz_key;

static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

/* What a reader's sink saw: FNV-1a of the plaintext and its length. */
struct seen {
    uint64_t h, len;
};

static int sink(void *arg, const uint8_t *p, size_t len)
{
    struct seen *s = arg;
    for (size_t i = 0; i < len; i++) {
        s->h = (s->h ^ p[i]) * 0x100000001b3ull;
    }
    s->len += len;
    return 0;
}

struct run {
    int wrc, frc;
    struct seen seen;
    struct ant_c4gh_digests dg;
};

/* Feeds data in pieces: step 0 is all at once, else sizes cycle through a table. */
static void read_all(const uint8_t *data, size_t size, unsigned step, struct run *out)
{
    static const size_t sizes[] = {1, 2, 3, 7, 15, 16, 17, 64, 123, 4096, 65564, 65565};
    struct ant_c4gh_reader *r = NULL;
    memset(out, 0, sizeof(*out));
    out->seen.h = 0xcbf29ce484222325ull;
    must(ant_c4gh_reader_new(g_ant_fuzz_key, NULL, sink, &out->seen, &r) == 0);
    size_t off = 0;
    for (unsigned i = 0; out->wrc == 0 && off < size; i++) {
        size_t n = step == 0 ? size : sizes[(i * step + size) % ANT_ARRAY_LEN(sizes)];
        n = n < size - off ? n : size - off;
        out->wrc = ant_c4gh_reader_write(r, ant_bytes_of(data + off, n));
        off += n;
    }
    out->frc = out->wrc == 0 ? ant_c4gh_reader_finish(r, &out->dg) : 0;
    ant_c4gh_reader_free(r);
}

static void check_measure(const uint8_t *data, size_t size)
{
    size_t whole_len = 0;
    int whole = ant_c4gh_header_measure(ant_bytes_of(data, size), &whole_len, NULL);
    size_t upto = whole == 0 ? whole_len : size;
    for (size_t k = 0; k <= upto && k <= size; k++) {
        size_t hl = 0;
        int rc = ant_c4gh_header_measure(ant_bytes_of(data, k), &hl, NULL);
        if (whole == 0 && k == whole_len) {
            must(rc == 0 && hl == whole_len);
        } else if (rc == -EAGAIN) {
            must(hl > k && hl <= ANT_C4GH_MAX_HEADER_LEN); /* progress, within the bound */
            must(whole != 0 || hl <= whole_len);
        } else {
            must(rc < 0 && rc == whole); /* a prefix fails only as the whole does */
        }
    }
    /* from a file: exactly the header, not a byte of the body */
    int fd = memfd_create("c4gh", MFD_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (ant_write_all(fd, data, size) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
        struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
        int rc = ant_c4gh_header_read_fd(fd, &hdr, NULL);
        if (whole == 0) {
            must(rc == 0 && hdr.len == whole_len && memcmp(hdr.p, data, whole_len) == 0 &&
                 lseek(fd, 0, SEEK_CUR) == (off_t)whole_len);
        } else {
            must(rc == (whole == -EAGAIN ? -EBADMSG : whole));
        }
        ant_buf_fini(&hdr);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run whole, piece;
    if (g_ant_fuzz_key == NULL && ant_key_from_secret(r1_sk, &g_ant_fuzz_key) < 0) {
        abort();
    }
    check_measure(data, size);
    read_all(data, size, 0, &whole);
    for (unsigned step = 1; step <= 3; step++) {
        read_all(data, size, step, &piece);
        must(piece.wrc == whole.wrc && piece.frc == whole.frc);
        must(piece.seen.len == whole.seen.len && piece.seen.h == whole.seen.h);
        must(memcmp(&piece.dg, &whole.dg, sizeof(piece.dg)) == 0);
    }
    return 0;
}
