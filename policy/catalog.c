/* The catalog in antenna.db: datasets, their files and grants; OIDC issuer mappings. */
#include "policy/policy_internal.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/base/log.h"
#include "policy/audit.h"

static const char *const g_ds_states[] = {"draft", "published", "withdrawn"};
static const char *const g_ds_classes[] = {"open", "internal", "sensitive"};
static const char *const g_grantee_kinds[] = {"principal", "tenant", "site"};
static const char *const g_actions[] = {"describe", "read",  "stage", "transfer", "write",
                                        "publish",  "withdraw", "grant", "audit",    "admin"};

const char *ant_ds_state_name(enum ant_ds_state s)
{
    return (unsigned)s < ANT_ARRAY_LEN(g_ds_states) ? g_ds_states[s] : "?";
}

const char *ant_ds_class_name(enum ant_ds_class c)
{
    return (unsigned)c < ANT_ARRAY_LEN(g_ds_classes) ? g_ds_classes[c] : "?";
}

static int name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            return (int)i;
        }
    }
    return -EINVAL;
}

int ant_ds_class_parse(const char *s, enum ant_ds_class *out)
{
    int i = name_index(g_ds_classes, ANT_ARRAY_LEN(g_ds_classes), s);
    if (i < 0) {
        return i;
    }
    *out = (enum ant_ds_class)i;
    return 0;
}

int ant_ds_state_parse(const char *s, enum ant_ds_state *out)
{
    int i = name_index(g_ds_states, ANT_ARRAY_LEN(g_ds_states), s);
    if (i < 0) {
        return i;
    }
    *out = (enum ant_ds_state)i;
    return 0;
}

const char *ant_grantee_kind_name(enum ant_grantee_kind k)
{
    return (unsigned)k < ANT_ARRAY_LEN(g_grantee_kinds) ? g_grantee_kinds[k] : "?";
}

int ant_grantee_kind_parse(const char *s, enum ant_grantee_kind *out)
{
    int i = name_index(g_grantee_kinds, ANT_ARRAY_LEN(g_grantee_kinds), s);
    if (i < 0) {
        return i;
    }
    *out = (enum ant_grantee_kind)i;
    return 0;
}

const char *ant_action_name(unsigned act)
{
    for (unsigned i = 0; i < ANT_ARRAY_LEN(g_actions); i++) {
        if (act == (1u << i)) {
            return g_actions[i];
        }
    }
    return "?";
}

int ant_action_parse(const char *s, unsigned *act)
{
    int i = name_index(g_actions, ANT_ARRAY_LEN(g_actions), s);
    if (i < 0) {
        return i;
    }
    *act = 1u << i;
    return 0;
}

int ant_actions_parse_list(const char *s, unsigned *acts)
{
    unsigned bits = 0;
    char word[16];
    size_t n = 0;
    if (s == NULL) {
        return -EINVAL;
    }
    for (size_t i = 0;; i++) {
        if (s[i] == ',' || s[i] == '\0') {
            unsigned a = 0;
            word[n] = '\0';
            if (n == 0 || ant_action_parse(word, &a) < 0 || (a & ANT_ACT_GRANTABLE) == 0) {
                return -EINVAL;
            }
            bits |= a;
            n = 0;
            if (s[i] == '\0') {
                break;
            }
        } else if (n + 1 < sizeof(word)) {
            word[n++] = s[i];
        } else {
            return -EINVAL;
        }
    }
    *acts = bits;
    return 0;
}

static json_t *actions_json(unsigned acts)
{
    json_t *a = json_array();
    for (unsigned i = 0; a != NULL && i < ANT_ARRAY_LEN(g_actions); i++) {
        if (acts & (1u << i)) {
            json_array_append_new(a, json_string(g_actions[i]));
        }
    }
    return a;
}

/* Begins a transaction unless the caller already holds one (then the caller commits). */
static int tx_begin(struct ant_store *st, bool *started)
{
    *started = false;
    if (!sqlite3_get_autocommit(st->db)) {
        return 0;
    }
    int rc = ant_store_begin(st);
    *started = rc == 0;
    return rc;
}

static int tx_end(struct ant_store *st, bool started, int rc)
{
    if (!started) {
        return rc;
    }
    if (rc == 0) {
        return ant_store_commit(st);
    }
    ant_store_rollback(st);
    return rc;
}

static json_t *col_json_int_or_null(sqlite3_stmt *s, int c)
{
    return sqlite3_column_type(s, c) == SQLITE_NULL
               ? json_null()
               : json_integer((json_int_t)sqlite3_column_int64(s, c));
}

static json_t *col_json_text(sqlite3_stmt *s, int c)
{
    const char *t = (const char *)sqlite3_column_text(s, c);
    return t == NULL ? json_null() : json_string(t);
}

static json_t *col_json_hex(sqlite3_stmt *s, int c)
{
    char hex[65];
    if (sqlite3_column_type(s, c) == SQLITE_NULL || sqlite3_column_bytes(s, c) != 32) {
        return json_null();
    }
    ant_hex_encode(sqlite3_column_blob(s, c), 32, hex);
    return json_string(hex);
}

/* Runs a statement and turns every row into an object by `row`; returns the array. */
static int rows_json(sqlite3_stmt *s, json_t *(*row)(sqlite3_stmt *), json_t **out)
{
    json_t *a = json_array();
    int rc = a == NULL ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = row(s);
        if (o == NULL || json_array_append_new(a, o) < 0) {
            rc = -ENOMEM;
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

/* --- datasets --- */

bool ant_duo_code_is_valid(const char *s)
{
    /* "DUO:" + 7 digits: the only shape the ontology uses. */
    if (s == NULL || strlen(s) != 11 || strncmp(s, "DUO:", 4) != 0) {
        return false;
    }
    for (int i = 4; i < 11; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static int duo_term_exists(struct ant_store *st, const char *code)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT 1 FROM duo_terms WHERE code = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, code);
    int src = sqlite3_step(s);
    sqlite3_reset(s);
    return src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -EINVAL : ant_sqlite_err(src);
}

int ant_store_dataset_create(struct ant_store *st, const struct ant_dataset_spec *spec,
                             char id_out[ANT_ID_MAX + 1])
{
    char id[ANT_ID_MAX + 1];
    bool started = false;
    int rc = 0;
    if (spec == NULL || !ant_name_is_valid(spec->tenant) || !ant_name_is_valid(spec->name) ||
        (unsigned)spec->classification > ANT_DS_SENSITIVE || spec->nregions > ANT_DS_MAX_REGIONS ||
        spec->nduo > ANT_DS_MAX_DUO ||
        (spec->description != NULL && strlen(spec->description) > ANT_DS_DESC_MAX)) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < spec->nregions; i++) {
        if (!ant_name_is_valid(spec->regions[i])) {
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < spec->nduo; i++) {
        if (!ant_duo_code_is_valid(spec->duo[i])) {
            return -EINVAL;
        }
    }
    ant_random_id("ds_", id, sizeof(id));
    rc = tx_begin(st, &started);
    if (rc < 0) {
        return rc;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT INTO datasets(id, tenant_id, name, description,"
                                         " classification, created) VALUES(?, ?, ?, ?, ?, ?)");
    if (s == NULL) {
        rc = -EIO;
        goto out;
    }
    ant_bind_text(s, 1, id);
    ant_bind_text(s, 2, spec->tenant);
    ant_bind_text(s, 3, spec->name);
    ant_bind_text(s, 4, spec->description != NULL ? spec->description : "");
    ant_bind_text(s, 5, ant_ds_class_name(spec->classification));
    sqlite3_bind_int64(s, 6, ant_now_unix());
    rc = ant_store_exec_stmt(s);
    for (unsigned i = 0; rc == 0 && i < spec->nregions; i++) {
        s = ant_store_stmt(st, "INSERT OR IGNORE INTO dataset_regions(dataset_id, region)"
                               " VALUES(?, ?)");
        if (s == NULL) {
            rc = -EIO;
            break;
        }
        ant_bind_text(s, 1, id);
        ant_bind_text(s, 2, spec->regions[i]);
        rc = ant_store_exec_stmt(s);
    }
    for (unsigned i = 0; rc == 0 && i < spec->nduo; i++) {
        rc = duo_term_exists(st, spec->duo[i]);
        s = rc < 0 ? NULL
                   : ant_store_stmt(st, "INSERT OR IGNORE INTO dataset_duo(dataset_id, code)"
                                        " VALUES(?, ?)");
        if (rc == 0 && s == NULL) {
            rc = -EIO;
        }
        if (rc == 0) {
            ant_bind_text(s, 1, id);
            ant_bind_text(s, 2, spec->duo[i]);
            rc = ant_store_exec_stmt(s);
        }
    }
out:
    rc = tx_end(st, started, rc);
    if (rc == 0) {
        memcpy(id_out, id, strlen(id) + 1);
    }
    return rc;
}

int ant_store_dataset_get(struct ant_store *st, const char *id, struct ant_dataset *out)
{
    struct ant_dataset *d = calloc(1, sizeof(*d));
    int rc = d == NULL ? -ENOMEM : 0;
    int src;
    if (rc < 0) {
        return rc;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT id, tenant_id, name, state, classification,"
                                         " manifest_sha256 FROM datasets WHERE id = ?");
    if (s == NULL) {
        rc = -EIO;
        goto out;
    }
    ant_bind_text(s, 1, id);
    src = sqlite3_step(s);
    rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0) {
        char state[16], cls[16];
        rc = ant_col_copy(s, 0, d->id, sizeof(d->id));
        rc = rc < 0 ? rc : ant_col_copy(s, 1, d->tenant, sizeof(d->tenant));
        rc = rc < 0 ? rc : ant_col_copy(s, 2, d->name, sizeof(d->name));
        rc = rc < 0 ? rc : ant_col_copy(s, 3, state, sizeof(state));
        rc = rc < 0 ? rc : ant_col_copy(s, 4, cls, sizeof(cls));
        rc = rc < 0 ? rc : ant_ds_state_parse(state, &d->state);
        rc = rc < 0 ? rc : ant_ds_class_parse(cls, &d->classification);
        if (rc == 0 && sqlite3_column_bytes(s, 5) == 32) {
            d->has_manifest = true;
            memcpy(d->manifest_sha256, sqlite3_column_blob(s, 5), 32);
        }
    }
    sqlite3_reset(s);
    if (rc < 0) {
        goto out;
    }
    s = ant_store_stmt(st, "SELECT region FROM dataset_regions WHERE dataset_id = ? ORDER BY region");
    if (s == NULL) {
        rc = -EIO;
        goto out;
    }
    ant_bind_text(s, 1, id);
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW && d->nregions < ANT_DS_MAX_REGIONS) {
        rc = ant_col_copy(s, 0, d->regions[d->nregions], sizeof(d->regions[0]));
        d->nregions++;
    }
    sqlite3_reset(s);
    s = rc < 0 ? NULL
               : ant_store_stmt(st, "SELECT code FROM dataset_duo WHERE dataset_id = ? ORDER BY code");
    if (rc == 0 && s == NULL) {
        rc = -EIO;
    }
    if (rc < 0) {
        goto out;
    }
    ant_bind_text(s, 1, id);
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW && d->nduo < ANT_DS_MAX_DUO) {
        rc = ant_col_copy(s, 0, d->duo[d->nduo], sizeof(d->duo[0]));
        d->nduo++;
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = *d;
    }
out:
    free(d);
    return rc;
}

static int dataset_set_state(struct ant_store *st, const char *id, const char *from,
                             const char *to, const char *stamp_col, const uint8_t *manifest)
{
    struct ant_dataset d;
    bool started = false;
    int rc = tx_begin(st, &started);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_dataset_get(st, id, &d);
    if (rc == 0 && strcmp(ant_ds_state_name(d.state), from) != 0) {
        rc = -EINVAL;
    }
    if (rc == 0) {
        /* Two statements, since a column name cannot be a parameter. */
        sqlite3_stmt *s =
            strcmp(stamp_col, "published_at") == 0
                ? ant_store_stmt(st, "UPDATE datasets SET state = ?, published_at = ?,"
                                     " manifest_sha256 = ? WHERE id = ?")
                : ant_store_stmt(st, "UPDATE datasets SET state = ?, withdrawn_at = ?,"
                                     " manifest_sha256 = coalesce(?, manifest_sha256) WHERE id = ?");
        if (s == NULL) {
            rc = -EIO;
        } else {
            ant_bind_text(s, 1, to);
            sqlite3_bind_int64(s, 2, ant_now_unix());
            if (manifest != NULL) {
                sqlite3_bind_blob(s, 3, manifest, 32, SQLITE_TRANSIENT);
            } else {
                sqlite3_bind_null(s, 3);
            }
            ant_bind_text(s, 4, id);
            rc = ant_store_exec_stmt(s);
        }
    }
    return tx_end(st, started, rc);
}

int ant_store_dataset_publish(struct ant_store *st, const char *id,
                              const uint8_t manifest_sha256[32])
{
    if (manifest_sha256 == NULL) {
        return -EINVAL;
    }
    return dataset_set_state(st, id, "draft", "published", "published_at", manifest_sha256);
}

int ant_store_dataset_withdraw(struct ant_store *st, const char *id)
{
    return dataset_set_state(st, id, "published", "withdrawn", "withdrawn_at", NULL);
}

static json_t *dataset_row(sqlite3_stmt *s)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "id", col_json_text(s, 0));
    json_object_set_new(o, "tenant", col_json_text(s, 1));
    json_object_set_new(o, "name", col_json_text(s, 2));
    json_object_set_new(o, "description", col_json_text(s, 3));
    json_object_set_new(o, "state", col_json_text(s, 4));
    json_object_set_new(o, "classification", col_json_text(s, 5));
    json_object_set_new(o, "manifest_sha256", col_json_hex(s, 6));
    json_object_set_new(o, "created", col_json_int_or_null(s, 7));
    json_object_set_new(o, "published_at", col_json_int_or_null(s, 8));
    json_object_set_new(o, "withdrawn_at", col_json_int_or_null(s, 9));
    json_object_set_new(o, "files", col_json_int_or_null(s, 10));
    json_object_set_new(o, "bytes", col_json_int_or_null(s, 11));
    /* group_concat gives "a,b": the lists are short and their items hold no comma. */
    for (int c = 12; c <= 13; c++) {
        json_t *arr = json_array();
        const char *t = (const char *)sqlite3_column_text(s, c);
        while (arr != NULL && t != NULL && *t != '\0') {
            const char *e = strchr(t, ',');
            size_t n = e != NULL ? (size_t)(e - t) : strlen(t);
            json_array_append_new(arr, json_stringn(t, n));
            t = e != NULL ? e + 1 : t + n;
        }
        json_object_set_new(o, c == 12 ? "regions" : "duo", arr);
    }
    return o;
}

#define DATASET_COLS                                                                              \
    "d.id, d.tenant_id, d.name, d.description, d.state, d.classification, d.manifest_sha256,"    \
    " d.created, d.published_at, d.withdrawn_at,"                                                 \
    " (SELECT count(*) FROM files f WHERE f.dataset_id = d.id),"                                  \
    " (SELECT coalesce(sum(size), 0) FROM files f WHERE f.dataset_id = d.id),"                    \
    " (SELECT group_concat(region) FROM (SELECT region FROM dataset_regions r"                    \
    "   WHERE r.dataset_id = d.id ORDER BY region)),"                                             \
    " (SELECT group_concat(code) FROM (SELECT code FROM dataset_duo u"                            \
    "   WHERE u.dataset_id = d.id ORDER BY code))"

int ant_store_dataset_list(struct ant_store *st, const char *tenant, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT " DATASET_COLS " FROM datasets d"
                                         " WHERE ?1 IS NULL OR d.tenant_id = ?1"
                                         " ORDER BY d.tenant_id, d.name");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, tenant);
    return rows_json(s, dataset_row, out);
}

int ant_store_dataset_list_visible(struct ant_store *st, const struct ant_principal *p,
                                   int64_t now, json_t **out)
{
    /* What ant_decide() would let `p` describe: its own tenant's datasets in any state; other
     * tenants' published or withdrawn ones that are open, or that a live grant names p, its
     * tenant or its site in; everything but drafts for an admin. */
    sqlite3_stmt *s = ant_store_stmt(
        st, "SELECT " DATASET_COLS " FROM datasets d"
            " WHERE (?1 != '' AND d.tenant_id = ?1)"
            "  OR (d.state != 'draft' AND (?4 != 0 OR d.classification IN"
            "      (SELECT classification FROM classification_rules WHERE public_describe = 1)"
            "   OR EXISTS(SELECT 1 FROM grants g WHERE g.dataset_id = d.id"
            "     AND g.revoked_at IS NULL AND g.not_before <= ?5"
            "     AND (g.expires IS NULL OR g.expires > ?5)"
            "     AND ((g.grantee_kind = 'principal' AND g.grantee_id = ?2)"
            "       OR (g.grantee_kind = 'tenant' AND g.grantee_id = ?1)"
            "       OR (g.grantee_kind = 'site' AND g.grantee_id = ?3)))))"
            " ORDER BY d.tenant_id, d.name");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, p->tenant);
    ant_bind_text(s, 2, p->id);
    ant_bind_text(s, 3, p->kind == ANT_PRINCIPAL_SITE ? p->id : p->site);
    sqlite3_bind_int(s, 4, (p->roles & ANT_ROLE_ADMIN) != 0);
    sqlite3_bind_int64(s, 5, now);
    return rows_json(s, dataset_row, out);
}

int ant_store_dataset_show(struct ant_store *st, const char *id, json_t **out)
{
    json_t *a = NULL;
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT " DATASET_COLS " FROM datasets d WHERE d.id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, id);
    int rc = rows_json(s, dataset_row, &a);
    if (rc == 0 && json_array_size(a) != 1) {
        rc = -ENOENT;
    }
    if (rc == 0) {
        *out = json_incref(json_array_get(a, 0));
    }
    json_decref(a);
    return rc;
}

/* --- files --- */

/* A logical path: relative, '/'-separated, no empty, "." or ".." component, no control bytes
 * and no backslash; it names a catalog row and never a place on disk (files are stored under
 * their id), but it comes back out as a path in scratch, so it must stay beneath the job. */
bool ant_path_is_valid(const char *p)
{
    size_t n = p == NULL ? 0 : strlen(p);
    if (n == 0 || n > ANT_PATH_MAX || p[0] == '/' || p[n - 1] == '/') {
        return false;
    }
    size_t comp = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '/' || c == '\0') {
            if (comp == 0 || (comp == 1 && p[i - 1] == '.') ||
                (comp == 2 && p[i - 1] == '.' && p[i - 2] == '.')) {
                return false;
            }
            comp = 0;
            continue;
        }
        if (c < 0x20 || c == 0x7f || c == '\\') {
            return false;
        }
        comp++;
    }
    /* every path is written to the audit log, which refuses what looks like a credential:
     * refused here, a clear 400, not a failed audit append (found by fuzz_routes) */
    return !ant_audit_looks_secret(p);
}

/* Files of one dataset form one POSIX tree wherever they are written out (antenna get, a stage
 * into scratch, a peer's copy), so no path may be a folder of another: "a" and "a/b" cannot
 * both be files, where object stores (S3 keys) would allow it. Paths are byte strings compared
 * exactly: no case folding, no Unicode normalisation (the filesystems we write to do neither).
 * A parent folder ends at a '/': "a/b" and "a/bc" are fine. */
struct path_ix {
    const char *p;
    size_t i;
};

static int path_ix_cmp(const void *a, const void *b)
{
    return strcmp(((const struct path_ix *)a)->p, ((const struct path_ix *)b)->p);
}

/* The entry of the sorted v whose path is exactly the first n bytes of key, or NULL. strcmp
 * and memcmp order bytes as unsigned char alike, so the search agrees with the sort. */
static const struct path_ix *path_ix_find(const struct path_ix *v, size_t nv, const char *key,
                                          size_t n)
{
    size_t lo = 0, hi = nv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(v[mid].p, key, n);
        if (c == 0) {
            c = v[mid].p[n] == '\0' ? 0 : 1; /* a longer string sorts after its prefix */
        }
        if (c == 0) {
            return &v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

int ant_paths_find_conflict(const char *const *paths, size_t n, size_t *first, size_t *second)
{
    struct path_ix *v = calloc(n > 0 ? n : 1, sizeof(*v));
    int rc = v == NULL ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        v[i] = (struct path_ix){paths[i], i};
    }
    if (rc == 0) {
        qsort(v, n, sizeof(*v), path_ix_cmp);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct path_ix *hit = NULL;
        if (i > 0 && strcmp(v[i - 1].p, v[i].p) == 0) {
            hit = &v[i - 1];
        }
        /* each parent folder of v[i] in turn: is it a path of the set? */
        for (const char *c = v[i].p; hit == NULL && (c = strchr(c, '/')) != NULL; c++) {
            hit = path_ix_find(v, n, v[i].p, (size_t)(c - v[i].p));
        }
        if (hit != NULL) {
            *first = hit->i;
            *second = v[i].i;
            rc = -EEXIST;
        }
    }
    free(v);
    return rc;
}

static void path_copy_out(char *out, const char *p)
{
    if (out != NULL) {
        snprintf(out, ANT_PATH_MAX + 1, "%s", p != NULL ? p : "");
    }
}

int ant_store_file_conflict(struct ant_store *st, const char *dataset_id, const char *path,
                            char *conflict_out)
{
    if (!ant_path_is_valid(path)) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT path FROM files WHERE dataset_id = ?1"
                                         " AND path = ?2");
    int rc = s == NULL ? -EIO : 0;
    size_t n = strlen(path);
    /* the path itself, then each of its parent folders: point lookups on UNIQUE(dataset_id,
     * path), bound as the first k bytes of path (BINARY collation: bytes compared exactly) */
    for (size_t k = n; rc == 0; k--) {
        if (k == n || path[k] == '/') {
            ant_bind_text(s, 1, dataset_id);
            sqlite3_bind_text(s, 2, path, (int)k, SQLITE_STATIC);
            int src = sqlite3_step(s);
            if (src == SQLITE_ROW) {
                rc = k == n ? -EEXIST : -ENOTDIR;
                path_copy_out(conflict_out, (const char *)sqlite3_column_text(s, 0));
            } else if (src != SQLITE_DONE) {
                rc = ant_sqlite_err(src);
            }
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
        }
        if (k == 0) {
            break;
        }
    }
    /* a file beneath it: the rows between path + "/" and path + "0" ('0' follows '/'), a
     * range scan of the same index */
    s = rc < 0 ? NULL
               : ant_store_stmt(st, "SELECT path FROM files WHERE dataset_id = ?1"
                                    " AND path > ?2 || '/' AND path < ?2 || '0'"
                                    " ORDER BY path LIMIT 1");
    if (rc == 0 && s == NULL) {
        rc = -EIO;
    }
    if (rc == 0) {
        ant_bind_text(s, 1, dataset_id);
        ant_bind_text(s, 2, path);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            rc = -EISDIR;
            path_copy_out(conflict_out, (const char *)sqlite3_column_text(s, 0));
        } else if (src != SQLITE_DONE) {
            rc = ant_sqlite_err(src);
        }
        sqlite3_reset(s);
    }
    return rc;
}

int ant_store_file_add(struct ant_store *st, const struct ant_file_spec *spec,
                       char id_out[ANT_ID_MAX + 1])
{
    char id[ANT_ID_MAX + 1];
    struct ant_dataset d;
    bool started = false;
    if (spec == NULL || !ant_path_is_valid(spec->path) || spec->size > INT64_MAX) {
        return -EINVAL;
    }
    int rc = tx_begin(st, &started);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_dataset_get(st, spec->dataset_id, &d);
    if (rc == 0 && d.state != ANT_DS_DRAFT) {
        rc = -EINVAL; /* published datasets are immutable */
    }
    /* in the transaction that inserts the row (BEGIN IMMEDIATE: writers take turns), so two
     * uploads of "a" and "a/b" cannot both pass */
    if (rc == 0) {
        rc = ant_store_file_conflict(st, spec->dataset_id, spec->path, NULL);
    }
    sqlite3_stmt *s = rc < 0 ? NULL
                             : ant_store_stmt(st, "INSERT INTO files(id, dataset_id, path, size,"
                                                  " sha256_plain, sha256_c4gh, storage_id, created)"
                                                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?1, ?7)");
    if (rc == 0 && s == NULL) {
        rc = -EIO;
    }
    if (rc == 0) {
        ant_random_id("f_", id, sizeof(id));
        ant_bind_text(s, 1, id);
        ant_bind_text(s, 2, spec->dataset_id);
        ant_bind_text(s, 3, spec->path);
        sqlite3_bind_int64(s, 4, (int64_t)spec->size);
        sqlite3_bind_blob(s, 5, spec->sha256_plain, 32, SQLITE_TRANSIENT);
        sqlite3_bind_blob(s, 6, spec->sha256_c4gh, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 7, ant_now_unix());
        rc = ant_store_exec_stmt(s);
    }
    rc = tx_end(st, started, rc);
    if (rc == 0) {
        memcpy(id_out, id, strlen(id) + 1);
    }
    return rc;
}

static json_t *file_row(sqlite3_stmt *s)
{
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "id", col_json_text(s, 0));
        json_object_set_new(o, "dataset_id", col_json_text(s, 1));
        json_object_set_new(o, "path", col_json_text(s, 2));
        json_object_set_new(o, "size", col_json_int_or_null(s, 3));
        json_object_set_new(o, "sha256", col_json_hex(s, 4));
        json_object_set_new(o, "sha256_c4gh", col_json_hex(s, 5));
        json_object_set_new(o, "storage_id", col_json_text(s, 6));
        json_object_set_new(o, "created", col_json_int_or_null(s, 7));
    }
    return o;
}

int ant_store_file_list(struct ant_store *st, const char *dataset_id, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT id, dataset_id, path, size, sha256_plain,"
                                         " sha256_c4gh, storage_id, created FROM files"
                                         " WHERE dataset_id = ? ORDER BY path");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, dataset_id);
    return rows_json(s, file_row, out);
}

int ant_store_file_get(struct ant_store *st, const char *dataset_id, const char *path_or_id,
                       struct ant_file *out)
{
    struct ant_file f;
    memset(&f, 0, sizeof(f));
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT id, path, size, sha256_plain, sha256_c4gh,"
                                         " storage_id FROM files WHERE dataset_id = ?1"
                                         " AND (path = ?2 OR id = ?2)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, dataset_id);
    ant_bind_text(s, 2, path_or_id);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0) {
        rc = ant_col_copy(s, 0, f.id, sizeof(f.id));
        rc = rc < 0 ? rc : ant_col_copy(s, 1, f.path, sizeof(f.path));
        rc = rc < 0 ? rc : ant_col_copy(s, 5, f.storage_id, sizeof(f.storage_id));
        f.size = (uint64_t)sqlite3_column_int64(s, 2);
        if (rc == 0 && sqlite3_column_bytes(s, 3) == 32 && sqlite3_column_bytes(s, 4) == 32) {
            memcpy(f.sha256_plain, sqlite3_column_blob(s, 3), 32);
            memcpy(f.sha256_c4gh, sqlite3_column_blob(s, 4), 32);
        } else if (rc == 0) {
            rc = -EBADMSG;
        }
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = f;
    }
    return rc;
}

/* --- grants --- */

int ant_store_grant_create(struct ant_store *st, const struct ant_grant_spec *spec,
                           char id_out[ANT_ID_MAX + 1])
{
    char id[ANT_ID_MAX + 1];
    struct ant_dataset d;
    bool started = false;
    int64_t now = ant_now_unix();
    if (spec == NULL || (unsigned)spec->grantee_kind > ANT_GRANTEE_SITE ||
        !ant_name_is_valid(spec->grantee_id) || spec->actions == 0 ||
        (spec->actions & ~(unsigned)ANT_ACT_GRANTABLE) != 0 ||
        (spec->purpose != NULL && !ant_duo_code_is_valid(spec->purpose)) ||
        !ant_name_is_valid(spec->created_by) || spec->not_before < 0 || spec->expires < 0 ||
        (spec->expires != 0 && spec->expires <= (spec->not_before ? spec->not_before : now))) {
        return -EINVAL;
    }
    int rc = tx_begin(st, &started);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_dataset_get(st, spec->dataset_id, &d);
    if (rc == 0 && d.state == ANT_DS_WITHDRAWN) {
        rc = -EINVAL;
    }
    rc = rc < 0 || spec->purpose == NULL ? rc : duo_term_exists(st, spec->purpose);
    sqlite3_stmt *s =
        rc < 0 ? NULL
               : ant_store_stmt(st, "INSERT INTO grants(id, dataset_id, grantee_kind, grantee_id,"
                                    " actions, purpose, not_before, expires, created_by, created)"
                                    " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (rc == 0 && s == NULL) {
        rc = -EIO;
    }
    if (rc == 0) {
        ant_random_id("gr_", id, sizeof(id));
        ant_bind_text(s, 1, id);
        ant_bind_text(s, 2, spec->dataset_id);
        ant_bind_text(s, 3, ant_grantee_kind_name(spec->grantee_kind));
        ant_bind_text(s, 4, spec->grantee_id);
        sqlite3_bind_int(s, 5, (int)spec->actions);
        ant_bind_text(s, 6, spec->purpose);
        sqlite3_bind_int64(s, 7, spec->not_before ? spec->not_before : now);
        if (spec->expires != 0) {
            sqlite3_bind_int64(s, 8, spec->expires);
        } else {
            sqlite3_bind_null(s, 8);
        }
        ant_bind_text(s, 9, spec->created_by);
        sqlite3_bind_int64(s, 10, now);
        rc = ant_store_exec_stmt(s);
    }
    rc = tx_end(st, started, rc);
    if (rc == 0) {
        memcpy(id_out, id, strlen(id) + 1);
    }
    return rc;
}

int ant_store_grant_revoke(struct ant_store *st, const char *grant_id, int64_t now)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT revoked_at FROM grants WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, grant_id);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0 && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        rc = -EALREADY;
    }
    sqlite3_reset(s);
    if (rc < 0) {
        return rc;
    }
    s = ant_store_stmt(st, "UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, now ? now : ant_now_unix());
    ant_bind_text(s, 2, grant_id);
    return ant_store_exec_stmt(s);
}

static json_t *grant_row(sqlite3_stmt *s)
{
    json_t *o = json_object();
    if (o != NULL) {
        int64_t now = ant_now_unix();
        const char *state = "active";
        if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
            state = "revoked";
        } else if (sqlite3_column_type(s, 7) != SQLITE_NULL && sqlite3_column_int64(s, 7) <= now) {
            state = "expired";
        } else if (sqlite3_column_int64(s, 6) > now) {
            state = "pending";
        }
        json_object_set_new(o, "id", col_json_text(s, 0));
        json_object_set_new(o, "dataset_id", col_json_text(s, 1));
        json_object_set_new(o, "grantee_kind", col_json_text(s, 2));
        json_object_set_new(o, "grantee_id", col_json_text(s, 3));
        json_object_set_new(o, "actions", actions_json((unsigned)sqlite3_column_int(s, 4)));
        json_object_set_new(o, "purpose", col_json_text(s, 5));
        json_object_set_new(o, "not_before", col_json_int_or_null(s, 6));
        json_object_set_new(o, "expires", col_json_int_or_null(s, 7));
        json_object_set_new(o, "revoked_at", col_json_int_or_null(s, 8));
        json_object_set_new(o, "created_by", col_json_text(s, 9));
        json_object_set_new(o, "created", col_json_int_or_null(s, 10));
        json_object_set_new(o, "tenant", col_json_text(s, 11));
        json_object_set_new(o, "state", json_string(state));
    }
    return o;
}

#define GRANT_COLS                                                                                \
    "g.id, g.dataset_id, g.grantee_kind, g.grantee_id, g.actions, g.purpose, g.not_before,"      \
    " g.expires, g.revoked_at, g.created_by, g.created, d.tenant_id"

int ant_store_grant_list(struct ant_store *st, const char *dataset_id, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT " GRANT_COLS " FROM grants g"
                                         " JOIN datasets d ON d.id = g.dataset_id"
                                         " WHERE ?1 IS NULL OR g.dataset_id = ?1"
                                         " ORDER BY g.dataset_id, g.created, g.id");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, dataset_id);
    return rows_json(s, grant_row, out);
}

int ant_store_grant_list_tenant(struct ant_store *st, const char *tenant, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT " GRANT_COLS " FROM grants g"
                                         " JOIN datasets d ON d.id = g.dataset_id"
                                         " WHERE d.tenant_id = ?1"
                                         " ORDER BY g.dataset_id, g.created, g.id");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, tenant);
    return rows_json(s, grant_row, out);
}

int ant_store_grant_show(struct ant_store *st, const char *grant_id, json_t **out)
{
    json_t *a = NULL;
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT " GRANT_COLS " FROM grants g"
                                         " JOIN datasets d ON d.id = g.dataset_id WHERE g.id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, grant_id);
    int rc = rows_json(s, grant_row, &a);
    if (rc == 0 && json_array_size(a) != 1) {
        rc = -ENOENT;
    }
    if (rc == 0) {
        *out = json_incref(json_array_get(a, 0));
    }
    json_decref(a);
    return rc;
}

/* --- OIDC issuers --- */

int ant_store_oidc_issuer_add(struct ant_store *st, const struct ant_oidc_issuer *i)
{
    if (i == NULL || i->issuer == NULL || i->issuer[0] == '\0' || strlen(i->issuer) > 512 ||
        i->jwks_path == NULL || i->jwks_path[0] == '\0' || i->audience == NULL ||
        i->audience[0] == '\0' || i->principal_claim == NULL || i->principal_claim[0] == '\0') {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT INTO oidc_issuers(issuer, jwks_path, audience,"
                                         " principal_claim, tenant_claim) VALUES(?, ?, ?, ?, ?)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, i->issuer);
    ant_bind_text(s, 2, i->jwks_path);
    ant_bind_text(s, 3, i->audience);
    ant_bind_text(s, 4, i->principal_claim);
    ant_bind_text(s, 5, i->tenant_claim);
    return ant_store_exec_stmt(s);
}

static json_t *issuer_row(sqlite3_stmt *s)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o}", "issuer", col_json_text(s, 0), "jwks_path",
                     col_json_text(s, 1), "audience", col_json_text(s, 2), "principal_claim",
                     col_json_text(s, 3), "tenant_claim", col_json_text(s, 4));
}

int ant_store_oidc_issuer_list(struct ant_store *st, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT issuer, jwks_path, audience, principal_claim,"
                                         " tenant_claim FROM oidc_issuers ORDER BY issuer");
    if (s == NULL) {
        return -EIO;
    }
    return rows_json(s, issuer_row, out);
}

int ant_store_oidc_issuer_remove(struct ant_store *st, const char *issuer)
{
    if (issuer == NULL || issuer[0] == '\0') {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "DELETE FROM oidc_issuers WHERE issuer = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, issuer);
    int rc = ant_store_exec_stmt(s);
    return rc < 0 ? rc : sqlite3_changes(st->db) == 0 ? -ENOENT : 0;
}

/* The credential an OIDC token is audited under: "oidc:<issuer>" in full, or, for an issuer
 * longer than that leaves room for (they may have 512 bytes), "oidc:sha256:<hex of its
 * SHA-256>", which an auditor can match to the configured issuers. Never a cut issuer: two
 * issuers sharing a long prefix stay apart in the log. */
static void oidc_credential(const char *issuer, char out[ANT_CREDENTIAL_MAX + 1])
{
    size_t n = strlen(issuer);
    if (n <= ANT_CREDENTIAL_MAX - 5) {
        memcpy(out, "oidc:", 5);
        memcpy(out + 5, issuer, n + 1);
        return;
    }
    uint8_t d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, (const unsigned char *)issuer, n);
    memcpy(out, "oidc:sha256:", 12);
    ant_hex_encode(d, sizeof(d), out + 12); /* NUL-terminated */
}

int ant_store_oidc_principal(struct ant_store *st, const char *issuer, const char *audience,
                             const char *jwks_path, const json_t *claims, struct ant_principal *out)
{
    struct ant_principal p;
    char pclaim[128], tclaim[128];
    bool has_tclaim = false;
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT principal_claim, tenant_claim, audience = ?2"
                                         " AND jwks_path = ?3 FROM oidc_issuers WHERE issuer = ?1");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, issuer);
    ant_bind_text(s, 2, audience);
    ant_bind_text(s, 3, jwks_path);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ESTALE : ant_sqlite_err(src);
    if (rc == 0 && sqlite3_column_int(s, 2) != 1) {
        rc = -ESTALE;
    }
    if (rc == 0) {
        rc = ant_col_copy(s, 0, pclaim, sizeof(pclaim));
        has_tclaim = sqlite3_column_type(s, 1) != SQLITE_NULL;
        rc = rc < 0 ? rc : ant_col_copy(s, 1, tclaim, sizeof(tclaim));
    }
    sqlite3_reset(s);
    if (rc < 0) {
        return rc == -E2BIG ? -EKEYREJECTED : rc;
    }
    const char *who = json_string_value(json_object_get(claims, pclaim));
    if (!json_is_object(claims) || !ant_name_is_valid(who)) {
        return -EKEYREJECTED;
    }
    rc = ant_store_principal_get(st, who, &p);
    if (rc == -ENOENT) {
        return -EKEYREJECTED;
    }
    if (rc < 0) {
        return rc;
    }
    if (has_tclaim) {
        const char *t = json_string_value(json_object_get(claims, tclaim));
        if (t == NULL || strcmp(t, p.tenant) != 0) {
            return -EKEYREJECTED; /* a token of one tenant never acts in another */
        }
    }
    oidc_credential(issuer, p.key_id);
    *out = p;
    return 0;
}
