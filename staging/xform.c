/* The per-file transforms of the staging engine. The header step and each body chunk run on
 * the crypto pool threads; the control thread only moves buffers.
 *
 * Chunks are whole Crypt4GH segments: a chunk of the encrypted side is chunk_segments x 65564
 * bytes and of the plain side chunk_segments x 65536 (FORMAT-NOTES §6), so every chunk
 * transforms on its own, in any order, on any thread. An edit list (decrypt only) maps each
 * chunk's plaintext range to the bytes it keeps; where those land follows from the list alone,
 * so chunks still need no knowledge of each other.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "staging/engine_internal.h"

#include "crypto/c4gh.h"

bool xform_has_header(enum ant_xform x)
{
    return x != ANT_XFORM_RAW;
}

bool xform_changes_bytes(enum ant_xform x)
{
    /* reencrypt replaces only the header: its body is copied as it is */
    return x == ANT_XFORM_DECRYPT || x == ANT_XFORM_ENCRYPT;
}

bool ant_xform_is_available(enum ant_xform x)
{
    return (unsigned)x <= ANT_XFORM_ENCRYPT;
}

int xform_check_job(const struct ant_stage_job *job, enum ant_xform x)
{
    if (!ant_xform_is_available(x)) {
        return -ENOTSUP;
    }
    if ((x == ANT_XFORM_DECRYPT || x == ANT_XFORM_REENCRYPT) && job->key == NULL) {
        return -ENOKEY;
    }
    if ((x == ANT_XFORM_REENCRYPT || x == ANT_XFORM_ENCRYPT) && job->recipient_pk == NULL) {
        return -ENOKEY;
    }
    return 0;
}

/* --- edit lists (FORMAT-NOTES §7): lengths alternate skip, keep, ...; an odd count ends with
 * a skip and keeps the rest, an even count drops what follows the last keep --- */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Bytes of the plaintext range [a, b) that the list keeps. */
static uint64_t edit_kept(const uint64_t *lens, size_t n, uint64_t a, uint64_t b)
{
    uint64_t pos = 0, kept = 0;
    for (size_t i = 0; i < n && pos < b; i++) {
        uint64_t end = sat_add(pos, lens[i]);
        if (i % 2 == 1) {
            uint64_t lo = pos > a ? pos : a, hi = end < b ? end : b;
            kept += hi > lo ? hi - lo : 0;
        }
        pos = end;
    }
    if (n % 2 == 1 && pos < b) {
        kept += b - (pos > a ? pos : a);
    }
    return kept;
}

/* Moves the kept bytes of buf (plaintext [base, base + len)) to its front; returns how many. */
static size_t edit_apply(const uint64_t *lens, size_t n, uint64_t base, uint8_t *buf, size_t len)
{
    uint64_t pos = 0, b = base + len;
    size_t w = 0;
    for (size_t i = 0; i <= n && pos < b; i++) {
        bool last = i == n;
        uint64_t end = last ? UINT64_MAX : sat_add(pos, lens[i]);
        /* after the list: kept only with an odd count */
        bool keep = last ? n % 2 == 1 : i % 2 == 1;
        if (keep) {
            uint64_t lo = pos > base ? pos : base, hi = end < b ? end : b;
            if (hi > lo) {
                memmove(buf + w, buf + (lo - base), (size_t)(hi - lo));
                w += (size_t)(hi - lo);
            }
        }
        pos = end;
    }
    return w;
}


struct xform_state {
    struct ant_c4gh_header *h; /* decrypt: the parsed header; encrypt: the generated one */
    const uint64_t *edits;     /* decrypt with an edit list (borrowed from h) */
    size_t nedits;
    bool has_edits;
};

void xform_state_free(struct xform_state *xs)
{
    if (xs != NULL) {
        ant_c4gh_header_free(xs->h);
        free(xs);
    }
}

void xform_tls_fini(struct xform_tls *t)
{
    ant_c4gh_cipher_free(t->cipher);
    t->cipher = NULL;
}

int xform_header_len(const uint8_t *p, size_t len, uint64_t *hdr_len)
{
    size_t n = 0;
    int rc = ant_c4gh_header_measure((struct ant_bytes){p, len}, &n, NULL);
    if (rc < 0) {
        return -EBADMSG;
    }
    *hdr_len = n;
    return 0;
}

/* -EAGAIN from the header parser: the source ends inside the header (it is shorter than the
 * header says), or the header is longer than one chunk buffer. */
static int header_short(const struct sfile *f, size_t len)
{
    return (uint64_t)len < f->src_size ? -E2BIG : -EBADMSG;
}

static int header_decrypt(const struct run *r, struct sfile *f, struct xform_state *xs,
                          struct ant_bytes in)
{
    uint64_t plain_len = 0;
    int rc = ant_c4gh_header_parse(in, r->job->key, NULL, 0, &xs->h, NULL);
    if (rc == -EAGAIN) {
        return header_short(f, in.len);
    }
    if (rc < 0) {
        return rc;
    }
    size_t hlen = ant_c4gh_header_len(xs->h);
    f->in_body_off = hlen;
    f->in_body_len = f->src_size - hlen;
    rc = ant_c4gh_plain_len(f->in_body_len, &plain_len);
    if (rc < 0) {
        return rc; /* the last segment is 1..28 bytes: cut or corrupt */
    }
    xs->has_edits = ant_c4gh_header_edits(xs->h, &xs->edits, &xs->nedits) && xs->nedits > 0;
    f->in_chunk = (size_t)r->e->o.chunk_segments * ANT_C4GH_CIPHER_SEGMENT_LEN;
    f->out_chunk = r->plain_chunk;
    f->out_body_off = 0;
    f->out_size = xs->has_edits ? edit_kept(xs->edits, xs->nedits, 0, plain_len) : plain_len;
    return 0;
}

static int header_reencrypt(const struct run *r, struct sfile *f, struct ant_bytes in)
{
    struct ant_buf out = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    size_t old_len = 0;
    uint64_t plain_len = 0;
    /* trim: the packets for other readers are no use to this recipient and only tell it who
     * else holds the file */
    int rc = ant_c4gh_reencrypt_header(in, r->job->key, r->job->recipient_pk, 1, true, &out,
                                       &old_len, NULL);
    if (rc == -EAGAIN) {
        rc = header_short(f, in.len);
    }
    if (rc < 0) {
        goto out;
    }
    f->in_body_off = old_len;
    f->in_body_len = f->src_size - old_len;
    rc = ant_c4gh_plain_len(f->in_body_len, &plain_len);
    if (rc < 0) {
        goto out;
    }
    f->in_chunk = f->out_chunk = r->plain_chunk;
    f->hdr_out = ant_buf_take(&out, &f->hdr_out_len);
    f->out_body_off = f->hdr_out_len;
    f->out_size = f->hdr_out_len + f->in_body_len;
out:
    ant_buf_fini(&out);
    return rc;
}

static int header_encrypt(const struct run *r, struct sfile *f, struct xform_state *xs)
{
    struct ant_buf out = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_key *eph = NULL;
    const struct ant_key *writer = r->job->key;
    int rc = ant_c4gh_header_generate(&xs->h);
    if (rc < 0) {
        goto out;
    }
    if (writer == NULL) {
        /* no site key given: an ephemeral writer key, as the reference tool does */
        rc = ant_key_generate(&eph);
        if (rc < 0) {
            goto out;
        }
        writer = eph;
    }
    rc = ant_c4gh_header_encode(xs->h, writer, r->job->recipient_pk, 1, false, &out);
    if (rc < 0) {
        goto out;
    }
    f->hdr_out = ant_buf_take(&out, &f->hdr_out_len);
    f->in_body_off = 0;
    f->in_body_len = f->src_size;
    f->in_chunk = r->plain_chunk;
    f->out_chunk = (size_t)r->e->o.chunk_segments * ANT_C4GH_CIPHER_SEGMENT_LEN;
    f->out_body_off = f->hdr_out_len;
    f->out_size = f->hdr_out_len + ant_c4gh_body_len(f->src_size);
out:
    ant_key_free(eph);
    ant_buf_fini(&out);
    return rc;
}

int xform_header(const struct run *r, struct sfile *f, const uint8_t *in, size_t len)
{
    struct xform_state *xs = calloc(1, sizeof(*xs));
    struct ant_bytes b = {in, len};
    int rc = -EINVAL;
    if (xs == NULL) {
        return -ENOMEM;
    }
    switch (f->spec->xform) {
    case ANT_XFORM_DECRYPT:
        rc = header_decrypt(r, f, xs, b);
        break;
    case ANT_XFORM_REENCRYPT:
        rc = header_reencrypt(r, f, b);
        break;
    case ANT_XFORM_ENCRYPT:
        rc = header_encrypt(r, f, xs);
        break;
    case ANT_XFORM_RAW:
        break;
    }
    if (rc < 0) {
        xform_state_free(xs);
        return rc;
    }
    f->xs = xs;
    return 0;
}

static int chunk_decrypt(struct xform_tls *t, const struct sfile *f, uint64_t c,
                         const uint8_t *in, size_t in_len, uint8_t *out, size_t outcap,
                         size_t *out_len)
{
    const struct xform_state *xs = f->xs;
    size_t w = 0;
    for (size_t off = 0; off < in_len;) {
        size_t n = in_len - off < ANT_C4GH_CIPHER_SEGMENT_LEN ? in_len - off
                                                               : ANT_C4GH_CIPHER_SEGMENT_LEN;
        int rc = ant_c4gh_segment_decrypt(t->cipher, xs->h, (struct ant_bytes){in + off, n},
                                          out + w, outcap - w);
        if (rc < 0) {
            return rc;
        }
        w += (size_t)rc;
        off += n;
    }
    if (xs->has_edits) {
        w = edit_apply(xs->edits, xs->nedits, c * (uint64_t)f->out_chunk, out, w);
    }
    *out_len = w;
    return 0;
}

static int chunk_encrypt(struct xform_tls *t, const struct sfile *f, const uint8_t *in,
                         size_t in_len, uint8_t *out, size_t outcap, size_t *out_len)
{
    size_t w = 0;
    for (size_t off = 0; off < in_len;) {
        size_t n = in_len - off < ANT_C4GH_SEGMENT_LEN ? in_len - off : ANT_C4GH_SEGMENT_LEN;
        int rc = ant_c4gh_segment_encrypt(t->cipher, f->xs->h, (struct ant_bytes){in + off, n},
                                          out + w, outcap - w);
        if (rc < 0) {
            return rc;
        }
        w += (size_t)rc;
        off += n;
    }
    *out_len = w;
    return 0;
}

int xform_chunk(struct xform_tls *t, const struct sfile *f, uint64_t c, const uint8_t *in,
                size_t in_len, uint8_t *out, size_t outcap, size_t *out_len)
{
    if (t->cipher == NULL) {
        int rc = ant_c4gh_cipher_new(&t->cipher);
        if (rc < 0) {
            return rc;
        }
    }
    if (f->spec->xform == ANT_XFORM_DECRYPT) {
        return chunk_decrypt(t, f, c, in, in_len, out, outcap, out_len);
    }
    if (f->spec->xform == ANT_XFORM_ENCRYPT) {
        return chunk_encrypt(t, f, in, in_len, out, outcap, out_len);
    }
    return -EINVAL;
}

bool xform_resumable(const struct sfile *f)
{
    const struct xform_state *xs = f->xs;
    switch (f->spec->xform) {
    case ANT_XFORM_RAW:
    case ANT_XFORM_REENCRYPT:
        return true;
    case ANT_XFORM_DECRYPT:
        /* an edit list maps a chunk's bytes to offsets that depend on all the list */
        return xs != NULL && !xs->has_edits;
    case ANT_XFORM_ENCRYPT:
        break;
    }
    return false;
}

uint64_t xform_out_off(const struct sfile *f, uint64_t c)
{
    const struct xform_state *xs = f->xs;
    if (f->lead != 0) {
        return c * (uint64_t)f->out_chunk; /* the header is in chunk 0 */
    }
    if (xs != NULL && xs->has_edits) {
        return edit_kept(xs->edits, xs->nedits, 0, c * (uint64_t)f->out_chunk);
    }
    /* a resumed file's chunks follow the prefix kept from an earlier run (never with an edit
     * list or a lead) */
    return f->out_body_off + f->out_skip + c * (uint64_t)f->out_chunk;
}

bool xform_out_contiguous(const struct sfile *f)
{
    return f->xs == NULL || !f->xs->has_edits;
}

uint64_t chunk_body_start(const struct sfile *f, uint64_t c)
{
    return f->in_skip + (c == 0 ? 0 : c * (uint64_t)f->in_chunk - f->lead);
}

size_t chunk_lead(const struct sfile *f, uint64_t c)
{
    return c == 0 ? f->lead : 0;
}
