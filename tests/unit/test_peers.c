/* policy/peers.h: peers, single use of federation tokens, the cache of peers' files. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/peers.h"
#include "tests/unit/testutil.h"

struct fx {
    char *dir;
    int dirfd;
    struct ant_store *st;
};

static const char g_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_tmpdir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->dirfd >= 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", ANT_STORE_CREATE, &f->st), 0);
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

static struct ant_peer peer_b(void)
{
    struct ant_peer p;
    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "site-b");
    snprintf(p.url, sizeof(p.url), "https://127.0.0.1:8444");
    snprintf(p.region, sizeof(p.region), "EU-MD");
    memset(p.x25519_pk, 0x11, sizeof(p.x25519_pk));
    memset(p.ed25519_pk, 0x22, sizeof(p.ed25519_pk));
    snprintf(p.added_by, sizeof(p.added_by), "cli:root");
    return p;
}

static void test_peer_add_get_list_remove(void **state)
{
    struct fx *f = *state;
    struct ant_peer p = peer_b(), got;
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), 0);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EEXIST);
    assert_int_equal(ant_peer_get(f->st, "site-b", &got), 0);
    assert_string_equal(got.url, p.url);
    assert_string_equal(got.region, "EU-MD");
    assert_memory_equal(got.x25519_pk, p.x25519_pk, 32);
    assert_memory_equal(got.ed25519_pk, p.ed25519_pk, 32);
    assert_true(got.added > 0);
    struct ant_buf a = ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX + 1);
    assert_int_equal(ant_peer_anchor(f->st, "site-b", &a), 0);
    assert_string_equal((const char *)a.p, g_pem);
    ant_buf_fini(&a);
    json_t *rows = NULL;
    assert_int_equal(ant_peer_list(f->st, &rows), 0);
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "id")),
                        "site-b");
    json_decref(rows);
    assert_int_equal(ant_peer_remove(f->st, "site-b"), 0);
    assert_int_equal(ant_peer_remove(f->st, "site-b"), -ENOENT);
    assert_int_equal(ant_peer_get(f->st, "site-b", &got), -ENOENT);
    assert_int_equal(ant_peer_get(f->st, "../x", &got), -ENOENT);
}

static void test_peer_add_refuses_bad_fields(void **state)
{
    struct fx *f = *state;
    static const char *const bad_urls[] = {
        "http://127.0.0.1:8444", "https://", "https://a@b", "https://a/?x", "https://a/",
        "https://a b", "https:///x", "ftp://x", "https://a#f",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad_urls); i++) {
        struct ant_peer p = peer_b();
        snprintf(p.url, sizeof(p.url), "%s", bad_urls[i]);
        assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    }
    struct ant_peer p = peer_b();
    memset(p.ed25519_pk, 0, 32);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    p = peer_b();
    snprintf(p.id, sizeof(p.id), "../b");
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    p = peer_b();
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str("not a certificate")), -EINVAL);
    assert_int_equal(ant_peer_add(f->st, &p, ANT_BYTES_NULL), -EINVAL);
    assert_true(ant_peer_url_is_valid("https://peer.example.org:8443/antenna"));
}

static void test_jti_is_accepted_once_and_purged_after_expiry(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 900), 0);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 950), -EALREADY);
    /* the same jti from another issuer is another token */
    assert_int_equal(ant_peer_jti_use(f->st, "site-c", "j1", 1000, 950), 0);
    /* once expired the row is purged; the verifier refuses the token on exp anyway */
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 2000, 1001), 0);
    assert_int_equal(ant_peer_jti_use(f->st, "", "j1", 2000, 1001), -EINVAL);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "", 2000, 1001), -EINVAL);
}

static void test_fed_cache_matches_on_body_digest(void **state)
{
    struct fx *f = *state;
    struct ant_peer p = peer_b();
    struct ant_fed_cached c, got;
    memset(&c, 0, sizeof(c));
    snprintf(c.storage, sizeof(c.storage), "fc_0011223344556677");
    c.size = 42;
    memset(c.sha256_c4gh, 0xab, 32);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), 0);
    assert_int_equal(ant_fed_cache_put(f->st, "site-b", "ds_1", "a/b.txt", &c), 0);
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", c.sha256_c4gh, &got), 0);
    assert_string_equal(got.storage, c.storage);
    assert_int_equal(got.size, 42);
    uint8_t other[32];
    memset(other, 0xac, sizeof(other));
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", other, &got), -ENOENT);
    assert_int_equal(ant_fed_cache_put(f->st, "site-b", "ds_1", "../x", &c), -EINVAL);
    /* a removed peer's copies are not served from cache */
    assert_int_equal(ant_peer_remove(f->st, "site-b"), 0);
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", c.sha256_c4gh, &got),
                     -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peer_add_get_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_add_refuses_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_is_accepted_once_and_purged_after_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_matches_on_body_digest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
