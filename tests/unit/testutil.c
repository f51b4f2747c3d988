#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint8_t *test_memdup(const void *p, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    assert_non_null(c);
    if (len > 0) {
        memcpy(c, p, len);
    }
    return c;
}

uint8_t *test_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_msg("cannot open %s", path);
    }
    struct ant_buf b = ANT_BUF_INIT(1u << 30);
    int rc = ant_read_all(fd, &b);
    close(fd);
    assert_int_equal(rc, 0);
    size_t n = b.len;
    uint8_t *p = ant_buf_take(&b, len);
    if (p == NULL) {
        p = malloc(1);
        *len = n;
    }
    return p;
}

const char *test_vector_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("ANT_VECTORS");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/vectors/c4gh", name);
    return path;
}

char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/antenna-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

void test_rmtree(const char *path)
{
    char cmd[4200];
    if (path == NULL || strncmp(path, "/tmp/antenna-test-", 18) != 0) {
        return;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", path);
    }
}
