/* The per-file transforms of the staging engine. They run on the crypto pool threads; the
 * control thread hands each file's header step and each body chunk to them.
 *
 * This build has only `raw`: the Crypt4GH transforms are compiled in when crypto/c4gh.h
 * (and its implementation) is part of the tree. */
#include <errno.h>
#include <stdlib.h>

#include "staging/engine_internal.h"

bool xform_has_header(enum ant_xform x)
{
    return x != ANT_XFORM_RAW;
}

bool xform_changes_bytes(enum ant_xform x)
{
    /* reencrypt replaces only the header: its body is copied as it is */
    return x == ANT_XFORM_DECRYPT || x == ANT_XFORM_ENCRYPT;
}

int xform_check_job(const struct ant_stage_job *job, enum ant_xform x)
{
    (void)job;
    return x == ANT_XFORM_RAW ? 0 : -ENOTSUP;
}

int xform_header(const struct run *r, struct sfile *f, const uint8_t *in, size_t len)
{
    (void)r;
    (void)f;
    (void)in;
    (void)len;
    return -ENOTSUP;
}

int xform_chunk(const struct sfile *f, uint64_t c, const uint8_t *in, size_t in_len, uint8_t *out,
                size_t *out_len)
{
    (void)f;
    (void)c;
    (void)in;
    (void)in_len;
    (void)out;
    (void)out_len;
    return -ENOTSUP;
}

void xform_state_free(struct xform_state *xs)
{
    free(xs);
}
