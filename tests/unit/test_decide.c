/* policy/decide.h: one test per rule, then the table-driven matrix of callers x actions x
 * dataset states. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "policy/decide.h"
#include "tests/unit/testutil.h"

#define HMB "DUO:0000006"
#define DS "DUO:0000007"
#define POA "DUO:0000011"

struct fx {
    char *dir;
    int dirfd;
    struct ant_store *st;
    int64_t now;
    char draft[ANT_ID_MAX + 1], pub[ANT_ID_MAX + 1], wd[ANT_ID_MAX + 1];
    char open_ds[ANT_ID_MAX + 1], sens[ANT_ID_MAX + 1];
};

static void add_principal(struct fx *f, const char *name, const char *tenant, unsigned roles)
{
    assert_int_equal(ant_store_principal_add(f->st, name, tenant, roles), 0);
}

static void make_ds(struct fx *f, const char *name, enum ant_ds_class cls, const char *duo,
                    char id[ANT_ID_MAX + 1])
{
    static const char *const regions[] = {"EU-MD"};
    const char *duos[] = {duo};
    struct ant_dataset_spec spec = {"acme", name, NULL, cls, regions, 1, duos, duo ? 1u : 0u};
    assert_int_equal(ant_store_dataset_create(f->st, &spec, id), 0);
}

static void grant(struct fx *f, const char *ds, enum ant_grantee_kind k, const char *who,
                  unsigned acts, const char *purpose, int64_t nbf, int64_t exp, char *id_out)
{
    char id[ANT_ID_MAX + 1];
    struct ant_grant_spec g = {ds, k, who, acts, purpose, nbf, exp, "alice"};
    assert_int_equal(ant_store_grant_create(f->st, &g, id), 0);
    if (id_out != NULL) {
        strcpy(id_out, id);
    }
}

/* Tenants acme (owns everything) and beta; one principal per caller kind of the matrix; three
 * internal datasets (draft, published, withdrawn) with DUO HMB and region EU-MD, each with the
 * same grants; an open and a sensitive published dataset. */
static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    uint8_t m[32] = {7};
    assert_non_null(f);
    f->dir = test_tmpdir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", ANT_STORE_CREATE, &f->st), 0);
    f->now = ant_now_unix();
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_tenant_add(f->st, "beta"), 0);
    add_principal(f, "alice", "acme", ANT_ROLE_OWNER);
    add_principal(f, "rita", "acme", ANT_ROLE_READER);
    add_principal(f, "audrey", "acme", ANT_ROLE_AUDITOR);
    add_principal(f, "root", NULL, ANT_ROLE_ADMIN);
    add_principal(f, "bob", "beta", ANT_ROLE_READER);
    add_principal(f, "gina", "beta", ANT_ROLE_READER);
    add_principal(f, "ed", "beta", ANT_ROLE_READER);
    add_principal(f, "rex", "beta", ANT_ROLE_READER);
    add_principal(f, "wendy", "beta", ANT_ROLE_READER);
    add_principal(f, "kim", "beta", ANT_ROLE_READER);
    make_ds(f, "draft", ANT_DS_INTERNAL, HMB, f->draft);
    make_ds(f, "pub", ANT_DS_INTERNAL, HMB, f->pub);
    make_ds(f, "wd", ANT_DS_INTERNAL, HMB, f->wd);
    make_ds(f, "open", ANT_DS_OPEN, NULL, f->open_ds);
    make_ds(f, "sens", ANT_DS_SENSITIVE, NULL, f->sens);
    const char *all[] = {f->draft, f->pub, f->wd};
    for (int i = 0; i < 3; i++) {
        char gid[ANT_ID_MAX + 1];
        grant(f, all[i], ANT_GRANTEE_PRINCIPAL, "gina", ANT_ACT_GRANTABLE, HMB, 0, 0, NULL);
        grant(f, all[i], ANT_GRANTEE_PRINCIPAL, "ed", ANT_ACT_GRANTABLE, HMB, 0, f->now + 50, NULL);
        grant(f, all[i], ANT_GRANTEE_PRINCIPAL, "rex", ANT_ACT_GRANTABLE, HMB, 0, 0, gid);
        assert_int_equal(ant_store_grant_revoke(f->st, gid, 0), 0);
        grant(f, all[i], ANT_GRANTEE_PRINCIPAL, "wendy", ANT_ACT_GRANTABLE, DS, 0, 0, NULL);
    }
    assert_int_equal(ant_store_dataset_publish(f->st, f->pub, m), 0);
    assert_int_equal(ant_store_dataset_publish(f->st, f->wd, m), 0);
    assert_int_equal(ant_store_dataset_withdraw(f->st, f->wd), 0);
    assert_int_equal(ant_store_dataset_publish(f->st, f->open_ds, m), 0);
    assert_int_equal(ant_store_dataset_publish(f->st, f->sens, m), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ant_store_close(f->st);
    close(f->dirfd);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static struct ant_principal who(struct fx *f, const char *name)
{
    struct ant_principal p;
    assert_int_equal(ant_store_principal_get(f->st, name, &p), 0);
    return p;
}

/* Decides with purpose HMB and destination EU-MD at f->now + 100 (past ed's grant expiry). */
static struct ant_decision dec(struct fx *f, const struct ant_principal *p, unsigned act,
                               const char *ds, const struct ant_decide_ctx *ctx_in)
{
    struct ant_decide_ctx ctx = {HMB, "EU-MD", "site-b", false, f->now + 100};
    struct ant_decision d;
    if (ctx_in != NULL) {
        ctx = *ctx_in;
    }
    assert_int_equal(ant_decide(f->st, p, act, ds, &ctx, &d), 0);
    assert_non_null(d.reason);
    assert_true(d.message[0] != '\0');
    return d;
}

static void assert_reason(struct ant_decision d, bool allow, const char *reason)
{
    if (d.allow != allow || strcmp(d.reason, reason) != 0) {
        fail_msg("got %s %s (%s), want %s %s", d.allow ? "allow" : "deny", d.reason, d.message,
                 allow ? "allow" : "deny", reason);
    }
}

/* --- one test per rule --- */

static void test_rule1_no_principal_is_denied(void **state)
{
    struct fx *f = *state;
    struct ant_principal nobody;
    memset(&nobody, 0, sizeof(nobody));
    assert_reason(dec(f, &nobody, ANT_ACT_DESCRIBE, f->open_ds, NULL), false, "no_principal");
    assert_reason(dec(f, NULL, ANT_ACT_DESCRIBE, f->open_ds, NULL), false, "no_principal");
}

static void test_rule2_unknown_dataset_is_not_found(void **state)
{
    struct fx *f = *state;
    struct ant_principal p = who(f, "alice");
    struct ant_decision d = dec(f, &p, ANT_ACT_READ, "ds_0000000000000000", NULL);
    assert_reason(d, false, "dataset_not_found");
    assert_false(d.visible);
    char longid[300];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_reason(dec(f, &p, ANT_ACT_READ, longid, NULL), false, "dataset_not_found");
    struct ant_decision out;
    assert_int_equal(ant_decide(f->st, &p, ANT_ACT_READ | ANT_ACT_STAGE, f->pub, NULL, &out),
                     -EINVAL);
}

static void test_rule3_draft_invisible_outside_tenant_even_with_grant(void **state)
{
    struct fx *f = *state;
    struct ant_principal gina = who(f, "gina"), rita = who(f, "rita");
    struct ant_decision d = dec(f, &gina, ANT_ACT_READ, f->draft, NULL);
    assert_reason(d, false, "dataset_not_found");
    assert_false(d.visible);
    assert_reason(dec(f, &rita, ANT_ACT_READ, f->draft, NULL), true, "role_reader");
}

static void test_rule4_withdrawn_dataset_releases_nothing(void **state)
{
    struct fx *f = *state;
    struct ant_principal alice = who(f, "alice");
    assert_reason(dec(f, &alice, ANT_ACT_READ, f->wd, NULL), false, "dataset_withdrawn");
    assert_reason(dec(f, &alice, ANT_ACT_GRANT, f->wd, NULL), false, "dataset_withdrawn");
    assert_reason(dec(f, &alice, ANT_ACT_DESCRIBE, f->wd, NULL), true, "role_owner");
    assert_reason(dec(f, &alice, ANT_ACT_WRITE, f->pub, NULL), false, "dataset_not_draft");
    assert_reason(dec(f, &alice, ANT_ACT_WITHDRAW, f->draft, NULL), false,
                  "dataset_not_published");
}

static void test_rule5_residency_beats_roles_and_grants(void **state)
{
    struct fx *f = *state;
    struct ant_principal alice = who(f, "alice"), gina = who(f, "gina");
    struct ant_decide_ctx us = {HMB, "US-CA", "site-us", false, f->now + 100};
    struct ant_decide_ctx none = {HMB, NULL, NULL, false, f->now + 100};
    assert_reason(dec(f, &alice, ANT_ACT_TRANSFER, f->pub, &us), false, "residency");
    assert_reason(dec(f, &gina, ANT_ACT_TRANSFER, f->pub, &us), false, "residency");
    assert_reason(dec(f, &gina, ANT_ACT_TRANSFER, f->pub, &none), false, "residency");
    assert_reason(dec(f, &gina, ANT_ACT_TRANSFER, f->pub, NULL), true, "grant");
    /* residency is about transfers: staging stays on this site */
    assert_reason(dec(f, &gina, ANT_ACT_STAGE, f->pub, &us), true, "grant");
}

static void test_rule6_sensitive_never_leaves_decrypted(void **state)
{
    struct fx *f = *state;
    struct ant_principal alice = who(f, "alice");
    struct ant_decide_ctx plain = {NULL, "EU-MD", "site-b", true, 0};
    assert_reason(dec(f, &alice, ANT_ACT_READ, f->sens, &plain), false, "sensitive_plaintext");
    assert_reason(dec(f, &alice, ANT_ACT_TRANSFER, f->sens, &plain), false,
                  "sensitive_plaintext");
    /* decrypting into this site's scratch is allowed; encrypted reads too */
    assert_reason(dec(f, &alice, ANT_ACT_STAGE, f->sens, &plain), true, "role_owner");
    plain.plaintext = false;
    assert_reason(dec(f, &alice, ANT_ACT_READ, f->sens, &plain), true, "role_owner");
    plain.plaintext = true;
    assert_reason(dec(f, &alice, ANT_ACT_READ, f->pub, &plain), true, "role_owner");
}

static void exec_sql(struct fx *f, const char *sql)
{
    char path[4096];
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s", err);
    }
    sqlite3_close(db);
}

static void test_rule7_roles_come_from_the_role_actions_table(void **state)
{
    struct fx *f = *state;
    struct ant_principal rita = who(f, "rita"), root = who(f, "root"), audrey = who(f, "audrey");
    assert_reason(dec(f, &rita, ANT_ACT_READ, f->pub, NULL), true, "role_reader");
    assert_reason(dec(f, &rita, ANT_ACT_TRANSFER, f->pub, NULL), false, "no_grant");
    assert_reason(dec(f, &root, ANT_ACT_DESCRIBE, f->pub, NULL), true, "role_admin");
    assert_reason(dec(f, &root, ANT_ACT_READ, f->pub, NULL), false, "no_grant");
    assert_reason(dec(f, &audrey, ANT_ACT_READ, f->pub, NULL), false, "no_grant");
    /* Rules are data: take the row away and the role no longer allows. */
    exec_sql(f, "DELETE FROM role_actions WHERE role = 'reader' AND action = 'read'");
    assert_reason(dec(f, &rita, ANT_ACT_READ, f->pub, NULL), false, "no_grant");
    assert_reason(dec(f, &rita, ANT_ACT_STAGE, f->pub, NULL), true, "role_reader");
}

static void test_rule8_open_datasets_are_describable_by_all(void **state)
{
    struct fx *f = *state;
    struct ant_principal bob = who(f, "bob");
    struct ant_decision d = dec(f, &bob, ANT_ACT_DESCRIBE, f->open_ds, NULL);
    assert_reason(d, true, "public_describe");
    d = dec(f, &bob, ANT_ACT_READ, f->open_ds, NULL);
    assert_reason(d, false, "no_grant");
    assert_true(d.visible);
    d = dec(f, &bob, ANT_ACT_DESCRIBE, f->pub, NULL);
    assert_reason(d, false, "no_grant");
    assert_false(d.visible);
}

static void test_rule9_grant_validity_window_and_revocation(void **state)
{
    struct fx *f = *state;
    struct ant_principal kim = who(f, "kim");
    char gid[ANT_ID_MAX + 1];
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "kim", ANT_ACT_READ, NULL, f->now + 1000, 0, gid);
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, NULL), false, "grant_not_yet_valid");
    struct ant_decide_ctx later = {HMB, "EU-MD", NULL, false, f->now + 1001};
    struct ant_decision d = dec(f, &kim, ANT_ACT_READ, f->pub, &later);
    assert_reason(d, true, "grant");
    assert_string_equal(d.grant_id, gid);
    assert_reason(dec(f, &kim, ANT_ACT_STAGE, f->pub, &later), false, "grant_action_not_covered");
    /* a revocation takes effect at the next decision */
    assert_int_equal(ant_store_grant_revoke(f->st, gid, 0), 0);
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &later), false, "grant_revoked");
}

static void test_rule9_tenant_and_site_grants(void **state)
{
    struct fx *f = *state;
    struct ant_principal bob = who(f, "bob");
    grant(f, f->pub, ANT_GRANTEE_TENANT, "beta", ANT_ACT_STAGE, NULL, 0, 0, NULL);
    assert_reason(dec(f, &bob, ANT_ACT_STAGE, f->pub, NULL), true, "grant");
    assert_reason(dec(f, &bob, ANT_ACT_READ, f->pub, NULL), false, "grant_action_not_covered");
    /* A peer's principal: tenant grants do not apply (its tenant is the peer's), site ones do. */
    struct ant_principal fed;
    memset(&fed, 0, sizeof(fed));
    snprintf(fed.id, sizeof(fed.id), "carol@site-b");
    snprintf(fed.tenant, sizeof(fed.tenant), "beta");
    snprintf(fed.site, sizeof(fed.site), "site-b");
    assert_reason(dec(f, &fed, ANT_ACT_STAGE, f->pub, NULL), false, "no_grant");
    grant(f, f->pub, ANT_GRANTEE_SITE, "site-b", ANT_ACT_TRANSFER, NULL, 0, 0, NULL);
    assert_reason(dec(f, &fed, ANT_ACT_TRANSFER, f->pub, NULL), true, "grant");
    struct ant_principal peer;
    memset(&peer, 0, sizeof(peer));
    peer.kind = ANT_PRINCIPAL_SITE;
    snprintf(peer.id, sizeof(peer.id), "site-b");
    assert_reason(dec(f, &peer, ANT_ACT_TRANSFER, f->pub, NULL), true, "grant");
    /* a grant to a peer's tenant, qualified "lab@site-b", reaches that site's members only */
    struct ant_principal lab;
    memset(&lab, 0, sizeof(lab));
    snprintf(lab.id, sizeof(lab.id), "dana@site-b");
    snprintf(lab.tenant, sizeof(lab.tenant), "lab@site-b");
    snprintf(lab.site, sizeof(lab.site), "site-b");
    grant(f, f->pub, ANT_GRANTEE_TENANT, "lab@site-b", ANT_ACT_STAGE, NULL, 0, 0, NULL);
    assert_reason(dec(f, &lab, ANT_ACT_STAGE, f->pub, NULL), true, "grant");
    snprintf(lab.site, sizeof(lab.site), "site-c"); /* site-c cannot speak for site-b's lab */
    assert_reason(dec(f, &lab, ANT_ACT_STAGE, f->pub, NULL), false, "no_grant");
    /* a federated principal named like a local owner gets no role */
    snprintf(fed.id, sizeof(fed.id), "alice");
    snprintf(fed.tenant, sizeof(fed.tenant), "acme");
    fed.roles = ANT_ROLE_OWNER;
    assert_reason(dec(f, &fed, ANT_ACT_READ, f->pub, NULL), false, "grant_action_not_covered");
}

static void test_rule9_purpose_must_match_the_grant(void **state)
{
    struct fx *f = *state;
    struct ant_principal wendy = who(f, "wendy");
    struct ant_decide_ctx ds = {DS, "EU-MD", NULL, false, 0};
    assert_reason(dec(f, &wendy, ANT_ACT_READ, f->pub, NULL), false, "grant_purpose_mismatch");
    assert_reason(dec(f, &wendy, ANT_ACT_READ, f->pub, &ds), true, "grant");
}

static void test_rule10_purpose_checked_against_duo_conditions(void **state)
{
    struct fx *f = *state;
    struct ant_principal kim = who(f, "kim");
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "kim", ANT_ACT_READ, NULL, 0, 0, NULL);
    struct ant_decide_ctx c = {NULL, NULL, NULL, false, 0};
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &c), false, "purpose_required");
    c.purpose = POA; /* population origins: not health research */
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &c), false, "duo_incompatible");
    c.purpose = DS; /* disease-specific research is health research */
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &c), true, "grant");
    c.purpose = HMB;
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &c), true, "grant");
    /* the compatibility table is data */
    exec_sql(f, "INSERT INTO duo_purpose VALUES('DUO:0000006','DUO:0000011')");
    c.purpose = POA;
    assert_reason(dec(f, &kim, ANT_ACT_READ, f->pub, &c), true, "grant");
}

static void test_rule11_default_is_deny(void **state)
{
    struct fx *f = *state;
    struct ant_principal bob = who(f, "bob");
    assert_reason(dec(f, &bob, ANT_ACT_STAGE, f->open_ds, NULL), false, "no_grant");
    assert_reason(dec(f, &bob, ANT_ACT_PUBLISH, f->open_ds, NULL), false, "dataset_not_draft");
    assert_reason(dec(f, &bob, ANT_ACT_GRANT, f->open_ds, NULL), false, "no_grant");
}

static void test_explain_lists_rules_in_order_and_the_decider(void **state)
{
    struct fx *f = *state;
    struct ant_principal gina = who(f, "gina");
    struct ant_decide_ctx us = {HMB, "US-CA", "site-us", false, 0};
    struct ant_decision d;
    json_t *rules = NULL;
    assert_int_equal(ant_explain(f->st, &gina, ANT_ACT_TRANSFER, f->pub, &us, &d, &rules), 0);
    assert_false(d.allow);
    assert_string_equal(d.reason, "residency");
    static const char *const want[] = {"principal", "dataset", "draft", "state", "residency"};
    assert_int_equal(json_array_size(rules), ANT_ARRAY_LEN(want));
    for (size_t i = 0; i < ANT_ARRAY_LEN(want); i++) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(rules, i), "rule")),
                            want[i]);
    }
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(rules, 4), "result")), "deny");
    json_decref(rules);
    struct ant_decide_ctx hmb = {HMB, NULL, NULL, false, 0};
    assert_int_equal(ant_explain(f->st, &gina, ANT_ACT_READ, f->pub, &hmb, &d, &rules), 0);
    assert_true(d.allow);
    json_t *last = json_array_get(rules, json_array_size(rules) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "rule")), "grant");
    assert_string_equal(json_string_value(json_object_get(last, "result")), "allow");
    json_t *j = ant_decision_json(&d);
    assert_string_equal(json_string_value(json_object_get(j, "decision")), "allow");
    assert_string_equal(json_string_value(json_object_get(j, "grant_id")), d.grant_id);
    json_decref(j);
    json_decref(rules);
}

static void test_tenant_level_audit_and_admin(void **state)
{
    struct fx *f = *state;
    struct ant_principal audrey = who(f, "audrey"), root = who(f, "root"), bob = who(f, "bob");
    struct ant_decision d;
    assert_int_equal(ant_decide_tenant(f->st, &audrey, ANT_ACT_AUDIT, "acme", &d), 0);
    assert_reason(d, true, "role_auditor");
    assert_int_equal(ant_decide_tenant(f->st, &audrey, ANT_ACT_AUDIT, "beta", &d), 0);
    assert_reason(d, false, "no_role");
    assert_int_equal(ant_decide_tenant(f->st, &audrey, ANT_ACT_AUDIT, NULL, &d), 0);
    assert_reason(d, false, "no_role");
    assert_int_equal(ant_decide_tenant(f->st, &root, ANT_ACT_AUDIT, NULL, &d), 0);
    assert_reason(d, true, "role_admin");
    assert_int_equal(ant_decide_tenant(f->st, &root, ANT_ACT_ADMIN, NULL, &d), 0);
    assert_reason(d, true, "role_admin");
    assert_int_equal(ant_decide_tenant(f->st, &bob, ANT_ACT_ADMIN, NULL, &d), 0);
    assert_reason(d, false, "no_role");
    assert_int_equal(ant_decide_tenant(f->st, &bob, ANT_ACT_READ, NULL, &d), -EINVAL);
}

/* The catalogue listing and the describe decision are one rule written twice (SQL for lists,
 * rules for single objects): they must agree for every caller and dataset. */
static void test_visible_listing_agrees_with_describe(void **state)
{
    struct fx *f = *state;
    static const char *const callers[] = {"alice", "rita", "audrey", "root", "bob",
                                          "gina",  "ed",   "rex",    "wendy", "kim"};
    const char *all[] = {f->draft, f->pub, f->wd, f->open_ds, f->sens};
    struct ant_decide_ctx ctx = {HMB, "EU-MD", NULL, false, f->now + 100};
    for (size_t c = 0; c < ANT_ARRAY_LEN(callers); c++) {
        struct ant_principal p = who(f, callers[c]);
        json_t *list = NULL;
        assert_int_equal(ant_store_dataset_list_visible(f->st, &p, f->now + 100, &list), 0);
        for (size_t i = 0; i < ANT_ARRAY_LEN(all); i++) {
            bool listed = false;
            size_t k;
            json_t *o;
            json_array_foreach(list, k, o)
            {
                listed = listed || strcmp(json_string_value(json_object_get(o, "id")), all[i]) == 0;
            }
            struct ant_decision d = dec(f, &p, ANT_ACT_DESCRIBE, all[i], &ctx);
            if (listed != d.allow) {
                fail_msg("%s, dataset %zu: listed %d, describe %s (%s)", callers[c], i, listed,
                         d.allow ? "allow" : "deny", d.reason);
            }
        }
        json_decref(list);
    }
}

/* --- the matrix --- */

/* One row per caller kind, one string per dataset state (draft, published, withdrawn), one
 * letter per action in g_matrix_actions: A allow, D deny (403: the caller may know it exists),
 * N deny as not found (404), K the credential is rejected before any decision. */
static const unsigned g_matrix_actions[] = {ANT_ACT_DESCRIBE, ANT_ACT_READ,    ANT_ACT_STAGE,
                                            ANT_ACT_TRANSFER, ANT_ACT_WRITE,   ANT_ACT_PUBLISH,
                                            ANT_ACT_WITHDRAW, ANT_ACT_GRANT};
static const struct {
    const char *caller;
    const char *name;
    const char *want[3];
} g_matrix[] = {
    /*                                      draft       published   withdrawn */
    {"owner", "alice", {"AAAAAADA", "AAAADDAA", "ADDDDDDD"}},
    {"reader of owner tenant", "rita", {"AAADDDDD", "AAADDDDD", "ADDDDDDD"}},
    {"other tenant", "bob", {"NNNNNNNN", "NNNNNNNN", "NNNNNNNN"}},
    {"other tenant with grant", "gina", {"NNNNNNNN", "AAAADDDD", "ADDDDDDD"}},
    {"other tenant, expired grant", "ed", {"NNNNNNNN", "NNNNNNNN", "NNNNNNNN"}},
    {"other tenant, revoked grant", "rex", {"NNNNNNNN", "NNNNNNNN", "NNNNNNNN"}},
    {"other tenant, wrong purpose", "wendy", {"NNNNNNNN", "ADDDDDDD", "ADDDDDDD"}},
    {"auditor", "audrey", {"ADDDDDDD", "ADDDDDDD", "ADDDDDDD"}},
    {"admin", "root", {"NNNNNNNN", "ADDDDDDD", "ADDDDDDD"}},
    {"revoked key", "alice", {"KKKKKKKK", "KKKKKKKK", "KKKKKKKK"}},
};

static void test_matrix_callers_actions_states(void **state)
{
    struct fx *f = *state;
    const char *ds[3] = {f->draft, f->pub, f->wd};
    struct ant_buf key = ANT_BUF_INIT(256);
    char kid[ANT_KEY_ID_LEN + 1];
    int failures = 0;
    assert_int_equal(ant_store_key_create(f->st, "alice", 0, &key, kid), 0);
    assert_int_equal(ant_store_key_revoke(f->st, kid), 0);
    for (size_t c = 0; c < ANT_ARRAY_LEN(g_matrix); c++) {
        struct ant_principal p;
        int arc;
        if (strcmp(g_matrix[c].caller, "revoked key") == 0) {
            arc = ant_store_authenticate_key(f->st, ant_buf_view(&key), f->now, &p);
        } else {
            arc = ant_store_principal_get(f->st, g_matrix[c].name, &p);
        }
        for (int s = 0; s < 3; s++) {
            for (size_t a = 0; a < ANT_ARRAY_LEN(g_matrix_actions); a++) {
                char want = g_matrix[c].want[s][a], got;
                const char *why = "";
                if (arc < 0) {
                    got = arc == -EKEYREJECTED ? 'K' : '?';
                } else {
                    struct ant_decision d = dec(f, &p, g_matrix_actions[a], ds[s], NULL);
                    got = d.allow ? 'A' : d.visible ? 'D' : 'N';
                    why = d.reason;
                }
                if (got != want) {
                    print_error("%s x %s x %s: got %c (%s), want %c\n", g_matrix[c].caller,
                                ant_action_name(g_matrix_actions[a]),
                                ant_ds_state_name((enum ant_ds_state)s), got, why, want);
                    failures++;
                }
            }
        }
    }
    ant_buf_wipe_fini(&key);
    assert_int_equal(failures, 0);
}

/* --- how long a decision holds, and the hot-path cache --- */

/* get_store for ant_decide_cached: the fixture's store, counting the catalog reads. */
struct store_arg {
    struct fx *f;
    int reads;
};

static struct ant_store *get_store(void *arg)
{
    struct store_arg *a = arg;
    a->reads++;
    return a->f->st;
}

static struct ant_decision dec_at(struct fx *f, const struct ant_principal *p, unsigned act,
                                  const char *ds, const char *purpose, int64_t now)
{
    struct ant_decide_ctx ctx = {purpose, NULL, NULL, false, now};
    return dec(f, p, act, ds, &ctx);
}

static void test_valid_until_is_the_next_grant_boundary(void **state)
{
    struct fx *f = *state;
    add_principal(f, "val", "beta", ANT_ROLE_READER);
    struct ant_principal val = who(f, "val");
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "val", ANT_ACT_READ, HMB, f->now + 10, f->now + 20,
          NULL);
    struct ant_decision d = dec_at(f, &val, ANT_ACT_READ, f->pub, HMB, f->now);
    assert_reason(d, false, "grant_not_yet_valid");
    assert_int_equal(d.valid_until, f->now + 10);
    d = dec_at(f, &val, ANT_ACT_READ, f->pub, HMB, f->now + 10);
    assert_reason(d, true, "grant");
    assert_int_equal(d.valid_until, f->now + 20);
    d = dec_at(f, &val, ANT_ACT_READ, f->pub, HMB, f->now + 20);
    assert_reason(d, false, "grant_expired");
    assert_int_equal(d.valid_until, INT64_MAX);
    /* a denial whose visibility a live grant decides (has_live_grant) is bounded the same way */
    d = dec_at(f, &val, ANT_ACT_WRITE, f->pub, NULL, f->now + 9);
    assert_reason(d, false, "dataset_not_draft");
    assert_false(d.visible);
    assert_int_equal(d.valid_until, f->now + 10);
    d = dec_at(f, &val, ANT_ACT_WRITE, f->pub, NULL, f->now + 10);
    assert_true(d.visible);
    assert_int_equal(d.valid_until, f->now + 20);
    /* a decision no grant took part in holds until the catalog changes */
    struct ant_principal alice = who(f, "alice");
    assert_int_equal(dec_at(f, &alice, ANT_ACT_READ, f->pub, NULL, f->now).valid_until,
                     INT64_MAX);
}

static struct ant_decision cached(struct ant_hotcache *c, struct store_arg *a,
                                  const struct ant_principal *p, unsigned act, const char *ds,
                                  const char *purpose, int64_t now, int64_t now_ns, bool want_hit)
{
    struct ant_decide_ctx ctx = {purpose, NULL, NULL, false, 0};
    struct ant_decision d;
    bool hit = !want_hit;
    int reads = a->reads;
    assert_int_equal(ant_decide_cached(c, get_store, a, p, act, ds, &ctx, now, now_ns, &d, &hit),
                     0);
    if (hit != want_hit) {
        fail_msg("cache %s, want a %s (%s %s)", hit ? "hit" : "miss", want_hit ? "hit" : "miss",
                 d.allow ? "allow" : "deny", d.reason);
    }
    assert_int_equal(a->reads, reads + (want_hit ? 0 : 1)); /* a hit reads no catalog */
    return d;
}

static void test_cached_decision_dies_at_the_grant_boundary(void **state)
{
    struct fx *f = *state;
    struct ant_hotcache *c;
    struct store_arg a = {f, 0};
    const int64_t t = 1000000000000LL, ms = 1000000;
    assert_int_equal(ant_hotcache_new(64, sizeof(struct ant_decision), &c), 0);
    add_principal(f, "val", "beta", ANT_ROLE_READER);
    struct ant_principal val = who(f, "val");
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "val", ANT_ACT_READ, HMB, f->now + 10, f->now + 20,
          NULL);
    /* all within the same 100 ms: only the grant's boundaries end the entries */
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now + 9, t, false), false,
                  "grant_not_yet_valid");
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now + 9, t + ms, true), false,
                  "grant_not_yet_valid");
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now + 10, t + 2 * ms, false),
                  true, "grant");
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now + 19, t + 3 * ms, true),
                  true, "grant");
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now + 20, t + 4 * ms, false),
                  false, "grant_expired");
    /* an explicit time in ctx is refused: the cache's clock is its arguments */
    struct ant_decide_ctx ctx = {HMB, NULL, NULL, false, f->now};
    struct ant_decision d;
    assert_int_equal(ant_decide_cached(c, get_store, &a, &val, ANT_ACT_READ, f->pub, &ctx, f->now,
                                       t, &d, NULL),
                     -EINVAL);
    ant_hotcache_free(c);
}

static void test_cached_decision_lives_at_most_one_second_and_dies_on_invalidate(void **state)
{
    struct fx *f = *state;
    struct ant_hotcache *c;
    struct store_arg a = {f, 0};
    const int64_t t = 1000000000000LL, ms = 1000000;
    char gid[ANT_ID_MAX + 1];
    assert_int_equal(ant_hotcache_new(64, sizeof(struct ant_decision), &c), 0);
    add_principal(f, "val", "beta", ANT_ROLE_READER);
    struct ant_principal val = who(f, "val");
    /* valid from f->now (not from the moment of creation, which may be a second later) */
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "val", ANT_ACT_READ, HMB, f->now, 0, gid);
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now, t, false), true, "grant");
    /* revoked behind the cache's back (as the admin CLI does, from another process) */
    assert_int_equal(ant_store_grant_revoke(f->st, gid, f->now), 0);
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now, t + 999 * ms, true), true,
                  "grant");
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now, t + 1000 * ms, false),
                  false, "grant_revoked");
    /* a new grant; a write through the server empties the cache at once */
    grant(f, f->pub, ANT_GRANTEE_PRINCIPAL, "val", ANT_ACT_READ, HMB, f->now, 0, NULL);
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now, t + 1001 * ms, true),
                  false, "grant_revoked");
    ant_hotcache_invalidate(c);
    assert_reason(cached(c, &a, &val, ANT_ACT_READ, f->pub, HMB, f->now, t + 1002 * ms, false),
                  true, "grant");
    ant_hotcache_free(c);
}

/* Asks twice: a miss that reads the catalog, then the same answer from the cache. */
static struct ant_decision cached_twice(struct ant_hotcache *c, struct store_arg *a,
                                        const struct ant_principal *p, unsigned act,
                                        const char *ds, const char *purpose, int64_t now,
                                        int64_t now_ns)
{
    struct ant_decision d = cached(c, a, p, act, ds, purpose, now, now_ns, false);
    struct ant_decision again = cached(c, a, p, act, ds, purpose, now, now_ns, true);
    assert_int_equal(again.allow, d.allow);
    assert_string_equal(again.reason, d.reason);
    assert_string_equal(again.message, d.message);
    return d;
}

static void test_cache_keeps_questions_apart(void **state)
{
    struct fx *f = *state;
    struct ant_hotcache *c;
    struct store_arg a = {f, 0};
    const int64_t t = 1000000000000LL;
    /* the setup's grants start when they were made, which may be a second or two after
     * f->now on a loaded machine: ask later, as dec() does */
    const int64_t now = f->now + 100;
    assert_int_equal(ant_hotcache_new(64, sizeof(struct ant_decision), &c), 0);
    struct ant_principal gina = who(f, "gina"), wendy = who(f, "wendy"), bob = who(f, "bob");
    /* each question is a miss right after the others were cached: another purpose, principal,
     * action, dataset or set of roles is another key (a slot collision would only evict) */
    assert_reason(cached_twice(c, &a, &gina, ANT_ACT_READ, f->pub, HMB, now, t), true, "grant");
    assert_reason(cached_twice(c, &a, &gina, ANT_ACT_READ, f->pub, NULL, now, t), false,
                  "grant_purpose_mismatch");
    assert_reason(cached_twice(c, &a, &wendy, ANT_ACT_READ, f->pub, HMB, now, t), false,
                  "grant_purpose_mismatch");
    assert_reason(cached_twice(c, &a, &gina, ANT_ACT_READ, f->wd, HMB, now, t), false,
                  "dataset_withdrawn");
    assert_reason(cached_twice(c, &a, &gina, ANT_ACT_STAGE, f->wd, HMB, now, t), false,
                  "dataset_withdrawn");
    assert_reason(cached_twice(c, &a, &bob, ANT_ACT_READ, f->pub, HMB, now, t), false,
                  "no_grant");
    struct ant_principal bob_admin = bob;
    bob_admin.roles |= ANT_ROLE_ADMIN;
    cached_twice(c, &a, &bob_admin, ANT_ACT_READ, f->pub, HMB, now, t);
    /* without a cache every question reads the catalog */
    cached(NULL, &a, &gina, ANT_ACT_READ, f->pub, HMB, f->now, t, false);
    cached(NULL, &a, &gina, ANT_ACT_READ, f->pub, HMB, f->now, t, false);
    ant_hotcache_free(c);
}

static void test_hotcache_entry_from_a_read_before_invalidate_is_dead(void **state)
{
    (void)state;
    struct ant_hotcache *c;
    char out[16];
    size_t len = 0;
    const int64_t t = 5000000000LL;
    assert_int_equal(ant_hotcache_new(16, 8, &c), 0);
    /* a reader takes the generation, then a write empties the cache, then the reader puts
     * what it read before the write: that entry must not be served */
    uint64_t gen = ant_hotcache_gen(c);
    ant_hotcache_invalidate(c);
    ant_hotcache_put(c, "k", 1, gen, t, INT64_MAX, "old", 3);
    assert_false(ant_hotcache_get(c, "k", 1, t, 0, out, sizeof(out), &len));
    ant_hotcache_put(c, "k", 1, ant_hotcache_gen(c), t, INT64_MAX, "new", 3);
    assert_true(ant_hotcache_get(c, "k", 1, t, 0, out, sizeof(out), &len));
    assert_int_equal(len, 3);
    assert_memory_equal(out, "new", 3);
    assert_false(ant_hotcache_get(c, "K", 1, t, 0, out, sizeof(out), &len));
    /* one second after t, and at valid_until, the entry is gone */
    assert_false(ant_hotcache_get(c, "k", 1, t + ANT_HOTCACHE_NS, 0, out, sizeof(out), &len));
    ant_hotcache_put(c, "k", 1, ant_hotcache_gen(c), t, 100, "new", 3);
    assert_true(ant_hotcache_get(c, "k", 1, t, 99, out, sizeof(out), &len));
    assert_false(ant_hotcache_get(c, "k", 1, t, 100, out, sizeof(out), &len));
    /* too big to keep, or to hand out */
    ant_hotcache_put(c, "big", 3, ant_hotcache_gen(c), t, INT64_MAX, "123456789", 9);
    assert_false(ant_hotcache_get(c, "big", 3, t, 0, out, sizeof(out), &len));
    ant_hotcache_put(c, "k", 1, ant_hotcache_gen(c), t, INT64_MAX, "12345678", 8);
    assert_false(ant_hotcache_get(c, "k", 1, t, 0, out, 4, &len));
    assert_int_equal(ant_hotcache_new(0, 8, &c), -EINVAL);
    ant_hotcache_free(c);
    ant_hotcache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rule1_no_principal_is_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule2_unknown_dataset_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule3_draft_invisible_outside_tenant_even_with_grant,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule4_withdrawn_dataset_releases_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule5_residency_beats_roles_and_grants, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule6_sensitive_never_leaves_decrypted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule7_roles_come_from_the_role_actions_table, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule8_open_datasets_are_describable_by_all, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule9_grant_validity_window_and_revocation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule9_tenant_and_site_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule9_purpose_must_match_the_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule10_purpose_checked_against_duo_conditions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule11_default_is_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explain_lists_rules_in_order_and_the_decider, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tenant_level_audit_and_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visible_listing_agrees_with_describe, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_matrix_callers_actions_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_until_is_the_next_grant_boundary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cached_decision_dies_at_the_grant_boundary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_cached_decision_lives_at_most_one_second_and_dies_on_invalidate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_keeps_questions_apart, setup, teardown),
        cmocka_unit_test(test_hotcache_entry_from_a_read_before_invalidate_is_dead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
