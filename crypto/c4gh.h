/* GA4GH Crypt4GH v1: header packets, data segments, streaming reader and writer, header
 * re-encryption (../shared/c4gh-vectors/FORMAT-NOTES.md is the authority for every rule here).
 *
 * A file is a header (magic, version, packets each sealed for one reader's X25519 key) and a
 * body of segments, each `nonce(12) || ChaCha20-Poly1305(plaintext <= 64 KiB) || tag(16)` under
 * a data key carried in the header.
 *
 * What the format cannot detect (spec §"Security considerations", FORMAT-NOTES §6): segments are
 * not bound to their index nor to the header, so anyone with write access can drop, reorder or
 * duplicate whole segments, or cut the file after any full segment, and every tag still
 * verifies. The header is not bound to the body either: a holder of the data key can write a
 * header for any key. antenna covers this with the SHA-256 of the plaintext and of the encrypted
 * body that the writer and reader below compute on the fly and the catalog stores and checks.
 *
 * Threads: a parsed or generated `struct ant_c4gh_header` is immutable after it is built and
 * may be shared by any number of threads for segment work. A `struct ant_c4gh_cipher` (one
 * OpenSSL EVP_CIPHER_CTX) belongs to one thread at a time: each worker makes its own once and
 * reuses it for every segment. Readers and writers are single-threaded objects. */
#ifndef ANT_C4GH_H
#define ANT_C4GH_H

#include "crypto/base/base.h"
#include "crypto/keys.h"

/* --- format constants --- */
#define ANT_C4GH_MAGIC "crypt4gh"
#define ANT_C4GH_PREAMBLE_LEN 16 /* magic(8) version(4) packet count(4) */
#define ANT_C4GH_SEGMENT_LEN 65536
#define ANT_C4GH_NONCE_LEN 12
#define ANT_C4GH_MAC_LEN 16
#define ANT_C4GH_SEGMENT_OVERHEAD (ANT_C4GH_NONCE_LEN + ANT_C4GH_MAC_LEN)      /* 28 */
#define ANT_C4GH_CIPHER_SEGMENT_LEN (ANT_C4GH_SEGMENT_LEN + ANT_C4GH_SEGMENT_OVERHEAD) /* 65564 */
#define ANT_C4GH_PACKET_OVERHEAD 68 /* length, method, writer key, nonce, tag */
#define ANT_C4GH_KEY_PACKET_LEN 108 /* a type-0 packet: 68 + type, method, 32-byte key */

/* --- limits (the spec sets none; every count and length is checked before it is used) --- */
#define ANT_C4GH_MAX_PACKETS 1024
#define ANT_C4GH_MAX_PACKET_LEN 65536
/* No valid packet is shorter: 68 bytes of framing + an empty edit list (type, count). */
#define ANT_C4GH_MIN_PACKET_LEN 76
/* The whole header, whatever the packets add up to: a reader buffers at most this much. */
#define ANT_C4GH_MAX_HEADER_LEN (1024u * 1024u)
/* Distinct data keys a reader keeps from the packets it opened (each is tried per segment). */
#define ANT_C4GH_MAX_DATA_KEYS 8
/* Lengths in one edit list: what fits in a packet of ANT_C4GH_MAX_PACKET_LEN. */
#define ANT_C4GH_MAX_EDITS ((ANT_C4GH_MAX_PACKET_LEN - ANT_C4GH_MIN_PACKET_LEN) / 8)
/* Recipients one writer seals the header for. */
#define ANT_C4GH_MAX_RECIPIENTS 64

/* A parsed (or freshly generated) header: data keys in sodium_malloc memory, the edit list,
 * and the raw packets (so a re-encryption can keep the packets meant for others). */
struct ant_c4gh_header;

/* --- header --- */

/* How long the header at the start of `in` is, without any key: walks the packet lengths.
 * Returns 0 and *hdr_len when the whole header is in `in` (the body starts at *hdr_len);
 * -EAGAIN when `in` is a valid but incomplete prefix, with *hdr_len = how many bytes are needed
 * before calling again (always more than in.len); -EBADMSG for a wrong magic, version 0 or > 1
 * (diag says which), no packets, or a packet shorter than ANT_C4GH_MIN_PACKET_LEN; -E2BIG for
 * a count over ANT_C4GH_MAX_PACKETS, a packet over ANT_C4GH_MAX_PACKET_LEN or a header over
 * ANT_C4GH_MAX_HEADER_LEN. `d` may be NULL. */
ANT_MUST_CHECK int ant_c4gh_header_measure(struct ant_bytes in, size_t *hdr_len,
                                           struct ant_diag *d);

/* Flags of ant_c4gh_header_parse. */
enum {
    /* Succeed even when no data key opened (for `inspect`): the header lists its packets. */
    ANT_C4GH_PARSE_ALLOW_NOKEY = 1u << 0,
};

/* Parses the header at the start of `in` (trailing bytes, e.g. the body, are ignored) and
 * tries every packet with `reader` (X25519 + BLAKE2b-512 → ChaCha20-Poly1305, FORMAT-NOTES §4).
 * A packet that does not open, or whose header method is unknown, is "not for this key" and
 * kept as a foreign packet. If `sender_pk` is not NULL, only packets whose writer key equals it
 * are tried. Data keys come from type-0 packets with method 0; at most one edit list (type 1).
 * `reader` is borrowed for the call; *out is written only on success; free with
 * ant_c4gh_header_free().
 * Errors: those of ant_c4gh_header_measure (-EAGAIN: `in` is shorter than the header);
 * -ENOKEY no type-0 packet opened (diag: the file was not encrypted for this key, or not by
 * that sender); -EBADMSG an opened packet is malformed, has an unknown type, or is a second
 * edit list; -ENOTSUP an opened data packet names a method other than 0 (or methods differ);
 * -E2BIG more than ANT_C4GH_MAX_DATA_KEYS distinct data keys; -ENOMEM. */
ANT_MUST_CHECK int ant_c4gh_header_parse(struct ant_bytes in, const struct ant_key *reader,
                                         const uint8_t *sender_pk, unsigned flags,
                                         struct ant_c4gh_header **out, struct ant_diag *d);

/* A header for a new file: one fresh random data key, no packets, no edit list. */
ANT_MUST_CHECK int ant_c4gh_header_generate(struct ant_c4gh_header **out);

/* Replaces the edit list (lengths alternate skip, keep, ...; FORMAT-NOTES §7); n = 0 removes
 * it. -E2BIG past ANT_C4GH_MAX_EDITS. Not thread-safe: call before sharing the header. */
ANT_MUST_CHECK int ant_c4gh_header_set_edits(struct ant_c4gh_header *h, const uint64_t *lens,
                                             size_t n);

void ant_c4gh_header_free(struct ant_c4gh_header *h); /* accepts NULL; wipes the data keys */

/* Length of the parsed header in the input, i.e. the offset of the body (0 if generated). */
size_t ant_c4gh_header_len(const struct ant_c4gh_header *h);
size_t ant_c4gh_header_key_count(const struct ant_c4gh_header *h);
/* True if an edit list applies; *lens (borrowed, valid while h lives) and *n are set. n may be
 * 0 (an empty list means "no edit"). */
bool ant_c4gh_header_edits(const struct ant_c4gh_header *h, const uint64_t **lens, size_t *n);

/* One packet of a parsed header, for `inspect`. */
struct ant_c4gh_packet_info {
    size_t offset, len;       /* where in the header, its whole length */
    uint32_t method;          /* header encryption method (0 = X25519_chacha20_ietf_poly1305) */
    uint8_t writer_pk[ANT_KEY_LEN];
    bool readable;            /* opened with the reader's key */
    uint32_t type;            /* if readable: 0 data key, 1 edit list */
    uint32_t data_method;     /* if type 0 */
    uint64_t edit_count;      /* if type 1 */
};
size_t ant_c4gh_header_packet_count(const struct ant_c4gh_header *h);
/* -ERANGE if i is past the last packet. */
ANT_MUST_CHECK int ant_c4gh_header_packet(const struct ant_c4gh_header *h, size_t i,
                                          struct ant_c4gh_packet_info *out);

/* Seals the header for each of `n` recipient public keys (`recipients`: n × ANT_KEY_LEN bytes,
 * back to back) with `writer`'s key (writer key in
 * each new packet = writer's public key; new random nonce per packet): per recipient, one
 * type-0 packet per data key, then the edit list if there is one. With keep_foreign, the
 * packets of a parsed header that this reader could not open follow unchanged (re-encryption
 * without --trim). Appends the whole header to `out`.
 * Errors: -EINVAL n == 0 or n > ANT_C4GH_MAX_RECIPIENTS, no data key, or the result would have
 * more than ANT_C4GH_MAX_PACKETS packets; -E2BIG the result would pass ANT_C4GH_MAX_HEADER_LEN
 * (or out's own ceiling); -EBADMSG a recipient key is low-order; -ENOMEM. Nothing is appended on
 * failure. */
ANT_MUST_CHECK int ant_c4gh_header_encode(const struct ant_c4gh_header *h,
                                          const struct ant_key *writer,
                                          const uint8_t *recipients, size_t n,
                                          bool keep_foreign, struct ant_buf *out);

/* Header-only re-encryption (`reencrypt --header-only`, and what the gateway sends before a
 * stored body): opens `hdr` (the header, any trailing bytes ignored) with `key`, seals the data
 * keys and edit list for the recipients with `key` as writer, keeps the packets for others
 * unless `trim`. The body is untouched: its segments are sealed with the data key, which a
 * change of recipient does not touch. Appends the new header to `out`; *old_len (may be NULL)
 * receives the old header's length, where the unchanged body starts.
 * Errors: those of ant_c4gh_header_parse and ant_c4gh_header_encode. */
ANT_MUST_CHECK int ant_c4gh_reencrypt_header(struct ant_bytes hdr, const struct ant_key *key,
                                             const uint8_t *recipients, size_t n,
                                             bool trim, struct ant_buf *out, size_t *old_len,
                                             struct ant_diag *d);

/* --- segments: independent, for several threads --- */

/* One thread's bulk AEAD context (an EVP_CIPHER_CTX for ChaCha20-Poly1305), reused across
 * segments. Make one per worker thread; never use one from two threads at once. */
struct ant_c4gh_cipher;
ANT_MUST_CHECK int ant_c4gh_cipher_new(struct ant_c4gh_cipher **out);
void ant_c4gh_cipher_free(struct ant_c4gh_cipher *c); /* accepts NULL */

/* Decrypts one segment as stored (nonce || ciphertext || tag, ANT_C4GH_SEGMENT_OVERHEAD + 1 to
 * ANT_C4GH_CIPHER_SEGMENT_LEN bytes) with the header's data keys (each tried in turn). Writes
 * seg.len - 28 bytes to out (outcap must be at least that) and returns that count.
 * -EBADMSG: the segment is too short or too long, or no data key verifies its tag (out is then
 * zeroed: no unauthenticated plaintext leaves). -ENOSPC outcap too small. Thread-safe with a
 * per-thread cipher; the segment index plays no part in v1 (see the top of this file). */
ANT_MUST_CHECK int ant_c4gh_segment_decrypt(struct ant_c4gh_cipher *c,
                                            const struct ant_c4gh_header *h, struct ant_bytes seg,
                                            uint8_t *out, size_t outcap);
/* Encrypts 1..ANT_C4GH_SEGMENT_LEN plaintext bytes with the header's first data key and a fresh
 * random nonce; writes plain.len + 28 bytes to out and returns that count. -EINVAL for an empty
 * or oversized plaintext (a writer never emits an empty segment), -ENOSPC outcap too small. */
ANT_MUST_CHECK int ant_c4gh_segment_encrypt(struct ant_c4gh_cipher *c,
                                            const struct ant_c4gh_header *h,
                                            struct ant_bytes plain, uint8_t *out, size_t outcap);

/* --- offset math (no key needed) --- */

/* Plaintext length of a body of body_len bytes (FORMAT-NOTES §6): -EBADMSG when the last
 * segment would be 1..28 bytes (no plaintext: corrupt). */
ANT_MUST_CHECK int ant_c4gh_plain_len(uint64_t body_len, uint64_t *plain_len);
/* Body length for plain_len bytes of plaintext. */
uint64_t ant_c4gh_body_len(uint64_t plain_len);
/* Number of segments in a body of body_len bytes (the last may be short). */
uint64_t ant_c4gh_segment_count(uint64_t body_len);
/* Where segment i starts in the file and how many bytes it takes on disk. -ERANGE when i is
 * past the last segment, -EBADMSG when that last segment would be too short. */
ANT_MUST_CHECK int ant_c4gh_segment_span(uint64_t header_len, uint64_t body_len, uint64_t i,
                                         uint64_t *off, size_t *len);

/* --- streaming (bounded memory: one segment plus the header) --- */

/* Where a reader or writer sends its output. Returns 0 or a negative errno, which stops the
 * stream and is returned to the caller. */
typedef int (*ant_c4gh_sink_fn)(void *arg, const uint8_t *p, size_t len);

/* What a reader or writer saw, for the catalog: the format cannot see dropped, reordered or
 * duplicated segments nor a cut at a segment boundary; these digests can. */
struct ant_c4gh_digests {
    uint8_t sha256_plain[32]; /* of the plaintext as written / as output (after the edit list) */
    uint8_t sha256_body[32];  /* of the encrypted body: every byte after the header */
    uint64_t plain_len, body_len, header_len;
};

/* Encrypts a stream: the header for the recipients (writer key = sender; optional edit list),
 * then 64 KiB segments. `sender` is borrowed until ant_c4gh_writer_free(); the recipient keys
 * are copied. The header goes to the sink on the first write or at finish. */
struct ant_c4gh_writer;
ANT_MUST_CHECK int ant_c4gh_writer_new(const struct ant_key *sender,
                                       const uint8_t *recipients, size_t n,
                                       const uint64_t *edits, size_t nedits, ant_c4gh_sink_fn sink,
                                       void *arg, struct ant_c4gh_writer **out);
/* Feeds plaintext; emits each full segment. Errors: the sink's, -ENOMEM, -EINVAL after finish. */
ANT_MUST_CHECK int ant_c4gh_writer_write(struct ant_c4gh_writer *w, struct ant_bytes plain);
/* Emits the last (short) segment; no empty segment after a 64 KiB-aligned end (FORMAT-NOTES §6).
 * Fills *dg (may be NULL). */
ANT_MUST_CHECK int ant_c4gh_writer_finish(struct ant_c4gh_writer *w, struct ant_c4gh_digests *dg);
void ant_c4gh_writer_free(struct ant_c4gh_writer *w); /* accepts NULL */
/* For callers that do not need the SHA-256 digests (the CLI): they cost more than the AEAD.
 * The sha256_* fields are then left zero. Call before the first write. */
void ant_c4gh_writer_skip_digests(struct ant_c4gh_writer *w);

/* Decrypts a stream: buffers and opens the header with `key` (and `sender_pk` if not NULL),
 * then decrypts segment by segment and sends the plaintext, with the edit list applied, to the
 * sink. Segments that the edit list skips entirely are not decrypted (as the reference does),
 * but they are still hashed into sha256_body. IMPORTANT: plaintext of segment i goes to the sink
 * once segment i verifies, before later segments are seen: a caller that must not release
 * partial output writes to a temporary file and publishes it only after finish succeeds.
 * `key` is borrowed until ant_c4gh_reader_free(). */
struct ant_c4gh_reader;
ANT_MUST_CHECK int ant_c4gh_reader_new(const struct ant_key *key, const uint8_t *sender_pk,
                                       ant_c4gh_sink_fn sink, void *arg,
                                       struct ant_c4gh_reader **out);
/* Feeds encrypted bytes. Errors: those of ant_c4gh_header_parse (-ENOKEY: not for this key),
 * -EBADMSG a segment fails (ant_c4gh_reader_diag says which index), the sink's errors. After an
 * error the reader refuses further input (-EINVAL). */
ANT_MUST_CHECK int ant_c4gh_reader_write(struct ant_c4gh_reader *r, struct ant_bytes in);
/* Ends the stream: decrypts the last segment. -EBADMSG if the input ended inside the header or
 * with a last segment of 1..28 bytes. Fills *dg (may be NULL). */
ANT_MUST_CHECK int ant_c4gh_reader_finish(struct ant_c4gh_reader *r, struct ant_c4gh_digests *dg);
/* The parsed header once the reader has seen it (NULL before), borrowed. */
const struct ant_c4gh_header *ant_c4gh_reader_header(const struct ant_c4gh_reader *r);
/* A message saying what went wrong (which segment, not for this key, ...). */
const char *ant_c4gh_reader_diag(const struct ant_c4gh_reader *r);
void ant_c4gh_reader_free(struct ant_c4gh_reader *r); /* accepts NULL; wipes */
/* As ant_c4gh_writer_skip_digests; call before the first write. */
void ant_c4gh_reader_skip_digests(struct ant_c4gh_reader *r);

/* Reads exactly the header from fd (walking the packet lengths, never a byte of the body) into
 * `hdr` (appended; bounded by ANT_C4GH_MAX_HEADER_LEN). Errors: those of
 * ant_c4gh_header_measure except -EAGAIN; -EBADMSG when the input ends inside the header;
 * -errno from read. */
ANT_MUST_CHECK int ant_c4gh_header_read_fd(int fd, struct ant_buf *hdr, struct ant_diag *d);

/* Flags of ant_c4gh_reencrypt_fd. */
enum {
    ANT_C4GH_REENC_TRIM = 1u << 0,        /* drop the packets meant for others */
    ANT_C4GH_REENC_HEADER_ONLY = 1u << 1, /* write only the new header, read no body */
};

/* Full re-encryption between fds: reads the header from in_fd, writes the re-encrypted header
 * (see ant_c4gh_reencrypt_header) and then, unless HEADER_ONLY, copies the body byte for byte.
 * Memory: header + 64 KiB. Errors: those of ant_c4gh_header_read_fd and
 * ant_c4gh_reencrypt_header, -errno from read/write. */
ANT_MUST_CHECK int ant_c4gh_reencrypt_fd(int in_fd, int out_fd, const struct ant_key *key,
                                         const uint8_t *recipients, size_t n, unsigned flags,
                                         struct ant_diag *d);

/* --- key files for `antenna c4gh keygen` --- */

/* Generates an X25519 key pair and writes the secret key file (c4gh-v1; scrypt +
 * chacha20_poly1305 when passphrase is non-empty, else unencrypted; mode 0600) and the public key
 * file (0644), both created exclusively relative to dirfd. The secret never leaves crypto/.
 * Errors: -EEXIST either file exists (nothing is written), -EINVAL comment or passphrase too
 * long, -errno from the file system (a half-written pair is removed). */
ANT_MUST_CHECK int ant_c4gh_keygen_files(int dirfd, const char *sk_path, const char *pk_path,
                                         const char *passphrase, const char *comment,
                                         struct ant_diag *d);

#endif
