/* antenna admin peer add|list|remove: the peers this site trusts (DESIGN.md §8), straight on the
 * site folder's antenna.db as the other admin commands. Every command is audited before its
 * effect is committed or printed.
 *
 * Adding a peer online is trust on first use, made explicit: the peer's /v1/site is fetched
 * once without trusting anything, the certificate it presented and the keys it states are
 * shown as fingerprints, and nothing is pinned until the admin (who compares them with what
 * the peer's admin sent out of band) says yes. Then the same request is made again trusting
 * only the certificate just seen, so what is pinned is known to work for that URL, and must
 * state the same keys. `--pubkeys FILE --ca FILE` pins files received out of band instead. */
#include "crypto/base/json.h"
#include "crypto/base/log.h"
#include "crypto/keys.h"
#include "crypto/c4gh.h"
#include "crypto/token.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "gateway/tlscert.h"
#include "policy/audit.h"
#include "policy/peers.h"
#include "policy/store.h"
#include "staging/fetch.h"
#include "staging/jobs.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Declared in gateway/cli.h once its owner adds it; ant_cli_admin dispatches "peer" here. */

/* /v1/site is a small JSON document. */
#define SITE_DOC_MAX 16384

struct peer_args {
    const char *dir, *id, *url, *region, *pubkeys, *ca;
    const char *peer, *principal, *tenant, *purpose, *iat, *ttl, *dataset, *out, *conns,
        *rate, *range;
    bool encrypted;
    const char *pos[3];
    int npos;
    bool yes, json;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: antenna admin [--dir DIR] [-o json|table] peer COMMAND\n\n"
            "  peer add --id ID --url https://HOST:PORT --region R [--yes]\n"
            "      fetches the peer's /v1/site, shows its key and certificate fingerprints and\n"
            "      pins them once you confirm (compare them with what the peer's admin sent)\n"
            "  peer add --id ID --url URL --region R --pubkeys SITE.PUB --ca CERT.PEM\n"
            "      pins keys and certificate received out of band (no network)\n"
            "  peer list\n"
            "  peer remove ID\n"
            "  peer token --peer ID --principal P --tenant T --purpose DUO [--ttl S] [--iat UNIX]\n"
            "      prints a federation token of this site for peer ID on behalf of P of tenant T\n"
            "      (for tests and scripts; the pulling side makes its own)\n"
            "  peer pull --peer ID --dataset DS --principal P --tenant T --purpose DUO [--out DIR]\n"
            "            [--encrypted] [--connections N] [--range-size SIZE] [--max-rate SIZE]\n"
            "      pulls the peer's dataset for P (kept encrypted once in the archive: a second\n"
            "      pull transfers nothing) and writes it decrypted into DIR (or as Crypt4GH for\n"
            "      this site's key with --encrypted); without --out, only into the archive;\n"
            "      then trims the archive cache to [federation] cache_max as the daemon does\n"
            "      (not while a remote stage job runs) and says what it evicted\n"
            "  peer witnessed ID\n"
            "      the peer's audit checkpoints this site recorded when it talked to the peer;\n"
            "      with -o json as the export's checkpoint lines (NDJSON), for the peer's\n"
            "      auditors: antenna audit verify --witness FILE; the table also lists the\n"
            "      rollbacks seen (a checkpoint served as the latest after a higher one)\n");
}

static int parse_args(int argc, char **argv, struct peer_args *a)
{
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        {"--dir", offsetof(struct peer_args, dir)},
        {"--id", offsetof(struct peer_args, id)},
        {"--url", offsetof(struct peer_args, url)},
        {"--region", offsetof(struct peer_args, region)},
        {"--pubkeys", offsetof(struct peer_args, pubkeys)},
        {"--ca", offsetof(struct peer_args, ca)},
        {"--peer", offsetof(struct peer_args, peer)},
        {"--principal", offsetof(struct peer_args, principal)},
        {"--tenant", offsetof(struct peer_args, tenant)},
        {"--purpose", offsetof(struct peer_args, purpose)},
        {"--iat", offsetof(struct peer_args, iat)},
        {"--ttl", offsetof(struct peer_args, ttl)},
        {"--dataset", offsetof(struct peer_args, dataset)},
        {"--out", offsetof(struct peer_args, out)},
        {"--connections", offsetof(struct peer_args, conns)},
        {"--max-rate", offsetof(struct peer_args, rate)},
        {"--range-size", offsetof(struct peer_args, range)},
    };
    a->dir = "./var";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool matched = false;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            return 3;
        }
        if (strcmp(s, "--yes") == 0 || strcmp(s, "-y") == 0) {
            a->yes = true;
            continue;
        }
        if (strcmp(s, "--encrypted") == 0) {
            a->encrypted = true;
            continue;
        }
        if (s[0] != '-') {
            if (a->npos == (int)ANT_ARRAY_LEN(a->pos)) {
                return 2;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "antenna admin peer: %s needs a value\n", s);
            return 2;
        }
        const char *val = argv[++i];
        if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            a->json = strcmp(val, "json") == 0;
            if (!a->json && strcmp(val, "table") != 0) {
                return 2;
            }
            continue;
        }
        for (size_t k = 0; k < ANT_ARRAY_LEN(strs); k++) {
            if (strcmp(s, strs[k].name) == 0) {
                *(const char **)(void *)((char *)a + strs[k].off) = val;
                matched = true;
            }
        }
        if (!matched) {
            fprintf(stderr, "antenna admin peer: unknown option %s\n", s);
            return 2;
        }
    }
    if (a->npos < 2 || strcmp(a->pos[0], "peer") != 0) {
        return 2;
    }
    const char *verb = a->pos[1];
    if (strcmp(verb, "add") == 0) {
        bool offline_ok = (a->pubkeys == NULL) == (a->ca == NULL);
        return (a->npos == 2 && a->id && a->url && a->region && offline_ok) ? 0 : 2;
    }
    if (strcmp(verb, "list") == 0) {
        return a->npos == 2 ? 0 : 2;
    }
    if (strcmp(verb, "remove") == 0 || strcmp(verb, "witnessed") == 0) {
        return a->npos == 3 ? 0 : 2;
    }
    if (strcmp(verb, "pull") == 0) {
        return (a->npos == 2 && a->peer && a->dataset && a->principal && a->tenant &&
                a->purpose)
                   ? 0
                   : 2;
    }
    if (strcmp(verb, "token") == 0) {
        return (a->npos == 2 && a->peer && a->principal && a->tenant && a->purpose) ? 0 : 2;
    }
    return 2;
}

/* --- fetching /v1/site --- */

struct fetch {
    struct ant_buf body;
    struct ant_buf cert; /* the last certificate of the chain presented, PEM */
};

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
    struct fetch *f = ctx;
    return ant_buf_append(&f->body, p, sz * n) == 0 ? sz * n : 0;
}

/* GET url/v1/site. anchor NULL: verification off, used only to see what the peer presents
 * (nothing is trusted until the admin confirms); else only `anchor` is trusted. */
static int fetch_site(const char *url, struct ant_bytes anchor, struct fetch *f, struct ant_diag *d)
{
    char full[ANT_PEER_URL_MAX + 16];
    CURL *h = curl_easy_init();
    int rc = 0;
    long status = 0;
    if (h == NULL) {
        return -ENOMEM;
    }
    snprintf(full, sizeof(full), "%s/v1/site", url);
    curl_easy_setopt(h, CURLOPT_URL, full);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (anchor.p == NULL) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    } else {
        struct curl_blob blob = {(void *)(uintptr_t)anchor.p, anchor.len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        ant_diag_set(d, "%s: %s", full, curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        ant_diag_set(d, "%s answered %ld", full, status);
        rc = -EIO;
        goto out;
    }
    if (anchor.p == NULL) {
        struct curl_certinfo *ci = NULL;
        static const char tag[] = "Cert:";
        curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci);
        if (ci == NULL || ci->num_of_certs < 1) {
            ant_diag_set(d, "%s presented no certificate", full);
            rc = -EIO;
            goto out;
        }
        /* the last certificate presented: the self-signed one of an antenna site, or the
         * topmost of a chain, which then anchors it */
        for (struct curl_slist *e = ci->certinfo[ci->num_of_certs - 1]; e != NULL; e = e->next) {
            if (strncmp(e->data, tag, sizeof(tag) - 1) == 0) {
                rc = ant_buf_append_str(&f->cert, e->data + sizeof(tag) - 1);
                rc = rc < 0 ? rc : ant_buf_terminate(&f->cert);
            }
        }
        if (rc == 0 && f->cert.len == 0) {
            ant_diag_set(d, "%s: the certificate could not be read", full);
            rc = -EIO;
        }
    }
out:
    curl_easy_cleanup(h);
    return rc;
}

struct site_doc {
    char id[ANT_NAME_MAX + 1];
    char region[ANT_NAME_MAX + 1];
    char cert_sha256[65];
    uint8_t kx[ANT_KEY_LEN], ked[ANT_KEY_LEN];
};

static int parse_site(struct ant_bytes body, struct site_doc *out, struct ant_diag *d)
{
    json_t *doc = NULL;
    int rc = ant_json_parse(body, SITE_DOC_MAX, 4, &doc, d);
    if (rc < 0) {
        return -EBADMSG;
    }
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *region = json_string_value(json_object_get(doc, "region"));
    const char *fp = json_string_value(json_object_get(doc, "tls_cert_sha256"));
    json_t *pk = json_object_get(doc, "public_keys");
    const char *x = json_string_value(json_object_get(pk, "x25519"));
    const char *ed = json_string_value(json_object_get(pk, "ed25519"));
    if (id == NULL || region == NULL || x == NULL || ed == NULL ||
        strlen(id) >= sizeof(out->id) || strlen(region) >= sizeof(out->region) ||
        ant_key_b64_decode(ant_bytes_str(x), out->kx) < 0 ||
        ant_key_b64_decode(ant_bytes_str(ed), out->ked) < 0) {
        ant_diag_set(d, "the peer's /v1/site is not an antenna site description");
        rc = -EBADMSG;
        goto out;
    }
    snprintf(out->id, sizeof(out->id), "%s", id);
    snprintf(out->region, sizeof(out->region), "%s", region);
    snprintf(out->cert_sha256, sizeof(out->cert_sha256), "%s", fp != NULL ? fp : "");
out:
    json_decref(doc);
    return rc;
}

/* SHA-256 of a public key as hex, the fingerprint shown to admins. */
static void key_fp(const uint8_t k[ANT_KEY_LEN], char out[65])
{
    uint8_t h[32];
    unsigned n = 0;
    if (EVP_Digest(k, ANT_KEY_LEN, h, &n, EVP_sha256(), NULL) != 1) {
        memset(h, 0, sizeof(h));
    }
    ant_hex_encode(h, sizeof(h), out);
}

static bool confirm(void)
{
    char line[16];
    FILE *tty = fopen("/dev/tty", "r+");
    bool yes = false;
    if (tty == NULL) {
        fprintf(stderr, "antenna admin peer: no terminal to confirm on; use --yes after checking"
                        " the fingerprints, or --pubkeys/--ca\n");
        return false;
    }
    fprintf(tty, "Pin these keys and this certificate for the peer? [y/N] ");
    fflush(tty);
    if (fgets(line, sizeof(line), tty) != NULL) {
        yes = line[0] == 'y' || line[0] == 'Y';
    }
    fclose(tty);
    return yes;
}

/* --- the commands --- */

struct pctx {
    struct peer_args *a;
    int dirfd;
    struct ant_store *st;
    struct ant_site_keys keys;
    struct ant_audit *audit;
    char actor[ANT_NAME_MAX + 1];
};

static int audit(struct pctx *c, const char *action, const char *id, const char *detail)
{
    struct ant_audit_event ev = {
        .actor = c->actor,
        .credential = "local",
        .action = action,
        .resource_kind = "peer",
        .resource_id = id,
        .decision = ANT_AUDIT_ALLOW,
        .reason = "site_operator",
        .detail = detail,
    };
    int64_t seq = ant_audit_append(c->audit, &ev);
    if (seq < 0) {
        fprintf(stderr, "antenna admin peer: cannot write the audit event (%s): nothing was"
                        " done\n",
                strerror((int)-seq));
        return (int)seq;
    }
    return 0;
}

static int read_small_file(const char *path, size_t max, struct ant_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : 0;
    ant_buf_init(out, max);
    rc = rc < 0 ? rc : ant_read_all(fd, out);
    rc = rc < 0 ? rc : ant_buf_terminate(out);
    ant_close(fd);
    return rc;
}

static int peer_add(struct pctx *c)
{
    struct peer_args *a = c->a;
    struct fetch f = {ANT_BUF_INIT(SITE_DOC_MAX), ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX)};
    struct fetch f2 = {ANT_BUF_INIT(SITE_DOC_MAX), ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX)};
    struct ant_buf pub = ANT_BUF_INIT(0);
    struct ant_diag d = {{0}};
    struct ant_peer p;
    struct site_doc sd, sd2;
    char fp_cert[65] = "", fp_x[65], fp_ed[65], *detail = NULL;
    int rc;
    memset(&p, 0, sizeof(p));
    memset(&sd, 0, sizeof(sd));
    if (!ant_name_is_valid(a->id) || !ant_name_is_valid(a->region) ||
        !ant_peer_url_is_valid(a->url)) {
        fprintf(stderr, "antenna admin peer: --id and --region must be names, --url an https://"
                        " URL without a trailing slash\n");
        rc = -EINVAL;
        goto out;
    }
    if (a->pubkeys != NULL) {
        rc = read_small_file(a->pubkeys, ANT_KEYFILE_MAX, &pub);
        rc = rc < 0 ? rc
                    : ant_keyfile_public_decode(ant_buf_view(&pub), ANT_KEYFILE_C4GH_PUBLIC, sd.kx,
                                                &d);
        rc = rc < 0 ? rc
                    : ant_keyfile_public_decode(ant_buf_view(&pub), ANT_KEYFILE_ED25519_PUBLIC,
                                                sd.ked, &d);
        if (rc < 0) {
            fprintf(stderr, "antenna admin peer: %s: %s\n", a->pubkeys,
                    ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
        rc = read_small_file(a->ca, ANT_PEER_ANCHOR_MAX, &f.cert);
        if (rc < 0) {
            fprintf(stderr, "antenna admin peer: %s: %s\n", a->ca, strerror(-rc));
            goto out;
        }
    } else {
        rc = fetch_site(a->url, ANT_BYTES_NULL, &f, &d);
        rc = rc < 0 ? rc : parse_site(ant_buf_view(&f.body), &sd, &d);
        if (rc < 0) {
            fprintf(stderr, "antenna admin peer: %s\n", ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
        if (strcmp(sd.id, a->id) != 0) {
            fprintf(stderr, "antenna admin peer: %s says it is site '%s', not '%s'\n", a->url,
                    sd.id, a->id);
            rc = -EINVAL;
            goto out;
        }
        if (strcmp(sd.region, a->region) != 0) {
            fprintf(stderr, "antenna admin peer: note: the peer states region %s; pinning the"
                            " region you gave (%s)\n",
                    sd.region, a->region);
        }
    }
    rc = ant_tlscert_fingerprint(ant_buf_view(&f.cert), fp_cert);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: the trust anchor is not a PEM certificate\n");
        rc = -EINVAL;
        goto out;
    }
    key_fp(sd.kx, fp_x);
    key_fp(sd.ked, fp_ed);
    printf("peer         %s\nurl          %s\nregion       %s\n"
           "tls cert     SHA256:%s\nx25519 key   SHA256:%s\ned25519 key  SHA256:%s\n",
           a->id, a->url, a->region, fp_cert, fp_x, fp_ed);
    fflush(stdout);
    if (a->pubkeys == NULL) {
        if (sd.cert_sha256[0] != '\0' && strcmp(sd.cert_sha256, fp_cert) != 0) {
            fprintf(stderr, "antenna admin peer: the certificate presented is not the one the"
                            " site describes (a proxy in between?): refused\n");
            rc = -EKEYREJECTED;
            goto out;
        }
        if (!a->yes && !confirm()) {
            fprintf(stderr, "antenna admin peer: not confirmed: nothing pinned\n");
            rc = -ECANCELED;
            goto out;
        }
        /* the anchor must verify the peer's certificate for this URL's host name */
        memset(&sd2, 0, sizeof(sd2));
        rc = fetch_site(a->url, ant_buf_view(&f.cert), &f2, &d);
        rc = rc < 0 ? rc : parse_site(ant_buf_view(&f2.body), &sd2, &d);
        if (rc == 0 && (sodium_memcmp(sd.kx, sd2.kx, ANT_KEY_LEN) != 0 ||
                        sodium_memcmp(sd.ked, sd2.ked, ANT_KEY_LEN) != 0)) {
            ant_diag_set(&d, "the peer's keys changed between two requests");
            rc = -EKEYREJECTED;
        }
        if (rc < 0) {
            fprintf(stderr, "antenna admin peer: checking the pinned certificate: %s\n",
                    ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
    }
    snprintf(p.id, sizeof(p.id), "%s", a->id);
    snprintf(p.url, sizeof(p.url), "%s", a->url);
    snprintf(p.region, sizeof(p.region), "%s", a->region);
    memcpy(p.x25519_pk, sd.kx, ANT_KEY_LEN);
    memcpy(p.ed25519_pk, sd.ked, ANT_KEY_LEN);
    snprintf(p.added_by, sizeof(p.added_by), "%s", c->actor);
    /* packed, not printed: a URL holding a quote or past the buffer stays one JSON object */
    json_t *dj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "url", a->url, "region", a->region,
                           "tls_cert_sha256", fp_cert, "x25519_sha256", fp_x, "ed25519_sha256",
                           fp_ed, "how", a->pubkeys != NULL ? "files" : "fetched");
    detail = dj != NULL ? json_dumps(dj, JSON_COMPACT) : NULL;
    json_decref(dj);
    if (detail == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = ant_store_begin(c->st);
    if (rc < 0) {
        goto out;
    }
    rc = ant_peer_add(c->st, &p, ant_buf_view(&f.cert));
    rc = rc < 0 ? rc : audit(c, "admin.peer.add", a->id, detail);
    rc = rc < 0 ? rc : ant_store_commit(c->st);
    if (rc < 0) {
        ant_store_rollback(c->st);
        goto out;
    }
    printf(a->json ? "{\"peer\": \"%s\"}\n" : "peer %s added\n", a->id);
    rc = fflush(stdout) == 0 ? 0 : -EIO;
out:
    free(detail);
    ant_buf_fini(&f.body);
    ant_buf_fini(&f.cert);
    ant_buf_fini(&f2.body);
    ant_buf_fini(&f2.cert);
    ant_buf_fini(&pub);
    return rc;
}

static int peer_list(struct pctx *c)
{
    json_t *rows = NULL;
    char detail[64];
    int rc = ant_peer_list(c->st, &rows);
    if (rc < 0) {
        return rc;
    }
    snprintf(detail, sizeof(detail), "{\"rows\":%zu}", json_array_size(rows));
    rc = audit(c, "admin.peer.list", NULL, detail);
    if (rc == 0 && c->a->json) {
        char *s = json_dumps(rows, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        rc = s == NULL ? -ENOMEM : 0;
        if (s != NULL) {
            printf("%s\n", s);
        }
        free(s);
    } else if (rc == 0) {
        size_t i;
        json_t *o;
        printf("%-16s %-10s %-44s %s\n", "ID", "REGION", "ED25519", "URL");
        json_array_foreach(rows, i, o)
        {
            printf("%-16s %-10s %-44s %s\n", json_string_value(json_object_get(o, "id")),
                   json_string_value(json_object_get(o, "region")),
                   json_string_value(json_object_get(o, "ed25519")),
                   json_string_value(json_object_get(o, "url")));
        }
        if (json_array_size(rows) == 0) {
            printf("(none)\n");
        }
    }
    json_decref(rows);
    return rc < 0 ? rc : (fflush(stdout) == 0 ? 0 : -EIO);
}

static int peer_remove(struct pctx *c)
{
    const char *id = c->a->pos[2];
    int rc = ant_store_begin(c->st);
    if (rc < 0) {
        return rc;
    }
    rc = ant_peer_remove(c->st, id);
    rc = rc < 0 ? rc : audit(c, "admin.peer.remove", id, NULL);
    rc = rc < 0 ? rc : ant_store_commit(c->st);
    if (rc < 0) {
        ant_store_rollback(c->st);
        return rc;
    }
    printf(c->a->json ? "{\"peer\": \"%s\", \"removed\": true}\n" : "peer %s removed\n", id);
    return fflush(stdout) == 0 ? 0 : -EIO;
}

/* What this site recorded of a peer's checkpoints: with -o json the export's checkpoint lines,
 * byte for byte the format the peer's own export has (the input of the peer's `audit verify
 * --witness`); the table adds the rollbacks seen (a checkpoint served as the latest after a
 * higher one was recorded), whose checkpoints are among those lines. */
static int peer_witnessed(struct pctx *c)
{
    const char *id = c->a->pos[2];
    struct ant_audit_ckpt *w = NULL;
    struct ant_witness_rollback *rb = NULL;
    int64_t *seen = NULL;
    size_t n = 0, nrb = 0;
    char detail[96];
    int rc = ant_name_is_valid(id) ? ant_peer_witnessed(c->st, id, &w, &seen, &n) : -EINVAL;
    rc = rc < 0 ? rc : ant_peer_witness_rollbacks(c->st, id, &rb, &nrb);
    if (rc < 0) {
        goto out;
    }
    snprintf(detail, sizeof(detail), "{\"rows\":%zu,\"rollbacks\":%zu}", n, nrb);
    rc = audit(c, "admin.peer.witnessed", id, detail);
    if (rc == 0 && !c->a->json) {
        printf("%-12s %-64s %-15s %-12s %s\n", "SEQ", "HASH", "TIME_MS", "PREV_SEQ", "SEEN_MS");
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (c->a->json) {
            json_t *o = ant_audit_ckpt_to_json(&w[i]);
            char *line = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            rc = line == NULL ? -ENOMEM : 0;
            if (line != NULL) {
                printf("%s\n", line);
            }
            free(line);
            json_decref(o);
        } else {
            char hash[2 * ANT_AUDIT_HASH_LEN + 1];
            ant_hex_encode(w[i].hash, sizeof(w[i].hash), hash);
            printf("%-12lld %-64s %-15lld %-12lld %lld\n", (long long)w[i].seq, hash,
                   (long long)w[i].time_ms, (long long)w[i].prev_seq, (long long)seen[i]);
        }
    }
    if (rc == 0 && !c->a->json && n == 0) {
        printf("(none)\n");
    }
    if (rc == 0 && !c->a->json && nrb > 0) {
        printf("\nrollbacks: SEQ served as the latest after HIGHEST was recorded\n");
        printf("%-12s %-64s %-15s %s\n", "SEQ", "HASH", "HIGHEST", "SEEN_MS");
    }
    for (size_t i = 0; rc == 0 && !c->a->json && i < nrb; i++) {
        char hash[2 * ANT_AUDIT_HASH_LEN + 1];
        ant_hex_encode(rb[i].hash, sizeof(rb[i].hash), hash);
        printf("%-12lld %-64s %-15lld %lld\n", (long long)rb[i].seq, hash,
               (long long)rb[i].highest, (long long)rb[i].seen_ms);
    }
    rc = rc < 0 ? rc : (fflush(stdout) == 0 ? 0 : -EIO);
out:
    free(w);
    free(seen);
    free(rb);
    return rc;
}

/* A federation token signed with this site's key, audited (its claims; never the token). */
static int peer_token(struct pctx *c)
{
    struct peer_args *a = c->a;
    struct ant_config cfg;
    struct ant_diag d = {{0}};
    struct ant_fed_token t;
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    uint64_t iat = 0, ttl = ANT_TOKEN_FED_LIFETIME_MAX;
    memset(&t, 0, sizeof(t));
    ant_config_defaults(&cfg);
    int rc = ant_config_load(c->dirfd, "antenna.conf", &cfg, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: %s\n", ant_diag_msg(&d, strerror(-rc)));
        return rc;
    }
    if ((a->iat != NULL && ant_parse_u64(ant_bytes_str(a->iat), 1, INT64_MAX, &iat) < 0) ||
        (a->ttl != NULL &&
         ant_parse_u64(ant_bytes_str(a->ttl), 1, ANT_TOKEN_FED_LIFETIME_MAX, &ttl) < 0)) {
        fprintf(stderr, "antenna admin peer: --iat is unix seconds, --ttl 1..%d seconds\n",
                ANT_TOKEN_FED_LIFETIME_MAX);
        return -EINVAL;
    }
    snprintf(t.iss, sizeof(t.iss), "%s", cfg.site_id);
    snprintf(t.aud, sizeof(t.aud), "%s", a->peer);
    snprintf(t.principal, sizeof(t.principal), "%s", a->principal);
    snprintf(t.tenant, sizeof(t.tenant), "%s@%s", a->tenant, cfg.site_id);
    snprintf(t.purpose, sizeof(t.purpose), "%s", a->purpose);
    t.iat = iat != 0 ? (int64_t)iat : ant_now_unix();
    t.exp = t.iat + (int64_t)ttl;
    rc = ant_token_fed_sign(c->keys.sign, &t, &out);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: cannot sign: %s\n", strerror(-rc));
        goto out;
    }
    json_t *dj = json_pack("{s:s, s:s, s:s, s:s}", "aud", t.aud, "sub", t.principal, "tenant",
                           t.tenant, "purpose", t.purpose);
    char *detail = dj != NULL ? json_dumps(dj, JSON_COMPACT) : NULL;
    json_decref(dj);
    rc = detail != NULL ? audit(c, "admin.peer.token", a->peer, detail) : -ENOMEM;
    free(detail);
    if (rc == 0) {
        printf("%s\n", (const char *)out.p);
        rc = fflush(stdout) == 0 ? 0 : -EIO;
    }
out:
    ant_buf_wipe_fini(&out);
    return rc;
}

/* --- peer pull --- */

struct sink {
    int fd;
    uint64_t off;
};

static int to_fd(void *arg, const uint8_t *p, size_t len)
{
    struct sink *k = arg;
    int rc = ant_write_all(k->fd, p, len);
    k->off += len;
    return rc;
}

/* Creates the parent folders of rel under dirfd (no symlink followed). */
static int make_parents(int dirfd, const char *rel)
{
    char buf[ANT_PATH_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", rel);
    for (char *s = strchr(buf, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdirat(dirfd, buf, 0700) < 0 && errno != EEXIST) {
            return -errno;
        }
        *s = '/';
    }
    return 0;
}

/* Writes one pulled file into outfd at its logical path: decrypted (checked against the
 * manifest's plaintext digest before it is renamed into place) or copied encrypted. */
static int write_out(int archive_fd, int outfd, const struct ant_fed_pulled_file *pf,
                     const struct ant_key *kx, bool encrypted)
{
    char tmp[64];
    uint8_t rnd[8], buf[65536];
    struct ant_c4gh_reader *rd = NULL;
    struct ant_c4gh_digests dg;
    struct sink k = {-1, 0};
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(tmp, ".pull-", 6);
    ant_hex_encode(rnd, sizeof(rnd), tmp + 6);
    int in = openat(archive_fd, pf->archive_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int rc = in < 0 ? -errno : make_parents(outfd, pf->path);
    if (rc == 0) {
        k.fd = openat(outfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        rc = k.fd < 0 ? -errno : 0;
    }
    rc = rc < 0 || encrypted ? rc : ant_c4gh_reader_new(kx, NULL, to_fd, &k, &rd);
    while (rc == 0) {
        ssize_t n = ant_read_full(in, buf, sizeof(buf));
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        rc = encrypted ? to_fd(&k, buf, (size_t)n)
                       : ant_c4gh_reader_write(rd, ant_bytes_of(buf, (size_t)n));
    }
    if (rc == 0 && !encrypted) {
        rc = ant_c4gh_reader_finish(rd, &dg);
        if (rc == 0 && sodium_memcmp(dg.sha256_plain, pf->sha256, 32) != 0) {
            rc = -EBADMSG; /* not what the peer's signed manifest says */
        }
    }
    if (rc == 0) {
        char final[ANT_PATH_MAX + 8];
        snprintf(final, sizeof(final), "%s%s", pf->path, encrypted ? ".c4gh" : "");
        rc = ant_rename_durable(k.fd, outfd, tmp, final);
    }
    if (rc < 0 && k.fd >= 0) {
        (void)unlinkat(outfd, tmp, 0);
    }
    ant_c4gh_reader_free(rd);
    ant_close(k.fd);
    ant_close(in);
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

/* What a pull's pass over archive/fed did ([federation] cache_max). */
struct pull_trim {
    uint64_t max;          /* cache_max; 0: no limit, no pass */
    uint64_t jobs_running; /* > 0: no pass, the daemon's remote stage jobs read copies */
    bool trimmed;          /* a pass ran: es holds what it did */
    int err;               /* the pass (or reading the cache's size) failed */
    uint64_t bytes;        /* the rows' bytes after it */
    struct ant_fed_evict_stats es;
};

/* The daemon's eviction (staging/jobs.h) run once a pull is done, as the daemon runs it when a
 * remote job ends: the same limit and grace period, and not while a remote stage job of the
 * daemon is recorded running, since that one may read any copy, even one it looked up more
 * than the grace period ago. A job starting meanwhile looks its copies up after the cut-off
 * and keeps them. This pull's own copies are within the grace period. */
static void pull_trim(struct pctx *c, uint64_t max, int archive_fd, struct pull_trim *t)
{
    memset(t, 0, sizeof(*t));
    t->max = max;
    if (max > 0) {
        t->err = ant_fed_cache_remote_jobs_running(c->st, &t->jobs_running);
    }
    if (max > 0 && t->err == 0 && t->jobs_running == 0) {
        t->err = ant_fed_cache_evict(c->st, archive_fd, max, 0, ANT_FED_CACHE_GRACE_S, &t->es);
        t->trimmed = t->err == 0;
        t->bytes = t->es.total_after;
    } else if (t->err == 0) {
        t->err = ant_fed_cache_bytes(c->st, &t->bytes);
    }
    if (t->err < 0) {
        /* the pull itself succeeded: its files are there */
        fprintf(stderr, "antenna admin peer pull: cannot trim archive/fed to cache_max: %s\n",
                strerror(-t->err));
    }
}

static int print_pull(const struct peer_args *a, const struct ant_fed_pulled *res,
                      const struct pull_trim *t)
{
    size_t cached = 0;
    for (size_t i = 0; i < res->nfiles; i++) {
        cached += res->files[i].cached ? 1 : 0;
    }
    if (!a->json) {
        printf("transfer %s: %zu files (%zu from the cache), %llu bytes received, %u retries,"
               " %u refetched\n",
               res->transfer_id, res->nfiles, cached, (unsigned long long)res->stats.bytes,
               res->stats.retries, res->stats.refetched);
        if (t->max > 0 && t->err == 0 && t->trimmed) {
            printf("archive cache: evicted %llu %s (%llu bytes), %llu bytes cached,"
                   " cache_max %llu\n",
                   (unsigned long long)t->es.evicted_files,
                   t->es.evicted_files == 1 ? "copy" : "copies",
                   (unsigned long long)t->es.evicted_bytes, (unsigned long long)t->bytes,
                   (unsigned long long)t->max);
        } else if (t->max > 0 && t->err == 0) {
            printf("archive cache: not trimmed while %llu remote stage %s, %llu bytes"
                   " cached, cache_max %llu\n",
                   (unsigned long long)t->jobs_running,
                   t->jobs_running == 1 ? "job runs" : "jobs run", (unsigned long long)t->bytes,
                   (unsigned long long)t->max);
        }
        return fflush(stdout) == 0 ? 0 : -EIO;
    }
    json_t *doc = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:o, s:b, s:I, s:I, s:I, s:s?}}", "transfer_id",
        res->transfer_id, "files", (json_int_t)res->nfiles, "cached", (json_int_t)cached, "bytes",
        (json_int_t)res->stats.bytes, "retries", (json_int_t)res->stats.retries, "refetched",
        (json_int_t)res->stats.refetched, "cache", "max", (json_int_t)t->max, "bytes",
        t->err == 0 ? json_integer((json_int_t)t->bytes) : json_null(), "trimmed", t->trimmed,
        "evicted_files", (json_int_t)t->es.evicted_files, "evicted_bytes",
        (json_int_t)t->es.evicted_bytes, "remote_jobs_running", (json_int_t)t->jobs_running,
        "error", t->err < 0 ? strerror(-t->err) : NULL);
    char *out = doc != NULL ? json_dumps(doc, JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (out == NULL) {
        return -ENOMEM;
    }
    printf("%s\n", out);
    free(out);
    return fflush(stdout) == 0 ? 0 : -EIO;
}

static int peer_pull(struct pctx *c)
{
    struct peer_args *a = c->a;
    struct ant_config cfg;
    struct ant_diag d = {{0}};
    struct ant_fed_pulled res;
    struct ant_fetch_opts o = {0};
    uint64_t conns = 0;
    int archive_fd = -1, outfd = -1;
    memset(&res, 0, sizeof(res));
    ant_config_defaults(&cfg);
    int rc = ant_config_load(c->dirfd, "antenna.conf", &cfg, &d);
    if (rc == 0 && a->conns != NULL &&
        ant_parse_u64(ant_bytes_str(a->conns), 1, 64, &conns) < 0) {
        ant_diag_set(&d, "--connections is 1..64");
        rc = -EINVAL;
    }
    o.max_conns = (unsigned)conns;
    if (rc == 0 && ((a->rate != NULL && ant_parse_size(ant_bytes_str(a->rate), 1ull << 40,
                                                       &o.max_rate) < 0) ||
                    (a->range != NULL && ant_parse_size(ant_bytes_str(a->range), 1ull << 40,
                                                        &o.range_size) < 0))) {
        ant_diag_set(&d, "--max-rate and --range-size are sizes (64K, 8M, ...)");
        rc = -EINVAL;
    }
    if (rc == 0) {
        archive_fd = openat(c->dirfd, cfg.archive_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = archive_fd < 0 ? -errno : 0;
    }
    if (rc == 0 && a->out != NULL && mkdir(a->out, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
    }
    if (rc == 0 && a->out != NULL) {
        outfd = open(a->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = outfd < 0 ? -errno : 0;
    }
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer pull: %s\n", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    struct ant_fed_pull_req q = {
        .st = c->st,
        .audit = c->audit,
        .keys = &c->keys,
        .self_id = cfg.site_id,
        .archive_fd = archive_fd,
        .peer_id = a->peer,
        .dataset = a->dataset,
        .principal = a->principal,
        .tenant = a->tenant,
        .purpose = a->purpose,
        .opts = &o,
    };
    rc = ant_fed_pull(&q, &res, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer pull: transfer %s: %s\n", res.transfer_id,
                ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    for (size_t i = 0; rc == 0 && a->out != NULL && i < res.nfiles; i++) {
        rc = write_out(archive_fd, outfd, &res.files[i], c->keys.kx, a->encrypted);
        if (rc < 0) {
            fprintf(stderr, "antenna admin peer pull: %s: %s\n", res.files[i].path,
                    rc == -EBADMSG ? "does not match the signed manifest" : strerror(-rc));
        }
    }
    if (rc == 0) {
        struct pull_trim t;
        pull_trim(c, cfg.fed_cache_max, archive_fd, &t);
        rc = print_pull(a, &res, &t);
    }
out:
    ant_fed_pulled_fini(&res);
    ant_close(archive_fd);
    ant_close(outfd);
    return rc;
}

static void set_actor(struct pctx *c)
{
    struct passwd *pw = getpwuid(geteuid());
    char name[ANT_NAME_MAX - 4 + 1];
    size_t n = 0;
    const char *u = pw != NULL ? pw->pw_name : "unknown";
    for (; u[n] != '\0' && n + 1 < sizeof(name); n++) {
        name[n] = u[n];
    }
    name[n] = '\0';
    snprintf(c->actor, sizeof(c->actor), "cli:%s", name);
}

int ant_cli_peer(int argc, char **argv)
{
    struct peer_args a;
    struct pctx c;
    struct ant_diag d = {{0}};
    int keysfd = -1;
    memset(&a, 0, sizeof(a));
    memset(&c, 0, sizeof(c));
    c.a = &a;
    c.dirfd = -1;
    int rc = parse_args(argc, argv, &a);
    if (rc == 3) {
        usage(stdout);
        return 0;
    }
    if (rc != 0) {
        usage(stderr);
        return 2;
    }
    set_actor(&c);
    c.dirfd = open(a.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c.dirfd < 0) {
        rc = -errno;
        fprintf(stderr, "antenna admin peer: %s: %s\n", a.dir, strerror(-rc));
        goto out;
    }
    rc = ant_store_open(c.dirfd, "antenna.db", 0, &c.st);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: %s/antenna.db: %s\n", a.dir, strerror(-rc));
        goto out;
    }
    keysfd = openat(c.dirfd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = keysfd < 0 ? -errno
                    : ant_site_keys_load(keysfd, getenv("ANTENNA_KEY_PASSPHRASE"), &c.keys, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: cannot load the site key to sign the audit log:"
                        " %s\n",
                ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    rc = ant_audit_open(c.dirfd, "audit.db", 0, c.keys.sign, NULL, &c.audit);
    if (rc < 0) {
        fprintf(stderr, "antenna admin peer: %s/audit.db: %s\n", a.dir, strerror(-rc));
        goto out;
    }
    if (strcmp(a.pos[1], "add") == 0) {
        rc = peer_add(&c);
    } else if (strcmp(a.pos[1], "list") == 0) {
        rc = peer_list(&c);
    } else if (strcmp(a.pos[1], "token") == 0) {
        rc = peer_token(&c);
    } else if (strcmp(a.pos[1], "pull") == 0) {
        rc = peer_pull(&c);
    } else if (strcmp(a.pos[1], "witnessed") == 0) {
        rc = peer_witnessed(&c);
    } else {
        rc = peer_remove(&c);
    }
    if (rc == -EEXIST) {
        fprintf(stderr, "antenna admin peer: that peer is already pinned (remove it first to"
                        " pin new keys)\n");
    } else if (rc == -ENOENT && strcmp(a.pos[1], "remove") == 0) {
        fprintf(stderr, "antenna admin peer: no such peer\n");
    }
out:
    ant_audit_close(c.audit);
    ant_site_keys_fini(&c.keys);
    ant_store_close(c.st);
    ant_close(keysfd);
    ant_close(c.dirfd);
    return rc < 0 ? 1 : 0;
}
