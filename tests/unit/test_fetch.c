/* staging/fetch.h: the manifest parser (the network paths run in test_federation.sh). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "staging/fetch.h"
#include "tests/unit/testutil.h"

#define Z64 "0000000000000000000000000000000000000000000000000000000000000000"
#define F64 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static const char g_valid[] =
    "{\"version\":1,\"site\":\"site-a\",\"peer\":\"site-b\",\"transfer_id\":\"tr_1\","
    "\"issued_at\":1,\"dataset\":{\"id\":\"ds_1\",\"name\":\"cohort\",\"tenant\":\"g\","
    "\"classification\":\"sensitive\"},\"files\":["
    "{\"path\":\"a/b.bin\",\"size\":6,\"body_size\":34,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" F64
    "\"},{\"path\":\"e\",\"size\":0,\"body_size\":0,\"sha256\":\"" F64 "\",\"sha256_c4gh\":\"" Z64
    "\"}]}";

static int parse(const char *s, size_t n, struct ant_fetch_manifest *m)
{
    uint8_t *p = test_memdup(s, n);
    int rc = ant_fetch_manifest_parse((struct ant_bytes){p, n}, "site-a", "ds_1", m, NULL);
    free(p);
    return rc;
}

static void test_manifest_valid_is_parsed(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    assert_int_equal(parse(g_valid, strlen(g_valid), &m), 0);
    assert_int_equal(m.nfiles, 2);
    assert_string_equal(m.dataset_id, "ds_1");
    assert_string_equal(m.dataset_name, "cohort");
    assert_string_equal(m.files[0].path, "a/b.bin");
    assert_int_equal(m.files[0].size, 6);
    assert_int_equal(m.files[0].body_size, 34);
    assert_int_equal(m.files[0].sha256_c4gh[31], 0xff);
    assert_int_equal(m.files[1].sha256[0], 0xff);
    ant_fetch_manifest_fini(&m);
    ant_fetch_manifest_fini(&m); /* idempotent */
}

static void test_manifest_rejects_every_truncation(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    size_t n = strlen(g_valid);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(parse(g_valid, i, &m), -EBADMSG);
    }
}

static void test_manifest_rejects_other_site_dataset_and_bad_entries(void **state)
{
    (void)state;
    struct ant_fetch_manifest m;
    static const char *const bad[] = {
        "{\"site\":\"site-x\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_2\",\"name\":\"c\"},\"files\":[]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":{}}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"../x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"/x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":-1,\"body_size\":29,\"sha256\":\"" Z64 "\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":1,\"body_size\":29,\"sha256\":\"00\",\"sha256_c4gh\":\"" Z64 "\"}]}",
        "{\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},\"files\":[{\"path\":"
        "\"x\",\"size\":1,\"body_size\":29,\"sha256\":\"" Z64 "\"}]}",
        ("{\"site\":\"site-a\",\"site\":\"site-a\",\"dataset\":{\"id\":\"ds_1\",\"name\":\"c\"},"
         "\"files\":[]}"),
        "[]",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(parse(bad[i], strlen(bad[i]), &m), -EBADMSG);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_valid_is_parsed),
        cmocka_unit_test(test_manifest_rejects_every_truncation),
        cmocka_unit_test(test_manifest_rejects_other_site_dataset_and_bad_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
