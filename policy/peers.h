/* Peers (DESIGN.md §8): the other sites this site trusts, in the `peers` table of antenna.db.
 * A peer is trusted only through its row: its Ed25519 key verifies the federation tokens it
 * sends and the manifests it signs, its X25519 key is what its files' headers are re-encrypted
 * for, and its TLS anchor (a PEM certificate) is the only thing the libcurl client trusts when
 * talking to it. An admin pins all of them once, when the peer is added.
 *
 * Also here: single use of federation tokens (`fed_jti`) and the local cache of peers' files
 * (`fed_cache`).
 *
 * Threads: as the `struct ant_store` given (one thread per connection).
 * Errors: as policy/store.h (-EEXIST, -ENOENT, -EINVAL, -EBUSY, -EIO, -ENOMEM). */
#ifndef ANT_PEERS_H
#define ANT_PEERS_H

#include <jansson.h>

#include "crypto/keys.h"
#include "policy/audit.h"
#include "policy/store.h"

/* An https:// URL of at most this many bytes (no credentials, no query, no control byte). */
#define ANT_PEER_URL_MAX 512
/* A PEM trust anchor (a certificate or a short chain) of at most this many bytes. */
#define ANT_PEER_ANCHOR_MAX 32768

/* A peer as the catalog holds it; a value type. The anchor is read separately
 * (ant_peer_anchor) since most callers only need the keys. */
struct ant_peer {
    char id[ANT_NAME_MAX + 1];
    char url[ANT_PEER_URL_MAX + 1];
    char region[ANT_NAME_MAX + 1];
    uint8_t x25519_pk[ANT_KEY_LEN];
    uint8_t ed25519_pk[ANT_KEY_LEN];
    int64_t added;
    char added_by[ANT_NAME_MAX + 1];
};

/* "https://" then a host[:port] and optional path of printable ASCII without spaces, '@', '?'
 * or '#', at most ANT_PEER_URL_MAX bytes, no trailing '/'. */
bool ant_peer_url_is_valid(const char *url);

/* Adds peer `p` (id and region valid names, url valid, keys not all zero) with its TLS anchor
 * (PEM text holding "-----BEGIN CERTIFICATE-----", at most ANT_PEER_ANCHOR_MAX bytes).
 * p->added 0: now. -EINVAL for a bad field, -EEXIST for a peer id already there. */
ANT_MUST_CHECK int ant_peer_add(struct ant_store *st, const struct ant_peer *p,
                                struct ant_bytes anchor_pem);
/* -ENOENT unknown peer. */
ANT_MUST_CHECK int ant_peer_get(struct ant_store *st, const char *id, struct ant_peer *out);
/* Appends the peer's PEM anchor to out (NUL-terminated, not counted). -ENOENT, -E2BIG. */
ANT_MUST_CHECK int ant_peer_anchor(struct ant_store *st, const char *id, struct ant_buf *out);
/* Removes the peer (its tokens fail from the next request on). Cached files stay (they are
 * this site's encrypted copies, evicted like any other: ant_fed_cache_evict) but are no longer
 * served from cache for that peer.
 * -ENOENT unknown. */
ANT_MUST_CHECK int ant_peer_remove(struct ant_store *st, const char *id);
/* Objects: id, url, region, x25519, ed25519 (standard base64), added, added_by; by id. */
ANT_MUST_CHECK int ant_peer_list(struct ant_store *st, json_t **out);

/* Single use of a federation token (ant_token_fed_verify's contract): records (iss, jti) until
 * exp + ANT_TOKEN_SKEW_MAX (a verifier accepts a token until exp plus its skew) and returns 0
 * the first time, -EALREADY for a pair seen before. Rows past that are purged on the way, so
 * the table stays as small as the tokens still acceptable.
 * -EINVAL for an empty or over-long iss / jti. */
ANT_MUST_CHECK int ant_peer_jti_use(struct ant_store *st, const char *iss, const char *jti,
                                    int64_t exp, int64_t now);

/* --- the local encrypted copies of peers' files --- */
struct ant_fed_cached {
    char storage[ANT_ID_MAX + 1]; /* archive/fed/<storage>.c4gh */
    uint64_t size;                /* of the encrypted body (the header is not counted) */
    uint8_t sha256_c4gh[32];
};
/* The copy of (peer, dataset, path) whose body digest is sha256_c4gh; -ENOENT if none (or
 * only one with another digest: the peer's dataset changed, or the copy is stale). A copy found
 * is marked used at `now` (unix s; 0: the clock) before it is returned, so a concurrent
 * ant_fed_cache_evict (another process) no longer takes it within its grace period. That is a
 * write: a caller looking up many files wraps them in one ant_store_begin/commit. */
ANT_MUST_CHECK int ant_fed_cache_get(struct ant_store *st, const char *peer_id,
                                     const char *dataset_id, const char *path,
                                     const uint8_t sha256_c4gh[32], int64_t now,
                                     struct ant_fed_cached *out);
/* Records (or replaces) the copy, created and used at `now` (unix s; 0: the clock). -EINVAL for
 * a bad name / path. */
ANT_MUST_CHECK int ant_fed_cache_put(struct ant_store *st, const char *peer_id,
                                     const char *dataset_id, const char *path,
                                     const struct ant_fed_cached *c, int64_t now);

/* The bytes the cache rows add up to (what ant_fed_cache_evict holds to max_bytes; copies no
 * row names are not counted). Errors as policy/store.h. */
ANT_MUST_CHECK int ant_fed_cache_bytes(struct ant_store *st, uint64_t *out);
/* How many stage jobs of a peer's dataset are recorded running (stage_jobs): a daemon's readers
 * of cached copies, which a process other than the daemon (`antenna admin peer pull`) must not
 * evict under. A daemon that crashed leaves its jobs recorded running until it starts again,
 * so they are counted until then. Errors as policy/store.h. */
ANT_MUST_CHECK int ant_fed_cache_remote_jobs_running(struct ant_store *st, uint64_t *out);

/* What one ant_fed_cache_evict pass did. Sizes are the rows' (encrypted bodies). */
struct ant_fed_evict_stats {
    uint64_t total_before;  /* bytes the cache rows named before the pass */
    uint64_t total_after;   /* and after it: above max_bytes when the rest is within the grace */
    uint64_t evicted_files; /* rows removed */
    uint64_t evicted_bytes;
    uint64_t unlink_failed; /* rows removed whose file stays (logged; swept at start-up) */
};

/* Evicts the least recently used copies while the rows' sizes add up to more than max_bytes
 * (0: no limit, nothing is evicted). A copy used at or after now - grace_s (unix s) is never
 * evicted, so the pass may end above the limit. For each copy the row goes first, committed
 * (in batches), then the file archive/fed/<storage>.c4gh under archive_fd (already missing is
 * fine): a crash in between leaves a file no row names, which the daemon's start-up sweep
 * removes (staging/jobs.c). A row is deleted only if it is still unused since the cut-off, so a
 * lookup (ant_fed_cache_get) that raced the pass keeps its copy.
 * The caller makes sure no reader of this process has a copy open that it found before the
 * pass (staging/jobs.c runs it only while no remote stage job runs; `antenna admin peer pull`
 * only while ant_fed_cache_remote_jobs_running finds none). *out (optional) is written
 * on success. Errors (the batches committed before stay evicted): -EINVAL bad arguments,
 * -errno opening archive/fed (not -ENOENT: then there is no file to remove), database errors
 * as policy/store.h (-EBUSY, -EIO, -ENOMEM). */
ANT_MUST_CHECK int ant_fed_cache_evict(struct ant_store *st, int archive_fd, uint64_t max_bytes,
                                       int64_t now, int64_t grace_s,
                                       struct ant_fed_evict_stats *out);

/* --- witnessing peers' audit checkpoints (docs/security.md, "Witnesses") ---
 * This site records each peer's latest signed audit checkpoint whenever it talks to the peer
 * (staging/fetch.c), in `peer_witness` (one row per distinct (seq, hash)), and each time the
 * peer served as its latest a checkpoint below one recorded before, in `peer_witness_rollback`
 * (one row per (seq, hash, highest)): rows are only ever added, never changed or removed (also
 * not with the peer), so that the peer's auditors can later check its log against them.
 *
 * A peer's latest checkpoint never goes backwards, but two sessions of this site with the peer
 * may overlap (a stage job's admission and run, `antenna admin peer pull`, in two processes):
 * one may fetch seq N while the other fetches and records N+1 before the first records N. So
 * "behind" is judged against the highest seq recorded *before the peer was asked*
 * (ant_peer_witness_top, read before the request): that one the peer had served before it
 * answered, whatever the order in which the answers are recorded. */

/* The highest seq recorded for peer_id into *out (0: none). -EINVAL bad name, store errors. */
ANT_MUST_CHECK int ant_peer_witness_top(struct ant_store *st, const char *peer_id, int64_t *out);

struct ant_witness_result {
    bool added;         /* a new row in peer_witness: this (seq, hash) had none */
    bool equivocation;  /* added, and another hash was recorded at this seq: the peer showed
                           two histories (or rewrote its log and re-signed it) */
    bool rollback;      /* seq below `highest`: the peer went back; recorded now in
                           peer_witness_rollback (with added false, to a checkpoint recorded
                           before: a restored backup taken at it, or its tail cut back to it) */
    bool rollback_seen; /* seq below `highest`, but this very rollback (same checkpoint, same
                           highest) was recorded before: nothing written */
    int64_t highest;    /* the caller's asked_top */
};
/* Records checkpoint c of peer `peer_id` (a valid name; the caller checked its signature with
 * the peer's pinned key) seen at seen_ms (0: now), in one transaction. asked_top is what
 * ant_peer_witness_top said before the peer was asked for c (see above). A conflict to report
 * is equivocation or rollback in *out. -EINVAL bad arguments (asked_top < 0 among them), store
 * errors. */
ANT_MUST_CHECK int ant_peer_witness_record(struct ant_store *st, const char *peer_id,
                                           const struct ant_audit_ckpt *c, int64_t asked_top,
                                           int64_t seen_ms, struct ant_witness_result *out);
/* What was recorded for peer_id, by seq then seen_ms: *out (free()) holds *n checkpoints and,
 * when seen is not NULL, *seen (free()) their seen_ms. No row is not an error (*n = 0). */
ANT_MUST_CHECK int ant_peer_witnessed(struct ant_store *st, const char *peer_id,
                                      struct ant_audit_ckpt **out, int64_t **seen, size_t *n);

struct ant_witness_rollback {
    int64_t seq;                        /* the checkpoint the peer served as its latest */
    uint8_t hash[ANT_AUDIT_HASH_LEN];   /* (its row in peer_witness holds the signature) */
    int64_t highest;                    /* the highest seq recorded before it was asked */
    int64_t seen_ms;
};
/* The rollbacks recorded for peer_id, by seen_ms then seq: *out (free()) holds *n of them. No
 * row is not an error (*n = 0). -EINVAL bad name, store errors (-EIO for a corrupt row). */
ANT_MUST_CHECK int ant_peer_witness_rollbacks(struct ant_store *st, const char *peer_id,
                                              struct ant_witness_rollback **out, size_t *n);

#endif
