/* Logical paths from users and the confined opens that use them. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "staging/engine_internal.h"

int ant_stage_path_check(struct ant_bytes path)
{
    size_t comp_len = 0;
    size_t depth = 1;
    if (path.p == NULL || path.len == 0 || path.len > ANT_STAGE_PATH_MAX) {
        return -EINVAL;
    }
    for (size_t i = 0; i <= path.len; i++) {
        if (i == path.len || path.p[i] == '/') {
            const uint8_t *c = path.p + (i - comp_len);
            /* an empty component means a leading '/' (absolute), "//" or a trailing '/' */
            if (comp_len == 0 || comp_len > ANT_STAGE_NAME_MAX ||
                (comp_len == 1 && c[0] == '.') ||
                (comp_len == 2 && c[0] == '.' && c[1] == '.')) {
                return -EINVAL;
            }
            if (i < path.len && ++depth > ANT_STAGE_DEPTH_MAX) {
                return -EINVAL;
            }
            comp_len = 0;
            continue;
        }
        /* NUL would cut the path short in the kernel; control bytes forge log lines and
         * terminal output */
        if (path.p[i] < 0x20 || path.p[i] == 0x7f) {
            return -EINVAL;
        }
        comp_len++;
    }
    return 0;
}

int stage_name_check(const char *name)
{
    struct ant_bytes b = ant_bytes_str(name);
    if (ant_stage_path_check(b) < 0 || memchr(b.p, '/', b.len) != NULL || b.p[0] == '.') {
        return -EINVAL;
    }
    return 0;
}

/* The component walk for kernels before 5.6: every component but the last is opened as a
 * directory with O_NOFOLLOW, so neither a symlink nor ".." (refused by the validator) can
 * lead out of rootfd. */
int stage_walk_open(int rootfd, const char *path, int flags, unsigned mode)
{
    char comp[ANT_STAGE_NAME_MAX + 1];
    int dfd = -1;
    int rc;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        int cur = dfd < 0 ? rootfd : dfd;
        if (slash == NULL) {
            rc = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
            rc = rc < 0 ? -errno : rc;
            break;
        }
        size_t n = (size_t)(slash - p);
        memcpy(comp, p, n);
        comp[n] = '\0';
        int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            rc = -errno;
            break;
        }
        ant_close(dfd);
        dfd = next;
        p = slash + 1;
    }
    ant_close(dfd);
    return rc;
}

int ant_stage_openat(int rootfd, const char *path, int flags, unsigned mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    if (ant_stage_path_check(ant_bytes_str(path)) < 0) {
        return -EINVAL;
    }
    long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd >= 0) {
        return (int)fd;
    }
    if (errno != ENOSYS) {
        return -errno;
    }
    return stage_walk_open(rootfd, path, flags, mode);
}

int stage_mkdirs(int rootfd, const char *path, size_t len)
{
    char buf[ANT_STAGE_PATH_MAX + 1];
    int rc = 0;
    if (len == 0) {
        return 0;
    }
    if (len > ANT_STAGE_PATH_MAX) {
        return -EINVAL;
    }
    memcpy(buf, path, len);
    buf[len] = '\0';
    /* Fast path: the folder exists already (most files of a job share folders). */
    int fd = ant_stage_openat(rootfd, buf, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0) {
        ant_close(fd);
        return 0;
    }
    for (size_t i = 0; i <= len && rc == 0; i++) {
        if (i < len && buf[i] != '/') {
            continue;
        }
        buf[i] = '\0';
        /* mkdirat() takes no RESOLVE flags: open the confined parent, then make one name */
        char *slash = strrchr(buf, '/');
        int pfd = -1;
        const char *leaf = buf;
        if (slash != NULL) {
            *slash = '\0';
            pfd = ant_stage_openat(rootfd, buf, O_PATH | O_DIRECTORY, 0);
            *slash = '/';
            leaf = slash + 1;
            if (pfd < 0) {
                rc = pfd;
            }
        }
        if (rc == 0 && mkdirat(pfd < 0 ? rootfd : pfd, leaf, 0755) < 0 && errno != EEXIST) {
            rc = -errno;
        }
        ant_close(pfd);
        if (i < len) {
            buf[i] = '/';
        }
    }
    if (rc == 0) {
        /* EEXIST may have been a symlink or a file: confirm a real folder is there */
        fd = ant_stage_openat(rootfd, buf, O_PATH | O_DIRECTORY, 0);
        rc = fd < 0 ? fd : 0;
        ant_close(fd);
    }
    return rc;
}

/* Scratch is shared with the job's users, who can put anything under an output's name between
 * or during runs: a FIFO (an O_WRONLY open waits for a reader forever, and the job with it), a
 * hard link to a file outside the job (O_TRUNC and every write would go into that file, and a
 * copy would outlive the purge there), a symlink (refused by RESOLVE_NO_SYMLINKS anyway). So a
 * new output is always a new inode: the name is unlinked and created with O_EXCL; a name planted
 * again in between fails the file with -EEXIST instead of being written through. */
int stage_output_open(int rootfd, const char *path, bool keep, unsigned mode)
{
    char parent[ANT_STAGE_PATH_MAX + 1];
    const char *leaf = path;
    int pfd = -1, fd = -1;
    struct stat st;
    if (ant_stage_path_check(ant_bytes_str(path)) < 0) {
        return -EINVAL;
    }
    if (keep) {
        /* O_NONBLOCK: opening a FIFO must not wait (O_RDWR would not, but say so) */
        fd = ant_stage_openat(rootfd, path, O_RDWR | O_CREAT | O_NONBLOCK, mode);
        if (fd < 0) {
            return fd;
        }
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            fcntl(fd, F_SETFL, 0) == 0) {
            return fd;
        }
        ant_close(fd); /* not ours to write to: replaced by a new, empty file below */
        fd = -1;
    }
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t n = (size_t)(slash - path);
        memcpy(parent, path, n);
        parent[n] = '\0';
        leaf = slash + 1;
        pfd = ant_stage_openat(rootfd, parent, O_PATH | O_DIRECTORY, 0);
        if (pfd < 0) {
            return pfd;
        }
    }
    int dfd = pfd >= 0 ? pfd : rootfd;
    /* a folder there stays (EISDIR), and the create below says -EEXIST */
    (void)unlinkat(dfd, leaf, 0);
    fd = ant_stage_openat(dfd, leaf, (keep ? O_RDWR : O_WRONLY) | O_CREAT | O_EXCL, mode);
    ant_close(pfd);
    return fd;
}
