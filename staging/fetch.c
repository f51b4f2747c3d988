/* The federation fetcher; see fetch.h. */
#include "staging/fetch.h"

#include "crypto/base/json.h"
#include "crypto/base/log.h"
#include "crypto/c4gh.h"
#include "crypto/token.h"
#include "policy/audit.h"
#include "policy/peers.h"
#include "policy/store.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_ERRBODY_MAX 4096
#define FETCH_BACKOFF_CAP_MS 8000
/* 429 answers one piece may meet (about a second apart) before the pull gives up */
#define FETCH_RATE_LIMITED_MAX 120u
#define FETCH_HASH_BLOCK (1u << 20)
/* Received bytes are gathered into buffers of this size (less when many connections share
 * FETCH_WBUF_TOTAL) before the writer thread writes them: one write per MiB, not per record. */
#define FETCH_WBUF_MAX (1u << 20)
#define FETCH_WBUF_MIN (64u << 10)
#define FETCH_WBUF_TOTAL (64u << 20)
/* By default the bytes received out of order kept in memory to be hashed when their turn comes
 * (more are read back from the file, from disk since they were written directly): what the
 * connections have in flight (max_conns ranges ahead), within these bounds. */
#define FETCH_HOLD_MIN (16u << 20)
#define FETCH_HOLD_MAX (128u << 20)
/* Whole blocks of the body are written with O_DIRECT where the filesystem allows it, from
 * buffers and at offsets aligned to this: the bytes do not go through the page cache (a copy
 * and, on a VM, fresh pages the host must supply: the largest cost of a pull measured), the
 * edges of each buffer go through it, and the fsync at the end covers both. */
#define FETCH_DIO_ALIGN 4096u
/* The hasher starts writeback every this many bytes hashed, so the final fsync is short. */
#define FETCH_WRITEBACK_STEP (8u << 20)

void ant_fetch_manifest_fini(struct ant_fetch_manifest *m)
{
    if (m != NULL) {
        free(m->files);
        m->files = NULL;
        m->nfiles = 0;
    }
}

/* --- one request's common setup --- */

struct req {
    CURL *h;
    struct curl_slist *hdrs;
    struct ant_buf token;
};

static int percent_path(CURL *h, const char *path, struct ant_buf *url)
{
    const char *seg = path;
    int rc = 0;
    while (rc == 0 && *seg != '\0') {
        size_t n = strcspn(seg, "/");
        char *e = curl_easy_escape(h, seg, (int)n);
        rc = e == NULL ? -ENOMEM : ant_buf_printf(url, "%s%s", seg == path ? "" : "/", e);
        curl_free(e);
        seg += n;
        if (*seg == '/') {
            seg++;
        }
    }
    return rc;
}

static void req_fini(struct req *q)
{
    if (q->h != NULL) {
        curl_easy_cleanup(q->h);
    }
    curl_slist_free_all(q->hdrs);
    ant_buf_wipe_fini(&q->token);
    memset(q, 0, sizeof(*q));
}

/* A GET of p->url + `path` (already encoded) with a fresh token and the transfer id, trusting
 * only the pinned anchor. */
static int req_init(struct req *q, const struct ant_fetch_peer *p, const char *path,
                    long low_speed_s)
{
    struct ant_buf line = ANT_BUF_INIT(16384);
    struct ant_buf url = ANT_BUF_INIT(8192);
    int rc;
    memset(q, 0, sizeof(*q));
    ant_buf_init(&q->token, 16384);
    q->h = curl_easy_init();
    rc = q->h == NULL ? -ENOMEM : p->token(p->token_ctx, &q->token);
    rc = rc < 0 ? rc : ant_buf_printf(&line, "Authorization: Bearer %s", (const char *)q->token.p);
    rc = rc < 0 ? rc : ant_buf_terminate(&line);
    if (rc == 0) {
        struct curl_slist *a = curl_slist_append(NULL, (const char *)line.p);
        char tid[128];
        snprintf(tid, sizeof(tid), "X-Antenna-Transfer-Id: %s", p->transfer_id);
        struct curl_slist *b = a != NULL ? curl_slist_append(a, tid) : NULL;
        if (b == NULL) {
            curl_slist_free_all(a);
            rc = -ENOMEM;
        }
        q->hdrs = b;
    }
    rc = rc < 0 ? rc : ant_buf_printf(&url, "%s%s", p->url, path);
    rc = rc < 0 ? rc : ant_buf_terminate(&url);
    if (rc < 0) {
        goto out;
    }
    struct curl_blob blob = {(void *)(uintptr_t)p->anchor.p, p->anchor.len, CURL_BLOB_COPY};
    curl_easy_setopt(q->h, CURLOPT_URL, (const char *)url.p);
    curl_easy_setopt(q->h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(q->h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(q->h, CURLOPT_CAINFO_BLOB, &blob);
    curl_easy_setopt(q->h, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(q->h, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(q->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(q->h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(q->h, CURLOPT_LOW_SPEED_TIME, low_speed_s);
    curl_easy_setopt(q->h, CURLOPT_BUFFERSIZE, 256L * 1024L);
out:
    ant_buf_wipe_fini(&line);
    ant_buf_fini(&url);
    return rc;
}

/* The peer's JSON error message, into diag; the errno for its status. */
static int peer_refusal(long status, struct ant_bytes body, struct ant_diag *d)
{
    json_t *doc = NULL;
    const char *msg = NULL, *code = NULL;
    if (ant_json_parse(body, FETCH_ERRBODY_MAX, 4, &doc, NULL) == 0) {
        msg = json_string_value(json_object_get(doc, "message"));
        code = json_string_value(json_object_get(doc, "error"));
    }
    ant_diag_set(d, "the peer answered %ld%s%s%s%s", status, code ? " " : "", code ? code : "",
                 msg ? ": " : "", msg ? msg : "");
    json_decref(doc);
    switch (status) {
    case 401:
        return -EPERM;
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    default:
        return -EIO;
    }
}

/* --- the manifest --- */

struct mget {
    struct ant_buf body;
    char sig[128];
};

static size_t mget_body(char *p, size_t sz, size_t n, void *ctx)
{
    struct mget *g = ctx;
    return ant_buf_append(&g->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t mget_header(char *p, size_t sz, size_t n, void *ctx)
{
    struct mget *g = ctx;
    static const char name[] = "x-antenna-signature:";
    size_t len = sz * n;
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        size_t i = sizeof(name) - 1, j = 0;
        while (i < len && p[i] == ' ') {
            i++;
        }
        while (i < len && p[i] != '\r' && p[i] != '\n' && j + 1 < sizeof(g->sig)) {
            g->sig[j++] = p[i++];
        }
        g->sig[j] = '\0';
    }
    return len;
}

static int hex32(json_t *v, uint8_t out[32])
{
    const char *s = json_string_value(v);
    return s != NULL && strlen(s) == 64 ? ant_hex_decode(ant_bytes_str(s), out, 32) : -EBADMSG;
}

/* The files land as one folder tree (the archive cache, then scratch): a manifest that lists a
 * path twice, or both "a" and "a/b", could only fail half-way, so it is refused whole. */
static int manifest_tree_check(const struct ant_fetch_manifest *m, struct ant_diag *d)
{
    const char **paths = calloc(m->nfiles > 0 ? m->nfiles : 1, sizeof(*paths));
    size_t a = 0, b = 0;
    if (paths == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        paths[i] = m->files[i].path;
    }
    int rc = ant_paths_find_conflict(paths, m->nfiles, &a, &b);
    if (rc == -EEXIST && strcmp(paths[a], paths[b]) == 0) {
        ant_diag_set(d, "the manifest lists %s twice", paths[a]);
        rc = -EBADMSG;
    } else if (rc == -EEXIST) {
        ant_diag_set(d, "the manifest lists both %s and %s: a file cannot also be a folder",
                     paths[a], paths[b]);
        rc = -EBADMSG;
    }
    free(paths);
    return rc;
}

int ant_fetch_manifest_parse(struct ant_bytes body, const char *peer_id, const char *dataset,
                             struct ant_fetch_manifest *out, struct ant_diag *d)
{
    json_t *doc = NULL, *files, *e;
    size_t i;
    int rc = ant_json_parse(body, ANT_FETCH_MANIFEST_MAX, 6, &doc, d);
    if (rc < 0) {
        return -EBADMSG;
    }
    const char *site = json_string_value(json_object_get(doc, "site"));
    json_t *ds = json_object_get(doc, "dataset");
    const char *dsid = json_string_value(json_object_get(ds, "id"));
    const char *dsname = json_string_value(json_object_get(ds, "name"));
    files = json_object_get(doc, "files");
    memset(out, 0, sizeof(*out));
    if (site == NULL || strcmp(site, peer_id) != 0 || dsid == NULL || strcmp(dsid, dataset) != 0 ||
        dsname == NULL || strlen(dsname) >= sizeof(out->dataset_name) ||
        strlen(dsid) >= sizeof(out->dataset_id) || !json_is_array(files) ||
        json_array_size(files) > ANT_FETCH_FILES_MAX) {
        ant_diag_set(d, "the manifest is not for dataset %s of %s", dataset, peer_id);
        rc = -EBADMSG;
        goto out;
    }
    out->nfiles = json_array_size(files);
    out->files = calloc(out->nfiles + 1, sizeof(*out->files));
    if (out->files == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    json_array_foreach(files, i, e)
    {
        struct ant_fetch_file *f = &out->files[i];
        const char *path = json_string_value(json_object_get(e, "path"));
        json_t *size = json_object_get(e, "size"), *bsize = json_object_get(e, "body_size");
        if (path == NULL || !ant_path_is_valid(path) || strlen(path) >= sizeof(f->path) ||
            !json_is_integer(size) || json_integer_value(size) < 0 || !json_is_integer(bsize) ||
            json_integer_value(bsize) < 0 || hex32(json_object_get(e, "sha256"), f->sha256) < 0 ||
            hex32(json_object_get(e, "sha256_c4gh"), f->sha256_c4gh) < 0) {
            ant_diag_set(d, "manifest entry %zu is malformed", i);
            rc = -EBADMSG;
            goto out;
        }
        snprintf(f->path, sizeof(f->path), "%s", path);
        f->size = (uint64_t)json_integer_value(size);
        f->body_size = (uint64_t)json_integer_value(bsize);
    }
    rc = manifest_tree_check(out, d);
    if (rc < 0) {
        goto out;
    }
    snprintf(out->dataset_id, sizeof(out->dataset_id), "%s", dsid);
    snprintf(out->dataset_name, sizeof(out->dataset_name), "%s", dsname);
out:
    if (rc < 0) {
        ant_fetch_manifest_fini(out);
    }
    json_decref(doc);
    return rc;
}

int ant_fetch_manifest_get(const struct ant_fetch_peer *p, const char *dataset,
                           struct ant_fetch_manifest *out, struct ant_diag *d)
{
    struct mget g = {ANT_BUF_INIT(ANT_FETCH_MANIFEST_MAX), ""};
    struct ant_buf path = ANT_BUF_INIT(1024);
    struct req q;
    uint8_t sig[ANT_SIG_LEN];
    size_t siglen = 0;
    long status = 0;
    memset(&q, 0, sizeof(q));
    memset(out, 0, sizeof(*out));
    int rc = ant_buf_append_str(&path, "/v1/federation/datasets/");
    CURL *tmp = curl_easy_init();
    rc = rc < 0 ? rc : tmp == NULL ? -ENOMEM : percent_path(tmp, dataset, &path);
    if (tmp != NULL) {
        curl_easy_cleanup(tmp);
    }
    rc = rc < 0 ? rc : ant_buf_append_str(&path, "/manifest");
    rc = rc < 0 ? rc : ant_buf_terminate(&path);
    /* a 429 (the peer's rate limit: nothing was done) is waited out, as for the pieces */
    for (unsigned limited = 0; rc == 0; limited++) {
        rc = req_init(&q, p, (const char *)path.p, 30);
        if (rc < 0) {
            goto out;
        }
        curl_easy_setopt(q.h, CURLOPT_WRITEFUNCTION, mget_body);
        curl_easy_setopt(q.h, CURLOPT_WRITEDATA, &g);
        curl_easy_setopt(q.h, CURLOPT_HEADERFUNCTION, mget_header);
        curl_easy_setopt(q.h, CURLOPT_HEADERDATA, &g);
        curl_easy_setopt(q.h, CURLOPT_TIMEOUT, 120L);
        CURLcode cc = curl_easy_perform(q.h);
        if (cc != CURLE_OK) {
            ant_diag_set(d, "%s: %s", p->url, curl_easy_strerror(cc));
            rc = cc == CURLE_WRITE_ERROR ? -E2BIG : -EIO;
            goto out;
        }
        curl_easy_getinfo(q.h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 429 || limited + 1 >= FETCH_RATE_LIMITED_MAX) {
            break;
        }
        req_fini(&q);
        g.body.len = 0;
        g.sig[0] = '\0';
        ant_log(ANT_LOG_INFO, "fetch.retry", "%s: manifest (HTTP 429), retry %u", p->id,
                limited + 1);
        usleep(1000000u + randombytes_uniform(500000u));
    }
    if (rc < 0) {
        goto out;
    }
    if (status != 200) {
        rc = peer_refusal(status, ant_buf_view(&g.body), d);
        goto out;
    }
    /* the signature first: nothing the peer sent is parsed before it checks */
    if (g.sig[0] == '\0' ||
        ant_b64_decode(ant_bytes_str(g.sig), false, NULL, sig, sizeof(sig), &siglen) < 0 ||
        siglen != ANT_SIG_LEN || ant_sig_verify(p->ed25519_pk, ant_buf_view(&g.body), sig) < 0) {
        ant_diag_set(d, "the manifest's signature does not verify with the key pinned for %s",
                     p->id);
        rc = -EKEYREJECTED;
        goto out;
    }
    rc = ant_fetch_manifest_parse(ant_buf_view(&g.body), p->id, dataset, out, d);
out:
    req_fini(&q);
    ant_buf_fini(&g.body);
    ant_buf_fini(&path);
    return rc;
}

/* --- files --- */

enum pstate { P_WAIT, P_RUN, P_DONE };

struct ffile;

struct run;

/* Work for the disk threads (struct sink), done in the order posted: a write of gathered body
 * bytes, hashing a file's body up to an offset, or finishing a file (digest checked, fsync). */
enum sjob_kind { SJ_WRITE, SJ_HASH, SJ_FINISH };

struct sjob {
    struct sjob *next;
    enum sjob_kind kind;
    struct ffile *f;
    uint64_t off; /* SJ_WRITE: body offset of data[0]; SJ_HASH: hash the body up to here */
    size_t len;   /* SJ_WRITE: bytes at data + skew */
    size_t skew;  /* SJ_WRITE: (file offset of the first byte) % FETCH_DIO_ALIGN, so that the
                   * bytes sit in memory as aligned as they go to the file */
    int rc;       /* SJ_FINISH: 0, -EBADMSG (digest differs) or -errno */
    uint8_t *data; /* SJ_WRITE only: the sink's buffer size, FETCH_DIO_ALIGN-aligned */
};

struct squeue {
    struct sjob *head, *tail;
    pthread_cond_t cv;
};

/* The disk side of a run: the thread running libcurl only receives (TLS decryption included)
 * and gathers bytes into buffers; a writer thread writes them; a hasher thread then hashes each
 * body in order (from the written buffer when it is next in order, else read back from the
 * page cache), starts writeback as it goes and fsyncs finished files. One core cannot receive,
 * write and hash at the speed of the network (docs/benchmarks.md, Federation). Every job goes
 * through the writer, then the hasher, in the order posted: a file's hash and finish come after
 * the writes of its bytes. */
struct sink {
    pthread_t th[2];
    unsigned started; /* threads running */
    pthread_mutex_t mu;
    struct squeue q[2];     /* 0: to write, 1: to hash */
    pthread_cond_t cv_free; /* a buffer came back */
    struct sjob *free;      /* write buffers to reuse */
    struct sjob *done, *done_tail; /* finished SJ_FINISH jobs, for the curl thread */
    size_t nbufs, maxbufs, bufsize;
    bool stop;
    int err; /* the first write or read error: the run fails with it */
    CURLM *multi; /* woken when a finish is done */
    uint8_t *rdbuf; /* the hasher's read-back buffer */
    /* the hasher's: written buffers ahead of their file's hash position (bytes from the other
     * connections), kept to be hashed from memory when their turn comes, at most maxheld */
    struct sjob *held;
    size_t nheld, maxheld;
};

/* A request: the header alone, a range of the body, or (files whose body fits in one range)
 * the whole file, header then body, in one request. */
struct piece {
    struct run *run;
    struct ffile *f;
    bool header;
    bool whole;
    int fatal; /* an error found while receiving that no retry can fix */
    uint64_t off, end, cur; /* body offsets: [off, end), cur the next byte received */
    uint64_t cur0;          /* cur when this attempt started */
    unsigned attempt;
    unsigned limited; /* 429 answers: the serving site's rate limit (not failures) */
    int64_t next_ms;
    enum pstate state;
    struct req q;
    long status;
    struct ant_buf err; /* the body of an error answer */
    struct sjob *wb;    /* body bytes received, not yet handed to the writer */
};

struct ffile {
    /* the hasher's (only it touches them while the file is open) */
    EVP_MD_CTX *md;    /* SHA-256 of body bytes [0, hashed) */
    uint64_t hashed;
    uint64_t synced;   /* writeback started for body bytes [0, synced) */
    /* the curl thread's */
    size_t ready;      /* leading body pieces received and handed over */
    size_t idx;
    const char *name;
    char tmp[64];
    int fd;
    int dfd;           /* the same file opened O_DIRECT, or -1 */
    bool nodirect;     /* the writer's: a direct write was refused, write through fd */
    uint64_t body_at;  /* file offset of the body: the header's length; fixed once open */
    const uint8_t *digest; /* the manifest's sha256_c4gh */
    bool active, header_done, done, refetched;
    struct ant_buf hdr;
    size_t npieces, pieces_left;
    struct piece *first; /* its body pieces, contiguous */
};

struct run {
    const struct ant_fetch_peer *p;
    const char *dataset;
    const struct ant_fetch_manifest *m;
    const struct ant_key *self;
    struct ant_fetch_opts o;
    struct ant_fetch_stats *st;
    struct ant_diag *d;
    int dirfd;
    CURLM *multi;
    struct ffile *files;
    size_t nfiles, nactive, next_file, ndone;
    struct piece *pieces;
    size_t npieces;
    unsigned inflight;
    struct sink sink;
};

/* --- the disk threads --- */

static int md_ready(struct ffile *f)
{
    if (f->md == NULL) {
        f->md = EVP_MD_CTX_new();
        if (f->md == NULL || EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
            return -ENOMEM;
        }
        f->hashed = 0;
        f->synced = 0;
    }
    return 0;
}

static int hash_mem(struct ffile *f, struct sjob *j)
{
    if (EVP_DigestUpdate(f->md, j->data + j->skew, j->len) != 1) {
        return -ENOMEM;
    }
    f->hashed += j->len;
    return 0;
}

/* Hashes f's body from f->hashed up to `to`: from held buffers where they are, the rest read
 * back from the file. Buffers hashed go onto *release. */
static int hash_back(struct sink *k, struct ffile *f, uint64_t to, struct sjob **release)
{
    int rc = md_ready(f);
    while (rc == 0 && f->hashed < to) {
        struct sjob **pp = &k->held, *h = NULL;
        uint64_t stop = to;
        for (; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->f == f && (*pp)->off == f->hashed) {
                h = *pp;
                break;
            }
            if ((*pp)->f == f && (*pp)->off > f->hashed && (*pp)->off < stop) {
                stop = (*pp)->off;
            }
        }
        if (h != NULL) {
            *pp = h->next;
            k->nheld--;
            h->next = *release;
            *release = h;
            rc = hash_mem(f, h);
            continue;
        }
        size_t want = stop - f->hashed < FETCH_HASH_BLOCK ? (size_t)(stop - f->hashed)
                                                          : FETCH_HASH_BLOCK;
        ssize_t n = ant_pread_full(f->fd, k->rdbuf, want, (off_t)(f->body_at + f->hashed));
        if (n != (ssize_t)want) {
            rc = n < 0 ? (int)n : -EIO;
        } else if (EVP_DigestUpdate(f->md, k->rdbuf, want) != 1) {
            rc = -ENOMEM;
        } else {
            f->hashed += want;
        }
    }
    return rc;
}

/* Hashes the held buffers of f that come next in order. */
static int held_hash(struct sink *k, struct ffile *f, struct sjob **release)
{
    int rc = 0;
    struct sjob **pp = &k->held;
    while (rc == 0 && *pp != NULL) {
        struct sjob *h = *pp;
        if (h->f != f || h->off != f->hashed) {
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        k->nheld--;
        h->next = *release;
        *release = h;
        rc = hash_mem(f, h);
        pp = &k->held; /* the next one may be anywhere in the list */
    }
    return rc;
}

/* Gives back the held buffers of f (its body is hashed). */
static void held_drop(struct sink *k, const struct ffile *f, struct sjob **release)
{
    struct sjob **pp = &k->held;
    while (*pp != NULL) {
        struct sjob *h = *pp;
        if (h->f == f) {
            *pp = h->next;
            k->nheld--;
            h->next = *release;
            *release = h;
        } else {
            pp = &h->next;
        }
    }
}

/* Starts writeback of the hashed prefix every FETCH_WRITEBACK_STEP bytes, so that the fsync at
 * the end of a big file does not write it all at once. */
static void writeback(struct ffile *f)
{
    if (f->hashed - f->synced >= FETCH_WRITEBACK_STEP) {
        (void)sync_file_range(f->fd, (off_t)(f->body_at + f->synced),
                              (off_t)(f->hashed - f->synced), SYNC_FILE_RANGE_WRITE);
        f->synced = f->hashed;
    }
}

/* The writer's part of j: the whole aligned blocks through the O_DIRECT descriptor, the
 * edges (and everything, without one) through the page cache. */
static int write_run(struct sjob *j)
{
    if (j->kind != SJ_WRITE) {
        return 0;
    }
    struct ffile *f = j->f;
    const uint8_t *p = j->data + j->skew;
    uint64_t at = f->body_at + j->off, end = at + j->len;
    uint64_t a = (at + FETCH_DIO_ALIGN - 1) / FETCH_DIO_ALIGN * FETCH_DIO_ALIGN;
    uint64_t b = end / FETCH_DIO_ALIGN * FETCH_DIO_ALIGN;
    if (f->dfd < 0 || f->nodirect || a >= b) {
        return ant_pwrite_all(f->fd, p, j->len, (off_t)at);
    }
    int rc = a > at ? ant_pwrite_all(f->fd, p, (size_t)(a - at), (off_t)at) : 0;
    if (rc == 0) {
        rc = ant_pwrite_all(f->dfd, p + (a - at), (size_t)(b - a), (off_t)a);
        if (rc == -EINVAL) {
            /* the filesystem wants another alignment: the page cache from now on */
            f->nodirect = true;
            rc = ant_pwrite_all(f->fd, p + (a - at), (size_t)(b - a), (off_t)a);
        }
    }
    if (rc == 0 && end > b) {
        rc = ant_pwrite_all(f->fd, p + (b - at), (size_t)(end - b), (off_t)b);
    }
    return rc;
}

/* The hasher's part of j. Write buffers done with go onto *release (j too, unless held). */
static int hash_run(struct sink *k, struct sjob *j, struct sjob **release)
{
    struct ffile *f = j->f;
    uint8_t h[32];
    int rc = 0;
    switch (j->kind) {
    case SJ_WRITE:
        rc = md_ready(f);
        if (rc == 0 && j->off == f->hashed) {
            /* the next bytes in order, then the held buffers that follow them */
            rc = hash_mem(f, j);
            j->next = *release;
            *release = j;
            rc = rc < 0 ? rc : held_hash(k, f, release);
            writeback(f);
        } else if (rc == 0 && k->nheld < k->maxheld) {
            j->next = k->held;
            k->held = j;
            k->nheld++;
        } else {
            /* too much ahead: read back from the file when its turn comes */
            j->next = *release;
            *release = j;
        }
        break;
    case SJ_HASH:
        rc = hash_back(k, f, j->off, release);
        if (rc == 0) {
            writeback(f);
        }
        break;
    case SJ_FINISH:
        rc = hash_back(k, f, j->off, release);
        held_drop(k, f, release);
        if (rc == 0 && EVP_DigestFinal_ex(f->md, h, NULL) != 1) {
            rc = -ENOMEM;
        }
        EVP_MD_CTX_free(f->md);
        f->md = NULL;
        if (rc == 0 && sodium_memcmp(h, f->digest, 32) != 0) {
            rc = -EBADMSG;
        }
        /* durable before the curl thread renames it into place */
        if (rc == 0 && fsync(f->fd) < 0) {
            rc = -errno;
        }
        j->rc = rc;
        rc = 0; /* a mismatch is the curl thread's to handle (fetched again once) */
        break;
    }
    return rc;
}

static void squeue_push(struct squeue *q, struct sjob *j)
{
    j->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = j;
    } else {
        q->head = j;
    }
    q->tail = j;
    pthread_cond_signal(&q->cv);
}

struct stage_arg {
    struct sink *k;
    unsigned stage;
};

/* One stage of the pipeline: 0 writes and passes each job on, 1 hashes, finishes and gives
 * buffers back. A failed job makes the run fail; later jobs only pass through. */
static void *sink_main(void *arg)
{
    struct sink *k = ((struct stage_arg *)arg)->k;
    unsigned stage = ((struct stage_arg *)arg)->stage;
    struct squeue *in = &k->q[stage];
    free(arg);
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (in->head == NULL && !k->stop) {
            pthread_cond_wait(&in->cv, &k->mu);
        }
        if (k->stop) {
            break; /* the run ended: what is still queued is dropped by sink_fini */
        }
        struct sjob *j = in->head;
        in->head = j->next;
        if (in->head == NULL) {
            in->tail = NULL;
        }
        j->next = NULL;
        int failed = k->err;
        struct sjob *release = NULL;
        pthread_mutex_unlock(&k->mu);
        int rc = failed;
        if (failed == 0 && stage == 0) {
            rc = write_run(j);
        } else if (failed == 0) {
            rc = hash_run(k, j, &release);
        } else if (stage == 1 && j->kind == SJ_WRITE) {
            j->next = release;
            release = j;
        }
        pthread_mutex_lock(&k->mu);
        while (release != NULL) {
            struct sjob *n = release->next;
            release->next = k->free;
            k->free = release;
            release = n;
            pthread_cond_signal(&k->cv_free);
        }
        bool wake = false;
        if (rc < 0 && k->err == 0) {
            k->err = rc;
            wake = true;
            pthread_cond_broadcast(&k->cv_free);
        }
        if (stage == 0) {
            squeue_push(&k->q[1], j);
        } else if (j->kind == SJ_WRITE) {
            /* given back above, or held */
        } else if (j->kind == SJ_HASH) {
            free(j);
        } else {
            j->rc = failed != 0 ? failed : j->rc;
            if (k->done_tail != NULL) {
                k->done_tail->next = j;
            } else {
                k->done = j;
            }
            k->done_tail = j;
            wake = true;
        }
        if (wake) {
            curl_multi_wakeup(k->multi);
        }
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static void sjob_free(struct sjob *j)
{
    if (j != NULL) {
        free(j->data);
        free(j);
    }
}

static void sjob_free_list(struct sjob *j)
{
    while (j != NULL) {
        struct sjob *n = j->next;
        sjob_free(j);
        j = n;
    }
}

/* Stops the disk threads (after the jobs they are doing) and frees what is queued. */
static void sink_fini(struct sink *k)
{
    if (k->rdbuf == NULL) {
        return; /* never started */
    }
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->q[0].cv);
    pthread_cond_signal(&k->q[1].cv);
    pthread_mutex_unlock(&k->mu);
    for (unsigned i = 0; i < k->started; i++) {
        pthread_join(k->th[i], NULL);
    }
    k->started = 0;
    pthread_cond_destroy(&k->cv_free);
    pthread_cond_destroy(&k->q[1].cv);
    pthread_cond_destroy(&k->q[0].cv);
    pthread_mutex_destroy(&k->mu);
    sjob_free_list(k->q[0].head);
    sjob_free_list(k->q[1].head);
    sjob_free_list(k->held);
    sjob_free_list(k->free);
    sjob_free_list(k->done);
    free(k->rdbuf);
    memset(k, 0, sizeof(*k));
}

static int sink_start(struct sink *k, CURLM *multi, unsigned conns, uint64_t range,
                      uint64_t hold)
{
    /* every transfer in flight holds at most one buffer being filled: more than that many, so
     * the disk threads always have some to give back */
    k->maxbufs = (size_t)conns + 8;
    k->bufsize = FETCH_WBUF_TOTAL / k->maxbufs;
    k->bufsize = k->bufsize > FETCH_WBUF_MAX   ? FETCH_WBUF_MAX
                 : k->bufsize < FETCH_WBUF_MIN ? FETCH_WBUF_MIN
                                               : k->bufsize / FETCH_DIO_ALIGN * FETCH_DIO_ALIGN;
    /* held buffers come on top: the writers' share never shrinks below the above */
    if (hold == 0) {
        hold = range * conns;
        hold = hold < FETCH_HOLD_MIN   ? FETCH_HOLD_MIN
               : hold > FETCH_HOLD_MAX ? FETCH_HOLD_MAX
                                       : hold;
    }
    k->maxheld = (size_t)(hold / k->bufsize);
    k->maxbufs += k->maxheld;
    k->multi = multi;
    k->rdbuf = malloc(FETCH_HASH_BLOCK);
    if (k->rdbuf == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->q[0].cv, NULL);
    pthread_cond_init(&k->q[1].cv, NULL);
    pthread_cond_init(&k->cv_free, NULL);
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < 2; i++) {
        struct stage_arg *a = malloc(sizeof(*a));
        int e = a == NULL ? ENOMEM : 0;
        if (a != NULL) {
            a->k = k;
            a->stage = i;
            e = pthread_create(&k->th[i], NULL, sink_main, a);
            if (e != 0) {
                free(a);
            }
        }
        rc = -e;
        k->started += e == 0 ? 1 : 0;
    }
    return rc;
}

static void sink_post(struct sink *k, struct sjob *j)
{
    pthread_mutex_lock(&k->mu);
    squeue_push(&k->q[0], j);
    pthread_mutex_unlock(&k->mu);
}

static int sink_job(struct sink *k, enum sjob_kind kind, struct ffile *f, uint64_t off)
{
    struct sjob *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return -ENOMEM;
    }
    j->kind = kind;
    j->f = f;
    j->off = off;
    sink_post(k, j);
    return 0;
}

/* A write buffer: a free one, a new one while under the cap, else waits for the disk threads
 * to give one back (the transfers wait with it: TCP slows the peer down). NULL when a disk
 * thread failed or memory ran out (the caller's transfer fails, the run ends with the error). */
static struct sjob *sink_buf(struct sink *k)
{
    struct sjob *j = NULL;
    pthread_mutex_lock(&k->mu);
    while (k->err == 0 && k->free == NULL && k->nbufs >= k->maxbufs) {
        pthread_cond_wait(&k->cv_free, &k->mu);
    }
    if (k->err == 0 && k->free != NULL) {
        j = k->free;
        k->free = j->next;
    } else if (k->err == 0) {
        j = calloc(1, sizeof(*j));
        if (j != NULL && posix_memalign((void **)&j->data, FETCH_DIO_ALIGN, k->bufsize) != 0) {
            free(j);
            j = NULL;
        }
        if (j == NULL) {
            k->err = -ENOMEM;
        } else {
            k->nbufs++;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return j;
}

static void sink_buf_put(struct sink *k, struct sjob *j)
{
    pthread_mutex_lock(&k->mu);
    j->next = k->free;
    k->free = j;
    pthread_cond_signal(&k->cv_free);
    pthread_mutex_unlock(&k->mu);
}

static int sink_err(struct sink *k)
{
    pthread_mutex_lock(&k->mu);
    int rc = k->err;
    pthread_mutex_unlock(&k->mu);
    return rc;
}

/* The finished files' results, oldest first (the caller frees the list). */
static struct sjob *sink_take_done(struct sink *k)
{
    pthread_mutex_lock(&k->mu);
    struct sjob *j = k->done;
    k->done = k->done_tail = NULL;
    pthread_mutex_unlock(&k->mu);
    return j;
}

/* --- the curl thread --- */

/* Body bytes of pc, gathered for the writer; pc->cur counts them. false: no buffer (a disk
 * thread failed, or out of memory). */
static bool body_put(struct piece *pc, const char *p, size_t len)
{
    struct sink *k = &pc->run->sink;
    while (len > 0) {
        if (pc->wb == NULL) {
            pc->wb = sink_buf(k);
            if (pc->wb == NULL) {
                return false;
            }
            pc->wb->kind = SJ_WRITE;
            pc->wb->f = pc->f;
            pc->wb->off = pc->cur;
            pc->wb->len = 0;
            /* a full buffer ends on an aligned file offset: only a piece's ends are edges */
            pc->wb->skew = (size_t)((pc->f->body_at + pc->cur) % FETCH_DIO_ALIGN);
        }
        size_t room = k->bufsize - pc->wb->skew - pc->wb->len;
        size_t n = room < len ? room : len;
        memcpy(pc->wb->data + pc->wb->skew + pc->wb->len, p, n);
        pc->wb->len += n;
        pc->cur += n;
        p += n;
        len -= n;
        if (n == room) {
            sink_post(k, pc->wb);
            pc->wb = NULL;
        }
    }
    return true;
}

/* Hands over what pc gathered: every byte counted in pc->cur is written before any later job
 * (a hash, a finish, or the same piece resumed from pc->cur). */
static void piece_flush(struct run *r, struct piece *pc)
{
    struct sjob *j = pc->wb;
    pc->wb = NULL;
    if (j != NULL && j->len > 0) {
        sink_post(&r->sink, j);
    } else if (j != NULL) {
        sink_buf_put(&r->sink, j);
    }
}

static int header_done(struct run *r, struct ffile *f);

/* A whole-file answer: bytes go to the header until it is complete (its length is in its
 * packets), then the rest is body. */
static size_t on_whole_header(struct piece *pc, const char *p, size_t len)
{
    struct ffile *f = pc->f;
    size_t hlen = 0;
    if (ant_buf_append(&f->hdr, p, len) < 0) {
        pc->fatal = -EBADMSG;
        return 0;
    }
    int rc = ant_c4gh_header_measure(ant_buf_view(&f->hdr), &hlen, NULL);
    if (rc == -EAGAIN) {
        return len;
    }
    if (rc < 0 || hlen > f->hdr.len) {
        pc->fatal = -EBADMSG;
        return 0;
    }
    size_t extra = f->hdr.len - hlen;
    f->hdr.len = hlen; /* the body bytes stay in the buffer past len until written below */
    rc = header_done(pc->run, f);
    if (rc < 0) {
        pc->fatal = rc;
        return 0;
    }
    if (extra > pc->end - pc->cur || !body_put(pc, (const char *)f->hdr.p + hlen, extra)) {
        return 0;
    }
    return len;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ctx)
{
    struct piece *pc = ctx;
    size_t len = sz * n;
    if (pc->status == 0) {
        curl_easy_getinfo(pc->q.h, CURLINFO_RESPONSE_CODE, &pc->status);
    }
    if (pc->status != 200 && pc->status != 206) {
        return ant_buf_append(&pc->err, p, len) == 0 ? len : 0;
    }
    if (pc->header) {
        return ant_buf_append(&pc->f->hdr, p, len) == 0 ? len : 0;
    }
    if (pc->whole && !pc->f->header_done) {
        return on_whole_header(pc, p, len);
    }
    if (len > pc->end - pc->cur) {
        return 0; /* more than asked for: the transfer fails and is retried */
    }
    if (!body_put(pc, p, len)) {
        return 0;
    }
    if (pc->run->o.received != NULL) {
        atomic_fetch_add(pc->run->o.received, len);
    }
    return len;
}

static int64_t now_ms(void)
{
    return ant_mono_ns() / 1000000;
}

static int piece_start(struct run *r, struct piece *pc)
{
    struct ant_buf path = ANT_BUF_INIT(8192);
    const struct ant_fetch_file *mf = &r->m->files[pc->f->idx];
    char range[64];
    int rc = ant_buf_append_str(&path, "/v1/federation/datasets/");
    CURL *tmp = curl_easy_init();
    rc = rc < 0 ? rc : tmp == NULL ? -ENOMEM : percent_path(tmp, r->dataset, &path);
    rc = rc < 0 ? rc : ant_buf_append_str(&path, "/files/");
    rc = rc < 0 ? rc : percent_path(tmp, mf->path, &path);
    if (tmp != NULL) {
        curl_easy_cleanup(tmp);
    }
    rc = rc < 0 ? rc
                : ant_buf_append_str(&path, pc->whole    ? ""
                                            : pc->header ? "?part=header"
                                                         : "?part=body");
    rc = rc < 0 ? rc : ant_buf_terminate(&path);
    rc = rc < 0 ? rc : req_init(&pc->q, r->p, (const char *)path.p, r->o.low_speed_s);
    ant_buf_fini(&path);
    if (rc < 0) {
        req_fini(&pc->q);
        return rc;
    }
    pc->status = 0;
    pc->err.len = 0;
    pc->cur0 = pc->cur;
    pc->fatal = 0;
    if (pc->header || pc->whole) {
        pc->f->hdr.len = 0;
    } else {
        snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)pc->cur,
                 (unsigned long long)(pc->end - 1));
        curl_easy_setopt(pc->q.h, CURLOPT_RANGE, range);
    }
    if (r->o.max_rate > 0) {
        curl_easy_setopt(pc->q.h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)r->o.max_rate);
    }
    curl_easy_setopt(pc->q.h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(pc->q.h, CURLOPT_WRITEDATA, pc);
    curl_easy_setopt(pc->q.h, CURLOPT_PRIVATE, pc);
    if (curl_multi_add_handle(r->multi, pc->q.h) != CURLM_OK) {
        req_fini(&pc->q);
        return -ENOMEM;
    }
    pc->state = P_RUN;
    r->inflight++;
    r->st->requests++;
    return 0;
}

static bool retryable(CURLcode cc, long status)
{
    if (cc == CURLE_OK) {
        return status >= 500 || status == 429 || status == 200 || status == 206;
    }
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Exponential backoff with jitter: half of min(cap, base * 2^attempt) fixed, half random, so
 * that retries spread out yet a short outage is always waited out (6 attempts span >= 3 s). */
static int64_t backoff_ms(const struct run *r, unsigned attempt)
{
    uint64_t ceil = r->o.backoff_ms;
    for (unsigned i = 1; i < attempt && ceil < FETCH_BACKOFF_CAP_MS; i++) {
        ceil *= 2;
    }
    if (ceil > FETCH_BACKOFF_CAP_MS) {
        ceil = FETCH_BACKOFF_CAP_MS;
    }
    return (int64_t)(ceil / 2 + randombytes_uniform((uint32_t)(ceil / 2) + 1));
}

/* Hands the hasher the body prefix whose pieces are all in, to hash. */
static int file_progress(struct run *r, struct ffile *f)
{
    size_t n = f->ready;
    while (n < f->npieces && f->first[n].state == P_DONE) {
        n++;
    }
    if (n == f->ready) {
        return 0;
    }
    f->ready = n;
    /* the last piece: the finish hashes what is left */
    return n == f->npieces ? 0 : sink_job(&r->sink, SJ_HASH, f, f->first[n].off);
}

static void file_close(struct run *r, struct ffile *f)
{
    ant_close(f->dfd);
    f->dfd = -1;
    if (f->fd >= 0) {
        ant_close(f->fd);
        f->fd = -1;
        (void)unlinkat(r->dirfd, f->tmp, 0);
    }
    if (f->active) {
        f->active = false;
        r->nactive--;
    }
}

/* All pieces of f are in: the hasher checks the digest and fsyncs (file_finished). */
static int file_finish(struct run *r, struct ffile *f)
{
    return sink_job(&r->sink, SJ_FINISH, f, r->m->files[f->idx].body_size);
}

/* The hasher's verdict on f: rename it into place, or fetch the body again once. */
static int file_finished(struct run *r, struct ffile *f, int rc)
{
    const struct ant_fetch_file *mf = &r->m->files[f->idx];
    if (rc == -EBADMSG && !f->refetched && mf->body_size > 0) {
        ant_log(ANT_LOG_WARN, "fetch.body_mismatch", "%s: body digest differs from the signed"
                " manifest; fetching it again", mf->path);
        f->refetched = true;
        r->st->refetched++;
        f->pieces_left = f->npieces;
        f->ready = 0;
        for (size_t i = 0; i < f->npieces; i++) {
            f->first[i].whole = false; /* the header is kept: the body alone, by range */
            f->first[i].cur = f->first[i].off;
            f->first[i].state = P_WAIT;
            f->first[i].attempt = 0;
            f->first[i].limited = 0;
            f->first[i].next_ms = 0;
        }
        return 0;
    }
    if (rc == -EBADMSG) {
        ant_diag_set(r->d, "%s: the body does not match the signed manifest (fetched twice)",
                     mf->path);
    } else if (rc < 0) {
        ant_diag_set(r->d, "%s: cannot make the copy durable: %s", mf->path, strerror(-rc));
    }
    if (rc == 0 && renameat(r->dirfd, f->tmp, r->dirfd, f->name) < 0) {
        rc = -errno;
    }
    if (rc == 0) {
        ant_close(f->fd);
        f->fd = -1;
        f->done = true;
        r->ndone++;
    }
    file_close(r, f);
    return rc;
}

static int header_done(struct run *r, struct ffile *f)
{
    struct ant_c4gh_header *h = NULL;
    size_t hlen = 0;
    int rc = ant_c4gh_header_measure(ant_buf_view(&f->hdr), &hlen, NULL);
    if (rc == 0 && hlen != f->hdr.len) {
        rc = -EBADMSG;
    }
    /* the peer re-encrypted it for our key: it must open with it, or nothing is written */
    rc = rc < 0 ? rc : ant_c4gh_header_parse(ant_buf_view(&f->hdr), r->self, NULL, 0, &h, NULL);
    ant_c4gh_header_free(h);
    if (rc < 0) {
        ant_diag_set(r->d, "%s: the header the peer sent does not open with this site's key",
                     r->m->files[f->idx].path);
        return -EBADMSG;
    }
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(f->tmp, ".fetch-", 7);
    ant_hex_encode(rnd, sizeof(rnd), f->tmp + 7);
    memcpy(f->tmp + 23, ".tmp", 5);
    f->fd = openat(r->dirfd, f->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        return -errno;
    }
    /* held until the rename or removal: the daemon's archive sweep (gateway/site.h) leaves a
     * locked temporary alone, so a crash's leftovers go and a running fetch's stay */
    (void)flock(f->fd, LOCK_EX | LOCK_NB);
    /* a second descriptor for direct writes, if the filesystem has them; checked to be the
     * file just created */
    struct stat a, b;
    f->dfd = openat(r->dirfd, f->tmp, O_WRONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
    if (f->dfd >= 0 && (fstat(f->fd, &a) < 0 || fstat(f->dfd, &b) < 0 || a.st_ino != b.st_ino ||
                        a.st_dev != b.st_dev)) {
        ant_close(f->dfd);
        f->dfd = -1;
    }
    f->nodirect = false;
    rc = ant_pwrite_all(f->fd, f->hdr.p, f->hdr.len, 0);
    if (rc < 0) {
        return rc;
    }
    f->body_at = f->hdr.len;
    f->header_done = true;
    return f->pieces_left == 0 ? file_finish(r, f) : 0;
}

static int piece_done(struct run *r, struct piece *pc, CURLcode cc)
{
    int rc = 0;
    long status = pc->status;
    if (status == 0) {
        curl_easy_getinfo(pc->q.h, CURLINFO_RESPONSE_CODE, &status);
    }
    r->st->bytes += (pc->header || pc->whole ? pc->f->hdr.len : 0) + pc->cur - pc->cur0;
    curl_multi_remove_handle(r->multi, pc->q.h);
    r->inflight--;
    piece_flush(r, pc);
    rc = sink_err(&r->sink);
    if (rc < 0) {
        ant_diag_set(r->d, "%s: cannot write the copy: %s", r->m->files[pc->f->idx].path,
                     strerror(-rc));
        req_fini(&pc->q);
        return rc;
    }
    bool complete = cc == CURLE_OK && pc->fatal == 0 &&
                    (pc->header || pc->whole ? status == 200 : status == 206) &&
                    (pc->header || (pc->cur == pc->end && pc->f->header_done));
    if (pc->fatal != 0) {
        if (pc->fatal == -EBADMSG) {
            ant_diag_set(r->d, "%s: the peer sent a malformed header",
                         r->m->files[pc->f->idx].path);
        }
        req_fini(&pc->q);
        return pc->fatal;
    }
    if (complete) {
        req_fini(&pc->q);
        pc->state = P_DONE;
        if (pc->header) {
            return header_done(r, pc->f);
        }
        pc->f->pieces_left--;
        if (pc->f->pieces_left == 0) {
            return file_finish(r, pc->f);
        }
        return file_progress(r, pc->f);
    }
    /* A 429 is the serving site's per-principal rate limit: nothing was done, come back later.
     * It waits at least a second (its Retry-After) and does not count as a failed attempt,
     * within a bound of its own (a pull of many small files can meet the limit often). */
    bool limited = cc == CURLE_OK && status == 429;
    if (!retryable(cc, status) || (!limited && pc->attempt + 1 > r->o.max_retries) ||
        (limited && pc->limited + 1 > FETCH_RATE_LIMITED_MAX)) {
        if (cc == CURLE_OK && status >= 400) {
            rc = peer_refusal(status, ant_buf_view(&pc->err), r->d);
        } else {
            ant_diag_set(r->d, "%s: %s after %u attempts", r->m->files[pc->f->idx].path,
                         cc != CURLE_OK ? curl_easy_strerror(cc) : "incomplete answer",
                         pc->attempt + 1);
            rc = -EIO;
        }
        req_fini(&pc->q);
        return rc;
    }
    /* again later, from the bytes already written (a header is small: it starts over; a whole
     * file whose header arrived goes on as a body range) */
    if (pc->whole && pc->f->header_done) {
        pc->whole = false;
    }
    r->st->retries++;
    if (limited) {
        pc->limited++;
        pc->next_ms = now_ms() + 1000 + randombytes_uniform(500);
    } else {
        pc->attempt++;
        pc->next_ms = now_ms() + backoff_ms(r, pc->attempt);
    }
    pc->state = P_WAIT;
    ant_log(ANT_LOG_INFO, "fetch.retry", "%s: %s (HTTP %ld), retry %u from byte %llu",
            r->m->files[pc->f->idx].path, cc != CURLE_OK ? curl_easy_strerror(cc) : "incomplete",
            status, pc->attempt, (unsigned long long)pc->cur);
    req_fini(&pc->q);
    return 0;
}

/* Starts what may start: files in order up to the active cap, then their waiting pieces. */
static int schedule(struct run *r)
{
    size_t cap = r->o.max_conns * 2u < 16u ? 16u : r->o.max_conns * 2u;
    int64_t now = now_ms();
    while (r->nactive < cap && r->next_file < r->nfiles) {
        struct ffile *f = &r->files[r->next_file++];
        if (f->name != NULL) {
            f->active = true;
            r->nactive++;
        }
    }
    for (size_t i = 0; i < r->npieces && r->inflight < r->o.max_conns; i++) {
        struct piece *pc = &r->pieces[i];
        if (pc->state != P_WAIT || !pc->f->active || pc->next_ms > now ||
            (!pc->header && !pc->whole && !pc->f->header_done)) {
            continue;
        }
        int rc = piece_start(r, pc);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int build(struct run *r, const bool *want, const char *const *names)
{
    uint64_t rs = r->o.range_size;
    size_t n = 0;
    r->nfiles = r->m->nfiles;
    r->files = calloc(r->nfiles + 1, sizeof(*r->files));
    if (r->files == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->nfiles; i++) {
        r->files[i].fd = -1;
        r->files[i].dfd = -1;
        ant_buf_init(&r->files[i].hdr, ANT_C4GH_MAX_HEADER_LEN);
        if (want != NULL && !want[i]) {
            continue;
        }
        const struct ant_fetch_file *mf = &r->m->files[i];
        n += mf->body_size <= rs ? 1 : 1 + (size_t)((mf->body_size + rs - 1) / rs);
    }
    r->pieces = calloc(n + 1, sizeof(*r->pieces));
    if (r->pieces == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->nfiles; i++) {
        struct ffile *f = &r->files[i];
        const struct ant_fetch_file *mf = &r->m->files[i];
        f->idx = i;
        f->digest = mf->sha256_c4gh;
        if (want != NULL && !want[i]) {
            f->done = true;
            r->ndone++;
            continue;
        }
        f->name = names[i];
        if (mf->body_size <= rs) {
            /* one request for header and body: half the requests for small files */
            struct piece *w = &r->pieces[r->npieces++];
            w->run = r;
            w->f = f;
            w->whole = true;
            w->end = mf->body_size;
            ant_buf_init(&w->err, FETCH_ERRBODY_MAX);
            f->first = w;
            f->npieces = f->pieces_left = 1;
            continue;
        }
        struct piece *h = &r->pieces[r->npieces++];
        h->run = r;
        h->f = f;
        h->header = true;
        ant_buf_init(&h->err, FETCH_ERRBODY_MAX);
        f->first = &r->pieces[r->npieces];
        for (uint64_t off = 0; off < mf->body_size; off += rs) {
            struct piece *pc = &r->pieces[r->npieces++];
            pc->run = r;
            pc->f = f;
            pc->off = pc->cur = off;
            pc->end = mf->body_size - off < rs ? mf->body_size : off + rs;
            ant_buf_init(&pc->err, FETCH_ERRBODY_MAX);
            f->npieces++;
        }
        f->pieces_left = f->npieces;
    }
    return 0;
}

int ant_fetch_files(const struct ant_fetch_peer *p, const char *dataset,
                    const struct ant_fetch_manifest *m, const bool *want,
                    const char *const *names, int dirfd, const struct ant_key *self,
                    const struct ant_fetch_opts *o, struct ant_fetch_stats *st,
                    struct ant_diag *d)
{
    struct ant_fetch_stats dummy;
    struct run r;
    memset(&r, 0, sizeof(r));
    memset(&dummy, 0, sizeof(dummy));
    r.p = p;
    r.dataset = dataset;
    r.m = m;
    r.self = self;
    r.st = st != NULL ? st : &dummy;
    r.d = d;
    r.dirfd = dirfd;
    if (o != NULL) {
        r.o = *o;
    }
    r.o.max_conns = r.o.max_conns == 0 ? 8 : r.o.max_conns > 256 ? 256 : r.o.max_conns;
    r.o.max_retries = r.o.max_retries == 0 ? 8 : r.o.max_retries;
    r.o.backoff_ms = r.o.backoff_ms == 0 ? 100 : r.o.backoff_ms;
    r.o.low_speed_s = r.o.low_speed_s <= 0 ? 30 : r.o.low_speed_s;
    /* whole cipher segments: each range starts on a segment, so a piece is a run of them */
    uint64_t segs = r.o.range_size == 0 ? 128 : r.o.range_size / ANT_C4GH_CIPHER_SEGMENT_LEN;
    r.o.range_size = (segs == 0 ? 1 : segs) * ANT_C4GH_CIPHER_SEGMENT_LEN;
    int rc = build(&r, want, names);
    r.multi = rc == 0 ? curl_multi_init() : NULL;
    if (rc == 0 && r.multi == NULL) {
        rc = -ENOMEM;
    }
    if (rc == 0) {
        curl_multi_setopt(r.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)r.o.max_conns);
        rc = sink_start(&r.sink, r.multi, r.o.max_conns, r.o.range_size, r.o.hold_max);
    }
    while (rc == 0 && r.ndone < r.nfiles) {
        int running = 0, left = 0;
        CURLMsg *msg;
        if (r.o.cancel != NULL && atomic_load(r.o.cancel)) {
            ant_diag_set(d, "the transfer was cancelled");
            rc = -ECANCELED;
            break;
        }
        rc = schedule(&r);
        if (rc < 0) {
            break;
        }
        if (curl_multi_perform(r.multi, &running) != CURLM_OK) {
            rc = -EIO;
            break;
        }
        while (rc == 0 && (msg = curl_multi_info_read(r.multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                char *priv = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                rc = piece_done(&r, (struct piece *)(void *)priv, msg->data.result);
            }
        }
        struct sjob *fin = sink_take_done(&r.sink);
        while (fin != NULL) {
            struct sjob *next = fin->next;
            rc = rc < 0 ? rc : file_finished(&r, fin->f, fin->rc);
            free(fin);
            fin = next;
        }
        if (rc == 0 && (rc = sink_err(&r.sink)) < 0) {
            ant_diag_set(d, "cannot write the copies: %s", strerror(-rc));
            break;
        }
        if (rc == 0 && curl_multi_poll(r.multi, NULL, 0, r.inflight > 0 ? 100 : 20, NULL) !=
                           CURLM_OK) {
            rc = -EIO;
        }
    }
    sink_fini(&r.sink); /* before the files it writes are closed */
    for (size_t i = 0; i < r.npieces; i++) {
        sjob_free(r.pieces[i].wb);
        if (r.pieces[i].q.h != NULL) {
            curl_multi_remove_handle(r.multi, r.pieces[i].q.h);
        }
        req_fini(&r.pieces[i].q);
        ant_buf_fini(&r.pieces[i].err);
    }
    for (size_t i = 0; r.files != NULL && i < r.nfiles; i++) {
        file_close(&r, &r.files[i]);
        ant_buf_fini(&r.files[i].hdr);
        EVP_MD_CTX_free(r.files[i].md);
    }
    if (r.multi != NULL) {
        curl_multi_cleanup(r.multi);
    }
    free(r.pieces);
    free(r.files);
    return rc;
}

/* --- a whole pull --- */

void ant_fed_pulled_fini(struct ant_fed_pulled *p)
{
    if (p != NULL) {
        free(p->files);
        p->files = NULL;
        p->nfiles = 0;
    }
}

struct tokctx {
    const struct ant_fed_pull_req *q;
};

static int make_token(void *arg, struct ant_buf *out)
{
    const struct ant_fed_pull_req *q = ((struct tokctx *)arg)->q;
    struct ant_fed_token t;
    memset(&t, 0, sizeof(t));
    snprintf(t.iss, sizeof(t.iss), "%s", q->self_id);
    snprintf(t.aud, sizeof(t.aud), "%s", q->peer_id);
    snprintf(t.principal, sizeof(t.principal), "%s", q->principal);
    snprintf(t.tenant, sizeof(t.tenant), "%s@%s", q->tenant, q->self_id);
    snprintf(t.purpose, sizeof(t.purpose), "%s", q->purpose);
    /* short-lived: each token is for one request sent at once */
    t.iat = ant_now_unix();
    t.exp = t.iat + 120;
    int rc = ant_token_fed_sign(q->keys->sign, &t, out);
    return rc < 0 ? rc : ant_buf_terminate(out);
}

static int pull_audit(const struct ant_fed_pull_req *q, const char *transfer, bool ok,
                      const char *reason, const struct ant_fed_pulled *res, int err,
                      const struct ant_diag *d)
{
    char id[2 * ANT_NAME_MAX + 4], detail[1024];
    snprintf(id, sizeof(id), "%s:%s", q->peer_id, q->dataset);
    if (ok) {
        size_t cached = 0, files = 0;
        for (size_t i = 0; i < res->nfiles; i++) {
            cached += res->files[i].cached ? 1 : 0;
            files += res->files[i].skipped ? 0 : 1;
        }
        snprintf(detail, sizeof(detail),
                 "{\"peer\":\"%s\",\"files\":%zu,\"cached\":%zu,\"bytes\":%llu,"
                 "\"requests\":%u,\"retries\":%u,\"refetched\":%u,\"purpose\":\"%s\"}",
                 q->peer_id, files, cached, (unsigned long long)res->stats.bytes,
                 res->stats.requests, res->stats.retries, res->stats.refetched, q->purpose);
    } else {
        /* the peer's message is free text: keep only characters that need no escaping */
        char why[256];
        const char *m = ant_diag_msg(d, strerror(-err));
        size_t j = 0;
        for (size_t i = 0; m[i] != '\0' && j + 1 < sizeof(why); i++) {
            why[j++] = (m[i] == '"' || m[i] == '\\' || (unsigned char)m[i] < 0x20) ? '\'' : m[i];
        }
        why[j] = '\0';
        /* a message cut at its 255th byte may end inside a character, which the log refuses */
        ant_json_cut_to_text(why);
        if (ant_audit_looks_secret(why)) {
            /* a peer echoing a token in its error: the log would refuse the event, unwritten */
            snprintf(why, sizeof(why), "[redacted]");
        }
        snprintf(detail, sizeof(detail), "{\"peer\":\"%s\",\"error\":\"%s\",\"purpose\":\"%s\"}",
                 q->peer_id, why, q->purpose);
    }
    struct ant_audit_event ev = {
        .request_id = q->request_id,
        .actor = q->principal,
        .tenant = q->tenant,
        .credential = "local",
        .action = "fed.pull",
        .resource_kind = "peer_dataset",
        .resource_id = id,
        .decision = ok ? ANT_AUDIT_INFO : ANT_AUDIT_DENY,
        .reason = reason,
        .transfer = transfer,
        .detail = detail,
    };
    int64_t seq = ant_audit_append(q->audit, &ev);
    return seq < 0 ? (int)seq : 0;
}

static const char *pull_reason(int rc)
{
    switch (rc) {
    case -EPERM:
        return "peer_refused_token";
    case -EACCES:
        return "peer_denied";
    case -ENOENT:
        return "not_found";
    case -EKEYREJECTED:
        return "bad_manifest_signature";
    case -EBADMSG:
        return "integrity";
    case -ECANCELED:
        return "cancelled";
    default:
        return "transfer_failed";
    }
}

/* --- witnessing the peer's audit checkpoints (docs/security.md, "Witnesses") --- */

/* A checkpoint line is ~300 bytes. */
#define WITNESS_BODY_MAX 4096

/* A witness conflict: logged as an error and audited (best effort: the pull goes on). kind:
 * "equivocation", "rollback" or "signature"; highest: the highest seq recorded before the peer
 * was asked (0: not said); recorded: whether the checkpoint had a row before (rollback). */
static void witness_conflict(const struct ant_fed_pull_req *q, const struct ant_audit_ckpt *c,
                             const char *kind, int64_t highest, bool recorded, const char *why)
{
    char seq[24], top[24], detail[512], extra[64] = "";
    snprintf(seq, sizeof(seq), "%lld", (long long)c->seq);
    snprintf(top, sizeof(top), "%lld", (long long)highest);
    ant_log_kv(ANT_LOG_ERROR, "fed.witness_conflict",
               ((const char *[]){"peer", q->peer_id, "seq", seq, "kind", kind,
                                 highest > 0 ? "highest" : NULL, top, NULL}),
               "peer %s: audit checkpoint %s: %s (the record: antenna admin peer witnessed %s)",
               q->peer_id, seq, why, q->peer_id);
    if (q->audit == NULL) {
        return;
    }
    if (highest > 0) {
        snprintf(extra, sizeof(extra), ",\"highest\":%lld,\"recorded\":%s", (long long)highest,
                 recorded ? "true" : "false");
    }
    snprintf(detail, sizeof(detail),
             "{\"peer\":\"%s\",\"seq\":%lld,\"kind\":\"%s\"%s,\"why\":\"%s\"}", q->peer_id,
             (long long)c->seq, kind, extra, why);
    struct ant_audit_event ev = {
        .request_id = q->request_id,
        .credential = "local",
        .action = "fed.witness_conflict",
        .resource_kind = "peer",
        .resource_id = q->peer_id,
        .decision = ANT_AUDIT_INFO,
        .reason = "witness_conflict",
        .detail = detail,
    };
    if (ant_audit_append(q->audit, &ev) < 0) {
        ant_log(ANT_LOG_ERROR, "fed.witness_conflict", "cannot audit the conflict of %s",
                q->peer_id);
    }
}

/* What the record of checkpoint c says, logged and, for a conflict, audited. */
static void witness_report(const struct ant_fed_pull_req *q, const struct ant_audit_ckpt *c,
                           const struct ant_witness_result *w)
{
    char why[256];
    long long seq = (long long)c->seq, top = (long long)w->highest;
    if (w->equivocation) {
        snprintf(why, sizeof(why),
                 "another hash at a recorded seq: two histories shown (equivocation), or its log "
                 "rewritten and re-signed%s",
                 w->rollback ? "; and below the highest recorded" : "");
        witness_conflict(q, c, "equivocation", w->rollback ? w->highest : 0, false, why);
    } else if (w->rollback && !w->added) {
        snprintf(why, sizeof(why),
                 "went back to a recorded checkpoint: seq %lld served as the latest, the highest "
                 "recorded is %lld (rollback: a backup taken at it restored, or the tail cut back "
                 "to it)",
                 seq, top);
        witness_conflict(q, c, "rollback", w->highest, true, why);
    } else if (w->rollback) {
        snprintf(why, sizeof(why),
                 "went back below the highest recorded checkpoint: seq %lld, not recorded before, "
                 "served as the latest, the highest recorded is %lld (rollback: its tail removed, "
                 "or a backup restored)",
                 seq, top);
        witness_conflict(q, c, "rollback", w->highest, false, why);
    } else if (w->rollback_seen) {
        /* the same rollback, recorded and audited at an earlier session: the peer is still
         * there; no second record of it */
        ant_log(ANT_LOG_WARN, "fed.witness",
                "peer %s: still at checkpoint %lld, below the highest recorded %lld (a rollback "
                "recorded before)",
                q->peer_id, seq, top);
    } else if (w->added) {
        ant_log(ANT_LOG_INFO, "fed.witness", "peer %s: checkpoint %lld recorded", q->peer_id,
                seq);
    }
}

/* Fetches the peer's latest signed checkpoint, checks it against the peer's pinned key and
 * records it. Never fails the caller: what goes wrong is logged. */
static void witness(const struct ant_fed_pull_req *q, const struct ant_fetch_peer *fp)
{
    struct mget g = {ANT_BUF_INIT(WITNESS_BODY_MAX), ""};
    struct req r = {0};
    json_t *doc = NULL;
    struct ant_audit_ckpt c;
    struct ant_witness_result w;
    long status = 0;
    int64_t top = 0;
    /* read before asking: the peer served `top` before it answers this request, so an answer
     * below it is a rollback, while one recorded by another session meanwhile proves nothing
     * (peers.h) */
    int rc = ant_peer_witness_top(q->st, fp->id, &top);
    if (rc < 0) {
        ant_log(ANT_LOG_ERROR, "fed.witness", "peer %s: cannot read the record: %s", fp->id,
                strerror(-rc));
    }
    rc = rc < 0 ? rc : req_init(&r, fp, "/v1/federation/checkpoint", 30);
    if (rc == 0) {
        curl_easy_setopt(r.h, CURLOPT_WRITEFUNCTION, mget_body);
        curl_easy_setopt(r.h, CURLOPT_WRITEDATA, &g);
        curl_easy_setopt(r.h, CURLOPT_TIMEOUT, 30L);
        CURLcode cc = curl_easy_perform(r.h);
        rc = cc == CURLE_OK ? 0 : -EIO;
        if (cc != CURLE_OK) {
            ant_log(ANT_LOG_WARN, "fed.witness", "peer %s: checkpoint not fetched: %s",
                    fp->id, curl_easy_strerror(cc));
        }
    }
    if (rc == 0) {
        curl_easy_getinfo(r.h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) {
            /* 404: no checkpoint yet; an older peer without the route: nothing to witness */
            ant_log(ANT_LOG_WARN, "fed.witness", "peer %s: checkpoint not fetched (HTTP %ld)",
                    fp->id, status);
            rc = -EIO;
        }
    }
    if (rc == 0 && (ant_json_parse(ant_buf_view(&g.body), WITNESS_BODY_MAX, 2, &doc, NULL) < 0 ||
                    ant_audit_ckpt_from_json(doc, &c) < 0)) {
        ant_log(ANT_LOG_WARN, "fed.witness", "peer %s: malformed checkpoint", fp->id);
        rc = -EBADMSG;
    }
    if (rc == 0 && !ant_audit_ckpt_sig_is_valid(fp->ed25519_pk, &c)) {
        witness_conflict(q, &c, "signature", 0, false,
                         "not signed by the key pinned for the peer; not recorded");
        rc = -EBADMSG;
    }
    if (rc == 0) {
        rc = ant_peer_witness_record(q->st, fp->id, &c, top, 0, &w);
        if (rc < 0) {
            ant_log(ANT_LOG_ERROR, "fed.witness", "peer %s: cannot record checkpoint %lld: %s",
                    fp->id, (long long)c.seq, strerror(-rc));
        }
    }
    if (rc == 0) {
        witness_report(q, &c, &w);
    }
    json_decref(doc);
    req_fini(&r);
    ant_buf_fini(&g.body);
}

/* The pinned row of q->peer_id as a fetch peer: fp borrows from peer, anchor and tc. Every
 * session with a peer starts here, so this is where the peer's checkpoint is witnessed. */
static int fed_peer(const struct ant_fed_pull_req *q, const char *transfer_id,
                    struct ant_peer *peer, struct ant_buf *anchor, struct tokctx *tc,
                    struct ant_fetch_peer *fp, struct ant_diag *d)
{
    int rc = ant_peer_get(q->st, q->peer_id, peer);
    if (rc == -ENOENT) {
        ant_diag_set(d, "%s is not a peer of this site (antenna admin peer list)", q->peer_id);
    }
    rc = rc < 0 ? rc : ant_peer_anchor(q->st, q->peer_id, anchor);
    if (rc < 0) {
        return rc;
    }
    tc->q = q;
    *fp = (struct ant_fetch_peer){
        .id = peer->id,
        .url = peer->url,
        .anchor = ant_buf_view(anchor),
        .ed25519_pk = peer->ed25519_pk,
        .token = make_token,
        .token_ctx = tc,
        .transfer_id = transfer_id,
    };
    witness(q, fp);
    return 0;
}

int ant_fed_manifest(const struct ant_fed_pull_req *q, struct ant_fetch_manifest *out,
                     struct ant_diag *d)
{
    struct ant_peer peer;
    struct ant_buf anchor = ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX + 1);
    struct tokctx tc;
    struct ant_fetch_peer fp;
    if (q->transfer_id == NULL || q->transfer_id[0] == '\0') {
        return -EINVAL;
    }
    int rc = fed_peer(q, q->transfer_id, &peer, &anchor, &tc, &fp, d);
    rc = rc < 0 ? rc : ant_fetch_manifest_get(&fp, q->dataset, out, d);
    ant_buf_fini(&anchor);
    return rc;
}

int ant_fed_pull(const struct ant_fed_pull_req *q, struct ant_fed_pulled *out, struct ant_diag *d)
{
    struct ant_peer peer;
    struct ant_buf anchor = ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX + 1);
    struct ant_fetch_manifest m;
    struct ant_fed_pulled res;
    struct tokctx tc;
    struct ant_fetch_peer fp;
    bool *want = NULL;
    char **names = NULL;
    int fedfd = -1;
    bool in_tx = false;
    memset(&m, 0, sizeof(m));
    memset(&res, 0, sizeof(res));
    if (q->transfer_id != NULL) {
        snprintf(res.transfer_id, sizeof(res.transfer_id), "%s", q->transfer_id);
    } else {
        uint8_t rnd[12];
        randombytes_buf(rnd, sizeof(rnd));
        memcpy(res.transfer_id, "tr_", 3);
        ant_hex_encode(rnd, sizeof(rnd), res.transfer_id + 3);
    }
    int rc = fed_peer(q, res.transfer_id, &peer, &anchor, &tc, &fp, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_fetch_manifest_get(&fp, q->dataset, &m, d);
    if (rc < 0) {
        goto out;
    }
    if (mkdirat(q->archive_fd, "fed", 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    fedfd = openat(q->archive_fd, "fed", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fedfd < 0) {
        rc = -errno;
        goto out;
    }
    res.nfiles = m.nfiles;
    snprintf(res.dataset_name, sizeof(res.dataset_name), "%s", m.dataset_name);
    res.files = calloc(m.nfiles + 1, sizeof(*res.files));
    want = calloc(m.nfiles + 1, sizeof(*want));
    names = calloc(m.nfiles + 1, sizeof(*names));
    if (res.files == NULL || want == NULL || names == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* Each lookup marks its copy used (a write): one transaction for all of them, so that a
     * dataset of many files staged again from the cache commits once, not once per file. */
    rc = ant_store_begin(q->st);
    if (rc < 0) {
        goto out;
    }
    in_tx = true;
    for (size_t i = 0; i < m.nfiles; i++) {
        struct ant_fed_pulled_file *pf = &res.files[i];
        struct ant_fed_cached c;
        struct stat sb;
        snprintf(pf->path, sizeof(pf->path), "%s", m.files[i].path);
        pf->size = m.files[i].size;
        memcpy(pf->sha256, m.files[i].sha256, 32);
        memcpy(pf->sha256_c4gh, m.files[i].sha256_c4gh, 32);
        if (q->want != NULL && !q->want(q->want_arg, pf->path)) {
            pf->skipped = true;
            continue;
        }
        int cr = ant_fed_cache_get(q->st, peer.id, q->dataset, m.files[i].path,
                                   m.files[i].sha256_c4gh, 0, &c);
        char name[ANT_ID_MAX + 8];
        if (cr == 0) {
            snprintf(name, sizeof(name), "%s.c4gh", c.storage);
            /* a row without its file (removed by hand) is fetched again */
            pf->cached = fstatat(fedfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode);
        } else if (cr != -ENOENT) {
            rc = cr;
            goto out;
        }
        if (!pf->cached) {
            uint8_t rnd[8];
            randombytes_buf(rnd, sizeof(rnd));
            memcpy(c.storage, "fc_", 3);
            ant_hex_encode(rnd, sizeof(rnd), c.storage + 3);
            snprintf(name, sizeof(name), "%s.c4gh", c.storage);
            names[i] = strdup(name);
            if (names[i] == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            want[i] = true;
        }
        int nw = snprintf(pf->archive_name, sizeof(pf->archive_name), "fed/%s.c4gh", c.storage);
        if (nw < 0 || (size_t)nw >= sizeof(pf->archive_name)) {
            rc = -EBADMSG; /* a cache row naming no copy this code made: never a cut name */
            goto out;
        }
    }
    in_tx = false;
    rc = ant_store_commit(q->st);
    if (rc < 0) {
        goto out;
    }
    rc = ant_fetch_files(&fp, q->dataset, &m, want, (const char *const *)names, fedfd, q->keys->kx,
                         q->opts, &res.stats, d);
    for (size_t i = 0; rc == 0 && i < m.nfiles; i++) {
        if (!want[i]) {
            continue;
        }
        struct ant_fed_cached c;
        memset(&c, 0, sizeof(c));
        snprintf(c.storage, sizeof(c.storage), "%.*s", (int)(strlen(names[i]) - 5), names[i]);
        c.size = m.files[i].body_size;
        memcpy(c.sha256_c4gh, m.files[i].sha256_c4gh, 32);
        rc = ant_fed_cache_put(q->st, peer.id, q->dataset, m.files[i].path, &c, 0);
    }
    if (rc == 0) {
        rc = ant_fsync_dir(fedfd);
    }
out:
    if (in_tx) {
        ant_store_rollback(q->st);
    }
    if (rc == 0) {
        rc = pull_audit(q, res.transfer_id, true, "pulled", &res, 0, d);
        if (rc < 0) {
            ant_diag_set(d, "the audit log cannot record the pull: nothing is released");
        }
    } else if (pull_audit(q, res.transfer_id, false, pull_reason(rc), &res, rc, d) < 0) {
        ant_log(ANT_LOG_ERROR, "fed.pull", "cannot audit the failed pull of %s:%s", q->peer_id,
                q->dataset);
    }
    if (rc == 0) {
        *out = res;
        memset(&res, 0, sizeof(res));
    } else {
        snprintf(out->transfer_id, sizeof(out->transfer_id), "%s", res.transfer_id);
    }
    for (size_t i = 0; names != NULL && i < m.nfiles; i++) {
        free(names[i]);
    }
    free(names);
    free(want);
    ant_fed_pulled_fini(&res);
    ant_fetch_manifest_fini(&m);
    ant_buf_fini(&anchor);
    ant_close(fedfd);
    return rc;
}
