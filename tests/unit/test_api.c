/* Unit tests for gateway/api.h's request value parsers (the HTTP plumbing around them is
 * covered by the integration tests). */
#include "gateway/api.h"
#include "tests/unit/testutil.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time_forms),
        cmocka_unit_test(test_parse_time_refuses_impossible_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
