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

#endif
