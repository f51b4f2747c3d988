/* The HTTP API end to end, in process: on the first input a site is made in a fresh
 * /tmp/antenna-fuzz-XXXXXX (the built `antenna` binary's init and admin commands, run with
 * posix_spawn), with the tenant lab, its owner alice, the admin root, a draft and a published
 * dataset, and the real server (ant_site_open, ant_gw_stage_start, ant_server_start, as
 * `antenna serve`) is started on 127.0.0.1:0 with the rate limit off. Each input becomes one
 * HTTPS request sent with libcurl (one easy handle, kept alive):
 *
 *   byte 0  method (GET, POST, PUT, DELETE, HEAD)
 *   byte 1  route template (the served routes, ROUTES below)
 *   byte 2  credential (none, alice's key, root's key, garbage) in bits 0-1; bits 2-3 and 4-5
 *           what fills the first and second path parameter: the fuzz bytes, the draft or the
 *           published dataset's id, or a known name (alice, lab, a.txt)
 *   byte 3  which of Content-Type, Range, If-Range, Accept are sent (bits 0-3)
 *   then "\n"-separated: parameter 1, parameter 2, query, Content-Type, Range, If-Range, Accept,
 *   and the body (the rest, at most 16 KiB).
 *
 * The oracle: no crash or leak (sanitizers), an answer arrives, no 5xx (a 500 is a case the
 * handlers did not expect; the audit log is always available here, so no 503 either), and
 * every 4xx answer to a non-HEAD request is a JSON object with "error" and "request_id".
 * The site is made anew every SITE_INPUTS inputs (its audit log grows by each request) and its
 * folder removed at exit; one left by a run that aborted is removed when the next run starts
 * (the folder's pid file names a process that is gone). */
#include "crypto/base/log.h"
#include "gateway/routes_stage.h"
#include "gateway/server.h"
#include "gateway/site.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ANT_FUZZ_ANTENNA
#error "ANT_FUZZ_ANTENNA (the antenna binary's path) must be defined"
#endif

extern char **environ;

#define MAX_BODY (16 * 1024)
#define SITE_INPUTS 1000

static const char *const METHODS[] = {"GET", "POST", "PUT", "DELETE", "HEAD"};

/* gateway/routes.c's templates; {} and {*} are filled from the input */
static const char *const ROUTES[] = {
    "/v1/health",
    "/v1/site",
    "/v1/tenants",
    "/v1/principals",
    "/v1/principals/{}/keys",
    "/v1/principals/{}/c4gh-key",
    "/v1/keys",
    "/v1/keys/{}",
    "/v1/datasets",
    "/v1/datasets/{}",
    "/v1/datasets/{}/publish",
    "/v1/datasets/{}/withdraw",
    "/v1/datasets/{}/files",
    "/v1/datasets/{}/files/{*}",
    "/v1/datasets/{}/grants",
    "/v1/grants/{}",
    "/v1/policy/explain",
    "/v1/audit/events",
    "/v1/audit/status",
    "/v1/audit/checkpoints",
    "/v1/audit/export",
    "/v1/stage",
    "/v1/tenants/{}/scratch-quota",
    "/v1/stage/{}",
    "/v1/stage-out",
    "/v1/stage/{}/files",
    "/v1/stage/{}/files/{*}",
    "/v1/federation/datasets",
    "/v1/federation/datasets/{}/manifest",
    "/v1/federation/datasets/{}/files/{*}",
    "/v1/federation/checkpoint",
    "/v1/metrics",
    "/nowhere",
};
#define N_ROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

static char g_dir[64];
static struct ant_site *g_site;
static struct ant_server *g_srv;
static CURL *g_curl;
static char g_base[64], g_cacert[128];
static char g_owner_key[256], g_admin_key[256];
static char g_draft[128], g_published[128];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_routes: setup: %s\n", what);
    abort();
}

/* Runs antenna with ARGV (NULL-ended, argv[0] left out); its standard output into OUT. */
static int run_antenna(const char *const *args, char *out, size_t outsz)
{
    char *argv[16];
    size_t n = 0;
    argv[n++] = strdup(ANT_FUZZ_ANTENNA);
    for (; args[n - 1] != NULL && n < 15; n++) {
        argv[n] = strdup(args[n - 1]);
    }
    argv[n] = NULL;
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%s/.out", g_dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    for (size_t i = 0; i < n; i++) {
        free(argv[i]);
    }
    int st = 0;
    if (rc != 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        return -1;
    }
    FILE *f = fopen(tmp, "r");
    size_t got = f != NULL ? fread(out, 1, outsz - 1, f) : 0;
    out[got] = '\0';
    if (f != NULL) {
        fclose(f);
    }
    unlink(tmp);
    return 0;
}

/* The "key ..." line of `antenna admin key create`'s answer. */
static void new_key(const char *site, const char *principal, char *key, size_t keysz)
{
    char out[1024];
    const char *args[] = {"admin", "--dir", site, "key", "create", "--principal", principal,
                          NULL};
    if (run_antenna(args, out, sizeof(out)) < 0) {
        die("key create");
    }
    const char *p = strstr(out, "key ");
    if (p == NULL || sscanf(p + 4, "%255s", key) != 1 || keysz < 256) {
        die("key create: no key in the answer");
    }
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    struct {
        char *buf;
        size_t len;
    } *b = ud;
    size_t add = sz * n;
    if (b->len < 65536) {
        size_t take = add < 65536 - b->len ? add : 65536 - b->len;
        char *nb = realloc(b->buf, b->len + take + 1);
        if (nb == NULL) {
            return 0;
        }
        memcpy(nb + b->len, p, take);
        b->buf = nb;
        b->len += take;
        b->buf[b->len] = '\0';
    }
    return add;
}

struct answer {
    char *buf;
    size_t len;
};

/* One request on the shared handle; the status, or -1 if no answer came. */
static long send_req(const char *method, const char *url, struct curl_slist *hdrs,
                     const uint8_t *body, size_t blen, bool has_body, struct answer *ans)
{
    CURL *c = g_curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, g_cacert);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (has_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    long status = -1;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    } else {
        fprintf(stderr, "fuzz_routes: %s %s: %s\n", method, url, curl_easy_strerror(rc));
    }
    return status;
}

/* Setup request as alice; the answer's "id" into ID when it is given. */
static void setup_req(const char *method, const char *path, const char *body, char *id,
                      size_t idsz)
{
    char url[512], auth[300];
    snprintf(url, sizeof(url), "%s%s", g_base, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", g_owner_key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    struct answer a = {NULL, 0};
    long st = send_req(method, url, h, (const uint8_t *)body, strlen(body), true, &a);
    curl_slist_free_all(h);
    if (st < 200 || st > 299) {
        fprintf(stderr, "fuzz_routes: setup %s %s: %ld %s\n", method, path, st,
                a.buf ? a.buf : "");
        die("request");
    }
    if (id != NULL) {
        json_t *j = json_loadb(a.buf ? a.buf : "", a.len, 0, NULL);
        const char *s = json_string_value(json_object_get(j, "id"));
        if (s == NULL || strlen(s) >= idsz) {
            die("no id in the answer");
        }
        snprintf(id, idsz, "%s", s);
        json_decref(j);
    }
    free(a.buf);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void teardown(void)
{
    if (g_curl != NULL) {
        curl_easy_cleanup(g_curl);
        g_curl = NULL;
    }
    if (g_srv != NULL) {
        ant_server_stop(g_srv, 0);
        ant_gw_stage_stop(g_site);
        ant_site_close(g_site);
        g_srv = NULL;
        g_site = NULL;
    }
    if (g_dir[0] != '\0') {
        nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        g_dir[0] = '\0';
    }
}

/* A run that aborted (a finding, a crash, a kill) left its site behind: each site's folder
 * holds its process's pid, and those of processes gone are removed when the next run starts. */
static void sweep_stale_sites(void)
{
    DIR *d = opendir("/tmp");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char dir[300], pidf[320];
        if (strncmp(e->d_name, "antenna-fuzz-", 13) != 0) {
            continue;
        }
        snprintf(dir, sizeof(dir), "/tmp/%s", e->d_name);
        snprintf(pidf, sizeof(pidf), "%s/pid", dir);
        FILE *f = fopen(pidf, "r");
        long pid = 0;
        if (f != NULL && fscanf(f, "%ld", &pid) == 1 && pid > 0 &&
            kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    static bool once;
    if (!once) {
        once = true;
        sweep_stale_sites();
        atexit(teardown);
        curl_global_init(CURL_GLOBAL_DEFAULT);
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/antenna-fuzz-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        die("mkdtemp");
    }
    char pidf[96];
    snprintf(pidf, sizeof(pidf), "%s/pid", g_dir);
    FILE *pf = fopen(pidf, "w");
    if (pf == NULL || fprintf(pf, "%ld\n", (long)getpid()) < 0 || fclose(pf) != 0) {
        die("pid file");
    }
    char site[96], out[4096];
    snprintf(site, sizeof(site), "%s/site", g_dir);
    const char *init[] = {"init", "--dir", site, "--site-id", "fuzz", "--region", "EU", NULL};
    const char *tenant[] = {"admin", "--dir", site, "tenant", "add", "lab", NULL};
    const char *owner[] = {"admin", "--dir", site, "principal", "add", "alice", "--tenant", "lab",
                           "--role", "owner", NULL};
    const char *admin[] = {"admin", "--dir", site, "principal", "add", "root", "--role", "admin",
                           NULL};
    if (run_antenna(init, out, sizeof(out)) < 0 || run_antenna(tenant, out, sizeof(out)) < 0 ||
        run_antenna(owner, out, sizeof(out)) < 0 || run_antenna(admin, out, sizeof(out)) < 0) {
        die("antenna init / admin");
    }
    new_key(site, "alice", g_owner_key, sizeof(g_owner_key));
    new_key(site, "root", g_admin_key, sizeof(g_admin_key));

    struct ant_diag diag = {{0}};
    if (ant_site_open(site, NULL, &g_site, &diag) < 0) {
        die(ant_diag_msg(&diag, "ant_site_open"));
    }
    snprintf(g_site->cfg.listen_addr, sizeof(g_site->cfg.listen_addr), "127.0.0.1");
    g_site->cfg.listen_port = 0;
    g_site->cfg.rate_limit_per_s = 0;
    g_ant_log_level = ANT_LOG_WARN; /* not a line per request */
    if (ant_gw_stage_start(g_site, &diag) < 0 || ant_server_start(g_site, &g_srv, &diag) < 0) {
        die(ant_diag_msg(&diag, "server start"));
    }
    snprintf(g_base, sizeof(g_base), "https://127.0.0.1:%u", ant_server_port(g_srv));
    snprintf(g_cacert, sizeof(g_cacert), "%s/tls/cert.pem", site);
    g_curl = curl_easy_init();
    if (g_curl == NULL) {
        die("curl_easy_init");
    }
    setup_req("POST", "/v1/datasets", "{\"name\":\"draft\",\"classification\":\"internal\"}",
              g_draft, sizeof(g_draft));
    setup_req("POST", "/v1/datasets", "{\"name\":\"pub\",\"classification\":\"internal\"}",
              g_published, sizeof(g_published));
    char path[256];
    snprintf(path, sizeof(path), "/v1/datasets/%s/files/a.txt", g_draft);
    setup_req("PUT", path, "hello, draft\n", NULL, 0);
    snprintf(path, sizeof(path), "/v1/datasets/%s/files/a.txt", g_published);
    setup_req("PUT", path, "hello, world\n", NULL, 0);
    snprintf(path, sizeof(path), "/v1/datasets/%s/publish", g_published);
    setup_req("POST", path, "", NULL, 0);
}

/* The next "\n"-ended field of the input. */
static const uint8_t *field(const uint8_t **p, const uint8_t *end, size_t *len)
{
    const uint8_t *s = *p;
    const uint8_t *nl = s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
    const uint8_t *e = nl != NULL ? nl : end;
    *len = (size_t)(e - s);
    *p = nl != NULL ? nl + 1 : end;
    return s;
}

/* Appends the field percent-encoded where a URL cannot hold it as it is ('/' kept when
 * KEEP_SLASH, '&', '=' and '%' kept in a query). */
static void url_add(char *out, size_t outsz, const uint8_t *s, size_t n, bool keep_slash,
                    bool query)
{
    size_t o = strlen(out);
    for (size_t i = 0; i < n && o + 4 < outsz; i++) {
        uint8_t c = s[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/') ||
                     (query && (c == '&' || c == '=' || c == '%' || c == ',' || c == ':'));
        if (plain) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, outsz - o, "%%%02X", c);
        }
    }
    out[o] = '\0';
}

/* A header line "NAME: value" with CR, LF and NUL left out. */
static struct curl_slist *hdr_add(struct curl_slist *h, const char *name, const uint8_t *v,
                                  size_t n)
{
    char line[512];
    size_t o = (size_t)snprintf(line, sizeof(line), "%s: ", name);
    for (size_t i = 0; i < n && o + 1 < sizeof(line); i++) {
        if (v[i] != '\r' && v[i] != '\n' && v[i] != '\0') {
            line[o++] = (char)v[i];
        }
    }
    line[o] = '\0';
    return curl_slist_append(h, line);
}

static void fill_param(char *url, size_t urlsz, unsigned how, const uint8_t *s, size_t n,
                       bool rest)
{
    static const char *const names[] = {"alice", "lab", "a.txt", "root"};
    switch (how) {
    case 1:
        url_add(url, urlsz, (const uint8_t *)g_draft, strlen(g_draft), false, false);
        break;
    case 2:
        url_add(url, urlsz, (const uint8_t *)g_published, strlen(g_published), false, false);
        break;
    case 3:
        if (n > 0) {
            const char *k = names[s[0] % 4];
            url_add(url, urlsz, (const uint8_t *)k, strlen(k), false, false);
        }
        break;
    default:
        url_add(url, urlsz, s, n, rest, false);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Every request is audited, and the audit routes read the whole log: a fresh site every
     * SITE_INPUTS inputs keeps the speed from falling as it grows. */
    static unsigned inputs;
    if (g_curl != NULL && ++inputs % SITE_INPUTS == 0) {
        teardown();
    }
    if (g_curl == NULL) {
        setup();
    }
    if (size < 4) {
        return 0;
    }
    const char *method = METHODS[data[0] % 5];
    const char *route = ROUTES[data[1] % N_ROUTES];
    unsigned cred = data[2] & 3, how1 = (data[2] >> 2) & 3, how2 = (data[2] >> 4) & 3;
    unsigned which = data[3];
    const uint8_t *p = data + 4, *end = data + size;
    size_t l1, l2, lq, lct, lr, lir, lacc;
    const uint8_t *p1 = field(&p, end, &l1), *p2 = field(&p, end, &l2);
    const uint8_t *q = field(&p, end, &lq), *ct = field(&p, end, &lct);
    const uint8_t *rg = field(&p, end, &lr), *ir = field(&p, end, &lir);
    const uint8_t *acc = field(&p, end, &lacc);
    size_t blen = (size_t)(end - p);
    if (blen > MAX_BODY) {
        blen = MAX_BODY;
    }

    char url[4096];
    snprintf(url, sizeof(url), "%s", g_base);
    int nparam = 0;
    for (const char *r = route; *r != '\0';) {
        if (strncmp(r, "{*}", 3) == 0 || strncmp(r, "{}", 2) == 0) {
            bool rest = r[1] == '*';
            if (nparam++ == 0) {
                fill_param(url, sizeof(url), how1, p1, l1, rest);
            } else {
                fill_param(url, sizeof(url), how2, p2, l2, rest);
            }
            r += rest ? 3 : 2;
        } else {
            size_t o = strlen(url);
            if (o + 1 < sizeof(url)) {
                url[o] = *r;
                url[o + 1] = '\0';
            }
            r++;
        }
    }
    if (lq > 0) {
        size_t o = strlen(url);
        if (o + 2 < sizeof(url)) {
            url[o] = '?';
            url[o + 1] = '\0';
        }
        url_add(url, sizeof(url), q, lq, true, true);
    }

    struct curl_slist *h = NULL;
    char auth[300];
    if (cred == 1 || cred == 2) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
                 cred == 1 ? g_owner_key : g_admin_key);
        h = curl_slist_append(h, auth);
    } else if (cred == 3) {
        h = hdr_add(h, "Authorization", p1, l1);
    }
    h = (which & 1) ? hdr_add(h, "Content-Type", ct, lct) : h;
    h = (which & 2) ? hdr_add(h, "Range", rg, lr) : h;
    h = (which & 4) ? hdr_add(h, "If-Range", ir, lir) : h;
    h = (which & 8) ? hdr_add(h, "Accept", acc, lacc) : h;
    h = curl_slist_append(h, "Expect:");

    struct answer a = {NULL, 0};
    bool has_body = strcmp(method, "HEAD") != 0 && (blen > 0 || strcmp(method, "GET") != 0);
    long st = send_req(method, url, h, p, blen, has_body, &a);
    curl_slist_free_all(h);
    if (st < 0) {
        fprintf(stderr, "fuzz_routes: no answer to %s %s\n", method, url);
        abort();
    }
    if (st >= 500) {
        fprintf(stderr, "fuzz_routes: %ld to %s %s: %s\n", st, method, url, a.buf ? a.buf : "");
        abort();
    }
    if (st >= 400 && strcmp(method, "HEAD") != 0) {
        json_t *j = json_loadb(a.buf ? a.buf : "", a.len, 0, NULL);
        if (!json_is_object(j) || !json_is_string(json_object_get(j, "error")) ||
            !json_is_string(json_object_get(j, "request_id"))) {
            fprintf(stderr, "fuzz_routes: %ld to %s %s without a JSON error: %s\n", st, method,
                    url, a.buf ? a.buf : "");
            abort();
        }
        json_decref(j);
    }
    free(a.buf);
    return 0;
}
