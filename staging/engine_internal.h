/* Shared by the files of the staging engine: the job run, its files, chunk slots, I/O
 * operations, the event queue and the backends' ops table. Only the run's own thread (the
 * "control thread") touches run, sfile and slot state; pool threads get a task, do it, and
 * hand it back through the run's event queue. */
#ifndef ANT_STAGING_ENGINE_INTERNAL_H
#define ANT_STAGING_ENGINE_INTERNAL_H

#include <linux/openat2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "staging/engine.h"

#define C4GH_SEG 65536u
#define C4GH_SEG_OVERHEAD 28u
#define C4GH_SEG_ENC (C4GH_SEG + C4GH_SEG_OVERHEAD)
/* A Crypt4GH header is read into one chunk buffer; a longer one is refused. */
#define STAGE_HDR_READ_MAX (256u * 1024u)
/* O_DIRECT output: offsets, lengths and buffers aligned to this (a multiple of every DIO
 * alignment statx reports on the filesystems we meet); only for outputs of at least
 * STAGE_DIRECT_MIN bytes (a small file's page-cache copy costs less than waiting for the
 * device on each write). */
#define STAGE_DIRECT_ALIGN 4096u
#define STAGE_DIRECT_MIN (1024u * 1024u)

struct run;
struct sfile;
struct slot;

/* A completion handed to the control thread. */
enum ev_kind {
    EV_IO,       /* an io_op finished (threads backend) */
    EV_XFORM,    /* a chunk's transform finished */
    EV_HASH,     /* a chunk was hashed */
    EV_HDR,      /* a file's header task finished */
    EV_SYNC,     /* the sync thread's syncfs of a checkpoint batch finished */
};

struct ev {
    struct ev *next;
    enum ev_kind kind;
    void *obj;
    int rc;
};

/* A mutex-protected FIFO of events (also the task queue of the pools). */
struct evq {
    pthread_mutex_t m;
    pthread_cond_t c;
    struct ev *head, *tail;
    bool stop;
    int efd; /* eventfd poked on push, or -1 */
};

ANT_MUST_CHECK int evq_init(struct evq *q);
void evq_fini(struct evq *q);
void evq_push(struct evq *q, struct ev *e);
/* Everything queued, oldest first; NULL when empty. */
struct ev *evq_take_all(struct evq *q);
/* Waits up to timeout_ms for events; returns them (oldest first) or NULL. */
struct ev *evq_wait_all(struct evq *q, int timeout_ms);
/* For pool threads: one item, waiting while empty; NULL once stopped. */
struct ev *evq_pop(struct evq *q);
void evq_stop(struct evq *q);

enum op_kind {
    OP_OPEN,  /* openat2(dirfd, path, oflags, mode), confined */
    OP_READ,
    OP_WRITE,
    OP_FSYNC,
    OP_DATASYNC, /* fdatasync: a resume mark's prefix */
    OP_CLOSE,
};

struct io_op {
    struct ev ev; /* threads backend: queue link and completion */
    enum op_kind kind;
    struct sfile *f;
    struct slot *s; /* chunk I/O; NULL for a file's own ops */
    int fd;
    int dirfd;
    const char *path;
    int oflags;
    unsigned mode;
    uint8_t *buf;
    size_t len;    /* bytes still to move */
    uint64_t off;  /* where the next byte goes */
    int buf_index; /* registered buffer, or -1 */
    struct open_how how; /* io_uring reads it at submission */
    int res;
};

/* Runs an op with plain syscalls (threads backend, and ring ops the kernel lacks). Returns
 * the syscall's result: an fd, a byte count (one call, may be short), 0 or -errno. */
int op_exec_sync(struct io_op *op);

/* The backend's ops table (STYLE.md §7): chosen once per engine. */
struct backend_ops {
    const char *name;
    ANT_MUST_CHECK int (*start)(struct run *r);
    /* Queues an op; it completes later through run_op_done(). */
    ANT_MUST_CHECK int (*submit)(struct run *r, struct io_op *op);
    /* Sends queued ops, waits up to timeout_ms for completions and delivers them (and pool
     * events) to the run. Returns 0 or -errno for a broken backend. */
    ANT_MUST_CHECK int (*reap)(struct run *r, int timeout_ms);
    void (*stop)(struct run *r);
};

extern const struct backend_ops g_ant_uring_ops;
extern const struct backend_ops g_ant_threads_ops;
/* Probes for a ring at engine start-up: 0 or the -errno io_uring_queue_init gave. */
ANT_MUST_CHECK int uring_probe(unsigned depth);

/* The engine: options and the chosen backend. Immutable after ant_engine_new. */
struct ant_engine {
    struct ant_engine_opts o;
    const struct backend_ops *be;
};

enum file_state {
    F_OPENING,
    F_HEADER,  /* reading / transforming / writing the Crypt4GH header */
    F_BODY,
    F_CLOSING,
    F_DONE,
};

/* Per-file Crypt4GH state, owned by xform.c. */
struct xform_state;

struct sfile {
    struct sfile *next; /* run's active list */
    size_t index;
    const struct ant_stage_file *spec;
    enum file_state state;
    int err;            /* first failure; the file stops issuing work */
    char errmsg[200];
    int srcfd, tmpfd;      /* tmpfd: the output being written */
    char tmpname[24];      /* its name in .J.tmp, when via_tmp */
    bool via_tmp;          /* written in .J.tmp and renamed (a re-copy), else in place */
    bool out_created;      /* an output may exist that a failure must remove */
    bool direct;           /* output written with O_DIRECT, preallocated to out_alloc bytes */
    bool direct_in;        /* source read with O_DIRECT: whole blocks, cut at src_size */
    uint64_t out_alloc;    /* preallocated: out_size rounded up to STAGE_DIRECT_ALIGN, cut
                              back at the end; 0 if not */
    /* A direct reencrypt: the output is cut into chunks at whole multiples of out_chunk (not
     * at the body's start), so every write is aligned; chunk 0 carries the new header's
     * `lead` bytes followed by the body's first out_chunk - lead bytes, chunk c > 0 the body
     * from c * out_chunk - lead. The body is read straight to its place in the buffer. 0 for
     * every other file (chunks follow the body). */
    size_t lead;
    unsigned busy;      /* ops and tasks outstanding */
    /* Resume inside the file (ant_stage_file.resume_at): the header task checks the output's
     * prefix of resume_at bytes and hashes it (resume_ok), or empties the output (not ok);
     * resume_rc < 0 if even that failed; resume_stopped if a cancel or stop cut it short (the
     * output untouched). Once ok, chunks follow the kept prefix: in_skip source body bytes and
     * out_skip output body bytes are not copied again. */
    uint64_t resume_at;
    bool resume_ok, resume_stopped;
    int resume_rc;
    uint64_t in_skip, out_skip;
    /* The output holds a prefix a reported mark covers: an interrupted run keeps it. */
    bool keep_out;
    bool interrupted; /* stopped by job->stop: dropped quietly (not a failure) */
    bool draining;    /* job->stop: no more reads; the chunks in flight finish, then a mark */
    /* Marks (ant_stage_job.on_mark): every mark_every bytes of written prefix (0: none), one
     * fdatasync (op_mark) at a time; mark_last is the last prefix reported durable. */
    uint64_t mark_every, mark_last, mark_pending;
    bool marking;
    uint64_t src_size;
    uint64_t in_body_off;  /* where the body starts in the source */
    uint64_t in_body_len;
    uint64_t out_body_off; /* where it starts in the output */
    uint64_t out_size;     /* expected bytes written */
    size_t in_chunk;       /* source bytes per chunk */
    size_t out_chunk;
    uint64_t nchunks, next_read, next_hash, chunks_done;
    bool hdr_written;
    struct slot *ready;    /* transformed, waiting for their turn to be hashed */
    bool hashing;
    EVP_MD_CTX *md;      /* the checked digest (see ant_stage_file_result) */
    EVP_MD_CTX *md_body; /* encrypt: the new body's */
    uint8_t sha[ANT_SHA256_LEN];
    uint8_t sha_body[ANT_SHA256_LEN];
    uint64_t bytes_done;
    uint8_t *hdr_out;      /* header to write (encrypt, reencrypt) */
    size_t hdr_out_len;
    struct slot *hdr_slot; /* holds the source header while it is parsed */
    /* A small file read whole with its header: the header task also transformed and hashed
     * its only chunk (in hdr_slot), with these results. */
    bool whole_done;
    int whole_xrc, whole_hrc;
    struct xform_state *xs;
    struct io_op op_open_src, op_open_tmp, op_hdr, op_fsync, op_close_src, op_close_tmp, op_mark;
    struct ev ev_hdr;
};

struct slot {
    struct slot *next;   /* free list / file's ready list */
    unsigned idx;
    uint8_t *in, *out;   /* out == in when the transform leaves bytes alone */
    struct sfile *f;
    uint64_t chunk;
    size_t in_len, out_len;
    bool written, hashed, xformed;
    unsigned busy;
    struct io_op op;
    struct ev ev_x, ev_h;
};

/* A durable-pending finished file: reported to on_file after the next sync. */
struct ckpt {
    size_t index;
    uint64_t bytes;
    bool has_body;
    uint8_t sha[ANT_SHA256_LEN];
    uint8_t sha_body[ANT_SHA256_LEN];
};

struct run {
    struct ant_engine *e;
    const struct ant_stage_job *job;
    const struct backend_ops *be;
    void *be_state;
    struct evq evq;      /* completions to the control thread */
    struct evq cq;       /* crypto / hash tasks */
    pthread_t *cthreads;
    unsigned ncthreads;
    struct slot *slots;
    struct slot *free_slots;
    unsigned nslots, nfree;
    uint8_t *bufmem;
    size_t bufsize;      /* each of in / out */
    size_t plain_chunk;  /* chunk_segments * 64 KiB */
    int partial_fd, tmp_fd;
    struct sfile *active;
    unsigned nactive;
    size_t next_file;
    size_t nended;       /* files done or failed */
    int first_err;
    struct ant_diag *d;
    struct ckpt *ck;     /* finished files waiting for a sync (the batch being filled) */
    size_t nck;
    uint64_t ck_bytes;
    /* The batch a syncfs on the sync thread is making durable, reported when it returns: the
     * control thread goes on copying meanwhile. One sync at a time; admission pauses while
     * the next batch is full and one is still running (bounds both arrays). */
    struct ckpt *ck_sync;
    size_t nck_sync;
    size_t ck_cap;
    bool syncing;
    struct evq sq;       /* sync requests */
    pthread_t sync_thread;
    bool sync_thread_on;
    struct ev ev_sync;
    /* Outputs are created on a thread of their own, one after the other: creates in one
     * folder all take its lock, and several io-wq or I/O-pool workers creating at once spun
     * on it (rwsem_spin_on_owner, 6 % of the small-file run's samples on 2 cores). */
    struct evq oq;       /* OP_OPEN of outputs */
    pthread_t open_thread;
    bool open_thread_on;
    uint64_t total_bytes;
    bool cancelled;
    bool stopping;       /* job->stop seen */
    size_t ninterrupted; /* files dropped or drained because of it */
    char lastdir[ANT_STAGE_PATH_MAX + 1];
    size_t lastdir_len;
    bool have_lastdir;
    int dio;             /* O_DIRECT on the destination: 0 not probed, 1 usable, -1 not */
    int dio_src;         /* ... on the source */
};

/* Delivered by backends: an op finished with `res` (fd, bytes, 0 or -errno). */
void run_op_done(struct run *r, struct io_op *op, int res);
/* Delivered by backends for events from the pools. */
void run_event(struct run *r, struct ev *ev);

/* path.c */
ANT_MUST_CHECK int stage_name_check(const char *name);
/* The confined open for kernels without openat2 (a validated path, each component opened
 * with O_NOFOLLOW); ant_stage_openat uses it on -ENOSYS. Returns the fd or -errno. */
ANT_MUST_CHECK int stage_walk_open(int rootfd, const char *path, int flags, unsigned mode);
/* Creates the folders of path[0..len) under rootfd (confined); 0 if they exist. */
ANT_MUST_CHECK int stage_mkdirs(int rootfd, const char *path, size_t len);
/* Opens an output under rootfd (confined as ant_stage_openat) for writing: a fresh regular file
 * with one link (whatever had the name is unlinked first, then O_CREAT | O_EXCL), or with
 * `keep` the file as it is if it is a regular file with one link (else a fresh one). Returns
 * the fd (O_WRONLY, O_RDWR with `keep`) or -errno: -EEXIST when something took the name again
 * between the unlink and the create, -ELOOP / -ENOTDIR for a symlink or file in the way. */
ANT_MUST_CHECK int stage_output_open(int rootfd, const char *path, bool keep, unsigned mode);

/* xform.c: the transforms, run on pool threads. */
ANT_MUST_CHECK int xform_check_job(const struct ant_stage_job *job, enum ant_xform x);
/* Header step (pool thread): reads the source header from in[0..len), fills f->in_body_off,
 * f->in_body_len, f->hdr_out, f->out_body_off, f->out_size, chunk sizes and f->xs. */
ANT_MUST_CHECK int xform_header(const struct run *r, struct sfile *f, const uint8_t *in,
                                size_t len);
/* A pool thread's own transform context (its AEAD context), made on first use. */
struct ant_c4gh_cipher;
struct xform_tls {
    struct ant_c4gh_cipher *cipher;
};
void xform_tls_fini(struct xform_tls *t);
/* Body chunk (pool thread): chunk `c` of f from in[0..in_len) to out[0..outcap); *out_len set. */
ANT_MUST_CHECK int xform_chunk(struct xform_tls *t, const struct sfile *f, uint64_t c,
                               const uint8_t *in, size_t in_len, uint8_t *out, size_t outcap,
                               size_t *out_len);
/* Where chunk c's output starts in the written file. */
uint64_t xform_out_off(const struct sfile *f, uint64_t c);
/* Whether every chunk but the last writes exactly out_chunk bytes, each right after the one
 * before: false for a decrypt with an edit list, whose chunks keep any number of bytes. */
bool xform_out_contiguous(const struct sfile *f);
/* Where chunk c's source bytes start in the body, and where they go in its buffer (the
 * header's length for chunk 0 of a shifted reencrypt, else 0). */
uint64_t chunk_body_start(const struct sfile *f, uint64_t c);
size_t chunk_lead(const struct sfile *f, uint64_t c);
void xform_state_free(struct xform_state *xs);
/* Length of the Crypt4GH header at the start of p[0..len) (-EBADMSG if it is not one or does
 * not fit; -ENOTSUP without Crypt4GH support). */
ANT_MUST_CHECK int xform_header_len(const uint8_t *p, size_t len, uint64_t *hdr_len);
bool xform_has_header(enum ant_xform x);
/* Whether f's copy may continue from a prefix an earlier run wrote: raw, reencrypt, and
 * decrypt without an edit list (its output offsets follow from the plaintext's). */
bool xform_resumable(const struct sfile *f);
bool xform_changes_bytes(enum ant_xform x);

#endif
