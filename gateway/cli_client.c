/* The client commands: datasets, files and grants on a site, through its HTTPS API.
 *
 *   antenna dataset create NAME [--description D] [--classification open|internal|sensitive]
 *                              [--region R]... [--duo CODE]...
 *   antenna dataset list | show ID | files ID | publish ID | withdraw ID
 *   antenna put DATASET PATH... [--recursive]     upload local files (every PATH is local)
 *   antenna put DATASET LOCAL_FILE --as REMOTE    one file under a remote path
 *   antenna get DATASET[/PATH|/FOLDER/] | DATASET PATH [-o OUT|DIR|-]
 *               [--recipient-pk FILE | --plain]   a file, a folder's files or the dataset
 *   antenna pubkey set PRINCIPAL FILE | show PRINCIPAL   the key downloads are encrypted for
 *   antenna grant create DATASET (--principal P | --tenant T | --site S) --actions read,stage,...
 *                               [--purpose DUO] [--expires DURATION]
 *   antenna grant list DATASET | revoke GRANT
 *   (`ls` is list, `add` create: `antenna dataset ls`, `antenna grant add ...`)
 *   (dataset list, dataset files and grant list print a table; -o json the API's answer)
 *   antenna explain DATASET --action read|stage|... [--purpose DUO] [--principal P] [-o json]
 *   antenna login --url URL [--cacert FILE] [--key-file FILE]   (else the key from stdin)
 *   antenna logout
 *
 * Every command takes --url, --cacert and --key-file (see client.h for the environment and the
 * saved login). */
#include "crypto/keys.h"
#include "gateway/cli.h"
#include "gateway/client.h"
#include "policy/store.h"
#include "staging/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define MAX_LIST 16

struct copts {
    struct ant_client_conf conf;
    const char *description, *classification, *out, *recipient_pk, *purpose, *expires;
    const char *principal, *tenant, *site, *actions, *action, *as;
    const char *regions[MAX_LIST];
    unsigned nregions;
    const char *duo[MAX_LIST];
    unsigned nduo;
    bool plain, json, recursive;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  antenna dataset create NAME [--description D] [--classification C]\n"
            "                 [--region R]... [--duo CODE]...\n"
            "  antenna dataset list | show ID | files ID | publish ID | withdraw ID\n"
            "      (lists: a table, one object: member and value lines; -o json for scripts)\n"
            "  antenna put DATASET PATH... [--recursive] [--json]\n"
            "      (every PATH is a local file, or with --recursive a folder: FOLDER/...)\n"
            "  antenna put DATASET LOCAL_FILE --as REMOTE_PATH [--json]\n"
            "      (one file under a remote path; REMOTE_PATH ending in /: a remote folder)\n"
            "  antenna get DATASET[/PATH|/FOLDER/] | DATASET PATH [-o OUT|DIR|-] [--purpose DUO]\n"
            "                 [--recipient-pk F|--plain]\n"
            "      (a file; a folder's files into -o DIR as their paths below it; no PATH:\n"
            "      every file; neither key option: encrypted for the key registered with\n"
            "      `antenna pubkey set`)\n"
            "  antenna pubkey set PRINCIPAL PUBLIC_KEY_FILE | show PRINCIPAL\n"
            "  antenna grant create DATASET (--principal P | --tenant T | --site S)\n"
            "                 --actions read,stage,transfer [--purpose DUO] [--expires 30d]\n"
            "  antenna grant list DATASET | revoke GRANT        (ls: list, add: create)\n"
            "  antenna explain DATASET --action read|stage|transfer|... [--purpose DUO]\n"
            "                 [--principal P] [-o json]\n"
            "  antenna login --url URL [--cacert FILE] [--key-file FILE]  (else key on stdin)\n"
            "  antenna logout\n\n"
            "connection: --url https://HOST:PORT (or $ANTENNA_URL), --cacert FILE (or\n"
            "$ANTENNA_CACERT), --key-file FILE (or $ANTENNA_API_KEY / $ANTENNA_TOKEN /\n"
            "$ANTENNA_API_KEY_FILE), else what `antenna login` saved.\n");
}

/* Parses the options of every client command; returns the index of the first operand or -1. */
static int parse_opts(int argc, char **argv, struct copts *o)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'U'},
        {"cacert", required_argument, NULL, 'C'},
        {"key-file", required_argument, NULL, 'K'},
        {"description", required_argument, NULL, 'D'},
        {"classification", required_argument, NULL, 'c'},
        {"region", required_argument, NULL, 'r'},
        {"duo", required_argument, NULL, 'u'},
        {"recipient-pk", required_argument, NULL, 'R'},
        {"plain", no_argument, NULL, 'P'},
        {"principal", required_argument, NULL, 'p'},
        {"tenant", required_argument, NULL, 't'},
        {"site", required_argument, NULL, 's'},
        {"actions", required_argument, NULL, 'a'},
        {"action", required_argument, NULL, 'A'},
        {"purpose", required_argument, NULL, 'z'},
        {"expires", required_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'j'},
        {"recursive", no_argument, NULL, 'W'},
        {"as", required_argument, NULL, 'S'},
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
        case 'D': o->description = optarg; break;
        case 'c': o->classification = optarg; break;
        case 'r':
            if (o->nregions == MAX_LIST) {
                return -1;
            }
            o->regions[o->nregions++] = optarg;
            break;
        case 'u':
            if (o->nduo == MAX_LIST) {
                return -1;
            }
            o->duo[o->nduo++] = optarg;
            break;
        case 'R': o->recipient_pk = optarg; break;
        case 'P': o->plain = true; break;
        case 'p': o->principal = optarg; break;
        case 't': o->tenant = optarg; break;
        case 's': o->site = optarg; break;
        case 'a': o->actions = optarg; break;
        case 'A': o->action = optarg; break;
        case 'z': o->purpose = optarg; break;
        case 'e': o->expires = optarg; break;
        case 'j': o->json = true; break;
        case 'W': o->recursive = true; break;
        case 'S':
            if (o->as != NULL) {
                return -1; /* one remote path: a second --as is a mistake, not an override */
            }
            o->as = optarg;
            break;
        case 'o': o->out = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    return optind;
}

/* One JSON request. Returns 0 with *resp (the caller's to json_decref; may be NULL), or 1 after
 * printing what went wrong (the server's message and request id for an HTTP error). */
static int request(const struct copts *o, const char *method, const char *path,
                   const json_t *body, json_t **resp)
{
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    long status = 0;
    *resp = NULL;
    int rc = ant_client_open(&o->conf, &c, &d);
    if (rc == 0) {
        rc = ant_client_json(c, method, path, body, &status, resp, &d);
    }
    if (rc == 0 && status >= 400) {
        rc = -EPERM;
    }
    if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
        json_decref(*resp);
        *resp = NULL;
    }
    ant_client_close(c);
    return rc < 0 ? 1 : 0;
}


/* -o json (or --json): the server's JSON as it is, for scripts; otherwise text for people. */
static int want_json(const struct copts *o, bool *json)
{
    if (o->out != NULL && strcmp(o->out, "json") != 0 && strcmp(o->out, "table") != 0) {
        fprintf(stderr, "antenna: -o takes json or table\n");
        return -EINVAL;
    }
    *json = o->json || (o->out != NULL && strcmp(o->out, "json") == 0);
    return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* How a column's cell is made from a row of a list answer. */
enum col_kind {
    COL_TEXT,    /* a string or number as it is */
    COL_SHORT,   /* a hash: its first 12 characters */
    COL_LIST,    /* an array of strings, comma-separated */
    COL_TIME,    /* unix seconds as UTC time */
    COL_GRANTEE, /* grantee_kind:grantee_id */
};

struct column {
    const char *head, *key;
    enum col_kind kind;
};

#define TABLE_COLS_MAX 8
#define CELL_MAX 256

/* Names come from other users: no terminal escape sequence reaches the screen. */
static void printable(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            *s = '?';
        }
    }
}

static void cell_text(const json_t *v, char *out, size_t n)
{
    if (json_is_string(v) && json_string_length(v) > 0) {
        snprintf(out, n, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, n, "%s", json_is_true(v) ? "yes" : "no");
    } else {
        snprintf(out, n, "-");
    }
}

static void cell(const json_t *row, const struct column *col, char *out, size_t n)
{
    const json_t *v = json_object_get(row, col->key);
    size_t i, len = 0;
    json_t *e;
    switch (col->kind) {
    case COL_SHORT:
        cell_text(v, out, n < 13 ? n : 13);
        break;
    case COL_LIST:
        out[0] = '\0';
        json_array_foreach(v, i, e)
        {
            int w = snprintf(out + len, n - len, "%s%s", i ? "," : "", json_string_value(e) ?
                             json_string_value(e) : "?");
            len = w < 0 ? len : len + (size_t)w >= n ? n - 1 : len + (size_t)w;
        }
        if (len == 0) {
            snprintf(out, n, "-");
        }
        break;
    case COL_TIME:
        if (json_is_integer(v)) {
            char t[32];
            ant_fmt_time((int64_t)json_integer_value(v), t);
            snprintf(out, n, "%s", t);
        } else {
            snprintf(out, n, "-");
        }
        break;
    case COL_GRANTEE:
        snprintf(out, n, "%s:%s", jstr(row, "grantee_kind"), jstr(row, col->key));
        break;
    default:
        cell_text(v, out, n);
    }
    printable(out);
}

/* Prints the array `key` of a list answer as an aligned table on stdout. */
static void print_table(const json_t *resp, const char *key, const struct column *cols,
                        size_t ncols)
{
    const json_t *rows = json_object_get(resp, key);
    size_t width[TABLE_COLS_MAX] = {0}, i;
    char buf[CELL_MAX];
    json_t *row;
    ncols = ncols < TABLE_COLS_MAX ? ncols : TABLE_COLS_MAX;
    for (size_t c = 0; c < ncols; c++) {
        width[c] = strlen(cols[c].head);
        json_array_foreach(rows, i, row)
        {
            cell(row, &cols[c], buf, sizeof(buf));
            width[c] = strlen(buf) > width[c] ? strlen(buf) : width[c];
        }
    }
    for (size_t c = 0; c < ncols; c++) {
        printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0, cols[c].head,
               c + 1 < ncols ? "  " : "\n");
    }
    json_array_foreach(rows, i, row)
    {
        for (size_t c = 0; c < ncols; c++) {
            cell(row, &cols[c], buf, sizeof(buf));
            printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0, buf, c + 1 < ncols ? "  " : "\n");
        }
    }
    if (json_array_size(rows) == 0) {
        printf("(none)\n");
    }
}

/* Is the member `key` of a record unix seconds? (created, expires, not_before, *_at) */
static bool is_time_key(const char *key)
{
    size_t n = strlen(key);
    return strcmp(key, "created") == 0 || strcmp(key, "expires") == 0 ||
           strcmp(key, "not_before") == 0 || (n > 3 && strcmp(key + n - 3, "_at") == 0);
}

/* One object answer (a dataset, a grant, a principal's key) as "member  value" lines in the
 * answer's order: times as UTC, arrays of strings comma-separated, null as "-". */
static void print_record(json_t *resp)
{
    const char *key;
    json_t *v;
    size_t width = 0;
    char buf[CELL_MAX];
    json_object_foreach (resp, key, v) {
        width = strlen(key) > width ? strlen(key) : width;
    }
    json_object_foreach (resp, key, v) {
        struct column col = {key, key, COL_TEXT};
        if (json_is_array(v)) {
            col.kind = COL_LIST;
        } else if (json_is_integer(v) && is_time_key(key)) {
            col.kind = COL_TIME;
        }
        if (json_is_object(v)) {
            char *dump = json_dumps(v, JSON_COMPACT);
            snprintf(buf, sizeof(buf), "%s", dump != NULL ? dump : "?");
            free(dump);
            printable(buf);
        } else {
            cell(resp, &col, buf, sizeof(buf));
        }
        char name[CELL_MAX];
        snprintf(name, sizeof(name), "%s", key);
        printable(name);
        printf("%-*s  %s\n", (int)width, name, buf);
    }
}

/* One JSON request; prints the answer as "member  value" lines for people, unchanged with -o
 * json; exit code 0 or 1 (2: a bad -o). */
static int call(const struct copts *o, const char *method, const char *path, const json_t *body)
{
    bool json = false;
    json_t *resp = NULL;
    if (want_json(o, &json) < 0) {
        return 2;
    }
    int ret = request(o, method, path, body, &resp);
    if (ret == 0 && (json || !json_is_object(resp))) {
        ant_client_print_json(resp);
    } else if (ret == 0) {
        print_record(resp);
    }
    json_decref(resp);
    return ret;
}

/* A list command: a table for people, the answer unchanged with -o json. */
static int list(const struct copts *o, const char *path, const char *key,
                const struct column *cols, size_t ncols)
{
    bool json = false;
    json_t *resp = NULL;
    if (want_json(o, &json) < 0) {
        return 2;
    }
    int ret = request(o, "GET", path, NULL, &resp);
    if (ret == 0 && json) {
        ant_client_print_json(resp);
    } else if (ret == 0) {
        print_table(resp, key, cols, ncols);
    }
    json_decref(resp);
    return ret;
}

static const struct column g_ds_cols[] = {
    {"ID", "id", COL_TEXT},       {"NAME", "name", COL_TEXT},
    {"CLASSIFICATION", "classification", COL_TEXT},
    {"STATE", "state", COL_TEXT}, {"FILES", "files", COL_TEXT},
};
static const struct column g_file_cols[] = {
    {"PATH", "path", COL_TEXT},
    {"SIZE", "size", COL_TEXT},
    {"SHA256", "sha256", COL_SHORT},
};
static const struct column g_grant_cols[] = {
    {"ID", "id", COL_TEXT},           {"GRANTEE", "grantee_id", COL_GRANTEE},
    {"ACTIONS", "actions", COL_LIST}, {"PURPOSE", "purpose", COL_TEXT},
    {"EXPIRES", "expires", COL_TIME}, {"STATE", "state", COL_TEXT},
};

/* "/v1/datasets/ID[/rest]" with ID and REMOTE percent-encoded. */
static int ds_path(const char *id, const char *tail, const char *file, struct ant_buf *p)
{
    int rc = ant_buf_append_str(p, "/v1/datasets");
    rc = rc < 0 ? rc : ant_client_path(p, id, false);
    rc = rc < 0 || tail == NULL ? rc : ant_buf_append_str(p, tail);
    rc = rc < 0 || file == NULL ? rc : ant_client_path(p, file, true);
    rc = rc < 0 ? rc : ant_buf_terminate(p);
    if (rc < 0) {
        fprintf(stderr, "antenna: cannot build the request: %s\n", strerror(-rc));
    }
    return rc;
}

static json_t *str_array(const char *const *v, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, json_string(v[i]));
    }
    return a;
}

/* The short forms people type: `ls` for list, `add` for create (the and S3's names). */
static const char *sub_alias(const char *sub)
{
    if (sub != NULL && strcmp(sub, "ls") == 0) {
        return "list";
    }
    return sub != NULL && strcmp(sub, "add") == 0 ? "create" : sub;
}

static int cmd_dataset(int argc, char **argv, struct copts *o, int i)
{
    const char *sub = sub_alias(i < argc ? argv[i] : NULL);
    const char *arg = i + 1 < argc ? argv[i + 1] : NULL;
    struct ant_buf p;
    int ret = 2;
    ant_buf_init(&p, 4096);
    if (sub == NULL || arg == NULL) {
        if (sub != NULL && strcmp(sub, "list") == 0) {
            return list(o, "/v1/datasets", "datasets", g_ds_cols, ANT_ARRAY_LEN(g_ds_cols));
        }
        usage(stderr);
        return 2;
    }
    if (strcmp(sub, "create") == 0) {
        json_t *b = json_pack("{s:s, s:s, s:o, s:o}", "name", arg, "classification",
                              o->classification ? o->classification : "internal", "regions",
                              str_array(o->regions, o->nregions), "duo",
                              str_array(o->duo, o->nduo));
        if (b != NULL && o->description != NULL) {
            json_object_set_new(b, "description", json_string(o->description));
        }
        ret = b != NULL ? call(o, "POST", "/v1/datasets", b) : 1;
        json_decref(b);
        return ret;
    }
    static const struct {
        const char *sub, *method, *tail;
    } simple[] = {
        {"show", "GET", NULL},
        {"publish", "POST", "/publish"},
        {"withdraw", "POST", "/withdraw"},
    };
    if (strcmp(sub, "files") == 0) {
        ret = ds_path(arg, "/files", NULL, &p) < 0
                  ? 1
                  : list(o, (const char *)p.p, "files", g_file_cols, ANT_ARRAY_LEN(g_file_cols));
        goto out;
    }
    for (size_t k = 0; k < ANT_ARRAY_LEN(simple); k++) {
        if (strcmp(sub, simple[k].sub) == 0) {
            ret = ds_path(arg, simple[k].tail, NULL, &p) < 0
                      ? 1
                      : call(o, simple[k].method, (const char *)p.p, NULL);
            goto out;
        }
    }
    usage(stderr);
out:
    ant_buf_fini(&p);
    return ret;
}

/* The files one `put` uploads: local path and logical path, both owned. */
struct put_list {
    char **local, **remote;
    size_t n, cap;
};

static void put_list_fini(struct put_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->local[i]);
        free(l->remote[i]);
    }
    free(l->local);
    free(l->remote);
}

static int put_list_add(struct put_list *l, const char *local, const char *remote)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nl = realloc(l->local, cap * sizeof(*nl));
        if (nl == NULL) {
            return -ENOMEM;
        }
        l->local = nl;
        char **nr = realloc(l->remote, cap * sizeof(*nr));
        if (nr == NULL) {
            return -ENOMEM;
        }
        l->remote = nr;
        l->cap = cap;
    }
    l->local[l->n] = strdup(local);
    l->remote[l->n] = strdup(remote);
    if (l->local[l->n] == NULL || l->remote[l->n] == NULL) {
        free(l->local[l->n]);
        free(l->remote[l->n]);
        return -ENOMEM;
    }
    l->n++;
    return 0;
}

/* Says why `local` is not uploaded and counts it: the command goes on with the other files and
 * exits 1 at the end, as cp does with what it omits. */
static void put_skip(const char *local, const char *why, size_t *skipped)
{
    fprintf(stderr, "antenna: skipping %s: %s\n", local, why);
    (*skipped)++;
}

/* Adds every regular file under the folder `local` (opened as dfd, which this closes) as
 * `remote`/NAME. Symlinks are not followed: each, as anything else that is not a file or a
 * folder and what cannot be read, is said and counted in *skipped. Returns 0 or -ENOMEM. */
static int put_walk(int dfd, const char *local, const char *remote, struct put_list *l,
                    unsigned depth, size_t *skipped)
{
    DIR *dir = fdopendir(dfd);
    struct dirent *e;
    int rc = 0;
    if (dir == NULL) {
        put_skip(local, strerror(errno), skipped);
        ant_close(dfd);
        return 0;
    }
    if (depth > 64) {
        put_skip(local, "folders nested too deep", skipped);
        closedir(dir);
        return 0;
    }
    while (rc == 0) {
        char lp[PATH_MAX], rp[PATH_MAX];
        struct stat sb;
        errno = 0;
        if ((e = readdir(dir)) == NULL) {
            if (errno != 0) {
                put_skip(local, strerror(errno), skipped); /* what is left of it */
            }
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if ((size_t)snprintf(lp, sizeof(lp), "%s/%s", local, e->d_name) >= sizeof(lp) ||
            (size_t)snprintf(rp, sizeof(rp), "%s/%s", remote, e->d_name) >= sizeof(rp)) {
            fprintf(stderr, "antenna: skipping %s/%s: path too long\n", local, e->d_name);
            (*skipped)++;
        } else if (fstatat(dirfd(dir), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            put_skip(lp, strerror(errno), skipped);
        } else if (S_ISREG(sb.st_mode)) {
            rc = put_list_add(l, lp, rp);
        } else if (S_ISDIR(sb.st_mode)) {
            int sub = openat(dirfd(dir), e->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                put_skip(lp, strerror(errno), skipped);
            } else {
                rc = put_walk(sub, lp, rp, l, depth + 1, skipped);
            }
        } else {
            put_skip(lp, S_ISLNK(sb.st_mode) ? "a symbolic link (not followed)" : "not a file",
                     skipped);
        }
    }
    closedir(dir);
    return rc;
}

/* A folder's own name, the first component of its files' logical paths (as scp -r):
 * "data/" and "data" give "data"; "." gives the current folder's name. */
static int dir_name(const char *local, char *out, size_t n)
{
    char buf[PATH_MAX], real[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", local);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') {
        buf[--len] = '\0';
    }
    const char *base = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
    if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        if (realpath(local, real) == NULL) {
            return -errno;
        }
        base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
        if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
            return -EINVAL; /* "/" */
        }
    }
    return (size_t)snprintf(out, n, "%s", base) < n ? 0 : -ENAMETOOLONG;
}

/* Collects what `put` uploads from its operands. What is refused (a folder without
 * --recursive, a FIFO, a symlink, what cannot be read) is said and counted in *skipped, and
 * the others still collected. Returns 0 or -ENOMEM. */
static int put_collect(char **paths, int n, bool recursive, struct put_list *l, size_t *skipped)
{
    int rc = 0;
    for (int k = 0; rc == 0 && k < n; k++) {
        const char *local = paths[k];
        struct stat sb;
        char name[PATH_MAX];
        if (lstat(local, &sb) < 0) {
            put_skip(local, strerror(errno), skipped);
        } else if (S_ISREG(sb.st_mode)) {
            const char *base = strrchr(local, '/') ? strrchr(local, '/') + 1 : local;
            rc = put_list_add(l, local, base);
        } else if (S_ISDIR(sb.st_mode) && !recursive) {
            put_skip(local, "a folder (give --recursive to upload it)", skipped);
        } else if (S_ISDIR(sb.st_mode)) {
            int e = dir_name(local, name, sizeof(name));
            int dfd = e < 0 ? -1 : open(local, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (e == 0 && dfd < 0) {
                e = -errno;
            }
            if (e < 0) {
                put_skip(local, strerror(-e), skipped);
            } else {
                rc = put_walk(dfd, local, name, l, 0, skipped);
            }
        } else {
            put_skip(local, S_ISLNK(sb.st_mode) ? "a symbolic link (not followed)"
                                                : "not a regular file",
                     skipped);
        }
    }
    return rc;
}

/* `put DATASET LOCAL --as REMOTE`: one regular file under the remote path REMOTE (a REMOTE
 * ending in '/' is a folder: the file's own name under it). */
static int put_as(const char *local, const char *as, struct put_list *l)
{
    struct stat sb;
    char remote[PATH_MAX];
    const char *base = strrchr(local, '/') ? strrchr(local, '/') + 1 : local;
    size_t al = strlen(as);
    if (lstat(local, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "antenna: --as names the remote path of one file; %s is a folder "
                        "(--recursive uploads it under its own name)\n", local);
        return -EISDIR;
    }
    if (al == 0 || (as[al - 1] == '/' && *base == '\0')) {
        fprintf(stderr, "antenna: --as needs a remote path\n");
        return -EINVAL;
    }
    if ((size_t)snprintf(remote, sizeof(remote), "%s%s", as, as[al - 1] == '/' ? base : "") >=
        sizeof(remote)) {
        fprintf(stderr, "antenna: --as %s: path too long\n", as);
        return -ENAMETOOLONG;
    }
    return put_list_add(l, local, remote); /* what `local` is, the upload's open checks */
}

/* antenna put DATASET PATH... [--recursive] | put DATASET LOCAL --as REMOTE. Every PATH is a
 * local path, whatever exists (as with scp, iput and `aws s3 cp`, where the remote side is
 * always said as such): files as their name, a folder's files as FOLDER/relative/path. The
 * remote path of one file is given by --as. The older `put DATASET LOCAL REMOTE` read REMOTE as
 * a remote path only when no such local file existed, so one command meant two things; its
 * shape (a file, then a name that is no local file) is refused with the --as spelling, never
 * guessed. A local path that is refused (not a regular file, a folder without --recursive,
 * unreadable) is said and skipped, the others uploaded, and the exit code is 1, as cp does with
 * what it omits; a failed upload stops the command. */
static int cmd_put(int argc, char **argv, struct copts *o, int i)
{
    if (argc - i < 2) {
        usage(stderr);
        return 2;
    }
    if (o->as != NULL && (argc - i != 2 || o->recursive)) {
        fprintf(stderr, "antenna: --as names the remote path of one file: give one local file "
                        "(and no --recursive)\n");
        return 2;
    }
    const char *ds = argv[i];
    struct put_list l = {0};
    struct ant_buf p;
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    json_t *resp = NULL;
    struct stat sb;
    size_t skipped = 0;
    int ret = 1, rc, fd = -1;
    ant_buf_init(&p, 8192);
    if (o->as != NULL) {
        rc = put_as(argv[i + 1], o->as, &l);
        ret = rc == -EISDIR || rc == -EINVAL ? 2 : 1;
    } else if (argc - i == 3 && stat(argv[i + 1], &sb) == 0 && S_ISREG(sb.st_mode) &&
               lstat(argv[i + 2], &sb) < 0 && errno == ENOENT) {
        fprintf(stderr, "antenna: %s: no such local file. Every PATH of `antenna put DATASET "
                        "PATH...` is a local file; to upload %s as the remote path %s:\n"
                        "  antenna put %s %s --as %s\n",
                argv[i + 2], argv[i + 1], argv[i + 2], ds, argv[i + 1], argv[i + 2]);
        rc = -ENOENT;
        ret = 2;
    } else {
        rc = put_collect(argv + i + 1, argc - i - 1, o->recursive, &l, &skipped);
        if (rc < 0) {
            fprintf(stderr, "antenna: %s\n", strerror(-rc));
        }
    }
    if (rc < 0) {
        goto out;
    }
    ret = 1;
    if (l.n == 0) {
        goto out; /* each operand was said and skipped: nothing to send */
    }
    o->conf.progress = true;
    rc = ant_client_open(&o->conf, &c, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    for (size_t k = 0; k < l.n; k++) {
        long status = 0;
        /* O_NONBLOCK until fstat: a FIFO (given, or swapped in since the walk) is refused
         * rather than waited on */
        fd = ant_open_regular(AT_FDCWD, l.local[k], O_RDONLY | O_NOFOLLOW, 0);
        if (fd < 0 || fstat(fd, &sb) < 0) {
            rc = fd < 0 ? fd : -errno;
            fprintf(stderr, "antenna: cannot read %s: %s\n", l.local[k],
                    rc == -EINVAL  ? "not a regular file"
                    : rc == -ELOOP ? "a symbolic link (not followed)"
                                   : strerror(-rc));
            ant_close(fd);
            fd = -1;
            skipped++;
            continue;
        }
        ant_buf_fini(&p);
        ant_buf_init(&p, 8192);
        if (ds_path(ds, "/files", l.remote[k], &p) < 0) {
            goto out;
        }
        if (l.n > 1 && c != NULL && isatty(STDERR_FILENO)) {
            fprintf(stderr, "[%zu/%zu] %s\n", k + 1, l.n, l.remote[k]);
        }
        rc = ant_client_upload(c, (const char *)p.p, fd, (uint64_t)sb.st_size, &status, &resp,
                               &d);
        if (rc < 0 || status >= 400) {
            fprintf(stderr, "antenna: upload of %s failed: %s\n", l.local[k],
                    ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
        if (o->json) {
            ant_client_print_json(resp);
        } else {
            printf("%s -> %s (%llu bytes)\n", l.local[k], l.remote[k],
                   (unsigned long long)sb.st_size);
        }
        fflush(stdout);
        json_decref(resp);
        resp = NULL;
        ant_close(fd);
        fd = -1;
    }
    ret = 0;
out:
    if (skipped > 0) {
        fprintf(stderr, "antenna: %zu path(s) skipped, not uploaded (see above)\n", skipped);
        ret = ret == 0 ? 1 : ret;
    }
    ant_close(fd);
    json_decref(resp);
    ant_client_close(c);
    ant_buf_fini(&p);
    put_list_fini(&l);
    return ret;
}

/* The query of a download: ?format=plain, ?recipient= and &purpose= as the options say. */
static int get_query(const struct copts *o, struct ant_buf *q)
{
    struct ant_diag d = {{0}};
    uint8_t pk[ANT_KEY_LEN];
    char b64[64];
    int rc = 0;
    if (o->plain) {
        rc = ant_buf_append_str(q, "?format=plain");
    } else if (o->recipient_pk != NULL) {
        rc = ant_pubkey_load(AT_FDCWD, o->recipient_pk, pk, &d);
        if (rc == 0) {
            ant_key_b64(pk, b64);
            /* base64 '+' and '/' must be escaped in a query */
            rc = ant_buf_append_str(q, "?recipient=");
            for (const char *c = b64; rc == 0 && *c; c++) {
                rc = *c == '+'   ? ant_buf_append_str(q, "%2B")
                     : *c == '/' ? ant_buf_append_str(q, "%2F")
                     : *c == '=' ? ant_buf_append_str(q, "%3D")
                                 : ant_buf_append(q, c, 1);
            }
        }
        if (rc < 0) {
            fprintf(stderr, "antenna: %s: %s\n", o->recipient_pk, ant_diag_msg(&d, strerror(-rc)));
            return rc;
        }
    }
    /* neither: the server re-encrypts for the key registered with `antenna pubkey set` */
    if (rc == 0 && o->purpose != NULL) {
        /* what a grant's purpose is checked against (a DUO code: no escaping needed) */
        rc = ant_buf_printf(q, "%spurpose=%s", o->plain || o->recipient_pk != NULL ? "&" : "?",
                            o->purpose);
    }
    return rc < 0 ? rc : ant_buf_terminate(q);
}

/* What a download is checked against: its plaintext with --plain, else its Crypt4GH body; the
 * listing's checksum (`entry`, may be NULL) when the site's answer carries none. */
static struct ant_client_check get_check(const struct copts *o, const json_t *entry)
{
    const char *key = o->plain ? "sha256" : "sha256_c4gh";
    return (struct ant_client_check){
        .kind = o->plain ? ANT_CLIENT_SUM_PLAIN : ANT_CLIENT_SUM_C4GH,
        .fallback = json_string_value(json_object_get(entry, key)),
    };
}

/* One file of a dataset into DIR/PATH (resumed if a run before was interrupted), checked
 * against `check` before it takes its name: 0, or -errno after saying why. With `miss` set, a
 * 404 is not said but copied there and 1 returned (not -ENOENT, which a missing local folder
 * gives): the caller then looks for a folder of that name. */
static int get_one(struct ant_client *c, const char *ds, const char *remote, const char *query,
                   struct ant_client_check check, int rootfd, const char *dest,
                   const char *label, struct ant_diag *miss)
{
    struct ant_buf p;
    struct ant_diag d = {{0}};
    const char *sum = "";
    long status = 0;
    uint64_t bytes = 0, resumed = 0;
    int rc = 0, pfd = -1;
    const char *base = dest;
    ant_buf_init(&p, 8192);
    if (rootfd != AT_FDCWD) {
        /* the site names the files: still, nothing may land outside DIR */
        if (ant_stage_path_check(ant_bytes_str(dest)) < 0) {
            fprintf(stderr, "antenna: refusing the path '%s' from the site\n", dest);
            rc = -EINVAL;
            goto out;
        }
        pfd = ant_client_open_parent(rootfd, dest);
        if (pfd < 0) {
            rc = pfd;
            fprintf(stderr, "antenna: cannot create the folder of %s: %s\n", dest, strerror(-rc));
            goto out;
        }
        base = strrchr(dest, '/') ? strrchr(dest, '/') + 1 : dest;
    }
    rc = ds_path(ds, "/files", remote, &p);
    rc = rc < 0 ? rc : ant_buf_append_str(&p, query);
    rc = rc < 0 ? rc : ant_buf_terminate(&p);
    if (rc < 0) {
        goto out;
    }
    rc = ant_client_fetch(c, (const char *)p.p, pfd >= 0 ? pfd : AT_FDCWD, base, &check, &status,
                          &bytes, &resumed, &d);
    if (rc == 0 && status == 404 && miss != NULL) {
        *miss = d;
        rc = 1;
        goto out;
    }
    if (rc < 0 || (status != 200 && status != 206)) {
        fprintf(stderr, "antenna: download of %s failed: %s\n", remote,
                ant_diag_msg(&d, rc < 0 ? strerror(-rc) : "unexpected status"));
        rc = rc < 0 ? rc : -EIO;
        goto out;
    }
    sum = check.verified ? ", checksum verified" : ", not verified (the site sent no checksum)";
    if (resumed > 0) {
        fprintf(stderr, "antenna: %s: %llu bytes (resumed: %llu kept, %llu received)%s\n", label,
                (unsigned long long)(resumed + bytes), (unsigned long long)resumed,
                (unsigned long long)bytes, sum);
    } else {
        fprintf(stderr, "antenna: %s: %llu bytes%s\n", label, (unsigned long long)bytes, sum);
    }
out:
    ant_close(pfd);
    ant_buf_fini(&p);
    return rc;
}

/* The dataset's file list (GET .../files): 0 with *list, or -errno / -EPERM (an HTTP error)
 * with d. */
static int get_list(struct ant_client *c, const char *ds, json_t **list, struct ant_diag *d)
{
    struct ant_buf lp;
    long status = 0;
    ant_buf_init(&lp, 4096);
    *list = NULL;
    int rc = ds_path(ds, "/files", NULL, &lp);
    rc = rc < 0 ? rc : ant_client_json(c, "GET", (const char *)lp.p, NULL, &status, list, d);
    if (rc == 0 && (status >= 400 || !json_is_array(json_object_get(*list, "files")))) {
        if (status < 400) {
            ant_diag_set(d, "the site's answer is not a file list");
        }
        json_decref(*list);
        *list = NULL;
        rc = -EPERM;
    }
    ant_buf_fini(&lp);
    return rc;
}

static const char *file_path(const json_t *files, size_t k)
{
    return json_string_value(json_object_get(json_array_get(files, k), "path"));
}

/* How many listed files lie under `prefix` ("" for all, else ending in '/'); -1 when an entry
 * has no path. */
static ssize_t count_under(const json_t *files, const char *prefix)
{
    size_t plen = strlen(prefix), n = 0;
    for (size_t k = 0; k < json_array_size(files); k++) {
        const char *path = file_path(files, k);
        if (path == NULL) {
            fprintf(stderr, "antenna: the site's file list has an entry without a path\n");
            return -1;
        }
        n += strncmp(path, prefix, plen) == 0 ? 1 : 0;
    }
    return (ssize_t)n;
}

/* The files under `prefix` become one folder tree: a list holding both "a" and "a/b" (a site
 * that stored both before it refused them) is refused before anything is written, not half-way.
 * -1 with the message printed. */
static int tree_check(const json_t *files, const char *prefix, const char *ds)
{
    size_t plen = strlen(prefix), n = 0, a = 0, b = 0;
    const char **paths = calloc(json_array_size(files) + 1, sizeof(*paths));
    if (paths == NULL) {
        fprintf(stderr, "antenna: out of memory\n");
        return -1;
    }
    for (size_t k = 0; k < json_array_size(files); k++) {
        const char *path = file_path(files, k);
        if (strncmp(path, prefix, plen) == 0) {
            paths[n++] = path;
        }
    }
    int rc = ant_paths_find_conflict(paths, n, &a, &b);
    if (rc == -EEXIST) {
        fprintf(stderr, "antenna: %s holds both %s and %s, which one folder cannot: get them "
                "one at a time\n", ds, paths[a], paths[b]);
    } else if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", strerror(-rc));
    }
    free(paths);
    return rc < 0 ? -1 : 0;
}

/* Every file of `files` under `prefix` ("": the whole dataset; else a folder, ending in '/')
 * into the folder `out` (created if missing) as its path below the prefix, each with the
 * checks and the resumption of get_one. Exit code 0 or 1. */
static int get_many(const struct copts *o, struct ant_client *c, const char *ds,
                    const json_t *files, const char *prefix, const char *query, const char *out)
{
    size_t plen = strlen(prefix), done = 0;
    ssize_t n = count_under(files, prefix);
    int ret = 1, dfd = -1;
    if (n < 0) {
        goto out;
    }
    if (n == 0 && plen > 0) {
        fprintf(stderr, "antenna: no file of %s is under '%s'\n", ds, prefix);
        goto out;
    }
    if (tree_check(files, prefix, ds) < 0) {
        goto out;
    }
    if (mkdir(out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "antenna: cannot create %s: %s\n", out, strerror(errno));
        goto out;
    }
    dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "antenna: cannot open the folder %s: %s\n", out, strerror(errno));
        goto out;
    }
    for (size_t k = 0; k < json_array_size(files); k++) {
        const char *path = file_path(files, k);
        char label[PATH_MAX + 32];
        if (strncmp(path, prefix, plen) != 0) {
            continue;
        }
        /* the whole remote path is checked too, not only the part below the prefix that names
         * the local file */
        if (ant_stage_path_check(ant_bytes_str(path)) < 0) {
            fprintf(stderr, "antenna: refusing the path '%s' from the site\n", path);
            goto out;
        }
        snprintf(label, sizeof(label), "[%zu/%zd] %s/%s", ++done, n, out, path + plen);
        if (get_one(c, ds, path, query, get_check(o, json_array_get(files, k)), dfd,
                    path + plen, label, NULL) < 0) {
            goto out;
        }
    }
    if (plen > 0) {
        fprintf(stderr, "antenna: %zd file(s) of %s under %s in %s\n", n, ds, prefix, out);
    } else {
        fprintf(stderr, "antenna: %zd file(s) of %s in %s\n", n, ds, out);
    }
    ret = 0;
out:
    ant_close(dfd);
    return ret;
}

/* After a 404 for `remote`: is it a folder of the dataset (files under "remote/")? Fills
 * prefix and *list (the caller's) when it is. */
static bool get_is_folder(struct ant_client *c, const char *ds, const char *remote,
                          char *prefix, size_t n, json_t **list)
{
    struct ant_diag d = {{0}};
    if ((size_t)snprintf(prefix, n, "%s/", remote) >= n || get_list(c, ds, list, &d) < 0) {
        return false;
    }
    return count_under(json_object_get(*list, "files"), prefix) > 0;
}

/* antenna get DATASET | DATASET/ (every file, into -o DIR or here); DATASET/PATH or DATASET
 * PATH (one file: -o OUT, -o DIR or -o - for stdout); DATASET/FOLDER/ or a PATH that names no
 * file but a folder of the dataset (every file under it, into -o DIR or here, as its path
 * below the folder, as `aws s3 cp --recursive s3://BUCKET/PREFIX/ DIR`). */
static int cmd_get(int argc, char **argv, struct copts *o, int i)
{
    if (argc - i < 1 || argc - i > 2 || (o->plain && o->recipient_pk != NULL)) {
        usage(stderr);
        return 2;
    }
    char ds[512], remote[ANT_STAGE_PATH_MAX + 2] = "", prefix[ANT_STAGE_PATH_MAX + 2] = "";
    const char *slash = strchr(argv[i], '/');
    struct ant_buf q, lp;
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}}, miss = {{0}};
    json_t *list = NULL;
    struct stat sb;
    long status = 0;
    int ret = 1, rc;
    ant_buf_init(&q, 4096);
    ant_buf_init(&lp, 4096);
    snprintf(ds, sizeof(ds), "%.*s", slash && argc - i == 1 ? (int)(slash - argv[i]) : 511,
             argv[i]);
    const char *arg = argc - i == 2 ? argv[i + 1] : slash != NULL ? slash + 1 : "";
    if ((size_t)snprintf(remote, sizeof(remote), "%s", arg) >= sizeof(remote)) {
        fprintf(stderr, "antenna: the remote path is too long\n");
        goto out;
    }
    /* a trailing '/' names a folder: its files, not one file (an empty path: all of them) */
    size_t rl = strlen(remote);
    bool folder = rl > 0 && remote[rl - 1] == '/';
    while (rl > 0 && remote[rl - 1] == '/') {
        remote[--rl] = '\0';
    }
    if (folder && rl > 0) {
        snprintf(prefix, sizeof(prefix), "%s/", remote);
    }
    if (get_query(o, &q) < 0) {
        goto out;
    }
    const char *out = o->out;
    bool to_stdout = out != NULL && strcmp(out, "-") == 0;
    o->conf.progress = !to_stdout;
    rc = ant_client_open(&o->conf, &c, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    if (!folder && rl > 0) {
        const char *base = strrchr(remote, '/') ? strrchr(remote, '/') + 1 : remote;
        char dest[PATH_MAX];
        if (to_stdout) {
            uint64_t bytes = 0;
            /* checked as it streams: a mismatch is said, and the exit code is 1, once every
             * byte went out (a pipe cannot take bytes back) */
            struct ant_client_check check = get_check(o, NULL);
            rc = ds_path(ds, "/files", remote, &lp);
            rc = rc < 0 ? rc : ant_buf_append_str(&lp, (const char *)q.p);
            rc = rc < 0 ? rc : ant_buf_terminate(&lp);
            rc = rc < 0 ? rc
                        : ant_client_download(c, (const char *)lp.p, AT_FDCWD, "-",
                                              STDOUT_FILENO, &check, &status, &bytes, &d);
            if (rc == 0 && status == 404 &&
                get_is_folder(c, ds, remote, prefix, sizeof(prefix), &list)) {
                fprintf(stderr, "antenna: %s is a folder of %s: its files go into a folder "
                                "(-o DIR), not stdout\n", remote, ds);
                ret = 2;
                goto out;
            }
            if (rc < 0 || status != 200) {
                fprintf(stderr, "antenna: download of %s failed: %s\n", remote,
                        ant_diag_msg(&d, rc < 0 ? strerror(-rc) : "unexpected status"));
                goto out;
            }
            ret = 0;
            goto out;
        }
        if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
            fprintf(stderr, "antenna: no file name in '%s'\n", remote);
            goto out;
        }
        if (out == NULL) {
            snprintf(dest, sizeof(dest), "%s", base);
        } else if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            snprintf(dest, sizeof(dest), "%s/%s", out, base);
        } else {
            snprintf(dest, sizeof(dest), "%s", out);
        }
        rc = get_one(c, ds, remote, (const char *)q.p, get_check(o, NULL), AT_FDCWD, dest, dest,
                     &miss);
        if (rc != 1) {
            ret = rc < 0 ? 1 : 0;
            goto out;
        }
        /* no such file: a folder of that name gets its files; else the site's 404 is said */
        if (!get_is_folder(c, ds, remote, prefix, sizeof(prefix), &list)) {
            fprintf(stderr, "antenna: download of %s failed: %s\n", remote,
                    ant_diag_msg(&miss, "404"));
            goto out;
        }
        ret = get_many(o, c, ds, json_object_get(list, "files"), prefix, (const char *)q.p,
                       out != NULL ? out : ".");
        goto out;
    }
    if (to_stdout) {
        fprintf(stderr, "antenna: a %s goes into a folder (-o DIR), not stdout\n",
                prefix[0] != '\0' ? "folder of a dataset" : "whole dataset");
        ret = 2;
        goto out;
    }
    rc = get_list(c, ds, &list, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna: cannot list the files of %s: %s\n", ds,
                ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    ret = get_many(o, c, ds, json_object_get(list, "files"), prefix, (const char *)q.p,
                   out != NULL ? out : ".");
out:
    json_decref(list);
    ant_client_close(c);
    ant_buf_fini(&lp);
    ant_buf_fini(&q);
    return ret;
}

static int cmd_grant(int argc, char **argv, struct copts *o, int i)
{
    const char *sub = sub_alias(i < argc ? argv[i] : NULL);
    const char *arg = i + 1 < argc ? argv[i + 1] : NULL;
    struct ant_buf p;
    int ret = 2;
    ant_buf_init(&p, 4096);
    if (sub == NULL || arg == NULL) {
        usage(stderr);
        return 2;
    }
    if (strcmp(sub, "list") == 0) {
        ret = ds_path(arg, "/grants", NULL, &p) < 0
                  ? 1
                  : list(o, (const char *)p.p, "grants", g_grant_cols,
                         ANT_ARRAY_LEN(g_grant_cols));
    } else if (strcmp(sub, "revoke") == 0) {
        ret = ant_buf_append_str(&p, "/v1/grants") == 0 && ant_client_path(&p, arg, false) == 0 &&
                      ant_buf_terminate(&p) == 0
                  ? call(o, "DELETE", (const char *)p.p, NULL)
                  : 1;
    } else if (strcmp(sub, "create") == 0) {
        const char *kind = o->principal ? "principal" : o->tenant ? "tenant" : "site";
        const char *who = o->principal ? o->principal : o->tenant ? o->tenant : o->site;
        if (who == NULL || o->actions == NULL ||
            (!!o->principal + !!o->tenant + !!o->site) != 1) {
            fprintf(stderr, "antenna: grant create needs one of --principal, --tenant, --site "
                            "and --actions\n");
            goto out;
        }
        json_t *acts = json_array();
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", o->actions);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            json_array_append_new(acts, json_string(t));
        }
        json_t *b = json_pack("{s:s, s:s, s:o}", "grantee_kind", kind, "grantee", who, "actions",
                              acts);
        if (b != NULL && o->purpose != NULL) {
            json_object_set_new(b, "purpose", json_string(o->purpose));
        }
        if (b != NULL && o->expires != NULL) {
            uint64_t secs;
            if (ant_parse_duration(ant_bytes_of(o->expires, strlen(o->expires)),
                                   100ull * 365 * 86400, &secs) < 0) {
                fprintf(stderr, "antenna: --expires wants a duration such as 90d or 12h\n");
                json_decref(b);
                goto out;
            }
            json_object_set_new(b, "expires_in", json_integer((json_int_t)secs));
        }
        ret = b != NULL && ds_path(arg, "/grants", NULL, &p) == 0
                  ? call(o, "POST", (const char *)p.p, b)
                  : 1;
        json_decref(b);
    } else {
        usage(stderr);
    }
out:
    ant_buf_fini(&p);
    return ret;
}

/* antenna pubkey set PRINCIPAL FILE | show PRINCIPAL */
static int cmd_pubkey(int argc, char **argv, struct copts *o, int i)
{
    const char *sub = i < argc ? argv[i] : NULL;
    const char *who = i + 1 < argc ? argv[i + 1] : NULL;
    bool set = sub != NULL && strcmp(sub, "set") == 0;
    if (who == NULL || (!set && strcmp(sub, "show") != 0) || argc - i != (set ? 3 : 2)) {
        usage(stderr);
        return 2;
    }
    struct ant_buf p;
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    uint8_t pk[ANT_KEY_LEN];
    char b64[64];
    json_t *b = NULL;
    int ret = 1;
    ant_buf_init(&p, 1024);
    if (set) {
        if (ant_pubkey_load(AT_FDCWD, argv[i + 2], pk, &d) < 0) {
            fprintf(stderr, "antenna: %s: %s\n", argv[i + 2], ant_diag_msg(&d, "not a public key"));
            goto out;
        }
        ant_key_b64(pk, b64);
        b = json_pack("{s:s}", "public_key", b64);
    }
    if (ant_buf_append_str(&p, "/v1/principals") == 0 && ant_client_path(&p, who, false) == 0 &&
        ant_buf_append_str(&p, "/c4gh-key") == 0 && ant_buf_terminate(&p) == 0) {
        ret = call(o, set ? "PUT" : "GET", (const char *)p.p, b);
    } else {
        fprintf(stderr, "antenna: cannot build the request\n");
    }
out:
    json_decref(b);
    ant_client_close(c);
    ant_buf_fini(&p);
    return ret;
}

/* antenna explain: POST /v1/policy/explain, the decision and its reason for people (the rule
 * trace below it), the answer as it is with -o json. */
static int cmd_explain(int argc, char **argv, struct copts *o, int i)
{
    bool json = false;
    json_t *resp = NULL, *rule;
    size_t k;
    if (argc - i != 1 || o->action == NULL || want_json(o, &json) < 0) {
        usage(stderr);
        return 2;
    }
    json_t *b = json_pack("{s:s, s:s}", "dataset_id", argv[i], "action", o->action);
    if (b != NULL && o->purpose != NULL) {
        json_object_set_new(b, "purpose", json_string(o->purpose));
    }
    if (b != NULL && o->principal != NULL) {
        json_object_set_new(b, "principal", json_string(o->principal));
    }
    int ret = b != NULL ? request(o, "POST", "/v1/policy/explain", b, &resp) : 1;
    json_decref(b);
    if (ret != 0 || json) {
        ant_client_print_json(resp);
        json_decref(resp);
        return ret;
    }
    printf("%s: %s may %s%s %s\n", jstr(resp, "decision"), jstr(resp, "principal"),
           strcmp(jstr(resp, "decision"), "allow") == 0 ? "" : "not ", jstr(resp, "action"),
           jstr(resp, "dataset_id")[0] ? jstr(resp, "dataset_id") : argv[i]);
    printf("reason:  %s\n", jstr(resp, "reason"));
    if (jstr(resp, "message")[0] != '\0') {
        printf("message: %s\n", jstr(resp, "message"));
    }
    if (jstr(resp, "grant_id")[0] != '\0') {
        printf("grant:   %s\n", jstr(resp, "grant_id"));
    }
    json_array_foreach(json_object_get(resp, "rules"), k, rule)
    {
        printf("%s  %-6s %s%s%s\n", k == 0 ? "rules:" : "      ", jstr(rule, "result"),
               jstr(rule, "rule"), jstr(rule, "detail")[0] ? ": " : "", jstr(rule, "detail"));
    }
    json_decref(resp);
    return 0;
}

/* The key for login: the first line of --key-file or of stdin (not echoed on a terminal).
 * Read a byte at a time so nothing past the line is consumed or left in a stdio buffer. */
static int login_read_key(const char *file, char *out, size_t n)
{
    int fd = file ? open(file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    struct termios old, quiet;
    bool tty = file == NULL && tcgetattr(fd, &old) == 0;
    size_t len = 0;
    int rc = fd < 0 ? -errno : 0;
    if (tty) {
        fprintf(stderr, "API key: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    while (rc == 0) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = -errno;
        } else if (r == 0 || ch == '\n') {
            break;
        } else if (ch == ' ' || ch == '\t' || ch == '\r') {
            continue; /* surrounding blanks of a pasted key */
        } else if (len + 1 >= n) {
            rc = -E2BIG;
        } else {
            out[len++] = ch;
        }
    }
    if (tty) {
        tcsetattr(fd, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (file != NULL) {
        ant_close(fd);
    }
    out[len < n ? len : 0] = '\0';
    if (rc < 0) {
        fprintf(stderr, "antenna: cannot read the API key from %s: %s\n",
                file ? file : "stdin", strerror(-rc));
    } else if (len == 0) {
        fprintf(stderr, "antenna: no API key given (pass --key-file FILE or write it to stdin)\n");
        rc = -EINVAL;
    }
    return rc;
}

/* antenna login: one authenticated request proves URL, CA and key work together, then all
 * three are saved (client.h says where and how). */
static int cmd_login(int argc, char **argv, struct copts *o, int i)
{
    (void)argv;
    const char *url = o->conf.url ? o->conf.url : getenv("ANTENNA_URL");
    const char *ca = o->conf.cacert ? o->conf.cacert : getenv("ANTENNA_CACERT");
    char key[ANT_LOGIN_KEY_MAX];
    char dir[1024] = "";
    /* exactly what will be saved is checked: not the CA of an older login */
    struct ant_client_conf conf = {.url = url, .cacert = ca, .bearer = key, .ignore_login = true};
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    json_t *resp = NULL;
    long status = 0;
    int ret = 1;
    if (i != argc || url == NULL) {
        usage(stderr);
        return 2;
    }
    if (login_read_key(o->conf.key_file, key, sizeof(key)) < 0) {
        goto out;
    }
    int rc = ant_client_open(&conf, &c, &d);
    if (rc == 0) {
        rc = ant_client_json(c, "GET", "/v1/datasets", NULL, &status, &resp, &d);
    }
    if (rc < 0 || status != 200) {
        fprintf(stderr, "antenna: login to %s failed: %s\n", url,
                ant_diag_msg(&d, rc < 0 ? strerror(-rc) : "unexpected status"));
        goto out;
    }
    if (ant_client_login_save(url, ca, key, &d) < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, "cannot save the login"));
        goto out;
    }
    if (ant_client_login_dir(dir, sizeof(dir)) < 0) {
        dir[0] = '\0';
    }
    fprintf(stderr, "antenna: logged in to %s; saved in %s\n", url, dir);
    ret = 0;
out:
    sodium_memzero(key, sizeof(key));
    json_decref(resp);
    ant_client_close(c);
    return ret;
}

static int cmd_logout(int argc, struct copts *o, int i)
{
    (void)o;
    struct ant_diag d = {{0}};
    if (i != argc) {
        usage(stderr);
        return 2;
    }
    int rc = ant_client_login_remove(&d);
    if (rc < 0) {
        fprintf(stderr, "antenna: %s\n", ant_diag_msg(&d, strerror(-rc)));
        return 1;
    }
    fprintf(stderr, "antenna: %s\n", rc > 0 ? "logged out" : "no saved login");
    return 0;
}

int ant_cli_client(int argc, char **argv)
{
    struct copts o = {0};
    const char *cmd = argv[0];
    int i = parse_opts(argc, argv, &o);
    if (i < 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "dataset") == 0) {
        return cmd_dataset(argc, argv, &o, i);
    }
    if (strcmp(cmd, "put") == 0) {
        return cmd_put(argc, argv, &o, i);
    }
    if (strcmp(cmd, "get") == 0) {
        return cmd_get(argc, argv, &o, i);
    }
    if (strcmp(cmd, "grant") == 0) {
        return cmd_grant(argc, argv, &o, i);
    }
    if (strcmp(cmd, "pubkey") == 0) {
        return cmd_pubkey(argc, argv, &o, i);
    }
    if (strcmp(cmd, "explain") == 0) {
        return cmd_explain(argc, argv, &o, i);
    }
    if (strcmp(cmd, "login") == 0) {
        return cmd_login(argc, argv, &o, i);
    }
    if (strcmp(cmd, "logout") == 0) {
        return cmd_logout(argc, &o, i);
    }
    usage(stderr);
    return 2;
}
