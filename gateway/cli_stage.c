/* The stage and pull commands, through a site's HTTPS API.
 *
 *   antenna stage [SITE:]DATASET [--mode decrypt|reencrypt | --decrypt | --encrypted]
 *                         [--recipient-pk FILE] [--path GLOB]... [--ttl 1h] [--purpose DUO]
 *                         [--wait] [--json]
 *       (SITE: a peer of this site; the job pulls the peer's dataset, then stages it)
 *   antenna stage status JOB | cancel JOB | list
 *   antenna stage out FOLDER DATASET [--wait]      (scratch folder -> draft dataset, encrypted)
 *   antenna pull JOB (--token T | --token-file F | $ANTENNA_JOB_TOKEN) -o DIR
 *
 * stage and status use an API key (client.h); pull uses only the job token, as a batch job on
 * a compute node would. */
#include "crypto/keys.h"
#include "gateway/cli.h"
#include "gateway/client.h"
#include "policy/store.h"
#include "staging/engine.h"

#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_GLOBS 32
#define TOKEN_FILE_MAX 16384
#define POLL_MS 300

struct sopts {
    struct ant_client_conf conf;
    const char *mode, *recipient_pk, *ttl, *purpose, *token, *token_file, *out;
    const char *globs[MAX_GLOBS];
    unsigned nglobs;
    bool wait, json;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  antenna stage [SITE:]DATASET [--mode decrypt|reencrypt | --decrypt | --encrypted]\n"
            "                [--recipient-pk FILE] [--path GLOB]... [--ttl 1h] [--purpose DUO]\n"
            "                [--wait] [--json]\n"
            "  antenna stage status JOB [--wait] | cancel JOB | list\n"
            "  antenna stage out FOLDER DATASET [--wait]\n"
            "  antenna pull JOB (--token T | --token-file FILE) -o DIR\n\n"
            "stage puts a dataset (or the files matching GLOBs, where '*' also matches '/')\n"
            "into this site's scratch: decrypted, or re-encrypted for --recipient-pk. --wait\n"
            "shows progress and prints the scratch folder and the job token. SITE:DATASET\n"
            "stages a peer's dataset (--purpose is then required: the peer checks it); the\n"
            "peer decides whether it may come here. --decrypt is --mode decrypt, --encrypted\n"
            "is --mode reencrypt (with --recipient-pk). pull fetches a\n"
            "ready job's files with its token ($ANTENNA_JOB_TOKEN also works). stage out\n"
            "encrypts the files under FOLDER (relative to your tenant's scratch) into a draft.\n\n"
            "connection: --url https://HOST:PORT (or $ANTENNA_URL), --cacert FILE (or\n"
            "$ANTENNA_CACERT), --key-file FILE (or $ANTENNA_API_KEY / $ANTENNA_API_KEY_FILE).\n");
}

static int parse_opts(int argc, char **argv, struct sopts *o)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'U'},
        {"cacert", required_argument, NULL, 'C'},
        {"key-file", required_argument, NULL, 'K'},
        {"mode", required_argument, NULL, 'm'},
        {"recipient-pk", required_argument, NULL, 'R'},
        {"path", required_argument, NULL, 'p'},
        {"ttl", required_argument, NULL, 't'},
        {"purpose", required_argument, NULL, 'z'},
        {"token", required_argument, NULL, 'T'},
        {"token-file", required_argument, NULL, 'F'},
        {"wait", no_argument, NULL, 'w'},
        {"decrypt", no_argument, NULL, 'd'},
        {"encrypted", no_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'U': o->conf.url = optarg; break;
        case 'C': o->conf.cacert = optarg; break;
        case 'K': o->conf.key_file = optarg; break;
        case 'm':
        case 'd':
        case 'e': {
            const char *m = c == 'd' ? "decrypt" : c == 'e' ? "reencrypt" : optarg;
            if (o->mode != NULL && strcmp(o->mode, m) != 0) {
                fprintf(stderr, "antenna: give one mode (--mode, --decrypt or --encrypted)\n");
                return -1;
            }
            o->mode = m;
            break;
        }
        case 'R': o->recipient_pk = optarg; break;
        case 'p':
            if (o->nglobs == MAX_GLOBS) {
                fprintf(stderr, "antenna: at most %d --path patterns\n", MAX_GLOBS);
                return -1;
            }
            o->globs[o->nglobs++] = optarg;
            break;
        case 't': o->ttl = optarg; break;
        case 'z': o->purpose = optarg; break;
        case 'T': o->token = optarg; break;
        case 'F': o->token_file = optarg; break;
        case 'w': o->wait = true; break;
        case 'j': o->json = true; break;
        case 'o': o->out = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    return optind;
}

static void fmt_bytes(double v, char out[24])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, 24, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* One line of progress on stderr, redrawn in place on a terminal. */
static void draw_bar(const char *what, uint64_t done, uint64_t total, double rate, long eta)
{
    char d[24], t[24], r[24], bar[31];
    double frac = total > 0 ? (double)done / (double)total : 1.0;
    if (frac > 1.0) {
        frac = 1.0;
    }
    unsigned fill = (unsigned)(frac * 30.0);
    for (unsigned i = 0; i < 30; i++) {
        bar[i] = i < fill ? '#' : ' ';
    }
    bar[30] = '\0';
    fmt_bytes((double)done, d);
    fmt_bytes((double)total, t);
    fmt_bytes(rate, r);
    fprintf(stderr, "\r%-9s [%s] %3.0f%% %s / %s  %s/s", what, bar, frac * 100.0, d, t, r);
    if (eta >= 0) {
        fprintf(stderr, "  eta %lds", eta);
    }
    fprintf(stderr, "   ");
    fflush(stderr);
}

static int open_client(const struct sopts *o, struct ant_client **c)
{
    struct ant_diag d = {{0}};
    int rc = ant_client_open(&o->conf, c, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
    }
    return rc;
}

/* "/v1/stage/JOB[tail]" with JOB percent-encoded. */
static int job_path(const char *job, const char *tail, struct ant_buf *p)
{
    int rc = ant_buf_append_str(p, "/v1/stage");
    rc = rc < 0 ? rc : ant_client_path(p, job, false);
    rc = rc < 0 || tail == NULL ? rc : ant_buf_append_str(p, tail);
    return rc < 0 ? rc : ant_buf_terminate(p);
}

/* A JSON request; *resp set on a 2xx answer. Prints the server's message otherwise. */
static int request(struct ant_client *c, const char *method, const char *path, const json_t *body,
                   json_t **resp)
{
    struct ant_diag d = {{0}};
    long status = 0;
    json_t *ans = NULL;
    int rc = ant_client_json(c, method, path, body, &status, &ans, &d);
    if (rc == 0 && status >= 400) {
        fprintf(stderr, "antenna: %s (HTTP %ld)\n", ant_diag_msg(&d, "request failed"), status);
        rc = status == 507 ? -EDQUOT : -EPERM;
    } else if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
    }
    if (rc == 0) {
        *resp = ans;
        ans = NULL;
    }
    json_decref(ans);
    return rc;
}

static uint64_t jint(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Polls the job until it ends, with a progress bar; prints where the output is and the token.
 * 0 when ready. */
static int wait_job(struct ant_client *c, const char *job, bool json)
{
    struct ant_buf p = ANT_BUF_INIT(4096);
    json_t *st = NULL;
    bool tty = isatty(STDERR_FILENO) == 1, drew = false;
    int rc = job_path(job, NULL, &p);
    while (rc == 0) {
        json_decref(st);
        st = NULL;
        rc = request(c, "GET", (const char *)p.p, NULL, &st);
        if (rc < 0) {
            break;
        }
        const char *state = jstr(st, "state");
        if (state == NULL) {
            rc = -EBADMSG;
            break;
        }
        bool end = strcmp(state, "queued") != 0 && strcmp(state, "running") != 0;
        if (tty || end) {
            const json_t *eta = json_object_get(st, "eta_s");
            const char *phase = jstr(st, "phase");
            if (phase != NULL && strcmp(phase, "transfer") == 0) {
                /* a remote job pulling from its peer: bytes received, no rate yet */
                draw_bar("transfer", jint(st, "bytes_received"), jint(st, "bytes_total"), 0, -1);
            } else {
                draw_bar(state, jint(st, "bytes_done"), jint(st, "bytes_total"),
                         (double)jint(st, "rate_bytes_per_s"),
                         json_is_integer(eta) ? (long)json_integer_value(eta) : -1);
            }
            drew = true;
        }
        if (end) {
            break;
        }
        struct timespec ts = {0, POLL_MS * 1000L * 1000L};
        nanosleep(&ts, NULL);
    }
    if (drew) {
        fputc('\n', stderr);
    }
    if (rc == 0) {
        const char *state = jstr(st, "state");
        if (json) {
            ant_client_print_json(st);
        } else {
            const char *dir = jstr(st, "scratch_dir");
            printf("job: %s\nstate: %s\n", job, state);
            if (jstr(st, "site") != NULL) {
                printf("site: %s\ndataset: %s (%s)\ntransfer: %s\n", jstr(st, "site"),
                       jstr(st, "dataset_id") ? jstr(st, "dataset_id") : "?",
                       jstr(st, "dataset_name") ? jstr(st, "dataset_name") : "?",
                       jstr(st, "transfer_id") ? jstr(st, "transfer_id") : "?");
            }
            if (dir != NULL || jstr(st, "scratch_path") != NULL) {
                printf("scratch: %s\n", dir != NULL ? dir : jstr(st, "scratch_path"));
            }
            if (jstr(st, "token") != NULL) {
                printf("token: %s\ntoken_expires: %s\n", jstr(st, "token"),
                       jstr(st, "token_expires") ? jstr(st, "token_expires") : "?");
            }
        }
        if (strcmp(state, "ready") != 0) {
            const char *err = jstr(st, "error");
            fprintf(stderr, "antenna: job %s is %s%s%s\n", job, state, err ? ": " : "",
                    err ? err : "");
            rc = -EIO;
        }
    }
    json_decref(st);
    ant_buf_fini(&p);
    return rc;
}

static int cmd_stage(const struct sopts *o, const char *arg)
{
    struct ant_client *c = NULL;
    json_t *body = NULL, *ans = NULL, *paths = json_array();
    uint8_t pk[ANT_KEY_LEN];
    char b64[48], site[ANT_NAME_MAX + 1] = "";
    const char *dataset = arg;
    int rc = paths != NULL ? 0 : -ENOMEM;
    /* SITE:DATASET names a peer's dataset (neither a site id nor a dataset id holds ':') */
    const char *colon = strchr(arg, ':');
    if (colon != NULL) {
        size_t n = (size_t)(colon - arg);
        if (n == 0 || n > ANT_NAME_MAX || colon[1] == '\0') {
            fprintf(stderr, "antenna: '%s' is not SITE:DATASET\n", arg);
            rc = -EINVAL;
            goto out;
        }
        memcpy(site, arg, n);
        site[n] = '\0';
        dataset = colon + 1;
    }
    for (unsigned i = 0; rc == 0 && i < o->nglobs; i++) {
        rc = json_array_append_new(paths, json_string(o->globs[i])) < 0 ? -ENOMEM : 0;
    }
    body = rc == 0 ? json_pack("{s:s, s:s, s:O}", "dataset", dataset, "mode",
                               o->mode ? o->mode : "decrypt", "paths", paths)
                   : NULL;
    if (body == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (o->recipient_pk != NULL) {
        struct ant_diag d = {{0}};
        rc = ant_pubkey_load(AT_FDCWD, o->recipient_pk, pk, &d);
        if (rc < 0) {
            fprintf(stderr, "antenna: %s: %s\n", o->recipient_pk, ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
        ant_key_b64(pk, b64);
        json_object_set_new(body, "recipient", json_string(b64));
    }
    if (o->ttl != NULL) {
        json_object_set_new(body, "ttl", json_string(o->ttl));
    }
    if (o->purpose != NULL) {
        json_object_set_new(body, "purpose", json_string(o->purpose));
    }
    if (site[0] != '\0') {
        json_object_set_new(body, "site", json_string(site));
    }
    rc = open_client(o, &c);
    if (rc == 0) {
        rc = request(c, "POST", "/v1/stage", body, &ans);
    }
    if (rc < 0) {
        goto out;
    }
    const char *id = jstr(ans, "id");
    if (id == NULL) {
        fprintf(stderr, "antenna: the site answered without a job id\n");
        rc = -EBADMSG;
        goto out;
    }
    if (!o->wait) {
        ant_client_print_json(ans);
        goto out;
    }
    fprintf(stderr, "antenna: job %s queued: %llu file(s), %llu bytes", id,
            (unsigned long long)jint(ans, "files_total"),
            (unsigned long long)jint(ans, "bytes_total"));
    if (jstr(ans, "transfer_id") != NULL) {
        fprintf(stderr, " from %s (transfer %s)", jstr(ans, "site") ? jstr(ans, "site") : "?",
                jstr(ans, "transfer_id"));
    }
    fputc('\n', stderr);
    rc = wait_job(c, id, o->json);
out:
    json_decref(ans);
    json_decref(body);
    json_decref(paths);
    ant_client_close(c);
    return rc == 0 ? 0 : 1;
}

static int cmd_out(const struct sopts *o, const char *folder, const char *dataset)
{
    struct ant_client *c = NULL;
    json_t *ans = NULL;
    json_t *body = json_pack("{s:s, s:s}", "path", folder, "dataset", dataset);
    int rc = body != NULL ? open_client(o, &c) : -ENOMEM;
    rc = rc < 0 ? rc : request(c, "POST", "/v1/stage-out", body, &ans);
    if (rc == 0 && (!o->wait || jstr(ans, "id") == NULL)) {
        ant_client_print_json(ans);
    } else if (rc == 0) {
        rc = wait_job(c, jstr(ans, "id"), o->json);
    }
    json_decref(ans);
    json_decref(body);
    ant_client_close(c);
    return rc == 0 ? 0 : 1;
}

static int cmd_job(const struct sopts *o, const char *verb, const char *job)
{
    struct ant_client *c = NULL;
    struct ant_buf p = ANT_BUF_INIT(4096);
    json_t *ans = NULL;
    int rc = open_client(o, &c);
    rc = rc < 0 ? rc : job_path(job, NULL, &p);
    if (rc == 0 && strcmp(verb, "status") == 0 && o->wait) {
        rc = wait_job(c, job, o->json);
    } else if (rc == 0) {
        rc = request(c, strcmp(verb, "cancel") == 0 ? "DELETE" : "GET", (const char *)p.p, NULL,
                     &ans);
        if (rc == 0) {
            ant_client_print_json(ans);
        }
    }
    json_decref(ans);
    ant_buf_fini(&p);
    ant_client_close(c);
    return rc == 0 ? 0 : 1;
}

/* --- pull --- */

static int read_token(const struct sopts *o, struct ant_buf *tok)
{
    int rc;
    if (o->token != NULL) {
        rc = ant_buf_append_str(tok, o->token);
    } else if (o->token_file != NULL) {
        int fd = open(o->token_file, O_RDONLY | O_CLOEXEC);
        rc = fd < 0 ? -errno : ant_read_all(fd, tok);
        ant_close(fd);
        if (rc < 0) {
            fprintf(stderr, "antenna: %s: %s\n", o->token_file, strerror(-rc));
            return rc;
        }
        while (tok->len > 0 && (tok->p[tok->len - 1] == '\n' || tok->p[tok->len - 1] == '\r' ||
                                tok->p[tok->len - 1] == ' ')) {
            tok->len--;
        }
    } else if (getenv("ANTENNA_JOB_TOKEN") != NULL) {
        rc = ant_buf_append_str(tok, getenv("ANTENNA_JOB_TOKEN"));
    } else {
        fprintf(stderr, "antenna pull: a job token is needed (--token, --token-file or "
                        "$ANTENNA_JOB_TOKEN)\n");
        return -EINVAL;
    }
    return rc < 0 ? rc : ant_buf_terminate(tok);
}

static int file_sha256(int dirfd, const char *rel, char hex[65])
{
    uint8_t buf[65536], md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = fd < 0 ? -errno : 0;
    if (ctx == NULL || (rc == 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)) {
        rc = rc < 0 ? rc : -ENOMEM;
    }
    while (rc == 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            rc = -errno;
        } else if (n == 0) {
            break;
        } else if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
            rc = -EIO;
        }
    }
    if (rc == 0 && EVP_DigestFinal_ex(ctx, md, NULL) != 1) {
        rc = -EIO;
    }
    if (rc == 0) {
        ant_hex_encode(md, sizeof(md), hex);
    }
    EVP_MD_CTX_free(ctx);
    ant_close(fd);
    return rc;
}

static int cmd_pull(struct sopts *o, const char *job)
{
    struct ant_buf tok = ANT_BUF_INIT(TOKEN_FILE_MAX);
    struct ant_buf p = ANT_BUF_INIT(8192);
    struct ant_client *c = NULL;
    json_t *list = NULL;
    int dirfd = -1, failed = 0;
    uint64_t total = 0, got = 0;
    int rc = read_token(o, &tok);
    if (rc < 0) {
        goto out;
    }
    if (mkdir(o->out, 0755) < 0 && errno != EEXIST) {
        rc = -errno;
        fprintf(stderr, "antenna pull: cannot create %s: %s\n", o->out, strerror(errno));
        goto out;
    }
    dirfd = open(o->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = -errno;
        fprintf(stderr, "antenna pull: %s: %s\n", o->out, strerror(errno));
        goto out;
    }
    o->conf.bearer = (const char *)tok.p;
    o->conf.progress = isatty(STDERR_FILENO) == 1;
    rc = open_client(o, &c);
    rc = rc < 0 ? rc : job_path(job, "/files", &p);
    rc = rc < 0 ? rc : request(c, "GET", (const char *)p.p, NULL, &list);
    if (rc < 0) {
        goto out;
    }
    json_t *files = json_object_get(list, "files");
    size_t n = json_array_size(files);
    for (size_t i = 0; i < n; i++) {
        total += jint(json_array_get(files, i), "size");
    }
    fprintf(stderr, "antenna: pulling %zu file(s), %llu bytes of job %s into %s\n", n,
            (unsigned long long)total, job, o->out);
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(files, i);
        const char *path = jstr(f, "path"), *want = jstr(f, "sha256");
        struct ant_diag d = {{0}};
        long status = 0;
        uint64_t bytes = 0;
        char hex[65];
        /* the site names the files: still, nothing may land outside DIR */
        if (path == NULL || ant_stage_path_check(ant_bytes_str(path)) < 0) {
            fprintf(stderr, "antenna pull: refusing a bad path from the site\n");
            failed++;
            continue;
        }
        ant_buf_fini(&p);
        ant_buf_init(&p, 8192);
        int e = job_path(job, "/files", &p);
        e = e < 0 ? e : ant_client_path(&p, path, true);
        e = e < 0 ? e : ant_buf_terminate(&p);
        /* folders made and entered without following a symlink: none carries a file out */
        int pfd = e < 0 ? e : ant_client_open_parent(dirfd, path);
        const char *base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
        e = pfd < 0 ? pfd : e;
        /* a pull run again (after a failure) keeps what it verified already */
        if (e == 0 && want != NULL && file_sha256(pfd, base, hex) == 0 &&
            strcmp(hex, want) == 0) {
            fprintf(stderr, "[%zu/%zu] %s: already here, checksum verified\n", i + 1, n, path);
            got += jint(f, "size");
            ant_close(pfd);
            continue;
        }
        if (e == 0 && !o->conf.progress) {
            fprintf(stderr, "[%zu/%zu] %s\n", i + 1, n, path);
        }
        /* checked as it arrives against the job listing's sha256 (of the staged file's bytes,
         * the route sends no checksum header): a mismatch never takes the file's name */
        struct ant_client_check chk = {.kind = ANT_CLIENT_SUM_PLAIN, .fallback = want};
        e = e < 0 ? e
                  : ant_client_download(c, (const char *)p.p, pfd, base, -1,
                                        want != NULL ? &chk : NULL, &status, &bytes, &d);
        if (pfd >= 0) {
            ant_close(pfd);
        }
        if (e == 0 && status != 200) {
            fprintf(stderr, "antenna pull: %s: %s (HTTP %ld)\n", path,
                    ant_diag_msg(&d, "download refused"), status);
            failed++;
            if (status == 401 || status == 410) {
                rc = -EKEYREJECTED; /* every other file would get the same answer */
                goto out;
            }
            continue;
        }
        if (e == -EBADMSG) {
            fprintf(stderr, "antenna pull: %s: SHA-256 does not match the catalog (%s)\n", path,
                    ant_diag_msg(&d, "checksum mismatch"));
            failed++;
            continue;
        }
        if (e < 0) {
            fprintf(stderr, "antenna pull: %s: %s\n", path, ant_diag_msg(&d, strerror(-e)));
            failed++;
            continue;
        }
        got += bytes;
    }
    fprintf(stderr, "antenna: %zu of %zu file(s), %llu bytes pulled%s\n", n - (size_t)failed, n,
            (unsigned long long)got, failed ? "; some failed" : ", checksums verified");
    rc = failed ? -EIO : 0;
out:
    ant_client_close(c);
    json_decref(list);
    ant_close(dirfd);
    ant_buf_fini(&p);
    ant_buf_wipe_fini(&tok);
    return rc == 0 ? 0 : 1;
}

int ant_cli_stage(int argc, char **argv)
{
    struct sopts o;
    memset(&o, 0, sizeof(o));
    bool pull = strcmp(argv[0], "pull") == 0;
    int i = parse_opts(argc, argv, &o);
    if (i < 0) {
        usage(stderr);
        return 2;
    }
    if (pull) {
        if (argc - i != 1 || o.out == NULL) {
            usage(stderr);
            return 2;
        }
        return cmd_pull(&o, argv[i]);
    }
    if (argc - i == 1 && strcmp(argv[i], "list") == 0) {
        struct ant_client *c = NULL;
        json_t *ans = NULL;
        int rc = open_client(&o, &c);
        rc = rc < 0 ? rc : request(c, "GET", "/v1/stage", NULL, &ans);
        if (rc == 0) {
            ant_client_print_json(ans);
        }
        json_decref(ans);
        ant_client_close(c);
        return rc == 0 ? 0 : 1;
    }
    if (argc - i == 3 && strcmp(argv[i], "out") == 0) {
        return cmd_out(&o, argv[i + 1], argv[i + 2]);
    }
    if (argc - i == 2 && (strcmp(argv[i], "status") == 0 || strcmp(argv[i], "cancel") == 0)) {
        return cmd_job(&o, argv[i], argv[i + 1]);
    }
    if (argc - i != 1) {
        usage(stderr);
        return 2;
    }
    return cmd_stage(&o, argv[i]);
}
