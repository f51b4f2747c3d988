/* Unit tests for crypto/base: buffers, cursor, bounded parsing, opening regular files. */
#include "crypto/base/json.h"
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_buf_refuses_growth_past_max(void **state)
{
    (void)state;
    struct ant_buf b = ANT_BUF_INIT(8);
    assert_int_equal(ant_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(ant_buf_append(&b, "9", 1), -E2BIG);
    assert_int_equal(b.len, 8);
    assert_int_equal(ant_buf_terminate(&b), 0);
    assert_string_equal((char *)b.p, "12345678");
    ant_buf_wipe_fini(&b);
    assert_null(b.p);
}

static void test_buf_printf_and_take(void **state)
{
    (void)state;
    struct ant_buf b = ANT_BUF_INIT(64);
    assert_int_equal(ant_buf_printf(&b, "%s-%d", "x", 42), 0);
    size_t len = 0;
    uint8_t *p = ant_buf_take(&b, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(p, "x-42", 4);
    free(p);
    assert_int_equal(ant_buf_printf(&b, "%0100d", 1), -E2BIG);
    ant_buf_fini(&b);
}

static void test_rd_refuses_every_overrun(void **state)
{
    (void)state;
    static const uint8_t src[] = {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    for (size_t n = 0; n < sizeof(src); n++) {
        uint8_t *cut = test_memdup(src, n);
        struct ant_rd rd = ant_rd_init(ant_bytes_of(cut, n));
        uint32_t a;
        uint64_t b;
        int rc = ant_rd_u32le(&rd, &a);
        if (rc == 0) {
            rc = ant_rd_u64le(&rd, &b);
        }
        assert_int_equal(rc, -EBADMSG);
        free(cut);
    }
    struct ant_rd rd = ant_rd_init(ant_bytes_of(src, sizeof(src)));
    uint32_t a;
    uint64_t b;
    assert_int_equal(ant_rd_u32le(&rd, &a), 0);
    assert_int_equal(ant_rd_u64le(&rd, &b), 0);
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(ant_rd_left(&rd), 0);
}

static void test_rd_big_endian(void **state)
{
    (void)state;
    static const uint8_t src[] = {0x01, 0x02, 0x01, 0x02, 0x03, 0x04};
    struct ant_rd rd = ant_rd_init(ant_bytes_of(src, sizeof(src)));
    uint16_t a;
    uint32_t b;
    assert_int_equal(ant_rd_u16be(&rd, &a), 0);
    assert_int_equal(ant_rd_u32be(&rd, &b), 0);
    assert_int_equal(a, 0x0102);
    assert_int_equal(b, 0x01020304u);
}

static void test_parse_u64_bounds(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(ant_parse_u64(ant_bytes_str("42"), 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ant_parse_u64(ant_bytes_str("101"), 0, 100, &v), -EINVAL);
    assert_int_equal(ant_parse_u64(ant_bytes_str(""), 0, 100, &v), -EINVAL);
    assert_int_equal(ant_parse_u64(ant_bytes_str("-1"), 0, 100, &v), -EINVAL);
    assert_int_equal(ant_parse_u64(ant_bytes_str(" 1"), 0, 100, &v), -EINVAL);
    assert_int_equal(ant_parse_u64(ant_bytes_str("18446744073709551616"), 0, UINT64_MAX, &v),
                     -EINVAL);
    assert_int_equal(ant_parse_u64(ant_bytes_str("18446744073709551615"), 0, UINT64_MAX, &v),
                     0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(ant_parse_u64(ant_bytes_of("12\0", 3), 0, 100, &v), -EINVAL);
}

static void test_parse_size_and_duration(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(ant_parse_size(ant_bytes_str("64M"), UINT64_MAX, &v), 0);
    assert_true(v == 64ULL << 20);
    assert_int_equal(ant_parse_size(ant_bytes_str("2G"), 1ULL << 30, &v), -EINVAL);
    assert_int_equal(ant_parse_size(ant_bytes_str("M"), UINT64_MAX, &v), -EINVAL);
    assert_int_equal(ant_parse_size(ant_bytes_str("99999999999T"), UINT64_MAX, &v), -EINVAL);
    assert_int_equal(ant_parse_duration(ant_bytes_str("5m"), 86400, &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(ant_parse_duration(ant_bytes_str("2d"), 86400, &v), -EINVAL);
    assert_int_equal(ant_parse_duration(ant_bytes_str("30x"), 86400, &v), -EINVAL);
}

static void test_hex_round_trip(void **state)
{
    (void)state;
    static const uint8_t src[] = {0x00, 0xab, 0xff};
    char hex[7];
    uint8_t back[3];
    ant_hex_encode(src, 3, hex);
    assert_string_equal(hex, "00abff");
    assert_int_equal(ant_hex_decode(ant_bytes_str(hex), back, 3), 0);
    assert_memory_equal(back, src, 3);
    assert_int_equal(ant_hex_decode(ant_bytes_str("00abf"), back, 3), -EINVAL);
    assert_int_equal(ant_hex_decode(ant_bytes_str("00abfg"), back, 3), -EINVAL);
}

/* Only the alphabet's digits (and the ignored characters) decode: no NUL, no byte >= 0x80,
 * which libsodium 1.0.18 alone took as the last digit ("/" or "_"). */
static void test_b64_decode_alphabet_only(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t n = 0;
    assert_int_equal(ant_b64_decode(ant_bytes_str("/w=="), false, NULL, out, sizeof(out), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(ant_b64_decode(ant_bytes_str("_w"), true, NULL, out, sizeof(out), &n), 0);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(ant_b64_decode(ant_bytes_str("/w\n=="), false, "\n", out, sizeof(out), &n),
                     0);
    static const struct {
        const char *s;
        size_t len;
        bool url;
    } bad[] = {
        {"\xafw==", 4, false}, {"\x80w==", 4, false}, {"\xffw", 2, true},
        {"/w\0==", 5, false},  {"/w", 2, false},       {"/w==", 4, true},
        {"", 0, false},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(ant_b64_decode(ant_bytes_of(bad[i].s, bad[i].len), bad[i].url, NULL, out,
                                        sizeof(out), &n),
                         -EBADMSG);
    }
    /* a NUL is not an ignored character even when the ignore set is given */
    assert_int_equal(ant_b64_decode(ant_bytes_of("/w\0==", 5), false, " ", out, sizeof(out), &n),
                     -EBADMSG);
}

static void test_date_is_valid(void **state)
{
    (void)state;
    assert_true(ant_date_is_valid(2026, 1, 31));
    assert_true(ant_date_is_valid(2024, 2, 29));
    assert_true(ant_date_is_valid(2000, 2, 29));
    assert_true(ant_date_is_valid(2026, 12, 31));
    assert_false(ant_date_is_valid(2023, 2, 29));
    assert_false(ant_date_is_valid(1900, 2, 29));
    assert_false(ant_date_is_valid(2023, 2, 31));
    assert_false(ant_date_is_valid(2026, 4, 31));
    assert_false(ant_date_is_valid(2026, 11, 31));
    assert_false(ant_date_is_valid(2026, 0, 1));
    assert_false(ant_date_is_valid(2026, 13, 1));
    assert_false(ant_date_is_valid(2026, 1, 0));
    assert_false(ant_date_is_valid(2026, 1, 32));
}

static int parse(const char *text, size_t max, json_t **out)
{
    struct ant_diag d = {0};
    return ant_json_parse(ant_bytes_of(text, strlen(text)), max, ANT_JSON_MAX_DEPTH, out, &d);
}

static void test_json_limits(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("{\"a\": [1, 2, {\"b\": \"]]]\"}]}", 1024, &v), 0);
    assert_true(json_is_object(v));
    json_decref(v);
    /* duplicate keys, trailing data, not JSON, too big */
    assert_int_equal(parse("{\"a\": 1, \"a\": 2}", 1024, &v), -EINVAL);
    assert_null(v);
    assert_int_equal(parse("{} {}", 1024, &v), -EINVAL);
    assert_int_equal(parse("{\"a\": ", 1024, &v), -EINVAL);
    assert_int_equal(parse("", 1024, &v), -EINVAL);
    assert_int_equal(parse("[1, 2, 3]", 5, &v), -E2BIG);
    /* depth: 16 levels pass, 17 fail; brackets inside strings do not count */
    char deep[64] = "", deeper[64] = "";
    for (int i = 0; i < 16; i++) {
        strcat(deep, "[");
        strcat(deeper, "[");
    }
    strcat(deeper, "[]");
    for (int i = 0; i < 16; i++) {
        strcat(deep, "]");
        strcat(deeper, "]");
    }
    assert_int_equal(parse(deep, 1024, &v), 0);
    json_decref(v);
    assert_int_equal(parse(deeper, 1024, &v), -EINVAL);
    assert_int_equal(parse("[\"[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[\"]", 1024, &v), 0);
    json_decref(v);
}

/* A message cut inside a character (or holding a byte that is no UTF-8) is cut before it. */
static void test_json_cut_to_text(void **state)
{
    (void)state;
    char whole[] = "caf\xc3\xa9 \xf0\x9f\x93\xa1";
    assert_int_equal(ant_json_cut_to_text(whole), 10);
    assert_string_equal(whole, "caf\xc3\xa9 \xf0\x9f\x93\xa1");
    char half[] = "caf\xc3";
    assert_int_equal(ant_json_cut_to_text(half), 3);
    assert_string_equal(half, "caf");
    char three[] = "ab\xf0\x9f\x93";
    assert_int_equal(ant_json_cut_to_text(three), 2);
    char bad[] = "ok\xffmore";
    assert_int_equal(ant_json_cut_to_text(bad), 2);
    char none[] = "";
    assert_int_equal(ant_json_cut_to_text(none), 0);
}

/* A FIFO nobody writes to (or reads from) is refused at once instead of blocking open();
 * a regular file comes back blocking, a folder is refused too. */
static void test_open_regular(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
    assert_int_equal(ant_write_new_file(dfd, "file", 0600, "abc", 3), 0);
    assert_int_equal(mkdirat(dfd, "sub", 0700), 0);
    assert_int_equal(ant_open_regular(dfd, "fifo", O_RDONLY, 0), -EINVAL);
    assert_int_equal(ant_open_regular(dfd, "fifo", O_WRONLY, 0), -ENXIO); /* no reader */
    assert_int_equal(ant_open_regular(dfd, "sub", O_RDONLY, 0), -EINVAL);
    assert_int_equal(ant_open_regular(dfd, "none", O_RDONLY, 0), -ENOENT);
    int fd = ant_open_regular(dfd, "file", O_RDONLY | O_NOFOLLOW, 0);
    assert_true(fd >= 0);
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0 && (fl & O_NONBLOCK) == 0);
    assert_true((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    char buf[4];
    assert_int_equal(ant_read_full(fd, buf, sizeof(buf)), 3);
    ant_close(fd);
    struct stat st;
    fd = ant_open_regular(dfd, "new", O_WRONLY | O_CREAT | O_EXCL, 0600); /* mode for O_CREAT */
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ant_close(fd);
    ant_close(dfd);
    test_rmtree(dir);
    free(dir);
}

/* The purger's remover: a job's users can make a tree in scratch as deep as they like (it
 * stopped at 256 levels with -ELOOP, and the purge left the whole output in place) and put
 * symlinks in it (never followed: what they point at stays). */
static void test_rmtree_any_depth_never_follows_links(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkdirat(dfd, "outside", 0700), 0);
    assert_int_equal(ant_write_new_file(dfd, "outside/keep", 0600, "k", 1), 0);
    assert_int_equal(mkdirat(dfd, "top", 0700), 0);
    int fd = openat(dfd, "top", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    char target[PATH_MAX];
    assert_true((size_t)snprintf(target, sizeof(target), "%s/outside", dir) < sizeof(target));
    for (unsigned i = 0; i < 700; i++) {
        assert_int_equal(ant_write_new_file(fd, "f", 0600, "x", 1), 0);
        if (i % 100 == 0) {
            assert_int_equal(symlinkat(target, fd, "link"), 0);
        }
        assert_int_equal(mkdirat(fd, "d", 0700), 0);
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        ant_close(fd);
        fd = next;
    }
    ant_close(fd);
    assert_int_equal(ant_rmtree_at(dfd, "top"), 0);
    assert_int_equal(faccessat(dfd, "top", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(faccessat(dfd, "outside/keep", F_OK, 0), 0);
    assert_int_equal(ant_rmtree_at(dfd, "top"), -ENOENT);
    /* a symlink as the name itself: the link goes, not what it points at */
    assert_int_equal(symlinkat(target, dfd, "top"), 0);
    assert_int_equal(ant_rmtree_at(dfd, "top"), 0);
    assert_int_equal(faccessat(dfd, "outside/keep", F_OK, 0), 0);
    ant_close(dfd);
    test_rmtree(dir);
    free(dir);
}

/* The temporary takes the name, in the folder or a subfolder, over an older file; a missing
 * temporary or folder is the rename's error; a folder name past PATH_MAX is refused first. */
static void test_rename_durable(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char buf[8], cwd[PATH_MAX];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkdirat(dfd, "sub", 0700), 0);
    assert_int_equal(ant_write_new_file(dfd, "old", 0600, "old", 3), 0);
    assert_int_equal(ant_write_new_file(dfd, ".tmp1", 0600, "new", 3), 0);
    assert_int_equal(ant_rename_durable(-1, dfd, ".tmp1", "old"), 0);
    int fd = openat(dfd, "old", O_RDONLY | O_CLOEXEC);
    assert_int_equal(ant_read_full(fd, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "new", 3);
    ant_close(fd);
    assert_int_equal(faccessat(dfd, ".tmp1", F_OK, 0), -1);
    fd = openat(dfd, ".tmp2", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* not synced yet */
    assert_true(fd >= 0);
    assert_int_equal(ant_write_all(fd, "abc", 3), 0);
    assert_int_equal(ant_rename_durable(fd, dfd, ".tmp2", "sub/f"), 0);
    ant_close(fd);
    assert_int_equal(faccessat(dfd, "sub/f", F_OK, 0), 0);
    /* relative to the working folder */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(fchdir(dfd), 0);
    assert_int_equal(ant_write_new_file(AT_FDCWD, ".tmp3", 0600, "x", 1), 0);
    assert_int_equal(ant_rename_durable(-1, AT_FDCWD, ".tmp3", "here"), 0);
    assert_int_equal(ant_write_new_file(AT_FDCWD, "sub/.tmp4", 0600, "y", 1), 0);
    assert_int_equal(ant_rename_durable(-1, AT_FDCWD, "sub/.tmp4", "sub/there"), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(faccessat(dfd, "here", F_OK, 0), 0);
    assert_int_equal(faccessat(dfd, "sub/there", F_OK, 0), 0);
    assert_int_equal(ant_rename_durable(-1, dfd, ".none", "x"), -ENOENT);
    assert_int_equal(ant_rename_durable(-1, dfd, "here", "nodir/x"), -ENOENT);
    char *longname = malloc(PATH_MAX + 8);
    assert_non_null(longname);
    memset(longname, 'a', PATH_MAX + 6);
    longname[PATH_MAX + 5] = '/';
    longname[PATH_MAX + 7] = '\0';
    assert_int_equal(ant_rename_durable(-1, dfd, "here", longname), -ENAMETOOLONG);
    assert_int_equal(faccessat(dfd, "here", F_OK, 0), 0); /* nothing done */
    free(longname);
    ant_close(dfd);
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_refuses_growth_past_max),
        cmocka_unit_test(test_buf_printf_and_take),
        cmocka_unit_test(test_rd_refuses_every_overrun),
        cmocka_unit_test(test_rd_big_endian),
        cmocka_unit_test(test_parse_u64_bounds),
        cmocka_unit_test(test_parse_size_and_duration),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_b64_decode_alphabet_only),
        cmocka_unit_test(test_date_is_valid),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_json_cut_to_text),
        cmocka_unit_test(test_open_regular),
        cmocka_unit_test(test_rename_durable),
        cmocka_unit_test(test_rmtree_any_depth_never_follows_links),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
