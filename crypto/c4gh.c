/* Crypt4GH v1 header packets and data segments (FORMAT-NOTES.md §2-§8). The stream reader,
 * writer and fd re-encryption are in c4gh_stream.c. */
#include "crypto/c4gh.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HDR_METHOD_X25519_CHACHA 0u
#define DATA_METHOD_CHACHA 0u
#define PKT_DATA_KEY 0u
#define PKT_EDIT_LIST 1u
/* Payload offsets inside a packet: length(4) method(4) writer_pk(32) nonce(12). */
#define PKT_NONCE_OFF 40
#define PKT_CT_OFF 52
#define KEY_PAYLOAD_LEN 40 /* type, method, key */
/* Packet payloads up to this size are handled in a stack buffer (wiped after use). */
#define PKT_SMALL_PAYLOAD 128

struct packet {
    size_t off, len;
    uint32_t method;
    uint8_t writer_pk[ANT_KEY_LEN];
    bool readable;
    uint32_t type, data_method;
    uint64_t edit_count;
};

union keyset;

struct ant_c4gh_header {
    size_t len;
    uint8_t *raw; /* copy of the header bytes, for the foreign packets */
    size_t npackets;
    struct packet *packets;
    union keyset *ks;             /* in a sodium_malloc'd slab (keyset_get) */
    uint8_t (*keys)[ANT_KEY_LEN]; /* ks->keys: ANT_C4GH_MAX_DATA_KEYS keys */
    size_t nkeys;
    bool has_edits;
    uint64_t *edits;
    size_t nedits;
};

struct ant_c4gh_cipher {
    EVP_CIPHER_CTX *ctx;
    EVP_CIPHER *cipher; /* fetched once: no implicit provider lookup per segment */
    int dir;            /* 1 encrypt, 0 decrypt, -1 not initialised */
};

/* libsodium must be ready before sodium_malloc / randombytes; sodium_init is idempotent. */
static int sodium_ready(void)
{
    return sodium_init() < 0 ? -ENOMEM : 0;
}

/* The data keys of a header live in sodium_malloc'd memory, but not one allocation per header:
 * sodium_malloc costs an mmap, two mprotects and an mlock, sodium_free as many again, and each
 * mprotect / munmap is a TLB shootdown on every core under the process-wide mmap lock. With a
 * header per small file that was a quarter of the CPU time of staging 20,000 files. Key sets
 * are carved from sodium_malloc'd slabs and reused; a freed set is wiped before it goes back on
 * the free list. Slabs are never returned (their number follows the peak of headers alive at
 * once: a slab holds KEYSET_PER_SLAB sets). */
#define KEYSET_LEN (ANT_C4GH_MAX_DATA_KEYS * ANT_KEY_LEN)
#define KEYSET_PER_SLAB 63 /* 63 x 256 bytes: four pages between the guard pages */

union keyset {
    union keyset *next; /* while free */
    uint8_t keys[ANT_C4GH_MAX_DATA_KEYS][ANT_KEY_LEN];
};

static pthread_mutex_t g_ant_keyset_lock = PTHREAD_MUTEX_INITIALIZER;
static union keyset *g_ant_keyset_free;

static union keyset *keyset_get(void)
{
    union keyset *ks = NULL;
    pthread_mutex_lock(&g_ant_keyset_lock);
    if (g_ant_keyset_free == NULL) {
        union keyset *slab = sodium_malloc(KEYSET_PER_SLAB * sizeof(*slab));
        for (size_t i = 0; slab != NULL && i < KEYSET_PER_SLAB; i++) {
            slab[i].next = g_ant_keyset_free;
            g_ant_keyset_free = &slab[i];
        }
    }
    ks = g_ant_keyset_free;
    if (ks != NULL) {
        g_ant_keyset_free = ks->next;
        sodium_memzero(ks, sizeof(*ks));
    }
    pthread_mutex_unlock(&g_ant_keyset_lock);
    return ks;
}

static void keyset_put(union keyset *ks)
{
    if (ks == NULL) {
        return;
    }
    sodium_memzero(ks, sizeof(*ks));
    pthread_mutex_lock(&g_ant_keyset_lock);
    ks->next = g_ant_keyset_free;
    g_ant_keyset_free = ks;
    pthread_mutex_unlock(&g_ant_keyset_lock);
}

static struct ant_c4gh_header *header_alloc(void)
{
    struct ant_c4gh_header *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    h->ks = keyset_get();
    if (h->ks == NULL) {
        free(h);
        return NULL;
    }
    h->keys = h->ks->keys;
    return h;
}

void ant_c4gh_header_free(struct ant_c4gh_header *h)
{
    if (h == NULL) {
        return;
    }
    keyset_put(h->ks); /* wipes */
    free(h->raw);
    free(h->packets);
    free(h->edits);
    free(h);
}

int ant_c4gh_header_measure(struct ant_bytes in, size_t *hdr_len, struct ant_diag *d)
{
    struct ant_rd rd = ant_rd_init(in);
    uint8_t magic[8];
    uint32_t version, count, plen;
    size_t need = ANT_C4GH_PREAMBLE_LEN;
    if (in.len < 8) {
        goto short_input_magic;
    }
    if (ant_rd_copy(&rd, magic, sizeof(magic)) < 0 || memcmp(magic, ANT_C4GH_MAGIC, 8) != 0) {
        ant_diag_set(d, "not a Crypt4GH file (wrong magic)");
        return -EBADMSG;
    }
    if (ant_rd_u32le(&rd, &version) < 0) {
        goto short_input;
    }
    if (version != 1) {
        ant_diag_set(d, "unsupported Crypt4GH version %u (only 1 is defined)", version);
        return -EBADMSG;
    }
    if (ant_rd_u32le(&rd, &count) < 0) {
        goto short_input;
    }
    if (count == 0) {
        ant_diag_set(d, "Crypt4GH header with no packets");
        return -EBADMSG;
    }
    /* A count is a promise of work: bound it before walking. */
    if (count > ANT_C4GH_MAX_PACKETS) {
        ant_diag_set(d, "Crypt4GH header with %u packets (limit %u)", count, ANT_C4GH_MAX_PACKETS);
        return -E2BIG;
    }
    for (uint32_t i = 0; i < count; i++) {
        need = rd.off + 4;
        if (ant_rd_u32le(&rd, &plen) < 0) {
            goto short_input;
        }
        if (plen < ANT_C4GH_MIN_PACKET_LEN) {
            ant_diag_set(d, "Crypt4GH header packet %u too small (%u bytes)", i, plen);
            return -EBADMSG;
        }
        if (plen > ANT_C4GH_MAX_PACKET_LEN) {
            ant_diag_set(d, "Crypt4GH header packet %u too large (%u bytes, limit %u)", i, plen,
                         ANT_C4GH_MAX_PACKET_LEN);
            return -E2BIG;
        }
        need = rd.off - 4 + plen;
        if (need > ANT_C4GH_MAX_HEADER_LEN) {
            ant_diag_set(d, "Crypt4GH header larger than %u bytes", ANT_C4GH_MAX_HEADER_LEN);
            return -E2BIG;
        }
        if (ant_rd_skip(&rd, plen - 4) < 0) {
            goto short_input;
        }
    }
    *hdr_len = rd.off;
    return 0;
short_input_magic:
    /* Even a short prefix must look like the magic, so a wrong file fails early. */
    if (memcmp(in.p == NULL ? (const uint8_t *)"" : in.p, ANT_C4GH_MAGIC, in.len) != 0) {
        ant_diag_set(d, "not a Crypt4GH file (wrong magic)");
        return -EBADMSG;
    }
short_input:
    ant_diag_set(d, "Crypt4GH header truncated (%zu bytes, at least %zu needed)", in.len, need);
    *hdr_len = need;
    return -EAGAIN;
}

/* Shared key of a header packet: the reader is libsodium's kx client and takes rx, the writer
 * is the server and takes tx (FORMAT-NOTES §4). -EBADMSG for a low-order peer key (DH all zero). */
static int reader_shared_key(const struct ant_key *reader, const uint8_t writer_pk[ANT_KEY_LEN],
                             uint8_t k[ANT_KEY_LEN])
{
    uint8_t tx[crypto_kx_SESSIONKEYBYTES];
    int rc = crypto_kx_client_session_keys(k, tx, ant_key_public(reader), ant_key_secret(reader),
                                           writer_pk) == 0
                 ? 0
                 : -EBADMSG;
    sodium_memzero(tx, sizeof(tx));
    return rc;
}

static int writer_shared_key(const struct ant_key *writer, const uint8_t reader_pk[ANT_KEY_LEN],
                             uint8_t k[ANT_KEY_LEN])
{
    uint8_t rx[crypto_kx_SESSIONKEYBYTES];
    int rc = crypto_kx_server_session_keys(rx, k, ant_key_public(writer), ant_key_secret(writer),
                                           reader_pk) == 0
                 ? 0
                 : -EBADMSG;
    sodium_memzero(rx, sizeof(rx));
    return rc;
}

/* Adds a data key unless the same key is already there (several recipients' packets opened by
 * one key holder carry the same key). */
static int add_data_key(struct ant_c4gh_header *h, const uint8_t key[ANT_KEY_LEN])
{
    for (size_t i = 0; i < h->nkeys; i++) {
        if (sodium_memcmp(h->keys[i], key, ANT_KEY_LEN) == 0) {
            return 0;
        }
    }
    if (h->nkeys == ANT_C4GH_MAX_DATA_KEYS) {
        return -E2BIG;
    }
    memcpy(h->keys[h->nkeys++], key, ANT_KEY_LEN);
    return 0;
}

/* Interprets an opened payload (FORMAT-NOTES §3). Padding after the fields is accepted, as the
 * reference does. */
static int read_payload(struct ant_c4gh_header *h, struct packet *pk, struct ant_bytes payload,
                        size_t idx, struct ant_diag *d)
{
    struct ant_rd rd = ant_rd_init(payload);
    uint32_t type, method, k;
    if (ant_rd_u32le(&rd, &type) < 0) {
        ant_diag_set(d, "header packet %zu: empty payload", idx);
        return -EBADMSG;
    }
    pk->type = type;
    if (type == PKT_DATA_KEY) {
        struct ant_bytes key;
        if (ant_rd_u32le(&rd, &method) < 0 || ant_rd_view(&rd, ANT_KEY_LEN, &key) < 0) {
            ant_diag_set(d, "header packet %zu: data key payload too short", idx);
            return -EBADMSG;
        }
        pk->data_method = method;
        if (method != DATA_METHOD_CHACHA) {
            ant_diag_set(d, "header packet %zu: data encryption method %u is not supported "
                            "(only 0, chacha20_ietf_poly1305)", idx, method);
            return -ENOTSUP;
        }
        int rc = add_data_key(h, key.p);
        if (rc < 0) {
            ant_diag_set(d, "more than %u distinct data keys", ANT_C4GH_MAX_DATA_KEYS);
        }
        return rc;
    }
    if (type == PKT_EDIT_LIST) {
        if (h->has_edits) {
            ant_diag_set(d, "header packet %zu: a second edit list (only one is allowed)", idx);
            return -EBADMSG;
        }
        if (ant_rd_u32le(&rd, &k) < 0 || k > ant_rd_left(&rd) / 8) {
            ant_diag_set(d, "header packet %zu: edit list shorter than its count", idx);
            return -EBADMSG;
        }
        pk->edit_count = k;
        h->edits = calloc(k ? k : 1, sizeof(*h->edits));
        if (h->edits == NULL) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < k; i++) {
            if (ant_rd_u64le(&rd, &h->edits[i]) < 0) {
                return -EBADMSG; /* cannot happen: k was checked against what is left */
            }
        }
        h->nedits = k;
        h->has_edits = true;
        return 0;
    }
    ant_diag_set(d, "header packet %zu: unknown packet type %u", idx, type);
    return -EBADMSG;
}

/* Cache of one DH per distinct writer key (FORMAT-NOTES §8): a header usually has one. */
struct kx_cache {
    uint8_t writer_pk[ANT_KEY_LEN];
    uint8_t k[ANT_KEY_LEN];
    int state; /* 0 empty, 1 key valid, -1 low-order writer key */
};

static int open_packet(struct ant_c4gh_header *h, struct packet *pk, struct ant_bytes raw,
                       const struct ant_key *reader, struct kx_cache *kc, size_t idx,
                       struct ant_diag *d)
{
    size_t ctlen = raw.len - PKT_CT_OFF; /* ciphertext + tag; raw.len >= 76 */
    size_t ptlen = ctlen - ANT_C4GH_MAC_LEN;
    unsigned long long got = 0;
    /* a data-key payload (40 bytes) opens into a stack buffer wiped on the way out (no
     * sodium_malloc per packet: see keyset_get); only a long edit list takes the heap path */
    uint8_t small[PKT_SMALL_PAYLOAD];
    uint8_t *pt = NULL;
    int rc = 0;
    if (kc->state == 0 || memcmp(kc->writer_pk, pk->writer_pk, ANT_KEY_LEN) != 0) {
        memcpy(kc->writer_pk, pk->writer_pk, ANT_KEY_LEN);
        kc->state = reader_shared_key(reader, pk->writer_pk, kc->k) == 0 ? 1 : -1;
    }
    if (kc->state < 0) {
        goto out; /* low-order writer key: this packet cannot be for us */
    }
    pt = ptlen <= sizeof(small) ? small : sodium_malloc(ptlen);
    if (pt == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (crypto_aead_chacha20poly1305_ietf_decrypt(pt, &got, NULL, raw.p + PKT_CT_OFF, ctlen, NULL,
                                                  0, raw.p + PKT_NONCE_OFF, kc->k) != 0) {
        goto out; /* not for this key: not an error */
    }
    pk->readable = true;
    rc = read_payload(h, pk, ant_bytes_of(pt, (size_t)got), idx, d);
out:
    sodium_memzero(small, sizeof(small));
    if (pt != small) {
        sodium_free(pt);
    }
    return rc;
}

int ant_c4gh_header_parse(struct ant_bytes in, const struct ant_key *reader,
                          const uint8_t *sender_pk, unsigned flags, struct ant_c4gh_header **out,
                          struct ant_diag *d)
{
    struct ant_c4gh_header *h = NULL;
    struct kx_cache kc = {{0}, {0}, 0};
    size_t hlen = 0;
    uint32_t count = 0;
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    rc = ant_c4gh_header_measure(in, &hlen, d);
    if (rc < 0) {
        goto out;
    }
    h = header_alloc();
    if (h == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    h->len = hlen;
    h->raw = malloc(hlen);
    if (h->raw == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(h->raw, in.p, hlen);
    struct ant_rd rd = ant_rd_init(ant_bytes_of(h->raw, hlen));
    /* measure checked the preamble and every length: these reads cannot fail */
    if (ant_rd_skip(&rd, 12) < 0 || ant_rd_u32le(&rd, &count) < 0) {
        rc = -EBADMSG;
        goto out;
    }
    h->packets = calloc(count, sizeof(*h->packets));
    if (h->packets == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    h->npackets = count;
    for (size_t i = 0; i < count; i++) {
        struct packet *pk = &h->packets[i];
        struct ant_bytes raw;
        struct ant_rd prd;
        uint32_t plen;
        pk->off = rd.off;
        if (ant_rd_u32le(&rd, &plen) < 0 || ant_rd_skip(&rd, plen - 4) < 0) {
            rc = -EBADMSG;
            goto out;
        }
        pk->len = plen;
        raw = ant_bytes_of(h->raw + pk->off, plen);
        prd = ant_rd_init(raw);
        if (ant_rd_skip(&prd, 4) < 0 || ant_rd_u32le(&prd, &pk->method) < 0 ||
            ant_rd_copy(&prd, pk->writer_pk, ANT_KEY_LEN) < 0) {
            rc = -EBADMSG;
            goto out;
        }
        /* An unknown method (1 = AES-256-GCM is reserved, never implemented) is not for us,
         * as the reference skips it. */
        if (pk->method != HDR_METHOD_X25519_CHACHA || reader == NULL) {
            continue;
        }
        if (sender_pk != NULL && sodium_memcmp(sender_pk, pk->writer_pk, ANT_KEY_LEN) != 0) {
            continue;
        }
        rc = open_packet(h, pk, raw, reader, &kc, i, d);
        if (rc < 0) {
            goto out;
        }
    }
    if (h->nkeys == 0 && !(flags & ANT_C4GH_PARSE_ALLOW_NOKEY)) {
        if (sender_pk != NULL) {
            ant_diag_set(d, "this file was not encrypted for this key by the expected sender "
                            "(no header packet from that sender opens with it)");
        } else {
            ant_diag_set(d, "this file was not encrypted for this key (none of its %u header "
                            "packets opens with it)", count);
        }
        rc = -ENOKEY;
        goto out;
    }
    *out = h;
    h = NULL;
    rc = 0;
out:
    sodium_memzero(&kc, sizeof(kc));
    ant_c4gh_header_free(h);
    return rc;
}

int ant_c4gh_header_generate(struct ant_c4gh_header **out)
{
    struct ant_c4gh_header *h = NULL;
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    h = header_alloc();
    if (h == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    randombytes_buf(h->keys[0], ANT_KEY_LEN);
    h->nkeys = 1;
    *out = h;
    h = NULL;
out:
    ant_c4gh_header_free(h);
    return rc;
}

int ant_c4gh_header_set_edits(struct ant_c4gh_header *h, const uint64_t *lens, size_t n)
{
    uint64_t *e = NULL;
    if (n > ANT_C4GH_MAX_EDITS) {
        return -E2BIG;
    }
    if (n > 0) {
        e = calloc(n, sizeof(*e));
        if (e == NULL) {
            return -ENOMEM;
        }
        memcpy(e, lens, n * sizeof(*e));
    }
    free(h->edits);
    h->edits = e;
    h->nedits = n;
    h->has_edits = n > 0;
    return 0;
}

size_t ant_c4gh_header_len(const struct ant_c4gh_header *h)
{
    return h->len;
}

size_t ant_c4gh_header_key_count(const struct ant_c4gh_header *h)
{
    return h->nkeys;
}

bool ant_c4gh_header_edits(const struct ant_c4gh_header *h, const uint64_t **lens, size_t *n)
{
    *lens = h->edits;
    *n = h->nedits;
    return h->has_edits;
}

size_t ant_c4gh_header_packet_count(const struct ant_c4gh_header *h)
{
    return h->npackets;
}

int ant_c4gh_header_packet(const struct ant_c4gh_header *h, size_t i,
                           struct ant_c4gh_packet_info *out)
{
    if (i >= h->npackets) {
        return -ERANGE;
    }
    const struct packet *pk = &h->packets[i];
    *out = (struct ant_c4gh_packet_info){
        .offset = pk->off,
        .len = pk->len,
        .method = pk->method,
        .readable = pk->readable,
        .type = pk->type,
        .data_method = pk->data_method,
        .edit_count = pk->edit_count,
    };
    memcpy(out->writer_pk, pk->writer_pk, ANT_KEY_LEN);
    return 0;
}

/* One sealed packet around `payload` for reader_pk, with shared key k. */
static int seal_packet(struct ant_buf *out, const uint8_t writer_pk[ANT_KEY_LEN],
                       const uint8_t k[ANT_KEY_LEN], const uint8_t *payload, size_t plen)
{
    uint8_t nonce[ANT_C4GH_NONCE_LEN];
    unsigned long long clen = 0;
    size_t total = ANT_C4GH_PACKET_OVERHEAD + plen;
    int rc;
    if (total > ANT_C4GH_MAX_PACKET_LEN) {
        return -E2BIG;
    }
    randombytes_buf(nonce, sizeof(nonce));
    rc = ant_buf_u32le(out, (uint32_t)total);
    if (rc == 0) {
        rc = ant_buf_u32le(out, HDR_METHOD_X25519_CHACHA);
    }
    if (rc == 0) {
        rc = ant_buf_append(out, writer_pk, ANT_KEY_LEN);
    }
    if (rc == 0) {
        rc = ant_buf_append(out, nonce, sizeof(nonce));
    }
    if (rc == 0) {
        rc = ant_buf_reserve(out, plen + ANT_C4GH_MAC_LEN);
    }
    if (rc < 0) {
        return rc;
    }
    if (crypto_aead_chacha20poly1305_ietf_encrypt(out->p + out->len, &clen, payload, plen, NULL, 0,
                                                  NULL, nonce, k) != 0) {
        return -EIO;
    }
    out->len += (size_t)clen;
    return 0;
}

int ant_c4gh_header_encode(const struct ant_c4gh_header *h, const struct ant_key *writer,
                           const uint8_t *recipients, size_t n, bool keep_foreign,
                           struct ant_buf *out)
{
    uint8_t k[ANT_KEY_LEN];
    uint8_t small[PKT_SMALL_PAYLOAD]; /* as in open_packet: no sodium_malloc per header */
    uint8_t *payload = NULL;
    size_t payload_cap = KEY_PAYLOAD_LEN;
    size_t nforeign = 0, npackets, start = out->len;
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    if (n == 0 || n > ANT_C4GH_MAX_RECIPIENTS) {
        rc = -EINVAL;
        goto out;
    }
    if (keep_foreign) {
        for (size_t i = 0; i < h->npackets; i++) {
            nforeign += h->packets[i].readable ? 0 : 1;
        }
    }
    npackets = n * (h->nkeys + (h->has_edits ? 1 : 0)) + nforeign;
    if (npackets > ANT_C4GH_MAX_PACKETS || h->nkeys == 0) {
        rc = -EINVAL;
        goto out;
    }
    if (h->has_edits && 8 + 8 * h->nedits > payload_cap) {
        payload_cap = 8 + 8 * h->nedits;
    }
    payload = payload_cap <= sizeof(small) ? small : sodium_malloc(payload_cap);
    if (payload == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = ant_buf_append(out, ANT_C4GH_MAGIC, 8);
    if (rc == 0) {
        rc = ant_buf_u32le(out, 1);
    }
    if (rc == 0) {
        rc = ant_buf_u32le(out, (uint32_t)npackets);
    }
    for (size_t r = 0; rc == 0 && r < n; r++) {
        rc = writer_shared_key(writer, recipients + r * ANT_KEY_LEN, k);
        for (size_t i = 0; rc == 0 && i < h->nkeys; i++) {
            ant_store_u32le(payload, PKT_DATA_KEY);
            ant_store_u32le(payload + 4, DATA_METHOD_CHACHA);
            memcpy(payload + 8, h->keys[i], ANT_KEY_LEN);
            rc = seal_packet(out, ant_key_public(writer), k, payload, KEY_PAYLOAD_LEN);
        }
        if (rc == 0 && h->has_edits) {
            ant_store_u32le(payload, PKT_EDIT_LIST);
            ant_store_u32le(payload + 4, (uint32_t)h->nedits);
            for (size_t i = 0; i < h->nedits; i++) {
                ant_store_u64le(payload + 8 + 8 * i, h->edits[i]);
            }
            rc = seal_packet(out, ant_key_public(writer), k, payload, 8 + 8 * h->nedits);
        }
    }
    for (size_t i = 0; rc == 0 && keep_foreign && i < h->npackets; i++) {
        if (!h->packets[i].readable) {
            rc = ant_buf_append(out, h->raw + h->packets[i].off, h->packets[i].len);
        }
    }
    /* Never write a header that a reader (ours included) would refuse as too large. */
    if (rc == 0 && out->len - start > ANT_C4GH_MAX_HEADER_LEN) {
        rc = -E2BIG;
    }
out:
    if (rc < 0 && out->len > start) {
        out->len = start; /* no half header */
    }
    sodium_memzero(k, sizeof(k));
    sodium_memzero(small, sizeof(small));
    if (payload != small) {
        sodium_free(payload);
    }
    return rc;
}

int ant_c4gh_reencrypt_header(struct ant_bytes hdr, const struct ant_key *key,
                              const uint8_t *recipients, size_t n, bool trim,
                              struct ant_buf *out, size_t *old_len, struct ant_diag *d)
{
    struct ant_c4gh_header *h = NULL;
    int rc = ant_c4gh_header_parse(hdr, key, NULL, 0, &h, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_c4gh_header_encode(h, key, recipients, n, !trim, out);
    if (rc < 0) {
        ant_diag_set(d, "could not write the new header (%s)", strerror(-rc));
        goto out;
    }
    if (old_len != NULL) {
        *old_len = h->len;
    }
out:
    ant_c4gh_header_free(h);
    return rc;
}

/* --- segments --- */

int ant_c4gh_cipher_new(struct ant_c4gh_cipher **out)
{
    struct ant_c4gh_cipher *c = calloc(1, sizeof(*c));
    int rc = 0;
    if (c == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    c->dir = -1;
    c->ctx = EVP_CIPHER_CTX_new();
    c->cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    if (c->ctx == NULL || c->cipher == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    *out = c;
    c = NULL;
out:
    ant_c4gh_cipher_free(c);
    return rc;
}

void ant_c4gh_cipher_free(struct ant_c4gh_cipher *c)
{
    if (c == NULL) {
        return;
    }
    EVP_CIPHER_CTX_free(c->ctx); /* cleanses the key schedule */
    EVP_CIPHER_free(c->cipher);
    free(c);
}

/* Keys the context for one segment; the cipher is bound once per direction so the per-segment
 * call only sets key and nonce. */
static int cipher_key(struct ant_c4gh_cipher *c, int enc, const uint8_t *key, const uint8_t *nonce)
{
    if (c->dir != enc) {
        if (EVP_CipherInit_ex2(c->ctx, c->cipher, NULL, NULL, enc, NULL) != 1) {
            c->dir = -1;
            return -EIO;
        }
        c->dir = enc;
    }
    return EVP_CipherInit_ex2(c->ctx, NULL, key, nonce, enc, NULL) == 1 ? 0 : -EIO;
}

static int segment_open(struct ant_c4gh_cipher *c, const uint8_t *key, struct ant_bytes seg,
                        uint8_t *out)
{
    const uint8_t *ct = seg.p + ANT_C4GH_NONCE_LEN;
    int ctlen = (int)(seg.len - ANT_C4GH_SEGMENT_OVERHEAD);
    int n = 0, fin = 0;
    uint8_t tag[ANT_C4GH_MAC_LEN];
    memcpy(tag, seg.p + seg.len - ANT_C4GH_MAC_LEN, sizeof(tag));
    if (cipher_key(c, 0, key, seg.p) < 0 ||
        EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_SET_TAG, ANT_C4GH_MAC_LEN, tag) != 1 ||
        EVP_DecryptUpdate(c->ctx, out, &n, ct, ctlen) != 1 || n != ctlen) {
        return -EIO;
    }
    if (EVP_DecryptFinal_ex(c->ctx, out + n, &fin) != 1) {
        return -EBADMSG;
    }
    return ctlen;
}

int ant_c4gh_segment_decrypt(struct ant_c4gh_cipher *c, const struct ant_c4gh_header *h,
                             struct ant_bytes seg, uint8_t *out, size_t outcap)
{
    int rc = -EBADMSG;
    if (seg.len <= ANT_C4GH_SEGMENT_OVERHEAD || seg.len > ANT_C4GH_CIPHER_SEGMENT_LEN) {
        return -EBADMSG;
    }
    if (outcap < seg.len - ANT_C4GH_SEGMENT_OVERHEAD) {
        return -ENOSPC;
    }
    /* Several data keys: the first whose tag verifies is the right one (FORMAT-NOTES §6). */
    for (size_t i = 0; i < h->nkeys; i++) {
        rc = segment_open(c, h->keys[i], seg, out);
        if (rc >= 0 || rc != -EBADMSG) {
            break;
        }
    }
    if (rc < 0) {
        memset(out, 0, seg.len - ANT_C4GH_SEGMENT_OVERHEAD); /* no unauthenticated plaintext */
    }
    return rc;
}

int ant_c4gh_segment_encrypt(struct ant_c4gh_cipher *c, const struct ant_c4gh_header *h,
                             struct ant_bytes plain, uint8_t *out, size_t outcap)
{
    int n = 0, fin = 0;
    if (plain.len == 0 || plain.len > ANT_C4GH_SEGMENT_LEN || h->nkeys == 0) {
        return -EINVAL;
    }
    if (outcap < plain.len + ANT_C4GH_SEGMENT_OVERHEAD) {
        return -ENOSPC;
    }
    randombytes_buf(out, ANT_C4GH_NONCE_LEN);
    if (cipher_key(c, 1, h->keys[0], out) < 0 ||
        EVP_EncryptUpdate(c->ctx, out + ANT_C4GH_NONCE_LEN, &n, plain.p, (int)plain.len) != 1 ||
        EVP_EncryptFinal_ex(c->ctx, out + ANT_C4GH_NONCE_LEN + n, &fin) != 1 ||
        (size_t)(n + fin) != plain.len ||
        EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_GET_TAG, ANT_C4GH_MAC_LEN,
                            out + ANT_C4GH_NONCE_LEN + plain.len) != 1) {
        return -EIO;
    }
    return (int)(plain.len + ANT_C4GH_SEGMENT_OVERHEAD);
}

/* --- offset math --- */

int ant_c4gh_plain_len(uint64_t body_len, uint64_t *plain_len)
{
    uint64_t q = body_len / ANT_C4GH_CIPHER_SEGMENT_LEN;
    uint64_t r = body_len % ANT_C4GH_CIPHER_SEGMENT_LEN;
    if (r > 0 && r <= ANT_C4GH_SEGMENT_OVERHEAD) {
        return -EBADMSG;
    }
    *plain_len = q * ANT_C4GH_SEGMENT_LEN + (r > 0 ? r - ANT_C4GH_SEGMENT_OVERHEAD : 0);
    return 0;
}

uint64_t ant_c4gh_body_len(uint64_t plain_len)
{
    uint64_t q = plain_len / ANT_C4GH_SEGMENT_LEN;
    uint64_t r = plain_len % ANT_C4GH_SEGMENT_LEN;
    return q * ANT_C4GH_CIPHER_SEGMENT_LEN + (r > 0 ? r + ANT_C4GH_SEGMENT_OVERHEAD : 0);
}

uint64_t ant_c4gh_segment_count(uint64_t body_len)
{
    return body_len / ANT_C4GH_CIPHER_SEGMENT_LEN +
           (body_len % ANT_C4GH_CIPHER_SEGMENT_LEN > 0 ? 1 : 0);
}

int ant_c4gh_segment_span(uint64_t header_len, uint64_t body_len, uint64_t i, uint64_t *off,
                          size_t *len)
{
    uint64_t start;
    uint64_t left;
    if (i >= ant_c4gh_segment_count(body_len)) {
        return -ERANGE;
    }
    start = i * ANT_C4GH_CIPHER_SEGMENT_LEN;
    left = body_len - start;
    if (left <= ANT_C4GH_SEGMENT_OVERHEAD) {
        return -EBADMSG;
    }
    *off = header_len + start;
    *len = left < ANT_C4GH_CIPHER_SEGMENT_LEN ? (size_t)left : ANT_C4GH_CIPHER_SEGMENT_LEN;
    return 0;
}

/* --- key files --- */

int ant_c4gh_keygen_files(int dirfd, const char *sk_path, const char *pk_path,
                          const char *passphrase, const char *comment, struct ant_diag *d)
{
    struct ant_key *k = NULL;
    struct ant_buf sk = ANT_BUF_INIT(ANT_KEYFILE_MAX), pk = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    bool sk_written = false;
    int rc = ant_key_generate(&k);
    if (rc < 0) {
        goto out;
    }
    rc = ant_keyfile_secret_encode(ant_key_secret(k), ANT_KEYFILE_C4GH_SECRET, passphrase, comment,
                                   &sk);
    if (rc == 0) {
        rc = ant_keyfile_public_encode(ant_key_public(k), ANT_KEYFILE_C4GH_PUBLIC, &pk);
    }
    if (rc < 0) {
        ant_diag_set(d, "cannot encode the key (comment or passphrase too long?)");
        goto out;
    }
    /* Refuse before writing anything if the public file is already there. */
    if (faccessat(dirfd, pk_path, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        ant_diag_set(d, "%s already exists; not overwriting it", pk_path);
        rc = -EEXIST;
        goto out;
    }
    rc = ant_write_new_file(dirfd, sk_path, 0600, sk.p, sk.len);
    if (rc < 0) {
        ant_diag_set(d, "cannot create %s: %s", sk_path, strerror(-rc));
        goto out;
    }
    sk_written = true;
    rc = ant_write_new_file(dirfd, pk_path, 0644, pk.p, pk.len);
    if (rc < 0) {
        ant_diag_set(d, "cannot create %s: %s", pk_path, strerror(-rc));
        goto out;
    }
out:
    if (rc < 0 && sk_written) {
        (void)unlinkat(dirfd, sk_path, 0);
    }
    ant_buf_wipe_fini(&sk);
    ant_buf_fini(&pk);
    ant_key_free(k);
    return rc;
}
