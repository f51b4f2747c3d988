/* Unit tests for gateway/config.h, the route matcher, and the buffered log the server turns on
 * from [log] flush_ms (crypto/base/log.h). */
#include "tests/unit/testutil.h"

#include "crypto/base/log.h"
#include "gateway/config.h"
#include "gateway/routes.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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
    assert_string_equal(c.direct_io, "auto");
    assert_int_equal(parse("[staging]\ndirect_io = off\n", &c, &d), 0);
    assert_string_equal(c.direct_io, "off");
    assert_string_equal(c.event_loop, "poll");
    assert_int_equal(parse("[server]\nevent_loop = epoll\n", &c, &d), 0);
    assert_string_equal(c.event_loop, "epoll");
    assert_int_equal(parse("[staging]\nio_engine = threads\n", &c, &d), 0);
    assert_string_equal(c.io_engine, "threads");
    assert_int_equal(parse("[federation]\nconnections = 257\n", &c, &d), -EINVAL);
    assert_int_equal(parse("[federation]\nmax_rate = fast\n", &c, &d), -EINVAL);
}

/* [federation] cache_max: a size with the usual units, 0 (the default) for no limit. */
static void test_config_fed_cache_max(void **state)
{
    (void)state;
    struct ant_config c;
    struct ant_diag d;
    ant_config_defaults(&c);
    assert_int_equal(c.fed_cache_max, 0);
    assert_int_equal(parse("[federation]\ncache_max = 50G\n", &c, &d), 0);
    assert_true(c.fed_cache_max == UINT64_C(50) * 1024 * 1024 * 1024);
    assert_int_equal(parse("[federation]\ncache_max = 0\n", &c, &d), 0);
    assert_int_equal(c.fed_cache_max, 0);
    assert_int_equal(parse("[federation]\ncache_max = 4096\n", &c, &d), 0);
    assert_int_equal(c.fed_cache_max, 4096);
    assert_int_equal(parse("[federation]\ncache_max = 1024T\n", &c, &d), 0);
    assert_true(c.fed_cache_max == UINT64_C(1024) * 1024 * 1024 * 1024 * 1024);
    static const char *const bad[] = {
        "[federation]\ncache_max = 1025T\n", "[federation]\ncache_max = -1\n",
        "[federation]\ncache_max = 50GB\n",  "[federation]\ncache_max = 50g\n",
        "[federation]\ncache_max = big\n",   "[federation]\ncache_max =\n",
        "[federation]\ncache_max = 1.5G\n",  "[federation]\ncache_max = 99999999999999999999\n",
        "[staging]\ncache_max = 1G\n",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(parse(bad[i], &c, &d), -EINVAL);
        if (strstr(d.msg, "t.conf:2:") == NULL || strstr(d.msg, "cache_max") == NULL) {
            fail_msg("case %zu: '%s'", i, d.msg);
        }
    }
    assert_int_equal(parse("[federation]\ncache_max = big\n", &c, &d), -EINVAL);
    assert_string_equal(d.msg, "t.conf:2: key 'cache_max' in [federation]: bad value: expected a "
                               "size such as 4096, 64K, 1M, 2G within range");
    /* `antenna init` writes it out, documented, with its default */
    struct ant_buf out = ANT_BUF_INIT(65536);
    ant_config_defaults(&c);
    assert_int_equal(ant_config_render(&c, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    assert_non_null(strstr((const char *)out.p, "\ncache_max = 0\n"));
    c.fed_cache_max = UINT64_C(500) * 1024 * 1024 * 1024;
    out.len = 0;
    assert_int_equal(ant_config_render(&c, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    assert_non_null(strstr((const char *)out.p, "\ncache_max = 500G\n"));
    ant_buf_fini(&out);
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
        {"[staging]\nio_engine = fast\n",
         "t.conf:2: key 'io_engine' in [staging]: bad value: expected one of auto, uring, threads"},
        {"[server]\nevent_loop = select\n",
         "t.conf:2: key 'event_loop' in [server]: bad value: expected one of poll, epoll"},
        {"[server]\nevent_loop = epol\n", "t.conf:2: key 'event_loop'"},
        {"[server]\nevent_loop = epollx\n", "t.conf:2: key 'event_loop'"},
        {"[server]\nevent_loop = \n", "t.conf:2: key 'event_loop'"},
        {"[server]\nevent_loop = poll, epoll\n", "t.conf:2: key 'event_loop'"},
        {"[staging]\ndirect_io = on\n", "t.conf:2: key 'direct_io'"},
        {"[staging]\ndirect_io = OFF\n", "t.conf:2: key 'direct_io'"},
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

static void test_config_log_flush_ms(void **state)
{
    (void)state;
    struct ant_config c;
    struct ant_diag d;
    ant_config_defaults(&c);
    assert_int_equal(c.log_flush_ms, 250);
    assert_int_equal(parse("[log]\nflush_ms = 0\n", &c, &d), 0);
    assert_int_equal(c.log_flush_ms, 0);
    assert_int_equal(parse("[log]\nflush_ms = 1000\n", &c, &d), 0);
    assert_int_equal(c.log_flush_ms, 1000);
    assert_int_equal(parse("[log]\nflush_ms = 1001\n", &c, &d), -EINVAL);
    assert_non_null(strstr(ant_diag_msg(&d, ""), "flush_ms"));
}

/* The log tests send stderr into a file; the teardown stops the buffering and puts it back. */
struct logcap {
    int saved;
    char *dir;
    char path[4096];
};

static int logcap_setup(void **state)
{
    struct logcap *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->dir = test_tmpdir();
    snprintf(c->path, sizeof(c->path), "%s/stderr", c->dir);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    *state = c;
    return 0;
}

static int logcap_teardown(void **state)
{
    struct logcap *c = *state;
    ant_log_buffer_stop();
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    test_rmtree(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

/* What reached the file so far, NUL-terminated. */
static char *logcap_read(const struct logcap *c, size_t *len)
{
    size_t n = 0;
    uint8_t *raw = test_read_file(c->path, &n);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, raw, n);
    s[n] = '\0';
    free(raw);
    if (len != NULL) {
        *len = n;
    }
    return s;
}

static int64_t ms_since(int64_t t0_ns)
{
    return (ant_mono_ns() - t0_ns) / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* An info line is held, then written by the flusher within flush_ms (plus scheduling slack on
 * a loaded machine); a second start is refused; past the maximum is refused. */
static void test_log_buffer_writes_info_within_flush_ms(void **state)
{
    const struct logcap *c = *state;
    assert_int_equal(ant_log_buffer_start(ANT_LOG_FLUSH_MS_MAX + 1), -EINVAL);
    int64_t t0 = ant_mono_ns();
    assert_int_equal(ant_log_buffer_start(300), 0);
    assert_int_equal(ant_log_buffer_start(300), -EALREADY);
    ant_log_line(ANT_LOG_INFO, "{\"n\":1}\n", 8);
    size_t len;
    char *s = logcap_read(c, &len);
    if (ms_since(t0) < 200) {
        assert_int_equal(len, 0); /* held: no write(2) for the line */
    }
    free(s);
    int64_t waited = 0;
    for (;;) {
        s = logcap_read(c, &len);
        bool there = strcmp(s, "{\"n\":1}\n") == 0;
        free(s);
        waited = ms_since(t0);
        if (there || waited > 5000) {
            assert_true(there);
            break;
        }
        sleep_ms(5);
    }
    assert_true(waited <= 300 + 400);
}

/* A warning or an error leaves at once, after the info lines buffered before it. */
static void test_log_buffer_warning_flushes_in_order(void **state)
{
    const struct logcap *c = *state;
    assert_int_equal(ant_log_buffer_start(1000), 0);
    ant_log_line(ANT_LOG_INFO, "first\n", 6);
    ant_log_line(ANT_LOG_DEBUG, "second\n", 7);
    ant_log(ANT_LOG_WARN, "test.warned", "third %d", 3);
    char *s = logcap_read(c, NULL);
    assert_true(strncmp(s, "first\nsecond\n{", 14) == 0);
    assert_non_null(strstr(s, "\"level\":\"warn\",\"event\":\"test.warned\",\"msg\":\"third 3\""));
    assert_int_equal(s[strlen(s) - 1], '\n');
    free(s);
    ant_log_line(ANT_LOG_INFO, "fourth\n", 7);
    ant_log_line(ANT_LOG_ERROR, "fifth\n", 6);
    s = logcap_read(c, NULL);
    assert_non_null(strstr(s, "}\nfourth\nfifth\n"));
    free(s);
}

/* A full buffer is written without waiting for the timer, in whole lines; stop writes the rest;
 * after stop every line is written at once again. */
static void test_log_buffer_full_and_stop(void **state)
{
    const struct logcap *c = *state;
    char line[101];
    memset(line, 'x', 99);
    line[99] = '\n';
    line[100] = '\0';
    assert_int_equal(ant_log_buffer_start(1000), 0);
    int64_t t0 = ant_mono_ns();
    for (int i = 0; i < 1000; i++) {
        ant_log_line(ANT_LOG_INFO, line, 100);
    }
    size_t len;
    char *s = logcap_read(c, &len);
    if (ms_since(t0) < 800) {
        /* one buffer's worth of whole lines written by the logger that filled it */
        assert_true(len >= ANT_LOG_BUFFER_BYTES - 100);
        assert_true(len < 1000 * 100);
        assert_int_equal(len % 100, 0);
    }
    free(s);
    ant_log_buffer_stop();
    s = logcap_read(c, &len);
    assert_int_equal(len, 1000 * 100);
    free(s);
    ant_log_line(ANT_LOG_INFO, "after\n", 6);
    s = logcap_read(c, &len);
    assert_int_equal(len, 1000 * 100 + 6);
    assert_string_equal(s + 1000 * 100, "after\n");
    free(s);
    /* a line larger than the buffer goes out whole, after what is buffered */
    assert_int_equal(ant_log_buffer_start(1000), 0);
    ant_log_line(ANT_LOG_INFO, "small\n", 6);
    size_t big = ANT_LOG_BUFFER_BYTES + 10;
    char *b = malloc(big);
    assert_non_null(b);
    memset(b, 'y', big - 1);
    b[big - 1] = '\n';
    ant_log_line(ANT_LOG_INFO, b, big);
    s = logcap_read(c, &len);
    assert_int_equal(len, 1000 * 100 + 6 + 6 + big);
    assert_true(memcmp(s + 1000 * 100 + 6, "small\nyyy", 9) == 0);
    free(s);
    free(b);
}

/* flush_ms 0 leaves the log unbuffered. */
static void test_log_buffer_zero_is_unbuffered(void **state)
{
    const struct logcap *c = *state;
    assert_int_equal(ant_log_buffer_start(0), 0);
    ant_log_line(ANT_LOG_INFO, "now\n", 4);
    char *s = logcap_read(c, NULL);
    assert_string_equal(s, "now\n");
    free(s);
}

/* A clean exit() writes what is buffered (the process ends within the flush interval). */
static void test_log_buffer_written_at_exit(void **state)
{
    const struct logcap *c = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (ant_log_buffer_start(1000) != 0) {
            _exit(3);
        }
        ant_log_line(ANT_LOG_INFO, "last words\n", 11);
        exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *s = logcap_read(c, NULL);
    assert_string_equal(s, "last words\n");
    free(s);
}

#define LOG_THREADS 4
#define LOG_LINES 5000

static void *log_lines(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < LOG_LINES; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "t%d %d\n", t, i);
        ant_log_line(ANT_LOG_INFO, line, (size_t)n);
    }
    return NULL;
}

/* Loggers on several threads: every line once, whole, each thread's lines in order. */
static void test_log_buffer_threads(void **state)
{
    const struct logcap *c = *state;
    pthread_t th[LOG_THREADS];
    assert_int_equal(ant_log_buffer_start(20), 0);
    for (int t = 0; t < LOG_THREADS; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, log_lines, (void *)(intptr_t)t), 0);
    }
    for (int t = 0; t < LOG_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    ant_log_buffer_stop();
    char *s = logcap_read(c, NULL);
    int next[LOG_THREADS] = {0};
    int lines = 0;
    for (char *p = s, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        int t = -1, i = -1;
        *nl = '\0';
        assert_int_equal(sscanf(p, "t%d %d", &t, &i), 2);
        assert_true(t >= 0 && t < LOG_THREADS);
        assert_int_equal(i, next[t]);
        next[t]++;
        lines++;
    }
    assert_int_equal(lines, LOG_THREADS * LOG_LINES);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rendered_defaults_parse_back),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_fed_cache_max),
        cmocka_unit_test(test_config_errors_name_file_line_and_key),
        cmocka_unit_test(test_config_refuses_control_bytes_and_nul),
        cmocka_unit_test(test_config_limits),
        cmocka_unit_test(test_config_every_truncation_is_safe),
        cmocka_unit_test(test_config_http_threads),
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_config_log_flush_ms),
        cmocka_unit_test_setup_teardown(test_log_buffer_writes_info_within_flush_ms, logcap_setup,
                                        logcap_teardown),
        cmocka_unit_test_setup_teardown(test_log_buffer_warning_flushes_in_order, logcap_setup,
                                        logcap_teardown),
        cmocka_unit_test_setup_teardown(test_log_buffer_full_and_stop, logcap_setup,
                                        logcap_teardown),
        cmocka_unit_test_setup_teardown(test_log_buffer_zero_is_unbuffered, logcap_setup,
                                        logcap_teardown),
        cmocka_unit_test_setup_teardown(test_log_buffer_written_at_exit, logcap_setup,
                                        logcap_teardown),
        cmocka_unit_test_setup_teardown(test_log_buffer_threads, logcap_setup, logcap_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
