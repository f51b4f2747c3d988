/* Unit tests for gateway/api.h's request value parsers (the HTTP plumbing around them is
 * covered by the integration tests). */
#include "gateway/api.h"
#include "tests/unit/testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_parse_time_forms(void **state)
{
    (void)state;
    int64_t t = -1;
    assert_int_equal(ant_api_parse_time("1700000000", &t), 0);
    assert_int_equal(t, 1700000000);
    assert_int_equal(ant_api_parse_time("2026-11-27T03:00:00Z", &t), 0);
    assert_int_equal(t, 1795748400);
    assert_int_equal(ant_api_parse_time("2024-02-29T00:00:00Z", &t), 0); /* a leap year */
    assert_int_equal(t, 1709164800);
    assert_int_equal(ant_api_parse_time("2000-02-29T00:00:00Z", &t), 0); /* 400 divides it */
    assert_int_equal(t, 951782400);
    /* a leap second is the instant after :59 */
    assert_int_equal(ant_api_parse_time("2016-12-31T23:59:60Z", &t), 0);
    assert_int_equal(t, 1483228800);
    assert_int_equal(ant_api_parse_time("9999-12-31T23:59:59Z", &t), 0);
    assert_int_equal(t, 253402300799);
}

/* Calendar days that do not exist are refused, not rolled into the next month
 * (fuzz_api_values: "2023-02-31T00:00:00Z" was March 3rd). */
static void test_parse_time_refuses_impossible_dates(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "2023-02-31T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-06-31T12:00:00Z", "2026-09-31T12:00:00Z",
        "2026-11-31T12:00:00Z", "2026-00-10T12:00:00Z", "2026-13-10T12:00:00Z",
        "2026-01-00T12:00:00Z", "2026-01-32T12:00:00Z", "2026-01-10T24:00:00Z",
        "2026-01-10T12:60:00Z", "2026-01-10T12:00:61Z", "2026-01-10T12:00:60Z",
        "2026-01-10 12:00:00Z", "2026-01-10T12:00:00",  "2026-01-10T12:00:00+00:00",
        "1969-12-31T23:59:59Z", "-1",                   "",
        "253402300800",         "2026-1-10T12:00:00Z",  "2026-01-10T12:00:0xZ",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        int64_t t = 42;
        assert_int_equal(ant_api_parse_time(bad[i], &t), -EINVAL);
        assert_int_equal(t, 42); /* untouched */
    }
}

/* Route parameters come percent-decoded from the URL: any bytes. Those that are not UTF-8 or
 * hold a control character name nothing (and could not be audited): -ENOENT. */
static void test_param_refuses_bytes_no_name_has(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int rc;
    } cases[] = {
        {"ds_0123abcd", 11, 0},
        {"caf\xc3\xa9", 5, 0},
        {"\xf0\x9f\x93\xa1x", 5, 0},
        {"t\xff\xff\xff\xffk_n", 9, -ENOENT},
        {"k_\0x", 4, -ENOENT},
        {"k\x01", 2, -ENOENT},
        {"k\x7f", 2, -ENOENT},
        {"\xc3", 1, -ENOENT},          /* cut short */
        {"\xc0\xaf", 2, -ENOENT},      /* overlong '/' */
        {"\xed\xa0\x80", 3, -ENOENT},  /* a surrogate */
        {"\xf4\x90\x80\x80", 4, -ENOENT}, /* past U+10FFFF */
        {"abcdefghijklmnop", 16, -ENOENT}, /* does not fit out */
        {"k_-----BEGIN X", 14, -ENOENT},   /* the audit log refuses a PEM marker */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ant_req r;
        memset(&r, 0, sizeof(r));
        r.params[0] = ant_bytes_of(cases[i].s, cases[i].len);
        r.nparams = 1;
        char out[16];
        assert_int_equal(ant_api_param(&r, 0, out, sizeof(out)), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_int_equal(strlen(out), cases[i].len);
            assert_memory_equal(out, cases[i].s, cases[i].len);
        }
    }
    struct ant_req r;
    memset(&r, 0, sizeof(r));
    char out[16];
    assert_int_equal(ant_api_param(&r, 0, out, sizeof(out)), -ENOENT); /* no parameter 0 */
}

/* A value from the request that the audit log would refuse is recorded as "[redacted]"; any
 * other is kept as it is. */
static void test_audit_value_redacts_what_the_log_refuses(void **state)
{
    (void)state;
    char big[ANT_AUDIT_FIELD_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    static const char *const kept[] = {"ds_0123abcd", "caf\xc3\xa9", "eyJhbGci.sig", "ak_01_23"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        assert_ptr_equal(ant_api_audit_value(kept[i]), kept[i]);
    }
    const char *const gone[] = {
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig", "ak_0123_00112233445566778899aabbccddeeff",
        "x -----BEGIN PRIVATE KEY-----", "Bearer abcdefghijklmnopq", "a\nb", "\xff", big};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        assert_string_equal(ant_api_audit_value(gone[i]), "[redacted]");
    }
    assert_null(ant_api_audit_value(NULL));
    big[ANT_AUDIT_FIELD_MAX] = '\0';
    assert_ptr_equal(ant_api_audit_value(big), big); /* the longest the log takes */
}

static void expect_detail(const char *in, size_t flags, const char *want)
{
    json_t *d = json_loads(in, 0, NULL);
    assert_non_null(d);
    char *got = ant_api_audit_detail(d, flags);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_decref(d);
}

static void test_audit_detail_redacts_strings_at_any_depth(void **state)
{
    (void)state;
    expect_detail("{\"a\": 1, \"b\": \"plain\"}", JSON_COMPACT, "{\"a\":1,\"b\":\"plain\"}");
    expect_detail("{\"purpose\": \"Bearer abcdefghijklmnopq\", \"n\": 2}", JSON_COMPACT,
                  "{\"purpose\":\"[redacted]\",\"n\":2}");
    expect_detail("{\"z\": [\"ok\", \"eyJa.eyJbcdefg\", {\"k\": \"-----BEGIN X\"}], \"a\": \"x\"}",
                  JSON_COMPACT | JSON_SORT_KEYS,
                  "{\"a\":\"x\",\"z\":[\"ok\",\"[redacted]\",{\"k\":\"[redacted]\"}]}");
    /* a key so shaped, or a detail over the limit: the whole detail goes */
    expect_detail("{\"-----BEGIN X\": 1}", JSON_COMPACT, "{\"detail\":\"[redacted]\"}");
    size_t n = ANT_AUDIT_DETAIL_MAX + 16;
    char *long_doc = malloc(n + 16);
    assert_non_null(long_doc);
    memcpy(long_doc, "{\"k\": \"", 7);
    memset(long_doc + 7, 'x', n);
    memcpy(long_doc + 7 + n, "\"}", 3);
    expect_detail(long_doc, JSON_COMPACT, "{\"detail\":\"[redacted]\"}");
    free(long_doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time_forms),
        cmocka_unit_test(test_parse_time_refuses_impossible_dates),
        cmocka_unit_test(test_param_refuses_bytes_no_name_has),
        cmocka_unit_test(test_audit_value_redacts_what_the_log_refuses),
        cmocka_unit_test(test_audit_detail_redacts_strings_at_any_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
