/* The per-principal token bucket and the Prometheus rendering. */
#include "gateway/metrics.h"
#include "gateway/ratelimit.h"
#include "gateway/routes.h"
#include "tests/unit/testutil.h"

#include <stdio.h>
#include <string.h>

#define SEC 1000000000LL

static void test_bucket_allows_burst_then_waits(void **state)
{
    (void)state;
    struct ant_ratelimit *rl = NULL;
    assert_int_equal(ant_ratelimit_new(10, 20, &rl), 0);
    int64_t t = 5 * SEC;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ant_ratelimit_take(rl, "alice@lab", t), 0);
    }
    unsigned wait = ant_ratelimit_take(rl, "alice@lab", t);
    assert_true(wait >= 1);
    /* someone else is not affected */
    assert_int_equal(ant_ratelimit_take(rl, "bob@lab", t), 0);
    /* after 1 s, 10 more tokens */
    t += SEC;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ant_ratelimit_take(rl, "alice@lab", t), 0);
    }
    assert_true(ant_ratelimit_take(rl, "alice@lab", t) >= 1);
    ant_ratelimit_free(rl);
}

static void test_bucket_disabled_and_table_full(void **state)
{
    (void)state;
    struct ant_ratelimit *rl = NULL;
    assert_int_equal(ant_ratelimit_new(0, 0, &rl), 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ant_ratelimit_take(rl, "x", 0), 0);
    }
    ant_ratelimit_free(rl);
    /* far more principals than slots: nobody new is refused, the table does not grow */
    assert_int_equal(ant_ratelimit_new(1, 1, &rl), 0);
    char k[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof(k), "p%d", i);
        assert_int_equal(ant_ratelimit_take(rl, k, (int64_t)i), 0);
    }
    ant_ratelimit_free(rl);
}

static void test_metrics_render(void **state)
{
    (void)state;
    struct ant_metrics *m = NULL;
    assert_int_equal(ant_metrics_new(g_ant_nroutes, &m), 0);
    ant_metrics_request(m, 0, 200, 0, 120, 2000000);
    ant_metrics_request(m, 0, 200, 0, 120, 2000000);
    ant_metrics_request(m, SIZE_MAX, 404, 0, 80, 1000);
    ant_metrics_request(m, 1, 599, 10, 0, 1000);
    ant_metrics_decision(m, true);
    ant_metrics_decision(m, false);
    ant_metrics_decision(m, false);
    struct ant_buf out;
    ant_buf_init(&out, 1 << 20);
    struct ant_metrics_gauges g = {.inflight = 3, .audit_queue_depth = 7,
                                   .audit_commit_seconds = 0.002, .audit_commits = 9,
                                   .audit_sync_seconds = 0.0003, .audit_syncs = 5,
                                   .fed_cache_bytes = 4096, .fed_cache_max = 8192,
                                   .fed_evicted_files = 3, .fed_evicted_bytes = 300};
    assert_int_equal(ant_metrics_render(m, &g, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    const char *s = (const char *)out.p;
    char want[128];
    snprintf(want, sizeof(want), "antenna_http_requests_total{route=\"%s\",status=\"200\"} 2\n",
             g_ant_routes[0].name);
    assert_non_null(strstr(s, want));
    assert_non_null(strstr(s, "route=\"none\",status=\"404\"} 1\n"));
    assert_non_null(strstr(s, "status=\"other\"} 1\n"));
    assert_non_null(strstr(s, "antenna_policy_decisions_total{decision=\"deny\"} 2\n"));
    assert_non_null(strstr(s, "antenna_http_requests_in_flight 3\n"));
    assert_non_null(strstr(s, "antenna_audit_queue_depth 7\n"));
    assert_non_null(strstr(s, "antenna_audit_commits_total 9\n"));
    assert_non_null(strstr(s, "antenna_audit_sync_seconds 0.000300\n"));
    assert_non_null(strstr(s, "antenna_audit_syncs_total 5\n"));
    assert_non_null(strstr(s, "antenna_build_info{version="));
    assert_non_null(strstr(s, "le=\"+Inf\"} 2\n"));
    /* the archive cache: its size and limit, and what this daemon evicted */
    static const char *const fed[] = {
        "# TYPE antenna_fed_cache_bytes gauge\nantenna_fed_cache_bytes 4096\n",
        "# TYPE antenna_fed_cache_max_bytes gauge\nantenna_fed_cache_max_bytes 8192\n",
        "# TYPE antenna_fed_cache_evicted_copies_total counter\n"
        "antenna_fed_cache_evicted_copies_total 3\n",
        "# TYPE antenna_fed_cache_evicted_bytes_total counter\n"
        "antenna_fed_cache_evicted_bytes_total 300\n",
    };
    for (size_t i = 0; i < sizeof(fed) / sizeof(fed[0]); i++) {
        assert_non_null(strstr(s, fed[i]));
    }
    assert_non_null(strstr(s, "# HELP antenna_fed_cache_bytes "));
    assert_non_null(strstr(s, "# HELP antenna_fed_cache_evicted_copies_total "));
    /* before the first fdatasync there is no sync latency to show */
    g.audit_sync_seconds = -1;
    out.len = 0;
    assert_int_equal(ant_metrics_render(m, &g, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    assert_null(strstr((const char *)out.p, "antenna_audit_sync_seconds"));
    /* a cache size that could not be read is left out; the limit and counters stay */
    g.fed_cache_bytes = -1;
    out.len = 0;
    assert_int_equal(ant_metrics_render(m, &g, &out), 0);
    assert_int_equal(ant_buf_terminate(&out), 0);
    assert_null(strstr((const char *)out.p, "antenna_fed_cache_bytes"));
    assert_non_null(strstr((const char *)out.p, "antenna_fed_cache_max_bytes 8192\n"));
    assert_non_null(strstr((const char *)out.p, "antenna_audit_commits_total 9\n"));
    ant_buf_fini(&out);
    ant_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_allows_burst_then_waits),
        cmocka_unit_test(test_bucket_disabled_and_table_full),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
