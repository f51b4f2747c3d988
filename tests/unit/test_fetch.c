/* staging/fetch.h: the manifest parser, and ant_fetch_files against a small HTTPS peer in this
 * process (ranges over several connections, a range cut mid-way and resumed, a byte flipped in
 * transit and the body fetched again, a body wrong twice); the witnessing of the peer's audit
 * checkpoints at the start of a session (ant_fed_manifest), with checkpoints signed by a real
 * audit log of the peer's; the pull as a whole, with tokens, policy and audit at both sites,
 * runs in test_federation.sh, witnessing between two daemons in test_witness.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <sodium.h>

#include "crypto/c4gh.h"
#include "crypto/keys.h"
#include "policy/audit.h"
#include "policy/peers.h"
#include "policy/store.h"
#include "staging/fetch.h"
#include "tests/unit/testutil.h"

#define Z64 "0000000000000000000000000000000000000000000000000000000000000000"
#define F64 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static const char g_valid[] =
    "{\"version\":1,\"site\":\"site-a\",\"peer\":\"site-b\",\"transfer_id\":\"tr_1\","
    "\"issued_at\":1,\"dataset\":{\"id\":\"ds_1\",\"name\":\"cohort\",\"tenant\":\"g\","
    "\"classification\":\"sensitive\"},\"files\":["
    "{\"path\":\"a/b.bin\",\"size\":6,\"body_size\":34,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" F64
    "\"},{\"path\":\"e\",\"size\":0,\"body_size\":0,\"sha256\":\"" F64 "\",\"sha256_c4gh\":\"" Z64
    "\"}]}";

static int parse(const char *s, size_t n, struct ant_fetch_manifest *m)
{
    uint8_t *p = test_memdup(s, n);
    int rc = ant_fetch_manifest_parse((struct ant_bytes){p, n}, "site-a", "ds_1", m, NULL);
    free(p);
    return rc;
}

static void test_manifest_valid_is_parsed(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    assert_int_equal(parse(g_valid, strlen(g_valid), &m), 0);
    assert_int_equal(m.nfiles, 2);
    assert_string_equal(m.dataset_id, "ds_1");
    assert_string_equal(m.dataset_name, "cohort");
    assert_string_equal(m.files[0].path, "a/b.bin");
    assert_int_equal(m.files[0].size, 6);
    assert_int_equal(m.files[0].body_size, 34);
    assert_int_equal(m.files[0].sha256_c4gh[31], 0xff);
    assert_int_equal(m.files[1].sha256[0], 0xff);
    ant_fetch_manifest_fini(&m);
    ant_fetch_manifest_fini(&m); /* idempotent */
}

static void test_manifest_rejects_every_truncation(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    size_t n = strlen(g_valid);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(parse(g_valid, i, &m), -EBADMSG);
    }
}

static void test_manifest_rejects_other_site_dataset_and_bad_entries(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    static const char *const bad[] = {
        "{\"site\":\"site-x\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_2\",\"name\":\"c\"},\"files\":[]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":{}}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"../x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"/x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":-1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":1,\"body_size\":29,\"sha256\":\"00\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\"}]}",
        ("{\"site\":\"site-a\",\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},"
         "\"files\":[]}"),
        "[]",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(parse(bad[i], strlen(bad[i]), &m), -EBADMSG);
    }
}

/* A manifest of the given paths (each entry otherwise valid). */
static int parse_paths(const char *const *paths, size_t n, struct ant_fetch_manifest *m,
                       struct ant_diag *d)
{
    struct ant_buf b = ANT_BUF_INIT(1u << 16);
    assert_int_equal(ant_buf_append_str(&b, "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\","
                                            "\"name\":\"c\"},\"files\":["),
                     0);
    for (size_t i = 0; i < n; i++) {
        char e[256];
        snprintf(e, sizeof(e),
                 "%s{\"path\":\"%s\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64
                 "\",\"sha256_c4gh\":\"" Z64 "\"}",
                 i > 0 ? "," : "", paths[i]);
        assert_int_equal(ant_buf_append_str(&b, e), 0);
    }
    assert_int_equal(ant_buf_append_str(&b, "]}"), 0);
    uint8_t *p = test_memdup(b.p, b.len);
    int rc = ant_fetch_manifest_parse((struct ant_bytes){p, b.len}, "site-a", "ds_1", m, d);
    free(p);
    ant_buf_fini(&b);
    return rc;
}

/* The files are written out as one folder tree: "a" and "a/b" cannot both be files, so such a
 * manifest is refused whole, naming both, before anything is fetched. */
static void test_manifest_refuses_a_file_that_is_also_a_folder(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    struct ant_diag d = {{0}};
    static const char *const fine[] = {"a/b", "a/bc", "a/b-c/d", "A/b/c", "a/b.d/e"};
    assert_int_equal(parse_paths(fine, ANT_ARRAY_LEN(fine), &m, &d), 0);
    assert_int_equal(m.nfiles, ANT_ARRAY_LEN(fine));
    ant_fetch_manifest_fini(&m);
    static const char *const under[] = {"x/y/z", "a/b", "x/y"};
    assert_int_equal(parse_paths(under, ANT_ARRAY_LEN(under), &m, &d), -EBADMSG);
    assert_non_null(strstr(d.msg, "both x/y and x/y/z"));
    assert_null(m.files);
    static const char *const deep[] = {"a", "q", "a/b/c/d"};
    assert_int_equal(parse_paths(deep, ANT_ARRAY_LEN(deep), &m, &d), -EBADMSG);
    assert_non_null(strstr(d.msg, "both a and a/b/c/d"));
    static const char *const twice[] = {"r/s", "t", "r/s"};
    assert_int_equal(parse_paths(twice, ANT_ARRAY_LEN(twice), &m, &d), -EBADMSG);
    assert_non_null(strstr(d.msg, "r/s twice"));
}


/* --- a peer over HTTPS: serves two Crypt4GH files as routes_fed.c does (?part=header,
 * ?part=body with Range, or whole), with faults on demand --- */

struct tfile {
    const char *path;   /* logical path, in the URL after /files/ */
    struct ant_buf c4gh; /* header then body */
    struct ant_c4gh_digests dg;
};

struct tsrv {
    SSL_CTX *ctx;
    EVP_PKEY *pk;
    X509 *cert;
    char *pem;
    int lfd;
    int port;
    pthread_t acc;
    pthread_t conns[64];
    int nconns;
    pthread_mutex_t mu;
    struct tfile files[2];
    int cut_once;    /* the next body range with a nonzero start is cut half-way */
    int flip_once;   /* the next body range has one byte flipped */
    int flip_always; /* every body range has one byte flipped */
    int requests;
    /* the federation routes the witness tests use (under mu): the body of GET
     * /v1/federation/checkpoint (NULL: 404 no_checkpoint) and of ds_1's manifest, with the
     * manifest's X-Antenna-Signature (NULL: 404) */
    const char *ckpt;
    const char *manifest;
    const char *manifest_sig;
    const char *refusal; /* not NULL: the manifest is answered 403 with this JSON body */
    /* called once (then cleared), on the connection's thread, when a checkpoint request has
     * taken its answer and before it is sent: another session's turn in a race (NULL: none) */
    void (*on_ckpt)(void *arg);
    void *on_ckpt_arg;
};

struct tconn {
    struct tsrv *s;
    int fd;
};

static int sink_buf(void *arg, const uint8_t *p, size_t len)
{
    return ant_buf_append(arg, p, len);
}

static void tfile_make(struct tfile *f, const char *path, const struct ant_key *k, size_t plain)
{
    struct ant_c4gh_writer *w = NULL;
    uint8_t *data = malloc(plain + 1);
    assert_non_null(data);
    for (size_t i = 0; i < plain; i++) {
        data[i] = (uint8_t)(i * 131 + (i >> 12));
    }
    f->path = path;
    ant_buf_init(&f->c4gh, 64u << 20);
    assert_int_equal(ant_c4gh_writer_new(k, ant_key_public(k), 1, NULL, 0, sink_buf, &f->c4gh, &w),
                     0);
    assert_int_equal(ant_c4gh_writer_write(w, (struct ant_bytes){data, plain}), 0);
    assert_int_equal(ant_c4gh_writer_finish(w, &f->dg), 0);
    ant_c4gh_writer_free(w);
    free(data);
}

static bool send_all(SSL *ssl, const uint8_t *p, size_t len)
{
    while (len > 0) {
        int n = SSL_write(ssl, p, len > 16384 ? 16384 : (int)len);
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* A JSON document (200, with the signature header when sig is not NULL), or a 404. */
static bool send_doc(SSL *ssl, const char *doc, const char *sig)
{
    char head[512];
    if (doc == NULL) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        return send_all(ssl, (const uint8_t *)nf, strlen(nf));
    }
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "%s%s%s\r\n",
             strlen(doc), sig != NULL ? "X-Antenna-Signature: " : "", sig != NULL ? sig : "",
             sig != NULL ? "\r\n" : "");
    return send_all(ssl, (const uint8_t *)head, strlen(head)) &&
           send_all(ssl, (const uint8_t *)doc, strlen(doc));
}

/* One request: the answer, or false to close the connection. */
static bool serve_one(struct tsrv *s, SSL *ssl, const char *req)
{
    char head[256];
    const struct tfile *f = NULL;
    static const char ckpt[] = "GET /v1/federation/checkpoint ";
    static const char manifest[] = "GET /v1/federation/datasets/ds_1/manifest ";
    if (strncmp(req, ckpt, strlen(ckpt)) == 0 || strncmp(req, manifest, strlen(manifest)) == 0) {
        bool is_ckpt = strncmp(req, ckpt, strlen(ckpt)) == 0;
        pthread_mutex_lock(&s->mu);
        char *doc = (is_ckpt ? s->ckpt : s->manifest) ? strdup(is_ckpt ? s->ckpt : s->manifest)
                                                       : NULL;
        char *sig = !is_ckpt && s->manifest_sig ? strdup(s->manifest_sig) : NULL;
        char *refusal = !is_ckpt && s->refusal ? strdup(s->refusal) : NULL;
        void (*hook)(void *) = is_ckpt ? s->on_ckpt : NULL;
        void *hook_arg = s->on_ckpt_arg;
        if (is_ckpt) {
            s->on_ckpt = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (hook != NULL) {
            hook(hook_arg);
        }
        bool ok;
        if (refusal != NULL) {
            char h403[160];
            snprintf(h403, sizeof(h403),
                     "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n", strlen(refusal));
            ok = send_all(ssl, (const uint8_t *)h403, strlen(h403)) &&
                 send_all(ssl, (const uint8_t *)refusal, strlen(refusal));
        } else {
            ok = send_doc(ssl, doc, sig);
        }
        free(refusal);
        free(doc);
        free(sig);
        return ok;
    }
    for (int i = 0; i < 2; i++) {
        char want[128];
        snprintf(want, sizeof(want), "/files/%s", s->files[i].path);
        const char *at = strstr(req, want);
        if (at != NULL && (at[strlen(want)] == ' ' || at[strlen(want)] == '?')) {
            f = &s->files[i];
        }
    }
    if (f == NULL) {
        snprintf(head, sizeof(head), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return send_all(ssl, (const uint8_t *)head, strlen(head));
    }
    const char *line_end = strstr(req, "\r\n");
    const char *q = strstr(req, "?part=");
    bool header = q != NULL && q < line_end && strncmp(q, "?part=header", 12) == 0;
    bool body = q != NULL && q < line_end && strncmp(q, "?part=body", 10) == 0;
    size_t hlen = (size_t)f->dg.header_len;
    const uint8_t *p = f->c4gh.p + (body ? hlen : 0);
    size_t total = header ? hlen : body ? f->c4gh.len - hlen : f->c4gh.len;
    unsigned long long a = 0, b = total - 1;
    const char *r = strcasestr(req, "\r\nRange: bytes=");
    bool ranged = r != NULL && sscanf(r + 15, "%llu-%llu", &a, &b) == 2;
    assert_true(!ranged || (a <= b && b < total));
    size_t len = (size_t)(b - a + 1);
    bool cut = false, flip = false;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    if (body && ranged && a > 0 && s->cut_once) {
        s->cut_once = 0;
        cut = true;
    }
    if (body && (s->flip_always || s->flip_once)) {
        s->flip_once = 0;
        flip = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (ranged) {
        snprintf(head, sizeof(head),
                 "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                 "Content-Range: bytes %llu-%llu/%zu\r\n\r\n",
                 len, a, b, total);
    } else {
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
    }
    uint8_t *copy = test_memdup(p + a, len);
    if (flip) {
        copy[len / 2] ^= 0x40;
    }
    bool ok = send_all(ssl, (const uint8_t *)head, strlen(head)) &&
              send_all(ssl, copy, cut ? len / 2 + 4097 : len) && !cut;
    free(copy);
    return ok;
}

static void *conn_main(void *arg)
{
    struct tconn *c = arg;
    SSL *ssl = SSL_new(c->s->ctx);
    char req[16384];
    if (ssl != NULL && SSL_set_fd(ssl, c->fd) == 1 && SSL_accept(ssl) == 1) {
        for (;;) {
            size_t n = 0;
            req[0] = '\0';
            while (strstr(req, "\r\n\r\n") == NULL && n + 1 < sizeof(req)) {
                int k = SSL_read(ssl, req + n, (int)(sizeof(req) - 1 - n));
                if (k <= 0) {
                    goto out;
                }
                n += (size_t)k;
                req[n] = '\0';
            }
            if (!serve_one(c->s, ssl, req)) {
                break;
            }
        }
    }
out:
    SSL_free(ssl);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct tsrv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            return NULL; /* the listener was shut down */
        }
        struct tconn *c = malloc(sizeof(*c));
        assert_non_null(c);
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        assert_true(s->nconns < 64);
        assert_int_equal(pthread_create(&s->conns[s->nconns++], NULL, conn_main, c), 0);
        pthread_mutex_unlock(&s->mu);
    }
}

/* A self-signed certificate for 127.0.0.1, the peer's pinned anchor. */
static void tsrv_cert(struct tsrv *s)
{
    s->pk = EVP_EC_gen("P-256");
    s->cert = X509_new();
    assert_non_null(s->pk);
    assert_non_null(s->cert);
    X509_set_version(s->cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(s->cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(s->cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(s->cert), 3600);
    X509_set_pubkey(s->cert, s->pk);
    X509_NAME *name = X509_get_subject_name(s->cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1,
                               -1, 0);
    X509_set_issuer_name(s->cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, s->cert, s->cert, NULL, NULL, 0);
    static const char *const ext[][2] = {{"subjectAltName", "IP:127.0.0.1"},
                                         {"basicConstraints", "critical,CA:TRUE"}};
    for (size_t i = 0; i < ANT_ARRAY_LEN(ext); i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &v3, ext[i][0], ext[i][1]);
        assert_non_null(e);
        X509_add_ext(s->cert, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(s->cert, s->pk, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    assert_int_equal(PEM_write_bio_X509(bio, s->cert), 1);
    long n = BIO_get_mem_data(bio, &p);
    s->pem = calloc(1, (size_t)n + 1);
    assert_non_null(s->pem);
    memcpy(s->pem, p, (size_t)n);
    BIO_free(bio);
}

static void tsrv_start(struct tsrv *s, const struct ant_key *k, size_t big, size_t small)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    tfile_make(&s->files[0], "data/big.bin", k, big);
    tfile_make(&s->files[1], "small.txt", k, small);
    tsrv_cert(s);
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, s->cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, s->pk), 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->lfd, 64), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->acc, NULL, accept_main, s), 0);
}

static void tsrv_stop(struct tsrv *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->acc, NULL);
    close(s->lfd);
    for (int i = 0; i < s->nconns; i++) {
        pthread_join(s->conns[i], NULL);
    }
    SSL_CTX_free(s->ctx);
    X509_free(s->cert);
    EVP_PKEY_free(s->pk);
    free(s->pem);
    for (int i = 0; i < 2; i++) {
        ant_buf_fini(&s->files[i].c4gh);
    }
    pthread_mutex_destroy(&s->mu);
}

static int tok(void *ctx, struct ant_buf *out)
{
    (void)ctx;
    int rc = ant_buf_append_str(out, "test-token");
    return rc < 0 ? rc : ant_buf_terminate(out);
}

struct fetch_case {
    struct tsrv s;
    struct ant_key *k;
    char *dir;
    int dirfd;
    struct ant_fetch_manifest m;
    struct ant_fetch_file mf[2];
    struct ant_fetch_stats st;
    char diag[512];
};

/* The two files over `conns` connections in ranges of 3 cipher segments. */
static int fetch_run(struct fetch_case *c, unsigned conns, uint64_t hold)
{
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", c->s.port);
    struct ant_fetch_peer p = {
        .id = "site-a",
        .url = url,
        .anchor = ant_bytes_str(c->s.pem),
        .token = tok,
        .transfer_id = "tr_test",
    };
    memset(c->mf, 0, sizeof(c->mf));
    for (int i = 0; i < 2; i++) {
        snprintf(c->mf[i].path, sizeof(c->mf[i].path), "%s", c->s.files[i].path);
        c->mf[i].size = c->s.files[i].dg.plain_len;
        c->mf[i].body_size = c->s.files[i].dg.body_len;
        memcpy(c->mf[i].sha256, c->s.files[i].dg.sha256_plain, 32);
        memcpy(c->mf[i].sha256_c4gh, c->s.files[i].dg.sha256_body, 32);
    }
    c->m = (struct ant_fetch_manifest){.dataset_id = "ds_1", .nfiles = 2, .files = c->mf};
    struct ant_fetch_opts o = {
        .max_conns = conns,
        .range_size = 3 * ANT_C4GH_CIPHER_SEGMENT_LEN,
        .backoff_ms = 1,
        .max_retries = 3,
        .hold_max = hold,
    };
    static const char *const names[] = {"big.c4gh", "small.c4gh"};
    struct ant_diag d = {{0}};
    memset(&c->st, 0, sizeof(c->st));
    int rc = ant_fetch_files(&p, "ds_1", &c->m, NULL, names, c->dirfd, c->k, &o, &c->st, &d);
    snprintf(c->diag, sizeof(c->diag), "%s", ant_diag_msg(&d, ""));
    return rc;
}

static void fetch_setup(struct fetch_case *c)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(ant_key_generate(&c->k), 0);
    /* bodies that end mid-segment and mid-block, the big one over 40 ranges */
    tsrv_start(&c->s, c->k, 120 * 65536 + 12345, 70000);
    c->dir = test_tmpdir();
    c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(c->dirfd >= 0);
}

static void fetch_teardown(struct fetch_case *c)
{
    tsrv_stop(&c->s);
    close(c->dirfd);
    test_rmtree(c->dir);
    free(c->dir);
    ant_key_free(c->k);
}

/* The directory holds exactly the two files, each the peer's bytes. */
static void expect_copies(struct fetch_case *c)
{
    char path[4096];
    static const char *const names[] = {"big.c4gh", "small.c4gh"};
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]);
        uint8_t *got = test_read_file(path, &len);
        assert_int_equal(len, c->s.files[i].c4gh.len);
        assert_memory_equal(got, c->s.files[i].c4gh.p, len);
        free(got);
    }
    FILE *ls = NULL;
    snprintf(path, sizeof(path), "ls -A '%s' | wc -l", c->dir);
    ls = popen(path, "r");
    assert_non_null(ls);
    assert_non_null(fgets(path, sizeof(path), ls));
    pclose(ls);
    assert_int_equal(atoi(path), 2); /* no temporary copy left */
}

static void test_fetch_files_ranges_over_connections(void **state)
{
    (void)state;
    /* one connection: every byte in order; several: bytes ahead held in memory, or (hold 1)
     * none held and read back from the file to be hashed */
    static const struct {
        unsigned conns;
        uint64_t hold;
    } runs[] = {{1, 0}, {4, 0}, {9, 0}, {4, 1}, {9, 3u << 20}};
    for (size_t i = 0; i < ANT_ARRAY_LEN(runs); i++) {
        struct fetch_case c;
        fetch_setup(&c);
        assert_int_equal(fetch_run(&c, runs[i].conns, runs[i].hold), 0);
        expect_copies(&c);
        assert_int_equal(c.st.retries, 0);
        assert_int_equal(c.st.refetched, 0);
        /* the big one: its header, then 41 ranges; the small one whole */
        assert_int_equal(c.st.requests, 1 + 41 + 1);
        fetch_teardown(&c);
    }
}

static void test_fetch_files_resumes_a_cut_range_and_refetches_a_flipped_byte(void **state)
{
    (void)state;
    struct fetch_case c;
    fetch_setup(&c);
    c.s.cut_once = 1;
    c.s.flip_once = 1;
    assert_int_equal(fetch_run(&c, 4, 0), 0);
    expect_copies(&c);
    assert_true(c.st.retries >= 1);
    assert_int_equal(c.st.refetched, 1);
    fetch_teardown(&c);
}

static void test_fetch_files_body_wrong_twice_is_refused(void **state)
{
    (void)state;
    struct fetch_case c;
    fetch_setup(&c);
    c.s.flip_always = 1;
    assert_int_equal(fetch_run(&c, 3, 1), -EBADMSG);
    assert_non_null(strstr(c.diag, "does not match the signed manifest"));
    char cmd[4200], out[64];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -c -v '^small.c4gh$'", c.dir);
    FILE *ls = popen(cmd, "r");
    assert_non_null(ls);
    assert_non_null(fgets(out, sizeof(out), ls));
    pclose(ls);
    assert_int_equal(atoi(out), 0); /* neither the big copy nor its temporary file */
    fetch_teardown(&c);
}

/* --- witnessing (fetch.c's witness(), reached as every session with a peer starts: here
 * ant_fed_manifest). The peer's HTTP side is the server above (gateway/routes_fed.c is a layer
 * up), but what it serves is real: checkpoints signed by policy/audit.c over an audit log of
 * the peer's, formatted as the route does, and a manifest signed with the peer's key. The
 * record goes into this site's antenna.db, conflicts into its audit log. --- */

struct wit_case {
    struct tsrv s;
    struct ant_key *k;
    char *dir;
    int dirfd;
    struct ant_site_keys a, b; /* the peer (site-a) and this site (site-b) */
    struct ant_audit *aa;      /* site-a's audit log: its checkpoints are served */
    struct ant_audit *ab;      /* site-b's: the conflicts */
    struct ant_store *st;      /* site-b's antenna.db: the peer row and peer_witness */
    struct ant_store *st2;     /* another connection to it: a second session of site-b's */
    char sig[128];
    char *line; /* the body being served as the checkpoint */
    char *next; /* race(): what the peer serves once the first answer is taken */
    int race_rc; /* race(): the other session's result */
};

/* Appends n events to a, then signs its tail: returns the checkpoint line the peer's route
 * would answer (caller free()s). */
static char *wit_checkpoint(struct ant_audit *a, int n, const char *why)
{
    for (int i = 0; i < n; i++) {
        struct ant_audit_event ev = {
            .credential = "local",
            .action = "admin.tenant.list",
            .resource_kind = "tenant",
            .decision = ANT_AUDIT_INFO,
            .reason = why,
        };
        assert_true(ant_audit_append(a, &ev) > 0);
    }
    assert_int_equal(ant_audit_checkpoint(a), 0);
    json_t *arr = NULL;
    struct ant_audit_ckpt c;
    assert_int_equal(ant_audit_checkpoints(a, 1, &arr), 0);
    json_t *last = json_array_get(arr, 0);
    assert_non_null(last);
    assert_int_equal(json_object_set_new(last, "type", json_string("checkpoint")), 0);
    assert_int_equal(ant_audit_ckpt_from_json(last, &c), 0);
    json_t *doc = ant_audit_ckpt_to_json(&c);
    char *line = json_dumps(doc, JSON_COMPACT);
    assert_non_null(line);
    json_decref(doc);
    json_decref(arr);
    return line;
}

static void wit_serve(struct wit_case *c, char *line) /* takes line (NULL: 404) */
{
    pthread_mutex_lock(&c->s.mu);
    c->s.ckpt = line;
    pthread_mutex_unlock(&c->s.mu);
    free(c->line);
    c->line = line;
}

static void wit_setup(struct wit_case *c)
{
    static char manifest[sizeof(g_valid)];
    memset(c, 0, sizeof(*c));
    assert_int_equal(ant_key_generate(&c->k), 0);
    tsrv_start(&c->s, c->k, 1, 1);
    c->dir = test_tmpdir();
    c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(c->dirfd >= 0);
    assert_int_equal(ant_site_keys_generate(&c->a), 0);
    assert_int_equal(ant_site_keys_generate(&c->b), 0);
    assert_int_equal(ant_audit_open(c->dirfd, "a-audit.db", ANT_STORE_CREATE, c->a.sign, NULL,
                                    &c->aa),
                     0);
    assert_int_equal(ant_audit_open(c->dirfd, "audit.db", ANT_STORE_CREATE, c->b.sign, NULL,
                                    &c->ab),
                     0);
    assert_int_equal(ant_store_open(c->dirfd, "antenna.db", ANT_STORE_CREATE, &c->st), 0);
    assert_int_equal(ant_store_open(c->dirfd, "antenna.db", 0, &c->st2), 0);
    struct ant_peer p;
    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "site-a");
    snprintf(p.url, sizeof(p.url), "https://127.0.0.1:%d", c->s.port);
    snprintf(p.region, sizeof(p.region), "EU-IT");
    memcpy(p.x25519_pk, ant_key_public(c->a.kx), sizeof(p.x25519_pk));
    memcpy(p.ed25519_pk, ant_signkey_public(c->a.sign), sizeof(p.ed25519_pk));
    snprintf(p.added_by, sizeof(p.added_by), "test");
    assert_int_equal(ant_peer_add(c->st, &p, ant_bytes_str(c->s.pem)), 0);
    /* site-a's manifest of ds_1 for site-b, signed with site-a's key: every session here
     * succeeds, whatever the witnessing finds */
    uint8_t sig[ANT_SIG_LEN];
    memcpy(manifest, g_valid, sizeof(g_valid));
    assert_int_equal(ant_signkey_sign(c->a.sign, ant_bytes_str(manifest), sig), 0);
    sodium_bin2base64(c->sig, sizeof(c->sig), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    c->s.manifest = manifest;
    c->s.manifest_sig = c->sig;
}

static void wit_teardown(struct wit_case *c)
{
    tsrv_stop(&c->s);
    free(c->line);
    free(c->next);
    ant_store_close(c->st2);
    ant_store_close(c->st);
    ant_audit_close(c->ab);
    ant_audit_close(c->aa);
    ant_site_keys_fini(&c->a);
    ant_site_keys_fini(&c->b);
    close(c->dirfd);
    test_rmtree(c->dir);
    free(c->dir);
    ant_key_free(c->k);
}

/* site-b's request for site-a's ds_1 over connection st, for alice of lab. */
static struct ant_fed_pull_req wit_req(struct wit_case *c, struct ant_store *st,
                                       const struct ant_fetch_opts *o)
{
    return (struct ant_fed_pull_req){
        .st = st,
        .audit = c->ab,
        .keys = &c->b,
        .self_id = "site-b",
        .archive_fd = c->dirfd,
        .peer_id = "site-a",
        .dataset = "ds_1",
        .principal = "alice",
        .tenant = "lab",
        .purpose = "DUO:0000042",
        .transfer_id = "tr_test",
        .opts = o,
    };
}

/* One session of site-b with site-a over connection st: 0, or what went wrong. */
static int wit_try_session(struct wit_case *c, struct ant_store *st, struct ant_diag *d)
{
    struct ant_fetch_opts o = {.max_retries = 1, .backoff_ms = 1};
    struct ant_fed_pull_req q = wit_req(c, st, &o);
    struct ant_fetch_manifest m;
    int rc = ant_fed_manifest(&q, &m, d);
    if (rc == 0) {
        rc = strcmp(m.dataset_id, "ds_1") == 0 ? 0 : -EBADMSG;
        ant_fetch_manifest_fini(&m);
    }
    return rc;
}

/* One session of site-b with site-a: it must succeed whatever the checkpoint was. */
static void wit_session(struct wit_case *c)
{
    struct ant_diag d = {{0}};
    int rc = wit_try_session(c, c->st, &d);
    if (rc != 0) {
        fail_msg("session: %d %s", rc, ant_diag_msg(&d, ""));
    }
}

/* The race: once the peer has taken its answer to this session's checkpoint request (what
 * wit_serve set), and before it sends it, the peer moves on to c->next and another session of
 * site-b (its own connection to antenna.db, as `admin peer pull` beside the daemon) fetches
 * that and records it; then this session receives its answer and records it. */
static void wit_other_session(void *arg)
{
    struct wit_case *c = arg;
    struct ant_diag d = {{0}};
    wit_serve(c, c->next);
    c->next = NULL;
    c->race_rc = wit_try_session(c, c->st2, &d);
}

static void wit_race(struct wit_case *c, char *next) /* takes next */
{
    c->next = next;
    c->race_rc = -EINPROGRESS;
    pthread_mutex_lock(&c->s.mu);
    c->s.on_ckpt = wit_other_session;
    c->s.on_ckpt_arg = c;
    pthread_mutex_unlock(&c->s.mu);
    wit_session(c);
    assert_int_equal(c->race_rc, 0);
    assert_null(c->s.on_ckpt);
}

/* site-b's record of site-a: how many rows, and the seq and hash of row i into seq/hash. */
static size_t wit_rows(struct wit_case *c, size_t i, int64_t *seq, uint8_t hash[32])
{
    struct ant_audit_ckpt *rows = NULL;
    size_t n = 0;
    assert_int_equal(ant_peer_witnessed(c->st, "site-a", &rows, NULL, &n), 0);
    if (i < n && seq != NULL) {
        *seq = rows[i].seq;
        memcpy(hash, rows[i].hash, 32);
    }
    free(rows);
    return n;
}

/* site-b's fed.witness_conflict events, their details joined into `details`. */
static size_t wit_conflicts(struct wit_case *c, char *details, size_t cap)
{
    struct ant_audit_query q = {.action = "fed.witness_conflict"};
    json_t *arr = NULL;
    int64_t next = 0;
    size_t i, n;
    json_t *ev;
    assert_int_equal(ant_audit_query_run(c->ab, &q, &arr, &next), 0);
    n = json_array_size(arr);
    details[0] = '\0';
    json_array_foreach(arr, i, ev)
    {
        assert_string_equal(json_string_value(json_object_get(ev, "resource_id")), "site-a");
        assert_string_equal(json_string_value(json_object_get(ev, "reason")), "witness_conflict");
        size_t len = strlen(details);
        const char *detail = json_string_value(json_object_get(ev, "detail"));
        snprintf(details + len, cap - len, "%s\n", detail != NULL ? detail : "");
    }
    json_decref(arr);
    return n;
}

static void test_witness_records_and_flags_rollback_and_equivocation(void **state)
{
    (void)state;
    struct wit_case c;
    char det[4096];
    int64_t seq = 0;
    uint8_t h0[32], h1[32];
    wit_setup(&c);
    /* no checkpoint yet (404): nothing recorded, the session goes on */
    wit_serve(&c, NULL);
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 0);
    char *old = wit_checkpoint(c.aa, 3, "first");  /* seq 3: served later, a rollback */
    wit_serve(&c, wit_checkpoint(c.aa, 5, "more")); /* seq 8 */
    wit_session(&c);
    wit_session(&c); /* the same again: known, not recorded twice */
    assert_int_equal(wit_rows(&c, 0, &seq, h0), 1);
    assert_int_equal(seq, 8);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 0);
    /* site-a back at seq 3 (an earlier copy of its log put back): kept and audited */
    wit_serve(&c, old);
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, &seq, h1), 2);
    assert_int_equal(seq, 3);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    assert_non_null(strstr(det, "\"seq\":3,"));
    assert_non_null(strstr(det, "rollback"));
    /* its log rewritten with site-a's own key: seq 8 again, another hash */
    struct ant_audit *other = NULL;
    assert_int_equal(ant_audit_open(c.dirfd, "a2-audit.db", ANT_STORE_CREATE, c.a.sign, NULL,
                                    &other),
                     0);
    wit_serve(&c, wit_checkpoint(other, 8, "rewritten"));
    ant_audit_close(other);
    wit_session(&c);
    /* both hashes of seq 8 kept (rows by seq, then the second they were seen, then hash) */
    uint8_t h2[32];
    assert_int_equal(wit_rows(&c, 1, &seq, h1), 3);
    assert_int_equal(seq, 8);
    assert_int_equal(wit_rows(&c, 2, &seq, h2), 3);
    assert_int_equal(seq, 8);
    assert_memory_not_equal(h1, h2, 32);
    assert_true(memcmp(h0, h1, 32) == 0 || memcmp(h0, h2, 32) == 0);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 2);
    assert_non_null(strstr(det, "\"seq\":8,"));
    wit_teardown(&c);
}

/* site-b's record of site-a's rollbacks: how many, and row i's seq and highest. */
static size_t wit_rollbacks(struct wit_case *c, size_t i, int64_t *seq, int64_t *highest)
{
    struct ant_witness_rollback *rb = NULL;
    size_t n = 0;
    assert_int_equal(ant_peer_witness_rollbacks(c->st, "site-a", &rb, &n), 0);
    if (i < n) {
        *seq = rb[i].seq;
        *highest = rb[i].highest;
    }
    free(rb);
    return n;
}

static void test_witness_flags_a_rollback_to_a_recorded_checkpoint(void **state)
{
    (void)state;
    struct wit_case c;
    char det[4096];
    int64_t seq = 0, top = 0;
    uint8_t h[32];
    wit_setup(&c);
    char *at3 = wit_checkpoint(c.aa, 3, "first"); /* site-a's backup is taken here */
    wit_serve(&c, strdup(at3));
    wit_session(&c);
    wit_session(&c); /* the same checkpoint seen twice: known, no conflict */
    char *at8 = wit_checkpoint(c.aa, 5, "more");
    wit_serve(&c, strdup(at8));
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 1, &seq, h), 2);
    assert_int_equal(seq, 8);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 0);
    assert_int_equal(wit_rollbacks(&c, 0, &seq, &top), 0);
    /* site-a's log put back to the backup: its latest is seq 3 again, which site-b recorded.
     * No new checkpoint row (the witness file stays the checkpoints seen), but the rollback is
     * recorded and audited, saying where the peer went back to and from where. */
    wit_serve(&c, strdup(at3));
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 2);
    assert_int_equal(wit_rollbacks(&c, 0, &seq, &top), 1);
    assert_int_equal(seq, 3);
    assert_int_equal(top, 8);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    assert_non_null(
        strstr(det, "\"seq\":3,\"kind\":\"rollback\",\"highest\":8,\"recorded\":true,"));
    assert_non_null(strstr(det, "went back to a recorded checkpoint: seq 3"));
    assert_non_null(strstr(det, "the highest recorded is 8"));
    json_t *d = json_loads(det, 0, NULL); /* the detail is JSON */
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "highest")), 8);
    json_decref(d);
    /* still there at the next session: the same rollback, not recorded or audited twice */
    wit_session(&c);
    assert_int_equal(wit_rollbacks(&c, 0, &seq, &top), 1);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    /* back at seq 8 (the log restored to what site-b saw): nothing to flag */
    wit_serve(&c, at8);
    wit_session(&c);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    /* a rollback to a checkpoint site-b never saw still says so */
    char *at10 = wit_checkpoint(c.aa, 2, "ten");
    wit_serve(&c, wit_checkpoint(c.aa, 2, "twelve"));
    wit_session(&c);
    wit_serve(&c, at10);
    wit_session(&c);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 2);
    assert_non_null(
        strstr(det, "\"seq\":10,\"kind\":\"rollback\",\"highest\":12,\"recorded\":false,"));
    assert_int_equal(wit_rollbacks(&c, 1, &seq, &top), 2);
    assert_int_equal(seq, 10);
    assert_int_equal(top, 12);
    free(at3);
    wit_teardown(&c);
}

/* Two sessions of site-b with site-a at once (a stage job's run beside `admin peer pull`): the
 * one that asked first may record its answer last. Never a conflict for an honest peer. */
static void test_witness_overlapping_sessions_raise_no_false_conflict(void **state)
{
    (void)state;
    struct wit_case c;
    char det[4096];
    int64_t seq = 0, top = 0;
    uint8_t h[32];
    wit_setup(&c);
    /* this session fetched 3 (new) while the other fetched and recorded 8 */
    char *at3 = wit_checkpoint(c.aa, 3, "a");
    char *at8 = wit_checkpoint(c.aa, 5, "b");
    wit_serve(&c, at3);
    wit_race(&c, at8);
    assert_int_equal(wit_rows(&c, 0, &seq, h), 2);
    assert_int_equal(seq, 3);
    /* both fetched 12 (new): one records it, the other finds it known */
    char *at12 = wit_checkpoint(c.aa, 4, "c");
    wit_serve(&c, strdup(at12));
    wit_race(&c, strdup(at12));
    assert_int_equal(wit_rows(&c, 2, &seq, h), 3);
    assert_int_equal(seq, 12);
    /* this session fetched 12 again (recorded) while the other recorded 15 */
    char *at15 = wit_checkpoint(c.aa, 3, "d");
    wit_race(&c, at15);
    assert_int_equal(wit_rows(&c, 3, &seq, h), 4);
    assert_int_equal(seq, 15);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 0);
    assert_int_equal(wit_rollbacks(&c, 0, &seq, &top), 0);
    /* but 12 served once 15 was recorded before the asking: a rollback */
    wit_serve(&c, at12);
    wit_session(&c);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    assert_non_null(
        strstr(det, "\"seq\":12,\"kind\":\"rollback\",\"highest\":15,\"recorded\":true,"));
    assert_int_equal(wit_rollbacks(&c, 0, &seq, &top), 1);
    wit_teardown(&c);
}

static void test_witness_refuses_a_checkpoint_not_signed_by_the_pinned_key(void **state)
{
    (void)state;
    struct wit_case c;
    char det[4096];
    wit_setup(&c);
    /* signed by a key other than the one pinned for site-a: audited, not recorded */
    struct ant_site_keys x = {0};
    struct ant_audit *other = NULL;
    assert_int_equal(ant_site_keys_generate(&x), 0);
    assert_int_equal(ant_audit_open(c.dirfd, "x-audit.db", ANT_STORE_CREATE, x.sign, NULL, &other),
                     0);
    wit_serve(&c, wit_checkpoint(other, 4, "impostor"));
    ant_audit_close(other);
    ant_site_keys_fini(&x);
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 0);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 1);
    assert_non_null(strstr(det, "not signed by the key pinned"));
    /* site-a's own line with one character of its hash or signature changed: the same */
    char *good = wit_checkpoint(c.aa, 2, "good");
    static const char *const fields[] = {"\"hash\":\"", "\"sig\":\""};
    for (size_t i = 0; i < ANT_ARRAY_LEN(fields); i++) {
        char *bad = strdup(good);
        assert_non_null(bad);
        char *at = strstr(bad, fields[i]) + strlen(fields[i]) + 5;
        *at = *at == '0' ? '1' : '0';
        wit_serve(&c, bad);
        wit_session(&c);
        assert_int_equal(wit_rows(&c, 0, NULL, NULL), 0);
        assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 2 + i);
    }
    wit_serve(&c, good);
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 1);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 3);
    wit_teardown(&c);
}

static void test_witness_skips_what_is_not_a_checkpoint(void **state)
{
    (void)state;
    struct wit_case c;
    char det[4096];
    wit_setup(&c);
    char *good = wit_checkpoint(c.aa, 2, "good");
    size_t n = strlen(good);
    /* a valid line cut (empty, after its first byte, in the middle, before its last brace),
     * garbage, a line too big for the 4 KiB bound: not recorded, no conflict, the session goes
     * on. (Every truncation is the parsers' own test: test_audit.c, fuzz_audit_export.c; a
     * session here costs two connections to the server above, which takes 64.) */
    const size_t cuts[] = {0, 1, n / 2, n - 1};
    for (size_t i = 0; i < ANT_ARRAY_LEN(cuts); i++) {
        wit_serve(&c, strndup(good, cuts[i]));
        wit_session(&c);
    }
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, ' ', 4999);
    big[4999] = '\0';
    memcpy(big, good, n); /* valid JSON followed by blanks past the bound */
    wit_serve(&c, big);
    wit_session(&c);
    wit_serve(&c, strdup("[1, 2]"));
    wit_session(&c);
    wit_serve(&c, strdup("{\"type\":\"checkpoint\",\"seq\":-1}"));
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 0);
    assert_int_equal(wit_conflicts(&c, det, sizeof(det)), 0);
    wit_serve(&c, good);
    wit_session(&c);
    assert_int_equal(wit_rows(&c, 0, NULL, NULL), 1);
    wit_teardown(&c);
}

/* A peer's refusal is audited at this site as fed.pull deny with the peer's message; one that
 * echoes a credential (a token, say) is recorded as "[redacted]", and one cut inside a
 * character is cut before it, not left unaudited (the log refuses such values). */
static void test_pull_refusal_with_a_credential_in_its_message_is_audited(void **state)
{
    (void)state;
    struct wit_case c;
    wit_setup(&c);
    c.s.refusal = "{\"error\":\"peer_denied\",\"message\":\"bad Bearer "
                  "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig\",\"request_id\":\"r1\"}";
    struct ant_fetch_opts o = {.max_retries = 1, .backoff_ms = 1};
    struct ant_fed_pull_req q = wit_req(&c, c.st, &o);
    struct ant_fed_pulled out;
    struct ant_diag d = {{0}};
    memset(&out, 0, sizeof(out));
    assert_true(ant_fed_pull(&q, &out, &d) < 0);
    ant_fed_pulled_fini(&out);
    /* and messages of two-byte characters past the diagnostic's 255 bytes, one byte apart:
     * one of them is cut inside a character, which the log would refuse as not UTF-8 */
    char *refusals[2];
    for (int k = 0; k < 2; k++) {
        char msg[400] = "";
        size_t n = (size_t)k;
        memset(msg, 'x', n);
        for (int i = 0; i < 150; i++, n += 2) {
            memcpy(msg + n, "\xc3\xa9", 2);
        }
        msg[n] = '\0';
        refusals[k] = malloc(512);
        assert_non_null(refusals[k]);
        snprintf(refusals[k], 512,
                 "{\"error\":\"peer_denied\",\"message\":\"%s\",\"request_id\":\"r2\"}", msg);
        pthread_mutex_lock(&c.s.mu);
        c.s.refusal = refusals[k];
        pthread_mutex_unlock(&c.s.mu);
        memset(&out, 0, sizeof(out));
        assert_true(ant_fed_pull(&q, &out, &d) < 0);
        ant_fed_pulled_fini(&out);
    }
    pthread_mutex_lock(&c.s.mu);
    c.s.refusal = NULL;
    pthread_mutex_unlock(&c.s.mu);
    free(refusals[0]);
    free(refusals[1]);
    struct ant_audit_query aq = {.action = "fed.pull"};
    json_t *arr = NULL;
    int64_t next = 0;
    assert_int_equal(ant_audit_query_run(c.ab, &aq, &arr, &next), 0);
    assert_int_equal(json_array_size(arr), 3);
    json_t *ev = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(ev, "decision")), "deny");
    const char *det = json_string_value(json_object_get(ev, "detail"));
    assert_non_null(det);
    assert_non_null(strstr(det, "\"error\":\"[redacted]\""));
    assert_null(strstr(det, "eyJ"));
    json_decref(arr);
    wit_teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_valid_is_parsed),
        cmocka_unit_test(test_manifest_rejects_every_truncation),
        cmocka_unit_test(test_manifest_rejects_other_site_dataset_and_bad_entries),
        cmocka_unit_test(test_manifest_refuses_a_file_that_is_also_a_folder),
        cmocka_unit_test(test_fetch_files_ranges_over_connections),
        cmocka_unit_test(test_fetch_files_resumes_a_cut_range_and_refetches_a_flipped_byte),
        cmocka_unit_test(test_fetch_files_body_wrong_twice_is_refused),
        cmocka_unit_test(test_witness_records_and_flags_rollback_and_equivocation),
        cmocka_unit_test(test_witness_flags_a_rollback_to_a_recorded_checkpoint),
        cmocka_unit_test(test_witness_overlapping_sessions_raise_no_false_conflict),
        cmocka_unit_test(test_witness_refuses_a_checkpoint_not_signed_by_the_pinned_key),
        cmocka_unit_test(test_witness_skips_what_is_not_a_checkpoint),
        cmocka_unit_test(test_pull_refusal_with_a_credential_in_its_message_is_audited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
