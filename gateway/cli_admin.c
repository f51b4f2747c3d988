/* antenna admin: tenants, principals, API keys, datasets, grants and OIDC issuers, straight on
 * the site folder's antenna.db, so they work whether the daemon is running or not (SQLite WAL
 * and busy timeouts let both write). Every command is an audited action: its event is durable
 * in audit.db before its effect is committed or its output printed (fail closed). */
#include "crypto/base/log.h"
#include "crypto/keys.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "policy/audit.h"
#include "policy/store.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_POS 4

static void usage(FILE *out)
{
    fprintf(out,
            "usage: antenna admin [--dir DIR] [-o json|table] COMMAND\n\n"
            "  tenant add NAME\n"
            "  tenant list\n"
            "  principal add NAME [--tenant T] --role R [--role R]...   (owner, reader, auditor,"
            " admin)\n"
            "  principal list [--tenant T] [--role R]\n"
            "  principal disable NAME                                   (its keys and tokens"
            " stop working at once)\n"
            "  key create --principal P [--ttl DURATION]                (the key is shown once)\n"
            "  key revoke KEY_ID\n"
            "  key list [--principal P]\n"
            "  dataset list [--tenant T]\n"
            "  grant list [--dataset ID | --tenant T]\n"
            "  oidc add --issuer URL --jwks FILE --audience AUD --principal-claim C"
            " [--tenant-claim C]\n"
            "  oidc rm --issuer URL                                     (its tokens stop working"
            " within a second)\n"
            "  oidc list\n"
            "  archive check [--dataset ID] [--deep]                    (the archive against the"
            " catalog; exit 1\n"
            "                                                           if anything is wrong;"
            " --deep decrypts\n"
            "                                                           every file and compares"
            " its sums)\n\n"
            "DIR is the site folder (default ./var). Works whether the site is serving or not.\n"
            "Every command is written to the audit log first; the site key is read from\n"
            "DIR/keys (passphrase from $ANTENNA_KEY_PASSPHRASE).\n");
}

struct args {
    const char *dir;
    bool json;
    const char *pos[MAX_POS];
    int npos;
    const char *tenant, *principal, *ttl, *dataset;
    const char *issuer, *jwks, *audience, *pclaim, *tclaim;
    unsigned roles;
    bool deep;
};

struct ctx {
    struct args *a;
    int dirfd;
    struct ant_store *st;
    struct ant_site_keys keys;
    struct ant_audit *audit;
    char actor[ANT_NAME_MAX + 1];
};

/* Options may come anywhere after "admin"; returns 2 on a usage error. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        {"--dir", offsetof(struct args, dir)},
        {"--tenant", offsetof(struct args, tenant)},
        {"--principal", offsetof(struct args, principal)},
        {"--ttl", offsetof(struct args, ttl)},
        {"--dataset", offsetof(struct args, dataset)},
        {"--issuer", offsetof(struct args, issuer)},
        {"--jwks", offsetof(struct args, jwks)},
        {"--audience", offsetof(struct args, audience)},
        {"--principal-claim", offsetof(struct args, pclaim)},
        {"--tenant-claim", offsetof(struct args, tclaim)},
    };
    a->dir = "./var";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = NULL;
        bool matched = false;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            return 3;
        }
        if (strcmp(s, "--deep") == 0) {
            a->deep = true;
            continue;
        }
        if (s[0] != '-') {
            if (a->npos == MAX_POS) {
                return 2;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "antenna admin: %s needs a value\n", s);
            return 2;
        }
        val = argv[++i];
        if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            if (strcmp(val, "json") != 0 && strcmp(val, "table") != 0) {
                fprintf(stderr, "antenna admin: -o takes json or table\n");
                return 2;
            }
            a->json = strcmp(val, "json") == 0;
            continue;
        }
        if (strcmp(s, "--role") == 0) {
            unsigned r = 0;
            if (ant_role_parse(val, &r) < 0) {
                fprintf(stderr, "antenna admin: unknown role %s\n", val);
                return 2;
            }
            a->roles |= r;
            continue;
        }
        for (size_t k = 0; k < ANT_ARRAY_LEN(strs); k++) {
            if (strcmp(s, strs[k].name) == 0) {
                *(const char **)(void *)((char *)a + strs[k].off) = val;
                matched = true;
            }
        }
        if (!matched) {
            fprintf(stderr, "antenna admin: unknown option %s\n", s);
            return 2;
        }
    }
    return 0;
}

/* --- output --- */

static void cell(json_t *v, char *out, size_t n)
{
    if (v == NULL || json_is_null(v)) {
        snprintf(out, n, "-");
    } else if (json_is_string(v)) {
        snprintf(out, n, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, n, "%s", json_is_true(v) ? "yes" : "no");
    } else if (json_is_array(v)) {
        size_t i, off = 0;
        json_t *e;
        out[0] = '\0';
        json_array_foreach(v, i, e)
        {
            int w = snprintf(out + off, n - off, "%s%s", i ? "," : "",
                             json_is_string(e) ? json_string_value(e) : "?");
            if (w < 0 || (size_t)w >= n - off) {
                break;
            }
            off += (size_t)w;
        }
        if (i == 0) {
            snprintf(out, n, "-");
        }
    } else {
        snprintf(out, n, "?");
    }
}

/* Columns whose integers are unix times print as UTC times. */
static bool is_time_col(const char *k)
{
    static const char *const t[] = {"created", "last_used", "expires", "revoked_at",
                                    "not_before", "published_at", "withdrawn_at"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(t); i++) {
        if (strcmp(k, t[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void cell_fmt(json_t *o, const char *key, char *out, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && is_time_col(key)) {
        char t[32];
        ant_fmt_time((int64_t)json_integer_value(v), t);
        snprintf(out, n, "%s", t);
        return;
    }
    cell(v, out, n);
}

/* Prints rows as an aligned table with the given columns (key, header). */
static void print_table(json_t *rows, const char *const *cols, size_t ncols)
{
    size_t width[16] = {0};
    char buf[512];
    size_t i;
    json_t *o;
    for (size_t c = 0; c < ncols && c < 16; c++) {
        width[c] = strlen(cols[c]);
        json_array_foreach(rows, i, o)
        {
            cell_fmt(o, cols[c], buf, sizeof(buf));
            size_t l = strlen(buf);
            width[c] = l > width[c] ? l : width[c];
        }
    }
    for (size_t c = 0; c < ncols; c++) {
        char h[64];
        size_t j;
        for (j = 0; cols[c][j] != '\0' && j + 1 < sizeof(h); j++) {
            h[j] = cols[c][j] >= 'a' && cols[c][j] <= 'z' ? (char)(cols[c][j] - 32) : cols[c][j];
        }
        h[j] = '\0';
        printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0, h, c + 1 < ncols ? "  " : "\n");
    }
    json_array_foreach(rows, i, o)
    {
        for (size_t c = 0; c < ncols; c++) {
            cell_fmt(o, cols[c], buf, sizeof(buf));
            printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0, buf, c + 1 < ncols ? "  " : "\n");
        }
    }
    if (json_array_size(rows) == 0) {
        printf("(none)\n");
    }
}

static int emit(struct ctx *c, json_t *rows, const char *const *cols, size_t ncols)
{
    if (c->a->json) {
        char *s = json_dumps(rows, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s == NULL) {
            return -ENOMEM;
        }
        printf("%s\n", s);
        free(s);
    } else {
        print_table(rows, cols, ncols);
    }
    return fflush(stdout) == 0 ? 0 : -EIO;
}

/* --- audit --- */

/* The actor of a command run on the host: the operating-system user, as "cli:<user>". */
static void set_actor(struct ctx *c)
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

/* Writes the command's event and waits until it is durable; the caller releases nothing
 * (output, commit) if this fails. */
static int audit(struct ctx *c, const char *action, const char *kind, const char *id,
                 const char *dataset, const char *detail)
{
    struct ant_audit_event ev = {
        .actor = c->actor,
        .credential = "local",
        .action = action,
        .resource_kind = kind,
        .resource_id = id,
        .dataset_id = dataset,
        .decision = ANT_AUDIT_ALLOW,
        .reason = "site_operator",
        .detail = detail,
    };
    int64_t seq = ant_audit_append(c->audit, &ev);
    if (seq < 0) {
        fprintf(stderr, "antenna admin: cannot write the audit event (%s): nothing was done\n",
                strerror((int)-seq));
        return (int)seq;
    }
    return 0;
}

/* Runs `fn` inside a transaction whose commit waits for the audit event. */
static int audited_change(struct ctx *c, const char *action, const char *kind, const char *id,
                          const char *detail, int (*fn)(struct ctx *))
{
    int rc = ant_store_begin(c->st);
    if (rc < 0) {
        return rc;
    }
    rc = fn(c);
    rc = rc < 0 ? rc : audit(c, action, kind, id, NULL, detail);
    rc = rc < 0 ? rc : ant_store_commit(c->st);
    if (rc < 0) {
        ant_store_rollback(c->st);
    }
    return rc;
}

/* --- commands --- */

static int do_tenant_add(struct ctx *c)
{
    return ant_store_tenant_add(c->st, c->a->pos[2]);
}

static int do_principal_add(struct ctx *c)
{
    return ant_store_principal_add(c->st, c->a->pos[2], c->a->tenant, c->a->roles);
}

static int do_principal_disable(struct ctx *c)
{
    return ant_store_principal_disable(c->st, c->a->pos[2]);
}

static int do_key_revoke(struct ctx *c)
{
    return ant_store_key_revoke(c->st, c->a->pos[2]);
}

static int do_oidc_add(struct ctx *c)
{
    struct ant_oidc_issuer i = {c->a->issuer, c->a->jwks, c->a->audience, c->a->pclaim,
                                c->a->tclaim};
    return ant_store_oidc_issuer_add(c->st, &i);
}

/* An issuer is any URL the admin typed: JSON output goes through jansson. */
static void print_issuer(const struct args *a, const char *state, const char *note)
{
    if (!a->json) {
        printf("OIDC issuer %s %s (%s)\n", a->issuer, state, note);
        return;
    }
    json_t *o = json_pack("{s:s, s:s}", "issuer", a->issuer, "state", state);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s != NULL) {
        printf("%s\n", s);
    }
    free(s);
    json_decref(o);
}

static int do_oidc_rm(struct ctx *c)
{
    return ant_store_oidc_issuer_remove(c->st, c->a->issuer);
}

static int list_cmd(struct ctx *c, const char *action, const char *kind, json_t *rows,
                    const char *const *cols, size_t ncols)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"rows\":%zu}", json_array_size(rows));
    int rc = audit(c, action, kind, NULL, NULL, detail);
    rc = rc < 0 ? rc : emit(c, rows, cols, ncols);
    json_decref(rows);
    return rc;
}

static int key_create(struct ctx *c)
{
    struct ant_buf key = ANT_BUF_INIT(ANT_API_KEY_LEN + 1);
    char kid[ANT_KEY_ID_LEN + 1], detail[160];
    uint64_t ttl = 0;
    int rc = 0;
    if (c->a->ttl != NULL &&
        ant_parse_duration(ant_bytes_str(c->a->ttl), 10 * 365 * 86400ull, &ttl) < 0) {
        fprintf(stderr, "antenna admin: bad --ttl %s (e.g. 90d, 12h)\n", c->a->ttl);
        return -EINVAL;
    }
    rc = ant_store_begin(c->st);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_key_create(c->st, c->a->principal, (int64_t)ttl, &key, kid);
    snprintf(detail, sizeof(detail), "{\"principal\":\"%s\",\"ttl_s\":%llu}", c->a->principal,
             (unsigned long long)ttl);
    /* The event names the key id and never the key. */
    rc = rc < 0 ? rc : audit(c, "admin.key.create", "key", kid, NULL, detail);
    rc = rc < 0 ? rc : ant_store_commit(c->st);
    if (rc < 0) {
        ant_store_rollback(c->st);
        goto out;
    }
    rc = ant_buf_terminate(&key);
    if (rc < 0) {
        goto out;
    }
    if (c->a->json) {
        printf("{\n  \"key_id\": \"%s\",\n  \"principal\": \"%s\",\n  \"key\": \"%s\"\n}\n", kid,
               c->a->principal, (const char *)key.p);
    } else {
        printf("key_id  %s\nkey     %s\n\nThe key is shown once: store it now. Only its hash is"
               " kept.\n",
               kid, (const char *)key.p);
    }
    rc = fflush(stdout) == 0 ? 0 : -EIO;
out:
    ant_buf_wipe_fini(&key);
    return rc;
}

/* admin archive check: 0 nothing wrong, 1 problems (listed), or a negative errno. The event
 * (with the count of problems) is durable before anything is printed. */
static int archive_check(struct ctx *c)
{
    static const char *const cols[] = {"problem", "dataset", "path", "detail"};
    struct ant_config cfg;
    struct ant_diag d = {{0}};
    json_t *rep = NULL;
    ant_config_defaults(&cfg);
    int rc = ant_config_load(c->dirfd, "antenna.conf", &cfg, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna admin: antenna.conf: %s\n", ant_diag_msg(&d, strerror(-rc)));
        return rc;
    }
    rc = ant_archive_check(c->dirfd, cfg.archive_dir, c->st, c->keys.kx, c->a->dataset,
                           c->a->deep, &rep);
    if (rc < 0) {
        if (rc != -ENOENT || c->a->dataset == NULL) {
            fprintf(stderr, "antenna admin: archive check (%s): %s\n", cfg.archive_dir,
                    strerror(-rc));
        }
        return rc;
    }
    json_t *problems = json_object_get(rep, "problems");
    size_t n = json_array_size(problems);
    json_t *det = json_pack("{s:b, s:I, s:I, s:I}", "deep", c->a->deep, "files",
                            json_integer_value(json_object_get(rep, "files")), "bytes",
                            json_integer_value(json_object_get(rep, "bytes")), "problems",
                            (json_int_t)n);
    char *detail = det != NULL ? json_dumps(det, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(det);
    rc = detail == NULL ? -ENOMEM
                        : audit(c, "admin.archive.check", c->a->dataset ? "dataset" : "archive",
                                c->a->dataset ? c->a->dataset : "archive", c->a->dataset, detail);
    free(detail);
    if (rc == 0 && c->a->json) {
        char *s = json_dumps(rep, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        rc = s != NULL ? 0 : -ENOMEM;
        if (s != NULL) {
            printf("%s\n", s);
            free(s);
        }
    } else if (rc == 0) {
        if (n > 0) {
            print_table(problems, cols, ANT_ARRAY_LEN(cols));
        }
        printf("%s%lld dataset(s), %lld file(s), %lld bytes checked (%s): %zu problem(s)\n",
               n > 0 ? "\n" : "", (long long)json_integer_value(json_object_get(rep, "datasets")),
               (long long)json_integer_value(json_object_get(rep, "files")),
               (long long)json_integer_value(json_object_get(rep, "bytes")),
               c->a->deep ? "every segment decrypted, both sums compared"
                          : "headers and sizes; --deep also decrypts",
               n);
    }
    json_decref(rep);
    rc = rc < 0 ? rc : fflush(stdout) == 0 ? 0 : -EIO;
    return rc < 0 ? rc : n > 0 ? 1 : 0;
}

static int run(struct ctx *c)
{
    static const char *const tenant_cols[] = {"tenant", "principals", "datasets", "created"};
    static const char *const principal_cols[] = {"principal", "tenant", "roles", "active_keys",
                                                 "disabled", "created"};
    static const char *const key_cols[] = {"key_id", "principal", "state", "created",
                                           "last_used", "expires", "revoked_at"};
    static const char *const ds_cols[] = {"id", "tenant", "name", "state", "classification",
                                          "regions", "duo", "files", "bytes"};
    static const char *const grant_cols[] = {"id", "dataset_id", "grantee_kind", "grantee_id",
                                             "actions", "purpose", "state", "expires"};
    static const char *const oidc_cols[] = {"issuer", "audience", "principal_claim",
                                            "tenant_claim", "jwks_path"};
    struct args *a = c->a;
    const char *obj = a->pos[0], *verb = a->pos[1];
    json_t *rows = NULL;
    char detail[256];
    int rc;
#define IS(o, v) (strcmp(obj, (o)) == 0 && strcmp(verb, (v)) == 0)
    if (IS("tenant", "add")) {
        rc = audited_change(c, "admin.tenant.add", "tenant", a->pos[2], NULL, do_tenant_add);
        if (rc == 0) {
            printf(a->json ? "{\"tenant\": \"%s\"}\n" : "tenant %s added\n", a->pos[2]);
        }
    } else if (IS("tenant", "list")) {
        rc = ant_store_tenant_list(c->st, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.tenant.list", "tenant", rows, tenant_cols, 4);
    } else if (IS("principal", "add")) {
        snprintf(detail, sizeof(detail), "{\"tenant\":%s%s%s,\"roles\":%u}",
                 a->tenant ? "\"" : "", a->tenant ? a->tenant : "null", a->tenant ? "\"" : "",
                 a->roles);
        rc = audited_change(c, "admin.principal.add", "principal", a->pos[2], detail,
                            do_principal_add);
        if (rc == 0) {
            printf(a->json ? "{\"principal\": \"%s\"}\n" : "principal %s added\n", a->pos[2]);
        }
    } else if (IS("principal", "list")) {
        rc = ant_store_principal_list(c->st, a->tenant, a->roles, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.principal.list", "principal", rows, principal_cols, 6);
    } else if (IS("principal", "disable")) {
        rc = audited_change(c, "admin.principal.disable", "principal", a->pos[2], NULL,
                            do_principal_disable);
        if (rc == 0) {
            printf(a->json ? "{\"principal\": \"%s\", \"disabled\": true}\n"
                           : "principal %s disabled\n",
                   a->pos[2]);
        }
    } else if (IS("key", "create")) {
        rc = key_create(c);
    } else if (IS("key", "revoke")) {
        rc = audited_change(c, "admin.key.revoke", "key", a->pos[2], NULL, do_key_revoke);
        if (rc == 0) {
            printf(a->json ? "{\"key_id\": \"%s\", \"state\": \"revoked\"}\n"
                           : "key %s revoked\n",
                   a->pos[2]);
        }
    } else if (IS("key", "list")) {
        rc = ant_store_key_list(c->st, a->principal, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.key.list", "key", rows, key_cols, 7);
    } else if (IS("dataset", "list")) {
        rc = ant_store_dataset_list(c->st, a->tenant, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.dataset.list", "dataset", rows, ds_cols, 9);
    } else if (IS("grant", "list")) {
        rc = a->tenant != NULL ? ant_store_grant_list_tenant(c->st, a->tenant, &rows)
                               : ant_store_grant_list(c->st, a->dataset, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.grant.list", "grant", rows, grant_cols, 8);
    } else if (IS("oidc", "add")) {
        rc = audited_change(c, "admin.oidc.add", "oidc_issuer", a->issuer, NULL, do_oidc_add);
        if (rc == 0) {
            print_issuer(a, "added", "a running daemon takes it up at its first token");
        }
    } else if (IS("oidc", "rm")) {
        rc = audited_change(c, "admin.oidc.rm", "oidc_issuer", a->issuer, NULL, do_oidc_rm);
        if (rc == 0) {
            print_issuer(a, "removed", "its tokens stop working within a second");
        }
    } else if (IS("oidc", "list")) {
        rc = ant_store_oidc_issuer_list(c->st, &rows);
        rc = rc < 0 ? rc : list_cmd(c, "admin.oidc.list", "oidc_issuer", rows, oidc_cols, 5);
    } else if (IS("archive", "check")) {
        rc = archive_check(c);
    } else {
        rc = -ENOSYS;
    }
#undef IS
    return rc;
}

/* Checks each command's arguments before anything is opened: usage errors exit 2. */
static bool args_fit(const struct args *a)
{
    if (a->npos < 2) {
        return false;
    }
    const char *obj = a->pos[0], *verb = a->pos[1];
    bool add_or_revoke = strcmp(verb, "add") == 0 || strcmp(verb, "revoke") == 0 ||
                         strcmp(verb, "disable") == 0;
    int want_pos = (add_or_revoke && strcmp(obj, "oidc") != 0) ? 3 : 2;
    if (a->npos != want_pos) {
        return false;
    }
    if (strcmp(obj, "archive") == 0) {
        return strcmp(verb, "check") == 0;
    }
    if (a->deep) {
        return false; /* archive check's alone */
    }
    if (strcmp(obj, "tenant") == 0) {
        return strcmp(verb, "add") == 0 || strcmp(verb, "list") == 0;
    }
    if (strcmp(obj, "principal") == 0) {
        return (strcmp(verb, "add") == 0 && a->roles != 0) || strcmp(verb, "list") == 0 ||
               strcmp(verb, "disable") == 0;
    }
    if (strcmp(obj, "key") == 0) {
        return (strcmp(verb, "create") == 0 && a->principal != NULL) ||
               strcmp(verb, "revoke") == 0 || strcmp(verb, "list") == 0;
    }
    if (strcmp(obj, "dataset") == 0) {
        return strcmp(verb, "list") == 0;
    }
    if (strcmp(obj, "grant") == 0) {
        return strcmp(verb, "list") == 0 && !(a->tenant != NULL && a->dataset != NULL);
    }
    if (strcmp(obj, "oidc") == 0) {
        return (strcmp(verb, "add") == 0 && a->issuer && a->jwks && a->audience && a->pclaim) ||
               (strcmp(verb, "rm") == 0 && a->issuer) || strcmp(verb, "list") == 0;
    }
    return false;
}

static const char *explain_err(int rc)
{
    switch (rc) {
    case -EEXIST:
        return "already exists";
    case -ENOENT:
        return "no such object (or it refers to one that does not exist)";
    case -EINVAL:
        return "invalid value (names: 1-64 of A-Z a-z 0-9 . _ @ -, starting alphanumeric,"
               " not shaped like an API key or a JWT; owner/reader/auditor need --tenant)";
    case -EALREADY:
        return "already revoked or disabled";
    case -EBUSY:
        return "the database stayed locked; try again";
    default:
        return strerror(-rc);
    }
}

int ant_cli_admin(int argc, char **argv)
{
    int first = 1; /* the first word after the options: "peer" belongs to cli_peer.c */
    while (first + 1 < argc && argv[first][0] == '-' && strcmp(argv[first], "--yes") != 0) {
        first += 2;
    }
    if (first < argc && strcmp(argv[first], "peer") == 0) {
        return ant_cli_peer(argc, argv);
    }
    struct args a;
    struct ctx c;
    struct ant_diag d = {{0}};
    int keysfd = -1;
    int rc;
    memset(&a, 0, sizeof(a));
    memset(&c, 0, sizeof(c));
    c.a = &a;
    c.dirfd = -1;
    rc = parse_args(argc, argv, &a);
    if (rc == 3) {
        usage(stdout);
        return 0;
    }
    if (rc != 0 || !args_fit(&a)) {
        usage(stderr);
        return 2;
    }
    set_actor(&c);
    c.dirfd = open(a.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c.dirfd < 0) {
        rc = -errno;
        fprintf(stderr, "antenna admin: %s: %s (is it a site folder? see antenna init)\n", a.dir,
                strerror(-rc));
        goto out;
    }
    rc = ant_store_open(c.dirfd, "antenna.db", 0, &c.st);
    if (rc < 0) {
        fprintf(stderr, "antenna admin: %s/antenna.db: %s\n", a.dir, strerror(-rc));
        goto out;
    }
    keysfd = openat(c.dirfd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = keysfd < 0 ? -errno : ant_site_keys_load(keysfd, getenv("ANTENNA_KEY_PASSPHRASE"),
                                                 &c.keys, &d);
    if (rc < 0) {
        fprintf(stderr, "antenna admin: cannot load the site key to sign the audit log: %s\n",
                ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    rc = ant_audit_open(c.dirfd, "audit.db", 0, c.keys.sign, NULL, &c.audit);
    if (rc < 0) {
        fprintf(stderr, "antenna admin: %s/audit.db: %s\n", a.dir, strerror(-rc));
        goto out;
    }
    rc = run(&c);
    if (rc < 0) {
        fprintf(stderr, "antenna admin: %s %s: %s\n", a.pos[0], a.pos[1], explain_err(rc));
    }
out:
    ant_audit_close(c.audit);
    ant_site_keys_fini(&c.keys);
    ant_store_close(c.st);
    ant_close(keysfd);
    ant_close(c.dirfd);
    return rc != 0 ? 1 : 0; /* > 0: archive check found problems */
}
