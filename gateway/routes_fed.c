/* The serving side of federation; see routes_fed.h and docs/federation.md.
 *
 * Who: a federation token (crypto/token.h) signed by a peer in the peers table, for this site,
 * used once. The caller becomes a principal of no local tenant: id "<sub>@<peer>", tenant
 * "<name>@<peer>" (the token says so), site = the peer, no roles. Local roles never apply to it
 * (decide.c gives none to a principal with a site), so only grants to that principal, its
 * tenant or the whole peer site can allow anything.
 *
 * What: the `transfer` action, decided with the peer's pinned region as destination (residency
 * applies whatever the grants say) and the token's purpose against the dataset's DUO terms.
 * Every decision and every refused token is audited with the transfer id the peer sent (or one
 * made here), which every response echoes.
 *
 * Files leave encrypted: the stored header is re-encrypted for the peer's pinned X25519 key
 * (never a key named in the request), the body is the stored bytes. `?part=body` serves the
 * body alone: its bytes never change, so a puller resumes and splits it by Range, and checks it
 * against the manifest's sha256_c4gh; `?part=header` the new header alone. */
#include "gateway/routes_fed.h"

#include "crypto/base/log.h"
#include "crypto/c4gh.h"
#include "crypto/token.h"
#include "gateway/api.h"
#include "gateway/site.h"
#include "policy/audit.h"
#include "policy/decide.h"
#include "policy/peers.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FED_BLOCK (256u * 1024u)
/* Test hook (tests/integration/test_federation.sh): when this environment variable names a
 * logical path, the first body served for it has one byte flipped, once per process, as a
 * byte corrupted in transit would be. The puller must detect it against the signed manifest
 * and fetch the body again. */
#define FED_CORRUPT_ENV "ANTENNA_TEST_FED_CORRUPT"

static atomic_bool g_ant_fed_corrupted;
/* A manifest is at most this big (about 40,000 files): larger datasets are split. */
#define FED_MANIFEST_MAX (16u << 20)

struct fed {
    struct ant_peer peer;
    struct ant_fed_token tok;
    char transfer[ANT_ID_MAX + 1];
};

static bool transfer_id_is_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= ANT_ID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                 (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    /* one shaped like an API key would be redacted from the events it should join: a new one */
    return n > 0 && !ant_audit_looks_secret(s);
}

/* Puts the transfer id on whatever response the handler set. */
static void echo_transfer(struct ant_req *r, const struct fed *f)
{
    if (r->resp != NULL && f->transfer[0] != '\0') {
        MHD_add_response_header(r->resp, ANT_FED_TRANSFER_HEADER, f->transfer);
    }
}

/* One audit event of a federation request; the caller releases nothing unless it returns 0
 * (503 answered and ANT_API_DONE otherwise, as ant_api_audit). */
static int fed_audit(struct ant_req *r, const struct fed *f, const char *action, const char *kind,
                     const char *id, const char *ds, enum ant_audit_decision decision,
                     const char *reason, const json_t *detail)
{
    char cred[ANT_NAME_MAX + 8];
    snprintf(cred, sizeof(cred), "fed:%s", f->peer.id[0] != '\0' ? f->peer.id : "unknown");
    struct ant_audit_event ev = {
        .request_id = r->request_id,
        .actor = r->authed ? r->who.id : NULL,
        .tenant = r->authed ? r->who.tenant : NULL,
        .credential = cred,
        .action = action,
        .resource_kind = kind,
        .resource_id = id,
        .dataset_id = ds,
        .decision = decision,
        .reason = reason,
        .transfer = f->transfer[0] != '\0' ? f->transfer : NULL,
    };
    return ant_api_audit_event(r, ev, detail, JSON_COMPACT | JSON_SORT_KEYS);
}

/* A refused federation token: audited with the reason, and the 401 says it too (the caller is
 * a site; a reason helps its admin and tells an attacker nothing a forged token did not). */
static int refuse(struct ant_req *r, struct fed *f, const char *claimed_iss, const char *reason,
                  const char *msg)
{
    json_t *det = json_pack("{s:s, s:s}", "claimed_iss", claimed_iss != NULL ? claimed_iss : "",
                            "why", msg);
    int rc = fed_audit(r, f, "fed.auth", "peer", claimed_iss, NULL, ANT_AUDIT_DENY, reason, det);
    json_decref(det);
    if (rc != 0) {
        return rc;
    }
    ant_log_kv(ANT_LOG_INFO, "fed.refused", ((const char *[]){"request_id", r->request_id, NULL}),
               "%s: %s", reason, msg);
    return ant_api_fail(r, MHD_HTTP_UNAUTHORIZED, reason, "federation token refused: %s", msg);
}

/* Verifies the federation token and fills r->who. 0, ANT_API_DONE (answered) or -errno. */
static int fed_auth(struct ant_req *r, struct ant_store *st, struct fed *f)
{
    struct ant_diag d = {{0}};
    char iss[ANT_TOKEN_ID_MAX + 1] = "";
    const char *tid = ant_req_header(r, ANT_FED_TRANSFER_HEADER);
    if (tid != NULL && transfer_id_is_valid(tid)) {
        snprintf(f->transfer, sizeof(f->transfer), "%s", tid);
    } else {
        uint8_t rnd[12];
        randombytes_buf(rnd, sizeof(rnd));
        memcpy(f->transfer, "tr_", 3);
        ant_hex_encode(rnd, sizeof(rnd), f->transfer + 3);
    }
    const char *h = ant_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return refuse(r, f, NULL, "fed_token_missing", "no Bearer federation token");
    }
    const char *tok = h + 7;
    size_t len = strnlen(tok, ANT_TOKEN_MAX + 1);
    if (len == 0 || len > ANT_TOKEN_MAX) {
        return refuse(r, f, NULL, "fed_token_malformed", "empty or oversized token");
    }
    struct ant_bytes t = ant_bytes_of(tok, len);
    if (ant_token_peek_iss(t, iss, &d) < 0) {
        return refuse(r, f, NULL, "fed_token_malformed", ant_diag_msg(&d, "not a JWT"));
    }
    int rc = ant_peer_get(st, iss, &f->peer);
    if (rc == -ENOENT) {
        memset(&f->peer, 0, sizeof(f->peer));
        return refuse(r, f, iss, "fed_unknown_peer", "the issuer is not a peer of this site");
    }
    if (rc < 0) {
        return rc;
    }
    int64_t now = ant_now_unix();
    rc = ant_token_fed_verify(t, f->peer.ed25519_pk, f->peer.id, r->site->cfg.site_id, now,
                              &f->tok, &d);
    if (rc == -EKEYEXPIRED) {
        return refuse(r, f, iss, "fed_token_expired", ant_diag_msg(&d, "expired"));
    }
    if (rc < 0) {
        char msg[320];
        const char *why = ant_diag_msg(&d, "invalid");
        /* a peer that changed its key looks like a forgery: say what the admin can check */
        snprintf(msg, sizeof(msg), "%s%s%s%s", why,
                 strstr(why, "signature") != NULL || strstr(why, "key") != NULL
                     ? " (not signed by the key pinned for "
                     : "",
                 strstr(why, "signature") != NULL || strstr(why, "key") != NULL ? f->peer.id : "",
                 strstr(why, "signature") != NULL || strstr(why, "key") != NULL ? ")" : "");
        return refuse(r, f, iss, "fed_token_rejected", msg);
    }
    /* The per-principal rate limit, once the peer's signature vouches for the name and before
     * the token is spent (the puller retries a 429 with the same token): a bucket per remote
     * principal, apart from every local name (a name cannot hold ':'). */
    char key[sizeof(f->tok.principal) + sizeof(f->peer.id) + 8];
    snprintf(key, sizeof(key), "fed:%s@%s", f->tok.principal, f->peer.id);
    if (ant_req_rate_limit(r, key) < 0) {
        return ANT_API_DONE;
    }
    rc = ant_peer_jti_use(st, f->tok.iss, f->tok.jti, f->tok.exp, now);
    if (rc == -EALREADY) {
        return refuse(r, f, iss, "fed_token_replayed", "this token was already used");
    }
    if (rc < 0) {
        return rc;
    }
    struct ant_principal *p = &r->who;
    memset(p, 0, sizeof(*p));
    int n = snprintf(p->id, sizeof(p->id), "%s@%s", f->tok.principal, f->peer.id);
    if (n < 0 || (size_t)n >= sizeof(p->id) || !ant_name_is_valid(p->id) ||
        !ant_name_is_valid(f->tok.tenant) || strlen(f->tok.tenant) >= sizeof(p->tenant)) {
        return refuse(r, f, iss, "fed_token_rejected", "principal or tenant is not a valid name");
    }
    /* a local principal of the same name would share its grants: never let one name two */
    struct ant_principal local;
    rc = ant_store_principal_get(st, p->id, &local);
    if (rc == 0) {
        memset(p, 0, sizeof(*p));
        return refuse(r, f, iss, "fed_token_rejected",
                      "the principal's name is taken by a local principal of this site");
    }
    if (rc != -ENOENT) {
        return rc;
    }
    p->kind = ANT_PRINCIPAL_USER;
    /* the names were checked above, so these fit (the checks keep a debug build's
     * -Wformat-truncation, which cannot see that, quiet) */
    if ((size_t)snprintf(p->tenant, sizeof(p->tenant), "%s", f->tok.tenant) >= sizeof(p->tenant) ||
        (size_t)snprintf(p->site, sizeof(p->site), "%s", f->peer.id) >= sizeof(p->site)) {
        memset(p, 0, sizeof(*p));
        return refuse(r, f, iss, "fed_token_rejected", "principal or tenant is not a valid name");
    }
    _Static_assert(4 + ANT_NAME_MAX <= ANT_CREDENTIAL_MAX, "fed:<site id> fits whole");
    snprintf(p->key_id, sizeof(p->key_id), "fed:%s", f->peer.id);
    p->roles = 0;
    r->authed = true;
    snprintf(r->principal, sizeof(r->principal), "%s", p->id);
    return 0;
}

static void fed_ctx(const struct fed *f, struct ant_decide_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->purpose = f->tok.purpose;
    ctx->dest_region = f->peer.region;
    ctx->dest_site = f->peer.id;
    ctx->plaintext = false;
}

/* ant_decide(transfer), audited with the transfer id. 0 allowed; ANT_API_DONE denied (404 when
 * the caller may not know the dataset, else 403 with the reason). */
static int fed_decide(struct ant_req *r, struct ant_store *st, const struct fed *f, const char *ds,
                      const char *kind, const char *id)
{
    struct ant_decide_ctx ctx;
    struct ant_decision d;
    fed_ctx(f, &ctx);
    int rc = ant_decide(st, &r->who, ANT_ACT_TRANSFER, ds, &ctx, &d);
    if (rc < 0) {
        return rc;
    }
    json_t *det = json_pack("{s:s, s:s, s:s}", "purpose", f->tok.purpose, "dest_site",
                            f->peer.id, "dest_region", f->peer.region);
    rc = fed_audit(r, f, "transfer", kind, id, ds, d.allow ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
                   d.reason, det);
    json_decref(det);
    if (rc != 0 || d.allow) {
        return rc;
    }
    if (!d.visible) {
        return ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    return ant_api_fail(r, MHD_HTTP_FORBIDDEN, d.reason, "%s", d.message);
}

int ant_route_fed_datasets(struct ant_req *r)
{
    struct fed f;
    json_t *vis = NULL, *out = NULL, *o;
    size_t i;
    memset(&f, 0, sizeof(f));
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = fed_auth(r, st, &f);
    if (rc == 0) {
        rc = ant_store_dataset_list_visible(st, &r->who, ant_now_unix(), &vis);
    }
    out = rc == 0 ? json_array() : NULL;
    if (rc == 0 && out == NULL) {
        rc = -ENOMEM;
    }
    json_array_foreach(rc == 0 ? vis : NULL, i, o)
    {
        struct ant_decide_ctx ctx;
        struct ant_decision d;
        const char *id = json_string_value(json_object_get(o, "id"));
        fed_ctx(&f, &ctx);
        if (id == NULL) {
            continue;
        }
        rc = ant_decide(st, &r->who, ANT_ACT_TRANSFER, id, &ctx, &d);
        if (rc < 0) {
            break;
        }
        if (d.allow) {
            json_t *e = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "id",
                                  json_object_get(o, "id"), "name", json_object_get(o, "name"),
                                  "tenant", json_object_get(o, "tenant"), "classification",
                                  json_object_get(o, "classification"), "files",
                                  json_object_get(o, "files"), "bytes", json_object_get(o, "bytes"),
                                  "regions", json_object_get(o, "regions"), "duo",
                                  json_object_get(o, "duo"));
            if (e == NULL || json_array_append_new(out, e) != 0) {
                rc = -ENOMEM;
                break;
            }
        }
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc == 0) {
        json_t *det = json_pack("{s:I, s:s}", "datasets", (json_int_t)json_array_size(out),
                                "purpose", f.tok.purpose);
        rc = fed_audit(r, &f, "fed.datasets.list", "dataset", NULL, NULL, ANT_AUDIT_INFO,
                       "transferable", det);
        json_decref(det);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "datasets", out);
        out = NULL;
    }
    json_decref(out);
    json_decref(vis);
    echo_transfer(r, &f);
    return ant_api_end(rc);
}

int ant_route_fed_checkpoint(struct ant_req *r)
{
    struct fed f;
    json_t *arr = NULL, *doc = NULL;
    struct ant_audit_ckpt c;
    memset(&f, 0, sizeof(f));
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = fed_auth(r, st, &f);
    ant_store_pool_release(r->site->pool, st);
    rc = rc != 0 ? rc : ant_audit_checkpoints(r->site->audit, 1, &arr);
    json_t *last = rc == 0 ? json_array_get(arr, 0) : NULL;
    if (rc == 0 && last != NULL) {
        /* the export's line: type first, then the members in its order */
        rc = json_object_set_new(last, "type", json_string("checkpoint")) < 0 ? -ENOMEM : 0;
        rc = rc < 0 ? rc : ant_audit_ckpt_from_json(last, &c) < 0 ? -EIO : 0;
        doc = rc < 0 ? NULL : ant_audit_ckpt_to_json(&c);
        rc = rc < 0 ? rc : doc == NULL ? -ENOMEM : 0;
    }
    if (rc == 0) {
        json_t *det = json_pack("{s:I}", "seq", (json_int_t)(doc != NULL ? c.seq : 0));
        rc = fed_audit(r, &f, "fed.checkpoint", "audit", NULL, NULL, ANT_AUDIT_INFO,
                       doc != NULL ? "witnessed" : "no_checkpoint", det);
        json_decref(det);
    }
    if (rc == 0 && doc == NULL) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, "no_checkpoint", "no audit checkpoint yet");
    } else if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_OK, doc);
        doc = NULL;
    }
    json_decref(doc);
    json_decref(arr);
    echo_transfer(r, &f);
    return ant_api_end(rc);
}

/* archive/<ds>/<storage>.c4gh, opened; ds is a catalog id ("ds_" + hex). */
static int open_stored(struct ant_site *s, const char *ds, const char *storage)
{
    char name[2 * ANT_ID_MAX + 8];
    for (const char *c = ds; *c != '\0'; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
            return -ENOENT;
        }
    }
    if (ds[0] == '\0' || strchr(storage, '/') != NULL || storage[0] == '.') {
        return -ENOENT;
    }
    snprintf(name, sizeof(name), "%s/%s.c4gh", ds, storage);
    int fd = openat(s->archive_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The stored header (appended to hdr) and the body length. */
static int stored_layout(int fd, struct ant_buf *hdr, uint64_t *body_len)
{
    struct stat sb;
    int rc = ant_c4gh_header_read_fd(fd, hdr, NULL);
    if (rc < 0) {
        return rc;
    }
    if (fstat(fd, &sb) < 0) {
        return -errno;
    }
    if ((uint64_t)sb.st_size < hdr->len) {
        return -EBADMSG;
    }
    *body_len = (uint64_t)sb.st_size - hdr->len;
    return 0;
}

static int manifest_files(struct ant_req *r, struct ant_store *st, const char *ds, json_t **out)
{
    json_t *files = NULL, *list = json_array(), *o;
    size_t i;
    int rc = list == NULL ? -ENOMEM : ant_store_file_list(st, ds, &files);
    json_array_foreach(rc == 0 ? files : NULL, i, o)
    {
        const char *storage = json_string_value(json_object_get(o, "storage_id"));
        struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
        uint64_t body_len = 0;
        int fd = storage != NULL ? open_stored(r->site, ds, storage) : -ENOENT;
        rc = fd < 0 ? fd : stored_layout(fd, &hdr, &body_len);
        ant_close(fd);
        ant_buf_fini(&hdr);
        if (rc < 0) {
            ant_log(ANT_LOG_ERROR, "fed.manifest", "stored file of %s unreadable: %s", ds,
                    strerror(-rc));
            rc = -EIO;
            break;
        }
        json_t *e = json_pack("{s:O, s:O, s:I, s:O, s:O}", "path", json_object_get(o, "path"),
                              "size", json_object_get(o, "size"), "body_size",
                              (json_int_t)body_len, "sha256", json_object_get(o, "sha256"),
                              "sha256_c4gh", json_object_get(o, "sha256_c4gh"));
        if (e == NULL || json_array_append_new(list, e) != 0) {
            rc = -ENOMEM;
            break;
        }
    }
    json_decref(files);
    if (rc == 0) {
        *out = list;
        list = NULL;
    }
    json_decref(list);
    return rc;
}

int ant_route_fed_manifest(struct ant_req *r)
{
    struct fed f;
    char ds[ANT_ID_MAX + 1];
    struct ant_dataset dsr;
    json_t *files = NULL, *doc = NULL;
    char *text = NULL;
    memset(&f, 0, sizeof(f));
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = fed_auth(r, st, &f);
    if (rc == 0 && ant_api_param(r, 0, ds, sizeof(ds)) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    rc = rc != 0 ? rc : fed_decide(r, st, &f, ds, "dataset", ds);
    rc = rc != 0 ? rc : ant_store_dataset_get(st, ds, &dsr);
    rc = rc != 0 ? rc : manifest_files(r, st, ds, &files);
    ant_store_pool_release(r->site->pool, st);
    if (rc != 0) {
        goto out;
    }
    doc = json_pack("{s:i, s:s, s:s, s:s, s:I, s:{s:s, s:s, s:s, s:s}, s:O}", "version", 1,
                    "site", r->site->cfg.site_id, "peer", f.peer.id, "transfer_id", f.transfer,
                    "issued_at", (json_int_t)ant_now_unix(), "dataset", "id", dsr.id, "name",
                    dsr.name, "tenant", dsr.tenant, "classification",
                    ant_ds_class_name(dsr.classification), "files", files);
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    size_t len = strlen(text);
    if (len > FED_MANIFEST_MAX) {
        rc = ant_api_fail(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "the manifest is too large");
        goto out;
    }
    /* the signature covers the exact bytes sent: the puller checks it before parsing them */
    uint8_t sig[ANT_SIG_LEN];
    char sig64[sodium_base64_ENCODED_LEN(ANT_SIG_LEN, sodium_base64_VARIANT_ORIGINAL)];
    rc = ant_signkey_sign(r->site->keys.sign, ant_bytes_of(text, len), sig);
    if (rc < 0) {
        goto out;
    }
    sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    text = NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, ANT_FED_SIGNATURE_HEADER, sig64);
    ant_req_respond(r, MHD_HTTP_OK, resp);
    r->bytes_out = len;
out:
    free(text);
    json_decref(doc);
    json_decref(files);
    echo_transfer(r, &f);
    return ant_api_end(rc);
}

/* --- files --- */

struct fdl {
    int fd;
    uint8_t *hdr; /* the re-encrypted header, when served */
    size_t hlen;
    uint64_t stored_hlen; /* where the body starts in the stored file */
    uint64_t total;       /* bytes of the whole representation (header? + body) */
    uint64_t start;       /* first byte served */
    bool corrupt;         /* the test hook: flip one body byte */
};

static void fdl_free(void *arg)
{
    struct fdl *d = arg;
    if (d != NULL) {
        ant_close(d->fd);
        free(d->hdr);
        free(d);
    }
}

static ssize_t fdl_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct fdl *d = cls;
    uint64_t off = d->start + pos;
    if (off >= d->total) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (max > d->total - off) {
        max = (size_t)(d->total - off);
    }
    if (off < d->hlen) {
        size_t n = d->hlen - off < max ? (size_t)(d->hlen - off) : max;
        memcpy(buf, d->hdr + off, n);
        return (ssize_t)n;
    }
    ssize_t n = ant_pread_full(d->fd, buf, max, (off_t)(d->stored_hlen + off - d->hlen));
    if (n > 0 && d->corrupt) {
        buf[0] ^= 0x01;
        d->corrupt = false;
    }
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR; /* 0: the file shrank */
}

static int fdl_prepare(struct ant_req *r, const struct fed *f, const char *ds,
                       const struct ant_file *file, bool want_hdr, bool want_body, struct fdl *d)
{
    struct ant_buf stored = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_buf served = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    uint64_t body_len = 0;
    d->fd = open_stored(r->site, ds, file->storage_id);
    int rc = d->fd < 0 ? d->fd : stored_layout(d->fd, &stored, &body_len);
    if (rc == 0 && want_hdr) {
        /* for the peer's pinned key only: a request cannot name another recipient */
        rc = ant_c4gh_reencrypt_header(ant_buf_view(&stored), r->site->keys.kx,
                                       f->peer.x25519_pk, 1, true, &served, NULL, NULL);
    }
    if (rc < 0) {
        goto out;
    }
    d->stored_hlen = stored.len;
    if (want_hdr) {
        d->hdr = ant_buf_take(&served, &d->hlen);
    }
    d->total = d->hlen + (want_body ? body_len : 0);
    const char *hook = getenv(FED_CORRUPT_ENV);
    if (want_body && body_len > 0 && hook != NULL && strcmp(hook, file->path) == 0 &&
        !atomic_exchange(&g_ant_fed_corrupted, true)) {
        ant_log(ANT_LOG_WARN, "fed.test_corrupt", "test hook: one byte of %s flipped", hook);
        d->corrupt = true;
    }
out:
    ant_buf_fini(&stored);
    ant_buf_fini(&served);
    return rc;
}

int ant_route_fed_file(struct ant_req *r)
{
    struct fed f;
    char ds[ANT_ID_MAX + 1], path[ANT_PATH_MAX + 1];
    struct ant_file file;
    struct fdl *d = NULL;
    const char *part = ant_req_query(r, "part");
    bool want_hdr = part == NULL || strcmp(part, "header") == 0;
    bool want_body = part == NULL || strcmp(part, "body") == 0;
    memset(&f, 0, sizeof(f));
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = fed_auth(r, st, &f);
    if (rc == 0 && ant_api_param(r, 0, ds, sizeof(ds)) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    if (rc == 0 && (ant_api_param(r, 1, path, sizeof(path)) < 0 || !ant_path_is_valid(path))) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_path", "not a valid file path");
    }
    if (rc == 0 && !want_hdr && !want_body) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "part is header or body");
    }
    /* decided and audited before anything of the file is read */
    rc = rc != 0 ? rc : fed_decide(r, st, &f, ds, "file", path);
    if (rc == 0) {
        rc = ant_store_file_get(st, ds, path, &file);
        if (rc == -ENOENT) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such file");
        }
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc != 0) {
        goto out;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = fdl_prepare(r, &f, ds, &file, want_hdr, want_body, d);
    if (rc < 0) {
        rc = rc == -EBADMSG ? -EIO : rc; /* our own archive is damaged: a 500, logged */
        goto out;
    }
    struct ant_api_span sp;
    rc = ant_api_range(r, NULL, d->total, &sp);
    if (rc != 0) {
        goto out;
    }
    d->start = sp.start;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(sp.len, FED_BLOCK, fdl_read, d, fdl_free);
    if (resp == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    d = NULL; /* the response owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            want_body && !want_hdr ? "application/octet-stream"
                                                   : "application/crypt4gh");
    if (!want_hdr) {
        char etag[70];
        etag[0] = '"';
        ant_hex_encode(file.sha256_c4gh, 32, etag + 1);
        memcpy(etag + 65, "\"", 2);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    }
    ant_api_respond_span(r, resp, &sp);
    rc = 0;
out:
    fdl_free(d);
    echo_transfer(r, &f);
    return ant_api_end(rc);
}
