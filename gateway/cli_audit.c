/* antenna audit: verify the live chain or an export, export, query.
 *
 *   antenna audit verify --dir DIR [--strict] [--witness FILE]
 *   antenna audit verify --export FILE --site-key site.pub [--witness FILE]
 *   antenna audit export --dir DIR [-o FILE]
 *   antenna audit query --dir DIR [--since T] [--until T] [--principal P] [--tenant T]
 *                       [--dataset D] [--action A] [--decision allow|deny|info] [--limit N]
 *                       [--cursor C] [-o json]
 *
 * Remote (no --dir, and --url or $ANTENNA_URL given), for auditors who are users of the API:
 *   antenna audit query [filters as above] [--limit N] [--cursor C] [-o json]
 *   antenna audit export [--tenant T] [-o FILE]
 *   antenna audit verify [--site-key site.pub]
 * A tenant's auditor exports (and verify downloads) its tenant's events in full and the
 * others redacted; a site admin the whole chain, or with --tenant what T's auditors get.
 * with --url, --cacert and --key-file as the other client commands (client.h).
 *
 * Exit codes: 0 success (verify: intact), 1 failure (verify: names the first bad seq), 2 usage. */
#include "crypto/base/log.h"
#include "crypto/keys.h"
#include "gateway/cli.h"
#include "gateway/client.h"
#include "policy/audit.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct aopts {
    struct ant_client_conf conf;
    const char *dir, *export_file, *site_key, *out, *witness;
    const char *since, *until, *principal, *tenant, *dataset, *action, *decision, *limit, *cursor;
    bool strict, json;
};

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  antenna audit verify --dir DIR [--strict] [--witness FILE]\n"
               "  antenna audit verify --export FILE --site-key site.pub [--witness FILE]\n"
               "  antenna audit export --dir DIR [-o FILE]\n"
               "  antenna audit query --dir DIR [--since T] [--until T] [--principal P]\n"
               "                      [--tenant T] [--dataset D] [--action A]\n"
               "                      [--decision allow|deny|info] [--limit N] [--cursor C]\n"
               "                      [-o json]\n"
               "remote, over the API (no --dir; --url or $ANTENNA_URL):\n"
               "  antenna audit query [the filters above] [--limit N] [--cursor C] [-o json]\n"
               "  antenna audit export [--tenant T] [-o FILE]\n"
               "  antenna audit verify [--site-key site.pub]\n"
               "  connection: --url https://HOST:PORT, --cacert FILE (or $ANTENNA_CACERT),\n"
               "  --key-file FILE (or $ANTENNA_API_KEY / $ANTENNA_API_KEY_FILE).\n\n"
               "--dir defaults to ./var. Times are RFC 3339 UTC (2026-11-27T03:00:00Z), a date\n"
               "(2026-11-27) or Unix seconds. verify --strict also fails on events not yet\n"
               "covered by a signed checkpoint (a running site signs its tail within\n"
               "checkpoint_seconds). An export ends at the last checkpoint; export signs the\n"
               "tail first when it can load the site key ($ANTENNA_KEY_PASSPHRASE if it is\n"
               "encrypted). Over the API a tenant's auditor gets its tenant's events in full and\n"
               "the others' as hashes only (which verify re-hashes and checks all the same); a\n"
               "site admin gets the whole chain, or with --tenant T what T's auditors get.\n"
               "--witness FILE: checkpoints of this site a peer recorded (`antenna admin peer\n"
               "witnessed SITE -o json` on the peer): each must be in the chain with the same\n"
               "hash at its seq, else the log was rewritten or its tail removed since.\n");
}

static int parse_opts(int argc, char **argv, struct aopts *o)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"export", required_argument, NULL, 'e'},
        {"site-key", required_argument, NULL, 'k'},
        {"strict", no_argument, NULL, 'S'},
        {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {"principal", required_argument, NULL, 'p'},
        {"tenant", required_argument, NULL, 't'},
        {"dataset", required_argument, NULL, 'D'},
        {"action", required_argument, NULL, 'a'},
        {"decision", required_argument, NULL, 'x'},
        {"limit", required_argument, NULL, 'l'},
        {"cursor", required_argument, NULL, 'c'},
        {"witness", required_argument, NULL, 'W'},
        {"url", required_argument, NULL, 'U'},
        {"cacert", required_argument, NULL, 'C'},
        {"key-file", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char **slot[128] = {0};
    slot['U'] = &o->conf.url;
    slot['C'] = &o->conf.cacert;
    slot['K'] = &o->conf.key_file;
    slot['d'] = &o->dir;
    slot['e'] = &o->export_file;
    slot['k'] = &o->site_key;
    slot['s'] = &o->since;
    slot['u'] = &o->until;
    slot['p'] = &o->principal;
    slot['t'] = &o->tenant;
    slot['D'] = &o->dataset;
    slot['a'] = &o->action;
    slot['x'] = &o->decision;
    slot['l'] = &o->limit;
    slot['c'] = &o->cursor;
    slot['o'] = &o->out;
    slot['W'] = &o->witness;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'S') {
            o->strict = true;
        } else if (c > 0 && c < 128 && slot[c] != NULL) {
            if (*slot[c] != NULL) {
                fprintf(stderr, "antenna audit: an option is given twice\n");
                return -1;
            }
            *slot[c] = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return -2;
        } else {
            fprintf(stderr, "antenna audit: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "antenna audit: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

static int open_site(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "antenna audit: cannot open %s: %s\n", dir, strerror(errno));
    }
    return fd;
}

/* The site's Ed25519 public key: the ANTENNA ED25519 PUBLIC KEY block of a site.pub file (a
 * regular file, as every key file: a FIFO is refused rather than waited on). */
static int load_sign_pub(int dirfd, const char *path, uint8_t pub[ANT_KEY_LEN])
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    struct ant_diag d = {{0}};
    int fd = ant_open_regular(dirfd, path, O_RDONLY, 0);
    int rc = fd < 0 ? fd : ant_read_all(fd, &raw);
    if (fd == -EINVAL) {
        ant_diag_set(&d, "not a regular file");
    }
    rc = rc < 0
             ? rc
             : ant_keyfile_public_decode(ant_buf_view(&raw), ANT_KEYFILE_ED25519_PUBLIC, pub, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: cannot read the site's Ed25519 public key from %s: %s\n",
                path, ant_diag_msg(&d, strerror(-rc)));
    }
    ant_close(fd);
    ant_buf_fini(&raw);
    return rc;
}

static int open_audit(int dirfd, const struct ant_signkey *sign, struct ant_audit **out)
{
    int rc = ant_audit_open(dirfd, "audit.db", 0, sign, NULL, out);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: cannot open audit.db: %s\n", strerror(-rc));
    }
    return rc;
}

/* What a tenant-scoped export proved, and what it could not (docs/security.md). */
static void print_redacted(const char *what, const struct ant_audit_report *rep)
{
    long long full = (long long)(rep->events - rep->redacted);
    printf("%s: proven: the %lld events shown in full (re-hashed) are, unchanged, the events the "
           "site's signed checkpoints commit to at their seqs, and no event is missing or added "
           "from seq 1 to %lld\n",
           what, full - (long long)rep->unbound, (long long)rep->last_seq);
    if (rep->unbound > 0) {
        printf("%s: NOT BOUND: %lld events shown in full (the first at seq %lld) are followed, "
               "before the next checkpoint, by a redacted event written before chain v2, whose "
               "link cannot be checked: they are not proven unchanged\n",
               what, (long long)rep->unbound, (long long)rep->first_unbound);
    }
    printf("%s: not proven: that none of the %lld redacted events is one you may read (the site "
           "chose which to show in full); look for the request ids your clients saw\n",
           what, (long long)rep->redacted);
}

static void print_report(const char *what, int rc, const struct ant_audit_report *rep)
{
    if (rc == 0 && rep->redacted > 0) {
        printf("%s: intact: %lld events (%lld in full, %lld redacted: seq and hashes only), "
               "%lld checkpoints, last seq %lld, signed up to %lld\n",
               what, (long long)rep->events, (long long)(rep->events - rep->redacted),
               (long long)rep->redacted, (long long)rep->checkpoints, (long long)rep->last_seq,
               (long long)rep->signed_seq);
        print_redacted(what, rep);
    } else if (rc == 0) {
        printf("%s: intact: %lld events, %lld checkpoints, last seq %lld, signed up to %lld\n",
               what, (long long)rep->events, (long long)rep->checkpoints, (long long)rep->last_seq,
               (long long)rep->signed_seq);
        if (rep->last_seq > rep->signed_seq) {
            printf("%s: events %lld..%lld are not yet covered by a checkpoint\n", what,
                   (long long)(rep->signed_seq + 1), (long long)rep->last_seq);
        }
    } else if (rc == -EBADMSG) {
        printf("%s: BROKEN at seq %lld", what, (long long)rep->first_bad_seq);
        if (rep->line > 0) {
            printf(" (line %lld)", (long long)rep->line);
        }
        printf(": %s\n%s: %lld events and %lld checkpoints checked before it\n", rep->what, what,
               (long long)rep->events, (long long)rep->checkpoints);
    } else {
        fprintf(stderr, "antenna audit: %s: %s\n", what, strerror(-rc));
    }
}

/* A witness file (untrusted, parsed by ant_audit_witness_parse): 0 with *w filled (free
 * w->c), or -1 with the reason printed. */
#define WITNESS_FILE_MAX ((size_t)ANT_AUDIT_WITNESS_MAX * 512)
static int load_witness(const char *path, struct ant_audit_witnesses *w)
{
    struct ant_buf raw = ANT_BUF_INIT(WITNESS_FILE_MAX);
    struct ant_diag d = {{0}};
    struct ant_audit_ckpt *c = NULL;
    size_t n = 0;
    int fd = ant_open_regular(AT_FDCWD, path, O_RDONLY, 0);
    int rc = fd < 0 ? fd : ant_read_all(fd, &raw);
    ant_close(fd);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: cannot read %s: %s\n", path,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
        ant_buf_fini(&raw);
        return -1;
    }
    rc = ant_audit_witness_parse(ant_buf_view(&raw), &c, &n, &d);
    ant_buf_fini(&raw);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: %s: %s\n", path, ant_diag_msg(&d, strerror(-rc)));
        return -1;
    }
    w->c = c;
    w->n = n;
    return 0;
}

static void print_witnessed(const struct ant_audit_witnesses *w, int rc)
{
    if (w != NULL && rc == 0) {
        printf("witnesses: %zu checkpoint%s a peer recorded%s%lld %s in the chain unchanged\n",
               w->n, w->n == 1 ? "" : "s", w->n > 0 ? ", up to seq " : "",
               w->n > 0 ? (long long)w->c[w->n - 1].seq : 0LL, w->n == 1 ? "is" : "are");
    }
}

/* Verifies the export held by fd (named `what` in the report) against pub, and against the
 * witnesses w (NULL: none); exit code 0 or 1. */
static int verify_fd(const char *what, int fd, const uint8_t pub[ANT_KEY_LEN],
                     const struct ant_audit_witnesses *w)
{
    struct ant_audit_report rep = {0};
    void *map = NULL;
    size_t len = 0;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fprintf(stderr, "antenna audit: cannot read %s: %s\n", what, strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "antenna audit: cannot read %s: not a regular file\n", what);
        return 1;
    }
    len = (size_t)st.st_size;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            fprintf(stderr, "antenna audit: cannot map %s: %s\n", what, strerror(errno));
            return 1;
        }
    }
    int rc = ant_audit_verify_export_witnessed(ant_bytes_of(map, len), pub, w, &rep);
    print_report(what, rc, &rep);
    print_witnessed(w, rc);
    if (map != NULL) {
        munmap(map, len);
    }
    return rc == 0 ? 0 : 1;
}

static int verify_export(const struct aopts *o)
{
    uint8_t pub[ANT_KEY_LEN];
    struct ant_audit_witnesses w = {NULL, 0};
    if (load_sign_pub(AT_FDCWD, o->site_key, pub) < 0 ||
        (o->witness != NULL && load_witness(o->witness, &w) < 0)) {
        return 1;
    }
    /* O_NONBLOCK until fstat: a FIFO with no writer would block open() itself */
    int fd = ant_open_regular(AT_FDCWD, o->export_file, O_RDONLY, 0);
    if (fd < 0) {
        fprintf(stderr, "antenna audit: cannot read %s: %s\n", o->export_file,
                fd == -EINVAL ? "not a regular file" : strerror(-fd));
        free((void *)(uintptr_t)w.c);
        return 1;
    }
    int ret = verify_fd(o->export_file, fd, pub, o->witness != NULL ? &w : NULL);
    ant_close(fd);
    free((void *)(uintptr_t)w.c);
    return ret;
}

static int verify_live(const struct aopts *o)
{
    uint8_t pub[ANT_KEY_LEN];
    struct ant_audit_report rep = {0};
    struct ant_audit *a = NULL;
    struct ant_audit_witnesses w = {NULL, 0};
    int ret = 1;
    int dirfd = open_site(o->dir);
    if (dirfd < 0 || load_sign_pub(dirfd, "keys/site.pub", pub) < 0 ||
        (o->witness != NULL && load_witness(o->witness, &w) < 0) ||
        open_audit(dirfd, NULL, &a) < 0) {
        goto out;
    }
    int rc = ant_audit_verify_witnessed(a, pub, o->strict, o->witness != NULL ? &w : NULL, &rep);
    print_report("audit.db", rc, &rep);
    print_witnessed(o->witness != NULL ? &w : NULL, rc);
    ret = rc == 0 ? 0 : 1;
    /* The index is not part of the chain: it is checked apart, and a hole in it fails the
     * verification too (a filtered query would miss those events). */
    int64_t upto = 0, missing = 0;
    int irc = ant_audit_verify_index(a, &upto, &missing);
    if (irc == 0) {
        printf("audit.db: query index complete up to seq %lld\n", (long long)upto);
    } else if (irc == -EBADMSG) {
        printf("audit.db: QUERY INDEX INCOMPLETE: event %lld (and maybe later ones up to %lld) "
               "missing from events_by: filtered queries would not return it; the chain is "
               "unaffected\n",
               (long long)missing, (long long)upto);
        ret = 1;
    } else {
        fprintf(stderr, "antenna audit: checking the query index: %s\n", strerror(-irc));
        ret = 1;
    }
out:
    ant_audit_close(a);
    ant_close(dirfd);
    free((void *)(uintptr_t)w.c);
    return ret;
}

static int do_export(const struct aopts *o)
{
    struct ant_site_keys keys = {0};
    struct ant_diag d = {{0}};
    struct ant_audit *a = NULL;
    int ret = 1, out = STDOUT_FILENO, keysfd = -1;
    int dirfd = open_site(o->dir);
    if (dirfd < 0) {
        goto out;
    }
    keysfd = openat(dirfd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = keysfd < 0 ? -errno
                        : ant_site_keys_load(keysfd, getenv("ANTENNA_KEY_PASSPHRASE"), &keys, &d);
    if (rc < 0) {
        /* An auditor may export without the secret key: the export then ends at the last
         * checkpoint, and the daemon signs the rest within checkpoint_seconds. */
        fprintf(stderr,
                "antenna audit: cannot load the site key (%s): exporting up to the last "
                "checkpoint\n",
                ant_diag_msg(&d, strerror(-rc)));
    }
    if (open_audit(dirfd, keys.sign, &a) < 0) {
        goto out;
    }
    if (o->out != NULL && strcmp(o->out, "-") != 0) {
        out = open(o->out, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
        if (out < 0) {
            fprintf(stderr, "antenna audit: cannot create %s: %s\n", o->out, strerror(errno));
            goto out;
        }
    }
    int64_t lines = ant_audit_export(a, out);
    if (lines >= 0 && out != STDOUT_FILENO && fsync(out) < 0) {
        lines = -errno;
    }
    if (lines < 0) {
        fprintf(stderr, "antenna audit: export failed: %s\n", strerror((int)-lines));
        goto out;
    }
    if (out != STDOUT_FILENO) {
        fprintf(stderr, "antenna audit: wrote %lld lines to %s\n", (long long)lines, o->out);
    }
    ret = 0;
out:
    if (out != STDOUT_FILENO) {
        ant_close(out);
    }
    ant_audit_close(a);
    ant_site_keys_fini(&keys);
    ant_close(keysfd);
    ant_close(dirfd);
    return ret;
}

static bool digits(const char *s, size_t off, size_t n, uint64_t max, uint64_t *v)
{
    return ant_parse_u64(ant_bytes_of(s + off, n), 0, max, v) == 0;
}

/* RFC 3339 UTC ("2026-11-27T03:00:00Z", fraction not accepted), a date, or Unix seconds:
 * milliseconds since the epoch, or -EINVAL. */
static int parse_time(const char *s, int64_t *ms)
{
    size_t n = strlen(s);
    uint64_t v[6] = {0};
    if (n > 0 && n <= 12 && digits(s, 0, n, 1ull << 40, &v[0])) {
        *ms = (int64_t)v[0] * 1000;
        return 0;
    }
    bool date = n >= 10 && s[4] == '-' && s[7] == '-' && digits(s, 0, 4, 9999, &v[0]) &&
                digits(s, 5, 2, 12, &v[1]) && digits(s, 8, 2, 31, &v[2]) && v[1] >= 1 && v[2] >= 1;
    if (!date ||
        (n != 10 && !(n == 20 && (s[10] == 'T' || s[10] == 't') && s[13] == ':' && s[16] == ':' &&
                      (s[19] == 'Z' || s[19] == 'z') && digits(s, 11, 2, 23, &v[3]) &&
                      digits(s, 14, 2, 59, &v[4]) && digits(s, 17, 2, 60, &v[5])))) {
        return -EINVAL;
    }
    /* a day the month has, and a leap second only at 23:59 */
    if (!ant_date_is_valid(v[0], v[1], v[2]) || (v[5] == 60 && (v[3] != 23 || v[4] != 59))) {
        return -EINVAL;
    }
    struct tm tm = {.tm_year = (int)v[0] - 1900,
                    .tm_mon = (int)v[1] - 1,
                    .tm_mday = (int)v[2],
                    .tm_hour = (int)v[3],
                    .tm_min = (int)v[4],
                    .tm_sec = (int)v[5]};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return -EINVAL;
    }
    *ms = (int64_t)t * 1000;
    return 0;
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : dflt;
}

static void print_table(json_t *events, int64_t next)
{
    size_t i;
    json_t *e;
    printf("%-8s %-20s %-16s %-12s %-18s %-28s %-6s %s\n", "SEQ", "TIME", "PRINCIPAL", "TENANT",
           "ACTION", "RESOURCE", "DEC", "REASON");
    json_array_foreach(events, i, e)
    {
        char when[32], res[64];
        int64_t t = json_integer_value(json_object_get(e, "time_ms"));
        ant_fmt_time(t / 1000, when);
        snprintf(res, sizeof(res), "%s:%s", str_or(e, "resource_kind", "-"),
                 str_or(e, "resource_id", "-"));
        printf("%-8lld %-20s %-16s %-12s %-18s %-28s %-6s %s\n",
               (long long)json_integer_value(json_object_get(e, "seq")), when,
               str_or(e, "actor", "-"), str_or(e, "tenant", "-"), str_or(e, "action", "-"), res,
               str_or(e, "decision", "-"), str_or(e, "reason", "-"));
    }
    if (next != 0) {
        printf("more: --cursor %lld\n", (long long)next);
    }
}

/* The query of the filter options, checked the same way for the local and the remote mode;
 * 0 or 2 (usage, said on stderr). */
static int build_query(const struct aopts *o, struct ant_audit_query *out)
{
    struct ant_audit_query q = {
        .actor = o->principal,
        .tenant = o->tenant,
        .dataset_id = o->dataset,
        .action = o->action,
        .decision = o->decision,
    };
    uint64_t v = 0;
    if ((o->since != NULL && parse_time(o->since, &q.from_ms) < 0) ||
        (o->until != NULL && parse_time(o->until, &q.to_ms) < 0)) {
        fprintf(stderr, "antenna audit: bad time (use 2026-11-27T03:00:00Z, 2026-11-27 or Unix "
                        "seconds)\n");
        usage(stderr);
        return 2;
    }
    if (o->limit != NULL) {
        if (ant_parse_u64(ant_bytes_str(o->limit), 1, 1000, &v) < 0) {
            fprintf(stderr, "antenna audit: --limit takes 1..1000\n");
            return 2;
        }
        q.limit = (unsigned)v;
    }
    if (o->cursor != NULL) {
        if (ant_parse_u64(ant_bytes_str(o->cursor), 0, INT64_MAX, &v) < 0) {
            fprintf(stderr, "antenna audit: bad --cursor\n");
            return 2;
        }
        q.after_seq = (int64_t)v;
    }
    if (o->decision != NULL && strcmp(o->decision, "allow") != 0 &&
        strcmp(o->decision, "deny") != 0 && strcmp(o->decision, "info") != 0) {
        fprintf(stderr, "antenna audit: --decision takes allow, deny or info\n");
        return 2;
    }
    if (q.to_ms != 0 && q.to_ms < q.from_ms) {
        fprintf(stderr, "antenna audit: --until is before --since\n");
        return 2;
    }
    *out = q;
    return 0;
}

static int do_query(const struct aopts *o)
{
    struct ant_audit_query q;
    if (build_query(o, &q) != 0) {
        return 2;
    }
    struct ant_audit *a = NULL;
    json_t *res = NULL;
    int64_t next = 0;
    int ret = 1;
    int dirfd = open_site(o->dir);
    if (dirfd < 0 || open_audit(dirfd, NULL, &a) < 0) {
        goto out;
    }
    int rc = ant_audit_query_run(a, &q, &res, &next);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: query failed: %s\n", strerror(-rc));
        goto out;
    }
    if (o->json) {
        json_t *doc = json_pack("{s:O, s:o}", "events", res, "next_cursor",
                                next != 0 ? json_integer(next) : json_null());
        char *s = doc != NULL ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        if (s == NULL) {
            json_decref(doc);
            goto out;
        }
        printf("%s\n", s);
        free(s);
        json_decref(doc);
    } else {
        print_table(res, next);
    }
    ret = 0;
out:
    json_decref(res);
    ant_audit_close(a);
    ant_close(dirfd);
    return ret;
}

/* --- remote mode: the same commands over the API, for auditors who hold no site folder --- */

static int remote_open(const struct aopts *o, struct ant_client **c)
{
    struct ant_diag d = {{0}};
    int rc = ant_client_open(&o->conf, c, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: %s\n", ant_diag_msg(&d, strerror(-rc)));
    }
    return rc;
}

/* A GET answered with JSON. A refusal (the server's message) or a transport failure is said on
 * stderr and gives -EPERM / the transport's code; *resp is the caller's to json_decref(). */
static int remote_get(struct ant_client *c, const char *path, json_t **resp)
{
    struct ant_diag d = {{0}};
    long status = 0;
    json_t *r = NULL;
    int rc = ant_client_json(c, "GET", path, NULL, &status, &r, &d);
    if (rc == 0 && status >= 400) {
        rc = -EPERM;
    } else if (rc == 0 && !json_is_object(r)) {
        ant_diag_set(&d, "the server's answer to %s is not a JSON object", path);
        rc = -EBADMSG;
    }
    if (rc < 0) {
        fprintf(stderr, "antenna audit: %s\n", ant_diag_msg(&d, strerror(-rc)));
        json_decref(r);
        return rc;
    }
    *resp = r;
    return 0;
}

/* Appends "?name=value" or "&name=value", the value percent-encoded (RFC 3986 unreserved kept). */
static int add_param(struct ant_buf *b, const char *name, const char *val)
{
    if (val == NULL) {
        return 0;
    }
    int rc = ant_buf_printf(b, "%c%s=", memchr(b->p, '?', b->len) ? '&' : '?', name);
    for (const unsigned char *p = (const unsigned char *)val; rc == 0 && *p != '\0'; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL;
        rc = keep ? ant_buf_append(b, p, 1) : ant_buf_printf(b, "%%%02X", *p);
    }
    return rc;
}

static int remote_query(const struct aopts *o)
{
    struct ant_audit_query q;
    struct ant_buf path = ANT_BUF_INIT(8192);
    struct ant_client *c = NULL;
    json_t *resp = NULL;
    char since[24] = "", until[24] = "";
    int ret = 1;
    if (build_query(o, &q) != 0) {
        return 2;
    }
    /* the times go as Unix seconds, which the server takes whatever form the user typed */
    snprintf(since, sizeof(since), "%lld", (long long)(q.from_ms / 1000));
    snprintf(until, sizeof(until), "%lld", (long long)(q.to_ms / 1000));
    int rc = ant_buf_append_str(&path, "/v1/audit/events");
    rc = rc < 0 ? rc : add_param(&path, "since", q.from_ms != 0 ? since : NULL);
    rc = rc < 0 ? rc : add_param(&path, "until", q.to_ms != 0 ? until : NULL);
    rc = rc < 0 ? rc : add_param(&path, "principal", o->principal);
    rc = rc < 0 ? rc : add_param(&path, "tenant", o->tenant);
    rc = rc < 0 ? rc : add_param(&path, "dataset", o->dataset);
    rc = rc < 0 ? rc : add_param(&path, "action", o->action);
    rc = rc < 0 ? rc : add_param(&path, "decision", o->decision);
    rc = rc < 0 ? rc : add_param(&path, "limit", o->limit);
    rc = rc < 0 ? rc : add_param(&path, "cursor", o->cursor);
    rc = rc < 0 ? rc : ant_buf_append(&path, "", 1);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: the filters are too long\n");
        ret = 2;
        goto out;
    }
    if (remote_open(o, &c) < 0 || remote_get(c, (const char *)path.p, &resp) < 0) {
        goto out;
    }
    json_t *events = json_object_get(resp, "events");
    const char *next = json_string_value(json_object_get(resp, "next_cursor"));
    uint64_t nv = 0;
    if (!json_is_array(events) ||
        (next != NULL && ant_parse_u64(ant_bytes_str(next), 1, INT64_MAX, &nv) < 0)) {
        fprintf(stderr, "antenna audit: the server's answer is not a page of events\n");
        goto out;
    }
    if (o->json) {
        ant_client_print_json(resp);
    } else {
        print_table(events, (int64_t)nv);
    }
    ret = 0;
out:
    json_decref(resp);
    ant_client_close(c);
    ant_buf_fini(&path);
    return ret;
}

static int remote_export(const struct aopts *o)
{
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    struct ant_buf path = ANT_BUF_INIT(1024);
    long status = 0;
    uint64_t bytes = 0;
    bool to_stdout = o->out == NULL || strcmp(o->out, "-") == 0;
    int ret = 1;
    int rc = ant_buf_append_str(&path, "/v1/audit/export");
    rc = rc < 0 ? rc : add_param(&path, "tenant", o->tenant);
    rc = rc < 0 ? rc : ant_buf_append(&path, "", 1);
    if (rc < 0) {
        fprintf(stderr, "antenna audit: --tenant is too long\n");
        ret = 2;
        goto out;
    }
    if (remote_open(o, &c) < 0) {
        goto out;
    }
    /* a file is written to a temporary name, fsynced, renamed once whole and its folder fsynced
     * (client.h) */
    rc = ant_client_download(c, (const char *)path.p, AT_FDCWD, to_stdout ? NULL : o->out,
                             to_stdout ? STDOUT_FILENO : -1, NULL, &status, &bytes, &d);
    if (rc == 0 && status != 200) {
        if (status < 400) {
            ant_diag_set(&d, "unexpected status %ld", status);
        }
        rc = -EPERM;
    }
    if (rc < 0) {
        fprintf(stderr, "antenna audit: export failed: %s\n", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    if (!to_stdout) {
        fprintf(stderr, "antenna audit: wrote %llu bytes to %s\n", (unsigned long long)bytes,
                o->out);
    }
    ret = 0;
out:
    ant_client_close(c);
    ant_buf_fini(&path);
    return ret;
}

static int remote_verify(const struct aopts *o)
{
    uint8_t pub[ANT_KEY_LEN];
    struct ant_client *c = NULL;
    struct ant_diag d = {{0}};
    json_t *site = NULL, *st = NULL;
    long status = 0;
    uint64_t bytes = 0;
    int ret = 1, fd = -1;
    if (remote_open(o, &c) < 0) {
        goto out;
    }
    if (o->site_key != NULL) {
        if (load_sign_pub(AT_FDCWD, o->site_key, pub) < 0) {
            goto out;
        }
        printf("site key: from %s\n", o->site_key);
    } else {
        if (remote_get(c, "/v1/site", &site) < 0) {
            goto out;
        }
        const char *b64 =
            json_string_value(json_object_get(json_object_get(site, "public_keys"), "ed25519"));
        if (b64 == NULL || ant_key_b64_decode(ant_bytes_str(b64), pub) < 0) {
            fprintf(stderr, "antenna audit: the site's answer holds no Ed25519 public key\n");
            goto out;
        }
        printf("site key: %s, fetched from the site itself (GET /v1/site): this check is only "
               "as good as trusting that answer; --site-key FILE checks against a copy you "
               "obtained apart\n",
               b64);
    }
    /* the server's own view first: it recomputes the chain with the key it signs with */
    if (remote_get(c, "/v1/audit/status", &st) < 0) {
        goto out;
    }
    bool server_intact = json_is_true(json_object_get(st, "intact"));
    printf("server: %s: %lld events, %lld checkpoints, last seq %lld, signed up to %lld",
           server_intact ? "intact" : "BROKEN",
           (long long)json_integer_value(json_object_get(st, "events")),
           (long long)json_integer_value(json_object_get(st, "checkpoints")),
           (long long)json_integer_value(json_object_get(st, "last_seq")),
           (long long)json_integer_value(json_object_get(st, "signed_seq")));
    if (!server_intact) {
        printf(" (first bad seq %lld: %s)",
               (long long)json_integer_value(json_object_get(st, "first_bad_seq")),
               json_string_value(json_object_get(st, "what")) ? json_string_value(
                                                                    json_object_get(st, "what"))
                                                              : "?");
    }
    printf("\n");
    fflush(stdout);
    /* then our own check, which trusts only the key: the export goes to memory, never a file.
     * A site admin's holds every event; a tenant auditor's its tenant's events in full and the
     * others redacted, which chain and verify all the same (print_report says what that
     * proves). */
    fd = memfd_create("antenna-audit-export", MFD_CLOEXEC);
    int rc = fd < 0 ? -errno
                    : ant_client_download(c, "/v1/audit/export", AT_FDCWD, NULL, fd, NULL,
                                          &status, &bytes, &d);
    if (rc == 0 && status == 200) {
        ret = verify_fd("export", fd, pub, NULL);
    } else {
        if (rc == 0 && status < 400) {
            ant_diag_set(&d, "unexpected status %ld", status);
        }
        fprintf(stderr, "antenna audit: export failed: %s\n",
                ant_diag_msg(&d, strerror(rc < 0 ? -rc : EPERM)));
        goto out;
    }
    if (!server_intact) {
        ret = 1;
    }
out:
    ant_close(fd);
    json_decref(site);
    json_decref(st);
    ant_client_close(c);
    return ret;
}

int ant_cli_audit(int argc, char **argv)
{
    struct aopts o = {0};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    int prc = parse_opts(argc - 1, argv + 1, &o);
    if (prc == -2) {
        return 0;
    }
    if (prc < 0) {
        usage(stderr);
        return 2;
    }
    bool remote = o.dir == NULL && o.export_file == NULL &&
                  (o.conf.url != NULL || getenv("ANTENNA_URL") != NULL);
    if (!remote && (o.conf.url != NULL || o.conf.cacert != NULL || o.conf.key_file != NULL)) {
        fprintf(stderr, "antenna audit: --url, --cacert and --key-file are for the remote mode "
                        "(without --dir or --export)\n");
        return 2;
    }
    if (o.dir == NULL) {
        o.dir = "./var";
    }
    bool query_opts = o.since || o.until || o.principal || o.tenant || o.dataset || o.action ||
                      o.decision || o.limit || o.cursor;
    if (remote && o.strict) {
        fprintf(stderr, "antenna audit: --strict is for the local verify (--dir)\n");
        return 2;
    }
    if (o.witness != NULL && (remote || strcmp(cmd, "verify") != 0)) {
        fprintf(stderr, "antenna audit: --witness is for verify --dir or verify --export\n");
        return 2;
    }
    if (remote) {
        if (strcmp(cmd, "verify") == 0 && !query_opts && o.out == NULL) {
            return remote_verify(&o);
        }
        bool export_opts = o.since || o.until || o.principal || o.dataset || o.action ||
                           o.decision || o.limit || o.cursor;
        if (strcmp(cmd, "export") == 0 && !export_opts && o.site_key == NULL) {
            return remote_export(&o);
        }
        if (strcmp(cmd, "query") == 0 && o.site_key == NULL) {
            if (o.out != NULL && strcmp(o.out, "json") != 0) {
                fprintf(stderr, "antenna audit: -o takes json\n");
                return 2;
            }
            o.json = o.out != NULL;
            return remote_query(&o);
        }
    } else if (strcmp(cmd, "verify") == 0 && !query_opts && o.out == NULL) {
        if (o.export_file != NULL && o.site_key != NULL && !o.strict) {
            return verify_export(&o);
        }
        if (o.export_file == NULL && o.site_key == NULL) {
            return verify_live(&o);
        }
    } else if (strcmp(cmd, "export") == 0 && !query_opts && !o.strict && o.export_file == NULL &&
               o.site_key == NULL) {
        return do_export(&o);
    } else if (strcmp(cmd, "query") == 0 && !o.strict && o.export_file == NULL &&
               o.site_key == NULL) {
        if (o.out != NULL && strcmp(o.out, "json") != 0) {
            fprintf(stderr, "antenna audit: -o takes json\n");
            return 2;
        }
        o.json = o.out != NULL;
        return do_query(&o);
    }
    fprintf(stderr, "antenna audit: bad command or options for '%s'\n", cmd);
    usage(stderr);
    return 2;
}
