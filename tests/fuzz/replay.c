/* main() for fuzz targets in the normal (gcc) build: replays every file of the corpus folders
 * given on the command line through LLVMFuzzerTestOneInput, so sanitizers see each sample. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    size_t len = (size_t)st.st_size;
    /* exact-size heap copy, so ASan sees a one-byte over-read */
    uint8_t *buf = malloc(len ? len : 1);
    size_t got = 0;
    while (buf != NULL && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (buf == NULL) {
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 1;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            int rc = replay_file(dirfd(d), e->d_name);
            if (rc < 0) {
                closedir(d);
                return 1;
            }
            total += rc;
        }
        closedir(d);
    }
    printf("replayed %d inputs\n", total);
    return total > 0 ? 0 : 1;
}
