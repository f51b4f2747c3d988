/* libcurl client; see client.h. */
#include "gateway/client.h"

#include "crypto/base/json.h"
#include "crypto/c4gh.h"

#include <curl/curl.h>
#include <curl/header.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* JSON answers larger than this are refused (lists are paginated well below it). */
#define CLIENT_JSON_MAX (64u << 20)
#define CLIENT_AUTH_MAX 8300

struct ant_client {
    CURL *h;
    char base[512];
    char cacert[1024];
    char auth[CLIENT_AUTH_MAX]; /* "Authorization: Bearer ..." wiped on close */
    bool progress;
    int64_t progress_t_ns;     /* the last redraw */
    int64_t progress_start_ns; /* the request's start: the rate counts this run's bytes only */
    uint64_t progress_base;    /* bytes a resumed download had before this request */
    bool progress_full;        /* the 100% was drawn: not again while the answer is awaited */
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Reads the API key from an open file (first line, surrounding whitespace dropped); `path`
 * names it in messages. */
static int read_key_fd(int fd, const char *path, char *out, size_t n, struct ant_diag *d)
{
    struct ant_buf b;
    ant_buf_init(&b, 16384);
    int rc = ant_read_all(fd, &b);
    if (rc < 0) {
        ant_diag_set(d, "cannot read the API key file %s: %s", path, strerror(-rc));
        goto out;
    }
    size_t s = 0, e = b.len;
    while (s < e && (b.p[s] == ' ' || b.p[s] == '\t' || b.p[s] == '\n' || b.p[s] == '\r')) {
        s++;
    }
    size_t l = s;
    while (l < e && b.p[l] != '\n' && b.p[l] != '\r' && b.p[l] != ' ') {
        l++;
    }
    if (l == s || l - s >= n) {
        ant_diag_set(d, "the API key file %s holds no key", path);
        rc = -EINVAL;
        goto out;
    }
    memcpy(out, b.p + s, l - s);
    out[l - s] = '\0';
out:
    ant_buf_wipe_fini(&b);
    return rc;
}

static int read_key_file(const char *path, char *out, size_t n, struct ant_diag *d)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ant_diag_set(d, "cannot read the API key file %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = read_key_fd(fd, path, out, n, d);
    ant_close(fd);
    return rc;
}

/* The saved login's URL into out (unchanged when there is none). */
static int saved_url(char *out, size_t n, struct ant_diag *d)
{
    char buf[480];
    int fd = ant_client_login_open(ANT_LOGIN_URL, d);
    if (fd == -ENOENT) {
        return 0;
    }
    if (fd < 0) {
        return fd;
    }
    ssize_t r = ant_read_full(fd, buf, sizeof(buf) - 1);
    ant_close(fd);
    if (r < 0) {
        ant_diag_set(d, "cannot read the saved login's URL: %s", strerror((int)-r));
        return (int)r;
    }
    buf[r] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    snprintf(out, n, "%s", buf);
    return 0;
}

/* The saved login's API key into out (left empty when there is none). */
static int saved_key(char *out, size_t n, struct ant_diag *d)
{
    int fd = ant_client_login_open(ANT_LOGIN_KEY, d);
    if (fd == -ENOENT) {
        return 0;
    }
    if (fd < 0) {
        return fd;
    }
    int rc = read_key_fd(fd, "of the saved login", out, n, d);
    ant_close(fd);
    return rc;
}

/* Drops the trailing slashes of a URL: "https://h:1/" and "https://h:1" are one site. */
static void strip_slashes(char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') {
        url[--n] = '\0';
    }
}

int ant_client_open(const struct ant_client_conf *conf, struct ant_client **out,
                    struct ant_diag *d)
{
    char secret[CLIENT_AUTH_MAX - 32] = "";
    char saved[sizeof(((struct ant_client *)NULL)->base)] = "";
    int rc = 0;
    pthread_once(&g_curl_once, curl_init_once);
    struct ant_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    const char *url = conf->url ? conf->url : getenv("ANTENNA_URL");
    const char *ca = conf->cacert ? conf->cacert : getenv("ANTENNA_CACERT");
    const char *env_key = getenv("ANTENNA_API_KEY") ? getenv("ANTENNA_API_KEY")
                                                    : getenv("ANTENNA_TOKEN");
    if (!conf->ignore_login) {
        struct ant_diag sd = {{0}};
        rc = saved_url(saved, sizeof(saved), &sd);
        if (rc < 0 && url == NULL) {
            /* the saved login is what this command would use: say why it cannot */
            ant_diag_set(d, "%s", sd.msg);
            goto out;
        }
        if (rc < 0) {
            saved[0] = '\0'; /* another site was named: an unreadable login is not in the way */
        }
        rc = 0;
        strip_slashes(saved);
    }
    snprintf(c->base, sizeof(c->base), "%s",
             url != NULL ? url : saved[0] != '\0' ? saved : "https://127.0.0.1:8443");
    strip_slashes(c->base);
    /* The saved CA copy and key belong to the saved URL: with another site named they are not
     * used, or a login's key would be sent to (and its CA trusted for) a site it is not for. */
    bool use_login = !conf->ignore_login &&
                     (url == NULL || (saved[0] != '\0' && strcmp(c->base, saved) == 0));
    if (strncmp(c->base, "https://", 8) != 0) {
        ant_diag_set(d, "the site URL must start with https:// (got '%s')", c->base);
        rc = -EINVAL;
        goto out;
    }
    if (ca != NULL) {
        snprintf(c->cacert, sizeof(c->cacert), "%s", ca);
    } else if (use_login && ant_client_login_dir(c->cacert, sizeof(c->cacert) -
                                                                sizeof(ANT_LOGIN_CA) - 1) == 0) {
        size_t cl = strlen(c->cacert);
        snprintf(c->cacert + cl, sizeof(c->cacert) - cl, "/%s", ANT_LOGIN_CA);
        if (access(c->cacert, R_OK) < 0) {
            c->cacert[0] = '\0'; /* no saved CA: the system store */
        }
    }
    c->progress = conf->progress && isatty(STDERR_FILENO);
    if (conf->bearer != NULL) {
        snprintf(secret, sizeof(secret), "%s", conf->bearer);
    } else if (conf->key_file != NULL) {
        rc = read_key_file(conf->key_file, secret, sizeof(secret), d);
    } else if (env_key != NULL) {
        snprintf(secret, sizeof(secret), "%s", env_key);
    } else if (getenv("ANTENNA_API_KEY_FILE") != NULL) {
        rc = read_key_file(getenv("ANTENNA_API_KEY_FILE"), secret, sizeof(secret), d);
    } else if (use_login) {
        rc = saved_key(secret, sizeof(secret), d);
    }
    if (rc < 0) {
        goto out;
    }
    if (secret[0] != '\0') {
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", secret);
    }
    c->h = curl_easy_init();
    if (c->h == NULL) {
        rc = -ENOMEM;
        goto out;
    }
out:
    sodium_memzero(secret, sizeof(secret));
    if (rc < 0) {
        ant_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ant_client_close(struct ant_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->h != NULL) {
        curl_easy_cleanup(c->h);
    }
    sodium_memzero(c->auth, sizeof(c->auth));
    free(c);
}

int ant_client_path(struct ant_buf *url, const char *seg, bool keep_slash)
{
    int rc = 0;
    const char *p = seg;
    while (rc == 0) {
        size_t n = keep_slash ? strcspn(p, "/") : strlen(p);
        char *esc = curl_easy_escape(NULL, p, (int)n); /* the handle is unused (curl >= 7.82) */
        if (esc == NULL) {
            return -ENOMEM;
        }
        rc = ant_buf_printf(url, "/%s", esc);
        curl_free(esc);
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    return rc;
}

/* ------------------------------------------------------------------ download checksums */

/* The SHA-256 of a download as its bytes go by: of all of them (plaintext), or of those after
 * the Crypt4GH header (whose length ant_c4gh_header_measure finds as the header arrives, in
 * pieces of any size). */
struct sum {
    enum ant_client_sum kind;
    EVP_MD_CTX *md;
    struct ant_buf hdr; /* C4GH: the header so far; never more of it than measure asked for */
    bool body;          /* C4GH: the header is whole, what follows is hashed */
    int err;            /* -EBADMSG (not a Crypt4GH header: diag), -EIO, -ENOMEM */
    struct ant_diag d;
};

static void sum_fini(struct sum *s)
{
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    ant_buf_fini(&s->hdr);
}

/* (Re)starts the sum: nothing seen yet. */
static int sum_reset(struct sum *s, enum ant_client_sum kind)
{
    sum_fini(s);
    *s = (struct sum){.kind = kind, .hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN)};
    if (kind == ANT_CLIENT_SUM_NONE) {
        return 0;
    }
    s->md = EVP_MD_CTX_new();
    if (s->md == NULL || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        s->err = -ENOMEM;
    }
    return s->err;
}

static int sum_update(struct sum *s, const uint8_t *p, size_t n)
{
    if (s->kind == ANT_CLIENT_SUM_NONE || s->err < 0) {
        return s->err;
    }
    while (s->kind == ANT_CLIENT_SUM_C4GH && !s->body) {
        size_t need = 0;
        int rc = ant_c4gh_header_measure(ant_buf_view(&s->hdr), &need, &s->d);
        if (rc == 0) {
            s->body = true; /* need == hdr.len: no byte past what measure asked for was kept */
            ant_buf_fini(&s->hdr);
        } else if (rc != -EAGAIN) {
            s->err = rc == -E2BIG ? -EBADMSG : rc;
            return s->err;
        } else if (n == 0) {
            return 0;
        } else {
            size_t take = need - s->hdr.len < n ? need - s->hdr.len : n;
            if (ant_buf_append(&s->hdr, p, take) < 0) {
                s->err = -ENOMEM;
                return s->err;
            }
            p += take;
            n -= take;
        }
    }
    if (n > 0 && EVP_DigestUpdate(s->md, p, n) != 1) {
        s->err = -EIO;
    }
    return s->err;
}

/* Feeds bytes [0, len) of fd: the part of a resumed download kept from before. */
static int sum_file(struct sum *s, int fd, uint64_t len)
{
    uint8_t buf[65536];
    uint64_t off = 0;
    int rc = 0;
    while (rc == 0 && off < len) {
        size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        ssize_t r = ant_pread_full(fd, buf, want, (off_t)off);
        rc = r < 0 ? (int)r : (size_t)r < want ? -ENODATA : sum_update(s, buf, (size_t)r);
        off += want;
    }
    return rc;
}

static bool is_hex64(const char *v)
{
    size_t n = 0;
    while (n < 64 && v[n] != '\0' && strchr("0123456789abcdefABCDEF", v[n]) != NULL) {
        n++;
    }
    return n == 64 && v[n] == '\0';
}

/* Ends the sum of a complete answer and compares it with what the site says (the answer's
 * header, else the check's fallback); `bytes_are` ends the message, saying where the bytes
 * went (the caller names the file). 0 (check->verified says whether anything was compared),
 * -EBADMSG with diag on a mismatch or an answer without a whole Crypt4GH header. */
static int sum_check(struct sum *s, struct ant_client *c, struct ant_client_check *check,
                     const char *bytes_are, struct ant_diag *d)
{
    static const char *const hdr_name[] = {NULL, "X-Antenna-Sha256-C4gh", "X-Antenna-Sha256"};
    static const char *const what[] = {NULL, "Crypt4GH body", "plaintext"};
    struct curl_header *hd = NULL;
    uint8_t md[32];
    char got[65];
    const char *want = NULL;
    if (check == NULL || s->kind == ANT_CLIENT_SUM_NONE) {
        return 0;
    }
    check->verified = false;
    int rc = sum_update(s, NULL, 0); /* a header that ended with the last piece */
    if (rc == 0 && s->kind == ANT_CLIENT_SUM_C4GH && !s->body) {
        ant_diag_set(&s->d, "it ends inside its Crypt4GH header");
        rc = -EBADMSG;
    }
    if (rc == 0 && EVP_DigestFinal_ex(s->md, md, NULL) != 1) {
        rc = -EIO;
    }
    if (rc < 0) {
        ant_diag_set(d, "not a whole Crypt4GH file (%s); %s", ant_diag_msg(&s->d, strerror(-rc)),
                     bytes_are);
        return rc == -EIO || rc == -ENOMEM ? rc : -EBADMSG;
    }
    if (curl_easy_header(c->h, hdr_name[s->kind], 0, CURLH_HEADER, -1, &hd) == CURLHE_OK &&
        is_hex64(hd->value)) {
        want = hd->value;
    } else if (check->fallback != NULL && is_hex64(check->fallback)) {
        want = check->fallback;
    }
    if (want == NULL) {
        return 0; /* an older site that sends no checksum: the caller says it is unverified */
    }
    ant_hex_encode(md, sizeof(md), got);
    if (strcasecmp(got, want) != 0) {
        ant_diag_set(d, "checksum mismatch: the SHA-256 of its %s is %.16s..., the site's "
                        "catalog says %.16s...; %s", what[s->kind], got, want, bytes_are);
        return -EBADMSG;
    }
    check->verified = true;
    return 0;
}

/* ------------------------------------------------------------------ requests */

struct fetch;
static int fetch_start(struct fetch *f, long status);

/* What the write callback does with the body. */
struct sink {
    struct ant_client *c;
    struct ant_buf *json; /* error bodies always go here */
    int fd;               /* >= 0: successful bodies go here */
    struct fetch *f;      /* a resumable download: told before the first byte of a 2xx */
    struct sum *sum;      /* NULL, or hashes what goes to fd */
    uint64_t bytes;
    int err;
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = sz * n;
    long status = 0;
    curl_easy_getinfo(s->c->h, CURLINFO_RESPONSE_CODE, &status);
    if (s->fd >= 0 && status >= 200 && status < 300) {
        int rc = s->f != NULL ? fetch_start(s->f, status) : 0;
        rc = rc < 0 ? rc : ant_write_all(s->fd, p, len);
        if (rc == 0 && s->sum != NULL) {
            (void)sum_update(s->sum, (const uint8_t *)p, len); /* an error: said at the end */
        }
        if (rc < 0) {
            s->err = rc;
            return 0;
        }
    } else if (ant_buf_append(s->json, p, len) < 0) {
        s->err = -E2BIG;
        return 0;
    }
    s->bytes += len;
    return len;
}

/* "1:02:03", "2:03" or "?" for a time left in seconds. */
static void fmt_eta(double secs, char *out, size_t n)
{
    if (secs < 0 || secs > 99.0 * 3600) {
        snprintf(out, n, "?");
        return;
    }
    unsigned t = (unsigned)secs;
    if (t >= 3600) {
        snprintf(out, n, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    } else {
        snprintf(out, n, "%u:%02u", t / 60, t % 60);
    }
}

/* Bytes, percentage, rate and time left, redrawn at most 5 times a second. A resumed download
 * counts the bytes it had (progress_base) in the total, not in the rate. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct ant_client *c = arg;
    int64_t now = ant_mono_ns();
    bool up = ultotal > 0;
    bool last = up ? ulnow == ultotal : dltotal > 0 && dlnow == dltotal; /* draw the 100% */
    if ((now - c->progress_t_ns < 200 * 1000 * 1000 && !last) || (last && c->progress_full)) {
        return 0;
    }
    c->progress_t_ns = now;
    c->progress_full = last;
    double run = (double)(up ? ulnow : dlnow);
    double base = up ? 0.0 : (double)c->progress_base;
    double total = (double)(up ? ultotal : dltotal), done = base + run;
    double secs = (double)(now - c->progress_start_ns) / 1e9;
    double rate = secs > 0.05 ? run / secs : 0.0;
    char eta[32];
    if (total <= 0) {
        fprintf(stderr, "\r  %10.1f MiB  %8.1f MiB/s   ", done / 1048576.0, rate / 1048576.0);
        return 0;
    }
    total += base;
    fmt_eta(rate > 0 ? (total - done) / rate : -1.0, eta, sizeof(eta));
    int width = 30, fill = (int)(done / total * width);
    char bar[31];
    for (int i = 0; i < width; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[width] = '\0';
    fprintf(stderr, "\r  [%s] %5.1f%% %9.1f / %.1f MiB %8.1f MiB/s %8s left ", bar,
            100.0 * done / total, done / 1048576.0, total / 1048576.0, rate / 1048576.0, eta);
    return 0;
}

/* A 429 (the site's per-principal rate limit) is waited out and the request sent again, at
 * most this many times, each wait the answer's Retry-After (1 s at least, 60 s at most). */
#define CLIENT_RATE_RETRIES 10

/* An error answer for people: the status, the server's message and the request id, which
 * the site's request log and audit trail are keyed by, so a user can quote it to an admin. The
 * id is the body's `request_id`, else the X-Request-Id header (a body that is not the server's
 * JSON, from a proxy in between, still has the header when the site answered at all). */
static void error_diag(struct ant_client *c, const struct ant_buf *body, long status,
                       struct ant_diag *d)
{
    json_t *e = NULL;
    struct ant_diag jd;
    const char *msg = NULL, *code = NULL, *rid = NULL;
    struct curl_header *hd = NULL;
    if (ant_json_parse(ant_buf_view(body), CLIENT_JSON_MAX, ANT_JSON_MAX_DEPTH, &e, &jd) == 0) {
        msg = json_string_value(json_object_get(e, "message"));
        code = json_string_value(json_object_get(e, "error"));
        rid = json_string_value(json_object_get(e, "request_id"));
    }
    if (rid == NULL && curl_easy_header(c->h, "X-Request-Id", 0, CURLH_HEADER, -1, &hd) ==
                           CURLHE_OK) {
        rid = hd->value;
    }
    /* bounded pieces: the request id must survive the diag's 256 bytes */
    ant_diag_set(d, "%ld%s%.40s: %.150s (request id %.40s)", status, code ? " " : "",
                 code ? code : "", msg ? msg : "the server refused the request",
                 rid ? rid : "none");
    json_decref(e);
}

/* Runs the prepared handle; fills status; turns an error body into diag. `may_repeat`: a 429
 * can be retried with the same handle (no body, or a body read from `rewind_fd`, which is put
 * back at `rewind_to` first; -1: none). */
static int perform(struct ant_client *c, struct sink *s, bool may_repeat, int rewind_fd,
                   off_t rewind_to, long *status, struct ant_diag *d)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c->h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert[0] != '\0') {
        curl_easy_setopt(c->h, CURLOPT_CAINFO, c->cacert);
    }
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    if (c->progress) {
        c->progress_t_ns = 0;
        c->progress_full = false;
        c->progress_start_ns = ant_mono_ns();
        curl_easy_setopt(c->h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c->h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c->h, CURLOPT_XFERINFODATA, c);
    }
    CURLcode cc;
    for (unsigned attempt = 0;; attempt++) {
        cc = curl_easy_perform(c->h);
        if (c->progress) {
            fprintf(stderr, "\n");
        }
        *status = 0;
        if (cc == CURLE_OK) {
            curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, status);
        }
        if (*status != 429 || !may_repeat || attempt >= CLIENT_RATE_RETRIES ||
            (rewind_fd >= 0 && lseek(rewind_fd, rewind_to, SEEK_SET) != rewind_to)) {
            break;
        }
        curl_off_t after = 0;
        curl_easy_getinfo(c->h, CURLINFO_RETRY_AFTER, &after);
        unsigned wait = after < 1 ? 1 : after > 60 ? 60 : (unsigned)after;
        fprintf(stderr, "antenna: the site's rate limit for this principal is reached; "
                        "retrying in %u s\n", wait);
        sleep(wait);
        s->json->len = 0; /* the 429's body; a download's file got nothing (not a 2xx) */
        s->bytes = 0;
    }
    if (cc != CURLE_OK) {
        ant_diag_set(d, "request to %s failed: %s", c->base,
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return s->err < 0 ? s->err : -EIO;
    }
    if (*status >= 400) {
        error_diag(c, s->json, *status, d);
    }
    return 0;
}

static struct curl_slist *headers(struct ant_client *c, const char *extra)
{
    struct curl_slist *h = NULL;
    if (c->auth[0] != '\0') {
        h = curl_slist_append(h, c->auth);
    }
    if (extra != NULL) {
        h = curl_slist_append(h, extra);
    }
    return curl_slist_append(h, "Expect:"); /* the server answers 401 before the body anyway */
}

static int full_url(struct ant_client *c, const char *path, char **out)
{
    size_t n = strlen(c->base) + strlen(path) + 1;
    *out = malloc(n);
    if (*out == NULL) {
        return -ENOMEM;
    }
    snprintf(*out, n, "%s%s", c->base, path);
    return 0;
}

/* A successful answer's body as JSON (NULL when empty). */
static int parse_answer(const struct ant_buf *in, json_t **resp, struct ant_diag *d)
{
    struct ant_diag jd;
    if (in->len == 0) {
        return 0;
    }
    if (ant_json_parse(ant_buf_view(in), CLIENT_JSON_MAX, ANT_JSON_MAX_DEPTH, resp, &jd) < 0) {
        ant_diag_set(d, "the server's answer is not JSON: %s", ant_diag_msg(&jd, "?"));
        return -EBADMSG;
    }
    return 0;
}

int ant_client_json(struct ant_client *c, const char *method, const char *path,
                    const json_t *body, long *status, json_t **resp, struct ant_diag *d)
{
    struct ant_buf in;
    ant_buf_init(&in, CLIENT_JSON_MAX);
    struct sink s = {.c = c, .json = &in, .fd = -1};
    char *url = NULL, *payload = NULL;
    struct curl_slist *h = headers(c, body ? "Content-Type: application/json" : NULL);
    *resp = NULL;
    int rc = full_url(c, path, &url);
    if (rc < 0) {
        goto out;
    }
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        payload = json_dumps(body, JSON_COMPACT);
        if (payload == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, payload);
    }
    rc = perform(c, &s, true, -1, 0, status, d);
    if (rc == 0 && *status < 400) {
        rc = parse_answer(&in, resp, d);
    }
out:
    curl_slist_free_all(h);
    free(payload);
    free(url);
    ant_buf_fini(&in);
    return rc;
}

struct upload_src {
    int fd;
    int err;
};

static size_t on_read(char *p, size_t sz, size_t n, void *arg)
{
    struct upload_src *u = arg;
    ssize_t r;
    do {
        r = read(u->fd, p, sz * n);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        u->err = -errno;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)r;
}

int ant_client_upload(struct ant_client *c, const char *path, int fd, uint64_t size,
                      long *status, json_t **resp, struct ant_diag *d)
{
    struct ant_buf in;
    ant_buf_init(&in, CLIENT_JSON_MAX);
    struct sink s = {.c = c, .json = &in, .fd = -1};
    struct upload_src u = {.fd = fd};
    char *url = NULL;
    struct curl_slist *h = headers(c, "Content-Type: application/octet-stream");
    *resp = NULL;
    int rc = full_url(c, path, &url);
    if (rc < 0) {
        goto out;
    }
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c->h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c->h, CURLOPT_READDATA, &u);
    curl_easy_setopt(c->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
    /* a file (seekable) is sent again from where it started after a 429; a pipe is not */
    off_t start = lseek(fd, 0, SEEK_CUR);
    rc = perform(c, &s, start >= 0, fd, start, status, d);
    if (rc < 0 && u.err < 0) {
        ant_diag_set(d, "cannot read the file being uploaded: %s", strerror(-u.err));
        rc = u.err;
    }
    if (rc == 0 && *status < 400) {
        rc = parse_answer(&in, resp, d);
    }
out:
    curl_slist_free_all(h);
    free(url);
    ant_buf_fini(&in);
    return rc;
}

int ant_client_download(struct ant_client *c, const char *path, int dirfd, const char *dest,
                        int out_fd, struct ant_client_check *check, long *status,
                        uint64_t *bytes, struct ant_diag *d)
{
    struct ant_buf err;
    ant_buf_init(&err, 1u << 20);
    struct sum sum = {.hdr = ANT_BUF_INIT(0)};
    char tmp[1200] = "";
    char *url = NULL;
    int fd = out_fd;
    struct curl_slist *h = headers(c, NULL);
    int rc = full_url(c, path, &url);
    rc = rc < 0 ? rc : sum_reset(&sum, check != NULL ? check->kind : ANT_CLIENT_SUM_NONE);
    if (rc < 0) {
        goto out;
    }
    if (out_fd < 0) {
        /* a temporary name beside the destination: renamed only once complete */
        const char *slash = strrchr(dest, '/');
        int dl = slash ? (int)(slash - dest + 1) : 0;
        uint8_t rnd[6];
        char hex[13];
        randombytes_buf(rnd, sizeof(rnd));
        ant_hex_encode(rnd, sizeof(rnd), hex);
        snprintf(tmp, sizeof(tmp), "%.*s.%s.part-%s", dl, dest, dest + dl, hex);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = -errno;
            ant_diag_set(d, "cannot create %s: %s", dest, strerror(errno));
            tmp[0] = '\0';
            goto out;
        }
    }
    struct sink s = {.c = c, .json = &err, .fd = fd, .sum = &sum};
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
    rc = perform(c, &s, true, -1, 0, status, d);
    if (rc < 0 && s.err < 0 && s.err != -E2BIG) {
        ant_diag_set(d, "cannot write %s: %s", out_fd >= 0 ? "the output" : dest,
                     strerror(-s.err));
        rc = s.err;
    }
    *bytes = s.bytes;
    if (rc == 0 && *status == 200) {
        rc = sum_check(&sum, c, check,
                       out_fd >= 0 ? "what was written out is not the site's file"
                                   : "the download was discarded", d);
    }
    if (rc == 0 && *status == 200 && out_fd < 0) {
        rc = ant_rename_durable(fd, dirfd, tmp, dest);
        if (rc < 0) {
            ant_diag_set(d, "cannot finish %s: %s", dest, strerror(-rc));
        } else {
            tmp[0] = '\0';
        }
    }
out:
    if (out_fd < 0 && fd >= 0) {
        ant_close(fd);
    }
    if (tmp[0] != '\0') {
        unlinkat(dirfd, tmp, 0);
    }
    sum_fini(&sum);
    curl_slist_free_all(h);
    free(url);
    ant_buf_fini(&err);
    return rc;
}

int ant_client_open_parent(int rootfd, const char *rel)
{
    char *buf = strdup(rel);
    int fd = buf == NULL ? -ENOMEM : dup(rootfd);
    if (fd < 0) {
        fd = fd == -1 ? -errno : fd;
        free(buf);
        return fd;
    }
    char *comp = buf;
    for (char *s = strchr(comp, '/'); s != NULL; comp = s + 1, s = strchr(comp, '/')) {
        *s = '\0';
        int nfd = mkdirat(fd, comp, 0755) < 0 && errno != EEXIST
                      ? -1
                      : openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = nfd < 0 ? -errno : 0;
        ant_close(fd);
        fd = nfd;
        if (rc < 0) {
            free(buf);
            return rc;
        }
    }
    free(buf);
    return fd;
}

/* A resumable download's state, shared by the header and write callbacks. */
struct fetch {
    int dirfd, fd;        /* the folder of the partial file (ours), the partial file */
    const char *side;     /* the sidecar's name in that folder */
    uint64_t resume;      /* bytes asked to skip (Range); 0: none */
    struct ant_client_hdrs hd; /* what the answer's header lines said */
    bool started;         /* the first 2xx body byte was handled */
    struct sum *sum;      /* the checksum: of the kept part and what follows; reset on a 200 */
};

/* An ETag kept only if it is a strong tag of visible ASCII: it goes back into a header line. */
static bool etag_ok(const char *p, size_t n)
{
    if (n < 2 || n >= sizeof(((struct ant_client_hdrs *)NULL)->etag) || p[0] != '"' ||
        p[n - 1] != '"') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

void ant_client_header_line(const char *p, size_t len, struct ant_client_hdrs *h)
{
    size_t s = 0, e = len;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new answer (after a 429): forget */
        h->etag[0] = '\0';
        h->range_start = -1;
        return;
    }
    const char *colon = memchr(p, ':', len);
    if (colon == NULL) {
        return;
    }
    size_t name = (size_t)(colon - p);
    s = name + 1;
    while (s < e && (p[s] == ' ' || p[s] == '\t')) {
        s++;
    }
    while (e > s && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' ')) {
        e--;
    }
    if (name == 4 && strncasecmp(p, "etag", 4) == 0 && etag_ok(p + s, e - s)) {
        memcpy(h->etag, p + s, e - s);
        h->etag[e - s] = '\0';
    } else if (name == 13 && strncasecmp(p, "content-range", 13) == 0 && e - s > 6 &&
               strncmp(p + s, "bytes ", 6) == 0) {
        uint64_t v = 0;
        size_t i = s + 6;
        /* at most INT64_MAX: a longer number is no start this client asked for */
        for (; i < e && p[i] >= '0' && p[i] <= '9' && v <= (INT64_MAX - 9) / 10; i++) {
            v = v * 10 + (uint64_t)(p[i] - '0');
        }
        h->range_start = i > s + 6 && i < e && p[i] == '-' ? (int64_t)v : -1;
    }
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct fetch *f = arg;
    ant_client_header_line(p, sz * n, &f->hd);
    return sz * n;
}

/* The sidecar's temporary names: SIDECAR.XXXXXXXX, 4 random bytes in lower-case hex. */
#define SIDECAR_TMP_HEX 8

/* Names the new tag in the sidecar: written to a temporary name, fsynced, renamed over the old
 * sidecar, the folder fsynced, so after a crash the sidecar holds one whole tag, old or new. */
static int sidecar_write(const struct fetch *f)
{
    char tmp[1240];
    uint8_t rnd[SIDECAR_TMP_HEX / 2];
    char hex[SIDECAR_TMP_HEX + 1];
    randombytes_buf(rnd, sizeof(rnd));
    ant_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(tmp, sizeof(tmp), "%s.%s", f->side, hex);
    int rc = ant_write_new_file(f->dirfd, tmp, 0600, f->hd.etag, strlen(f->hd.etag)); /* fsyncs */
    rc = rc < 0 ? rc : ant_rename_durable(-1, f->dirfd, tmp, f->side);
    if (rc < 0) {
        unlinkat(f->dirfd, tmp, 0);
    }
    return rc;
}

/* A crash between sidecar_write's create and rename leaves SIDECAR.XXXXXXXX behind. Removes
 * those of this file: entries named exactly `side`, a dot and SIDECAR_TMP_HEX lower-case hex
 * digits that are regular files (lstat: a symlink or anything else under such a name is left
 * alone, nothing is followed). The caller holds the partial file's lock, so no other fetch of
 * this file is writing one; failures to read the folder are not fatal (the temporaries only
 * waste a few bytes). */
static void sidecar_sweep(int folder, const char *side)
{
    size_t sl = strlen(side);
    int fd = openat(folder, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* closedir closes it */
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    struct dirent *e;
    if (dir == NULL) {
        ant_close(fd);
        return;
    }
    while ((e = readdir(dir)) != NULL) {
        const char *n = e->d_name, *x = n + sl + 1;
        struct stat sb;
        bool match = strncmp(n, side, sl) == 0 && n[sl] == '.' &&
                     strlen(x) == SIDECAR_TMP_HEX &&
                     strspn(x, "0123456789abcdef") == SIDECAR_TMP_HEX;
        if (match && fstatat(fd, n, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode)) {
            (void)unlinkat(fd, n, 0);
        }
    }
    closedir(dir);
}

/* Before the first body byte of a 2xx: a 206 must continue where the partial file ends; a 200
 * is the whole file (new, or changed since: the If-Range tag did not match), so it starts over.
 *
 * What a later run resumes from is the pair (sidecar tag, partial file), and after a power loss
 * it must still be a prefix of that tag's bytes. Hence the order: the partial file is emptied
 * and that is made durable (fdatasync: a size change is data for it) before the sidecar names
 * the new tag, and the sidecar is replaced atomically and durably (sidecar_write) before the
 * first byte of the new answer is written. A crash at any point leaves the old tag with the old
 * bytes or an empty file, or the new tag with an empty file or a prefix of its own bytes; never
 * a new tag over old bytes, which the next run would extend with the new file's tail. Bytes
 * appended afterwards are not synced one by one: they are the sidecar's own tag's, and a crash
 * loses a tail of them at worst (ext4 in its default data=ordered mode and XFS extend the
 * on-disk size only once the data under it is written), which the next run asks for again. */
static int fetch_start(struct fetch *f, long status)
{
    if (f->started) {
        return 0;
    }
    f->started = true;
    if (status == 206) {
        return f->hd.range_start == (int64_t)f->resume ? 0 : -EBADMSG;
    }
    if (ftruncate(f->fd, 0) < 0 || fdatasync(f->fd) < 0) {
        return -errno;
    }
    f->resume = 0;
    int rc = sum_reset(f->sum, f->sum->kind); /* the kept part read back is not this file's */
    if (rc < 0) {
        return rc;
    }
    if (f->hd.etag[0] != '\0') {
        return sidecar_write(f);
    }
    /* no tag: nothing to resume with, and the old tag must be gone before new bytes land */
    if (unlinkat(f->dirfd, f->side, 0) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    return ant_fsync_dir(f->dirfd);
}

/* The sidecar's tag, or "" when there is none or it is not a strong tag. */
static void sidecar_read(int dirfd, const char *side, char *out, size_t n)
{
    char buf[160];
    ssize_t r = -1;
    int fd = ant_open_regular(dirfd, side, O_RDONLY | O_NOFOLLOW, 0); /* a FIFO: none */
    if (fd >= 0) {
        r = read(fd, buf, sizeof(buf) - 1);
        ant_close(fd);
    }
    out[0] = '\0';
    if (r > 0 && etag_ok(buf, (size_t)r) && (size_t)r < n) {
        memcpy(out, buf, (size_t)r);
        out[r] = '\0';
    }
}

int ant_client_fetch(struct ant_client *c, const char *path, int dirfd, const char *dest,
                     struct ant_client_check *check, long *status, uint64_t *bytes,
                     uint64_t *resumed, struct ant_diag *d)
{
    struct ant_buf err;
    ant_buf_init(&err, 1u << 20);
    char folder[1200], part[1200], side[1220], range[64], ifr[160], old[128];
    char *url = NULL;
    struct curl_slist *h = NULL;
    struct sum sum = {.hdr = ANT_BUF_INIT(0)};
    enum ant_client_sum kind = check != NULL ? check->kind : ANT_CLIENT_SUM_NONE;
    struct fetch f = {.dirfd = -1, .fd = -1, .side = side, .hd.range_start = -1, .sum = &sum};
    struct stat sb;
    const char *slash = strrchr(dest, '/');
    const char *base = slash ? slash + 1 : dest;
    *bytes = 0;
    *resumed = 0;
    int rc = full_url(c, path, &url);
    if (rc < 0) {
        goto out;
    }
    if ((size_t)snprintf(folder, sizeof(folder), "%.*s", slash ? (int)(slash - dest + 1) : 1,
                         slash ? dest : ".") >= sizeof(folder) ||
        (size_t)snprintf(part, sizeof(part), ".%s.antenna-partial", base) >= sizeof(part)) {
        rc = -ENAMETOOLONG;
        ant_diag_set(d, "the name %s is too long", dest);
        goto out;
    }
    snprintf(side, sizeof(side), "%s.etag", part);
    /* the folder itself, to fsync after renames in it */
    f.dirfd = openat(dirfd, folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f.dirfd < 0) {
        rc = -errno;
        ant_diag_set(d, "cannot open the folder of %s: %s", dest, strerror(-rc));
        goto out;
    }
    /* a run before left something (a crash in sidecar_write leaves the partial file too) */
    bool left = fstatat(f.dirfd, part, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    /* O_NONBLOCK until fstat: a FIFO planted under the partial file's name is refused, not
     * waited on. Read too: a resumed download's checksum covers the part kept. */
    f.fd = ant_open_regular(f.dirfd, part, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
    if (f.fd < 0 || fstat(f.fd, &sb) < 0) {
        rc = f.fd < 0 ? f.fd : -errno;
        ant_diag_set(d, "cannot create %s%s: %s", slash ? folder : "", part,
                     rc == -EINVAL || rc == -ENXIO ? "not a regular file" : strerror(-rc));
        goto out;
    }
    /* one fetch of a file at a time: two would append to the same partial file */
    if (flock(f.fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        ant_diag_set(d, "%s%s: %s", slash ? folder : "", part,
                     rc == -EBUSY ? "another download of this file is writing it"
                                  : strerror(-rc));
        goto out;
    }
    if (left) {
        sidecar_sweep(f.dirfd, side);
    }
    sidecar_read(f.dirfd, side, old, sizeof(old));
    for (int attempt = 0; attempt < 2; attempt++) {
        curl_slist_free_all(h);
        h = headers(c, NULL);
        f.resume = old[0] != '\0' ? (uint64_t)sb.st_size : 0;
        f.started = false;
        /* the part kept is read back before the request, not while the site waits on us */
        rc = sum_reset(&sum, kind);
        rc = rc < 0 || kind == ANT_CLIENT_SUM_NONE ? rc : sum_file(&sum, f.fd, f.resume);
        if (rc < 0) {
            ant_diag_set(d, "cannot read %s%s: %s", slash ? folder : "", part, strerror(-rc));
            goto out;
        }
        if (f.resume > 0) {
            /* RFC 9110 13.1.5: the rest if the tag still matches, else the whole new file */
            snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)f.resume);
            snprintf(ifr, sizeof(ifr), "If-Range: %s", old);
            h = curl_slist_append(curl_slist_append(h, range), ifr);
        }
        struct sink s = {.c = c, .json = &err, .fd = f.fd, .f = &f, .sum = &sum};
        c->progress_base = f.resume;
        curl_easy_reset(c->h);
        curl_easy_setopt(c->h, CURLOPT_URL, url);
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c->h, CURLOPT_HEADERDATA, &f);
        err.len = 0;
        rc = perform(c, &s, true, -1, 0, status, d);
        c->progress_base = 0;
        if (rc < 0 && s.err < 0 && s.err != -E2BIG) {
            if (s.err == -EBADMSG) {
                ant_diag_set(d, "%s: the site answered another byte range", dest);
            } else {
                ant_diag_set(d, "cannot write %s: %s", dest, strerror(-s.err));
            }
            rc = s.err;
        }
        *bytes = s.bytes;
        if (rc == 0 && *status == 416 && f.resume > 0) {
            /* the partial file is longer than the file: it is not a part of it */
            old[0] = '\0';
            continue;
        }
        if (rc == 0 && (*status == 200 || *status == 206)) {
            rc = fetch_start(&f, *status); /* an empty body calls no write callback */
        }
        break;
    }
    if (rc < 0 || (*status != 200 && *status != 206)) {
        /* the partial file and its tag stay for the next run, unless nothing ever arrived */
        if (fstat(f.fd, &sb) == 0 && sb.st_size == 0) {
            unlinkat(f.dirfd, part, 0);
            unlinkat(f.dirfd, side, 0);
        }
        goto out;
    }
    *resumed = f.resume;
    rc = sum_check(&sum, c, check, "the download was discarded", d);
    if (rc == -EBADMSG) {
        /* kept, the pair would be resumed from and fail the same way: the next run starts over */
        unlinkat(f.dirfd, part, 0);
        unlinkat(f.dirfd, side, 0);
    }
    if (rc < 0) {
        goto out;
    }
    mode_t mask = umask(022);
    umask(mask);
    rc = fchmod(f.fd, 0644 & ~mask) < 0 ? -errno : ant_rename_durable(f.fd, f.dirfd, part, base);
    if (rc < 0) {
        ant_diag_set(d, "cannot finish %s: %s", dest, strerror(-rc));
        goto out;
    }
    unlinkat(f.dirfd, side, 0);
out:
    ant_close(f.fd);
    ant_close(f.dirfd);
    sum_fini(&sum);
    curl_slist_free_all(h);
    free(url);
    ant_buf_fini(&err);
    return rc;
}

void ant_client_print_json(const json_t *v)
{
    if (v != NULL) {
        json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
        fputc('\n', stdout);
    }
}
