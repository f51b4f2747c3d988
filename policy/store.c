/* antenna.db: opening, migrations, the connection pool, tenants, principals and API keys. */
#include "policy/policy_internal.h"

#include "policy/audit.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/base/log.h"

/* The schema, one step per entry; PRAGMA user_version counts the steps applied. Later work
 * appends steps (peers, stage jobs): never edit a step that has shipped. */
static const char *const g_migrations[] = {
    /* 1: the catalog and the policy tables */
    "CREATE TABLE tenants("
    "  id TEXT PRIMARY KEY,"
    "  created INTEGER NOT NULL);"
    /* Rules as data: role and action names and bits, and which role may do what. */
    "CREATE TABLE roles("
    "  name TEXT PRIMARY KEY,"
    "  bit INTEGER NOT NULL UNIQUE,"
    "  site_wide INTEGER NOT NULL);"
    "INSERT INTO roles VALUES('owner',1,0),('reader',2,0),('auditor',4,0),('admin',8,1);"
    "CREATE TABLE actions("
    "  name TEXT PRIMARY KEY,"
    "  bit INTEGER NOT NULL UNIQUE,"
    "  grantable INTEGER NOT NULL);"
    "INSERT INTO actions VALUES('describe',1,0),('read',2,1),('stage',4,1),('transfer',8,1),"
    "  ('write',16,0),('publish',32,0),('withdraw',64,0),('grant',128,0),('audit',256,0),"
    "  ('admin',512,0);"
    /* scope own_tenant: on the principal's own tenant's objects; site: on any tenant's. */
    "CREATE TABLE role_actions("
    "  role TEXT NOT NULL REFERENCES roles(name),"
    "  action TEXT NOT NULL REFERENCES actions(name),"
    "  scope TEXT NOT NULL CHECK(scope IN ('own_tenant','site')),"
    "  PRIMARY KEY(role, action, scope)) WITHOUT ROWID;"
    "INSERT INTO role_actions VALUES"
    "  ('owner','describe','own_tenant'),('owner','read','own_tenant'),"
    "  ('owner','stage','own_tenant'),('owner','transfer','own_tenant'),"
    "  ('owner','write','own_tenant'),('owner','publish','own_tenant'),"
    "  ('owner','withdraw','own_tenant'),('owner','grant','own_tenant'),"
    "  ('reader','describe','own_tenant'),('reader','read','own_tenant'),"
    "  ('reader','stage','own_tenant'),"
    "  ('auditor','describe','own_tenant'),('auditor','audit','own_tenant'),"
    "  ('admin','describe','site'),('admin','audit','site'),('admin','admin','site');"
    "CREATE TABLE principals("
    "  id TEXT PRIMARY KEY,"
    "  tenant_id TEXT REFERENCES tenants(id),"
    "  roles INTEGER NOT NULL CHECK(roles > 0 AND (roles & ~15) = 0),"
    "  created INTEGER NOT NULL,"
    "  disabled_at INTEGER,"
    "  CHECK((roles & 7) = 0 OR tenant_id IS NOT NULL));"
    "CREATE INDEX principals_tenant ON principals(tenant_id);"
    "CREATE TABLE api_keys("
    "  id TEXT PRIMARY KEY,"
    "  principal_id TEXT NOT NULL REFERENCES principals(id),"
    "  salt BLOB NOT NULL CHECK(length(salt) = 16),"
    "  hash BLOB NOT NULL CHECK(length(hash) = 32),"
    "  created INTEGER NOT NULL,"
    "  last_used INTEGER,"
    "  expires INTEGER,"
    "  revoked_at INTEGER);"
    "CREATE INDEX api_keys_principal ON api_keys(principal_id);"
    "CREATE TABLE datasets("
    "  id TEXT PRIMARY KEY,"
    "  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL DEFAULT 'draft' CHECK(state IN ('draft','published','withdrawn')),"
    "  classification TEXT NOT NULL CHECK(classification IN ('open','internal','sensitive')),"
    "  manifest_sha256 BLOB CHECK(manifest_sha256 IS NULL OR length(manifest_sha256) = 32),"
    "  created INTEGER NOT NULL,"
    "  published_at INTEGER,"
    "  withdrawn_at INTEGER,"
    "  UNIQUE(tenant_id, name));"
    "CREATE TABLE dataset_regions("
    "  dataset_id TEXT NOT NULL REFERENCES datasets(id),"
    "  region TEXT NOT NULL,"
    "  PRIMARY KEY(dataset_id, region)) WITHOUT ROWID;"
    /* GA4GH Data Use Ontology terms antenna knows. */
    "CREATE TABLE duo_terms("
    "  code TEXT PRIMARY KEY,"
    "  shorthand TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK(kind IN ('permission','modifier')),"
    "  label TEXT NOT NULL);"
    "INSERT INTO duo_terms VALUES"
    "  ('DUO:0000004','NRES','permission','no restriction'),"
    "  ('DUO:0000042','GRU','permission','general research use'),"
    "  ('DUO:0000006','HMB','permission','health or medical or biomedical research'),"
    "  ('DUO:0000007','DS','permission','disease specific research'),"
    "  ('DUO:0000011','POA','permission','population origins or ancestry research only'),"
    "  ('DUO:0000015','NMDS','modifier','no general methods research'),"
    "  ('DUO:0000016','GSO','modifier','genetic studies only'),"
    "  ('DUO:0000018','NPUNCU','modifier','not for profit, non commercial use only'),"
    "  ('DUO:0000019','PUB','modifier','publication required'),"
    "  ('DUO:0000020','COL','modifier','collaboration required'),"
    "  ('DUO:0000021','IRB','modifier','ethics approval required'),"
    "  ('DUO:0000022','GS','modifier','geographical restriction'),"
    "  ('DUO:0000046','NCU','modifier','non-commercial use only');"
    /* Which stated purpose (a permission term) satisfies which condition. A condition with no
     * row here is an obligation a machine cannot check (PUB, COL, IRB, ...): not decided on. */
    "CREATE TABLE duo_purpose("
    "  condition TEXT NOT NULL REFERENCES duo_terms(code),"
    "  purpose TEXT NOT NULL REFERENCES duo_terms(code),"
    "  PRIMARY KEY(condition, purpose)) WITHOUT ROWID;"
    "INSERT INTO duo_purpose VALUES"
    "  ('DUO:0000004','DUO:0000042'),('DUO:0000004','DUO:0000006'),"
    "  ('DUO:0000004','DUO:0000007'),('DUO:0000004','DUO:0000011'),"
    "  ('DUO:0000042','DUO:0000042'),('DUO:0000042','DUO:0000006'),"
    "  ('DUO:0000042','DUO:0000007'),('DUO:0000042','DUO:0000011'),"
    "  ('DUO:0000006','DUO:0000006'),('DUO:0000006','DUO:0000007'),"
    "  ('DUO:0000007','DUO:0000007'),"
    "  ('DUO:0000011','DUO:0000011'),"
    "  ('DUO:0000015','DUO:0000006'),('DUO:0000015','DUO:0000007'),"
    "  ('DUO:0000015','DUO:0000011');"
    "CREATE TABLE dataset_duo("
    "  dataset_id TEXT NOT NULL REFERENCES datasets(id),"
    "  code TEXT NOT NULL REFERENCES duo_terms(code),"
    "  PRIMARY KEY(dataset_id, code)) WITHOUT ROWID;"
    "CREATE TABLE files("
    "  id TEXT PRIMARY KEY,"
    "  dataset_id TEXT NOT NULL REFERENCES datasets(id),"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL CHECK(size >= 0),"
    "  sha256_plain BLOB NOT NULL CHECK(length(sha256_plain) = 32),"
    "  sha256_c4gh BLOB NOT NULL CHECK(length(sha256_c4gh) = 32),"
    "  storage_id TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(dataset_id, path));"
    "CREATE TABLE grants("
    "  id TEXT PRIMARY KEY,"
    "  dataset_id TEXT NOT NULL REFERENCES datasets(id),"
    "  grantee_kind TEXT NOT NULL CHECK(grantee_kind IN ('principal','tenant','site')),"
    "  grantee_id TEXT NOT NULL,"
    "  actions INTEGER NOT NULL CHECK(actions > 0 AND (actions & ~14) = 0),"
    "  purpose TEXT REFERENCES duo_terms(code),"
    "  not_before INTEGER NOT NULL,"
    "  expires INTEGER,"
    "  revoked_at INTEGER,"
    "  created_by TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX grants_lookup ON grants(dataset_id, grantee_kind, grantee_id);"
    "CREATE INDEX grants_grantee ON grants(grantee_kind, grantee_id);"
    "CREATE TABLE oidc_issuers("
    "  issuer TEXT PRIMARY KEY,"
    "  jwks_path TEXT NOT NULL,"
    "  audience TEXT NOT NULL,"
    "  principal_claim TEXT NOT NULL,"
    "  tenant_claim TEXT);",
    /* 2: what a classification allows, as data: whether any authenticated principal may see a
     * published dataset exists (catalogue discovery), and whether its plaintext may leave this
     * site's scratch (DESIGN.md §5: `sensitive` never leaves the site decrypted). */
    "CREATE TABLE classification_rules("
    "  classification TEXT PRIMARY KEY CHECK(classification IN ('open','internal','sensitive')),"
    "  public_describe INTEGER NOT NULL,"
    "  plaintext_leaves INTEGER NOT NULL);"
    "INSERT INTO classification_rules VALUES('open',1,1),('internal',0,1),('sensitive',0,0);",
    /* 3: stage jobs (staging/jobs.h), the files of each with their progress (a restarted daemon
     * resumes from the files marked done), and per-tenant scratch quotas overriding the
     * configured default. The file list is fixed at admission, so quota, totals and resume all
     * see the same files even if the catalog changes. */
    "CREATE TABLE stage_jobs("
    "  id TEXT PRIMARY KEY,"
    "  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
    "  principal_id TEXT NOT NULL,"
    "  dataset_id TEXT NOT NULL REFERENCES datasets(id),"
    "  mode TEXT NOT NULL CHECK(mode IN ('decrypt','reencrypt','encrypt')),"
    "  recipient_pk BLOB CHECK(recipient_pk IS NULL OR length(recipient_pk) = 32),"
    "  paths TEXT NOT NULL DEFAULT '[]',"
    /* stage-out (mode encrypt): the folder under the tenant's scratch it reads */
    "  source TEXT,"
    "  state TEXT NOT NULL CHECK(state IN"
    "    ('queued','running','ready','failed','cancelled','expired')),"
    "  error TEXT,"
    "  files_total INTEGER NOT NULL DEFAULT 0,"
    "  files_done INTEGER NOT NULL DEFAULT 0,"
    "  bytes_total INTEGER NOT NULL DEFAULT 0,"
    "  bytes_done INTEGER NOT NULL DEFAULT 0,"
    "  scratch_bytes INTEGER NOT NULL DEFAULT 0,"
    "  ttl_s INTEGER NOT NULL CHECK(ttl_s > 0),"
    "  created INTEGER NOT NULL,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  expires INTEGER NOT NULL,"
    "  purged INTEGER);"
    "CREATE INDEX stage_jobs_tenant ON stage_jobs(tenant_id, state);"
    "CREATE INDEX stage_jobs_state ON stage_jobs(state, expires);"
    "CREATE TABLE stage_job_files("
    "  job_id TEXT NOT NULL REFERENCES stage_jobs(id),"
    "  idx INTEGER NOT NULL,"
    "  file_id TEXT NOT NULL,"
    "  storage_id TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL CHECK(size >= 0),"
    /* the digest the copy is checked against: the plaintext's (decrypt) or the encrypted
     * body's (reencrypt: the body is copied unchanged, the header is new) */
    "  sha256 BLOB NOT NULL CHECK(length(sha256) = 32),"
    /* stage-out: the digest of the encrypted body written, for the catalog */
    "  sha256_body BLOB CHECK(sha256_body IS NULL OR length(sha256_body) = 32),"
    "  state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending','done','failed')),"
    "  bytes_done INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  PRIMARY KEY(job_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE scratch_quotas("
    "  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),"
    "  bytes INTEGER NOT NULL CHECK(bytes >= 0));",
    /* 4: federation (policy/peers.h). A peer is trusted only through this row: its keys and
     * TLS anchor are pinned when an admin adds it. fed_jti remembers each federation token's
     * (issuer, jti) until it expires, so a token is accepted once. fed_cache maps a peer's
     * file (by the body digest its signed manifest gives) to the encrypted copy kept here,
     * so staging the same dataset again transfers nothing. */
    "CREATE TABLE peers("
    "  id TEXT PRIMARY KEY,"
    "  url TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  x25519_pk BLOB NOT NULL CHECK(length(x25519_pk) = 32),"
    "  ed25519_pk BLOB NOT NULL CHECK(length(ed25519_pk) = 32),"
    "  tls_anchor TEXT NOT NULL,"
    "  added INTEGER NOT NULL,"
    "  added_by TEXT NOT NULL);"
    "CREATE TABLE fed_jti("
    "  iss TEXT NOT NULL,"
    "  jti TEXT NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  PRIMARY KEY(iss, jti)) WITHOUT ROWID;"
    "CREATE INDEX fed_jti_expires ON fed_jti(expires);"
    "CREATE TABLE fed_cache("
    "  peer_id TEXT NOT NULL,"
    "  dataset_id TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  sha256_c4gh BLOB NOT NULL CHECK(length(sha256_c4gh) = 32),"
    "  size INTEGER NOT NULL CHECK(size >= 0),"
    "  storage TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY(peer_id, dataset_id, path)) WITHOUT ROWID;",
    /* 5: a principal's own Crypt4GH public key, what downloads are re-encrypted for when the
     * request names no recipient */
    ("ALTER TABLE principals ADD COLUMN c4gh_pubkey BLOB"
     "  CHECK(c4gh_pubkey IS NULL OR length(c4gh_pubkey) = 32);"),
    /* 6: stage jobs whose source is a peer's dataset (issue 7 part 4). Such a job names the
     * peer, the peer's dataset (id and name, from its signed manifest) and the transfer id
     * both sites audit under, and has no local dataset: dataset_id loses NOT NULL, and
     * exactly one of dataset_id and peer_id is set. SQLite cannot change a column's
     * constraint in place, so both job tables are rebuilt (the file table first dropped, so
     * that no foreign key points into the old job table when it goes) and renamed back; a
     * rename rewrites the file table's reference to the new job table. Local jobs keep every
     * column as it was. */
    ("CREATE TABLE stage_jobs_v6("
     "  id TEXT PRIMARY KEY,"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     "  principal_id TEXT NOT NULL,"
     "  dataset_id TEXT REFERENCES datasets(id),"
     "  mode TEXT NOT NULL CHECK(mode IN ('decrypt','reencrypt','encrypt')),"
     "  recipient_pk BLOB CHECK(recipient_pk IS NULL OR length(recipient_pk) = 32),"
     "  paths TEXT NOT NULL DEFAULT '[]',"
     "  source TEXT,"
     "  state TEXT NOT NULL CHECK(state IN"
     "    ('queued','running','ready','failed','cancelled','expired')),"
     "  error TEXT,"
     "  files_total INTEGER NOT NULL DEFAULT 0,"
     "  files_done INTEGER NOT NULL DEFAULT 0,"
     "  bytes_total INTEGER NOT NULL DEFAULT 0,"
     "  bytes_done INTEGER NOT NULL DEFAULT 0,"
     "  scratch_bytes INTEGER NOT NULL DEFAULT 0,"
     "  ttl_s INTEGER NOT NULL CHECK(ttl_s > 0),"
     "  created INTEGER NOT NULL,"
     "  started INTEGER,"
     "  finished INTEGER,"
     "  expires INTEGER NOT NULL,"
     "  purged INTEGER,"
     /* a remote job: no foreign key to peers, so that removing a peer keeps its jobs' history */
     "  peer_id TEXT,"
     "  remote_dataset TEXT,"
     "  remote_name TEXT,"
     "  transfer_id TEXT,"
     "  purpose TEXT,"
     "  CHECK((dataset_id IS NULL) <> (peer_id IS NULL)),"
     "  CHECK(peer_id IS NULL OR (remote_dataset IS NOT NULL AND transfer_id IS NOT NULL"
     "    AND mode <> 'encrypt')));"
     "INSERT INTO stage_jobs_v6(id, tenant_id, principal_id, dataset_id, mode, recipient_pk,"
     "  paths, source, state, error, files_total, files_done, bytes_total, bytes_done,"
     "  scratch_bytes, ttl_s, created, started, finished, expires, purged)"
     " SELECT id, tenant_id, principal_id, dataset_id, mode, recipient_pk, paths, source, state,"
     "  error, files_total, files_done, bytes_total, bytes_done, scratch_bytes, ttl_s, created,"
     "  started, finished, expires, purged FROM stage_jobs;"
     "CREATE TABLE stage_job_files_v6("
     "  job_id TEXT NOT NULL REFERENCES stage_jobs_v6(id),"
     "  idx INTEGER NOT NULL,"
     "  file_id TEXT NOT NULL,"
     "  storage_id TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  size INTEGER NOT NULL CHECK(size >= 0),"
     "  sha256 BLOB NOT NULL CHECK(length(sha256) = 32),"
     "  sha256_body BLOB CHECK(sha256_body IS NULL OR length(sha256_body) = 32),"
     "  state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending','done','failed')),"
     "  bytes_done INTEGER NOT NULL DEFAULT 0,"
     "  error TEXT,"
     "  PRIMARY KEY(job_id, idx)) WITHOUT ROWID;"
     "INSERT INTO stage_job_files_v6 SELECT job_id, idx, file_id, storage_id, path, size,"
     "  sha256, sha256_body, state, bytes_done, error FROM stage_job_files;"
     "DROP TABLE stage_job_files;"
     "DROP TABLE stage_jobs;"
     "ALTER TABLE stage_jobs_v6 RENAME TO stage_jobs;"
     "ALTER TABLE stage_job_files_v6 RENAME TO stage_job_files;"
     "CREATE INDEX stage_jobs_tenant ON stage_jobs(tenant_id, state);"
     "CREATE INDEX stage_jobs_state ON stage_jobs(state, expires);"),
    /* 7: eviction of the federation cache ([federation] cache_max, ant_fed_cache_evict): when
     * each copy was last looked up or written (unix s, as `created`), least recently used
     * first. Rows from before this step count as used when they were created: the oldest
     * copies are the first to go. */
    ("ALTER TABLE fed_cache ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;"
     "UPDATE fed_cache SET last_used = created;"
     "CREATE INDEX fed_cache_lru ON fed_cache(last_used);"),
    /* 8: resume inside a big file (docs/staging.md, "Resume"): how many bytes of a pending
     * file's partial copy the engine has made durable (fdatasync) and reported, so that a
     * restarted job continues it from there rather than from its start; 0: none. */
    ("ALTER TABLE stage_job_files ADD COLUMN resume_bytes INTEGER NOT NULL DEFAULT 0"
     "  CHECK(resume_bytes >= 0);"),
    /* 9: peers' audit checkpoints as this site saw them (ant_peer_witness_record), append-only
     * evidence for the peers' auditors: no reference to peers, since a removed peer's record
     * stays; two rows at one seq are an equivocation kept on purpose. */
    ("CREATE TABLE peer_witness("
     "  peer TEXT NOT NULL,"
     "  seq INTEGER NOT NULL CHECK(seq >= 1),"
     "  hash BLOB NOT NULL CHECK(length(hash) = 32),"
     "  time_ms INTEGER NOT NULL CHECK(time_ms >= 0),"
     "  prev_seq INTEGER NOT NULL CHECK(prev_seq >= 0),"
     "  sig BLOB NOT NULL CHECK(length(sig) = 64),"
     "  seen_ms INTEGER NOT NULL,"
     "  PRIMARY KEY(peer, seq, hash)) WITHOUT ROWID;"
     "CREATE TRIGGER peer_witness_no_update BEFORE UPDATE ON peer_witness"
     "  BEGIN SELECT RAISE(ABORT, 'peer_witness is append-only'); END;"
     "CREATE TRIGGER peer_witness_no_delete BEFORE DELETE ON peer_witness"
     "  BEGIN SELECT RAISE(ABORT, 'peer_witness is append-only'); END;"),
    /* 10: a peer's rollbacks as this site saw them (ant_peer_witness_record): the peer served
     * checkpoint (seq, hash) as its latest after `highest` had been recorded. peer_witness has
     * one row per (seq, hash), so a rollback to a checkpoint recorded before would leave no
     * trace there; a row here per (checkpoint, highest) does. The checkpoint itself, signed by
     * the peer, is its row in peer_witness (the witness file stays the export's checkpoint
     * lines); append-only like it. */
    ("CREATE TABLE peer_witness_rollback("
     "  peer TEXT NOT NULL,"
     "  seq INTEGER NOT NULL,"
     "  hash BLOB NOT NULL,"
     "  highest INTEGER NOT NULL CHECK(highest > seq),"
     "  seen_ms INTEGER NOT NULL,"
     "  PRIMARY KEY(peer, seq, hash, highest),"
     "  FOREIGN KEY(peer, seq, hash) REFERENCES peer_witness(peer, seq, hash)) WITHOUT ROWID;"
     "CREATE TRIGGER peer_witness_rollback_no_update BEFORE UPDATE ON peer_witness_rollback"
     "  BEGIN SELECT RAISE(ABORT, 'peer_witness_rollback is append-only'); END;"
     "CREATE TRIGGER peer_witness_rollback_no_delete BEFORE DELETE ON peer_witness_rollback"
     "  BEGIN SELECT RAISE(ABORT, 'peer_witness_rollback is append-only'); END;"),
};

int ant_store_schema_latest(void)
{
    return (int)ANT_ARRAY_LEN(g_migrations);
}

int ant_sqlite_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
            return -EEXIST;
        }
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
            return -ENOENT;
        }
        if (rc == SQLITE_CONSTRAINT_TRIGGER) {
            return -EPERM;
        }
        return -EINVAL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_TOOBIG:
        return -E2BIG;
    default:
        return -EIO;
    }
}

int ant_sqlite_open_at(int dirfd, const char *name, bool create, bool readonly, sqlite3 **out)
{
    char path[4096];
    sqlite3 *db = NULL;
    int n;
    int rc = 0;
    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    if (name[0] == '/' || dirfd == AT_FDCWD) {
        n = snprintf(path, sizeof(path), "%s", name);
    } else {
        /* SQLite takes a path (and names the -wal and -shm files after it): the folder's real
         * path, read back from the fd, so SQLITE_OPEN_NOFOLLOW can refuse a symlinked file. */
        char link[64], dir[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        ssize_t dl = readlink(link, dir, sizeof(dir) - 1);
        if (dl <= 0) {
            return dl < 0 ? -errno : -EINVAL;
        }
        dir[dl] = '\0';
        n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    }
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return -ENAMETOOLONG;
    }
    if (create) {
        int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            return -errno;
        }
        ant_close(fd);
    } else {
        struct stat sb;
        if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            return -errno;
        }
        if (!S_ISREG(sb.st_mode)) {
            return -EINVAL;
        }
    }
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                SQLITE_OPEN_NOFOLLOW;
    int src = sqlite3_open_v2(path, &db, flags, NULL);
    if (src != SQLITE_OK) {
        rc = ant_sqlite_err(src);
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    *out = db;
    db = NULL;
out:
    sqlite3_close(db);
    return rc;
}

sqlite3_stmt *ant_store_stmt(struct ant_store *st, const char *sql)
{
    for (unsigned i = 0; i < st->nstmt; i++) {
        if (st->stmts[i].sql == sql) {
            sqlite3_reset(st->stmts[i].stmt);
            sqlite3_clear_bindings(st->stmts[i].stmt);
            return st->stmts[i].stmt;
        }
    }
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "store.prepare", "%s", sqlite3_errmsg(st->db));
        return NULL;
    }
    if (st->nstmt < STORE_STMT_MAX) {
        st->stmts[st->nstmt].sql = sql;
        st->stmts[st->nstmt].stmt = s;
        st->nstmt++;
    } else {
        /* The cache is sized for every statement of policy/; reaching here is a bug. */
        ant_log(ANT_LOG_ERROR, "store.stmt_cache_full", "statement cache full");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

int ant_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v == NULL) {
        return sqlite3_bind_null(s, i);
    }
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

int ant_col_copy(sqlite3_stmt *s, int i, char *dst, size_t n)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t len = (size_t)sqlite3_column_bytes(s, i);
    if (t == NULL) {
        dst[0] = '\0';
        return 0;
    }
    if (len >= n) {
        dst[0] = '\0';
        return -E2BIG;
    }
    memcpy(dst, t, len);
    dst[len] = '\0';
    return 0;
}

int ant_store_exec_stmt(sqlite3_stmt *s)
{
    int src = sqlite3_step(s);
    int rc = (src == SQLITE_DONE || src == SQLITE_ROW) ? 0 : ant_sqlite_err(src);
    sqlite3_reset(s);
    return rc;
}

void ant_random_id(const char *prefix, char *out, size_t n)
{
    uint8_t r[8];
    char hex[17];
    randombytes_buf(r, sizeof(r));
    ant_hex_encode(r, sizeof(r), hex);
    snprintf(out, n, "%s%s", prefix, hex);
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int src = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "store.sql", "%s", err ? err : sqlite3_errstr(src));
    }
    sqlite3_free(err);
    return ant_sqlite_err(src);
}

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(s);
    }
    int rc = src == SQLITE_ROW ? 0 : ant_sqlite_err(src);
    if (rc == 0) {
        *v = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    return rc;
}

/* Each step runs in its own BEGIN IMMEDIATE transaction together with the new user_version, so
 * two processes opening the same file at once apply it once, and a crash leaves no half step.
 * `target` is the number of steps wanted: ant_store_schema_latest() but for upgrade tests. */
static int migrate(sqlite3 *db, int target)
{
    int v = 0;
    int rc = user_version(db, &v);
    if (rc < 0) {
        return rc;
    }
    if (v > ant_store_schema_latest()) {
        ant_log(ANT_LOG_ERROR, "store.schema_newer", "schema version %d, this binary knows %d", v,
                ant_store_schema_latest());
        return -ENOTSUP;
    }
    while (v < target) {
        char setv[64];
        rc = exec_sql(db, "BEGIN IMMEDIATE");
        if (rc < 0) {
            return rc;
        }
        rc = user_version(db, &v);
        if (rc == 0 && v < target) {
            rc = exec_sql(db, g_migrations[v]);
            snprintf(setv, sizeof(setv), "PRAGMA user_version = %d", v + 1);
            rc = rc < 0 ? rc : exec_sql(db, setv);
        }
        rc = rc < 0 ? rc : exec_sql(db, "COMMIT");
        if (rc < 0) {
            (void)exec_sql(db, "ROLLBACK");
            return rc;
        }
        if (v < target) {
            ant_log(ANT_LOG_INFO, "store.migrated", "schema step %d applied", v + 1);
        }
        rc = user_version(db, &v);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Switching a new file to WAL takes a write lock from inside the pragma's own read
 * transaction, where SQLite does not call the busy handler (it could deadlock): a second
 * process opening the same new file at that moment gets SQLITE_BUSY at once. It is retried
 * for as long as the busy timeout would have waited. */
static int set_wal(sqlite3 *db)
{
    int rc = -EBUSY;
    for (int tries = 0; rc == -EBUSY && tries < 1000; tries++) {
        if (tries > 0) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        sqlite3_stmt *s = NULL;
        int src = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
        if (src == SQLITE_OK) {
            src = sqlite3_step(s);
        }
        rc = src == SQLITE_ROW ? 0 : ant_sqlite_err(src);
        if (rc == 0 && sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), "wal") != 0) {
            /* the file system offers no shared memory: readers then wait for the writer */
            ant_log(ANT_LOG_WARN, "store.wal", "the database stays in %s journal mode",
                    (const char *)sqlite3_column_text(s, 0));
        }
        sqlite3_finalize(s);
    }
    if (rc < 0) {
        ant_log(ANT_LOG_ERROR, "store.wal", "cannot switch the database to WAL: %s",
                strerror(-rc));
    }
    return rc;
}

static int store_open(int dirfd, const char *name, unsigned flags, int target,
                      struct ant_store **out)
{
    struct ant_store *st = calloc(1, sizeof(*st));
    int rc = st == NULL ? -ENOMEM : 0;
    if (rc < 0) {
        goto out;
    }
    rc = ant_sqlite_open_at(dirfd, name, (flags & ANT_STORE_CREATE) != 0, false, &st->db);
    if (rc < 0) {
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* WAL lets readers run beside the one writer; FULL syncs the WAL at each commit, so a grant
     * revoked or a key revoked survives a power cut. Catalog writes are rare: the cost is small. */
    /* mmap: the connections of the pool read the catalog from the one shared page cache
     * instead of each a pread and a copy into its own 2 MB cache (+15-40% decisions/s at 1M
     * grants, measured A/B). */
    rc = set_wal(st->db);
    rc = rc < 0 ? rc
                : exec_sql(st->db, "PRAGMA synchronous=FULL;"
                                   "PRAGMA foreign_keys=ON; PRAGMA trusted_schema=OFF;"
                                   "PRAGMA mmap_size=1073741824;");
    rc = rc < 0 ? rc : migrate(st->db, target);
    if (rc < 0) {
        goto out;
    }
    *out = st;
    st = NULL;
out:
    ant_store_close(st);
    return rc;
}

int ant_store_open(int dirfd, const char *name, unsigned flags, struct ant_store **out)
{
    return store_open(dirfd, name, flags, ant_store_schema_latest(), out);
}

int ant_store_create_at_step(int dirfd, const char *name, int steps)
{
    struct ant_store *st = NULL;
    if (steps < 0 || steps > ant_store_schema_latest()) {
        return -EINVAL;
    }
    int rc = store_open(dirfd, name, ANT_STORE_CREATE, steps, &st);
    ant_store_close(st);
    return rc;
}

void ant_store_close(struct ant_store *st)
{
    if (st == NULL) {
        return;
    }
    for (unsigned i = 0; i < st->nstmt; i++) {
        sqlite3_finalize(st->stmts[i].stmt);
    }
    sqlite3_close(st->db);
    free(st);
}

int ant_store_begin(struct ant_store *st)
{
    return exec_sql(st->db, "BEGIN IMMEDIATE");
}

int ant_store_commit(struct ant_store *st)
{
    int rc = exec_sql(st->db, "COMMIT");
    if (rc < 0) {
        ant_store_rollback(st);
    }
    return rc;
}

void ant_store_rollback(struct ant_store *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        (void)exec_sql(st->db, "ROLLBACK");
    }
}

/* --- pool --- */

struct ant_store_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n, nfree;
    struct ant_store **all;
    struct ant_store **free_list;
};

int ant_store_pool_new(int dirfd, const char *name, unsigned n, struct ant_store_pool **out)
{
    if (n == 0 || n > 1024) {
        return -EINVAL;
    }
    struct ant_store_pool *p = calloc(1, sizeof(*p));
    int rc = p == NULL ? -ENOMEM : 0;
    if (rc < 0) {
        return rc;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->all = calloc(n, sizeof(*p->all));
    p->free_list = calloc(n, sizeof(*p->free_list));
    if (p->all == NULL || p->free_list == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        rc = ant_store_open(dirfd, name, 0, &p->all[i]);
        if (rc < 0) {
            goto out;
        }
        p->n++;
        p->free_list[p->nfree++] = p->all[i];
    }
    *out = p;
    p = NULL;
out:
    ant_store_pool_free(p);
    return rc;
}

struct ant_store *ant_store_pool_acquire(struct ant_store_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    struct ant_store *st = p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return st;
}

void ant_store_pool_release(struct ant_store_pool *p, struct ant_store *st)
{
    if (st == NULL) {
        return;
    }
    /* A request that failed half-way must not leave the next one inside its transaction. */
    ant_store_rollback(st);
    pthread_mutex_lock(&p->mu);
    p->free_list[p->nfree++] = st;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void ant_store_pool_free(struct ant_store_pool *p)
{
    if (p == NULL) {
        return;
    }
    for (unsigned i = 0; i < p->n; i++) {
        ant_store_close(p->all[i]);
    }
    free(p->all);
    free(p->free_list);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* --- names, tenants, principals --- */

bool ant_name_is_valid(const char *s)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    if (n == 0 || n > ANT_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-' && c != '@'))) {
            return false;
        }
    }
    /* names go into audit events, which refuse what looks like a credential (an API key
     * "ak_<hex>_<hex>" or a JWT "eyJ….eyJ…" fits this alphabet): not a name */
    return !ant_audit_looks_secret(s);
}

int ant_role_parse(const char *s, unsigned *role)
{
    static const struct {
        const char *name;
        unsigned bit;
    } roles[] = {{"owner", ANT_ROLE_OWNER},
                 {"reader", ANT_ROLE_READER},
                 {"auditor", ANT_ROLE_AUDITOR},
                 {"admin", ANT_ROLE_ADMIN}};
    for (size_t i = 0; s != NULL && i < ANT_ARRAY_LEN(roles); i++) {
        if (strcmp(s, roles[i].name) == 0) {
            *role = roles[i].bit;
            return 0;
        }
    }
    return -EINVAL;
}

static json_t *roles_json(unsigned roles)
{
    static const char *const names[] = {"owner", "reader", "auditor", "admin"};
    json_t *a = json_array();
    for (unsigned i = 0; a != NULL && i < ANT_ARRAY_LEN(names); i++) {
        if (roles & (1u << i)) {
            json_array_append_new(a, json_string(names[i]));
        }
    }
    return a;
}

int ant_store_tenant_add(struct ant_store *st, const char *name)
{
    if (!ant_name_is_valid(name)) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT INTO tenants(id, created) VALUES(?, ?)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, name);
    sqlite3_bind_int64(s, 2, ant_now_unix());
    return ant_store_exec_stmt(s);
}

int ant_store_tenant_list(struct ant_store *st, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT t.id, t.created, (SELECT count(*) FROM principals p WHERE p.tenant_id = t.id),"
            " (SELECT count(*) FROM datasets d WHERE d.tenant_id = t.id)"
            " FROM tenants t ORDER BY t.id");
    json_t *a = json_array();
    int rc = (s == NULL || a == NULL) ? -ENOMEM : 0;
    int src;
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I}", "tenant",
                                           (const char *)sqlite3_column_text(s, 0), "created",
                                           (json_int_t)sqlite3_column_int64(s, 1), "principals",
                                           (json_int_t)sqlite3_column_int64(s, 2), "datasets",
                                           (json_int_t)sqlite3_column_int64(s, 3)));
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    if (s != NULL) {
        sqlite3_reset(s);
    }
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

int ant_store_principal_add(struct ant_store *st, const char *name, const char *tenant,
                            unsigned roles)
{
    if (!ant_name_is_valid(name) || roles == 0 || (roles & ~15u) != 0 ||
        (tenant != NULL && !ant_name_is_valid(tenant)) ||
        ((roles & (ANT_ROLE_OWNER | ANT_ROLE_READER | ANT_ROLE_AUDITOR)) && tenant == NULL)) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(
        st, "INSERT INTO principals(id, tenant_id, roles, created) VALUES(?, ?, ?, ?)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, name);
    ant_bind_text(s, 2, tenant);
    sqlite3_bind_int(s, 3, (int)roles);
    sqlite3_bind_int64(s, 4, ant_now_unix());
    return ant_store_exec_stmt(s);
}

int ant_store_principal_list(struct ant_store *st, const char *tenant, unsigned role, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT id, tenant_id, roles, created, disabled_at,"
            " (SELECT count(*) FROM api_keys k WHERE k.principal_id = p.id AND k.revoked_at IS NULL)"
            " FROM principals p WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 = 0 OR (roles & ?2) != 0)"
            " ORDER BY id");
    json_t *a = json_array();
    int rc = (s == NULL || a == NULL) ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    if (rc == 0) {
        ant_bind_text(s, 1, tenant);
        sqlite3_bind_int(s, 2, (int)role);
    }
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 1);
        json_t *o = json_pack("{s:s, s:s?, s:o, s:I, s:b, s:I}", "principal",
                              (const char *)sqlite3_column_text(s, 0), "tenant", t, "roles",
                              roles_json((unsigned)sqlite3_column_int(s, 2)), "created",
                              (json_int_t)sqlite3_column_int64(s, 3), "disabled",
                              sqlite3_column_type(s, 4) != SQLITE_NULL, "active_keys",
                              (json_int_t)sqlite3_column_int64(s, 5));
        json_array_append_new(a, o);
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    if (s != NULL) {
        sqlite3_reset(s);
    }
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

int ant_store_principal_disable(struct ant_store *st, const char *name)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT disabled_at FROM principals WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, name);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0 && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        rc = -EALREADY;
    }
    sqlite3_reset(s);
    if (rc < 0) {
        return rc;
    }
    s = ant_store_stmt(st, "UPDATE principals SET disabled_at = ? WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, ant_now_unix());
    ant_bind_text(s, 2, name);
    return ant_store_exec_stmt(s);
}

int ant_store_principal_get(struct ant_store *st, const char *name, struct ant_principal *out)
{
    struct ant_principal p;
    memset(&p, 0, sizeof(p));
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT id, tenant_id, roles FROM principals WHERE id = ? AND disabled_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, name);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0) {
        p.kind = ANT_PRINCIPAL_USER;
        rc = ant_col_copy(s, 0, p.id, sizeof(p.id));
        rc = rc < 0 ? rc : ant_col_copy(s, 1, p.tenant, sizeof(p.tenant));
        p.roles = (unsigned)sqlite3_column_int(s, 2);
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = p;
    }
    return rc;
}

int ant_store_principal_set_pubkey(struct ant_store *st, const char *name,
                                   const uint8_t pub[32])
{
    sqlite3_stmt *s = ant_store_stmt(
        st, "UPDATE principals SET c4gh_pubkey = ? WHERE id = ? AND disabled_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    if (pub != NULL) {
        sqlite3_bind_blob(s, 1, pub, 32, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_null(s, 1);
    }
    ant_bind_text(s, 2, name);
    int rc = ant_store_exec_stmt(s);
    if (rc == 0 && sqlite3_changes(st->db) == 0) {
        rc = -ENOENT;
    }
    return rc;
}

int ant_store_principal_pubkey(struct ant_store *st, const char *name, uint8_t pub[32])
{
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT c4gh_pubkey FROM principals WHERE id = ? AND disabled_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, name);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0) {
        if (sqlite3_column_bytes(s, 0) == 32) {
            memcpy(pub, sqlite3_column_blob(s, 0), 32);
        } else {
            rc = -ENODATA;
        }
    }
    sqlite3_reset(s);
    return rc;
}

/* --- API keys --- */

/* hash = SHA-256("antenna-api-key-v1" || salt || id || secret): the secret is 256 random bits, so
 * a fast hash is enough (no dictionary to search); the salt and id bind a stored hash to its row
 * so hashes cannot be moved between rows. */
static int key_hash(const uint8_t salt[16], const char *id, const uint8_t secret[32],
                    uint8_t out[32])
{
    static const char dom[] = "antenna-api-key-v1";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned olen = 0;
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, dom, sizeof(dom) - 1) == 1 && EVP_DigestUpdate(c, salt, 16) == 1 &&
             EVP_DigestUpdate(c, id, strlen(id)) == 1 && EVP_DigestUpdate(c, secret, 32) == 1 &&
             EVP_DigestFinal_ex(c, out, &olen) == 1 && olen == 32;
    EVP_MD_CTX_free(c);
    return ok ? 0 : -ENOMEM;
}

int ant_store_key_create(struct ant_store *st, const char *principal, int64_t ttl_s,
                         struct ant_buf *key_out, char key_id[ANT_KEY_ID_LEN + 1])
{
    uint8_t secret[32], salt[16], hash[32], idb[ANT_KEY_ID_LEN / 2];
    char id[ANT_KEY_ID_LEN + 1], secret_hex[65];
    int64_t now = ant_now_unix();
    int rc = 0;
    if (!ant_name_is_valid(principal) || ttl_s < 0) {
        return -EINVAL;
    }
    randombytes_buf(secret, sizeof(secret));
    randombytes_buf(salt, sizeof(salt));
    randombytes_buf(idb, sizeof(idb));
    ant_hex_encode(idb, sizeof(idb), id);
    rc = key_hash(salt, id, secret, hash);
    if (rc < 0) {
        goto out;
    }
    /* Reserve first: a buffer that grows by realloc would leave copies of the key behind. */
    rc = ant_buf_reserve(key_out, ANT_API_KEY_LEN + 1);
    if (rc < 0) {
        goto out;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT INTO api_keys(id, principal_id, salt, hash,"
                                         " created, expires) VALUES(?, ?, ?, ?, ?, ?)");
    if (s == NULL) {
        rc = -EIO;
        goto out;
    }
    ant_bind_text(s, 1, id);
    ant_bind_text(s, 2, principal);
    sqlite3_bind_blob(s, 3, salt, sizeof(salt), SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 4, hash, sizeof(hash), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, now);
    if (ttl_s > 0) {
        sqlite3_bind_int64(s, 6, now + ttl_s);
    } else {
        sqlite3_bind_null(s, 6);
    }
    rc = ant_store_exec_stmt(s);
    if (rc < 0) {
        goto out;
    }
    ant_hex_encode(secret, sizeof(secret), secret_hex);
    rc = ant_buf_append_str(key_out, "ak_");
    rc = rc < 0 ? rc : ant_buf_append_str(key_out, id);
    rc = rc < 0 ? rc : ant_buf_append_str(key_out, "_");
    rc = rc < 0 ? rc : ant_buf_append_str(key_out, secret_hex);
    if (rc == 0 && key_id != NULL) {
        memcpy(key_id, id, sizeof(id));
    }
out:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(secret_hex, sizeof(secret_hex));
    return rc;
}

int ant_store_key_revoke(struct ant_store *st, const char *key_id)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT revoked_at FROM api_keys WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, key_id);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0 && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        rc = -EALREADY;
    }
    sqlite3_reset(s);
    if (rc < 0) {
        return rc;
    }
    s = ant_store_stmt(st, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, ant_now_unix());
    ant_bind_text(s, 2, key_id);
    return ant_store_exec_stmt(s);
}

int ant_store_key_list(struct ant_store *st, const char *principal, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT id, principal_id, created, last_used, expires, revoked_at FROM api_keys"
            " WHERE ?1 IS NULL OR principal_id = ?1 ORDER BY principal_id, created, id");
    json_t *a = json_array();
    int rc = (s == NULL || a == NULL) ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    int64_t now = ant_now_unix();
    if (rc == 0) {
        ant_bind_text(s, 1, principal);
    }
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *state = "active";
        if (sqlite3_column_type(s, 5) != SQLITE_NULL) {
            state = "revoked";
        } else if (sqlite3_column_type(s, 4) != SQLITE_NULL && sqlite3_column_int64(s, 4) <= now) {
            state = "expired";
        }
        json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "key_id",
                              (const char *)sqlite3_column_text(s, 0), "principal",
                              (const char *)sqlite3_column_text(s, 1), "created",
                              (json_int_t)sqlite3_column_int64(s, 2), "state", state);
        for (int c = 3; o != NULL && c <= 5; c++) {
            static const char *const names[] = {"last_used", "expires", "revoked_at"};
            json_object_set_new(o, names[c - 3],
                                sqlite3_column_type(s, c) == SQLITE_NULL
                                    ? json_null()
                                    : json_integer((json_int_t)sqlite3_column_int64(s, c)));
        }
        json_array_append_new(a, o);
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    if (s != NULL) {
        sqlite3_reset(s);
    }
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

static bool is_hex(struct ant_bytes b)
{
    for (size_t i = 0; i < b.len; i++) {
        uint8_t c = b.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

int ant_store_authenticate_key(struct ant_store *st, struct ant_bytes key, int64_t now,
                               struct ant_principal *out)
{
    /* Fixed inputs for the hash when the key is malformed or unknown, so those paths cost the
     * same as a real comparison and a timing probe learns nothing about which ids exist. */
    static const uint8_t dummy_salt[16];
    uint8_t secret[32], salt[16], stored[32], computed[32];
    char id[ANT_KEY_ID_LEN + 1] = "0000000000000000";
    struct ant_principal p;
    bool ok = true;
    bool found = false;
    bool touch = false;
    int rc = 0;
    memset(&p, 0, sizeof(p));
    memset(secret, 0, sizeof(secret));
    memcpy(salt, dummy_salt, sizeof(salt));
    memset(stored, 0xff, sizeof(stored));

    struct ant_rd rd = ant_rd_init(key);
    struct ant_bytes pre, idv, sep, sec;
    if (key.len != ANT_API_KEY_LEN || ant_rd_view(&rd, 3, &pre) < 0 ||
        ant_rd_view(&rd, ANT_KEY_ID_LEN, &idv) < 0 || ant_rd_view(&rd, 1, &sep) < 0 ||
        ant_rd_view(&rd, 64, &sec) < 0 || memcmp(pre.p, "ak_", 3) != 0 || sep.p[0] != '_' ||
        !is_hex(idv) || ant_hex_decode(sec, secret, sizeof(secret)) < 0) {
        ok = false;
    } else {
        memcpy(id, idv.p, ANT_KEY_ID_LEN);
        id[ANT_KEY_ID_LEN] = '\0';
    }
    if (ok) {
        sqlite3_stmt *s = ant_store_stmt(
            st, "SELECT k.salt, k.hash, k.expires, k.revoked_at, k.last_used, p.id, p.tenant_id,"
                " p.roles, p.disabled_at FROM api_keys k JOIN principals p ON p.id = k.principal_id"
                " WHERE k.id = ?");
        if (s == NULL) {
            rc = -EIO;
            goto out;
        }
        ant_bind_text(s, 1, id);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 16 &&
            sqlite3_column_bytes(s, 1) == 32) {
            found = true;
            memcpy(salt, sqlite3_column_blob(s, 0), 16);
            memcpy(stored, sqlite3_column_blob(s, 1), 32);
            bool expired = sqlite3_column_type(s, 2) != SQLITE_NULL &&
                           sqlite3_column_int64(s, 2) <= now;
            bool revoked = sqlite3_column_type(s, 3) != SQLITE_NULL;
            bool disabled = sqlite3_column_type(s, 8) != SQLITE_NULL;
            ok = !expired && !revoked && !disabled;
            p.kind = ANT_PRINCIPAL_USER;
            if (ant_col_copy(s, 5, p.id, sizeof(p.id)) < 0 ||
                ant_col_copy(s, 6, p.tenant, sizeof(p.tenant)) < 0) {
                ok = false;
            }
            p.roles = (unsigned)sqlite3_column_int(s, 7);
            /* last_used is kept to the minute: writing it on every request would make each
             * authenticated request a database write. */
            touch = sqlite3_column_type(s, 4) == SQLITE_NULL ||
                    sqlite3_column_int64(s, 4) < now - 60;
        } else if (src != SQLITE_ROW && src != SQLITE_DONE) {
            rc = ant_sqlite_err(src);
            sqlite3_reset(s);
            goto out;
        }
        sqlite3_reset(s);
    }
    rc = key_hash(salt, id, secret, computed);
    if (rc < 0) {
        goto out;
    }
    bool match = sodium_memcmp(computed, stored, sizeof(computed)) == 0;
    if (!ok || !found || !match) {
        rc = -EKEYREJECTED;
        goto out;
    }
    if (touch) {
        /* Only after the secret matched: a guess must not leave a trace on someone's key. */
        sqlite3_stmt *u = ant_store_stmt(st, "UPDATE api_keys SET last_used = ? WHERE id = ?");
        if (u != NULL) {
            sqlite3_bind_int64(u, 1, now);
            ant_bind_text(u, 2, id);
            if (ant_store_exec_stmt(u) < 0) {
                ant_log(ANT_LOG_DEBUG, "store.key_last_used", "key %s: not updated", id);
            }
        }
    }
    snprintf(p.key_id, sizeof(p.key_id), "%s", id);
    *out = p;
out:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(computed, sizeof(computed));
    return rc;
}

int ant_store_bootstrap_admin(struct ant_store *st, const char *name, struct ant_buf *key_out)
{
    int rc = ant_store_begin(st);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_principal_add(st, name, NULL, ANT_ROLE_ADMIN);
    rc = rc < 0 ? rc : ant_store_key_create(st, name, 0, key_out, NULL);
    rc = rc < 0 ? rc : ant_store_commit(st);
    if (rc < 0) {
        ant_store_rollback(st);
    }
    return rc;
}
