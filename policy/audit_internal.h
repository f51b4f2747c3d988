/* Shared by the files of the audit chain (audit.c: writer and export; audit_verify.c: the
 * verifier): the hash-chain formulas of policy/audit.h, in one place. Each returns 0, or
 * -ENOMEM when OpenSSL fails. `c` is the caller's context, `md` its fetched SHA-256. */
#ifndef ANT_AUDIT_INTERNAL_H
#define ANT_AUDIT_INTERNAL_H

#include <openssl/evp.h>

#include "policy/audit.h"

/* v1: h_n = SHA-256(h_{n-1} || canonical). */
ANT_MUST_CHECK int ant_audit_link_v1(EVP_MD_CTX *c, const EVP_MD *md,
                                     const uint8_t prev[ANT_AUDIT_HASH_LEN], struct ant_bytes canon,
                                     uint8_t out[ANT_AUDIT_HASH_LEN]);
/* v2: c_n = SHA-256("antenna-audit-commit-v2" || salt || canonical). */
ANT_MUST_CHECK int ant_audit_commit_v2(EVP_MD_CTX *c, const EVP_MD *md,
                                       const uint8_t salt[ANT_AUDIT_SALT_LEN],
                                       struct ant_bytes canon, uint8_t out[ANT_AUDIT_HASH_LEN]);
/* v2: h_n = SHA-256(h_{n-1} || "antenna-audit-link-v2" || u64le seq || c_n). */
ANT_MUST_CHECK int ant_audit_link_v2(EVP_MD_CTX *c, const EVP_MD *md,
                                     const uint8_t prev[ANT_AUDIT_HASH_LEN], int64_t seq,
                                     const uint8_t commit[ANT_AUDIT_HASH_LEN],
                                     uint8_t out[ANT_AUDIT_HASH_LEN]);

/* An event's 11 strings in canonical order (request_id, actor, tenant, credential, action,
 * resource_kind, resource_id, dataset_id, reason, transfer, detail), each a view (p NULL:
 * absent), so that a caller holding lengths (SQLite's) need not copy to add a NUL. */
#define ANT_AUDIT_NFIELDS 11
void ant_audit_event_fields(const struct ant_audit_event *ev,
                            struct ant_bytes f[ANT_AUDIT_NFIELDS]);
/* ant_audit_canonical over views: -E2BIG past ANT_AUDIT_DETAIL_MAX or the buffer's max. */
ANT_MUST_CHECK int ant_audit_canonical_fields(int64_t seq, int64_t time_ms, int decision,
                                              const struct ant_bytes f[ANT_AUDIT_NFIELDS],
                                              struct ant_buf *out);

/* The verifier in two parts, so that the part of each event that needs no chain state can run
 * on another thread than the chaining (policy/audit.c's live verify). */
struct ant_audit_prepared {
    int status; /* 0; -EDOM unknown decision, -E2BIG a field over the limit, -ENOMEM */
    bool v2;
    size_t canon_off, canon_len; /* the canonical bytes, appended to the caller's buffer */
    uint8_t commit[ANT_AUDIT_HASH_LEN]; /* v2: c_n */
};
/* Checks the decision, appends the canonical bytes to `canon` (their room limited by its max,
 * as the verifier's own buffer is) and, for a v2 event (`salt` not NULL), computes c_n; the
 * outcome goes to out->status and is reported by ant_audit_verifier_prepared in the order a
 * whole ant_audit_verifier_event reports it. Thread-safe with its own `c` and `canon`. */
void ant_audit_event_prepare(EVP_MD_CTX *c, const EVP_MD *md, int64_t seq, int64_t time_ms,
                             int decision, const struct ant_bytes f[ANT_AUDIT_NFIELDS],
                             const uint8_t *salt, struct ant_buf *canon,
                             struct ant_audit_prepared *out);
/* The rest of ant_audit_verifier_event: order, v1/v2 mixing, the prepared outcome, the link
 * (hashed with `c`), the stored `hash` (NULL: none), witnesses. `canon`: the prepared canonical
 * bytes (read for a v1 event only). Same results as ant_audit_verifier_event. */
ANT_MUST_CHECK int ant_audit_verifier_prepared(struct ant_audit_verifier *v, EVP_MD_CTX *c,
                                               int64_t seq, const struct ant_audit_prepared *e,
                                               struct ant_bytes canon, const uint8_t *hash);
/* ant_audit_verifier_checkpoint with the signature checked beforehand: `sig_ok` 1 valid, 0 not,
 * -1 not checked yet (checked here, after the chain checks). */
ANT_MUST_CHECK int ant_audit_verifier_ckpt_checked(struct ant_audit_verifier *v,
                                                   const struct ant_audit_ckpt *c, int sig_ok);

/* The largest canonical encoding the verifier accepts (a longer one is "over the limit"). */
#define ANT_AUDIT_CANON_MAX (64 + 11 * (4 + ANT_AUDIT_FIELD_MAX) + 4 + ANT_AUDIT_DETAIL_MAX)

#endif
