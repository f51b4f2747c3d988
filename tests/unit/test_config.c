/* Unit tests for gateway/config.h and the route matcher. */
#include "tests/unit/testutil.h"

#include "crypto/base/log.h"
#include "gateway/config.h"
#include "gateway/routes.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *text, struct ant_config *c, struct ant_diag *d)
{
    size_t n = strlen(text);
    uint8_t *copy = test_memdup(text, n);
    ant_config_defaults(c);
    memset(d, 0, sizeof(*d));
    int rc = ant_config_parse(ant_bytes_of(copy, n), "t.conf", c, d);
    free(copy);
    return rc;
}

static void test_config_rendered_defaults_parse_back(void **state)
{
    (void)state;
    struct ant_config c, back;
    struct ant_diag d;
    struct ant_buf out = ANT_BUF_INIT(65536);
    ant_config_defaults(&c);
    snprintf(c.site_id, sizeof(c.site_id), "site-a");
    snprintf(c.region, sizeof(c.region), "EU-IT");
    c.listen_port = 0;
    assert_int_equal(ant_config_render(&c, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    assert_int_equal(parse((const char *)out.p, &back, &d), 0);
    assert_string_equal(back.site_id, "site-a");
    assert_string_equal(back.region, "EU-IT");
    assert_int_equal(back.listen_port, 0);
    assert_true(back.max_upload_bytes == c.max_upload_bytes);
    assert_int_equal(back.default_ttl_s, c.default_ttl_s);
    assert_int_equal(back.log_level, c.log_level);
    assert_memory_equal(&back, &c, sizeof(c));
    ant_buf_fini(&out);
}

static void test_config_values(void **state)
{
    (void)state;
    struct ant_config c;
    struct ant_diag d;
    assert_int_equal(parse("# comment\n; other\n[server]\nlisten = [::1]:9443\n"
                           "max_json_body = 2M\r\nconnection_timeout = 2m\n[log]\nlevel=debug\n",
                           &c, &d),
                     0);
    assert_string_equal(c.listen_addr, "::1");
    assert_int_equal(c.listen_port, 9443);
    assert_int_equal(c.max_json_body, 2 * 1024 * 1024);
    assert_int_equal(c.connection_timeout_s, 120);
    assert_int_equal(c.log_level, ANT_LOG_DEBUG);
    assert_int_equal(c.fed_connections, 0); /* the fetcher's defaults */
    assert_int_equal(c.fed_max_rate, 0);
    assert_int_equal(parse("[federation]\nconnections = 4\nmax_rate = 10M\n", &c, &d), 0);
    assert_int_equal(c.fed_connections, 4);
    assert_int_equal(c.fed_max_rate, 10 * 1024 * 1024);
    assert_int_equal(parse("[federation]\nconnections = 257\n", &c, &d), -EINVAL);
    assert_int_equal(parse("[federation]\nmax_rate = fast\n", &c, &d), -EINVAL);
}

static void test_config_errors_name_file_line_and_key(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[server]\nbogus = 1\n", "t.conf:2: unknown key 'bogus' in [server]"},
        {"[nosuch]\n", "t.conf:1: unknown section [nosuch]"},
        {"listen = 1.2.3.4:1\n", "t.conf:1: key 'listen' outside any section"},
        {"[server]\n\nthreads = many\n", "t.conf:3: key 'threads' in [server]: bad value"},
        {"[server]\nthreads = 999\n", "t.conf:2: key 'threads'"},
        {"[server]\nlisten = localhost:80\n", "t.conf:2: key 'listen'"},
        {"[server]\nlisten = 1.2.3.4:65536\n", "t.conf:2: key 'listen'"},
        {"[server]\nthreads = 1\nthreads = 2\n", "t.conf:3: key 'threads' set twice"},
        {"[site]\nid = Site_A\n", "t.conf:2: key 'id'"},
        {"[site]\nid = -a\n", "t.conf:2: key 'id'"},
        {"[staging]\nio_engine = fast\n", "t.conf:2: key 'io_engine'"},
        {"[storage]\narchive =\n", "t.conf:2: key 'archive'"},
        {"[storage]\nmax_upload = 65T\n", "t.conf:2: key 'max_upload'"},
        {"[server]\nthreads\n", "t.conf:2: expected 'key = value'"},
        {"[server\n", "t.conf:1: section header without ']'"},
        {"[audit]\ncheckpoint_every = 0\n", "t.conf:2: key 'checkpoint_every'"},
        {"[log]\nlevel = loud\n", "t.conf:2: key 'level'"},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(cases); i++) {
        struct ant_config c;
        struct ant_diag d;
        assert_int_equal(parse(cases[i].text, &c, &d), -EINVAL);
        if (strstr(d.msg, cases[i].want) == NULL) {
            fail_msg("case %zu: got '%s', want '%s'", i, d.msg, cases[i].want);
        }
    }
}

static void test_config_refuses_control_bytes_and_nul(void **state)
{
    (void)state;
    struct ant_config c;
    struct ant_diag d;
    static const char text[] = "[storage]\narchive = a\0b\n";
    ant_config_defaults(&c);
    uint8_t *copy = test_memdup(text, sizeof(text) - 1);
    assert_int_equal(ant_config_parse(ant_bytes_of(copy, sizeof(text) - 1), "t.conf", &c, &d),
                     -EINVAL);
    free(copy);
    assert_int_equal(parse("[storage]\narchive = a\x01z\n", &c, &d), -EINVAL);
}

static void test_config_limits(void **state)
{
    (void)state;
    struct ant_config c;
    struct ant_diag d;
    size_t n = ANT_CONFIG_MAX_LINE + 20;
    char *line = malloc(n + 1);
    memset(line, '#', n);
    line[n] = '\0';
    assert_int_equal(parse(line, &c, &d), -EINVAL);
    free(line);
    uint8_t *big = calloc(1, ANT_CONFIG_MAX_BYTES + 1);
    ant_config_defaults(&c);
    assert_int_equal(ant_config_parse(ant_bytes_of(big, ANT_CONFIG_MAX_BYTES + 1), "t", &c, &d),
                     -E2BIG);
    free(big);
}

static void test_config_every_truncation_is_safe(void **state)
{
    (void)state;
    static const char text[] = "[server]\nlisten = 127.0.0.1:8443\nmax_json_body = 1M\n";
    for (size_t n = 0; n <= sizeof(text) - 1; n++) {
        struct ant_config c;
        struct ant_diag d;
        uint8_t *cut = test_memdup(text, n);
        ant_config_defaults(&c);
        int rc = ant_config_parse(ant_bytes_of(cut, n), "t", &c, &d);
        assert_true(rc == 0 || rc == -EINVAL);
        free(cut);
    }
}

/* threads = 0 picks 2 HTTP workers per core, at least 4 (held answers wait on suspended
 * connections, not on workers); an explicit value is taken as given. */
static void test_config_http_threads(void **state)
{
    (void)state;
    struct ant_config c;
    ant_config_defaults(&c);
    assert_int_equal(c.threads, 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = 2u * (unsigned)(ncpu > 0 ? ncpu : 2);
    assert_int_equal(ant_config_http_threads(&c), want < 4 ? 4 : want > 256 ? 256 : want);
    assert_true(ant_config_http_threads(&c) >= 4);
    c.threads = 1;
    assert_int_equal(ant_config_http_threads(&c), 1);
    c.threads = 64;
    assert_int_equal(ant_config_http_threads(&c), 64);
}

static void test_route_match(void **state)
{
    (void)state;
    struct ant_bytes p[ANT_ROUTE_MAX_PARAMS];
    unsigned n = 0;
    assert_true(ant_route_match("/v1/health", "/v1/health", p, &n));
    assert_int_equal(n, 0);
    assert_false(ant_route_match("/v1/health", "/v1/health/", p, &n));
    assert_false(ant_route_match("/v1/health", "/v1/healt", p, &n));
    assert_true(ant_route_match("/v1/datasets/{}/files/{*}", "/v1/datasets/ds1/files/a/b.txt", p,
                                &n));
    assert_int_equal(n, 2);
    assert_true(ant_bytes_eq_str(p[0], "ds1"));
    assert_true(ant_bytes_eq_str(p[1], "a/b.txt"));
    assert_false(ant_route_match("/v1/datasets/{}", "/v1/datasets/", p, &n));
    assert_false(ant_route_match("/v1/datasets/{}", "/v1/datasets/a/b", p, &n));
    assert_false(ant_route_match("/v1/datasets/{}/files/{*}", "/v1/datasets/x/files/", p, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rendered_defaults_parse_back),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_errors_name_file_line_and_key),
        cmocka_unit_test(test_config_refuses_control_bytes_and_nul),
        cmocka_unit_test(test_config_limits),
        cmocka_unit_test(test_config_every_truncation_is_safe),
        cmocka_unit_test(test_config_http_threads),
        cmocka_unit_test(test_route_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
