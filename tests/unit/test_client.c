/* Unit tests for gateway/client.h's parsing of answer header lines (the transfers themselves
 * are covered by the integration tests against a real site). */
#include "gateway/client.h"
#include "tests/unit/testutil.h"

#include <string.h>

static void feed(struct ant_client_hdrs *h, const char *line)
{
    ant_client_header_line(line, strlen(line), h);
}

static void test_header_line_keeps_tag_and_start(void **state)
{
    (void)state;
    struct ant_client_hdrs h = {.range_start = -1, .etag = ""};
    feed(&h, "HTTP/1.1 206 Partial Content\r\n");
    feed(&h, "ETag: \"abc123\"\r\n");
    feed(&h, "content-range:\tbytes 1000-1999/5000\r\n");
    assert_string_equal(h.etag, "\"abc123\"");
    assert_int_equal(h.range_start, 1000);
    /* a new answer (after a 429) forgets both */
    feed(&h, "HTTP/1.1 200 OK\r\n");
    assert_string_equal(h.etag, "");
    assert_int_equal(h.range_start, -1);
}

/* What is kept goes back into a header line and a file: only a strong tag of visible ASCII, and
 * only a start that is a whole number up to INT64_MAX. */
static void test_header_line_refuses_odd_values(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ETag: W/\"weak\"\r\n",
        "ETag: \"a b\"\r\n",
        "ETag: \"a\x01\"\r\n",
        "ETag: \"\xc3\xa9\"\r\n",
        "ETag: noquotes\r\n",
        "ETag: \"\r\n",
        ("ETag: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\r\n"), /* 128 bytes */
        "Content-Range: bytes */5000\r\n",
        "Content-Range: bytes 12\r\n",
        "Content-Range: bytes -5/10\r\n",
        "Content-Range: items 1-2/3\r\n",
        "Content-Range: bytes 92233720368547758070-1/2\r\n",
        "Content-Range: bytes 18446744073709551615-1/2\r\n",
        /* past INT64_MAX: was kept as a negative start (-8446744073709551617) */
        "Content-Range: bytes 9999999999999999999-1/2\r\n",
        "X-Content-Range: bytes 1-2/3\r\n",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        struct ant_client_hdrs h = {.range_start = -1, .etag = ""};
        feed(&h, bad[i]);
        assert_string_equal(h.etag, "");
        assert_int_equal(h.range_start, -1);
    }
    /* the line is not NUL-terminated where curl hands it over: only len bytes are read */
    struct ant_client_hdrs h = {.range_start = -1, .etag = ""};
    ant_client_header_line("Content-Range: bytes 77-99/100", 23, &h);
    assert_int_equal(h.range_start, -1); /* "bytes 77", the '-' past the line's end */
    ant_client_header_line("Content-Range: bytes 77-99/100", 24, &h);
    assert_int_equal(h.range_start, 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_line_keeps_tag_and_start),
        cmocka_unit_test(test_header_line_refuses_odd_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
