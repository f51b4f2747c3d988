/* stage_bench: stages every regular file under SRC into DST/JOB with one transform and prints
 * one JSON line with the time (durability included: the engine syncs before it publishes).
 *
 *   stage_bench [-e auto|uring|threads] [-x raw|decrypt|reencrypt|encrypt] [-k SECKEY]
 *               [-p RECIPIENT.pub] [-s SEGMENTS] [-b NBUFS] [-f MAXFILES] [-c CRYPTO_THREADS]
 *               [-B] SRC DST JOB
 *
 * -B: no O_DIRECT output (ant_engine_opts.buffered_only), for before / after comparisons.
 * -D: sync and drop the page, dentry and inode caches after listing SRC (root only), so that
 *     the timed run finds the sources' metadata as cold as the tools do (the listing is not
 *     timed: a stage job gets its file list from the catalog, not from walking the archive).
 *
 * SECKEY's passphrase comes from C4GH_PASSPHRASE when the key is encrypted. Used by
 * tests/bench/stage_bench.sh; not a test. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/base/log.h"
#include "staging/engine.h"

struct list {
    char **names;
    size_t n, cap;
    size_t skip; /* length of "SRC/" */
};

static struct list g_ant_list;

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type != FTW_F) {
        return 0;
    }
    if (g_ant_list.n == g_ant_list.cap) {
        size_t cap = g_ant_list.cap ? 2 * g_ant_list.cap : 1024;
        char **p = realloc(g_ant_list.names, cap * sizeof(*p));
        if (p == NULL) {
            return -1;
        }
        g_ant_list.names = p;
        g_ant_list.cap = cap;
    }
    g_ant_list.names[g_ant_list.n] = strdup(path + g_ant_list.skip);
    return g_ant_list.names[g_ant_list.n++] == NULL ? -1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: stage_bench [-e engine] [-x xform] [-k seckey] [-p recipient.pub] "
                    "[-s segments] [-b nbufs] [-f maxfiles] [-c crypto_threads] [-t io_threads] [-B] [-D] "
                    "SRC DST JOB\n");
    exit(2);
}

/* sync, then drop clean pages, dentries and inodes */
static int drop_caches(void)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = write(fd, "3", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

static unsigned num(const char *s)
{
    uint64_t v = 0;
    if (ant_parse_u64(ant_bytes_str(s), 1, 65536, &v) < 0) {
        usage();
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    struct ant_engine_opts o;
    struct ant_engine *e = NULL;
    struct ant_key *key = NULL;
    uint8_t pk[ANT_KEY_LEN];
    bool have_pk = false;
    enum ant_xform x = ANT_XFORM_RAW;
    struct ant_diag d = {{0}};
    struct ant_stage_progress prog = {0};
    bool drop = false;
    int c, rc = 1;
    ant_engine_opts_init(&o);
    while ((c = getopt(argc, argv, "e:x:k:p:s:b:f:c:t:BD")) != -1) {
        switch (c) {
        case 'e':
            if (ant_io_engine_parse(optarg, &o.io_engine) < 0) {
                usage();
            }
            break;
        case 'x':
            if (ant_xform_parse(optarg, &x) < 0) {
                usage();
            }
            break;
        case 'k':
            if (ant_key_load(AT_FDCWD, optarg, getenv("C4GH_PASSPHRASE"), &key, &d) < 0) {
                fprintf(stderr, "stage_bench: %s: %s\n", optarg, ant_diag_msg(&d, "bad key"));
                return 1;
            }
            break;
        case 'p':
            if (ant_pubkey_load(AT_FDCWD, optarg, pk, &d) < 0) {
                fprintf(stderr, "stage_bench: %s: %s\n", optarg, ant_diag_msg(&d, "bad key"));
                return 1;
            }
            have_pk = true;
            break;
        case 's':
            o.chunk_segments = num(optarg);
            break;
        case 'b':
            o.nbufs = num(optarg);
            break;
        case 'f':
            o.max_open_files = num(optarg);
            break;
        case 't':
            o.io_threads = num(optarg);
            break;
        case 'c':
            o.crypto_threads = num(optarg);
            break;
        case 'B':
            o.buffered_only = true;
            break;
        case 'D':
            drop = true;
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 3) {
        usage();
    }
    const char *src = argv[optind], *dst = argv[optind + 1], *name = argv[optind + 2];
    g_ant_list.skip = strlen(src) + 1;
    if (nftw(src, collect, 64, FTW_PHYS) != 0) {
        perror("stage_bench: walk");
        return 1;
    }
    struct ant_stage_file *files = calloc(g_ant_list.n ? g_ant_list.n : 1, sizeof(*files));
    int sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (files == NULL || sfd < 0 || dfd < 0) {
        perror("stage_bench");
        return 1;
    }
    uint64_t total_in = 0;
    for (size_t i = 0; i < g_ant_list.n; i++) {
        struct stat st;
        files[i].src = files[i].dst = g_ant_list.names[i];
        files[i].xform = x;
        if (fstatat(sfd, files[i].src, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            total_in += (uint64_t)st.st_size;
        }
    }
    if (drop && drop_caches() < 0) {
        perror("stage_bench: drop_caches");
        goto out;
    }
    if (ant_engine_new(&o, &e) < 0) {
        fprintf(stderr, "stage_bench: engine did not start\n");
        goto out;
    }
    struct ant_stage_job job = {
        .name = name, .src_root = sfd, .dst_root = dfd, .files = files,
        .nfiles = g_ant_list.n, .key = key, .recipient_pk = have_pk ? pk : NULL,
        .progress = &prog,
    };
    int64_t t0 = ant_mono_ns();
    rc = ant_engine_run(e, &job, &d);
    double s = (double)(ant_mono_ns() - t0) / 1e9;
    printf("{\"backend\":\"%s\",\"xform\":\"%s\",\"files\":%zu,\"bytes_in\":%llu,"
           "\"bytes_out\":%llu,\"seconds\":%.3f,\"MBps_in\":%.1f,\"rc\":%d}\n",
           ant_engine_backend(e), ant_xform_name(x), g_ant_list.n,
           (unsigned long long)total_in, (unsigned long long)atomic_load(&prog.bytes_done), s,
           s > 0 ? (double)total_in / 1e6 / s : 0.0, rc);
    if (rc < 0) {
        fprintf(stderr, "stage_bench: %s\n", ant_diag_msg(&d, strerror(-rc)));
    }
    rc = rc < 0 ? 1 : 0;
out:
    ant_engine_free(e);
    ant_key_free(key);
    for (size_t i = 0; i < g_ant_list.n; i++) {
        free(g_ant_list.names[i]);
    }
    free(g_ant_list.names);
    free(files);
    close(sfd);
    close(dfd);
    return rc;
}
