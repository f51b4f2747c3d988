/* The site catalog in antenna.db (SQLite, WAL): tenants, principals and their roles, API keys,
 * datasets, files, grants, and the policy tables the decision function reads (DESIGN.md §5).
 *
 * Threads: a `struct ant_store` is one SQLite connection; one thread at a time may use it. The
 * HTTP workers take one from a `struct ant_store_pool` (thread-safe) per request.
 * Errors: -EEXIST duplicate, -ENOENT unknown object (or unknown reference), -EINVAL bad value,
 * -EBUSY the database stayed locked past the busy timeout, -ENOSPC disk full, -EROFS read-only,
 * -EBADMSG not an antenna database or corrupt, -ENOTSUP schema newer than this binary, -EIO other
 * SQLite failures, -ENOMEM. Lists are returned as jansson arrays of objects the caller
 * json_decref()s, ready for `-o json` and the HTTP API. */
#ifndef ANT_STORE_H
#define ANT_STORE_H

#include <jansson.h>

#include "crypto/base/base.h"

#define ANT_STORE_CREATE 1u /* create the file (must not exist); else it must exist */

/* Tenant, principal and region names: 1..64 of [A-Za-z0-9._@-], starting alphanumeric. */
#define ANT_NAME_MAX 64
/* Object ids made here: "ds_", "f_", "gr_" + 16 hex; API key ids 16 hex. */
#define ANT_ID_MAX 64
#define ANT_KEY_ID_LEN 16
/* The credential a principal used, as the audit records it: an API key id, "job:<id>",
 * "fed:<site id>", "oidc:<issuer>", or "oidc:sha256:<64 hex>" for an issuer too long to fit.
 * Never cut: two credentials that differ are recorded differently. */
#define ANT_CREDENTIAL_MAX 200
/* "ak_" + id + "_" + 64 hex: the whole API key as handed out once. */
#define ANT_API_KEY_LEN (3 + ANT_KEY_ID_LEN + 1 + 64)
#define ANT_DS_MAX_REGIONS 16
#define ANT_DS_MAX_DUO 16
#define ANT_DUO_CODE_MAX 24
#define ANT_DS_DESC_MAX 4096
#define ANT_PATH_MAX 1024

/* Roles: owner, reader, auditor belong to the principal's tenant; admin is site-wide. The bits
 * match the `roles` table. */
enum {
    ANT_ROLE_OWNER = 1u,
    ANT_ROLE_READER = 2u,
    ANT_ROLE_AUDITOR = 4u,
    ANT_ROLE_ADMIN = 8u,
};

enum ant_principal_kind {
    ANT_PRINCIPAL_USER = 0, /* a local person or service account */
    ANT_PRINCIPAL_SITE = 1, /* a peer site (federation token): `id` is the peer's site id */
};

/* Who is asking, as authentication found them. A value type: copy freely. */
struct ant_principal {
    enum ant_principal_kind kind;
    char id[ANT_NAME_MAX + 1];
    char tenant[ANT_NAME_MAX + 1]; /* "" for a site-wide principal or a peer site */
    unsigned roles;                /* ANT_ROLE_* */
    char site[ANT_NAME_MAX + 1];   /* "" local; else the peer site a federated principal is from */
    char key_id[ANT_CREDENTIAL_MAX + 1]; /* the credential used, for audit: see above */
};

struct ant_store;
struct ant_store_pool;

/* Opens (ANT_STORE_CREATE: creates; the file must not exist) `name` under dirfd (AT_FDCWD for
 * the cwd), runs the migrations still missing (PRAGMA user_version = steps applied), and sets
 * WAL, synchronous=FULL, foreign_keys=ON and a busy timeout. -EEXIST / -ENOENT for the file. */
ANT_MUST_CHECK int ant_store_open(int dirfd, const char *name, unsigned flags,
                                  struct ant_store **out);
void ant_store_close(struct ant_store *st); /* accepts NULL */
/* The schema version this binary migrates to (number of migration steps). */
int ant_store_schema_latest(void);
/* Creates `name` (which must not exist) with only the first `steps` schema steps applied, as a
 * site made by an older antenna holds it, and closes it: for upgrade tests; the next
 * ant_store_open applies the rest. -EINVAL for a step count this binary does not know. */
ANT_MUST_CHECK int ant_store_create_at_step(int dirfd, const char *name, int steps);

/* A fixed-size pool of connections for the HTTP worker threads. acquire blocks until one is
 * free; release gives it back (a connection left inside a transaction is rolled back). */
ANT_MUST_CHECK int ant_store_pool_new(int dirfd, const char *name, unsigned n,
                                      struct ant_store_pool **out);
struct ant_store *ant_store_pool_acquire(struct ant_store_pool *p);
void ant_store_pool_release(struct ant_store_pool *p, struct ant_store *st);
void ant_store_pool_free(struct ant_store_pool *p); /* all connections must be released */

/* Explicit transactions (BEGIN IMMEDIATE) around several calls. */
ANT_MUST_CHECK int ant_store_begin(struct ant_store *st);
ANT_MUST_CHECK int ant_store_commit(struct ant_store *st);
void ant_store_rollback(struct ant_store *st);

/* --- tenants and principals --- */
/* 1-64 of [A-Za-z0-9._@-], starting alphanumeric, and nothing shaped like a credential
 * (ant_audit_looks_secret). */
bool ant_name_is_valid(const char *s);
ANT_MUST_CHECK int ant_store_tenant_add(struct ant_store *st, const char *name);
ANT_MUST_CHECK int ant_store_tenant_list(struct ant_store *st, json_t **out);
/* Role names: "owner", "reader", "auditor", "admin"; -EINVAL otherwise. */
ANT_MUST_CHECK int ant_role_parse(const char *s, unsigned *role);
/* Tenant roles need a tenant (-EINVAL without); admin may have none. -ENOENT unknown tenant. */
ANT_MUST_CHECK int ant_store_principal_add(struct ant_store *st, const char *name,
                                           const char *tenant, unsigned roles);
/* tenant NULL: all; role 0: any. */
ANT_MUST_CHECK int ant_store_principal_list(struct ant_store *st, const char *tenant, unsigned role,
                                            json_t **out);
/* Disables a principal at once: its keys and tokens are rejected from the next request on
 * (there is no cache). -ENOENT unknown; -EALREADY already disabled. */
ANT_MUST_CHECK int ant_store_principal_disable(struct ant_store *st, const char *name);
/* -ENOENT unknown or disabled. */
ANT_MUST_CHECK int ant_store_principal_get(struct ant_store *st, const char *name,
                                           struct ant_principal *out);

/* A principal's own Crypt4GH (X25519) public key, which downloads are re-encrypted for when a
 * request names no recipient. NULL clears it. -ENOENT unknown or disabled principal. */
ANT_MUST_CHECK int ant_store_principal_set_pubkey(struct ant_store *st, const char *name,
                                                  const uint8_t pub[32]);
/* -ENOENT unknown principal, -ENODATA none registered. */
ANT_MUST_CHECK int ant_store_principal_pubkey(struct ant_store *st, const char *name,
                                              uint8_t pub[32]);

/* Creates tenant-less principal `name` with role admin and an API key (no expiry); appends
 * "ak_<id>_<secret>" to key_out (which must not need to grow past its max: -E2BIG). */
ANT_MUST_CHECK int ant_store_bootstrap_admin(struct ant_store *st, const char *name,
                                             struct ant_buf *key_out);

/* --- API keys "ak_<id>_<secret>": only a salted SHA-256 of the secret is stored --- */
/* ttl_s 0: never expires. Appends the key to key_out (shown once); key_id receives the id. */
ANT_MUST_CHECK int ant_store_key_create(struct ant_store *st, const char *principal, int64_t ttl_s,
                                        struct ant_buf *key_out, char key_id[ANT_KEY_ID_LEN + 1]);
/* Takes effect for the next authentication on any connection (there is no cache).
 * -ENOENT unknown key; -EALREADY already revoked. */
ANT_MUST_CHECK int ant_store_key_revoke(struct ant_store *st, const char *key_id);
/* principal NULL: all keys. Never includes hashes. */
ANT_MUST_CHECK int ant_store_key_list(struct ant_store *st, const char *principal, json_t **out);
/* Maps a presented key to its principal. Unknown, malformed, revoked and expired keys, keys of a
 * disabled principal: all -EKEYREJECTED with the same work done (the hash is always computed
 * and compared in constant time). `now` in unix seconds. */
ANT_MUST_CHECK int ant_store_authenticate_key(struct ant_store *st, struct ant_bytes key,
                                              int64_t now, struct ant_principal *out);
/* The message every rejected credential gets, whatever the reason. */
#define ANT_AUTH_REJECTED_MSG "invalid credentials"

/* --- datasets and files --- */

/* A GA4GH DUO code as the ontology writes it: "DUO:" and 7 digits. */
bool ant_duo_code_is_valid(const char *s);
enum ant_ds_state { ANT_DS_DRAFT = 0, ANT_DS_PUBLISHED = 1, ANT_DS_WITHDRAWN = 2 };
enum ant_ds_class { ANT_DS_OPEN = 0, ANT_DS_INTERNAL = 1, ANT_DS_SENSITIVE = 2 };

struct ant_dataset {
    char id[ANT_ID_MAX + 1];
    char tenant[ANT_NAME_MAX + 1];
    char name[ANT_NAME_MAX + 1];
    enum ant_ds_state state;
    enum ant_ds_class classification;
    unsigned nregions;
    char regions[ANT_DS_MAX_REGIONS][ANT_NAME_MAX + 1]; /* where it may go; none: nowhere */
    unsigned nduo;
    char duo[ANT_DS_MAX_DUO][ANT_DUO_CODE_MAX + 1]; /* GA4GH DUO codes, "DUO:0000006" */
    bool has_manifest;
    uint8_t manifest_sha256[32];
};

/* What a new dataset is made from; description may be NULL. */
struct ant_dataset_spec {
    const char *tenant;
    const char *name;
    const char *description;
    enum ant_ds_class classification;
    const char *const *regions;
    unsigned nregions;
    const char *const *duo; /* each must be a known DUO term (-EINVAL) */
    unsigned nduo;
};

const char *ant_ds_state_name(enum ant_ds_state s);
ANT_MUST_CHECK int ant_ds_state_parse(const char *s, enum ant_ds_state *out);
const char *ant_ds_class_name(enum ant_ds_class c);
ANT_MUST_CHECK int ant_ds_class_parse(const char *s, enum ant_ds_class *out);

ANT_MUST_CHECK int ant_store_dataset_create(struct ant_store *st,
                                            const struct ant_dataset_spec *spec,
                                            char id_out[ANT_ID_MAX + 1]);
ANT_MUST_CHECK int ant_store_dataset_get(struct ant_store *st, const char *id,
                                         struct ant_dataset *out);
/* draft -> published (manifest hash required) -> withdrawn; other moves -EINVAL. */
ANT_MUST_CHECK int ant_store_dataset_publish(struct ant_store *st, const char *id,
                                             const uint8_t manifest_sha256[32]);
ANT_MUST_CHECK int ant_store_dataset_withdraw(struct ant_store *st, const char *id);
/* tenant NULL: all datasets (admin listing; drafts included). Objects: id, tenant, name,
 * description, state, classification, manifest_sha256 (hex or null), created, published_at,
 * withdrawn_at, files, bytes, regions [], duo []. */
ANT_MUST_CHECK int ant_store_dataset_list(struct ant_store *st, const char *tenant, json_t **out);
/* The datasets `p` may describe (the same rule as ant_decide's describe, in one query): its own
 * tenant's in any state; others' published or withdrawn ones that are `open`, or that a live
 * grant names p, its tenant or its site in; for an admin all but drafts. For GET /v1/datasets. */
ANT_MUST_CHECK int ant_store_dataset_list_visible(struct ant_store *st,
                                                  const struct ant_principal *p, int64_t now,
                                                  json_t **out);
/* One dataset as an object of the list's shape; -ENOENT. Check ant_decide(DESCRIBE) first. */
ANT_MUST_CHECK int ant_store_dataset_show(struct ant_store *st, const char *id, json_t **out);

struct ant_file_spec {
    const char *dataset_id;
    const char *path; /* logical path inside the dataset */
    uint64_t size;
    uint8_t sha256_plain[32];
    uint8_t sha256_c4gh[32];
};
struct ant_file {
    char id[ANT_ID_MAX + 1];
    char path[ANT_PATH_MAX + 1];
    char storage_id[ANT_ID_MAX + 1]; /* the archive name: archive/<dataset-id>/<storage_id>.c4gh */
    uint64_t size;
    uint8_t sha256_plain[32];
    uint8_t sha256_c4gh[32];
};
/* A logical path: relative, '/'-separated, no empty / "." / ".." component, no control byte or
 * backslash, at most ANT_PATH_MAX bytes, nothing the audit log refuses as a credential (a PEM
 * marker, an API key, a JWT, "Bearer " and a token: ant_audit_looks_secret). */
bool ant_path_is_valid(const char *path);
/* Files of a dataset are written out as one POSIX tree (antenna get, staging, federation), so
 * no file may sit where another needs a folder: "a" and "a/b" cannot both be files ("a/b" and
 * "a/bc" can). Paths are byte strings, compared exactly (no case folding).
 * ant_paths_find_conflict finds two of the n paths that one tree cannot hold as files: the same
 * path twice, or a path and one beneath it. 0: none; -EEXIST: paths[*first] is the same as or
 * a parent folder of paths[*second]; -ENOMEM. For lists received whole (a peer's manifest). */
ANT_MUST_CHECK int ant_paths_find_conflict(const char *const *paths, size_t n, size_t *first,
                                           size_t *second);
/* Whether `path` may be added to dataset_id's files: 0 if so; -EEXIST the dataset has it;
 * -ENOTDIR one of its parent folders is a file of the dataset ("a" when adding "a/b");
 * -EISDIR files of the dataset lie beneath it ("a/b" when adding "a"); -EINVAL a bad path.
 * On -EEXIST/-ENOTDIR/-EISDIR conflict_out (ANT_PATH_MAX + 1 bytes, or NULL) gets the existing
 * path. Inside a transaction (ant_store_begin) the answer holds until it ends. */
ANT_MUST_CHECK int ant_store_file_conflict(struct ant_store *st, const char *dataset_id,
                                           const char *path, char *conflict_out);
/* Only into a draft (-EINVAL otherwise, or for a bad path); -ENOENT unknown dataset; -EEXIST
 * the path is already there; -ENOTDIR / -EISDIR it conflicts with a file of the dataset as
 * ant_store_file_conflict says, checked in the transaction that inserts the row (the caller's,
 * or its own): two concurrent adds of "a" and "a/b" cannot both succeed. Whoever wants the
 * conflicting path calls ant_store_file_conflict before ending its transaction. id_out doubles
 * as the storage id. */
ANT_MUST_CHECK int ant_store_file_add(struct ant_store *st, const struct ant_file_spec *spec,
                                      char id_out[ANT_ID_MAX + 1]);
/* Objects: id, dataset_id, path, size, sha256, sha256_c4gh, storage_id, created; by path. */
ANT_MUST_CHECK int ant_store_file_list(struct ant_store *st, const char *dataset_id, json_t **out);
/* One file of a dataset, by logical path or by file id; -ENOENT. */
ANT_MUST_CHECK int ant_store_file_get(struct ant_store *st, const char *dataset_id,
                                      const char *path_or_id, struct ant_file *out);

/* --- grants --- */
enum ant_grantee_kind { ANT_GRANTEE_PRINCIPAL = 0, ANT_GRANTEE_TENANT = 1, ANT_GRANTEE_SITE = 2 };

/* Actions; the bits match the `actions` table. read, stage and transfer are grantable. */
enum ant_action {
    ANT_ACT_DESCRIBE = 1u << 0, /* see that the dataset exists, its metadata and file list */
    ANT_ACT_READ = 1u << 1,     /* download its files */
    ANT_ACT_STAGE = 1u << 2,    /* stage into this site's scratch */
    ANT_ACT_TRANSFER = 1u << 3, /* send to a peer site */
    ANT_ACT_WRITE = 1u << 4,    /* add files to a draft */
    ANT_ACT_PUBLISH = 1u << 5,
    ANT_ACT_WITHDRAW = 1u << 6,
    ANT_ACT_GRANT = 1u << 7, /* create or revoke grants on it */
    ANT_ACT_AUDIT = 1u << 8, /* query the audit log of a tenant */
    ANT_ACT_ADMIN = 1u << 9, /* tenants, principals, keys, peers */
};
#define ANT_ACT_GRANTABLE (ANT_ACT_READ | ANT_ACT_STAGE | ANT_ACT_TRANSFER)
const char *ant_action_name(unsigned act); /* one bit */
ANT_MUST_CHECK int ant_action_parse(const char *s, unsigned *act);
/* "read,stage" -> bits; -EINVAL on an unknown or non-grantable word. */
ANT_MUST_CHECK int ant_actions_parse_list(const char *s, unsigned *acts);

struct ant_grant_spec {
    const char *dataset_id;
    enum ant_grantee_kind grantee_kind;
    const char *grantee_id;
    unsigned actions;    /* subset of ANT_ACT_GRANTABLE */
    const char *purpose; /* DUO code or NULL: any purpose */
    int64_t not_before;  /* unix s; 0: now */
    int64_t expires;     /* unix s; 0: never */
    const char *created_by;
};
ANT_MUST_CHECK int ant_store_grant_create(struct ant_store *st, const struct ant_grant_spec *spec,
                                          char id_out[ANT_ID_MAX + 1]);
/* -ENOENT unknown; -EALREADY revoked before. */
ANT_MUST_CHECK int ant_store_grant_revoke(struct ant_store *st, const char *grant_id, int64_t now);
/* dataset NULL: all grants. Objects: id, dataset_id, tenant (the dataset's), grantee_kind,
 * grantee_id, actions [], purpose, not_before, expires, revoked_at, created_by, created, state
 * (active, pending, expired, revoked). */
ANT_MUST_CHECK int ant_store_grant_list(struct ant_store *st, const char *dataset_id, json_t **out);
/* The grants on all datasets of one tenant. */
ANT_MUST_CHECK int ant_store_grant_list_tenant(struct ant_store *st, const char *tenant,
                                               json_t **out);
/* One grant; -ENOENT. Its "tenant" and "dataset_id" are what to authorize against
 * (ant_decide(ANT_ACT_GRANT) on the dataset) before revoking it. */
ANT_MUST_CHECK int ant_store_grant_show(struct ant_store *st, const char *grant_id, json_t **out);
const char *ant_grantee_kind_name(enum ant_grantee_kind k);
ANT_MUST_CHECK int ant_grantee_kind_parse(const char *s, enum ant_grantee_kind *out);

/* --- OIDC issuers: claims of a verified token map to a principal --- */
struct ant_oidc_issuer {
    const char *issuer;
    const char *jwks_path;       /* a JWKS file, relative to the site folder or absolute */
    const char *audience;
    const char *principal_claim; /* e.g. "sub" or "preferred_username" */
    const char *tenant_claim;    /* NULL: the principal must already exist */
};
ANT_MUST_CHECK int ant_store_oidc_issuer_add(struct ant_store *st, const struct ant_oidc_issuer *i);
ANT_MUST_CHECK int ant_store_oidc_issuer_list(struct ant_store *st, json_t **out);
/* Removes the issuer's row: its tokens stop authenticating (a running daemon checks the row at
 * every token it has not cached: within a second). -ENOENT if there is none. */
ANT_MUST_CHECK int ant_store_oidc_issuer_remove(struct ant_store *st, const char *issuer);
/* The principal a verified token's claims name: claims must hold principal_claim (a valid name)
 * and, if tenant_claim is set, a tenant equal to the principal's. Unknown principal, disabled,
 * tenant mismatch: -EKEYREJECTED. `claims` is the token's verified payload, verified for the
 * issuer with `audience` and the keys of `jwks_path`: -ESTALE if the issuer's row is gone or now
 * names another audience or JWKS file (the caller's copy of the issuer is out of date). */
ANT_MUST_CHECK int ant_store_oidc_principal(struct ant_store *st, const char *issuer,
                                            const char *audience, const char *jwks_path,
                                            const json_t *claims, struct ant_principal *out);

#endif
