/* The pulling side of federation (DESIGN.md §8, docs/federation.md): fetches a peer's signed
 * manifest and files over HTTPS with libcurl's multi interface.
 *
 * Trust: the only certificate trusted is the peer's pinned anchor, the manifest's signature is
 * checked with the peer's pinned Ed25519 key before a byte of it is parsed, and each file's
 * body is checked against the manifest's sha256_c4gh before the file is renamed into place.
 * Every request carries a fresh federation token (they are single use) and the transfer id.
 *
 * Transfer: many files at once, bodies larger than `range_size` split into segment-aligned
 * ranges over several connections; a piece that fails with a timeout, a connection error, a
 * 5xx or 429 is retried (exponential backoff with jitter, bounded), resuming by Range
 * from the bytes already written. A body whose digest does not match is fetched again once
 * (a byte corrupted in transit); a 4xx ends the transfer with the peer's message.
 *
 * Threads: a call runs libcurl on the caller's thread and starts two of its own for the disk (a
 * writer and a hasher, joined before it returns); calls may run on several threads at once. */
#ifndef ANT_STAGING_FETCH_H
#define ANT_STAGING_FETCH_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "crypto/base/base.h"
#include "crypto/keys.h"

/* A manifest larger than this is refused. */
#define ANT_FETCH_MANIFEST_MAX (16u << 20)
/* At most this many files in one manifest. */
#define ANT_FETCH_FILES_MAX 200000
/* "fed/fc_<16 hex>.c4gh" and a NUL, rounded up. */
#define ANT_FED_ARCHIVE_NAME_MAX 40

/* Signs a fresh federation token for one request and appends it to out (NUL-terminated). */
typedef int (*ant_fetch_token_fn)(void *ctx, struct ant_buf *out);

struct ant_fetch_peer {
    const char *id;          /* the peer's site id */
    const char *url;         /* its base URL, https://host:port */
    struct ant_bytes anchor; /* its pinned PEM trust anchor */
    const uint8_t *ed25519_pk;
    ant_fetch_token_fn token;
    void *token_ctx;
    const char *transfer_id; /* sent as X-Antenna-Transfer-Id on every request */
};

struct ant_fetch_opts {
    unsigned max_conns;   /* transfers in flight; 0: 8 */
    uint64_t range_size;  /* body pieces, rounded to whole cipher segments; 0: 8 MiB */
    unsigned max_retries; /* per piece; 0: 8 */
    unsigned backoff_ms;  /* first backoff; doubles, capped at 8 s, half of it jitter; 0: 100 */
    long low_speed_s;     /* a piece slower than 1 KiB/s for this long is a timeout; 0: 30 */
    uint64_t max_rate;    /* bytes/s per connection; 0: unlimited (shares a link politely) */
    /* body bytes received ahead of the hash's position (other connections' ranges) kept in
     * memory to be hashed in turn; 0: max_conns ranges, within 16-128 MiB; 1: none. Beyond it
     * they are read back from the file. */
    uint64_t hold_max;
    /* NULL, or a flag set from any thread: the transfer stops within ~100 ms with -ECANCELED
     * (files already renamed into place stay; the unfinished ones' temporary files go) */
    const atomic_bool *cancel;
    /* NULL, or a counter the body and header bytes received are added to as they land (a
     * stage job's status shows the transfer's progress from it) */
    atomic_uint_least64_t *received;
};

/* One file of a verified manifest. */
struct ant_fetch_file {
    char path[1025];
    uint64_t size;      /* plaintext */
    uint64_t body_size; /* encrypted body */
    uint8_t sha256[32];
    uint8_t sha256_c4gh[32];
};

struct ant_fetch_manifest {
    char dataset_id[65];
    char dataset_name[65];
    size_t nfiles;
    struct ant_fetch_file *files;
};
void ant_fetch_manifest_fini(struct ant_fetch_manifest *m); /* accepts zeroed storage */

/* Parses a manifest's JSON (after its signature was checked): it must name peer_id as site
 * and `dataset`, and list at most ANT_FETCH_FILES_MAX files with valid logical paths, sizes
 * and hex digests. -EBADMSG otherwise (diag says what), -ENOMEM. On success the caller calls
 * ant_fetch_manifest_fini. */
ANT_MUST_CHECK int ant_fetch_manifest_parse(struct ant_bytes body, const char *peer_id,
                                            const char *dataset, struct ant_fetch_manifest *out,
                                            struct ant_diag *d);

/* GET /v1/federation/datasets/{id}/manifest; checks the signature over the exact bytes with
 * p->ed25519_pk, then that it names p->id as site, `dataset` and sane files. -EKEYREJECTED bad
 * or missing signature; -EBADMSG malformed; -EACCES / -ENOENT / -EPERM the peer refused (403 /
 * 404 / 401, diag holds its message); -EIO transport; -E2BIG. */
ANT_MUST_CHECK int ant_fetch_manifest_get(const struct ant_fetch_peer *p, const char *dataset,
                                          struct ant_fetch_manifest *out, struct ant_diag *d);

struct ant_fetch_stats {
    uint64_t bytes;     /* body and header bytes received (retries included) */
    unsigned requests;  /* HTTP requests made */
    unsigned retries;   /* pieces retried */
    unsigned refetched; /* bodies fetched again after a digest mismatch */
};

/* Fetches the files of m whose want[i] is true (want NULL: all) into dirfd as complete
 * Crypt4GH files named names[i] (each: the header the peer re-encrypted for `self`, checked to
 * open with it, then the body). Each goes to a temporary name, is checked against the
 * manifest, fsynced and renamed. 0, or the first error (files already renamed stay): -EIO
 * transport after retries, -EBADMSG a body still wrong after a refetch or a header that does
 * not open, -EACCES / -ENOENT / -EPERM refused by the peer (diag). */
ANT_MUST_CHECK int ant_fetch_files(const struct ant_fetch_peer *p, const char *dataset,
                                   const struct ant_fetch_manifest *m, const bool *want,
                                   const char *const *names, int dirfd, const struct ant_key *self,
                                   const struct ant_fetch_opts *o, struct ant_fetch_stats *st,
                                   struct ant_diag *d);

/* --- a whole pull into this site's archive (the hook for stage jobs and the CLI) --- */
struct ant_store;
struct ant_audit;
struct ant_site_keys;

struct ant_fed_pull_req {
    struct ant_store *st;        /* peers and fed_cache (this thread's connection) */
    struct ant_audit *audit;     /* the pull is audited here, with the transfer id */
    const struct ant_site_keys *keys; /* signs the tokens; opens the headers */
    const char *self_id;         /* this site's id: the tokens' iss */
    int archive_fd;              /* copies go to archive/fed/<storage>.c4gh */
    const char *peer_id;
    const char *dataset;         /* the peer's dataset id */
    const char *principal;       /* this site's principal the pull is for (token sub) */
    const char *tenant;          /* its tenant here; the token says "<tenant>@<self_id>" */
    const char *purpose;         /* the stated purpose (a DUO code) */
    const char *transfer_id;     /* NULL: a new "tr_..." */
    const char *request_id;      /* for the audit event, may be NULL */
    const struct ant_fetch_opts *opts;
    /* NULL, or which files of the manifest to pull: the others are listed with skipped set
     * and not fetched (a stage job narrowed by path patterns) */
    bool (*want)(void *arg, const char *path);
    void *want_arg;
};

struct ant_fed_pulled_file {
    char path[1025];
    char archive_name[ANT_FED_ARCHIVE_NAME_MAX]; /* "fed/<storage>.c4gh" under the archive */
    uint64_t size;
    uint8_t sha256[32]; /* of the plaintext, from the signed manifest */
    uint8_t sha256_c4gh[32]; /* of the encrypted body, from the signed manifest */
    bool cached;        /* already here: nothing was transferred */
    bool skipped;       /* not wanted (want): not pulled, archive_name empty */
};

struct ant_fed_pulled {
    char transfer_id[65];
    char dataset_name[65];
    size_t nfiles;
    struct ant_fed_pulled_file *files;
    struct ant_fetch_stats stats;
};
void ant_fed_pulled_fini(struct ant_fed_pulled *p); /* accepts zeroed storage */

/* Pulls dataset `dataset` of peer `peer_id` for `principal`: the signed manifest, then every
 * file not already in the cache (fed_cache, matched on the body digest), into the archive, and
 * records the copies. Audits one event "fed.pull" (allow with counts, or deny with the reason)
 * under the transfer id, which the peer's events carry too; an event that cannot be written
 * fails the pull. Errors: -ENOENT unknown peer (or the peer's 404), others as
 * ant_fetch_manifest_get / ant_fetch_files; diag says what. On success *out is filled (the
 * caller calls ant_fed_pulled_fini). */
ANT_MUST_CHECK int ant_fed_pull(const struct ant_fed_pull_req *q, struct ant_fed_pulled *out,
                                struct ant_diag *d);

/* The verified manifest of q->dataset at peer q->peer_id for q->principal, with a token as
 * ant_fed_pull would send, under q->transfer_id (required here): what a stage job's admission
 * checks before it records the job (the peer decides and audits under that id). Nothing is
 * audited here (the caller audits its admission). Errors: -ENOENT the peer is not in the peers
 * table (diag says so) or the peer's 404, -EINVAL no transfer id, others as
 * ant_fetch_manifest_get. The caller calls ant_fetch_manifest_fini on success. */
ANT_MUST_CHECK int ant_fed_manifest(const struct ant_fed_pull_req *q,
                                    struct ant_fetch_manifest *out, struct ant_diag *d);

#endif
