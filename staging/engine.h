/* The staging engine: copies a list of files from a source root to a destination root, each
 * with a transform (raw copy, Crypt4GH decrypt / reencrypt / encrypt), many files and many
 * chunks in flight, at disk speed (DESIGN.md §7, STYLE.md §7).
 *
 * Backends: io_uring (open, read, write, close in the ring, registered buffers) or a pool of
 * pread/pwrite threads, chosen once by ant_engine_new(). Crypto and SHA-256 run on a pool of
 * worker threads, never on the I/O thread.
 *
 * Visibility and durability (docs/staging.md): a job named J writes into <dst>/.J.partial/,
 * which no reader uses: each file is written in place under its logical path there (a re-copy
 * of a checkpointed file goes through <dst>/.J.tmp/<n> and a rename, so that a name once
 * reported done never holds a partial copy), and removed if it fails. Completed files are made
 * durable in batches (syncfs), and only then reported to on_file (a checkpoint a restarted job
 * may trust; a file not yet reported is copied again from its start, except a big one whose
 * durable prefix was reported to on_mark: it continues from there). When every file is done,
 * .J.partial is renamed to J and <dst> is fsynced: J appears complete and durable or not at
 * all. Every path under a root is opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) (an O_NOFOLLOW walk on kernels without openat2).
 *
 * Threads: an engine may be shared; each ant_engine_run() call is independent and runs its
 * own ring and pools, so several jobs may run at once from different threads. Callbacks run
 * on the thread that called ant_engine_run(). */
#ifndef ANT_STAGING_ENGINE_H
#define ANT_STAGING_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/base/base.h"
#include "crypto/keys.h"

/* Logical paths: at most this many bytes, each component at most ANT_STAGE_NAME_MAX. */
#define ANT_STAGE_PATH_MAX 4095
#define ANT_STAGE_NAME_MAX 255
#define ANT_STAGE_DEPTH_MAX 64
#define ANT_SHA256_LEN 32

enum ant_io_engine {
    ANT_IO_ENGINE_AUTO = 0, /* io_uring when a ring sets up, else threads (logged) */
    ANT_IO_ENGINE_URING,    /* io_uring or fail with the ring's error */
    ANT_IO_ENGINE_THREADS,  /* pread/pwrite thread pool */
};

enum ant_xform {
    ANT_XFORM_RAW = 0,   /* byte copy */
    ANT_XFORM_DECRYPT,   /* Crypt4GH file (for job->key) -> plaintext */
    ANT_XFORM_REENCRYPT, /* Crypt4GH file -> new header for job->recipient_pk, body unchanged */
    ANT_XFORM_ENCRYPT,   /* plaintext -> Crypt4GH for job->recipient_pk */
};

/* "auto" | "uring" | "threads"; -EINVAL otherwise. */
ANT_MUST_CHECK int ant_io_engine_parse(const char *s, enum ant_io_engine *out);
/* "raw" | "decrypt" | "reencrypt" | "encrypt"; -EINVAL otherwise. */
ANT_MUST_CHECK int ant_xform_parse(const char *s, enum ant_xform *out);
const char *ant_xform_name(enum ant_xform x);
/* False for the Crypt4GH transforms in a build without crypto/c4gh.c (jobs then fail with
 * -ENOTSUP). */
bool ant_xform_is_available(enum ant_xform x);

struct ant_engine_opts {
    enum ant_io_engine io_engine;
    unsigned queue_depth;      /* ring entries; 0: 256 */
    unsigned nbufs;            /* chunk buffers per job (bounds memory); 0: 32 */
    unsigned chunk_segments;   /* chunk = this many 64 KiB Crypt4GH segments; 0: 8 */
    unsigned max_open_files;   /* files in flight per job; 0: 64 */
    unsigned crypto_threads;   /* 0: online CPUs */
    unsigned io_threads;       /* threads backend workers; 0: 8 */
    bool fsync_each;           /* fsync every file before its rename, not syncfs in batches */
    uint64_t checkpoint_bytes; /* make finished files durable after this many bytes; 0: 1 GiB */
    unsigned checkpoint_files; /* ... or this many files; 0: 1000 */
    /* Big outputs whose chunks land on aligned offsets (raw, decrypt without an edit list, and
     * reencrypt: its chunk 0 holds the new header and the body's first bytes) are written with
     * O_DIRECT into a preallocated file, and sources whose reads all start on a block (raw, one
     * chunk read whole, or reencrypt when the two headers differ by whole blocks) are read with
     * O_DIRECT, where the filesystem supports it (a page-cache copy less each); true: always
     * through the page cache. */
    bool buffered_only;
    /* Resume inside a file (docs/staging.md, "Resume"): an output of at least resume_min bytes
     * whose transform can restart mid-file (raw, decrypt without an edit list, reencrypt) and
     * whose digest is checked (has_sha256) has its written prefix made durable (fdatasync)
     * about every resume_every bytes, but at most ANT_RESUME_MARKS_MAX times per file, and each
     * durable prefix length reported to on_mark. 0: 1 GiB each; UINT64_MAX resume_min: never. */
    uint64_t resume_min;
    uint64_t resume_every;
};
#define ANT_RESUME_MARKS_MAX 64
void ant_engine_opts_init(struct ant_engine_opts *o);

struct ant_engine;

/* Chooses the backend. The environment variable ANTENNA_IO_ENGINE=threads|uring|auto
 * overrides o->io_engine. With auto, a ring that cannot be set up (-ENOSYS, -EPERM, ...) is
 * logged as engine.fallback and the threads backend is used. Errors: -EINVAL bad options or
 * environment value, -ENOSYS/-EPERM/-ENOMEM when io_uring was demanded and does not set up. */
ANT_MUST_CHECK int ant_engine_new(const struct ant_engine_opts *o, struct ant_engine **out);
void ant_engine_free(struct ant_engine *e); /* accepts NULL */
/* "io_uring" or "threads". */
const char *ant_engine_backend(const struct ant_engine *e);

struct ant_stage_file {
    const char *src;       /* logical path under job->src_root */
    const char *dst;       /* logical path under the job folder */
    enum ant_xform xform;
    bool has_sha256;       /* compare the file's digest (see ant_stage_file_result) */
    uint8_t sha256[ANT_SHA256_LEN];
    bool done;             /* checkpointed by an earlier run: kept if present (and matching
                              sha256 when given), else copied again */
    /* Not done, but an earlier run reported (on_mark) that the first resume_at bytes of its
     * output were durable: continue from there when the output still holds them on whole
     * segments (the prefix is re-read into the digest; a file whose digest then does not
     * match is copied again from its start). Needs has_sha256; 0: from the start. */
    uint64_t resume_at;
};

/* Polled by any thread while a job runs; updated by the job's thread. */
struct ant_stage_progress {
    _Atomic uint64_t bytes_done; /* bytes written, all files */
    _Atomic uint64_t files_done; /* durable and reported */
    _Atomic uint64_t files_failed;
    _Atomic uint64_t files_direct; /* outputs written with O_DIRECT (see buffered_only) */
    _Atomic uint64_t files_direct_read; /* sources read with O_DIRECT */
    _Atomic uint64_t files_resumed;     /* continued from their resume_at */
    _Atomic uint64_t bytes_resumed;     /* the prefixes those kept (counted in bytes_done) */
    _Atomic uint64_t files_resume_failed; /* resume_at refused, or the resumed copy did not
                                             match its digest: copied from the start */
};

/* The digest a file is checked against (ant_stage_file.sha256) and reported with is the
 * catalog's: raw, the file; decrypt, the plaintext written; encrypt, the plaintext read;
 * reencrypt, the encrypted body (unchanged; the new header differs on every run). */
struct ant_stage_file_result {
    size_t index;      /* into job->files */
    int rc;            /* 0, or negative errno */
    uint64_t bytes;    /* bytes written */
    uint8_t sha256[ANT_SHA256_LEN]; /* the checked digest (above), when rc == 0 */
    const char *msg;   /* what went wrong, for a user: names the file; valid during the call */
    bool has_sha256_body;               /* encrypt, reencrypt: */
    uint8_t sha256_body[ANT_SHA256_LEN]; /* SHA-256 of the written body (after the header) */
};

struct ant_stage_job {
    const char *name;  /* the job folder under dst_root: one path component, no leading '.' */
    int src_root;      /* directory fds, borrowed for the call */
    int dst_root;
    const struct ant_stage_file *files;
    size_t nfiles;
    const struct ant_key *key;     /* decrypt, reencrypt: the key the sources are for */
    const uint8_t *recipient_pk;   /* reencrypt, encrypt: 32-byte X25519 public key */
    /* A file finished: rc == 0 only once it is durable (a checkpoint), rc < 0 on failure. */
    void (*on_file)(void *arg, const struct ant_stage_file_result *r);
    /* Bytes written so far, for file index and in total (called after every chunk). */
    void (*on_progress)(void *arg, size_t index, uint64_t file_bytes, uint64_t total_bytes);
    /* The first `bytes` bytes of file index's output are durable (fdatasync returned): a later
     * run may pass them as resume_at. 0: an earlier mark of the file no longer holds (its
     * output was emptied to copy it again). Optional. */
    void (*on_mark)(void *arg, size_t index, uint64_t bytes);
    void *cb_arg;
    struct ant_stage_progress *progress; /* optional */
    const atomic_bool *cancel;           /* optional: set from any thread to stop */
    /* Optional: set from any thread to interrupt the run and keep what a later run can use
     * (a daemon stopping): nothing more is admitted, big files that record marks finish the
     * chunks in flight and record their written prefix, other unfinished files are dropped,
     * finished files are made durable and reported. cancel takes precedence. */
    const atomic_bool *stop;
};

/* Runs a job to completion on the calling thread. Returns 0 when every file succeeded and
 * <dst>/<name> is visible and durable. On cancellation returns -ECANCELED and removes
 * .<name>.partial and .<name>.tmp. Interrupted by job->stop, returns -EINTR and keeps
 * .<name>.partial (files reported done, and prefixes reported to on_mark) for a later run.
 * When files failed (each reported to on_file with its code and message) returns the first
 * failure's code and keeps .<name>.partial with the completed files, so that a later run with
 * their `done` flags set resumes (ant_engine_discard() drops them instead); nothing is left
 * under a failed file's name. Other errors: -EINVAL bad job,
 * logical path, or two files with one destination (diag names it); -EEXIST <name> already
 * exists; -ENOKEY a key or recipient is missing for a transform; -ENOTSUP a Crypt4GH
 * transform in a build without it; -errno from the filesystem. */
ANT_MUST_CHECK int ant_engine_run(struct ant_engine *e, const struct ant_stage_job *job,
                                  struct ant_diag *d);

/* Removes what a failed or interrupted run of job `name` left under dst_root (.<name>.partial
 * with its checkpointed files, .<name>.tmp), for a job that is given up. The published
 * <name> is not touched. 0 (also when there was nothing), -EINVAL bad name, -errno. */
ANT_MUST_CHECK int ant_engine_discard(int dst_root, const char *name);

/* 0 if `path` is an acceptable logical path: 1..ANT_STAGE_PATH_MAX bytes, relative, no NUL
 * or control bytes, no empty, "." or ".." component, components of at most
 * ANT_STAGE_NAME_MAX bytes, at most ANT_STAGE_DEPTH_MAX deep. -EINVAL otherwise. */
ANT_MUST_CHECK int ant_stage_path_check(struct ant_bytes path);

/* openat2(rootfd, path, flags, mode) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS; on kernels
 * without openat2 (-ENOSYS), walks the components with O_NOFOLLOW. `path` must pass
 * ant_stage_path_check. Returns the fd or -errno (-ELOOP / -EXDEV for symlinks or escapes). */
ANT_MUST_CHECK int ant_stage_openat(int rootfd, const char *path, int flags, unsigned mode);

#endif
