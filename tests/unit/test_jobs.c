/* Unit tests for staging/jobs.h: the state machine, admission (globs, validation, quota), the
 * runner, cancel, the time-to-live purge and its audit event, resume after a crash (also inside
 * a big file, after a crash and after a stop, through test_file_mark), and the
 * local side of remote jobs (admission refusals, the schema's rule, a peer gone, the archive
 * cache trimmed only while no remote job runs, watched through test_fed_step). Most
 * jobs copy raw files (test_raw) so they run without Crypt4GH; the decrypt test uses the
 * reference vectors and is skipped while the engine has no Crypt4GH transforms. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "crypto/c4gh.h"
#include "crypto/keys.h"
#include "policy/audit.h"
#include "policy/peers.h"
#include "policy/store.h"
#include "staging/jobs.h"

#define NFILES 8
#define FILE_SIZE (70 * 1024)

struct fx {
    char *dir;
    int dirfd, archive_fd, scratch_fd;
    char ds[ANT_ID_MAX + 1];
    char storage[NFILES][ANT_ID_MAX + 1];
    struct ant_site_keys keys;
    struct ant_key *kx;
    struct ant_audit *audit;
    struct ant_jobs *jobs;
    struct ant_store_pool *pool;
    struct ant_principal alice;
    bool raw;
    unsigned kill_after; /* SIGKILL the runner after this many files are done (child only) */
    unsigned slow_ms;    /* sleep this long after each file: a job that stays running */
    uint64_t resume_min; /* engine: marks every this many bytes in files this big (0: default) */
    bool kill_on_mark;   /* SIGKILL the runner once a resume mark is recorded (child only) */
    bool hold_mark;      /* after a recorded mark, wait for `release` (the run stands still) */
    unsigned nmarks;     /* marks recorded (under mu) */
    uint64_t cache_max;  /* conf.fed_cache_max */
    unsigned max_jobs;   /* conf.max_jobs */
    /* what test_fed_step reported, in order; a remote job named block_id waits at its
     * ANT_JOBS_FED_RUNNING step until `release` */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct {
        char job[ANT_JOB_ID_LEN + 1]; /* "" at open */
        enum ant_jobs_fed_step step;
    } steps[64];
    unsigned nsteps;
    char block_id[ANT_JOB_ID_LEN + 1];
    bool release;
};

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    assert_int_equal(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

static void content(unsigned i, uint8_t *buf, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        buf[k] = (uint8_t)(i * 31 + k * 7 + (k >> 9));
    }
}

static const char *file_path(unsigned i)
{
    static char p[64];
    snprintf(p, sizeof(p), "%s/f%u.bin", i % 2 ? "data/odd" : "data/even", i);
    return p;
}

/* A catalog with tenant lab, principal alice and one dataset of NFILES files, stored raw in the
 * archive (test_raw copies them as they are). */
static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct ant_store *st = NULL;
    uint8_t *buf = malloc(FILE_SIZE);
    assert_non_null(f);
    assert_non_null(buf);
    f->dir = test_tmpdir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY);
    assert_true(f->dirfd >= 0);
    assert_int_equal(mkdirat(f->dirfd, "archive", 0700), 0);
    assert_int_equal(mkdirat(f->dirfd, "scratch", 0700), 0);
    f->archive_fd = openat(f->dirfd, "archive", O_RDONLY | O_DIRECTORY);
    f->scratch_fd = openat(f->dirfd, "scratch", O_RDONLY | O_DIRECTORY);
    assert_true(f->archive_fd >= 0 && f->scratch_fd >= 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", ANT_STORE_CREATE, &st), 0);
    assert_int_equal(ant_store_tenant_add(st, "lab"), 0);
    assert_int_equal(ant_store_principal_add(st, "alice", "lab", ANT_ROLE_OWNER), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "cohort",
                                    .classification = ANT_DS_SENSITIVE};
    assert_int_equal(ant_store_dataset_create(st, &spec, f->ds), 0);
    assert_int_equal(mkdirat(f->archive_fd, f->ds, 0700), 0);
    int dsfd = openat(f->archive_fd, f->ds, O_RDONLY | O_DIRECTORY);
    assert_true(dsfd >= 0);
    for (unsigned i = 0; i < NFILES; i++) {
        struct ant_file_spec fs = {.dataset_id = f->ds, .path = file_path(i), .size = FILE_SIZE};
        content(i, buf, FILE_SIZE);
        sha256(buf, FILE_SIZE, fs.sha256_plain);
        sha256(buf, FILE_SIZE, fs.sha256_c4gh);
        assert_int_equal(ant_store_file_add(st, &fs, f->storage[i]), 0);
        char name[ANT_ID_MAX + 8];
        snprintf(name, sizeof(name), "%s.c4gh", f->storage[i]);
        assert_int_equal(ant_write_new_file(dsfd, name, 0600, buf, FILE_SIZE), 0);
    }
    close(dsfd);
    ant_store_close(st);
    free(buf);
    assert_int_equal(ant_site_keys_generate(&f->keys), 0);
    snprintf(f->alice.id, sizeof(f->alice.id), "alice");
    snprintf(f->alice.tenant, sizeof(f->alice.tenant), "lab");
    f->alice.roles = ANT_ROLE_OWNER;
    f->raw = true;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    *state = f;
    return 0;
}

static void kill_hook(void *arg, const char *job_id, uint64_t files_done)
{
    struct fx *f = arg;
    (void)job_id;
    if (f->kill_after != 0 && files_done >= f->kill_after) {
        raise(SIGKILL); /* a crash: nothing is cleaned up, nothing more is recorded */
    }
    if (f->slow_ms != 0) {
        usleep(f->slow_ms * 1000);
    }
}

static void mark_hook(void *arg, const char *job_id, size_t idx, uint64_t bytes)
{
    struct fx *f = arg;
    (void)job_id;
    (void)idx;
    (void)bytes;
    if (f->kill_on_mark) {
        raise(SIGKILL); /* a crash just after the mark was committed */
    }
    pthread_mutex_lock(&f->mu);
    f->nmarks++;
    pthread_cond_broadcast(&f->cv);
    while (f->hold_mark && !f->release) {
        pthread_cond_wait(&f->cv, &f->mu);
    }
    pthread_mutex_unlock(&f->mu);
}

static void *stop_main(void *arg)
{
    struct fx *f = arg;
    ant_jobs_stop(f->jobs);
    return NULL;
}

static void fed_hook(void *arg, const char *job_id, enum ant_jobs_fed_step step)
{
    struct fx *f = arg;
    pthread_mutex_lock(&f->mu);
    if (f->nsteps < sizeof(f->steps) / sizeof(f->steps[0])) {
        snprintf(f->steps[f->nsteps].job, sizeof(f->steps[0].job), "%s",
                 job_id != NULL ? job_id : "");
        f->steps[f->nsteps].step = step;
        f->nsteps++;
    }
    pthread_cond_broadcast(&f->cv);
    while (step == ANT_JOBS_FED_RUNNING && job_id != NULL && strcmp(job_id, f->block_id) == 0 &&
           !f->release) {
        pthread_cond_wait(&f->cv, &f->mu);
    }
    pthread_mutex_unlock(&f->mu);
}

static void open_jobs(struct fx *f)
{
    if (f->audit == NULL) {
        int rc = ant_audit_open(f->dirfd, "audit.db", 0, f->keys.sign, NULL, &f->audit);
        if (rc == -ENOENT) {
            rc = ant_audit_open(f->dirfd, "audit.db", ANT_STORE_CREATE, f->keys.sign, NULL,
                                &f->audit);
        }
        assert_int_equal(rc, 0);
    }
    struct ant_engine_opts eo;
    ant_engine_opts_init(&eo);
    eo.checkpoint_files = 2; /* checkpoints within a small job, so a crash finds some done */
    eo.max_open_files = 2;
    eo.crypto_threads = 2;
    eo.io_threads = 2;
    if (f->resume_min != 0) {
        /* marks within a small file: chunks of one segment */
        eo.resume_min = eo.resume_every = f->resume_min;
        eo.chunk_segments = 1;
        eo.nbufs = 8;
    }
    struct ant_jobs_conf c = {
        .dirfd = f->dirfd,
        .archive_fd = f->archive_fd,
        .scratch_fd = f->scratch_fd,
        .kx = f->kx,
        .audit = f->audit,
        .site_id = "site-t",
        .workers = 1,
        .default_quota = 0,
        .default_ttl_s = 3600,
        .purge_interval_s = 1,
        .engine = &eo,
        .test_raw = f->raw,
        .pool = f->pool,
        .test_file_done = kill_hook,
        .test_file_mark = mark_hook,
        .test_fed_step = fed_hook,
        .test_arg = f,
        .keys = &f->keys,
        /* a remote pull that cannot connect gives up at once */
        .fetch = &(struct ant_fetch_opts){.max_retries = 1, .backoff_ms = 1},
        .fed_cache_max = f->cache_max,
        .max_jobs = f->max_jobs,
    };
    assert_int_equal(ant_jobs_open(&c, &f->jobs), 0);
}

static void close_jobs(struct fx *f)
{
    ant_jobs_close(f->jobs);
    f->jobs = NULL;
    ant_audit_close(f->audit);
    f->audit = NULL;
}

/* Runs the next job in a child process whose hook kills it (after kill_after files are done,
 * or at the first resume mark) and checks that it died of that SIGKILL. */
static void run_until_killed(struct fx *f, unsigned kill_after, bool kill_on_mark)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        f->kill_after = kill_after;
        f->kill_on_mark = kill_on_mark;
        open_jobs(f);
        bool ran = false;
        int rc = ant_jobs_run_next(f->jobs, &ran);
        _exit(rc == 0 ? 0 : 1); /* the hook should have killed us before */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    close_jobs(f);
    ant_store_pool_free(f->pool);
    ant_key_free(f->kx);
    ant_site_keys_fini(&f->keys);
    close(f->archive_fd);
    close(f->scratch_fd);
    close(f->dirfd);
    test_rmtree(f->dir);
    free(f->dir);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static struct ant_job_request req(struct fx *f)
{
    struct ant_job_request r = {.who = &f->alice, .dataset_id = f->ds, .mode = ANT_JOB_DECRYPT};
    return r;
}

/* Submits through a catalog connection of its own, as a route handler does. */
static int submit(struct fx *f, const struct ant_job_request *r, char id[ANT_JOB_ID_LEN + 1],
                  struct ant_diag *d)
{
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    int rc = ant_jobs_submit(f->jobs, st, r, id, d);
    ant_store_close(st);
    return rc;
}

static void run_all(struct fx *f)
{
    bool ran = true;
    while (ran) {
        assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0);
    }
}

static bool exists_at(int dirfd, const char *rel)
{
    struct stat sb;
    return fstatat(dirfd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Every output file of job `id` holds what the catalog says. */
static void check_outputs(struct fx *f, const char *id)
{
    uint8_t *want = malloc(FILE_SIZE);
    assert_non_null(want);
    for (unsigned i = 0; i < NFILES; i++) {
        char rel[256];
        size_t n = 0;
        snprintf(rel, sizeof(rel), "%s/scratch/lab/%s/%s", f->dir, id, file_path(i));
        uint8_t *got = test_read_file(rel, &n);
        content(i, want, FILE_SIZE);
        assert_int_equal(n, FILE_SIZE);
        assert_memory_equal(got, want, FILE_SIZE);
        free(got);
    }
    free(want);
}

/* --- tests --- */

static void test_state_machine_allows_only_its_moves(void **state)
{
    (void)state;
    static const char *const allowed[] = {"queued>running", "queued>cancelled", "queued>expired",
                                          "running>ready",  "running>failed",   "running>cancelled",
                                          "running>queued", "ready>expired",    "ready>cancelled"};
    for (int a = ANT_JOB_QUEUED; a <= ANT_JOB_EXPIRED; a++) {
        for (int b = ANT_JOB_QUEUED; b <= ANT_JOB_EXPIRED; b++) {
            char mv[64];
            bool want = false;
            snprintf(mv, sizeof(mv), "%s>%s", ant_job_state_name(a), ant_job_state_name(b));
            for (size_t i = 0; i < ANT_ARRAY_LEN(allowed); i++) {
                want = want || strcmp(mv, allowed[i]) == 0;
            }
            assert_int_equal(ant_job_transition_is_allowed(a, b), want);
        }
        enum ant_job_state back;
        assert_int_equal(ant_job_state_parse(ant_job_state_name(a), &back), 0);
        assert_int_equal(back, a);
    }
    assert_false(ant_job_state_is_final(ANT_JOB_QUEUED));
    assert_false(ant_job_state_is_final(ANT_JOB_RUNNING));
    assert_true(ant_job_state_is_final(ANT_JOB_READY));
    assert_true(ant_job_state_is_final(ANT_JOB_EXPIRED));
    enum ant_job_state s;
    assert_int_equal(ant_job_state_parse("done", &s), -EINVAL);
    enum ant_job_mode m;
    assert_int_equal(ant_job_mode_parse("reencrypt", &m), 0);
    assert_int_equal(m, ANT_JOB_REENCRYPT);
    assert_int_equal(ant_job_mode_parse("raw", &m), -EINVAL);
    assert_int_equal(ant_job_output_size(ANT_JOB_DECRYPT, 100), 100);
    /* two segments: 2 * 28 bytes of nonce and MAC, plus the header allowance */
    assert_int_equal(ant_job_output_size(ANT_JOB_REENCRYPT, 65537), 65537 + 56 + 1024);
}

static void test_submit_refuses_bad_requests(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    uint8_t pk[ANT_KEY_LEN] = {1};
    open_jobs(f);
    struct ant_job_request r = req(f);
    struct ant_principal admin = {.id = "root", .roles = ANT_ROLE_ADMIN};
    r.who = &admin;
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "tenant"));
    r = req(f);
    r.mode = ANT_JOB_REENCRYPT;
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "recipient"));
    r = req(f);
    r.recipient_pk = pk;
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    r = req(f);
    r.ttl_s = (uint64_t)ANT_JOB_TTL_MAX + 1;
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "ttl"));
    const char *empty[] = {""};
    r = req(f);
    r.globs = empty;
    r.nglobs = 1;
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    const char *none[] = {"nothing/*"};
    r.globs = none;
    assert_int_equal(submit(f, &r, id, &d), -ENOENT);
    assert_non_null(strstr(d.msg, "matches"));
    r = req(f);
    r.dataset_id = "ds_0000000000000000";
    assert_int_equal(submit(f, &r, id, &d), -ENOENT);
}

static void test_globs_select_files_and_status_counts_them(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    json_t *doc = NULL;
    open_jobs(f);
    const char *odd[] = {"data/odd/*", "data/even/f0.bin"};
    struct ant_job_request r = req(f);
    r.globs = odd;
    r.nglobs = 2;
    assert_int_equal(submit(f, &r, id, &d), 0);
    assert_int_equal(strncmp(id, "job_", 4), 0);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_QUEUED);
    assert_int_equal(info.files_total, NFILES / 2 + 1);
    assert_int_equal(info.bytes_total, (NFILES / 2 + 1) * FILE_SIZE);
    assert_string_equal(info.tenant, "lab");
    assert_string_equal(info.principal, "alice");
    assert_int_equal(info.expires - info.created, 3600);
    assert_int_equal(ant_jobs_status_json(f->jobs, id, 0, &doc), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "queued");
    assert_int_equal(json_array_size(json_object_get(doc, "files")), NFILES / 2 + 1);
    assert_true(json_is_null(json_object_get(doc, "scratch_path")));
    json_decref(doc);
    assert_int_equal(ant_jobs_get(f->jobs, "job_ffffffffffffffff", &info), -ENOENT);
    /* listed for its owner and tenant, not for others */
    json_t *list = NULL;
    assert_int_equal(ant_jobs_list_json(f->jobs, "lab", "alice", 10, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")), id);
    json_decref(list);
    assert_int_equal(ant_jobs_list_json(f->jobs, "lab", "bob", 10, &list), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(ant_jobs_list_json(f->jobs, NULL, NULL, 0, &list), -EINVAL);
}

static void test_quota_is_checked_at_admission(void **state)
{
    struct fx *f = *state;
    char a[ANT_JOB_ID_LEN + 1], b[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    uint64_t quota, used;
    open_jobs(f);
    assert_int_equal(ant_jobs_quota_set(f->jobs, "lab", (NFILES + 2) * FILE_SIZE), 0);
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &quota, &used), 0);
    assert_int_equal(quota, (NFILES + 2) * FILE_SIZE);
    assert_int_equal(used, 0);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, a, &d), 0);
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &quota, &used), 0);
    assert_int_equal(used, NFILES * FILE_SIZE);
    /* the second whole copy does not fit; a reserved job counts while queued */
    assert_int_equal(submit(f, &r, b, &d), -EDQUOT);
    assert_non_null(strstr(d.msg, "scratch quota of tenant lab exceeded"));
    /* two files still fit */
    const char *two[] = {"data/even/f0.bin", "data/odd/f1.bin"};
    r.globs = two;
    r.nglobs = 2;
    assert_int_equal(submit(f, &r, b, &d), 0);
    r.nglobs = 1;
    assert_int_equal(submit(f, &r, b, &d), -EDQUOT);
    /* cancelling gives the reservation back */
    assert_int_equal(ant_jobs_cancel(f->jobs, a, 0), 0);
    assert_int_equal(submit(f, &r, b, &d), 0);
    /* a quota of zero bytes for the tenant, and the default of none, are different things */
    assert_int_equal(ant_jobs_quota_set(f->jobs, "lab", 1), 0);
    assert_int_equal(submit(f, &r, b, &d), -EDQUOT);
    assert_int_equal(ant_jobs_quota_set(f->jobs, "no such tenant!", 1), -EINVAL);
}

/* The byte quota does not bound how many jobs a tenant holds (each a file list in the jobs
 * table, a place in the queue, a folder in the shared scratch): [staging] max_jobs does. */
static void test_job_count_is_limited_per_tenant(void **state)
{
    struct fx *f = *state;
    char a[ANT_JOB_ID_LEN + 1], b[ANT_JOB_ID_LEN + 1], c[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    f->max_jobs = 2;
    open_jobs(f);
    struct ant_job_request r = req(f);
    const char *one[] = {"data/even/f0.bin"};
    r.globs = one;
    r.nglobs = 1;
    assert_int_equal(submit(f, &r, a, &d), 0);
    assert_int_equal(submit(f, &r, b, &d), 0);
    assert_int_equal(submit(f, &r, c, &d), -EDQUOT);
    assert_non_null(strstr(d.msg, "tenant lab has 2 stage jobs"));
    assert_non_null(strstr(d.msg, "max_jobs"));
    /* a cancelled job no longer counts */
    assert_int_equal(ant_jobs_cancel(f->jobs, a, 0), 0);
    assert_int_equal(submit(f, &r, c, &d), 0);
    assert_int_equal(submit(f, &r, a, &d), -EDQUOT);
}

static void test_job_runs_to_ready_and_output_is_complete(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    json_t *doc = NULL;
    open_jobs(f);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    bool ran = false;
    assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0);
    assert_true(ran);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    assert_int_equal(info.files_done, NFILES);
    assert_int_equal(info.bytes_done, info.bytes_total);
    assert_true(info.finished >= info.started && info.started >= info.created);
    assert_int_equal(info.expires, info.finished + 3600);
    check_outputs(f, id);
    char partial[64];
    snprintf(partial, sizeof(partial), "lab/.%s.partial", id);
    assert_false(exists_at(f->scratch_fd, partial));
    assert_int_equal(ant_jobs_status_json(f->jobs, id, 0, &doc), 0);
    char want[64];
    snprintf(want, sizeof(want), "lab/%s", id);
    assert_string_equal(json_string_value(json_object_get(doc, "scratch_path")), want);
    assert_int_equal(json_integer_value(json_object_get(doc, "eta_s")), 0);
    json_decref(doc);
    int fd = -1;
    assert_int_equal(ant_jobs_open_output(f->jobs, &info, &fd), 0);
    assert_true(exists_at(fd, file_path(3)));
    close(fd);
    assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0);
    assert_false(ran);
}

static void test_missing_archive_file_fails_the_job_with_its_name(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1], name[ANT_ID_MAX * 2 + 8];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    snprintf(name, sizeof(name), "%s/%s.c4gh", f->ds, f->storage[2]);
    assert_int_equal(unlinkat(f->archive_fd, name, 0), 0);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    assert_non_null(strstr(info.error, file_path(2)));
    /* nothing of a failed job is left in scratch, and its reservation is released */
    char rel[64];
    snprintf(rel, sizeof(rel), "lab/%s", id);
    assert_false(exists_at(f->scratch_fd, rel));
    snprintf(rel, sizeof(rel), "lab/.%s.partial", id);
    assert_false(exists_at(f->scratch_fd, rel));
    uint64_t q, used;
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &q, &used), 0);
    assert_int_equal(used, 0);
    json_t *doc = NULL;
    assert_int_equal(ant_jobs_status_json(f->jobs, id, 0, &doc), 0);
    json_t *first = json_array_get(json_object_get(doc, "files"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(first, "path")), file_path(2));
    assert_non_null(json_string_value(json_object_get(first, "error")));
    json_decref(doc);
}

static void test_cancel_removes_output_and_is_final(void **state)
{
    struct fx *f = *state;
    char q[ANT_JOB_ID_LEN + 1], r1[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, r1, &d), 0);
    run_all(f);
    assert_int_equal(submit(f, &r, q, &d), 0);
    assert_int_equal(ant_jobs_cancel(f->jobs, q, 0), 0);
    assert_int_equal(ant_jobs_get(f->jobs, q, &info), 0);
    assert_int_equal(info.state, ANT_JOB_CANCELLED);
    assert_int_equal(ant_jobs_cancel(f->jobs, q, 0), -EALREADY);
    char rel[64];
    snprintf(rel, sizeof(rel), "lab/%s", r1);
    assert_true(exists_at(f->scratch_fd, rel));
    assert_int_equal(ant_jobs_cancel(f->jobs, r1, 0), 0);
    assert_false(exists_at(f->scratch_fd, rel));
    assert_int_equal(ant_jobs_get(f->jobs, r1, &info), 0);
    assert_int_equal(info.state, ANT_JOB_CANCELLED);
    int fd = -1;
    assert_int_equal(ant_jobs_open_output(f->jobs, &info, &fd), -ENOENT);
    assert_int_equal(ant_jobs_cancel(f->jobs, "job_0000000000000000", 0), -ENOENT);
    /* a cancelled queued job is never run */
    bool ran = true;
    assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0);
    assert_false(ran);
}

static void test_ttl_purge_removes_output_and_is_audited(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1], stale[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    struct ant_job_request r = req(f);
    r.ttl_s = 60;
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_READY);
    /* a queued job past its time to live goes too, without running */
    r.now = ant_now_unix() - 120;
    assert_int_equal(submit(f, &r, stale, &d), 0);
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires - 1), 1);
    assert_int_equal(ant_jobs_get(f->jobs, stale, &info), 0);
    assert_int_equal(info.state, ANT_JOB_EXPIRED);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_READY);
    char rel[64];
    snprintf(rel, sizeof(rel), "lab/%s", id);
    assert_true(exists_at(f->scratch_fd, rel));
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires), 1);
    assert_false(exists_at(f->scratch_fd, rel));
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_EXPIRED);
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires + 3600), 0);
    uint64_t q, used;
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &q, &used), 0);
    assert_int_equal(used, 0);
    struct ant_audit_query aq = {.action = "stage.purge"};
    json_t *events = NULL;
    int64_t next = 0;
    assert_int_equal(ant_audit_query_run(f->audit, &aq, &events, &next), 0);
    assert_int_equal(json_array_size(events), 2);
    json_t *ev = json_array_get(events, 1);
    assert_string_equal(json_string_value(json_object_get(ev, "resource_id")), id);
    assert_string_equal(json_string_value(json_object_get(ev, "decision")), "info");
    assert_string_equal(json_string_value(json_object_get(ev, "reason")), "ttl_expired");
    json_decref(events);
}

static void test_purge_waits_while_the_audit_log_fails(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    ant_audit_test_fail_writes(f->audit, -EIO);
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires), 0);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_READY);
    ant_audit_test_fail_writes(f->audit, 0);
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires), 1);
}

/* Inode numbers of the job's checkpointed files, in .<id>.partial. */
static void partial_inodes(struct fx *f, const char *id, ino_t ino[NFILES])
{
    for (unsigned i = 0; i < NFILES; i++) {
        char rel[256];
        struct stat sb;
        snprintf(rel, sizeof(rel), "lab/.%s.partial/%s", id, file_path(i));
        ino[i] = fstatat(f->scratch_fd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? sb.st_ino : 0;
    }
}

static void test_resume_after_crash_keeps_finished_files(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    close_jobs(f);

    run_until_killed(f, 3, false);

    ino_t before[NFILES], after[NFILES];
    partial_inodes(f, id, before);
    open_jobs(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_QUEUED); /* requeued at open */
    assert_true(info.files_done >= 3);
    assert_true(info.files_done < NFILES);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    check_outputs(f, id);
    /* the files recorded done before the crash were kept, not copied again */
    unsigned kept = 0;
    for (unsigned i = 0; i < NFILES; i++) {
        char rel[256];
        struct stat sb;
        snprintf(rel, sizeof(rel), "lab/%s/%s", id, file_path(i));
        assert_int_equal(fstatat(f->scratch_fd, rel, &sb, 0), 0);
        after[i] = sb.st_ino;
        kept += before[i] != 0 && before[i] == after[i];
    }
    assert_true(kept >= 3);
}

static void test_workers_run_jobs_and_stop_requeues(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    open_jobs(f);
    assert_int_equal(ant_jobs_start(f->jobs), 0);
    assert_int_equal(ant_jobs_start(f->jobs), -EALREADY);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
        if (info.state == ANT_JOB_READY) {
            break;
        }
        usleep(10000);
    }
    assert_int_equal(info.state, ANT_JOB_READY);
    check_outputs(f, id);
    ant_jobs_stop(f->jobs);
    assert_non_null(ant_jobs_backend(f->jobs));
}

static void test_cancel_of_a_running_job_stops_it_and_cleans_up(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    json_t *doc = NULL;
    f->slow_ms = 100;
    open_jobs(f);
    assert_int_equal(ant_jobs_start(f->jobs), 0);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), 0);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
        if (info.state == ANT_JOB_RUNNING) {
            break;
        }
        usleep(2000);
    }
    assert_int_equal(info.state, ANT_JOB_RUNNING);
    /* the status of a running job carries its progress */
    assert_int_equal(ant_jobs_status_json(f->jobs, id, 0, &doc), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "running");
    assert_non_null(json_object_get(doc, "rate_bytes_per_s"));
    json_decref(doc);
    assert_int_equal(ant_jobs_cancel(f->jobs, id, 0), 0);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_CANCELLED);
    char rel[64];
    snprintf(rel, sizeof(rel), "lab/%s", id);
    assert_false(exists_at(f->scratch_fd, rel));
    snprintf(rel, sizeof(rel), "lab/.%s.partial", id);
    assert_false(exists_at(f->scratch_fd, rel));
    ant_jobs_stop(f->jobs);
}

static void test_decrypt_vectors_into_scratch(void **state)
{
    struct fx *f = *state;
    static const char *const vec[] = {"one-byte", "plus1-65537", "rand-1MiB-plus17", "empty"};
    uint8_t sk[ANT_KEY_LEN];
    struct ant_store *st = NULL;
    char ds[ANT_ID_MAX + 1], id[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    assert_int_equal(ant_hex_decode(ant_bytes_str("159f288f433e9541760da05c22ada9f6e4e00f6b28317c"
                                                  "7ba83371b1fd475d56"),
                                    sk, sizeof(sk)),
                     0);
    assert_int_equal(ant_key_from_secret(sk, &f->kx), 0);
    f->raw = false;
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "vectors",
                                    .classification = ANT_DS_SENSITIVE};
    assert_int_equal(ant_store_dataset_create(st, &spec, ds), 0);
    assert_int_equal(mkdirat(f->archive_fd, ds, 0700), 0);
    int dsfd = openat(f->archive_fd, ds, O_RDONLY | O_DIRECTORY);
    for (size_t i = 0; i < ANT_ARRAY_LEN(vec); i++) {
        char name[ANT_ID_MAX + 16], sid[ANT_ID_MAX + 1], path[64];
        size_t pn = 0, cn = 0;
        snprintf(name, sizeof(name), "%s.bin", vec[i]);
        uint8_t *plain = test_read_file(test_vector_path(name), &pn);
        snprintf(name, sizeof(name), "%s.c4gh", vec[i]);
        uint8_t *enc = test_read_file(test_vector_path(name), &cn);
        snprintf(path, sizeof(path), "v/%s.bin", vec[i]);
        struct ant_file_spec fs = {.dataset_id = ds, .path = path, .size = pn};
        size_t hl = 0;
        assert_int_equal(ant_c4gh_header_measure(ant_bytes_of(enc, cn), &hl, NULL), 0);
        sha256(plain, pn, fs.sha256_plain);
        sha256(enc + hl, cn - hl, fs.sha256_c4gh); /* the catalog keeps the body's digest */
        assert_int_equal(ant_store_file_add(st, &fs, sid), 0);
        snprintf(name, sizeof(name), "%s.c4gh", sid);
        assert_int_equal(ant_write_new_file(dsfd, name, 0600, enc, cn), 0);
        free(plain);
        free(enc);
    }
    close(dsfd);
    ant_store_close(st);
    open_jobs(f);
    struct ant_job_request r = req(f);
    r.dataset_id = ds;
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    if (info.state == ANT_JOB_FAILED && strstr(info.error, "needs Crypt4GH support") != NULL) {
        skip(); /* the engine has no Crypt4GH transforms in this tree yet */
    }
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    for (size_t i = 0; i < ANT_ARRAY_LEN(vec); i++) {
        char name[64], out[512];
        size_t pn = 0, on = 0;
        snprintf(name, sizeof(name), "%s.bin", vec[i]);
        uint8_t *plain = test_read_file(test_vector_path(name), &pn);
        snprintf(out, sizeof(out), "%s/scratch/lab/%s/v/%s.bin", f->dir, id, vec[i]);
        uint8_t *got = test_read_file(out, &on);
        assert_int_equal(on, pn);
        assert_memory_equal(got, plain, pn);
        free(plain);
        free(got);
    }
    /* reencrypt: a new header for the recipient, the body byte for byte */
    struct ant_key *rk = NULL;
    assert_int_equal(ant_key_generate(&rk), 0);
    r.mode = ANT_JOB_REENCRYPT;
    r.recipient_pk = ant_key_public(rk);
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    for (size_t i = 0; i < ANT_ARRAY_LEN(vec); i++) {
        char name[64], out[512];
        size_t cn = 0, on = 0, hin = 0, hout = 0;
        snprintf(name, sizeof(name), "%s.c4gh", vec[i]);
        uint8_t *enc = test_read_file(test_vector_path(name), &cn);
        snprintf(out, sizeof(out), "%s/scratch/lab/%s/v/%s.bin", f->dir, id, vec[i]);
        uint8_t *got = test_read_file(out, &on);
        struct ant_c4gh_header *h = NULL;
        assert_int_equal(ant_c4gh_header_parse(ant_bytes_of(got, on), rk, NULL, 0, &h, NULL), 0);
        ant_c4gh_header_free(h);
        assert_int_equal(ant_c4gh_header_measure(ant_bytes_of(enc, cn), &hin, NULL), 0);
        assert_int_equal(ant_c4gh_header_measure(ant_bytes_of(got, on), &hout, NULL), 0);
        assert_int_equal(on - hout, cn - hin);
        assert_memory_equal(got + hout, enc + hin, cn - hin);
        free(enc);
        free(got);
    }
    ant_key_free(rk);
}

/* A flipped byte in an archived body: the segment's MAC fails, the job fails naming the file by
 * its logical path, and nothing of it is left in scratch. */
static void test_corrupt_archive_file_fails_the_job(void **state)
{
    struct fx *f = *state;
    uint8_t sk[ANT_KEY_LEN];
    struct ant_store *st = NULL;
    char ds[ANT_ID_MAX + 1], sid[ANT_ID_MAX + 1], id[ANT_JOB_ID_LEN + 1];
    char name[2 * ANT_ID_MAX + 16];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    size_t pn = 0, cn = 0, hl = 0;
    assert_int_equal(ant_hex_decode(ant_bytes_str("159f288f433e9541760da05c22ada9f6e4e00f6b28317c"
                                                  "7ba83371b1fd475d56"),
                                    sk, sizeof(sk)),
                     0);
    assert_int_equal(ant_key_from_secret(sk, &f->kx), 0);
    f->raw = false;
    uint8_t *plain = test_read_file(test_vector_path("plus1-65537.bin"), &pn);
    uint8_t *enc = test_read_file(test_vector_path("plus1-65537.c4gh"), &cn);
    assert_int_equal(ant_c4gh_header_measure(ant_bytes_of(enc, cn), &hl, NULL), 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "bad",
                                    .classification = ANT_DS_SENSITIVE};
    assert_int_equal(ant_store_dataset_create(st, &spec, ds), 0);
    struct ant_file_spec fs = {.dataset_id = ds, .path = "x/broken.bin", .size = pn};
    sha256(plain, pn, fs.sha256_plain);
    sha256(enc + hl, cn - hl, fs.sha256_c4gh);
    assert_int_equal(ant_store_file_add(st, &fs, sid), 0);
    ant_store_close(st);
    enc[hl + 100] ^= 0x01;
    assert_int_equal(mkdirat(f->archive_fd, ds, 0700), 0);
    snprintf(name, sizeof(name), "%s/%s.c4gh", ds, sid);
    int fd = openat(f->archive_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ant_write_all(fd, enc, cn), 0);
    close(fd);
    open_jobs(f);
    struct ant_job_request r = req(f);
    r.dataset_id = ds;
    assert_int_equal(submit(f, &r, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    if (strstr(info.error, "needs Crypt4GH support") != NULL) {
        free(plain);
        free(enc);
        skip(); /* the engine has no Crypt4GH transforms in this tree yet */
    }
    assert_non_null(strstr(info.error, "x/broken.bin"));
    char rel[64];
    snprintf(rel, sizeof(rel), "lab/%s", id);
    assert_false(exists_at(f->scratch_fd, rel));
    snprintf(rel, sizeof(rel), "lab/.%s.partial", id);
    assert_false(exists_at(f->scratch_fd, rel));
    free(plain);
    free(enc);
}

static void write_at(int dirfd, const char *rel, const void *p, size_t n)
{
    assert_int_equal(ant_write_new_file(dirfd, rel, 0600, p, n), 0);
}

/* Stage-out: files under the tenant's scratch become files of a draft, encrypted for the site's
 * key and registered with their digests; staging that dataset decrypted gives them back. */
static void test_stage_out_registers_files_that_stage_back(void **state)
{
    struct fx *f = *state;
    uint8_t sk[ANT_KEY_LEN], want[32];
    struct ant_store *st = NULL;
    char ds[ANT_ID_MAX + 1], id[ANT_JOB_ID_LEN + 1], back[ANT_JOB_ID_LEN + 1];
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    static const char big_name[] = "sub/deeper/b.bin";
    size_t big_len = 200001;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    content(7, big, big_len);
    assert_int_equal(ant_hex_decode(ant_bytes_str("159f288f433e9541760da05c22ada9f6e4e00f6b28317c"
                                                  "7ba83371b1fd475d56"),
                                    sk, sizeof(sk)),
                     0);
    assert_int_equal(ant_key_from_secret(sk, &f->kx), 0);
    f->raw = false;
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab", 0700), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/results", 0700), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/results/sub", 0700), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/results/sub/deeper", 0700), 0);
    write_at(f->scratch_fd, "lab/results/a.txt", "hello\n", 6);
    write_at(f->scratch_fd, "lab/results/empty", "", 0);
    write_at(f->scratch_fd, "lab/results/sub/deeper/b.bin", big, big_len);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "derived",
                                    .classification = ANT_DS_INTERNAL};
    assert_int_equal(ant_store_dataset_create(st, &spec, ds), 0);
    open_jobs(f);
    struct ant_job_out_request rq = {.who = &f->alice, .source = "results", .dataset_id = ds};
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, id, &d), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    if (strstr(info.error, "needs Crypt4GH support") != NULL) {
        ant_store_close(st);
        free(big);
        skip();
    }
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    assert_int_equal(info.mode, ANT_JOB_ENCRYPT);
    assert_int_equal(info.files_total, 3);
    /* its files are the dataset's now: nothing to cancel, and no purge touches them */
    assert_int_equal(ant_jobs_cancel(f->jobs, id, 0), -EALREADY);
    assert_int_equal(ant_jobs_purge(f->jobs, info.expires + 1), 0);
    struct ant_file af;
    assert_int_equal(ant_store_file_get(st, ds, big_name, &af), 0);
    assert_int_equal(af.size, big_len);
    sha256(big, big_len, want);
    assert_memory_equal(af.sha256_plain, want, 32);
    char rel[2 * ANT_ID_MAX + 16];
    snprintf(rel, sizeof(rel), "%s/%s.c4gh", ds, af.storage_id);
    assert_true(exists_at(f->archive_fd, rel));
    snprintf(rel, sizeof(rel), "%s/so-%s", ds, id);
    assert_false(exists_at(f->archive_fd, rel));
    assert_int_equal(ant_store_file_get(st, ds, "empty", &af), 0);
    assert_int_equal(af.size, 0);
    /* again: the paths are in the dataset now */
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EEXIST);
    assert_non_null(strstr(d.msg, "already"));
    /* a file of the dataset where the new one needs a folder, or the reverse: one tree */
    assert_int_equal(mkdirat(f->scratch_fd, "lab/more", 0700), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/more/a.txt", 0700), 0);
    write_at(f->scratch_fd, "lab/more/a.txt/x", "x", 1);
    rq.source = "more";
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EEXIST);
    assert_non_null(strstr(d.msg, "a.txt/x cannot join"));
    assert_non_null(strstr(d.msg, "its file a.txt is in the way"));
    assert_int_equal(mkdirat(f->scratch_fd, "lab/more2", 0700), 0);
    write_at(f->scratch_fd, "lab/more2/sub", "s", 1);
    rq.source = "more2";
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EEXIST);
    assert_non_null(strstr(d.msg, "its file sub/deeper/b.bin is in the way"));
    rq.source = "results";
    /* a symlink in the folder is refused; so is a folder that is not there */
    assert_int_equal(symlinkat("/etc/passwd", f->scratch_fd, "lab/results/sub/link"), 0);
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "symbolic link"));
    assert_int_equal(unlinkat(f->scratch_fd, "lab/results/sub/link", 0), 0);
    /* so is a file with a second name, which could be anywhere (the site's own keys) */
    assert_int_equal(linkat(f->scratch_fd, "lab/more2/sub", f->scratch_fd, "lab/results/hard", 0),
                     0);
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "hard has 2 hard links"));
    /* and one that became a second link after admission is not read */
    char ds2[ANT_ID_MAX + 1], id2[ANT_JOB_ID_LEN + 1];
    struct ant_dataset_spec spec2 = {.tenant = "lab", .name = "derived2",
                                     .classification = ANT_DS_INTERNAL};
    assert_int_equal(ant_store_dataset_create(st, &spec2, ds2), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/swap", 0700), 0);
    write_at(f->scratch_fd, "lab/swap/c.txt", "c\n", 2);
    struct ant_job_out_request rq2 = {.who = &f->alice, .source = "swap", .dataset_id = ds2};
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq2, id2, &d), 0);
    assert_int_equal(unlinkat(f->scratch_fd, "lab/swap/c.txt", 0), 0);
    assert_int_equal(linkat(f->scratch_fd, "lab/more2/sub", f->scratch_fd, "lab/swap/c.txt", 0),
                     0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id2, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    assert_non_null(strstr(info.error, "hard links"));
    assert_int_equal(ant_store_file_get(st, ds2, "c.txt", &af), -ENOENT);
    /* its end is audited whatever the error says: a name of 200 quotes (400 bytes once
     * escaped, which a fixed-size detail cut into something the log refused) */
    char qrel[300], ds3[ANT_ID_MAX + 1], id3[ANT_JOB_ID_LEN + 1];
    char qname[201];
    memset(qname, '"', 200);
    qname[200] = '\0';
    spec2.name = "derived3";
    assert_int_equal(ant_store_dataset_create(st, &spec2, ds3), 0);
    assert_int_equal(mkdirat(f->scratch_fd, "lab/swapq", 0700), 0);
    snprintf(qrel, sizeof(qrel), "lab/swapq/%s", qname);
    write_at(f->scratch_fd, qrel, "q\n", 2);
    rq2.source = "swapq";
    rq2.dataset_id = ds3;
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq2, id3, &d), 0);
    assert_int_equal(unlinkat(f->scratch_fd, qrel, 0), 0);
    assert_int_equal(linkat(f->scratch_fd, "lab/more2/sub", f->scratch_fd, qrel, 0), 0);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id3, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    struct ant_audit_query aq = {.action = "stage.failed"};
    json_t *events = NULL;
    int64_t next = 0;
    assert_int_equal(ant_audit_query_run(f->audit, &aq, &events, &next), 0);
    size_t k, found = 0;
    json_t *ev;
    json_array_foreach(events, k, ev)
    {
        if (strcmp(json_string_value(json_object_get(ev, "resource_id")), id3) == 0) {
            json_t *det = json_loads(json_string_value(json_object_get(ev, "detail")), 0, NULL);
            assert_true(json_is_object(det));
            assert_non_null(strstr(json_string_value(json_object_get(det, "error")), "\"\"\""));
            json_decref(det);
            found++;
        }
    }
    assert_int_equal(found, 1);
    json_decref(events);
    assert_int_equal(unlinkat(f->scratch_fd, "lab/results/hard", 0), 0);
    rq.source = "nothing";
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -ENOENT);
    rq.source = "../lab";
    assert_int_equal(ant_jobs_submit_out(f->jobs, st, &rq, back, &d), -EINVAL);
    /* round trip: stage the new dataset decrypted */
    struct ant_job_request r = req(f);
    r.dataset_id = ds;
    assert_int_equal(ant_jobs_submit(f->jobs, st, &r, back, &d), 0);
    ant_store_close(st);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, back, &info), 0);
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    char out[512];
    size_t n = 0;
    snprintf(out, sizeof(out), "%s/scratch/lab/%s/%s", f->dir, back, big_name);
    uint8_t *got = test_read_file(out, &n);
    assert_int_equal(n, big_len);
    assert_memory_equal(got, big, big_len);
    free(got);
    free(big);
}

/* --- remote jobs: what can be checked without a peer --- */

static const char g_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

static int submit_remote(struct fx *f, const struct ant_job_request *r,
                         char id[ANT_JOB_ID_LEN + 1], char tr[65], struct ant_diag *d)
{
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    int rc = ant_jobs_submit_remote(f->jobs, st, r, id, tr, d);
    ant_store_close(st);
    return rc;
}

/* A peer whose URL refuses connections (port 1 on loopback). */
static void add_dead_peer(struct fx *f, const char *id)
{
    struct ant_store *st = NULL;
    struct ant_peer p;
    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "%s", id);
    snprintf(p.url, sizeof(p.url), "https://127.0.0.1:1");
    snprintf(p.region, sizeof(p.region), "EU-IT");
    memset(p.x25519_pk, 7, sizeof(p.x25519_pk));
    memset(p.ed25519_pk, 9, sizeof(p.ed25519_pk));
    snprintf(p.added_by, sizeof(p.added_by), "test");
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    assert_int_equal(ant_peer_add(st, &p, ant_bytes_str(g_pem)), 0);
    ant_store_close(st);
}

static void test_remote_admission_refuses_clearly(void **state)
{
    struct fx *f = *state;
    char id[ANT_JOB_ID_LEN + 1], tr[65];
    struct ant_diag d = {{0}};
    struct ant_job_request r = req(f);
    r.peer_id = "site-x";
    r.purpose = "DUO:0000042";
    r.dataset_id = "ds_0123456789abcdef";
    /* without the catalog pool (peers, cache) a site cannot stage from peers */
    open_jobs(f);
    assert_int_equal(submit_remote(f, &r, id, tr, &d), -ENOTSUP);
    close_jobs(f);
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    open_jobs(f);
    memset(&d, 0, sizeof(d));
    assert_int_equal(submit_remote(f, &r, id, tr, &d), -ENXIO);
    assert_non_null(strstr(ant_diag_msg(&d, ""), "site-x is not a peer"));
    r.purpose = NULL;
    memset(&d, 0, sizeof(d));
    assert_int_equal(submit_remote(f, &r, id, tr, &d), -EINVAL);
    assert_non_null(strstr(ant_diag_msg(&d, ""), "purpose"));
    r.purpose = "DUO:0000042";
    /* the dataset id goes into the peer's URL: no path of its own */
    r.dataset_id = "../v1/tenants";
    assert_int_equal(submit_remote(f, &r, id, tr, &d), -EINVAL);
    r.dataset_id = "ds_0123456789abcdef";
    /* the local admission does not take a peer's dataset */
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    /* a peer that cannot be reached: refused before any job is recorded, with a transfer id */
    add_dead_peer(f, "site-x");
    memset(&d, 0, sizeof(d));
    assert_int_equal(submit_remote(f, &r, id, tr, &d), -EIO);
    assert_int_equal(strncmp(tr, "tr_", 3), 0);
    json_t *list = NULL;
    assert_int_equal(ant_jobs_list_json(f->jobs, "lab", NULL, 10, &list), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

/* A catalog written before the store refused "a" beside "a/b" may hold both: staging it whole
 * is refused at admission (one folder tree cannot hold both), a part without one of them is
 * fine. */
static void test_stage_refuses_a_legacy_file_that_is_also_a_folder(void **state)
{
    struct fx *f = *state;
    sqlite3 *db = NULL;
    char path[4200], id[ANT_JOB_ID_LEN + 1], sql[512];
    struct ant_diag d = {{0}};
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql),
             "INSERT INTO files(id, dataset_id, path, size, sha256_plain, sha256_c4gh,"
             " storage_id, created) VALUES('f_legacy', '%s', 'data/odd', 1, zeroblob(32),"
             " zeroblob(32), 'f_legacy', 1)",
             f->ds);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_jobs(f);
    struct ant_job_request r = req(f);
    assert_int_equal(submit(f, &r, id, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "holds both data/odd and data/odd/f1.bin"));
    static const char *const even[] = {"data/even/*"};
    r.globs = even;
    r.nglobs = 1;
    assert_int_equal(submit(f, &r, id, &d), 0);
}

/* The schema (step 6) records exactly one source per job: a local dataset or a peer's. */
static void test_schema_wants_one_source_per_job(void **state)
{
    struct fx *f = *state;
    sqlite3 *db = NULL;
    char path[4200];
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    static const char *const bad[] = {
        /* neither */
        "INSERT INTO stage_jobs(id, tenant_id, principal_id, mode, state, ttl_s, created, expires)"
        " VALUES('job_a', 'lab', 'alice', 'decrypt', 'queued', 60, 1, 61)",
        /* both */
        "INSERT INTO stage_jobs(id, tenant_id, principal_id, dataset_id, peer_id, remote_dataset,"
        " transfer_id, mode, state, ttl_s, created, expires) VALUES('job_b', 'lab', 'alice',"
        " (SELECT id FROM datasets), 'site-x', 'ds_1', 'tr_1', 'decrypt', 'queued', 60, 1, 61)",
        /* a peer without its transfer id */
        "INSERT INTO stage_jobs(id, tenant_id, principal_id, peer_id, remote_dataset, mode,"
        " state, ttl_s, created, expires) VALUES('job_c', 'lab', 'alice', 'site-x', 'ds_1',"
        " 'decrypt', 'queued', 60, 1, 61)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sqlite3_exec(db, bad[i], NULL, NULL, NULL), SQLITE_CONSTRAINT);
    }
    sqlite3_close(db);
}

/* What admission records for a remote job `id` of one file of site-x's ds_remote, queued after
 * those inserted before (admission itself needs the peer's signed manifest:
 * tests/integration/test_federation.sh). */
static void insert_remote_job_id(struct fx *f, const char *id)
{
    sqlite3 *db = NULL;
    char path[4200];
    uint8_t sha[32] = {1};
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    /* claimed by (created, rowid): in the order inserted */
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "INSERT INTO stage_jobs(id, tenant_id, principal_id, peer_id,"
                           " remote_dataset, remote_name, transfer_id, purpose, mode, state,"
                           " files_total, bytes_total, scratch_bytes, ttl_s, created, expires)"
                           " VALUES(?, 'lab', 'alice', 'site-x', 'ds_remote',"
                           " 'cohort', 'tr_0123', 'DUO:0000042', 'decrypt', 'queued', 1, 5, 5,"
                           " 60, strftime('%s','now'), strftime('%s','now') + 60)",
                           -1, &s, NULL),
        SQLITE_OK);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO stage_job_files(job_id, idx, file_id,"
                                        " storage_id, path, size, sha256) VALUES("
                                        "?, 0, '', '', 'a.txt', 5, ?)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, sha, sizeof(sha), SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void insert_remote_job(struct fx *f)
{
    insert_remote_job_id(f, "job_00000000000000aa");
}

/* A remote job whose peer is gone by the time it runs fails with the transport's reason, and
 * says which peer, dataset and transfer it was. */
static void test_remote_job_fails_when_its_peer_is_gone(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    add_dead_peer(f, "site-x");
    insert_remote_job(f);
    f->raw = false;
    assert_int_equal(ant_key_generate(&f->kx), 0);
    open_jobs(f);
    uint64_t quota = 0, used = 0;
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &quota, &used), 0);
    assert_int_equal(used, 5);
    run_all(f);
    struct ant_job_info info;
    assert_int_equal(ant_jobs_get(f->jobs, "job_00000000000000aa", &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    assert_string_equal(info.peer_id, "site-x");
    assert_string_equal(info.dataset_id, "ds_remote");
    assert_non_null(strstr(info.error, "cannot pull ds_remote from site-x (transfer tr_0123)"));
    json_t *doc = NULL;
    assert_int_equal(ant_jobs_status_json(f->jobs, info.id, 0, &doc), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "site")), "site-x");
    assert_string_equal(json_string_value(json_object_get(doc, "transfer_id")), "tr_0123");
    assert_string_equal(json_string_value(json_object_get(doc, "dataset_name")), "cohort");
    assert_true(json_is_null(json_object_get(doc, "scratch_path")));
    json_decref(doc);
    /* nothing was left in scratch, and the quota it held is free again */
    assert_int_equal(ant_jobs_quota_get(f->jobs, "lab", &quota, &used), 0);
    assert_int_equal(used, 0);
    assert_false(exists_at(f->scratch_fd, "lab/job_00000000000000aa"));
}

/* Partial copies of a pull killed with its process are swept at start-up once stale; a copy
 * being written (recent) is left alone. A cached copy is kept while a fed_cache row names it;
 * an old one no row names (its peer's file changed and the row moved to a new copy) is
 * swept, a recent one is not (a pull renames its copy into place just before the row). */
static void test_open_sweeps_stale_partial_copies(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdirat(f->archive_fd, "fed", 0700), 0);
    int fed = openat(f->archive_fd, "fed", O_RDONLY | O_DIRECTORY);
    assert_true(fed >= 0);
    const char *names[] = {".fetch-old", ".fetch-new", "fc_0123.c4gh", "fc_gone.c4gh",
                           "fc_fresh.c4gh", "fc_odd.bin", "notes.txt"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(ant_write_new_file(fed, names[i], 0600, (const uint8_t *)"x", 1), 0);
    }
    struct timespec old[2] = {{.tv_sec = time(NULL) - 3600}, {.tv_sec = time(NULL) - 3600}};
    const char *aged[] = {".fetch-old", "fc_0123.c4gh", "fc_gone.c4gh", "fc_odd.bin", "notes.txt"};
    for (size_t i = 0; i < sizeof(aged) / sizeof(aged[0]); i++) {
        assert_int_equal(utimensat(fed, aged[i], old, 0), 0);
    }
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    struct ant_fed_cached c;
    memset(&c, 0, sizeof(c));
    snprintf(c.storage, sizeof(c.storage), "fc_0123");
    c.size = 1;
    assert_int_equal(ant_fed_cache_put(st, "site-a", "ds_remote", "a/b.bin", &c, 0), 0);
    ant_store_close(st);
    open_jobs(f);
    assert_false(exists_at(fed, ".fetch-old"));
    assert_true(exists_at(fed, ".fetch-new"));
    assert_true(exists_at(fed, "fc_0123.c4gh")); /* named by a row: data, never swept */
    assert_false(exists_at(fed, "fc_gone.c4gh"));
    assert_true(exists_at(fed, "fc_fresh.c4gh"));
    assert_true(exists_at(fed, "fc_odd.bin")); /* not a name the cache gives */
    assert_true(exists_at(fed, "notes.txt"));
    close(fed);
}

/* n cached copies of site-x's ds_remote, <prefix>0.. of `size` bytes each, last used at `used`
 * (unix s), with their files in archive/fed. */
static void cache_copies(struct fx *f, const char *prefix, unsigned n, uint64_t size, int64_t used)
{
    struct ant_store *st = NULL;
    if (mkdirat(f->archive_fd, "fed", 0700) < 0) {
        assert_int_equal(errno, EEXIST);
    }
    int fed = openat(f->archive_fd, "fed", O_RDONLY | O_DIRECTORY);
    assert_true(fed >= 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    for (unsigned i = 0; i < n; i++) {
        struct ant_fed_cached c;
        char path[64], name[ANT_ID_MAX + 8];
        memset(&c, 0, sizeof(c));
        snprintf(c.storage, sizeof(c.storage), "fc_%s%u", prefix, i);
        snprintf(path, sizeof(path), "%s/%u", prefix, i);
        c.size = size;
        assert_int_equal(ant_fed_cache_put(st, "site-x", "ds_remote", path, &c, used), 0);
        snprintf(name, sizeof(name), "%s.c4gh", c.storage);
        assert_int_equal(ant_write_new_file(fed, name, 0600, (const uint8_t *)"x", 1), 0);
    }
    ant_store_close(st);
    close(fed);
}

static bool cached_copy(struct fx *f, const char *prefix, unsigned i)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "fed/fc_%s%u.c4gh", prefix, i);
    return exists_at(f->archive_fd, rel);
}

/* At start-up (ant_jobs_open) a cache over [federation] cache_max is trimmed, least recently
 * used first; copies used within the grace period stay. Without a limit nothing goes. */
static void test_open_trims_the_fed_cache_to_its_limit(void **state)
{
    struct fx *f = *state;
    int64_t now = ant_now_unix();
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    cache_copies(f, "old", 4, 100, now - 2 * ANT_FED_CACHE_GRACE_S);
    cache_copies(f, "new", 2, 100, now);
    open_jobs(f); /* cache_max 0: no limit */
    for (unsigned i = 0; i < 4; i++) {
        assert_true(cached_copy(f, "old", i));
    }
    close_jobs(f);
    f->cache_max = 250;
    open_jobs(f);
    for (unsigned i = 0; i < 4; i++) {
        assert_false(cached_copy(f, "old", i));
    }
    assert_true(cached_copy(f, "new", 0));
    assert_true(cached_copy(f, "new", 1));
    close_jobs(f);
    /* over the limit, but all in use: kept */
    f->cache_max = 1;
    open_jobs(f);
    assert_true(cached_copy(f, "new", 0));
    assert_true(cached_copy(f, "new", 1));
}

/* When a remote job ends (here: failed, its peer unreachable), the cache is trimmed. */
static void test_remote_job_end_trims_the_fed_cache(void **state)
{
    struct fx *f = *state;
    int64_t now = ant_now_unix();
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    add_dead_peer(f, "site-x");
    insert_remote_job(f);
    f->raw = false;
    assert_int_equal(ant_key_generate(&f->kx), 0);
    f->cache_max = 150;
    cache_copies(f, "new", 1, 100, now);
    open_jobs(f); /* under the limit */
    cache_copies(f, "old", 3, 100, now - 2 * ANT_FED_CACHE_GRACE_S);
    run_all(f);
    struct ant_job_info info;
    assert_int_equal(ant_jobs_get(f->jobs, "job_00000000000000aa", &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    for (unsigned i = 0; i < 3; i++) {
        assert_false(cached_copy(f, "old", i));
    }
    assert_true(cached_copy(f, "new", 0));
}

/* --- eviction and running remote jobs (test_fed_step) --- */

/* Runs the next queued job on a thread of its own (a second runner beside the test's). */
struct runner {
    pthread_t th;
    struct fx *f;
    int rc;
    bool ran;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    r->rc = ant_jobs_run_next(r->f->jobs, &r->ran);
    return NULL;
}

static void runner_start(struct runner *r, struct fx *f)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    assert_int_equal(pthread_create(&r->th, NULL, runner_main, r), 0);
}

static void runner_join(struct runner *r)
{
    assert_int_equal(pthread_join(r->th, NULL), 0);
    assert_int_equal(r->rc, 0);
    assert_true(r->ran);
}

/* Index of the first report of `step` for `job` at or after `from`, or -1. Under f->mu. */
static int step_at_locked(struct fx *f, unsigned from, const char *job, enum ant_jobs_fed_step step)
{
    for (unsigned i = from; i < f->nsteps; i++) {
        if (f->steps[i].step == step && strcmp(f->steps[i].job, job) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int step_at(struct fx *f, const char *job, enum ant_jobs_fed_step step)
{
    pthread_mutex_lock(&f->mu);
    int i = step_at_locked(f, 0, job, step);
    pthread_mutex_unlock(&f->mu);
    return i;
}

/* Waits (at most 60 s: a hang fails rather than blocks the suite) until `job` reports `step`. */
static void wait_step(struct fx *f, const char *job, enum ant_jobs_fed_step step)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (step_at_locked(f, 0, job, step) < 0 && rc == 0) {
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    }
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(rc, 0);
}

static void release_blocked(struct fx *f)
{
    pthread_mutex_lock(&f->mu);
    f->release = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* A site whose peer site-x is unreachable (each remote job fails at once, after its pull has
 * counted it running), with cache_max 150 and, once open, 3 old copies (100 bytes each, unused
 * for two hours) beside one in use: any pass evicts the old ones. */
static void remote_cache_site(struct fx *f)
{
    int64_t now = ant_now_unix();
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &f->pool), 0);
    add_dead_peer(f, "site-x");
    f->raw = false;
    assert_int_equal(ant_key_generate(&f->kx), 0);
    f->cache_max = 150;
    cache_copies(f, "new", 1, 100, now);
    open_jobs(f); /* under the limit */
    assert_true(step_at(f, "", ANT_JOBS_FED_TRIMMED) >= 0);
    cache_copies(f, "old", 3, 100, now - 2 * ANT_FED_CACHE_GRACE_S);
}

static void assert_old_copies(struct fx *f, bool present)
{
    for (unsigned i = 0; i < 3; i++) {
        assert_true(cached_copy(f, "old", i) == present);
    }
    assert_true(cached_copy(f, "new", 0));
}

/* While a remote job runs (it may read any copy), a remote job that ends does not trim; the
 * last one to end does. */
static void test_no_eviction_while_a_remote_job_runs(void **state)
{
    struct fx *f = *state;
    struct runner ra;
    struct ant_jobs_fed_stats fs;
    const char *a = "job_0000000000000a01", *b = "job_0000000000000b01";
    insert_remote_job_id(f, a);
    insert_remote_job_id(f, b);
    remote_cache_site(f);
    snprintf(f->block_id, sizeof(f->block_id), "%s", a);
    runner_start(&ra, f); /* claims a, held running before its pull */
    wait_step(f, a, ANT_JOBS_FED_RUNNING);
    bool ran = false;
    assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0); /* b, start to end */
    assert_true(ran);
    struct ant_job_info info;
    assert_int_equal(ant_jobs_get(f->jobs, b, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    assert_true(step_at(f, b, ANT_JOBS_FED_TRIM_SKIPPED) >= 0);
    assert_int_equal(step_at(f, b, ANT_JOBS_FED_TRIMMED), -1);
    assert_old_copies(f, true);
    ant_jobs_fed_stats(f->jobs, &fs);
    assert_int_equal(fs.evicted_files, 0);
    /* a ends: no remote job runs any more, so it trims */
    release_blocked(f);
    runner_join(&ra);
    assert_int_equal(ant_jobs_get(f->jobs, a, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED);
    assert_true(step_at(f, a, ANT_JOBS_FED_TRIMMED) >= 0);
    assert_old_copies(f, false);
    ant_jobs_fed_stats(f->jobs, &fs);
    assert_int_equal(fs.evicted_files, 3);
    assert_int_equal(fs.evicted_bytes, 300);
}

/* Remote job a runs (blocked in its pull, on ra), and ANT_FED_CACHE_TRIM_EVERY remote jobs
 * start and end while it runs: none is held, each skips the pass. Remote job c is queued. */
static void skip_trims_under(struct fx *f, const char *a, const char *c, struct runner *ra)
{
    char bs[ANT_FED_CACHE_TRIM_EVERY][ANT_JOB_ID_LEN + 1];
    insert_remote_job_id(f, a);
    for (unsigned i = 0; i < ANT_FED_CACHE_TRIM_EVERY; i++) {
        snprintf(bs[i], sizeof(bs[i]), "job_0000000000000b%02x", i);
        insert_remote_job_id(f, bs[i]);
    }
    insert_remote_job_id(f, c);
    remote_cache_site(f);
    snprintf(f->block_id, sizeof(f->block_id), "%s", a);
    runner_start(ra, f);
    wait_step(f, a, ANT_JOBS_FED_RUNNING);
    for (unsigned i = 0; i < ANT_FED_CACHE_TRIM_EVERY; i++) {
        bool ran = false;
        assert_int_equal(ant_jobs_run_next(f->jobs, &ran), 0);
        assert_true(ran);
        assert_int_equal(step_at(f, bs[i], ANT_JOBS_FED_HELD), -1);
        assert_true(step_at(f, bs[i], ANT_JOBS_FED_TRIM_SKIPPED) >= 0);
        assert_old_copies(f, true);
    }
}

/* Remote jobs that overlap without a pause: once ANT_FED_CACHE_TRIM_EVERY have ended while
 * another ran, the next one waits before its pull until the running one ends and trims. */
static void test_overlapping_remote_jobs_do_not_starve_eviction(void **state)
{
    struct fx *f = *state;
    struct runner ra, rc;
    const char *a = "job_0000000000000a01", *c = "job_0000000000000c01";
    skip_trims_under(f, a, c, &ra);
    /* c is held before its pull (it is not counted running) while a still runs */
    runner_start(&rc, f);
    wait_step(f, c, ANT_JOBS_FED_HELD);
    assert_int_equal(step_at(f, c, ANT_JOBS_FED_RUNNING), -1);
    assert_old_copies(f, true);
    release_blocked(f);
    runner_join(&ra);
    runner_join(&rc);
    /* a, the last running, trimmed; only then did c go on */
    int trimmed = step_at(f, a, ANT_JOBS_FED_TRIMMED);
    int c_running = step_at(f, c, ANT_JOBS_FED_RUNNING);
    assert_true(trimmed >= 0 && c_running > trimmed);
    assert_true(step_at(f, c, ANT_JOBS_FED_HELD) < trimmed);
    assert_old_copies(f, false);
    struct ant_job_info info;
    assert_int_equal(ant_jobs_get(f->jobs, c, &info), 0);
    assert_int_equal(info.state, ANT_JOB_FAILED); /* its dead peer, as every job here */
}

/* A remote job held for the pass is cancelled like any other while it waits. */
static void test_held_remote_job_can_be_cancelled(void **state)
{
    struct fx *f = *state;
    struct runner ra, rc;
    const char *a = "job_0000000000000a01", *c = "job_0000000000000c01";
    skip_trims_under(f, a, c, &ra);
    runner_start(&rc, f);
    wait_step(f, c, ANT_JOBS_FED_HELD);
    assert_int_equal(ant_jobs_cancel(f->jobs, c, 0), 0);
    runner_join(&rc);
    struct ant_job_info info;
    assert_int_equal(ant_jobs_get(f->jobs, c, &info), 0);
    assert_int_equal(info.state, ANT_JOB_CANCELLED);
    assert_int_equal(step_at(f, c, ANT_JOBS_FED_RUNNING), -1);
    assert_old_copies(f, true); /* a still runs */
    release_blocked(f);
    runner_join(&ra);
    assert_old_copies(f, false);
}

/* The resume mark of file idx of job `id` in the job table. */
static uint64_t resume_bytes(struct fx *f, const char *id, unsigned idx)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char path[4200];
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT resume_bytes FROM stage_job_files"
                                        " WHERE job_id = ? AND idx = ?",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)idx);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    uint64_t v = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* A big file resumed inside: a crash right after its first resume mark leaves the mark in the
 * job table and in the status document; the restarted job, stopped gracefully (ant_jobs_stop)
 * after a further mark, records the prefix written by then and goes back to queued; the last
 * run continues after that prefix. The archive copy's first bytes are damaged before it: the
 * job still ends ready with the catalog's bytes, which only a copy that did not start over
 * can give. */
static void test_big_file_resumes_inside_after_crash_and_stop(void **state)
{
    struct fx *f = *state;
    /* big enough that the run cannot end while one mark's fdatasync is in flight */
    enum { BIG = (12 << 20) + 12345, MARK = 1 << 20 };
    uint8_t *buf = malloc(BIG);
    char ds[ANT_ID_MAX + 1], sid[ANT_ID_MAX + 1], id[ANT_JOB_ID_LEN + 1], name[ANT_ID_MAX + 8];
    struct ant_store *st = NULL;
    struct ant_diag d = {{0}};
    struct ant_job_info info;
    json_t *doc = NULL;
    assert_non_null(buf);
    content(99, buf, BIG);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "big",
                                    .classification = ANT_DS_SENSITIVE};
    assert_int_equal(ant_store_dataset_create(st, &spec, ds), 0);
    struct ant_file_spec fs = {.dataset_id = ds, .path = "big.bin", .size = BIG};
    sha256(buf, BIG, fs.sha256_plain);
    sha256(buf, BIG, fs.sha256_c4gh);
    assert_int_equal(ant_store_file_add(st, &fs, sid), 0);
    ant_store_close(st);
    assert_int_equal(mkdirat(f->archive_fd, ds, 0700), 0);
    int dsfd = openat(f->archive_fd, ds, O_RDONLY | O_DIRECTORY);
    assert_true(dsfd >= 0);
    snprintf(name, sizeof(name), "%s.c4gh", sid);
    assert_int_equal(ant_write_new_file(dsfd, name, 0600, buf, BIG), 0);
    f->resume_min = MARK;
    open_jobs(f);
    struct ant_job_request r = req(f);
    r.dataset_id = ds;
    assert_int_equal(submit(f, &r, id, &d), 0);
    close_jobs(f);

    run_until_killed(f, 0, true);
    uint64_t m1 = resume_bytes(f, id, 0);
    assert_true(m1 >= MARK && m1 < 2 * MARK);

    open_jobs(f);
    assert_int_equal(ant_jobs_status_json(f->jobs, id, 0, &doc), 0);
    json_t *f0 = json_array_get(json_object_get(doc, "files"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "state")), "pending");
    assert_int_equal(json_integer_value(json_object_get(f0, "resume_bytes")), (json_int_t)m1);
    json_decref(doc);
    /* the run stands still after its next mark (the hook waits) while a daemon stop begins
     * (ant_jobs_stop sets the stop flag at once, then waits for the run): at most the chunks
     * then in flight are written after it */
    f->hold_mark = true;
    assert_int_equal(ant_jobs_start(f->jobs), 0);
    pthread_mutex_lock(&f->mu);
    while (f->nmarks == 0) {
        pthread_cond_wait(&f->cv, &f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_main, f), 0);
    usleep(200 * 1000);
    pthread_mutex_lock(&f->mu);
    f->release = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pthread_join(stopper, NULL), 0);
    f->hold_mark = false;
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_int_equal(info.state, ANT_JOB_QUEUED);
    uint64_t m2 = resume_bytes(f, id, 0);
    assert_true(m2 >= m1 + MARK && m2 < BIG);

    /* from here the copy reads the archive only past m2 */
    uint8_t junk[4096];
    memset(junk, 0xee, sizeof(junk));
    int afd = openat(dsfd, name, O_WRONLY | O_CLOEXEC);
    assert_true(afd >= 0);
    assert_int_equal(pwrite(afd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    close(afd);
    close(dsfd);
    run_all(f);
    assert_int_equal(ant_jobs_get(f->jobs, id, &info), 0);
    assert_string_equal(info.error, "");
    assert_int_equal(info.state, ANT_JOB_READY);
    char out[512];
    size_t n = 0;
    snprintf(out, sizeof(out), "%s/scratch/lab/%s/big.bin", f->dir, id);
    uint8_t *got = test_read_file(out, &n);
    assert_int_equal(n, BIG);
    assert_memory_equal(got, buf, BIG);
    assert_int_equal(resume_bytes(f, id, 0), 0); /* done: no mark left */
    free(got);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_machine_allows_only_its_moves),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_submit_refuses_bad_requests),
        T(test_globs_select_files_and_status_counts_them),
        T(test_quota_is_checked_at_admission),
        T(test_job_count_is_limited_per_tenant),
        T(test_job_runs_to_ready_and_output_is_complete),
        T(test_missing_archive_file_fails_the_job_with_its_name),
        T(test_cancel_removes_output_and_is_final),
        T(test_ttl_purge_removes_output_and_is_audited),
        T(test_purge_waits_while_the_audit_log_fails),
        T(test_resume_after_crash_keeps_finished_files),
        T(test_workers_run_jobs_and_stop_requeues),
        T(test_cancel_of_a_running_job_stops_it_and_cleans_up),
        T(test_decrypt_vectors_into_scratch),
        T(test_corrupt_archive_file_fails_the_job),
        T(test_stage_out_registers_files_that_stage_back),
        T(test_remote_admission_refuses_clearly),
        T(test_stage_refuses_a_legacy_file_that_is_also_a_folder),
        T(test_schema_wants_one_source_per_job),
        T(test_remote_job_fails_when_its_peer_is_gone),
        T(test_open_sweeps_stale_partial_copies),
        T(test_open_trims_the_fed_cache_to_its_limit),
        T(test_remote_job_end_trims_the_fed_cache),
        T(test_no_eviction_while_a_remote_job_runs),
        T(test_overlapping_remote_jobs_do_not_starve_eviction),
        T(test_held_remote_job_can_be_cancelled),
        T(test_big_file_resumes_inside_after_crash_and_stop),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
