/* Unit tests for staging/engine.h: the logical-path validator, confined opens, and staging
 * jobs on each backend (io_uring is skipped where no ring sets up). */
#include "tests/unit/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto/c4gh.h"
#include "crypto/keys.h"
#include "staging/engine.h"
#include "staging/engine_internal.h" /* stage_walk_open: the openat2 fallback */

/* --- fixtures --- */

struct fx {
    enum ant_io_engine eng;
    char *dir;
    int src, dst; /* <dir>/src and <dir>/dst */
    struct ant_engine *e;
    char mnt[512]; /* a tmpfs a test mounted, unmounted by teardown even when it fails */
};

struct results {
    size_t nok, nfail;
    int last_rc;
    char last_msg[256];
    uint64_t last_total;
    bool backwards; /* the total went down */
    size_t ncalls;
    const atomic_bool *cancel_flag; /* set after the first progress callback */
    atomic_bool *to_set;
    int *seen;                      /* per-file count of on_file calls */
    /* resume marks (on_mark): the last one of each file (index < 4), how many, and whether an
     * earlier mark was voided (0) */
    uint64_t mark[4];
    unsigned nmarks;
    bool mark_voided;
    atomic_bool *stop_after;  /* set once file stop_index has stop_bytes written */
    size_t stop_index;
    uint64_t stop_bytes;
    int crash_fd;             /* > 0: write the first mark there, then SIGKILL (a crash) */
};

static void on_file(void *arg, const struct ant_stage_file_result *r)
{
    struct results *res = arg;
    if (res->seen != NULL) {
        res->seen[r->index]++;
    }
    if (r->rc == 0) {
        res->nok++;
    } else {
        res->nfail++;
        res->last_rc = r->rc;
        snprintf(res->last_msg, sizeof(res->last_msg), "%s", r->msg ? r->msg : "");
    }
}

static void on_mark(void *arg, size_t index, uint64_t bytes)
{
    struct results *res = arg;
    if (bytes == 0) {
        res->mark_voided = true;
        return;
    }
    if (res->crash_fd > 0) {
        ssize_t n = write(res->crash_fd, &bytes, sizeof(bytes));
        (void)n;
        raise(SIGKILL); /* nothing is cleaned up, nothing more is written */
    }
    if (index < ANT_ARRAY_LEN(res->mark)) {
        res->mark[index] = bytes;
    }
    res->nmarks++;
}

static void on_progress(void *arg, size_t index, uint64_t file_bytes, uint64_t total)
{
    struct results *res = arg;
    /* no cmocka assert here: a failure would longjmp out of the engine's thread state */
    if (total < res->last_total) {
        res->backwards = true;
    }
    res->last_total = total;
    res->ncalls++;
    if (res->stop_after != NULL && index == res->stop_index && file_bytes >= res->stop_bytes) {
        atomic_store(res->stop_after, true);
    }
    if (res->to_set != NULL) {
        atomic_store(res->to_set, true);
    }
}

static int fx_open(void **state, enum ant_io_engine eng, const struct ant_engine_opts *opts)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct ant_engine_opts o;
    char p[512];
    assert_non_null(f);
    f->eng = eng;
    f->dir = test_tmpdir();
    snprintf(p, sizeof(p), "%s/src", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    f->src = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(p, sizeof(p), "%s/dst", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    f->dst = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->src >= 0 && f->dst >= 0);
    if (opts != NULL) {
        o = *opts;
    } else {
        ant_engine_opts_init(&o);
        o.crypto_threads = 2;
        o.io_threads = 4;
    }
    o.io_engine = eng;
    *state = f;
    return ant_engine_new(&o, &f->e);
}

static int setup_uring(void **state)
{
    int rc = fx_open(state, ANT_IO_ENGINE_URING, NULL);
    /* a ring that does not set up leaves f->e NULL: the test skip()s */
    (void)rc;
    return 0;
}

static int setup_threads(void **state)
{
    assert_int_equal(fx_open(state, ANT_IO_ENGINE_THREADS, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->mnt[0] != '\0' && umount2(f->mnt, MNT_DETACH) != 0) {
        fprintf(stderr, "could not unmount %s\n", f->mnt);
    }
    ant_engine_free(f->e);
    close(f->src);
    close(f->dst);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static struct fx *fx_get(void **state)
{
    struct fx *f = *state;
    if (f->e == NULL) {
        skip(); /* io_uring demanded but unavailable here */
    }
    return f;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    /* cheap and deterministic: the bytes only need to differ from file to file */
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void mkdirs_at(int root, const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *s = buf; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdirat(root, buf, 0755) < 0) {
            assert_int_equal(errno, EEXIST);
        }
        *s = '/';
    }
}

static void write_at(int root, const char *path, const void *p, size_t n)
{
    mkdirs_at(root, path);
    int fd = openat(root, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ant_write_all(fd, p, n), 0);
    close(fd);
}

static uint8_t *read_at(int root, const char *path, size_t *len)
{
    int fd = openat(root, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    struct ant_buf b = ANT_BUF_INIT(1u << 30);
    assert_int_equal(ant_read_all(fd, &b), 0);
    close(fd);
    *len = b.len;
    uint8_t *p = ant_buf_take(&b, len);
    return p != NULL ? p : calloc(1, 1);
}

static bool exists_at(int root, const char *path)
{
    struct stat st;
    return fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void sha256(const void *p, size_t n, uint8_t out[ANT_SHA256_LEN])
{
    unsigned len = 0;
    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

/* Only the published job folder (if any) and nothing else remains in dst. */
static size_t count_entries(int root)
{
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    size_t n = 0;
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

static void job_init(struct ant_stage_job *job, struct fx *f, const char *name,
                     const struct ant_stage_file *files, size_t n, struct results *res)
{
    if (res != NULL) {
        assert_false(res->backwards);
    }
    memset(job, 0, sizeof(*job));
    job->name = name;
    job->src_root = f->src;
    job->dst_root = f->dst;
    job->files = files;
    job->nfiles = n;
    job->on_file = on_file;
    job->on_progress = on_progress;
    job->cb_arg = res;
}

/* --- the validator and confined opens (no backend) --- */

static void test_path_check_accepts_plain_paths(void **state)
{
    (void)state;
    const char *good[] = {"a", "a/b/c.txt", "...", "a/.hidden", "x..y/z", "caf\xc3\xa9",
                          "a b/c d", "-rf"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(good); i++) {
        size_t n = strlen(good[i]);
        uint8_t *p = test_memdup(good[i], n);
        assert_int_equal(ant_stage_path_check((struct ant_bytes){p, n}), 0);
        free(p);
    }
}

static void test_path_check_refuses_hostile_paths(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
        {"", 0},          {"/", 1},         {"/etc/passwd", 11}, {"..", 2},
        {"../x", 4},      {"a/../../x", 9}, {"a/..", 4},         {".", 1},
        {"./a", 3},       {"a/./b", 5},     {"a//b", 4},         {"a/", 2},
        {"a\0b", 3},      {"a/b\0", 4},     {"a\nb", 3},         {"a\x7f", 2},
        {"a\x1b[31m", 6}, {"//a", 3},       {"a/\t", 3},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        uint8_t *p = test_memdup(bad[i].p, bad[i].n);
        if (ant_stage_path_check((struct ant_bytes){p, bad[i].n}) != -EINVAL) {
            fail_msg("accepted bad path %zu", i);
        }
        free(p);
    }
    assert_int_equal(ant_stage_path_check((struct ant_bytes){NULL, 0}), -EINVAL);
}

static void test_path_check_limits(void **state)
{
    (void)state;
    uint8_t *p = malloc(ANT_STAGE_PATH_MAX + 1);
    assert_non_null(p);
    /* a component of exactly the maximum, then one more byte */
    memset(p, 'n', ANT_STAGE_NAME_MAX + 1);
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, ANT_STAGE_NAME_MAX}), 0);
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, ANT_STAGE_NAME_MAX + 1}), -EINVAL);
    /* depth: "d/d/.../d" with ANT_STAGE_DEPTH_MAX components, then one more */
    size_t n = 0;
    for (int i = 0; i < ANT_STAGE_DEPTH_MAX + 1; i++) {
        p[n++] = 'd';
        p[n++] = '/';
    }
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, 2 * ANT_STAGE_DEPTH_MAX - 1}), 0);
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, 2 * ANT_STAGE_DEPTH_MAX + 1}),
                     -EINVAL);
    /* total length: 16 components of 255 bytes joined is over 4095 */
    for (size_t i = 0; i < ANT_STAGE_PATH_MAX + 1; i++) {
        p[i] = (i % 256 == 255) ? '/' : 'x';
    }
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, ANT_STAGE_PATH_MAX}), 0);
    assert_int_equal(ant_stage_path_check((struct ant_bytes){p, ANT_STAGE_PATH_MAX + 1}), -EINVAL);
    /* every truncation of a long valid path either passes or is refused, never over-reads */
    for (size_t k = 0; k <= 600; k++) {
        uint8_t *c = test_memdup(p, k);
        int rc = ant_stage_path_check((struct ant_bytes){c, k});
        assert_true(rc == 0 || rc == -EINVAL);
        free(c);
    }
    free(p);
}

static void test_openat_refuses_symlinks_and_escapes(void **state)
{
    struct fx *f;
    assert_int_equal(fx_open(state, ANT_IO_ENGINE_THREADS, NULL), 0);
    f = *state;
    write_at(f->src, "d/real", "x", 1);
    assert_int_equal(symlinkat("/etc", f->src, "d/out"), 0);
    assert_int_equal(symlinkat("real", f->src, "d/in"), 0);
    int fd = ant_stage_openat(f->src, "d/real", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ant_stage_openat(f->src, "d/out/passwd", O_RDONLY, 0), -ELOOP);
    assert_int_equal(ant_stage_openat(f->src, "d/in", O_RDONLY, 0), -ELOOP);
    assert_int_equal(ant_stage_openat(f->src, "../src/d/real", O_RDONLY, 0), -EINVAL);
    assert_int_equal(ant_stage_openat(f->src, "/etc/passwd", O_RDONLY, 0), -EINVAL);
    assert_int_equal(ant_stage_openat(f->src, "d/out/new", O_WRONLY | O_CREAT, 0600), -ELOOP);
    teardown(state);
}

/* The fallback for kernels without openat2 refuses the same things. */
static void test_walk_open_refuses_symlinks(void **state)
{
    struct fx *f;
    assert_int_equal(fx_open(state, ANT_IO_ENGINE_THREADS, NULL), 0);
    f = *state;
    write_at(f->src, "d/e/real", "x", 1);
    assert_int_equal(symlinkat("/etc", f->src, "d/out"), 0);
    assert_int_equal(symlinkat("real", f->src, "d/e/in"), 0);
    int fd = stage_walk_open(f->src, "d/e/real", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    fd = stage_walk_open(f->src, "d/e/new", O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    int rc = stage_walk_open(f->src, "d/out/passwd", O_RDONLY, 0);
    assert_true(rc == -ENOTDIR || rc == -ELOOP);
    assert_int_equal(stage_walk_open(f->src, "d/e/in", O_RDONLY, 0), -ELOOP);
    rc = stage_walk_open(f->src, "d/out/new", O_WRONLY | O_CREAT, 0600);
    assert_true(rc == -ENOTDIR || rc == -ELOOP);
    assert_int_equal(stage_walk_open(f->src, "d/missing/x", O_RDONLY, 0), -ENOENT);
    teardown(state);
}

static void test_parse_names(void **state)
{
    (void)state;
    enum ant_io_engine e;
    enum ant_xform x;
    assert_int_equal(ant_io_engine_parse("auto", &e), 0);
    assert_int_equal(e, ANT_IO_ENGINE_AUTO);
    assert_int_equal(ant_io_engine_parse("uring", &e), 0);
    assert_int_equal(e, ANT_IO_ENGINE_URING);
    assert_int_equal(ant_io_engine_parse("threads", &e), 0);
    assert_int_equal(e, ANT_IO_ENGINE_THREADS);
    assert_int_equal(ant_io_engine_parse("epoll", &e), -EINVAL);
    assert_int_equal(ant_io_engine_parse(NULL, &e), -EINVAL);
    for (int i = ANT_XFORM_RAW; i <= ANT_XFORM_ENCRYPT; i++) {
        assert_int_equal(ant_xform_parse(ant_xform_name((enum ant_xform)i), &x), 0);
        assert_int_equal(x, i);
    }
    assert_int_equal(ant_xform_parse("gzip", &x), -EINVAL);
}

static void test_env_overrides_engine(void **state)
{
    (void)state;
    struct ant_engine *e = NULL;
    struct ant_engine_opts o;
    const char *old = getenv("ANTENNA_IO_ENGINE");
    char *saved = old != NULL ? strdup(old) : NULL;
    ant_engine_opts_init(&o);
    o.io_engine = ANT_IO_ENGINE_URING;
    assert_int_equal(setenv("ANTENNA_IO_ENGINE", "threads", 1), 0);
    assert_int_equal(ant_engine_new(&o, &e), 0);
    assert_string_equal(ant_engine_backend(e), "threads");
    ant_engine_free(e);
    e = NULL;
    assert_int_equal(setenv("ANTENNA_IO_ENGINE", "bogus", 1), 0);
    assert_int_equal(ant_engine_new(&o, &e), -EINVAL);
    assert_null(e);
    if (saved != NULL) {
        assert_int_equal(setenv("ANTENNA_IO_ENGINE", saved, 1), 0);
    } else {
        assert_int_equal(unsetenv("ANTENNA_IO_ENGINE"), 0);
    }
    free(saved);
}

/* In a child whose io_uring_setup fails with `err` (a seccomp filter, as container profiles
 * do): auto falls back to threads and still copies, uring reports the error. Returns the
 * child's exit status: 0 when all of that held. */
static int child_without_uring(int err, const char *dir)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = ANT_ARRAY_LEN(filter), .filter = filter};
    struct ant_engine_opts o;
    struct ant_engine *e = NULL;
    struct ant_diag d = {{0}};
    char p[600];
    if (unsetenv("ANTENNA_IO_ENGINE") != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        return 10;
    }
    ant_engine_opts_init(&o);
    o.io_engine = ANT_IO_ENGINE_URING;
    if (ant_engine_new(&o, &e) != -err) {
        return 11;
    }
    o.io_engine = ANT_IO_ENGINE_AUTO;
    if (ant_engine_new(&o, &e) != 0 || strcmp(ant_engine_backend(e), "threads") != 0) {
        return 12;
    }
    snprintf(p, sizeof(p), "%s/src", dir);
    int sfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(p, sizeof(p), "%s/dst", dir);
    int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct ant_stage_file file = {.src = "x", .dst = "x"};
    struct ant_stage_job job = {.name = err == ENOSYS ? "nosys" : "perm", .src_root = sfd,
                                .dst_root = dfd, .files = &file, .nfiles = 1};
    int rc = ant_engine_run(e, &job, &d);
    ant_engine_free(e);
    return rc == 0 ? 0 : 13;
}

static void test_no_uring_falls_back_to_threads(void **state)
{
    struct fx *f;
#ifndef __x86_64__
    skip(); /* the filter checks the x86_64 syscall number only */
#endif
    assert_int_equal(fx_open(state, ANT_IO_ENGINE_THREADS, NULL), 0);
    f = *state;
    write_at(f->src, "x", "data", 4);
    const int errs[] = {ENOSYS, EPERM};
    for (size_t i = 0; i < ANT_ARRAY_LEN(errs); i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            _exit(child_without_uring(errs[i], f->dir));
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != 0) {
            fail_msg("errno %d: child step %d failed", errs[i], WEXITSTATUS(st));
        }
    }
    assert_true(exists_at(f->dst, "nosys/x") && exists_at(f->dst, "perm/x"));
    teardown(state);
}

/* --- jobs, per backend --- */

static void test_big_file_copied_identically(void **state)
{
    struct fx *f = fx_get(state);
    const size_t n = (size_t)64 << 20;
    uint8_t *data = malloc(n);
    uint8_t *got;
    size_t got_len = 0;
    struct results res = {0};
    struct ant_stage_progress prog = {0};
    struct ant_stage_file file = {.src = "in/big.bin", .dst = "out/big.bin"};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    assert_non_null(data);
    fill_random(data, n - 17, 1);
    fill_random(data + n - 17, 17, 2);
    write_at(f->src, "in/big.bin", data, n - 17); /* not a whole number of chunks */
    sha256(data, n - 17, file.sha256);
    file.has_sha256 = true;
    job_init(&job, f, "job1", &file, 1, &res);
    job.progress = &prog;
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("run: %d %s", rc, d.msg);
    }
    got = read_at(f->dst, "job1/out/big.bin", &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, n - 17);
    assert_memory_equal(got, data, n - 17);
    assert_int_equal(res.nok, 1);
    assert_int_equal(res.nfail, 0);
    assert_int_equal(res.last_total, n - 17);
    assert_int_equal(atomic_load(&prog.bytes_done), n - 17);
    assert_int_equal(atomic_load(&prog.files_done), 1);
    assert_true(res.ncalls > 1);
    /* nothing but the published job folder is left */
    assert_int_equal(count_entries(f->dst), 1);
    free(got);
    free(data);
}

/* The small files' source tree is made once and shared by both backends' runs: on a busy
 * ext4, creating thousands of files costs more than staging them. */
static char *g_small_dir;
enum { SMALL_NFILES = 2000, SMALL_FSIZE = 16384, SMALL_NDIRS = 20 };

static void small_name(int i, char *out, size_t cap)
{
    snprintf(out, cap, "dir%02d/file%04d", i % SMALL_NDIRS, i);
}

static int small_src(void)
{
    if (g_small_dir == NULL) {
        uint8_t buf[SMALL_FSIZE];
        char name[64];
        g_small_dir = test_tmpdir();
        int fd = open(g_small_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        for (int i = 0; i < SMALL_NFILES; i++) {
            small_name(i, name, sizeof(name));
            fill_random(buf, SMALL_FSIZE, (uint64_t)i + 100);
            write_at(fd, name, buf, SMALL_FSIZE);
        }
        close(fd);
    }
    int fd = open(g_small_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static int group_teardown(void **state)
{
    (void)state;
    test_rmtree(g_small_dir);
    free(g_small_dir);
    g_small_dir = NULL;
    return 0;
}

static void test_many_small_files(void **state)
{
    struct fx *f = fx_get(state);
    struct ant_stage_file *files = calloc(SMALL_NFILES, sizeof(*files));
    char (*names)[64] = calloc(SMALL_NFILES, sizeof(*names));
    int *seen = calloc(SMALL_NFILES, sizeof(*seen));
    uint8_t buf[SMALL_FSIZE];
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    int sfd = small_src();
    assert_true(files != NULL && names != NULL && seen != NULL);
    for (int i = 0; i < SMALL_NFILES; i++) {
        small_name(i, names[i], sizeof(names[i]));
        files[i].src = names[i];
        files[i].dst = names[i];
    }
    job_init(&job, f, "small", files, SMALL_NFILES, &res);
    job.src_root = sfd;
    res.seen = seen;
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("run: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, SMALL_NFILES);
    for (int i = 0; i < SMALL_NFILES; i++) {
        char p[128];
        size_t len = 0;
        assert_int_equal(seen[i], 1); /* each file reported exactly once */
        snprintf(p, sizeof(p), "small/%s", names[i]);
        uint8_t *got = read_at(f->dst, p, &len);
        assert_non_null(got);
        fill_random(buf, SMALL_FSIZE, (uint64_t)i + 100);
        assert_int_equal(len, SMALL_FSIZE);
        assert_memory_equal(got, buf, SMALL_FSIZE);
        free(got);
    }
    assert_int_equal(count_entries(f->dst), 1);
    close(sfd);
    free(files);
    free(names);
    free(seen);
}

/* Checkpoint batches are made durable by a syncfs on the sync thread while the copy goes on;
 * each file is reported once, only after its batch's sync, and by then its output is complete
 * under its name in the partial folder. Small batches and few files in flight make admission
 * wait for the sync thread often. */
struct ck_check {
    int dst;
    const struct ant_stage_file *files;
    int *seen;
    size_t ok, bad;
};

static void on_file_ck(void *arg, const struct ant_stage_file_result *r)
{
    struct ck_check *c = arg;
    char p[160];
    struct stat st;
    c->seen[r->index]++;
    snprintf(p, sizeof(p), ".ck.partial/%s", c->files[r->index].dst);
    if (r->rc == 0 && fstatat(c->dst, p, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_size == SMALL_FSIZE && r->bytes == SMALL_FSIZE) {
        c->ok++;
    } else {
        c->bad++;
    }
}

static void test_checkpoint_batches_synced_aside(void **state)
{
    struct fx *f = fx_get(state);
    struct ant_engine_opts o;
    struct ant_engine *e = NULL;
    struct ant_stage_file *files = calloc(SMALL_NFILES, sizeof(*files));
    char (*names)[64] = calloc(SMALL_NFILES, sizeof(*names));
    int *seen = calloc(SMALL_NFILES, sizeof(*seen));
    struct ant_stage_progress prog = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    int sfd = small_src();
    assert_true(files != NULL && names != NULL && seen != NULL);
    for (int i = 0; i < SMALL_NFILES; i++) {
        small_name(i, names[i], sizeof(names[i]));
        files[i].src = names[i];
        files[i].dst = names[i];
    }
    ant_engine_opts_init(&o);
    o.io_engine = f->eng;
    o.checkpoint_files = 7;
    o.max_open_files = 5;
    o.nbufs = 4;
    o.crypto_threads = 2;
    o.io_threads = 2;
    assert_int_equal(ant_engine_new(&o, &e), 0);
    struct ck_check c = {.dst = f->dst, .files = files, .seen = seen};
    job_init(&job, f, "ck", files, SMALL_NFILES, NULL);
    job.src_root = sfd;
    job.on_file = on_file_ck;
    job.on_progress = NULL;
    job.cb_arg = &c;
    job.progress = &prog;
    int rc = ant_engine_run(e, &job, &d);
    if (rc != 0) {
        fail_msg("run: %d %s", rc, d.msg);
    }
    assert_int_equal(c.ok, SMALL_NFILES);
    assert_int_equal(c.bad, 0);
    assert_int_equal(atomic_load(&prog.files_done), SMALL_NFILES);
    for (int i = 0; i < SMALL_NFILES; i++) {
        assert_int_equal(seen[i], 1);
    }
    assert_true(exists_at(f->dst, "ck"));
    ant_engine_free(e);
    close(sfd);
    free(files);
    free(names);
    free(seen);
}

static void test_empty_file_and_empty_job(void **state)
{
    struct fx *f = fx_get(state);
    struct ant_stage_file file = {.src = "empty", .dst = "a/b/empty"};
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    uint8_t sha[ANT_SHA256_LEN];
    size_t len = 1;
    write_at(f->src, "empty", "", 0);
    sha256("", 0, sha);
    memcpy(file.sha256, sha, sizeof(sha));
    file.has_sha256 = true;
    job_init(&job, f, "e1", &file, 1, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), 0);
    uint8_t *got = read_at(f->dst, "e1/a/b/empty", &len);
    assert_non_null(got);
    assert_int_equal(len, 0);
    free(got);
    assert_int_equal(res.nok, 1);
    /* a job without files publishes an empty folder */
    job_init(&job, f, "e2", NULL, 0, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), 0);
    assert_true(exists_at(f->dst, "e2"));
    /* the same name twice is refused and the first is untouched */
    job_init(&job, f, "e1", &file, 1, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -EEXIST);
    assert_true(exists_at(f->dst, "e1/a/b/empty"));
    assert_int_equal(count_entries(f->dst), 2);
}

static void test_checksum_mismatch_leaves_no_file_and_resumes(void **state)
{
    struct fx *f = fx_get(state);
    uint8_t data[100000];
    struct ant_stage_file files[3] = {
        {.src = "good1", .dst = "good1"},
        {.src = "bad", .dst = "sub/bad"},
        {.src = "good2", .dst = "sub/good2"},
    };
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    fill_random(data, sizeof(data), 7);
    write_at(f->src, "good1", data, sizeof(data));
    write_at(f->src, "bad", data, sizeof(data));
    write_at(f->src, "good2", data, 5);
    sha256(data, sizeof(data), files[0].sha256);
    files[0].has_sha256 = true;
    memset(files[1].sha256, 0xab, ANT_SHA256_LEN); /* not what the file holds */
    files[1].has_sha256 = true;
    job_init(&job, f, "ck", files, 3, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -EBADMSG);
    assert_non_null(strstr(d.msg, "sub/bad"));
    assert_non_null(strstr(d.msg, "checksum"));
    assert_int_equal(res.nok, 2);
    assert_int_equal(res.nfail, 1);
    assert_int_equal(res.last_rc, -EBADMSG);
    assert_non_null(strstr(res.last_msg, "sub/bad"));
    /* not published; the good files wait in the partial folder, the bad one nowhere */
    assert_false(exists_at(f->dst, "ck"));
    assert_false(exists_at(f->dst, ".ck.tmp"));
    assert_true(exists_at(f->dst, ".ck.partial/good1"));
    assert_true(exists_at(f->dst, ".ck.partial/sub/good2"));
    assert_false(exists_at(f->dst, ".ck.partial/sub/bad"));
    assert_int_equal(ant_engine_discard(f->dst, "../x"), -EINVAL);
    /* a resumed run keeps the checkpointed files and copies the one that failed */
    files[0].done = true;
    files[2].done = true;
    sha256(data, sizeof(data), files[1].sha256);
    memset(&res, 0, sizeof(res));
    job_init(&job, f, "ck", files, 3, &res);
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("resume: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, 3);
    assert_int_equal(res.last_total, sizeof(data)); /* only the failed file was copied */
    assert_true(exists_at(f->dst, "ck/sub/bad"));
    assert_int_equal(count_entries(f->dst), 1);
}

/* What a killed run leaves in .J.partial: files written in place but never checkpointed
 * (overwritten from the start: O_TRUNC), and a checkpointed file changed since (copied again
 * through .J.tmp, so that a failure of that copy leaves nothing under its name). */
static void test_resume_over_crash_leftovers(void **state)
{
    struct fx *f = fx_get(state);
    uint8_t a[70000], b[3000], c[5];
    struct ant_stage_file files[3] = {
        {.src = "a", .dst = "a", .has_sha256 = true},
        {.src = "b", .dst = "sub/b", .has_sha256 = true, .done = true},
        {.src = "c", .dst = "c", .has_sha256 = true, .done = true},
    };
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    uint8_t junk[200000];
    size_t len = 0;
    fill_random(a, sizeof(a), 11);
    fill_random(b, sizeof(b), 12);
    fill_random(c, sizeof(c), 13);
    fill_random(junk, sizeof(junk), 14);
    write_at(f->src, "a", a, sizeof(a));
    write_at(f->src, "b", b, sizeof(b));
    write_at(f->src, "c", c, sizeof(c));
    sha256(a, sizeof(a), files[0].sha256);
    sha256(b, sizeof(b), files[1].sha256);
    sha256(c, sizeof(c), files[2].sha256);
    mkdirs_at(f->dst, ".cr.partial/sub");
    write_at(f->dst, ".cr.partial/a", junk, sizeof(junk)); /* longer than a: must be cut */
    write_at(f->dst, ".cr.partial/sub/b", junk, sizeof(b)); /* checkpointed, then damaged */
    write_at(f->dst, ".cr.partial/c", c, sizeof(c));
    job_init(&job, f, "cr", files, 3, &res);
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("resume: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, 3);
    assert_int_equal(res.last_total, sizeof(a) + sizeof(b)); /* c was kept */
    uint8_t *got = read_at(f->dst, "cr/a", &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof(a));
    assert_memory_equal(got, a, sizeof(a));
    free(got);
    got = read_at(f->dst, "cr/sub/b", &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof(b));
    assert_memory_equal(got, b, sizeof(b));
    free(got);
    assert_int_equal(count_entries(f->dst), 1);

    /* a damaged checkpointed copy whose new copy fails too: nothing under its name */
    mkdirs_at(f->dst, ".cf.partial");
    write_at(f->dst, ".cf.partial/c", junk, 7);
    files[2].sha256[0] ^= 1; /* the source no longer matches either */
    memset(&res, 0, sizeof(res));
    job_init(&job, f, "cf", &files[2], 1, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -EBADMSG);
    assert_int_equal(res.nfail, 1);
    assert_false(exists_at(f->dst, ".cf.partial/c"));
    assert_false(exists_at(f->dst, ".cf.tmp"));
    assert_false(exists_at(f->dst, "cf"));
}

static void test_missing_source_is_reported(void **state)
{
    struct fx *f = fx_get(state);
    struct ant_stage_file files[2] = {
        {.src = "there", .dst = "there"},
        {.src = "not/there", .dst = "gone"},
    };
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    write_at(f->src, "there", "abc", 3);
    job_init(&job, f, "m", files, 2, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ENOENT);
    assert_int_equal(res.nok, 1);
    assert_int_equal(res.nfail, 1);
    assert_non_null(strstr(res.last_msg, "not/there"));
    assert_non_null(strstr(res.last_msg, "does not exist"));
    assert_false(exists_at(f->dst, "m"));
    assert_false(exists_at(f->dst, ".m.partial/gone"));
    /* a job given up: its leftovers go, and discarding twice is fine */
    assert_true(exists_at(f->dst, ".m.partial/there"));
    assert_int_equal(ant_engine_discard(f->dst, "m"), 0);
    assert_int_equal(ant_engine_discard(f->dst, "m"), 0);
    assert_int_equal(count_entries(f->dst), 0);
}

static void test_path_escapes_refused(void **state)
{
    struct fx *f = fx_get(state);
    const char *bad[] = {"../escape", "/tmp/escape", "a/../../escape", "a//b", ""};
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    write_at(f->src, "ok", "x", 1);
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        struct ant_stage_file file = {.src = "ok", .dst = bad[i]};
        job_init(&job, f, "esc", &file, 1, &res);
        assert_int_equal(ant_engine_run(f->e, &job, &d), -EINVAL);
        struct ant_stage_file file2 = {.src = bad[i], .dst = "ok"};
        job_init(&job, f, "esc", &file2, 1, &res);
        assert_int_equal(ant_engine_run(f->e, &job, &d), -EINVAL);
    }
    /* two files for one destination */
    struct ant_stage_file two[2] = {{.src = "ok", .dst = "same"}, {.src = "ok", .dst = "same"}};
    job_init(&job, f, "dup", two, 2, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "same"));
    /* hostile job names: nothing may be made outside dst either */
    const char *bad_names[] = {"..", ".", "a/b", ".hidden", "../x", ""};
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad_names); i++) {
        struct ant_stage_file file = {.src = "ok", .dst = "ok"};
        job_init(&job, f, bad_names[i], &file, 1, &res);
        assert_int_equal(ant_engine_run(f->e, &job, &d), -EINVAL);
    }
    assert_int_equal(count_entries(f->dst), 0);
    assert_int_equal(res.nok + res.nfail, 0);
}

static void test_symlinks_not_followed(void **state)
{
    struct fx *f = fx_get(state);
    char outside[400];
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    write_at(f->src, "data", "secret-ish", 10);
    /* planted in the destination: a resumed job's partial folder with a link in it */
    assert_int_equal(mkdirat(f->dst, ".sl.partial", 0750), 0);
    assert_int_equal(symlinkat(outside, f->dst, ".sl.partial/sub"), 0);
    struct ant_stage_file file = {.src = "data", .dst = "sub/data"};
    job_init(&job, f, "sl", &file, 1, &res);
    int rc = ant_engine_run(f->e, &job, &d);
    assert_true(rc == -ELOOP || rc == -ENOTDIR || rc == -EEXIST);
    assert_int_equal(res.nfail, 1);
    assert_non_null(strstr(res.last_msg, "sub/data"));
    /* a link as the leaf name in the partial folder is replaced, never written through */
    char target[600];
    assert_true((size_t)snprintf(target, sizeof(target), "%s/leaf", outside) < sizeof(target));
    assert_int_equal(symlinkat(target, f->dst, ".sl.partial/leaf"), 0);
    struct ant_stage_file file2 = {.src = "data", .dst = "leaf"};
    job_init(&job, f, "sl", &file2, 1, &res);
    int rc2 = ant_engine_run(f->e, &job, &d);
    assert_true(rc2 == 0 || rc2 < 0);
    /* the source side: a link in the source root is refused */
    assert_int_equal(symlinkat(outside, f->src, "link"), 0);
    write_at(f->src, "../outside/x", "y", 1);
    struct ant_stage_file file3 = {.src = "link/x", .dst = "x"};
    memset(&res, 0, sizeof(res));
    job_init(&job, f, "sl2", &file3, 1, &res);
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ELOOP);
    assert_non_null(strstr(res.last_msg, "link/x"));
    /* the outside folder still holds only what the test put there */
    int ofd = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(ofd >= 0);
    assert_false(exists_at(ofd, "data"));
    assert_false(exists_at(ofd, "leaf"));
    assert_int_equal(count_entries(ofd), 1);
    close(ofd);
}

/* Scratch is shared with the job's users: between two runs they can put a FIFO or a hard link
 * to a file elsewhere under an output's name in .J.partial. The engine must neither wait on the
 * FIFO (an O_WRONLY or O_RDONLY open of one blocks until the other end opens) nor write, cut or
 * keep data through the link. A hang is turned into a failure by alarm() (SIGALRM ends the
 * binary, and the test with it). */
static void test_planted_fifos_and_hard_links_not_used(void **state)
{
    struct fx *f = fx_get(state);
    enum { N = 200000 };
    static uint8_t data[N], junk[N];
    char outside[400];
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    struct ant_stage_file files[4] = {
        {.src = "data", .dst = "linked", .has_sha256 = true},
        {.src = "data", .dst = "sub/fifo", .has_sha256 = true},
        {.src = "data", .dst = "donefifo", .has_sha256 = true, .done = true},
        /* a resume mark on a whole 64 KiB chunk of a raw copy: opened as it is, if ours */
        {.src = "data", .dst = "resumed", .has_sha256 = true, .resume_at = 65536},
    };
    fill_random(data, sizeof(data), 41);
    fill_random(junk, sizeof(junk), 42);
    write_at(f->src, "data", data, sizeof(data));
    for (size_t i = 0; i < ANT_ARRAY_LEN(files); i++) {
        sha256(data, sizeof(data), files[i].sha256);
    }
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    int ofd = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(ofd >= 0);
    write_at(ofd, "victim", junk, 1000);
    write_at(ofd, "victim2", junk, sizeof(junk));
    mkdirs_at(f->dst, ".pl.partial/sub/");
    assert_int_equal(linkat(ofd, "victim", f->dst, ".pl.partial/linked", 0), 0);
    assert_int_equal(linkat(ofd, "victim2", f->dst, ".pl.partial/resumed", 0), 0);
    assert_int_equal(mkfifoat(f->dst, ".pl.partial/sub/fifo", 0666), 0);
    assert_int_equal(mkfifoat(f->dst, ".pl.partial/donefifo", 0666), 0);
    job_init(&job, f, "pl", files, ANT_ARRAY_LEN(files), &res);
    job.on_mark = on_mark;
    alarm(60);
    int rc = ant_engine_run(f->e, &job, &d);
    alarm(0);
    if (rc != 0) {
        fail_msg("run: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, 4);
    const char *names[] = {"pl/linked", "pl/sub/fifo", "pl/donefifo", "pl/resumed"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(names); i++) {
        size_t len = 0;
        struct stat st;
        uint8_t *got = read_at(f->dst, names[i], &len);
        assert_non_null(got);
        assert_int_equal(len, sizeof(data));
        assert_memory_equal(got, data, sizeof(data));
        free(got);
        assert_int_equal(fstatat(f->dst, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_nlink, 1);
    }
    /* the files outside are as they were, and hold no staged byte */
    const char *vict[] = {"victim", "victim2"};
    size_t vlen[] = {1000, sizeof(junk)};
    for (size_t i = 0; i < ANT_ARRAY_LEN(vict); i++) {
        size_t len = 0;
        uint8_t *got = read_at(ofd, vict[i], &len);
        assert_non_null(got);
        assert_int_equal(len, vlen[i]);
        assert_memory_equal(got, junk, vlen[i]);
        free(got);
    }
    close(ofd);
}

static void test_cancel_leaves_nothing(void **state)
{
    struct fx *f = fx_get(state);
    enum { N = 40, SZ = 1 << 20 };
    struct ant_stage_file files[N];
    char names[N][16];
    uint8_t *data = malloc(SZ);
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    atomic_bool cancel = false;
    assert_non_null(data);
    fill_random(data, SZ, 3);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "d/f%02d", i);
        write_at(f->src, names[i], data, SZ);
        files[i] = (struct ant_stage_file){.src = names[i], .dst = names[i]};
    }
    job_init(&job, f, "c", files, N, &res);
    job.cancel = &cancel;
    res.to_set = &cancel; /* cancel once the first chunk is written */
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ECANCELED);
    assert_true(res.ncalls >= 1);
    assert_int_equal(count_entries(f->dst), 0);
    free(data);
}

struct shrink {
    struct results res;
    int fd; /* the source, cut to 0 bytes at the first progress report */
};

static void on_progress_shrink(void *arg, size_t index, uint64_t file_bytes, uint64_t total)
{
    struct shrink *sh = arg;
    on_progress(&sh->res, index, file_bytes, total);
    if (sh->fd >= 0) {
        if (ftruncate(sh->fd, 0) != 0) {
            sh->res.backwards = true; /* reported by the test */
        }
        close(sh->fd);
        sh->fd = -1;
    }
}

static void on_file_shrink(void *arg, const struct ant_stage_file_result *r)
{
    struct shrink *sh = arg;
    on_file(&sh->res, r);
}

static void test_source_shrinking_fails_the_file(void **state)
{
    struct fx *f = fx_get(state);
    const size_t n = (size_t)48 << 20; /* more than the 16 MiB of buffers in flight */
    uint8_t *data = calloc(1, n);
    struct shrink sh = {.fd = -1};
    struct ant_stage_file file = {.src = "shrinks", .dst = "shrinks"};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    assert_non_null(data);
    write_at(f->src, "shrinks", data, n);
    free(data);
    sh.fd = openat(f->src, "shrinks", O_WRONLY | O_CLOEXEC);
    assert_true(sh.fd >= 0);
    job_init(&job, f, "sh", &file, 1, NULL);
    job.on_progress = on_progress_shrink;
    job.on_file = on_file_shrink;
    job.cb_arg = &sh;
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ENODATA);
    assert_false(sh.res.backwards);
    assert_int_equal(sh.res.nfail, 1);
    assert_non_null(strstr(sh.res.last_msg, "shrank"));
    assert_false(exists_at(f->dst, ".sh.partial/shrinks"));
    assert_false(exists_at(f->dst, "sh"));
}

static void test_enospc_is_reported(void **state)
{
    struct fx *f = fx_get(state);
    char *mnt = f->mnt;
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    const size_t n = 3u << 20;
    uint8_t *data = malloc(n);
    assert_non_null(data);
    snprintf(mnt, sizeof(f->mnt), "%s/small", f->dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        mnt[0] = '\0';
        free(data);
        skip(); /* not root, or no mount namespace rights */
    }
    int dfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    fill_random(data, n, 9);
    write_at(f->src, "big", data, n);
    write_at(f->src, "tiny", data, 10);
    struct ant_stage_file files[2] = {{.src = "tiny", .dst = "tiny"}, {.src = "big", .dst = "big"}};
    job_init(&job, f, "full", files, 2, &res);
    job.dst_root = dfd;
    int rc = ant_engine_run(f->e, &job, &d);
    assert_int_equal(rc, -ENOSPC);
    /* big fills the disk; tiny may be the one whose write finds it full */
    assert_true(res.nfail >= 1);
    assert_non_null(strstr(res.last_msg, "ENOSPC"));
    assert_true(strstr(d.msg, "big") != NULL || strstr(d.msg, "tiny") != NULL);
    assert_false(exists_at(dfd, "full"));
    assert_false(exists_at(dfd, ".full.partial/big"));
    assert_false(exists_at(dfd, ".full.tmp"));
    close(dfd);
    assert_int_equal(umount(mnt), 0);
    mnt[0] = '\0';
    free(data);
}

static void test_fsync_each_and_small_limits(void **state)
{
    struct fx *f = fx_get(state);
    struct ant_engine_opts o;
    struct ant_engine *e = NULL;
    enum { N = 30 };
    struct ant_stage_file files[N];
    char names[N][16];
    uint8_t data[300000];
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    /* one buffer, one file at a time, one segment per chunk, checkpoint every file */
    ant_engine_opts_init(&o);
    o.io_engine = f->eng;
    o.nbufs = 1;
    o.max_open_files = 1;
    o.chunk_segments = 1;
    o.crypto_threads = 1;
    o.io_threads = 1;
    o.checkpoint_files = 1;
    o.fsync_each = true;
    assert_int_equal(ant_engine_new(&o, &e), 0);
    fill_random(data, sizeof(data), 11);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "f%02d", i);
        write_at(f->src, names[i], data, (size_t)i * 10000);
        files[i] = (struct ant_stage_file){.src = names[i], .dst = names[i]};
    }
    job_init(&job, f, "fe", files, N, &res);
    assert_int_equal(ant_engine_run(e, &job, &d), 0);
    assert_int_equal(res.nok, N);
    for (int i = 0; i < N; i++) {
        char p[512];
        size_t len = 0;
        snprintf(p, sizeof(p), "fe/%s", names[i]);
        uint8_t *got = read_at(f->dst, p, &len);
        assert_non_null(got);
        assert_int_equal(len, (size_t)i * 10000);
        assert_memory_equal(got, data, len);
        free(got);
    }
    ant_engine_free(e);
}


/* --- Crypt4GH transforms against the reference vectors (tests/vectors/c4gh) --- */

static struct ant_key *vector_key(const char *name, const char *pass)
{
    struct ant_key *k = NULL;
    struct ant_diag d = {{0}};
    int rc = ant_key_load(AT_FDCWD, test_vector_path(name), pass, &k, &d);
    if (rc != 0) {
        fail_msg("%s: %d %s", name, rc, d.msg);
    }
    return k;
}

static void vector_pub(const char *name, uint8_t pk[ANT_KEY_LEN])
{
    struct ant_diag d = {{0}};
    assert_int_equal(ant_pubkey_load(AT_FDCWD, test_vector_path(name), pk, &d), 0);
}

static int vectors_dir(void)
{
    int fd = open(test_vector_path("."), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static uint8_t *vector_bytes(const char *name, size_t *len)
{
    return test_read_file(test_vector_path(name), len);
}

static struct fx *c4gh_fx(void **state)
{
    struct fx *f = fx_get(state);
    if (!ant_xform_is_available(ANT_XFORM_DECRYPT)) {
        skip(); /* built without crypto/c4gh.c */
    }
    return f;
}

/* An engine on the fixture's backend with one 64 KiB segment per chunk, so that files of a
 * few segments span several chunks (and edit lists cross chunk boundaries). */
static struct ant_engine *small_chunk_engine_with(const struct fx *f, unsigned nbufs,
                                                  uint64_t resume_min, uint64_t resume_every,
                                                  unsigned max_open_files)
{
    struct ant_engine_opts o;
    struct ant_engine *e = NULL;
    ant_engine_opts_init(&o);
    o.io_engine = f->eng;
    o.chunk_segments = 1;
    o.nbufs = nbufs;
    o.crypto_threads = 2;
    o.io_threads = 2;
    o.resume_min = resume_min; /* 0: the defaults */
    o.resume_every = resume_every;
    o.max_open_files = max_open_files; /* 0: the default */
    assert_int_equal(ant_engine_new(&o, &e), 0);
    return e;
}

static struct ant_engine *small_chunk_engine(const struct fx *f)
{
    return small_chunk_engine_with(f, 4, 0, 0, 0);
}

static const struct {
    const char *c4gh, *plain;
} g_decrypt_vectors[] = {
    {"empty.c4gh", "empty.bin"},
    {"one-byte.c4gh", "one-byte.bin"},
    {"exact-65536.c4gh", "exact-65536.bin"},
    {"plus1-65537.c4gh", "plus1-65537.bin"},
    {"rand-1MiB-plus17.c4gh", "rand-1MiB-plus17.bin"},
    {"two-recipients.c4gh", "plus1-65537.bin"},
    {"editlist-range.c4gh", "editlist-range.expected.bin"},
    {"editlist-open-end.c4gh", "editlist-open-end.expected.bin"},
    {"editlist-multi.c4gh", "editlist-multi.expected.bin"},
};

static void test_c4gh_decrypt_vectors(void **state)
{
    struct fx *f = c4gh_fx(state);
    enum { N = ANT_ARRAY_LEN(g_decrypt_vectors) };
    struct ant_key *k = vector_key("keys/recipient1.sec", NULL);
    struct ant_engine *small = small_chunk_engine(f);
    struct ant_stage_file files[N];
    int vfd = vectors_dir();
    for (size_t i = 0; i < N; i++) {
        size_t len = 0;
        uint8_t *want = vector_bytes(g_decrypt_vectors[i].plain, &len);
        files[i] = (struct ant_stage_file){.src = g_decrypt_vectors[i].c4gh,
                                           .dst = g_decrypt_vectors[i].c4gh,
                                           .xform = ANT_XFORM_DECRYPT,
                                           .has_sha256 = true};
        sha256(want, len, files[i].sha256);
        free(want);
    }
    for (int pass = 0; pass < 2; pass++) {
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        const char *name = pass == 0 ? "dec" : "dec-small";
        job_init(&job, f, name, files, N, &res);
        job.src_root = vfd;
        job.key = k;
        int rc = ant_engine_run(pass == 0 ? f->e : small, &job, &d);
        if (rc != 0) {
            fail_msg("%s: %d %s", name, rc, d.msg);
        }
        assert_int_equal(res.nok, N);
        for (size_t i = 0; i < N; i++) {
            char p[128];
            size_t wlen = 0, glen = 0;
            uint8_t *want = vector_bytes(g_decrypt_vectors[i].plain, &wlen);
            snprintf(p, sizeof(p), "%s/%s", name, files[i].dst);
            uint8_t *got = read_at(f->dst, p, &glen);
            assert_non_null(got);
            assert_int_equal(glen, wlen);
            assert_memory_equal(got, want, wlen);
            free(got);
            free(want);
        }
    }
    close(vfd);
    ant_engine_free(small);
    ant_key_free(k);
}

static int buf_sink(void *arg, const uint8_t *p, size_t len)
{
    return ant_buf_append(arg, p, len);
}

/* A big decrypt whose edit list keeps all of the first chunk and skips bytes inside a later
 * one: chunk 0 and 1 start on blocks but chunk 2 does not, so the output must not go out with
 * O_DIRECT (aligned offsets and lengths only). Bytes as the list says, on both backends. */
static void test_c4gh_decrypt_edit_list_past_first_chunk(void **state)
{
    struct fx *f = c4gh_fx(state);
    enum { PLAIN = (3u << 20) + 12345, KEEP0 = 65536 + 1000, SKIP = 100 };
    const uint64_t edits[] = {0, KEEP0, SKIP}; /* odd count: the rest is kept */
    struct ant_key *sender = vector_key("keys/sender.sec", NULL);
    struct ant_key *k = vector_key("keys/recipient1.sec", NULL);
    uint8_t pk[ANT_KEY_LEN];
    vector_pub("keys/recipient1.pub", pk);
    uint8_t *plain = malloc(PLAIN);
    assert_non_null(plain);
    fill_random(plain, PLAIN, 77);
    struct ant_buf enc = ANT_BUF_INIT(PLAIN + (1u << 20));
    struct ant_c4gh_writer *w = NULL;
    assert_int_equal(ant_c4gh_writer_new(sender, pk, 1, edits, ANT_ARRAY_LEN(edits), buf_sink,
                                         &enc, &w),
                     0);
    assert_int_equal(ant_c4gh_writer_write(w, ant_bytes_of(plain, PLAIN)), 0);
    assert_int_equal(ant_c4gh_writer_finish(w, NULL), 0);
    ant_c4gh_writer_free(w);
    write_at(f->src, "edited.c4gh", enc.p, enc.len);
    ant_buf_fini(&enc);
    /* what the list keeps: [0, KEEP0) and [KEEP0 + SKIP, end) */
    size_t want_len = PLAIN - SKIP;
    memmove(plain + KEEP0, plain + KEEP0 + SKIP, PLAIN - KEEP0 - SKIP);
    struct ant_stage_file file = {.src = "edited.c4gh", .dst = "edited",
                                  .xform = ANT_XFORM_DECRYPT, .has_sha256 = true};
    sha256(plain, want_len, file.sha256);
    struct ant_engine *small = small_chunk_engine(f);
    struct results res = {0};
    struct ant_stage_progress prog = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    job_init(&job, f, "edited", &file, 1, &res);
    job.key = k;
    job.progress = &prog;
    int rc = ant_engine_run(small, &job, &d);
    if (rc != 0) {
        fail_msg("edited: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, 1);
    assert_int_equal(atomic_load(&prog.files_direct), 0);
    size_t glen = 0;
    uint8_t *got = read_at(f->dst, "edited/edited", &glen);
    assert_non_null(got);
    assert_int_equal(glen, want_len);
    assert_memory_equal(got, plain, want_len);
    free(got);
    free(plain);
    ant_engine_free(small);
    ant_key_free(k);
    ant_key_free(sender);
}

static void test_c4gh_bad_inputs_fail_cleanly(void **state)
{
    struct fx *f = c4gh_fx(state);
    static const struct {
        const char *src;
        int rc;
        const char *says;
    } bad[] = {
        {"bad-segment-mac.c4gh", -EBADMSG, "MAC"},
        {"bad-header-mac.c4gh", -ENOKEY, "key"},
        {"bad-empty-last-segment.c4gh", -EBADMSG, "bad-empty-last-segment"},
        {"bad-truncated-header.c4gh", -EBADMSG, "bad-truncated-header"},
        {"bad-magic.c4gh", -EBADMSG, "bad-magic"},
        {"bad-version.c4gh", -EBADMSG, "bad-version"},
    };
    struct ant_key *k = vector_key("keys/recipient1.sec", NULL);
    struct ant_key *other = vector_key("keys/sender.sec", NULL);
    int vfd = vectors_dir();
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        struct ant_stage_file files[2] = {
            {.src = "one-byte.c4gh", .dst = "good", .xform = ANT_XFORM_DECRYPT},
            {.src = bad[i].src, .dst = "bad", .xform = ANT_XFORM_DECRYPT},
        };
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        char name[32];
        snprintf(name, sizeof(name), "b%zu", i);
        job_init(&job, f, name, files, 2, &res);
        job.src_root = vfd;
        job.key = k;
        int rc = ant_engine_run(f->e, &job, &d);
        if (rc != bad[i].rc || strstr(res.last_msg, bad[i].says) == NULL) {
            fail_msg("%s: %d (want %d) '%s'", bad[i].src, rc, bad[i].rc, res.last_msg);
        }
        assert_int_equal(res.nok, 1);
        assert_int_equal(res.nfail, 1);
        char p[64];
        snprintf(p, sizeof(p), ".%s.partial/bad", name);
        assert_false(exists_at(f->dst, p));
        snprintf(p, sizeof(p), ".%s.partial/good", name);
        assert_true(exists_at(f->dst, p));
        assert_false(exists_at(f->dst, name));
    }
    /* a file that is not for this key */
    struct ant_stage_file file = {.src = "one-byte.c4gh", .dst = "x", .xform = ANT_XFORM_DECRYPT};
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    job_init(&job, f, "wrongkey", &file, 1, &res);
    job.src_root = vfd;
    job.key = other;
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ENOKEY);
    assert_non_null(strstr(res.last_msg, "one-byte.c4gh"));
    /* a transform without its key is refused before anything is made */
    job.key = NULL;
    job.name = "nokey";
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ENOKEY);
    assert_false(exists_at(f->dst, ".nokey.partial"));
    close(vfd);
    ant_key_free(k);
    ant_key_free(other);
}

static void test_c4gh_reencrypt_then_decrypt(void **state)
{
    struct fx *f = c4gh_fx(state);
    struct ant_key *k1 = vector_key("keys/recipient1.sec", NULL);
    struct ant_key *k2 = vector_key("keys/recipient2.sec", "antenna-test");
    uint8_t pk2[ANT_KEY_LEN];
    size_t clen = 0, plen = 0, glen = 0;
    uint8_t *c = vector_bytes("rand-1MiB-plus17.c4gh", &clen);
    uint8_t *plain = vector_bytes("rand-1MiB-plus17.bin", &plen);
    int vfd = vectors_dir();
    struct ant_stage_file file = {.src = "rand-1MiB-plus17.c4gh", .dst = "r.c4gh",
                                  .xform = ANT_XFORM_REENCRYPT, .has_sha256 = true};
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    vector_pub("keys/recipient2.pub", pk2);
    sha256(c + 124, clen - 124, file.sha256); /* the body's digest, as the catalog keeps it */
    job_init(&job, f, "re", &file, 1, &res);
    job.src_root = vfd;
    job.key = k1;
    job.recipient_pk = pk2;
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("reencrypt: %d %s", rc, d.msg);
    }
    uint8_t *got = read_at(f->dst, "re/r.c4gh", &glen);
    assert_non_null(got);
    assert_int_equal(glen, clen); /* one recipient: a 124-byte header again */
    assert_memory_equal(got + 124, c + 124, clen - 124);
    assert_memory_not_equal(got, c, 124);
    free(got);
    /* the new header opens with recipient2's key and not with recipient1's */
    int refd = openat(f->dst, "re", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct ant_stage_file back = {.src = "r.c4gh", .dst = "p.bin", .xform = ANT_XFORM_DECRYPT,
                                  .has_sha256 = true};
    sha256(plain, plen, back.sha256);
    memset(&res, 0, sizeof(res));
    job_init(&job, f, "back", &back, 1, &res);
    job.src_root = refd;
    job.key = k2;
    rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("decrypt: %d %s", rc, d.msg);
    }
    job.name = "back1";
    job.key = k1;
    assert_int_equal(ant_engine_run(f->e, &job, &d), -ENOKEY);
    close(refd);
    close(vfd);
    free(c);
    free(plain);
    ant_key_free(k1);
    ant_key_free(k2);
}

/* Checkpointed Crypt4GH outputs survive a failed run and are kept by the resumed one: a
 * re-encrypted copy is checked by its body digest, an encrypted one by presence. */
static void test_c4gh_resume_keeps_checkpointed_outputs(void **state)
{
    struct fx *f = c4gh_fx(state);
    struct ant_key *k1 = vector_key("keys/recipient1.sec", NULL);
    uint8_t pk1[ANT_KEY_LEN];
    size_t clen = 0;
    uint8_t *c = vector_bytes("plus1-65537.c4gh", &clen);
    int vfd = vectors_dir();
    struct ant_stage_file files[3] = {
        {.src = "plus1-65537.c4gh", .dst = "re", .xform = ANT_XFORM_REENCRYPT, .has_sha256 = true},
        {.src = "one-byte.bin", .dst = "enc", .xform = ANT_XFORM_ENCRYPT},
        {.src = "empty.bin", .dst = "raw", .has_sha256 = true},
    };
    struct results res = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    vector_pub("keys/recipient1.pub", pk1);
    sha256(c + 124, clen - 124, files[0].sha256);
    memset(files[2].sha256, 1, ANT_SHA256_LEN); /* wrong: the run fails */
    job_init(&job, f, "rs", files, 3, &res);
    job.src_root = vfd;
    job.key = k1;
    job.recipient_pk = pk1;
    assert_int_equal(ant_engine_run(f->e, &job, &d), -EBADMSG);
    assert_int_equal(res.nok, 2);
    files[0].done = files[1].done = true;
    sha256("", 0, files[2].sha256);
    memset(&res, 0, sizeof(res));
    job_init(&job, f, "rs", files, 3, &res);
    job.src_root = vfd;
    job.key = k1;
    job.recipient_pk = pk1;
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("resume: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, 3);
    assert_int_equal(res.last_total, 0); /* nothing copied again */
    assert_true(exists_at(f->dst, "rs/re") && exists_at(f->dst, "rs/enc"));
    close(vfd);
    free(c);
    ant_key_free(k1);
}

static void on_file_body(void *arg, const struct ant_stage_file_result *r)
{
    uint8_t (*bodies)[ANT_SHA256_LEN] = arg;
    assert_int_equal(r->rc, 0);
    assert_true(r->has_sha256_body);
    memcpy(bodies[r->index], r->sha256_body, ANT_SHA256_LEN);
}

static void test_c4gh_encrypt_then_decrypt(void **state)
{
    struct fx *f = c4gh_fx(state);
    static const char *const plain[] = {"empty.bin", "one-byte.bin", "exact-65536.bin",
                                        "plus1-65537.bin", "rand-1MiB-plus17.bin"};
    enum { N = ANT_ARRAY_LEN(plain) };
    struct ant_key *k1 = vector_key("keys/recipient1.sec", NULL);
    uint8_t pk1[ANT_KEY_LEN], bodies[N][ANT_SHA256_LEN];
    struct ant_stage_file enc[N], dec[N];
    struct ant_engine *small = small_chunk_engine(f);
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    int vfd = vectors_dir();
    vector_pub("keys/recipient1.pub", pk1);
    for (size_t i = 0; i < N; i++) {
        size_t len = 0;
        uint8_t *p = vector_bytes(plain[i], &len);
        enc[i] = (struct ant_stage_file){.src = plain[i], .dst = plain[i],
                                         .xform = ANT_XFORM_ENCRYPT, .has_sha256 = true};
        sha256(p, len, enc[i].sha256); /* encrypt checks the plaintext it read */
        dec[i] = (struct ant_stage_file){.src = plain[i], .dst = plain[i],
                                         .xform = ANT_XFORM_DECRYPT, .has_sha256 = true};
        memcpy(dec[i].sha256, enc[i].sha256, ANT_SHA256_LEN);
        free(p);
    }
    /* no writer key: an ephemeral one */
    job_init(&job, f, "enc", enc, N, NULL);
    job.on_progress = NULL;
    job.on_file = on_file_body;
    job.cb_arg = bodies;
    job.src_root = vfd;
    job.recipient_pk = pk1;
    int rc = ant_engine_run(small, &job, &d);
    if (rc != 0) {
        fail_msg("encrypt: %d %s", rc, d.msg);
    }
    for (size_t i = 0; i < N; i++) {
        char p[64];
        size_t elen = 0, plen = 0;
        uint8_t sha[ANT_SHA256_LEN];
        snprintf(p, sizeof(p), "enc/%s", plain[i]);
        uint8_t *e = read_at(f->dst, p, &elen);
        uint8_t *pl = vector_bytes(plain[i], &plen);
        assert_non_null(e);
        /* 124-byte header, 65564 per full segment, r + 28 for a last one of r bytes */
        size_t want = 124 + (plen / 65536) * 65564 + (plen % 65536 ? plen % 65536 + 28 : 0);
        assert_int_equal(elen, want);
        sha256(e + 124, elen - 124, sha);
        assert_memory_equal(sha, bodies[i], ANT_SHA256_LEN);
        free(e);
        free(pl);
    }
    int efd = openat(f->dst, "enc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct results res = {0};
    job_init(&job, f, "dec", dec, N, &res);
    job.src_root = efd;
    job.key = k1;
    rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("decrypt: %d %s", rc, d.msg);
    }
    assert_int_equal(res.nok, N);
    close(efd);
    close(vfd);
    ant_engine_free(small);
    ant_key_free(k1);
}

/* Big outputs go out with O_DIRECT where the destination takes it (ext4 under /tmp here),
 * through the page cache where it does not (a tmpfs reports no DIO alignment) or when
 * buffered_only is set; sources whose reads start on blocks are read with O_DIRECT (whole
 * blocks, cut at the size); raw and decrypt give the same bytes either way. Sizes: below the
 * O_DIRECT threshold, whole segments (1 MiB: one aligned chunk boundary), and tails of 1,
 * 4095, 4096, 4097 and 65535 bytes past whole chunks. */
static const size_t g_direct_sizes[] = {
    0, (1u << 20) - 1, 1u << 20, (2u << 20) + 1, (2u << 20) + 4095, (2u << 20) + 4096,
    (2u << 20) + 4097, (2u << 20) + 65535, (3u << 20) + 100000,
};
enum { NDIRECT = ANT_ARRAY_LEN(g_direct_sizes) };

/* Stages every size raw and decrypted into dst_root; returns how many went out direct, and
 * in *reads how many sources were read direct. */
static uint64_t direct_round(struct fx *f, struct ant_engine *e, int dst_root, const char *tag,
                             const struct ant_key *k, uint64_t *reads)
{
    struct ant_stage_file raw[NDIRECT], dec[NDIRECT];
    char names[NDIRECT][32], job_raw[32], job_dec[32];
    struct ant_stage_progress prog = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    struct results res = {0};
    int efd = openat(f->dst, "enc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(efd >= 0);
    for (size_t i = 0; i < NDIRECT; i++) {
        snprintf(names[i], sizeof(names[i]), "d/s%zu", g_direct_sizes[i]);
        raw[i] = (struct ant_stage_file){.src = names[i], .dst = names[i], .xform = ANT_XFORM_RAW};
        dec[i] = (struct ant_stage_file){.src = names[i], .dst = names[i],
                                         .xform = ANT_XFORM_DECRYPT, .has_sha256 = true};
    }
    snprintf(job_raw, sizeof(job_raw), "raw-%s", tag);
    snprintf(job_dec, sizeof(job_dec), "dec-%s", tag);
    job_init(&job, f, job_raw, raw, NDIRECT, &res);
    job.dst_root = dst_root;
    job.progress = &prog;
    int rc = ant_engine_run(e, &job, &d);
    if (rc != 0) {
        fail_msg("raw %s: %d %s", tag, rc, d.msg);
    }
    for (size_t i = 0; i < NDIRECT; i++) {
        uint8_t *want = malloc(g_direct_sizes[i] + 1);
        assert_non_null(want);
        fill_random(want, g_direct_sizes[i], 100 + i);
        sha256(want, g_direct_sizes[i], dec[i].sha256);
        free(want);
    }
    job_init(&job, f, job_dec, dec, NDIRECT, &res);
    job.dst_root = dst_root;
    job.src_root = efd;
    job.key = k;
    job.progress = &prog;
    rc = ant_engine_run(e, &job, &d);
    if (rc != 0) {
        fail_msg("decrypt %s: %d %s", tag, rc, d.msg);
    }
    assert_int_equal(res.nok, 2 * NDIRECT);
    for (size_t i = 0; i < NDIRECT; i++) {
        char p[400];
        size_t n = 0;
        uint8_t *want = malloc(g_direct_sizes[i] + 1);
        assert_non_null(want);
        fill_random(want, g_direct_sizes[i], 100 + i);
        for (int j = 0; j < 2; j++) {
            snprintf(p, sizeof(p), "%s/%s", j == 0 ? job_raw : job_dec, names[i]);
            uint8_t *got = read_at(dst_root, p, &n);
            assert_non_null(got);
            assert_int_equal(n, g_direct_sizes[i]);
            assert_memory_equal(got, want, n);
            free(got);
        }
        free(want);
    }
    close(efd);
    *reads = atomic_load(&prog.files_direct_read);
    return atomic_load(&prog.files_direct);
}

/* Writes n random plaintexts ("<prefix>/s<size>", seeded seed + i) to the source folder and
 * encrypts them for pk with the engine into the job folder `job_name` of the destination; the
 * names go to names[]. */
static void encrypt_sources(struct fx *f, const char *job_name, const char *prefix,
                            const size_t *sizes, size_t n, uint64_t seed, const uint8_t *pk,
                            char (*names)[32], struct ant_stage_file *enc)
{
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = malloc(sizes[i] + 1);
        assert_non_null(p);
        fill_random(p, sizes[i], seed + i);
        snprintf(names[i], sizeof(names[i]), "%s/s%zu", prefix, sizes[i]);
        write_at(f->src, names[i], p, sizes[i]);
        enc[i] = (struct ant_stage_file){.src = names[i], .dst = names[i],
                                         .xform = ANT_XFORM_ENCRYPT};
        free(p);
    }
    job_init(&job, f, job_name, enc, n, NULL);
    job.on_progress = NULL;
    job.on_file = NULL;
    job.recipient_pk = pk;
    int rc = ant_engine_run(f->e, &job, &d);
    if (rc != 0) {
        fail_msg("encrypt: %d %s", rc, d.msg);
    }
}

/* Does the destination (ext4, or whatever /tmp is) take O_DIRECT: statx reports a DIO
 * alignment (for regular files) that divides 4 KiB. Says so when not. */
static bool dst_takes_direct(struct fx *f)
{
    struct statx stx;
    write_at(f->dst, "probe", "x", 1);
    bool dio = statx(f->dst, "probe", 0, STATX_DIOALIGN, &stx) == 0 &&
               (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0 &&
               4096 % stx.stx_dio_offset_align == 0 && 4096 % stx.stx_dio_mem_align == 0;
    if (!dio) {
        fprintf(stderr, "note: /tmp has no O_DIRECT: the direct path was not exercised\n");
    }
    return dio;
}

/* Mounts a tmpfs of `size` (no DIO alignment: the engine falls back to buffered writes) at
 * f->mnt and returns an fd on it; -1 when this process may not mount (not root, no mount
 * namespace rights): the caller skips. */
static int mount_tmpfs(struct fx *f, const char *size)
{
    snprintf(f->mnt, sizeof(f->mnt), "%s/shm", f->dir);
    assert_int_equal(mkdir(f->mnt, 0755), 0);
    if (mount("tmpfs", f->mnt, "tmpfs", 0, size) != 0) {
        f->mnt[0] = '\0';
        return -1;
    }
    int tfd = open(f->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(tfd >= 0);
    return tfd;
}

static void unmount_tmpfs(struct fx *f, int tfd)
{
    close(tfd);
    assert_int_equal(umount2(f->mnt, MNT_DETACH), 0);
    f->mnt[0] = '\0';
}

static void test_direct_output_and_fallback(void **state)
{
    struct fx *f = c4gh_fx(state);
    struct ant_key *k1 = vector_key("keys/recipient1.sec", NULL);
    uint8_t pk1[ANT_KEY_LEN];
    struct ant_stage_file enc[NDIRECT];
    char names[NDIRECT][32];
    struct ant_engine_opts o;
    struct ant_engine *buffered = NULL;
    /* files at or over 1 MiB: 7 of the sizes, each staged raw and decrypted */
    const uint64_t nbig = 2 * (NDIRECT - 2);
    vector_pub("keys/recipient1.pub", pk1);
    encrypt_sources(f, "enc", "d", g_direct_sizes, NDIRECT, 100, pk1, names, enc);
    bool dio = dst_takes_direct(f);
    uint64_t reads = 0;
    assert_int_equal(direct_round(f, f->e, f->dst, "disk", k1, &reads), dio ? nbig : 0);
    /* raw: every non-empty source (all its reads start on a block); decrypt: only the sources
     * of one chunk (here the empty file's 124-byte Crypt4GH file) */
    assert_int_equal(reads, dio ? (NDIRECT - 1) + 1 : 0);
    /* buffered_only: the same bytes through the page cache */
    ant_engine_opts_init(&o);
    o.io_engine = f->eng;
    o.crypto_threads = 2;
    o.io_threads = 4;
    o.buffered_only = true;
    assert_int_equal(ant_engine_new(&o, &buffered), 0);
    assert_int_equal(direct_round(f, buffered, f->dst, "buf", k1, &reads), 0);
    assert_int_equal(reads, 0);
    ant_engine_free(buffered);
    /* a tmpfs: statx reports no DIO alignment, the engine falls back to buffered writes */
    int tfd = mount_tmpfs(f, "size=64m");
    if (tfd < 0) {
        ant_key_free(k1);
        skip();
    }
    assert_int_equal(direct_round(f, f->e, tfd, "tmpfs", k1, &reads), 0);
    assert_int_equal(reads, dio ? NDIRECT : 0); /* the sources are still on /tmp */
    unmount_tmpfs(f, tfd);
    ant_key_free(k1);
}

/* Reencrypt writes a new header and copies the body: big outputs go out with O_DIRECT too,
 * cut into aligned chunks from the output's start (chunk 0 = the new header + the body's
 * first bytes). Sources of several sizes (plaintext 0, 1, 4095, 4096, 4097, 65535 bytes and
 * several segments: buffered, under the O_DIRECT threshold) and big ones whose output (a
 * 124-byte header + the body) ends exactly on a chunk, 1, 4095, 4096, 4097 and 65535 bytes
 * past one, or 1 byte short of one; default chunks (8 segments) and chunks of one segment;
 * on /tmp (direct where it takes O_DIRECT), with buffered_only, and on a tmpfs (fallback).
 * Some big sources carry an extra packet for another reader (dropped: the output has one),
 * so that the old header is 108 bytes longer (the body's reads do not start on a block:
 * buffered reads, direct writes) or 4096 bytes longer (they do: direct reads too). Each
 * output: the same body, a new header that opens with the recipient's key (decrypts to the
 * plaintext), the body's digest checked on the way. */
enum { RE_HDR = 124, RE_NSMALL = 7, RE_N = 15 };

/* Extra header bytes of source i (a foreign packet of that length, or none). */
static size_t re_extra(size_t i)
{
    static const size_t extra[3] = {0, 108, 4096};
    return i < RE_NSMALL ? 0 : extra[i % 3];
}

/* Source i's file: the engine's output with re_extra(i) bytes of foreign packet added. */
static void re_add_packet(int dir, const char *name, size_t extra, uint64_t seed)
{
    size_t clen = 0;
    uint8_t *c = read_at(dir, name, &clen);
    assert_non_null(c);
    assert_int_equal(c[12], 1); /* one packet */
    uint8_t *n = malloc(clen + extra);
    assert_non_null(n);
    memcpy(n, c, RE_HDR);
    n[12] = 2;
    /* length, method 0 (X25519 + ChaCha20-Poly1305), then bytes no key of ours opens */
    fill_random(n + RE_HDR, extra, seed);
    n[RE_HDR] = (uint8_t)extra;
    n[RE_HDR + 1] = (uint8_t)(extra >> 8);
    n[RE_HDR + 2] = n[RE_HDR + 3] = 0;
    memset(n + RE_HDR + 4, 0, 4);
    memcpy(n + RE_HDR + extra, c + RE_HDR, clen - RE_HDR);
    write_at(dir, name, n, clen + extra);
    free(n);
    free(c);
}

/* The plaintext length whose Crypt4GH file (one-recipient header) is `total` bytes long. */
static size_t re_plain_for(size_t total)
{
    size_t body = total - RE_HDR;
    for (size_t k = 1; 28 * k < body; k++) {
        size_t p = body - 28 * k;
        if (p > 65536 * (k - 1) && p <= 65536 * k) {
            return p;
        }
    }
    fail_msg("no plaintext gives a %zu-byte file", total);
    return 0;
}

static size_t re_sizes(size_t out[RE_N])
{
    static const size_t small[RE_NSMALL] = {0, 1, 4095, 4096, 4097, 65535, 3 * 65536 + 5};
    const size_t c = 8 * 65536, m2 = 2u << 20;
    const size_t totals[RE_N - RE_NSMALL] = {4 * c, m2 + 1, m2 + 4095, m2 + 4096, m2 + 4097,
                                              m2 + 65535, 3 * c - 1, (1u << 20) + 28 * 16 + 124};
    for (size_t i = 0; i < RE_NSMALL; i++) {
        out[i] = small[i];
    }
    for (size_t i = RE_NSMALL; i < RE_N; i++) {
        out[i] = re_plain_for(totals[i - RE_NSMALL]);
        assert_int_equal(RE_HDR + out[i] + 28 * ((out[i] + 65535) / 65536),
                         totals[i - RE_NSMALL]);
    }
    return RE_N;
}

/* Reencrypts every enc/r/<size> for pk2 into dst_root/<tag>, checks the bytes, decrypts the
 * outputs with k2 and checks the plaintext; returns how many outputs went out direct. */
static uint64_t re_round(struct fx *f, struct ant_engine *e, int dst_root, const char *tag,
                         const struct ant_key *k1, const struct ant_key *k2, const uint8_t *pk2,
                         uint64_t *reads)
{
    size_t sizes[RE_N];
    struct ant_stage_file re[RE_N], back[RE_N];
    char names[RE_N][32], jre[32], jback[32], p[600];
    struct ant_stage_progress prog = {0};
    struct ant_stage_job job;
    struct ant_diag d = {{0}};
    struct results res = {0};
    size_t clen = 0, glen = 0;
    re_sizes(sizes);
    int efd = openat(f->dst, "renc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(efd >= 0);
    for (size_t i = 0; i < RE_N; i++) {
        snprintf(names[i], sizeof(names[i]), "r/s%zu", sizes[i]);
        re[i] = (struct ant_stage_file){.src = names[i], .dst = names[i],
                                        .xform = ANT_XFORM_REENCRYPT, .has_sha256 = true};
        uint8_t *c = read_at(efd, names[i], &clen);
        assert_non_null(c);
        assert_true(clen >= RE_HDR + re_extra(i));
        /* the catalog's: the body's */
        sha256(c + RE_HDR + re_extra(i), clen - RE_HDR - re_extra(i), re[i].sha256);
        free(c);
    }
    snprintf(jre, sizeof(jre), "re-%s", tag);
    job_init(&job, f, jre, re, RE_N, &res);
    job.src_root = efd;
    job.dst_root = dst_root;
    job.key = k1;
    job.recipient_pk = pk2;
    job.progress = &prog;
    int rc = ant_engine_run(e, &job, &d);
    if (rc != 0) {
        fail_msg("reencrypt %s: %d %s", tag, rc, d.msg);
    }
    assert_int_equal(res.nok, RE_N);
    uint64_t direct = atomic_load(&prog.files_direct);
    *reads = atomic_load(&prog.files_direct_read);
    uint64_t want_bytes = 0;
    for (size_t i = 0; i < RE_N; i++) {
        uint8_t *c = read_at(efd, names[i], &clen);
        snprintf(p, sizeof(p), "%s/%s", jre, names[i]);
        uint8_t *got = read_at(dst_root, p, &glen);
        assert_non_null(c);
        assert_non_null(got);
        size_t x = re_extra(i);
        /* one recipient: a 124-byte header, the body as it was, no padding */
        assert_int_equal(glen, clen - x);
        assert_memory_equal(got + RE_HDR, c + RE_HDR + x, clen - RE_HDR - x);
        assert_memory_not_equal(got, c, RE_HDR);
        assert_int_equal(got[12], 1);
        want_bytes += glen;
        free(c);
        free(got);
    }
    assert_int_equal(atomic_load(&prog.bytes_done), want_bytes);
    /* the new headers open with recipient2's key: the plaintext comes back */
    snprintf(jback, sizeof(jback), "back-%s", tag);
    int rfd = openat(dst_root, jre, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(rfd >= 0);
    for (size_t i = 0; i < RE_N; i++) {
        uint8_t *want = malloc(sizes[i] + 1);
        assert_non_null(want);
        fill_random(want, sizes[i], 300 + i);
        back[i] = (struct ant_stage_file){.src = names[i], .dst = names[i],
                                          .xform = ANT_XFORM_DECRYPT, .has_sha256 = true};
        sha256(want, sizes[i], back[i].sha256);
        free(want);
    }
    memset(&res, 0, sizeof(res));
    job_init(&job, f, jback, back, RE_N, &res);
    job.src_root = rfd;
    job.dst_root = dst_root;
    job.key = k2;
    rc = ant_engine_run(e, &job, &d);
    if (rc != 0) {
        fail_msg("decrypt back %s: %d %s", tag, rc, d.msg);
    }
    assert_int_equal(res.nok, RE_N);
    close(rfd);
    close(efd);
    return direct;
}

static void test_direct_reencrypt_and_fallback(void **state)
{
    struct fx *f = c4gh_fx(state);
    struct ant_key *k1 = vector_key("keys/recipient1.sec", NULL);
    struct ant_key *k2 = vector_key("keys/recipient2.sec", "antenna-test");
    uint8_t pk1[ANT_KEY_LEN], pk2[ANT_KEY_LEN];
    size_t sizes[RE_N];
    struct ant_stage_file enc[RE_N];
    char names[RE_N][32];
    struct ant_engine_opts o;
    struct ant_engine *e2 = NULL;
    const uint64_t nbig = RE_N - RE_NSMALL;
    vector_pub("keys/recipient1.pub", pk1);
    vector_pub("keys/recipient2.pub", pk2);
    re_sizes(sizes);
    encrypt_sources(f, "renc", "r", sizes, RE_N, 300, pk1, names, enc);
    int efd = openat(f->dst, "renc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(efd >= 0);
    size_t nsmall1 = 0; /* sources read whole in one chunk of one segment */
    uint64_t nbig_aligned = 0;
    for (size_t i = 0; i < RE_N; i++) {
        if (re_extra(i) != 0) {
            re_add_packet(efd, names[i], re_extra(i), 500 + i);
        }
        nbig_aligned += i >= RE_NSMALL && re_extra(i) % 4096 == 0;
        nsmall1 += i < RE_NSMALL && RE_HDR + sizes[i] + 28 * ((sizes[i] + 65535) / 65536) <= 65536;
    }
    close(efd);
    bool dio = dst_takes_direct(f);
    uint64_t reads = 0;
    assert_int_equal(re_round(f, f->e, f->dst, "disk", k1, k2, pk2, &reads), dio ? nbig : 0);
    /* the small sources are read whole (as before); big ones where the headers' lengths
     * differ by whole blocks */
    assert_int_equal(reads, dio ? RE_NSMALL + nbig_aligned : 0);
    /* chunks of one segment: outputs of 17 to 49 chunks, the header in the first */
    ant_engine_opts_init(&o);
    o.io_engine = f->eng;
    o.crypto_threads = 2;
    o.io_threads = 4;
    o.chunk_segments = 1;
    o.nbufs = 8;
    assert_int_equal(ant_engine_new(&o, &e2), 0);
    assert_int_equal(re_round(f, e2, f->dst, "seg1", k1, k2, pk2, &reads), dio ? nbig : 0);
    assert_int_equal(reads, dio ? nsmall1 + nbig_aligned : 0);
    ant_engine_free(e2);
    e2 = NULL;
    o.chunk_segments = 0;
    o.nbufs = 0;
    o.buffered_only = true;
    assert_int_equal(ant_engine_new(&o, &e2), 0);
    assert_int_equal(re_round(f, e2, f->dst, "buf", k1, k2, pk2, &reads), 0);
    assert_int_equal(reads, 0);
    ant_engine_free(e2);
    /* a tmpfs: no DIO alignment, buffered writes */
    int tfd = mount_tmpfs(f, "size=96m");
    if (tfd < 0) {
        ant_key_free(k1);
        ant_key_free(k2);
        skip();
    }
    assert_int_equal(re_round(f, f->e, tfd, "tmpfs", k1, k2, pk2, &reads), 0);
    assert_int_equal(reads, dio ? RE_NSMALL : 0); /* the sources are still on /tmp */
    unmount_tmpfs(f, tfd);
    ant_key_free(k1);
    ant_key_free(k2);
}

/* --- resume inside a file --- */

/* Big files for resume: a plaintext of 3 MiB + 12345 bytes (decrypt: 49 segments, the last one
 * short), staged with chunks of one segment and marks every 1 MiB. */
enum { RS_SIZE = (3 << 20) + 12345, RS_MARK = 1 << 20, RS_HDR = 124 };

struct rs {
    struct ant_key *k1, *k2;
    uint8_t pk1[ANT_KEY_LEN], pk2[ANT_KEY_LEN];
    uint8_t *plain;  /* RS_SIZE bytes, also the raw source "rs/s<size>" */
    uint8_t *enc;    /* its Crypt4GH file for recipient1 (124-byte header) */
    size_t enc_len;
    int efd;         /* the folder holding rs/s<size> encrypted */
    char name[32];
    struct ant_engine *e;
};

static struct ant_engine *resume_engine(const struct fx *f, uint64_t min)
{
    /* one file at a time: a job's small file is published before its big one starts, so a
     * stop during the big one finds it done, however slowly the machine runs */
    return small_chunk_engine_with(f, 8, min, RS_MARK, 1);
}

static void rs_init(struct fx *f, struct rs *t)
{
    struct ant_stage_file enc;
    char names[1][32];
    size_t size = RS_SIZE;
    char p[64];
    memset(t, 0, sizeof(*t));
    t->k1 = vector_key("keys/recipient1.sec", NULL);
    t->k2 = vector_key("keys/recipient2.sec", "antenna-test");
    vector_pub("keys/recipient1.pub", t->pk1);
    vector_pub("keys/recipient2.pub", t->pk2);
    encrypt_sources(f, "enc", "rs", &size, 1, 900, t->pk1, names, &enc);
    snprintf(t->name, sizeof(t->name), "%s", names[0]);
    t->plain = read_at(f->src, t->name, &size);
    assert_non_null(t->plain);
    assert_int_equal(size, RS_SIZE);
    snprintf(p, sizeof(p), "enc/%s", t->name);
    t->enc = read_at(f->dst, p, &t->enc_len);
    assert_non_null(t->enc);
    assert_int_equal(t->enc_len, RS_HDR + RS_SIZE + 28 * ((RS_SIZE + 65535) / 65536));
    t->efd = openat(f->dst, "enc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->efd >= 0);
    t->e = resume_engine(f, RS_MARK);
}

static void rs_fini(struct rs *t)
{
    ant_engine_free(t->e);
    ant_key_free(t->k1);
    ant_key_free(t->k2);
    free(t->plain);
    free(t->enc);
    close(t->efd);
}

/* The file of one transform: its spec (digest as the catalog keeps it) and its job's roots. */
static void rs_file(struct fx *f, struct rs *t, enum ant_xform x, struct ant_stage_file *file,
                    struct ant_stage_job *job, const char *jname, struct results *res)
{
    *file = (struct ant_stage_file){.src = t->name, .dst = "big", .xform = x, .has_sha256 = true};
    if (x == ANT_XFORM_REENCRYPT) {
        sha256(t->enc + RS_HDR, t->enc_len - RS_HDR, file->sha256); /* the body's */
    } else {
        sha256(t->plain, RS_SIZE, file->sha256);
    }
    job_init(job, f, jname, file, 1, res);
    job->on_mark = on_mark;
    job->src_root = x == ANT_XFORM_RAW ? f->src : t->efd;
    job->key = t->k1;
    job->recipient_pk = t->pk2;
}

/* The published copy is what the transform makes of the source. */
static void rs_check(struct fx *f, const struct rs *t, enum ant_xform x, const char *jname)
{
    char p[64];
    size_t n = 0;
    snprintf(p, sizeof(p), "%s/big", jname);
    uint8_t *got = read_at(f->dst, p, &n);
    assert_non_null(got);
    if (x == ANT_XFORM_REENCRYPT) {
        /* the same body behind a header for recipient2 */
        struct ant_c4gh_header *h = NULL;
        assert_int_equal(n, t->enc_len);
        assert_memory_equal(got + RS_HDR, t->enc + RS_HDR, t->enc_len - RS_HDR);
        assert_int_equal(ant_c4gh_header_parse(ant_bytes_of(got, n), t->k2, NULL, 0, &h, NULL),
                         0);
        ant_c4gh_header_free(h);
    } else {
        assert_int_equal(n, RS_SIZE);
        assert_memory_equal(got, t->plain, RS_SIZE);
    }
    free(got);
}

/* A stop (a daemon's graceful shutdown) during a big file: the chunks in flight finish, the
 * written prefix is made durable and reported as a mark, a finished small file is reported
 * done, and the run returns -EINTR keeping both. The next run continues the big file from its
 * mark (it is not copied from the start) and the result is byte-identical, for raw, decrypt
 * and reencrypt (whose earlier header stays in front of the body). */
static void test_resume_inside_a_file_after_a_stop(void **state)
{
    struct fx *f = c4gh_fx(state);
    static const enum ant_xform xs[] = {ANT_XFORM_RAW, ANT_XFORM_DECRYPT, ANT_XFORM_REENCRYPT};
    struct rs t;
    uint8_t small[5000];
    rs_init(f, &t);
    fill_random(small, sizeof(small), 77);
    write_at(f->src, "small", small, sizeof(small));
    for (size_t i = 0; i < ANT_ARRAY_LEN(xs); i++) {
        struct ant_stage_file files[2];
        struct ant_stage_progress prog = {0};
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        atomic_bool stop = false;
        char jname[16], p[64];
        snprintf(jname, sizeof(jname), "st%zu", i);
        rs_file(f, &t, xs[i], &files[1], &job, jname, &res);
        files[0] = (struct ant_stage_file){.src = "small", .dst = "small", .has_sha256 = true};
        sha256(small, sizeof(small), files[0].sha256);
        job.files = files;
        job.nfiles = 2;
        job.src_root = f->src;
        if (xs[i] != ANT_XFORM_RAW) {
            /* a raw copy of the small file beside the encrypted big one */
            write_at(t.efd, "small", small, sizeof(small));
            job.src_root = t.efd;
        }
        job.stop = &stop;
        /* stop at 1.5 MiB written: the small file is done (one file at a time:
         * resume_engine), and no more than the 8 chunks in flight are written after it */
        res.stop_after = &stop;
        res.stop_index = 1;
        res.stop_bytes = 3 * RS_MARK / 2;
        assert_int_equal(ant_engine_run(t.e, &job, &d), -EINTR);
        assert_int_equal(res.nok, 1); /* the small file, made durable at the stop */
        assert_int_equal(res.nfail, 0);
        uint64_t m = res.mark[1];
        uint64_t out = xs[i] == ANT_XFORM_REENCRYPT ? t.enc_len : RS_SIZE;
        assert_true(res.nmarks >= 1); /* (1 MiB, if its fdatasync was back, and) the stop's */
        assert_true(m >= 3 * RS_MARK / 2 && m < 5 * RS_MARK / 2 && m < out);
        snprintf(p, sizeof(p), ".%s.partial/big", jname);
        assert_true(exists_at(f->dst, p));
        assert_false(exists_at(f->dst, jname));

        files[0].done = true;
        files[1].resume_at = m;
        memset(&res, 0, sizeof(res));
        job.stop = NULL;
        job.progress = &prog;
        job.cb_arg = &res;
        int rc = ant_engine_run(t.e, &job, &d);
        if (rc != 0) {
            fail_msg("resume %s: %d %s", ant_xform_name(xs[i]), rc, d.msg);
        }
        assert_int_equal(res.nok, 2);
        assert_int_equal(atomic_load(&prog.files_resumed), 1);
        assert_int_equal(atomic_load(&prog.bytes_resumed), m);
        assert_int_equal(atomic_load(&prog.files_resume_failed), 0);
        /* what this run wrote: the rest, and the kept prefix counted once */
        assert_int_equal(atomic_load(&prog.bytes_done), out);
        assert_false(res.mark_voided);
        rs_check(f, &t, xs[i], jname);
    }
    rs_fini(&t);
}

/* A crash (SIGKILL right after the first mark) leaves a partial copy and a mark. The copy is
 * continued from the mark; a prefix damaged since is caught by the file's digest and the file
 * copied again from the start in the same run (the mark voided); a mark past the copy's end
 * or off a segment is refused (copied from the start). Encrypt records no marks and ignores
 * resume_at, and so does a file under the threshold. */
static void test_resume_after_a_crash_checks_the_prefix(void **state)
{
    struct fx *f = c4gh_fx(state);
    struct rs t;
    rs_init(f, &t);
    static const enum ant_xform xs[] = {ANT_XFORM_DECRYPT, ANT_XFORM_REENCRYPT};
    for (size_t i = 0; i < ANT_ARRAY_LEN(xs); i++) {
        struct ant_stage_file file;
        struct ant_stage_progress prog = {0};
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        char jname[16], p[64];
        int pfd[2];
        snprintf(jname, sizeof(jname), "cr%zu", i);
        snprintf(p, sizeof(p), ".%s.partial/big", jname);
        rs_file(f, &t, xs[i], &file, &job, jname, &res);
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            res.crash_fd = pfd[1];
            int rc = ant_engine_run(t.e, &job, &d);
            _exit(rc == 0 ? 0 : 1); /* the mark should have killed us before */
        }
        close(pfd[1]);
        uint64_t m = 0;
        assert_int_equal(read(pfd[0], &m, sizeof(m)), (ssize_t)sizeof(m));
        close(pfd[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        /* on a chunk past 1 MiB (at most nbufs chunks written out of order past it) */
        assert_true(m >= RS_MARK && m < 2 * RS_MARK);
        assert_true(exists_at(f->dst, p));

        /* a byte of the kept prefix damaged since: the digest catches it, copied again (the
         * byte flipped: a fixed value was already there once in 256 runs of reencrypt, whose
         * output is the source's random ciphertext) */
        int fd = openat(f->dst, p, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        uint8_t x = 0;
        assert_int_equal(pread(fd, &x, 1, RS_MARK / 2), 1);
        x ^= 0xff;
        assert_int_equal(pwrite(fd, &x, 1, RS_MARK / 2), 1);
        close(fd);
        file.resume_at = m;
        job.progress = &prog;
        int rc = ant_engine_run(t.e, &job, &d);
        if (rc != 0) {
            fail_msg("damaged prefix %s: %d %s", ant_xform_name(xs[i]), rc, d.msg);
        }
        assert_int_equal(atomic_load(&prog.files_resumed), 1);
        assert_int_equal(atomic_load(&prog.files_resume_failed), 1);
        assert_true(res.mark_voided);
        assert_int_equal(res.nok, 1);
        rs_check(f, &t, xs[i], jname);
    }

    /* refused marks: past the partial copy's end, and off a segment */
    static const uint64_t bad[] = {3 * RS_MARK, RS_MARK + 1};
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        struct ant_stage_file file;
        struct ant_stage_progress prog = {0};
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        char jname[16], p[64];
        snprintf(jname, sizeof(jname), "bad%zu", i);
        snprintf(p, sizeof(p), ".%s.partial/big", jname);
        mkdirs_at(f->dst, p);
        write_at(f->dst, p, t.plain, 2 * RS_MARK); /* a true prefix, 2 MiB long */
        rs_file(f, &t, ANT_XFORM_DECRYPT, &file, &job, jname, &res);
        file.resume_at = bad[i];
        job.progress = &prog;
        assert_int_equal(ant_engine_run(t.e, &job, &d), 0);
        assert_int_equal(atomic_load(&prog.files_resumed), 0);
        assert_int_equal(atomic_load(&prog.files_resume_failed), 1);
        assert_true(res.mark_voided);
        rs_check(f, &t, ANT_XFORM_DECRYPT, jname);
    }

    /* encrypt, and a file under the threshold: no marks, resume_at ignored */
    struct ant_engine *high = resume_engine(f, 2 * RS_SIZE);
    for (int i = 0; i < 2; i++) {
        struct ant_stage_file file = {.src = t.name, .dst = "big"};
        struct ant_stage_progress prog = {0};
        struct results res = {0};
        struct ant_stage_job job;
        struct ant_diag d = {{0}};
        const char *jname = i == 0 ? "encr" : "under";
        char p[64];
        snprintf(p, sizeof(p), ".%s.partial/big", jname);
        mkdirs_at(f->dst, p);
        write_at(f->dst, p, t.plain, 2 * RS_MARK);
        file.xform = i == 0 ? ANT_XFORM_ENCRYPT : ANT_XFORM_RAW;
        file.has_sha256 = i == 1;
        file.resume_at = i == 0 ? RS_MARK : 0;
        sha256(t.plain, RS_SIZE, file.sha256);
        job_init(&job, f, jname, &file, 1, &res);
        job.on_mark = on_mark;
        job.recipient_pk = t.pk1;
        job.progress = &prog;
        assert_int_equal(ant_engine_run(i == 0 ? t.e : high, &job, &d), 0);
        assert_int_equal(res.nmarks, 0);
        assert_int_equal(atomic_load(&prog.files_resumed), 0);
        assert_int_equal(res.nok, 1);
    }
    ant_engine_free(high);
    rs_fini(&t);
}

#define PER_BACKEND(fn)                                                                           \
    cmocka_unit_test_setup_teardown(fn, setup_uring, teardown),                                   \
        cmocka_unit_test_setup_teardown(fn, setup_threads, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_check_accepts_plain_paths),
        cmocka_unit_test(test_path_check_refuses_hostile_paths),
        cmocka_unit_test(test_path_check_limits),
        cmocka_unit_test(test_openat_refuses_symlinks_and_escapes),
        cmocka_unit_test(test_walk_open_refuses_symlinks),
        cmocka_unit_test(test_parse_names),
        cmocka_unit_test(test_env_overrides_engine),
        cmocka_unit_test(test_no_uring_falls_back_to_threads),
        PER_BACKEND(test_big_file_copied_identically),
        PER_BACKEND(test_many_small_files),
        PER_BACKEND(test_empty_file_and_empty_job),
        PER_BACKEND(test_checksum_mismatch_leaves_no_file_and_resumes),
        PER_BACKEND(test_resume_over_crash_leftovers),
        PER_BACKEND(test_missing_source_is_reported),
        PER_BACKEND(test_path_escapes_refused),
        PER_BACKEND(test_symlinks_not_followed),
        PER_BACKEND(test_planted_fifos_and_hard_links_not_used),
        PER_BACKEND(test_cancel_leaves_nothing),
        PER_BACKEND(test_source_shrinking_fails_the_file),
        PER_BACKEND(test_enospc_is_reported),
        PER_BACKEND(test_fsync_each_and_small_limits),
        PER_BACKEND(test_c4gh_decrypt_vectors),
        PER_BACKEND(test_c4gh_decrypt_edit_list_past_first_chunk),
        PER_BACKEND(test_c4gh_bad_inputs_fail_cleanly),
        PER_BACKEND(test_c4gh_reencrypt_then_decrypt),
        PER_BACKEND(test_c4gh_encrypt_then_decrypt),
        PER_BACKEND(test_c4gh_resume_keeps_checkpointed_outputs),
        PER_BACKEND(test_direct_output_and_fallback),
        PER_BACKEND(test_direct_reencrypt_and_fallback),
        PER_BACKEND(test_checkpoint_batches_synced_aside),
        PER_BACKEND(test_resume_inside_a_file_after_a_stop),
        PER_BACKEND(test_resume_after_a_crash_checks_the_prefix),
    };
    /* ANT_TEST_FILTER=test_many_small_files runs only the tests whose name matches */
    if (getenv("ANT_TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("ANT_TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
