/* The control thread of a staging job: admits files, hands chunks to the I/O backend and the
 * crypto pool, hashes in order, publishes finished files and, at the end, the job folder.
 *
 * Life of a file: open the source and its output together (the output under its logical path
 * inside <dst>/.J.partial, or <dst>/.J.tmp/<n> for a re-copy of a checkpointed file);
 * (Crypt4GH) read the source header into a chunk buffer and parse or build the header on a
 * pool thread, write the new header; then for each chunk: read -> transform (pool) -> write,
 * and, strictly in chunk order, SHA-256 (pool); when all chunks are written and hashed, compare
 * the digest, close both files (fsync first with fsync_each), rename a temp file into place,
 * and queue a checkpoint that is reported once a syncfs made it durable. A failed file's
 * output is removed. A big file's written prefix is made durable (fdatasync) now and then and
 * reported as a resume mark; a later run continues such a file after its mark (resume_check,
 * docs/staging.md "Resume inside a file"). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "crypto/base/log.h"
#include "staging/engine_internal.h"

#define REAP_TIMEOUT_MS 100
/* The job_id member of a run's log lines. */
#define JOB_FIELDS(r) ((const char *const[]){"job_id", (r)->job->name, NULL})

/* --- options and the engine --- */

void ant_engine_opts_init(struct ant_engine_opts *o)
{
    memset(o, 0, sizeof(*o));
}

int ant_io_engine_parse(const char *s, enum ant_io_engine *out)
{
    if (s == NULL) {
        return -EINVAL;
    }
    if (strcmp(s, "auto") == 0) {
        *out = ANT_IO_ENGINE_AUTO;
    } else if (strcmp(s, "uring") == 0 || strcmp(s, "io_uring") == 0) {
        *out = ANT_IO_ENGINE_URING;
    } else if (strcmp(s, "threads") == 0) {
        *out = ANT_IO_ENGINE_THREADS;
    } else {
        return -EINVAL;
    }
    return 0;
}

static const char *const g_ant_xform_names[] = {"raw", "decrypt", "reencrypt", "encrypt"};

int ant_xform_parse(const char *s, enum ant_xform *out)
{
    for (size_t i = 0; s != NULL && i < ANT_ARRAY_LEN(g_ant_xform_names); i++) {
        if (strcmp(s, g_ant_xform_names[i]) == 0) {
            *out = (enum ant_xform)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *ant_xform_name(enum ant_xform x)
{
    return (unsigned)x < ANT_ARRAY_LEN(g_ant_xform_names) ? g_ant_xform_names[x] : "?";
}

int ant_engine_new(const struct ant_engine_opts *o, struct ant_engine **out)
{
    struct ant_engine *e = calloc(1, sizeof(*e));
    const char *env = getenv("ANTENNA_IO_ENGINE");
    int rc = 0;
    if (e == NULL) {
        return -ENOMEM;
    }
    if (o != NULL) {
        e->o = *o;
    }
    if (env != NULL && *env != '\0' && ant_io_engine_parse(env, &e->o.io_engine) < 0) {
        ant_log(ANT_LOG_ERROR, "engine.config",
                "ANTENNA_IO_ENGINE=%s: expected auto, uring or threads", env);
        rc = -EINVAL;
        goto out;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    e->o.queue_depth = e->o.queue_depth ? e->o.queue_depth : 256;
    e->o.nbufs = e->o.nbufs ? e->o.nbufs : 32;
    e->o.chunk_segments = e->o.chunk_segments ? e->o.chunk_segments : 8;
    e->o.max_open_files = e->o.max_open_files ? e->o.max_open_files : 64;
    e->o.crypto_threads = e->o.crypto_threads ? e->o.crypto_threads : (ncpu > 0 ? (unsigned)ncpu : 2);
    e->o.io_threads = e->o.io_threads ? e->o.io_threads : 8;
    e->o.checkpoint_bytes = e->o.checkpoint_bytes ? e->o.checkpoint_bytes : (1ull << 30);
    e->o.checkpoint_files = e->o.checkpoint_files ? e->o.checkpoint_files : 1000;
    e->o.resume_min = e->o.resume_min ? e->o.resume_min : (1ull << 30);
    e->o.resume_every = e->o.resume_every ? e->o.resume_every : (1ull << 30);
    /* a chunk must fit an io_uring length (unsigned) and stay a sane memory unit */
    if (e->o.chunk_segments > 64 || e->o.nbufs > 4096 || e->o.queue_depth > 32768 ||
        e->o.crypto_threads > 256 || e->o.io_threads > 256 || e->o.max_open_files > 65536) {
        rc = -EINVAL;
        goto out;
    }
    if (e->o.io_engine == ANT_IO_ENGINE_THREADS) {
        e->be = &g_ant_threads_ops;
    } else {
        rc = uring_probe(e->o.queue_depth);
        if (rc == 0) {
            e->be = &g_ant_uring_ops;
        } else if (e->o.io_engine == ANT_IO_ENGINE_AUTO) {
            ant_log(ANT_LOG_WARN, "engine.fallback",
                    "io_uring unavailable (%s), using %u pread/pwrite threads", strerror(-rc),
                    e->o.io_threads);
            e->be = &g_ant_threads_ops;
            rc = 0;
        } else {
            ant_log(ANT_LOG_ERROR, "engine.uring_failed", "io_uring demanded but unavailable (%s)",
                    strerror(-rc));
            goto out;
        }
    }
    ant_log(ANT_LOG_DEBUG, "engine.start", "backend %s", e->be->name);
    *out = e;
    e = NULL;
out:
    free(e);
    return rc;
}

void ant_engine_free(struct ant_engine *e)
{
    free(e);
}

const char *ant_engine_backend(const struct ant_engine *e)
{
    return e->be->name;
}

/* --- slots --- */

static struct slot *slot_get(struct run *r, struct sfile *f)
{
    struct slot *s = r->free_slots;
    if (s == NULL) {
        return NULL;
    }
    r->free_slots = s->next;
    r->nfree--;
    s->next = NULL;
    s->f = f;
    s->written = s->hashed = s->xformed = false;
    s->busy = 0;
    return s;
}

static void ready_remove(struct sfile *f, struct slot *s)
{
    for (struct slot **pp = &f->ready; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            s->next = NULL;
            return;
        }
    }
}

/* Returns a slot to the free list; a second call for a slot already free (a failing file
 * releases its idle slots early) does nothing. */
static void slot_put(struct run *r, struct slot *s)
{
    if (s->f == NULL) {
        return;
    }
    ready_remove(s->f, s);
    s->f = NULL;
    s->next = r->free_slots;
    r->free_slots = s;
    r->nfree++;
}

/* --- submitting work --- */

static void task_push(struct run *r, struct sfile *f, struct slot *s, struct ev *ev,
                      enum ev_kind kind, void *obj)
{
    ev->kind = kind;
    ev->obj = obj;
    ev->rc = 0;
    f->busy++;
    if (s != NULL) {
        s->busy++;
    }
    evq_push(&r->cq, ev);
}

static void file_fail(struct run *r, struct sfile *f, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *io_what(int rc);
static void progress(struct run *r, struct sfile *f, uint64_t n);
static void file_restart(struct run *r, struct sfile *f);

static void op_submit(struct run *r, struct io_op *op)
{
    int rc = r->be->submit(r, op);
    if (rc < 0) {
        file_fail(r, op->f, rc, "%s: could not queue I/O: %s", op->f->spec->dst, strerror(-rc));
        return;
    }
    op->f->busy++;
    if (op->s != NULL) {
        op->s->busy++;
    }
}

static void op_io(struct io_op *op, struct sfile *f, struct slot *s, enum op_kind kind, int fd,
                  uint8_t *buf, size_t len, uint64_t off, int buf_index)
{
    op->kind = kind;
    op->f = f;
    op->s = s;
    op->fd = fd;
    op->buf = buf;
    op->len = len;
    op->off = off;
    op->buf_index = buf_index;
}

/* --- ending a file --- */

static void file_unlink(struct run *r, struct sfile *f)
{
    for (struct sfile **pp = &r->active; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    r->nactive--;
    r->nended++;
}

static void file_free(struct sfile *f)
{
    if (f == NULL) {
        return;
    }
    EVP_MD_CTX_free(f->md);
    EVP_MD_CTX_free(f->md_body);
    free(f->hdr_out);
    xform_state_free(f->xs);
    free(f);
}

static void report(struct run *r, size_t index, int rc, uint64_t bytes, const uint8_t *sha,
                   const uint8_t *sha_body, const char *msg)
{
    const struct ant_stage_job *job = r->job;
    struct ant_stage_file_result res = {.index = index, .rc = rc, .bytes = bytes, .msg = msg};
    if (sha != NULL) {
        memcpy(res.sha256, sha, ANT_SHA256_LEN);
    }
    if (sha_body != NULL) {
        res.has_sha256_body = true;
        memcpy(res.sha256_body, sha_body, ANT_SHA256_LEN);
    }
    if (job->progress != NULL) {
        atomic_fetch_add(rc == 0 ? &job->progress->files_done : &job->progress->files_failed, 1);
    }
    if (job->on_file != NULL) {
        job->on_file(job->cb_arg, &res);
    }
}

static int open_parent(struct run *r, const char *path, const char **leaf);

/* Removes what a failed file wrote: its temp file, or (written in place) the file under its
 * logical name inside .J.partial, which is not visible to anyone until the job is published. */
static void output_remove(struct run *r, struct sfile *f)
{
    const char *leaf = f->tmpname;
    int dfd = -1;
    if (!f->out_created) {
        return;
    }
    if (f->via_tmp) {
        dfd = fcntl(r->tmp_fd, F_DUPFD_CLOEXEC, 0);
    } else {
        dfd = open_parent(r, f->spec->dst, &leaf);
    }
    if (dfd < 0 || (unlinkat(dfd, leaf, 0) < 0 && errno != ENOENT)) {
        ant_log_kv(ANT_LOG_WARN, "engine.cleanup", JOB_FIELDS(r), "could not remove the partial copy of %s: %s",
                   f->spec->dst, strerror(dfd < 0 ? -dfd : errno));
    }
    ant_close(dfd);
    f->out_created = false;
}

/* Called when a failed file has nothing outstanding: closes, removes the temp file, reports. */
static void file_end_failed(struct run *r, struct sfile *f)
{
    while (f->ready != NULL) {
        slot_put(r, f->ready);
    }
    if (f->hdr_slot != NULL) {
        slot_put(r, f->hdr_slot);
        f->hdr_slot = NULL;
    }
    ant_close(f->srcfd);
    ant_close(f->tmpfd);
    f->srcfd = f->tmpfd = -1;
    if (f->interrupted && f->keep_out) {
        f->out_created = false; /* a reported mark covers its prefix: a later run goes on */
    }
    output_remove(r, f);
    if (f->interrupted) {
        r->ninterrupted++;
    } else if (f->err != -ECANCELED) {
        ant_log_kv(ANT_LOG_WARN, "engine.file_failed", JOB_FIELDS(r), "%s", f->errmsg);
        if (r->first_err == 0) {
            r->first_err = f->err;
            ant_diag_set(r->d, "%s", f->errmsg);
        }
        report(r, f->index, f->err, f->bytes_done, NULL, NULL, f->errmsg);
    }
    file_unlink(r, f);
    file_free(f);
}

/* Records the file's first failure; it stops issuing work and ends once idle. */
static void file_fail(struct run *r, struct sfile *f, int rc, const char *fmt, ...)
{
    if (f->err == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->errmsg, sizeof(f->errmsg), fmt, ap);
        va_end(ap);
        f->err = rc;
    }
    /* Never frees f (callers go on reading it): a handler whose completion leaves the file
     * idle ends it, and sweep_failed() catches the rest. Slots waiting only for their hash
     * turn hold nothing in flight: free them now. */
    for (struct slot *s = f->ready, *next; s != NULL; s = next) {
        next = s->next;
        if (s->busy == 0) {
            slot_put(r, s);
        }
    }
}

/* Ends the failed files that have nothing in flight. */
static void sweep_failed(struct run *r)
{
    for (struct sfile *f = r->active, *next; f != NULL; f = next) {
        next = f->next;
        if (f->err != 0 && f->busy == 0) {
            file_end_failed(r, f);
        }
    }
}

/* Reports a batch of finished files: done when its sync succeeded (rc == 0), else failed. */
static void ck_report(struct run *r, const struct ckpt *ck, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++) {
        const struct ckpt *c = &ck[i];
        if (rc < 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s: could not make the staged copy durable: %s",
                     r->job->files[c->index].dst, strerror(-rc));
            if (r->first_err == 0) {
                r->first_err = rc;
                ant_diag_set(r->d, "%s", msg);
            }
            report(r, c->index, rc, c->bytes, NULL, NULL, msg);
        } else {
            report(r, c->index, 0, c->bytes, c->sha, c->has_body ? c->sha_body : NULL, NULL);
        }
    }
}

/* Makes completed files durable on this thread and reports them: the checkpoint a restarted
 * job trusts. Only with no asynchronous sync running (the end of a run, fsync_each). */
static int ck_flush(struct run *r, bool sync)
{
    int rc = 0;
    if (sync && syncfs(r->partial_fd) < 0) {
        rc = -errno;
    }
    ck_report(r, r->ck, r->nck, rc);
    r->nck = 0;
    r->ck_bytes = 0;
    return rc;
}

static void *sync_main(void *arg)
{
    struct run *r = arg;
    struct ev *ev;
    while ((ev = evq_pop(&r->sq)) != NULL) {
        ev->rc = syncfs(r->partial_fd) < 0 ? -errno : 0;
        evq_push(&r->evq, ev);
    }
    return NULL;
}

/* The output creator (see struct run.oq): runs each open with a plain syscall and hands the
 * op back as a completion, as the threads backend does. */
static void *open_main(void *arg)
{
    struct run *r = arg;
    struct ev *ev;
    while ((ev = evq_pop(&r->oq)) != NULL) {
        struct io_op *op = ev->obj;
        int res;
        do {
            res = stage_output_open(op->dirfd, op->path, op->oflags == O_RDWR, op->mode);
        } while (res == -EINTR);
        op->res = res;
        evq_push(&r->evq, ev);
    }
    return NULL;
}

static void open_submit(struct run *r, struct io_op *op)
{
    op->ev.kind = EV_IO;
    op->ev.obj = op;
    op->f->busy++;
    evq_push(&r->oq, &op->ev);
}

static bool ck_full(const struct run *r)
{
    return r->nck >= r->e->o.checkpoint_files || r->ck_bytes >= r->e->o.checkpoint_bytes;
}

/* Hands the filled batch to the sync thread (a syncfs blocks for the disk's writeback: ~20 ms
 * per 1000 small files, time the control thread now spends copying). The syncfs starts after
 * every file of the batch was closed, so a reported file is durable. */
static int ck_start_sync(struct run *r)
{
    if (!r->sync_thread_on) {
        int rc = -pthread_create(&r->sync_thread, NULL, sync_main, r);
        if (rc < 0) {
            return ck_flush(r, true); /* no thread: sync here, as before */
        }
        r->sync_thread_on = true;
    }
    struct ckpt *t = r->ck_sync;
    r->ck_sync = r->ck;
    r->nck_sync = r->nck;
    r->ck = t;
    r->nck = 0;
    r->ck_bytes = 0;
    r->syncing = true;
    r->ev_sync = (struct ev){.kind = EV_SYNC};
    evq_push(&r->sq, &r->ev_sync);
    return 0;
}

/* The sync thread's syncfs returned: report its batch, start the next one if it is full. */
static void ck_synced(struct run *r, int rc)
{
    r->syncing = false;
    /* a cancelled job's output is removed: nothing of it is reported done */
    if (!r->cancelled) {
        ck_report(r, r->ck_sync, r->nck_sync, rc);
    }
    r->nck_sync = 0;
    if (ck_full(r)) {
        (void)ck_start_sync(r);
    }
}

/* Admission waits while the batch being filled is full and the previous one still syncs. */
static bool ck_room(const struct run *r)
{
    return !(r->syncing && r->nck >= r->e->o.checkpoint_files);
}

static int ck_add(struct run *r, const struct sfile *f)
{
    struct ckpt *c = &r->ck[r->nck];
    c->index = f->index;
    c->bytes = f->bytes_done;
    memcpy(c->sha, f->sha, ANT_SHA256_LEN);
    c->has_body = f->spec->xform == ANT_XFORM_ENCRYPT || f->spec->xform == ANT_XFORM_REENCRYPT;
    memcpy(c->sha_body, f->sha_body, ANT_SHA256_LEN);
    uint64_t bytes = f->bytes_done;
    r->nck++;
    r->ck_bytes += bytes;
    if (r->e->o.fsync_each) {
        return ck_flush(r, false); /* each file was fsynced before its rename */
    }
    if (ck_full(r) && !r->syncing) {
        return ck_start_sync(r);
    }
    return 0;
}

/* The parent folder of a logical path inside the partial folder, confined; opened for
 * reading so that it can also be fsynced. */
static int open_parent(struct run *r, const char *path, const char **leaf)
{
    const char *slash = strrchr(path, '/');
    char buf[ANT_STAGE_PATH_MAX + 1];
    if (slash == NULL) {
        *leaf = path;
        int fd = fcntl(r->partial_fd, F_DUPFD_CLOEXEC, 0);
        return fd < 0 ? -errno : fd;
    }
    size_t n = (size_t)(slash - path);
    memcpy(buf, path, n);
    buf[n] = '\0';
    *leaf = slash + 1;
    return ant_stage_openat(r->partial_fd, buf, O_RDONLY | O_DIRECTORY, 0);
}

/* Both files are closed: move the temp file to its logical name and queue the checkpoint. */
static void file_publish(struct run *r, struct sfile *f)
{
    const char *leaf = NULL;
    int pfd = -1;
    int rc = 0;
    /* written in place: nothing to move; its name is durable with the next syncfs, or now
     * (fsync_each: the checkpoint is reported at once, so its directory entry must be durable) */
    if (f->via_tmp || r->e->o.fsync_each) {
        pfd = open_parent(r, f->spec->dst, &leaf);
        rc = pfd;
    }
    if (pfd >= 0 && f->via_tmp) {
        rc = renameat(r->tmp_fd, f->tmpname, pfd, leaf) < 0 ? -errno : 0;
    }
    if (pfd >= 0 && rc >= 0 && r->e->o.fsync_each) {
        rc = ant_fsync_dir(pfd);
    }
    ant_close(pfd);
    if (rc < 0) {
        file_fail(r, f, rc, "%s: could not move the finished file into place: %s", f->spec->dst,
                  strerror(-rc));
        return;
    }
    f->out_created = false; /* it is the finished copy now */
    rc = ck_add(r, f);
    (void)rc; /* a failed sync is reported per file and as the job's error */
    file_unlink(r, f);
    file_free(f);
}

static void file_close(struct run *r, struct sfile *f)
{
    f->state = F_CLOSING;
    op_io(&f->op_close_src, f, NULL, OP_CLOSE, f->srcfd, NULL, 0, 0, -1);
    f->srcfd = -1;
    op_submit(r, &f->op_close_src);
    op_io(&f->op_close_tmp, f, NULL, OP_CLOSE, f->tmpfd, NULL, 0, 0, -1);
    f->tmpfd = -1;
    op_submit(r, &f->op_close_tmp);
}

/* All chunks written and hashed (and the header): check the digest, then sync or close. */
static void file_body_done(struct run *r, struct sfile *f)
{
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(f->md, f->sha, &mdlen) != 1 || mdlen != ANT_SHA256_LEN ||
        (f->md_body != NULL && EVP_DigestFinal_ex(f->md_body, f->sha_body, NULL) != 1)) {
        file_fail(r, f, -ENOMEM, "%s: SHA-256 failed", f->spec->dst);
        return;
    }
    if (f->spec->xform == ANT_XFORM_REENCRYPT) {
        memcpy(f->sha_body, f->sha, ANT_SHA256_LEN); /* the checked digest is the body's */
    }
    if (f->bytes_done != f->out_size) {
        file_fail(r, f, -EIO, "%s: wrote %llu bytes, expected %llu", f->spec->dst,
                  (unsigned long long)f->bytes_done, (unsigned long long)f->out_size);
        return;
    }
    if (f->spec->has_sha256 && CRYPTO_memcmp(f->sha, f->spec->sha256, ANT_SHA256_LEN) != 0 &&
        f->out_skip > 0) {
        file_restart(r, f);
        return;
    }
    if (f->spec->has_sha256 && CRYPTO_memcmp(f->sha, f->spec->sha256, ANT_SHA256_LEN) != 0) {
        char got[2 * ANT_SHA256_LEN + 1];
        ant_hex_encode(f->sha, ANT_SHA256_LEN, got);
        file_fail(r, f, -EBADMSG,
                  "%s: checksum mismatch: the copy's SHA-256 is %s, not the expected value "
                  "(source %s changed or is corrupt)",
                  f->spec->dst, got, f->spec->src);
        return;
    }
    /* a preallocated output (direct: its last block written whole, padded) is cut to its
     * length */
    if (f->out_alloc > f->out_size && ftruncate(f->tmpfd, (off_t)f->out_size) < 0) {
        int e = errno;
        file_fail(r, f, -e, "%s: %s", f->spec->dst, io_what(-e));
        return;
    }
    if (r->e->o.fsync_each) {
        f->state = F_CLOSING;
        op_io(&f->op_fsync, f, NULL, OP_FSYNC, f->tmpfd, NULL, 0, 0, -1);
        op_submit(r, &f->op_fsync);
        return;
    }
    file_close(r, f);
}

static bool file_body_complete(const struct sfile *f)
{
    return f->state == F_BODY && f->chunks_done == f->nchunks &&
           (f->hdr_out == NULL || f->hdr_written) && f->busy == 0;
}

/* --- resume marks --- */

static void mark_report(struct run *r, const struct sfile *f, uint64_t bytes)
{
    if (r->job->on_mark != NULL) {
        r->job->on_mark(r->job->cb_arg, f->index, bytes);
    }
}

/* Whether f records marks, and how far apart: big files that a later run can continue
 * (xform_resumable) and check (has_sha256), at most ANT_RESUME_MARKS_MAX per file so that
 * their fdatasyncs stay a small cost beside the copy. 0: none. */
static uint64_t mark_interval(const struct run *r, const struct sfile *f)
{
    const struct ant_engine_opts *o = &r->e->o;
    if (r->job->on_mark == NULL || f->via_tmp || !f->spec->has_sha256 || !xform_resumable(f) ||
        f->out_size < o->resume_min || f->nchunks < 2) {
        return 0;
    }
    uint64_t floor = f->out_size / ANT_RESUME_MARKS_MAX;
    return o->resume_every > floor ? o->resume_every : floor;
}

/* Chunks [0, result) of f are written: the lowest chunk read and not yet written, else the
 * next to read (chunks are written out of order; a slot is held until its write is done). */
static uint64_t written_chunks(const struct run *r, const struct sfile *f)
{
    uint64_t c = f->next_read;
    for (unsigned i = 0; i < r->nslots; i++) {
        const struct slot *s = &r->slots[i];
        if (s->f == f && s != f->hdr_slot && !s->written && s->chunk < c) {
            c = s->chunk;
        }
    }
    return c;
}

/* After a write: once the written prefix has grown by mark_every since the last mark, make it
 * durable (an fdatasync beside the copy, which the other writes do not wait for) and report
 * it when that returns (mark_done). The file's end needs none: it is checkpointed. */
static void mark_maybe(struct run *r, struct sfile *f)
{
    if (f->mark_every == 0 || f->marking || f->draining || f->err != 0 ||
        (f->hdr_out != NULL && !f->hdr_written)) {
        return;
    }
    uint64_t c = written_chunks(r, f);
    if (c == 0 || c >= f->nchunks) {
        return;
    }
    uint64_t at = xform_out_off(f, c);
    if (at < f->mark_last + f->mark_every) {
        return;
    }
    f->marking = true;
    f->mark_pending = at;
    op_io(&f->op_mark, f, NULL, OP_DATASYNC, f->tmpfd, NULL, 0, 0, -1);
    op_submit(r, &f->op_mark);
}

static void mark_done(struct run *r, struct sfile *f)
{
    f->marking = false;
    f->mark_last = f->mark_pending;
    f->keep_out = true;
    ant_log_kv(ANT_LOG_DEBUG, "engine.resume_mark", JOB_FIELDS(r), "%s: %llu bytes durable",
               f->spec->dst, (unsigned long long)f->mark_last);
    mark_report(r, f, f->mark_last);
}

/* job->stop: a draining file has nothing in flight, so its chunks up to next_read are written.
 * That prefix is made durable and reported, and the file is dropped keeping its output. */
static void file_end_drained(struct run *r, struct sfile *f)
{
    uint64_t c = written_chunks(r, f);
    if (c > 0 && c < f->nchunks && (f->hdr_out == NULL || f->hdr_written) &&
        xform_out_off(f, c) > f->mark_last) {
        if (fdatasync(f->tmpfd) == 0) {
            f->mark_pending = xform_out_off(f, c);
            mark_done(r, f);
        } else {
            ant_log_kv(ANT_LOG_WARN, "engine.resume_mark", JOB_FIELDS(r),
                       "%s: could not make the copied prefix durable: %s", f->spec->dst,
                       strerror(errno));
        }
    }
    file_fail(r, f, -EINTR, "%s: interrupted", f->spec->dst);
    file_end_failed(r, f);
}

static void sweep_drained(struct run *r)
{
    for (struct sfile *f = r->active, *next; f != NULL; f = next) {
        next = f->next;
        if (f->draining && f->err == 0 && f->busy == 0 && f->state == F_BODY) {
            file_end_drained(r, f);
        }
    }
}

/* job->stop seen: nothing more is admitted; a file being copied that records marks finishes
 * its chunks in flight and records its written prefix (sweep_drained); any other unfinished
 * file is dropped, keeping its output only if a mark covers it; files closing finish. */
static void run_stop(struct run *r)
{
    r->stopping = true;
    for (struct sfile *f = r->active; f != NULL; f = f->next) {
        if (f->err != 0 || f->state == F_CLOSING || f->state == F_DONE) {
            continue;
        }
        f->interrupted = true;
        if (f->state == F_BODY && f->mark_every > 0) {
            f->draining = true;
        } else {
            file_fail(r, f, -EINTR, "%s: interrupted", f->spec->dst);
        }
    }
}

static bool run_stop_asked(const struct run *r)
{
    const struct ant_stage_job *job = r->job;
    return (job->cancel != NULL && atomic_load(job->cancel)) ||
           (job->stop != NULL && atomic_load(job->stop));
}

/* After the header task checked a resume_at prefix (resume_check): go on after it, or from the
 * start. False when the file failed or was interrupted meanwhile. */
static bool resume_settle(struct run *r, struct sfile *f)
{
    struct ant_stage_progress *p = r->job->progress;
    if (f->resume_stopped) {
        bool cancel = r->job->cancel != NULL && atomic_load(r->job->cancel);
        f->interrupted = !cancel;
        file_fail(r, f, cancel ? -ECANCELED : -EINTR, "%s: interrupted", f->spec->dst);
        return false;
    }
    if (f->resume_rc < 0) {
        file_fail(r, f, f->resume_rc, "%s: %s", f->spec->dst, io_what(f->resume_rc));
        return false;
    }
    if (!f->resume_ok) {
        ant_log_kv(ANT_LOG_INFO, "engine.resume_refused", JOB_FIELDS(r),
                   "%s: the partial copy does not hold the %llu bytes an earlier run recorded "
                   "(or they do not end on a segment): copying it from the start",
                   f->spec->dst, (unsigned long long)f->resume_at);
        if (p != NULL) {
            atomic_fetch_add(&p->files_resume_failed, 1);
        }
        f->keep_out = false;
        f->resume_at = 0;
        mark_report(r, f, 0);
        return true;
    }
    ant_log_kv(ANT_LOG_INFO, "engine.resume_offset", JOB_FIELDS(r),
               "%s: continuing at byte %llu of %llu, after the durable prefix an earlier run "
               "recorded (re-read into its SHA-256)",
               f->spec->dst, (unsigned long long)f->resume_at, (unsigned long long)f->out_size);
    if (p != NULL) {
        atomic_fetch_add(&p->files_resumed, 1);
        atomic_fetch_add(&p->bytes_resumed, f->resume_at);
    }
    f->hdr_written = true; /* reencrypt: the header the earlier run wrote stays */
    progress(r, f, f->resume_at);
    return true;
}

/* A resumed copy whose digest does not match: its kept prefix (or the source) is bad. The file
 * is copied again from its start in this run, as if it had never been resumed; a second
 * mismatch then fails it as usual. Called with nothing in flight. */
static void file_restart(struct run *r, struct sfile *f)
{
    ant_log_kv(ANT_LOG_WARN, "engine.resume_mismatch", JOB_FIELDS(r),
               "%s: the copy resumed at byte %llu does not match its checksum: copying it again "
               "from the start",
               f->spec->dst, (unsigned long long)(f->out_body_off + f->out_skip));
    if (r->job->progress != NULL) {
        atomic_fetch_add(&r->job->progress->files_resume_failed, 1);
    }
    f->keep_out = false;
    mark_report(r, f, 0);
    if (ftruncate(f->tmpfd, 0) < 0) {
        int e = errno;
        file_fail(r, f, -e, "%s: %s", f->spec->dst, io_what(-e));
        return;
    }
    if (EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
        file_fail(r, f, -ENOMEM, "%s: SHA-256 failed", f->spec->dst);
        return;
    }
    if (f->direct && f->spec->xform == ANT_XFORM_REENCRYPT) {
        /* its chunks now follow the new header, off the blocks: buffered writes */
        if (fcntl(f->tmpfd, F_SETFL, O_WRONLY) < 0) {
            int e = errno;
            file_fail(r, f, -e, "%s: %s", f->spec->dst, strerror(e));
            return;
        }
        f->direct = false;
    } else if (f->out_alloc > 0) {
        /* the cut dropped the preallocation (direct writes into it stay concurrent) */
        (void)fallocate(f->tmpfd, 0, 0, (off_t)f->out_alloc);
    }
    f->resume_at = f->in_skip = f->out_skip = 0;
    f->mark_last = 0;
    f->next_read = f->next_hash = f->chunks_done = 0;
    f->bytes_done = 0;
    f->nchunks = (f->in_body_len + f->in_chunk - 1) / f->in_chunk;
    f->hdr_written = f->hdr_out == NULL;
    if (f->hdr_out != NULL) {
        op_io(&f->op_hdr, f, NULL, OP_WRITE, f->tmpfd, f->hdr_out, f->hdr_out_len, 0, -1);
        op_submit(r, &f->op_hdr);
    }
}

/* --- events --- */

static void chunk_try_hash(struct run *r, struct sfile *f)
{
    if (f->hashing || f->err != 0) {
        return;
    }
    for (struct slot *s = f->ready; s != NULL; s = s->next) {
        if (s->chunk == f->next_hash) {
            ready_remove(f, s);
            f->hashing = true;
            task_push(r, f, s, &s->ev_h, EV_HASH, s);
            return;
        }
    }
}

static void progress(struct run *r, struct sfile *f, uint64_t n)
{
    f->bytes_done += n;
    r->total_bytes += n;
    if (r->job->progress != NULL) {
        atomic_fetch_add(&r->job->progress->bytes_done, n);
    }
    if (r->job->on_progress != NULL) {
        r->job->on_progress(r->job->cb_arg, f->index, f->bytes_done, r->total_bytes);
    }
}

static void slot_maybe_done(struct run *r, struct sfile *f, struct slot *s)
{
    if (f->err != 0) {
        if (s->busy == 0) {
            slot_put(r, s);
        }
        return;
    }
    if (s->written && s->hashed) {
        slot_put(r, s);
        f->chunks_done++;
    }
}

static void chunk_write_submit(struct run *r, struct sfile *f, struct slot *s)
{
    bool out = xform_changes_bytes(f->spec->xform);
    uint64_t off = xform_out_off(f, s->chunk);
    uint8_t *buf = out ? s->out : s->in;
    size_t len = s->out_len;
    if (f->direct && len % STAGE_DIRECT_ALIGN != 0) {
        /* the file's last chunk: O_DIRECT writes whole blocks, so it goes out padded with
         * zeros (never another file's bytes) into the preallocated tail, cut off at the end */
        size_t padded = (len + STAGE_DIRECT_ALIGN - 1) & ~(size_t)(STAGE_DIRECT_ALIGN - 1);
        memset(buf + len, 0, padded - len);
        len = padded;
    }
    op_io(&s->op, f, s, OP_WRITE, f->tmpfd, buf, len, off, (int)(2 * s->idx + (out ? 1 : 0)));
    op_submit(r, &s->op);
}

static void chunk_write(struct run *r, struct sfile *f, struct slot *s)
{
    chunk_write_submit(r, f, s);
    /* hashing may run beside the write: both only read the buffer */
    s->next = f->ready;
    f->ready = s;
    chunk_try_hash(r, f);
}

/* The source's only chunk is already in the header slot (a small file read whole): hand it
 * on as if chunk 0 had just been read, saving a second read of the same bytes. */
static bool header_slot_reuse(struct run *r, struct sfile *f, struct slot *s)
{
    if (f->nchunks != 1 || s->op.off != f->src_size || f->in_body_len > f->in_chunk ||
        f->in_skip > 0) {
        return false;
    }
    memmove(s->in, s->in + f->in_body_off, (size_t)f->in_body_len);
    s->chunk = 0;
    s->op.off = f->in_body_off + f->in_body_len; /* where chunk 0's read would have ended */
    f->next_read = 1;
    if (xform_changes_bytes(f->spec->xform)) {
        task_push(r, f, s, &s->ev_x, EV_XFORM, s);
    } else {
        s->xformed = true;
        s->out_len = (size_t)f->in_body_len;
        chunk_write(r, f, s);
    }
    return true;
}

/* Whether the destination supports O_DIRECT at our alignment, asked once per run: statx
 * reports no DIO alignment where the filesystem has no direct I/O (tmpfs, FUSE, ...). */
static bool dio_usable(const struct run *r, int fd, int *dio, const char *what)
{
    if (*dio == 0) {
        struct statx st;
        bool ok = statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) == 0 &&
                  (st.stx_mask & STATX_DIOALIGN) && st.stx_dio_mem_align != 0 &&
                  st.stx_dio_offset_align != 0 &&
                  STAGE_DIRECT_ALIGN % st.stx_dio_mem_align == 0 &&
                  STAGE_DIRECT_ALIGN % st.stx_dio_offset_align == 0;
        *dio = ok ? 1 : -1;
        if (!ok) {
            ant_log_kv(ANT_LOG_INFO, "engine.direct_unavailable", JOB_FIELDS(r),
                       "the %s has no usable O_DIRECT: its files go through the page cache",
                       what);
        }
    }
    return *dio > 0;
}

/* Switches a big output to O_DIRECT (no page-cache copy, no writeback on the 2nd core) when
 * every chunk lands on an aligned offset in a whole-block length but the last, and the
 * filesystem takes direct I/O. The file is preallocated to whole blocks first: a direct write
 * that extends a file runs synchronously under the inode lock on ext4, one at a time, while
 * writes into allocated blocks stay asynchronous and concurrent. Anything refused leaves the
 * file buffered (as before); only a full disk fails the file. Called before any body write. */
static void direct_setup(struct run *r, struct sfile *f)
{
    /* reencrypt copies the body behind a new header of any length: its chunks are cut
     * from the output's start instead (see sfile.lead), the header in the first one */
    bool resumed = f->out_skip > 0;
    bool shift = f->spec->xform == ANT_XFORM_REENCRYPT && f->hdr_out != NULL &&
                 f->in_chunk == f->out_chunk && f->hdr_out_len < f->out_chunk &&
                 f->out_body_off == f->hdr_out_len && !f->direct_in && !resumed;
    /* otherwise every chunk must start on a block: a resumed file's chunks follow its kept
     * prefix (and a resumed reencrypt writes no header: the earlier run's stays) */
    uint64_t out0 = xform_out_off(f, 0);
    if (r->e->o.buffered_only || f->out_size < STAGE_DIRECT_MIN ||
        f->out_chunk % STAGE_DIRECT_ALIGN != 0 ||
        (!shift && ((f->hdr_out != NULL && !resumed) || f->spec->xform == ANT_XFORM_ENCRYPT ||
                    out0 % STAGE_DIRECT_ALIGN != 0 || !xform_out_contiguous(f))) ||
        !dio_usable(r, f->tmpfd, &r->dio, "destination")) {
        return;
    }
    uint64_t alloc = (f->out_size + STAGE_DIRECT_ALIGN - 1) & ~(uint64_t)(STAGE_DIRECT_ALIGN - 1);
    if (fallocate(f->tmpfd, 0, 0, (off_t)alloc) < 0) {
        int e = errno;
        if (e == ENOSPC || e == EDQUOT) {
            file_fail(r, f, -e, "%s: %s", f->spec->dst, io_what(-e));
        }
        return; /* EOPNOTSUPP etc.: buffered writes, which allocate as they go */
    }
    /* from here the file is alloc bytes long: it is cut back to out_size at the end */
    f->out_alloc = alloc;
    if (fcntl(f->tmpfd, F_SETFL, O_WRONLY | O_DIRECT) < 0) {
        return; /* buffered; the preallocation only helps */
    }
    f->direct = true;
    if (shift) {
        f->lead = f->hdr_out_len;
        f->nchunks = (f->out_size + f->out_chunk - 1) / f->out_chunk;
        f->hdr_written = true; /* it goes out with chunk 0 */
        /* When the old header is at least as long as the new one and the difference is whole
         * blocks (the usual case: one recipient in, one out, 124 bytes each), every chunk's
         * source bytes start on a block too: chunk c is read from in_body_off - lead + c x
         * chunk, chunk 0's first lead bytes (the old header's tail) then overwritten by the
         * new header. The source is then read with O_DIRECT as well. */
        if (f->in_body_off >= f->lead && (f->in_body_off - f->lead) % STAGE_DIRECT_ALIGN == 0 &&
            dio_usable(r, f->srcfd, &r->dio_src, "source") &&
            fcntl(f->srcfd, F_SETFL, O_RDONLY | O_DIRECT) == 0) {
            f->direct_in = true;
            if (r->job->progress != NULL) {
                atomic_fetch_add(&r->job->progress->files_direct_read, 1);
            }
        }
    }
    if (r->job->progress != NULL) {
        atomic_fetch_add(&r->job->progress->files_direct, 1);
    }
}

static void xform_failed(struct run *r, struct sfile *f, const struct slot *s, int rc)
{
    file_fail(r, f, rc,
              rc == -EBADMSG ? "%s: Crypt4GH segment %llu failed authentication (MAC mismatch: "
                               "the archive file is damaged or was altered)%.0s"
                             : "%s: transform of chunk %llu failed: %s",
              f->spec->src, (unsigned long long)(chunk_body_start(f, s->chunk) / C4GH_SEG_ENC),
              strerror(-rc));
}

/* The header task also transformed and hashed the file's only chunk: write it. */
static void whole_chunk_done(struct run *r, struct sfile *f, struct slot *s)
{
    s->chunk = 0;
    f->next_read = 1;
    s->xformed = true;
    if (f->whole_xrc < 0 || f->whole_hrc < 0) {
        if (f->whole_xrc < 0) {
            xform_failed(r, f, s, f->whole_xrc);
        } else {
            file_fail(r, f, f->whole_hrc, "%s: SHA-256 failed", f->spec->dst);
        }
        slot_put(r, s);
        return;
    }
    s->hashed = true;
    f->next_hash = 1;
    chunk_write_submit(r, f, s);
}

static void header_done(struct run *r, struct sfile *f, int rc)
{
    struct slot *hs = f->hdr_slot;
    f->hdr_slot = NULL;
    if (rc < 0) {
        const char *what = rc == -ENOKEY ? "no header packet opens with the key (not encrypted "
                                           "for this site, or the header is damaged)"
                                         : "not a valid Crypt4GH file";
        if (hs != NULL) {
            slot_put(r, hs);
        }
        file_fail(r, f, rc, "%s: %s: %s", f->spec->src, what, strerror(-rc));
        return;
    }
    if (f->resume_at > 0 && !resume_settle(r, f)) {
        if (hs != NULL) {
            slot_put(r, hs);
        }
        return; /* idle: sweep_failed() ends it */
    }
    uint64_t left = f->in_body_len - f->in_skip;
    f->nchunks = f->in_chunk ? (left + f->in_chunk - 1) / f->in_chunk : 0;
    f->state = F_BODY;
    f->mark_every = mark_interval(r, f);
    f->mark_last = f->out_skip > 0 ? xform_out_off(f, 0) : 0;
    direct_setup(r, f);
    if (f->err != 0) {
        if (hs != NULL) {
            slot_put(r, hs);
        }
        return; /* idle: sweep_failed() ends it */
    }
    if (f->hdr_out != NULL && f->lead == 0 && !f->hdr_written) {
        /* the header is not hashed: a new one differs on every run (fresh nonces) */
        op_io(&f->op_hdr, f, NULL, OP_WRITE, f->tmpfd, f->hdr_out, f->hdr_out_len, 0, -1);
        op_submit(r, &f->op_hdr);
    }
    if (hs != NULL && f->whole_done) {
        whole_chunk_done(r, f, hs);
    } else if (hs != NULL && (f->err != 0 || !header_slot_reuse(r, f, hs))) {
        slot_put(r, hs);
    }
    if (file_body_complete(f)) {
        file_body_done(r, f);
    }
}

void run_event(struct run *r, struct ev *ev)
{
    struct slot *s = NULL;
    struct sfile *f;
    if (ev->kind == EV_IO) {
        struct io_op *op = ev->obj;
        run_op_done(r, op, op->res);
        return;
    }
    if (ev->kind == EV_SYNC) {
        ck_synced(r, ev->rc);
        return;
    }
    if (ev->kind == EV_HDR) {
        f = ev->obj;
        f->busy--;
        if (f->err != 0) {
            if (f->busy == 0) {
                file_end_failed(r, f);
            }
            return;
        }
        header_done(r, f, ev->rc);
        return;
    }
    s = ev->obj;
    f = s->f;
    f->busy--;
    s->busy--;
    if (ev->kind == EV_XFORM) {
        s->xformed = true;
        if (f->err == 0 && ev->rc < 0) {
            xform_failed(r, f, s, ev->rc);
        }
        if (f->err == 0) {
            chunk_write(r, f, s);
            return;
        }
    } else {
        s->hashed = true;
        f->hashing = false;
        f->next_hash++;
        if (f->err == 0 && ev->rc < 0) {
            file_fail(r, f, ev->rc, "%s: SHA-256 failed", f->spec->dst);
        }
        chunk_try_hash(r, f);
    }
    slot_maybe_done(r, f, s);
    if (f->err != 0) {
        if (f->busy == 0) {
            file_end_failed(r, f);
        }
        return;
    }
    if (file_body_complete(f)) {
        file_body_done(r, f);
    }
}

static const char *io_what(int rc)
{
    switch (rc) {
    case -ENOSPC:
        return "the destination is full (ENOSPC)";
    case -EDQUOT:
        return "the destination quota is exceeded (EDQUOT)";
    case -EIO:
        return "I/O error (EIO)";
    case -ENODATA:
        return "the source file shrank while it was being copied";
    default:
        return strerror(-rc);
    }
}

static void file_opened(struct run *r, struct sfile *f)
{
    struct stat st;
    if (fstat(f->srcfd, &st) < 0) {
        file_fail(r, f, -errno, "source %s: %s", f->spec->src, strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        file_fail(r, f, -EINVAL, "source %s is not a regular file", f->spec->src);
        return;
    }
    /* a stage-out's source is in scratch, which users write: one whose name became a second
     * link to a file elsewhere since the job was admitted (ant_jobs_submit_out) is not read */
    if (f->spec->xform == ANT_XFORM_ENCRYPT && st.st_nlink != 1) {
        file_fail(r, f, -EINVAL, "source %s has %lu hard links", f->spec->src,
                  (unsigned long)st.st_nlink);
        return;
    }
    f->src_size = (uint64_t)st.st_size;
    /* Read with O_DIRECT (no page cache to fill and copy from: the archive is read once)
     * where every read starts on a block: a raw copy's chunks, or a file of one chunk, read
     * whole with its header (no chunk is smaller than plain_chunk). Reads then ask for whole
     * blocks and are cut at src_size. Not for a Crypt4GH file read in several chunks: its
     * chunks start at header + n x 65564 bytes. */
    bool direct_in = !r->e->o.buffered_only && f->src_size > 0 &&
                     (f->spec->xform == ANT_XFORM_RAW ||
                      (f->src_size <= r->plain_chunk && f->resume_at == 0)) &&
                     dio_usable(r, f->srcfd, &r->dio_src, "source");
    /* O_NONBLOCK kept a FIFO from blocking the open; on a regular file it would make io_uring
     * answer -EAGAIN instead of waiting for the disk */
    if (direct_in && fcntl(f->srcfd, F_SETFL, O_RDONLY | O_DIRECT) == 0) {
        f->direct_in = true;
        if (r->job->progress != NULL) {
            atomic_fetch_add(&r->job->progress->files_direct_read, 1);
        }
    } else if (fcntl(f->srcfd, F_SETFL, O_RDONLY) < 0) {
        file_fail(r, f, -errno, "source %s: %s", f->spec->src, strerror(errno));
        return;
    }
    /* read front to back: a larger readahead window (advice only, errors do not matter); a
     * file read in one chunk needs none, and a syscall per small file adds up */
    if (f->src_size > r->bufsize) {
        (void)posix_fadvise(f->srcfd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (xform_has_header(f->spec->xform)) {
        f->state = F_HEADER; /* the scheduler reads the header when a buffer is free */
        return;
    }
    f->in_body_off = f->out_body_off = 0;
    f->in_body_len = f->out_size = f->src_size;
    f->in_chunk = f->out_chunk = r->plain_chunk;
    if (f->resume_at > 0) {
        /* the prefix check reads the output: on a pool thread (header_task) */
        f->state = F_HEADER;
        task_push(r, f, NULL, &f->ev_hdr, EV_HDR, f);
        return;
    }
    header_done(r, f, 0);
}

void run_op_done(struct run *r, struct io_op *op, int res)
{
    struct sfile *f = op->f;
    struct slot *s = op->s;
    f->busy--;
    if (s != NULL) {
        s->busy--;
    }
    if ((res == -EAGAIN || res == -EINTR) && f->err == 0) {
        op_submit(r, op);
        return;
    }
    if ((op->kind == OP_READ || op->kind == OP_WRITE) && res >= 0) {
        /* op->off ends where the op's bytes end: readers of the chunk length rely on it */
        size_t n = (size_t)res < op->len ? (size_t)res : op->len;
        op->buf += n;
        op->off += n;
        op->len -= n;
        if (op->kind == OP_READ && f->direct_in && n > 0 && op->off >= f->src_size) {
            /* a direct read asked for whole blocks: the file ends in the last one (bytes of
             * a file that grew since fstat are not copied, as with buffered reads) */
            op->off = f->src_size;
            op->len = 0;
        }
        if (op->len > 0 && (res == 0 || (op->kind == OP_READ && f->direct_in &&
                                          op->off % STAGE_DIRECT_ALIGN != 0))) {
            /* a read of 0 (or, direct, of a part block) before the end: the file shrank
             * since fstat */
            res = op->kind == OP_READ ? -ENODATA : -EIO;
        } else if (op->len > 0 && f->err == 0) {
            op_submit(r, op); /* short I/O: the rest */
            return;
        }
    }
    if (res < 0 && f->err == 0) {
        if (op == &f->op_open_src || (op->kind == OP_READ)) {
            const char *what = res == -ENOENT   ? "does not exist"
                               : res == -ELOOP  ? "is a symlink (refused)"
                               : res == -EXDEV  ? "escapes the source root (refused)"
                               : res == -EACCES ? "is not readable (permission denied)"
                                                : io_what(res);
            file_fail(r, f, res, "source %s: %s", f->spec->src, what);
        } else {
            file_fail(r, f, res, "%s: %s", f->spec->dst, io_what(res));
        }
    }
    if (op->kind == OP_OPEN && res >= 0) {
        if (op == &f->op_open_src) {
            f->srcfd = res;
        } else {
            f->tmpfd = res;
        }
    }
    if (f->err != 0) {
        if (s != NULL) {
            slot_maybe_done(r, f, s);
        }
        if (f->busy == 0) {
            file_end_failed(r, f);
        }
        return;
    }
    switch (f->state) {
    case F_OPENING:
        if (f->busy == 0) {
            file_opened(r, f);
        }
        return;
    case F_HEADER:
        /* the header bytes are in: parse / build the header on a pool thread */
        task_push(r, f, NULL, &f->ev_hdr, EV_HDR, f);
        return;
    case F_BODY:
        if (op == &f->op_hdr) {
            f->hdr_written = true;
            progress(r, f, f->hdr_out_len);
        } else if (op == &f->op_mark) {
            mark_done(r, f);
        } else if (op->kind == OP_READ) {
            if (xform_changes_bytes(f->spec->xform)) {
                task_push(r, f, s, &s->ev_x, EV_XFORM, s);
            } else {
                s->xformed = true;
                if (chunk_lead(f, s->chunk) != 0) {
                    /* a shifted reencrypt's chunk 0: the new header before the body */
                    memcpy(s->in, f->hdr_out, f->lead);
                }
                s->out_len = chunk_lead(f, s->chunk) +
                             (size_t)(op->off - (f->in_body_off + chunk_body_start(f, s->chunk)));
                chunk_write(r, f, s);
            }
            return;
        } else {
            s->written = true;
            progress(r, f, s->out_len);
            slot_maybe_done(r, f, s);
            mark_maybe(r, f);
        }
        if (file_body_complete(f)) {
            file_body_done(r, f);
        }
        return;
    case F_CLOSING:
        if (op == &f->op_fsync) {
            file_close(r, f);
        } else if (f->busy == 0) {
            file_publish(r, f);
        }
        return;
    case F_DONE:
        return;
    }
}

/* --- scheduling --- */

/* A direct read's length: whole blocks (the buffers hold them: bufsize is a multiple). */
static size_t direct_len(const struct run *r, size_t len)
{
    size_t n = (len + STAGE_DIRECT_ALIGN - 1) & ~(size_t)(STAGE_DIRECT_ALIGN - 1);
    return n < r->bufsize ? n : r->bufsize;
}

static void chunk_read(struct run *r, struct sfile *f, struct slot *s)
{
    uint64_t c = f->next_read++;
    uint64_t start = chunk_body_start(f, c);
    size_t lead = chunk_lead(f, c);
    uint64_t left = f->in_body_len - start;
    size_t len = left < f->in_chunk - lead ? (size_t)left : f->in_chunk - lead;
    /* a shifted reencrypt's chunk 0: the body is read behind the new header's place (the
     * header is put there once the read is done); read direct, from the block holding the
     * old header's last lead bytes (see direct_setup) */
    size_t skip = f->direct_in ? 0 : lead;
    len += lead - skip;
    if (f->direct_in) {
        len = direct_len(r, len);
    }
    s->chunk = c;
    op_io(&s->op, f, s, OP_READ, f->srcfd, s->in + skip, len,
          f->in_body_off + start - (lead - skip), (int)(2 * s->idx));
    op_submit(r, &s->op);
}

static void schedule(struct run *r)
{
    for (struct sfile *f = r->active, *next; f != NULL && r->nfree > 0; f = next) {
        next = f->next;
        if (f->err != 0) {
            continue;
        }
        if (f->state == F_HEADER && f->hdr_slot == NULL && f->busy == 0) {
            f->hdr_slot = slot_get(r, f);
            f->hdr_slot->op.off = 0; /* the header task reads this many bytes of the slot */
            size_t len = f->src_size < r->bufsize ? (size_t)f->src_size : r->bufsize;
            if (f->direct_in) {
                len = direct_len(r, len);
            }
            if (len == 0) {
                /* encrypt of an empty file still needs its header; decrypt needs bytes */
                task_push(r, f, NULL, &f->ev_hdr, EV_HDR, f);
                continue;
            }
            op_io(&f->hdr_slot->op, f, f->hdr_slot, OP_READ, f->srcfd, f->hdr_slot->in, len, 0,
                  (int)(2 * f->hdr_slot->idx));
            op_submit(r, &f->hdr_slot->op);
            continue;
        }
        while (f->state == F_BODY && f->err == 0 && !f->draining && f->next_read < f->nchunks &&
               r->nfree > 0) {
            chunk_read(r, f, slot_get(r, f));
        }
    }
}

/* A file checkpointed by an earlier run: kept if it is there and its digest (the checked one,
 * see ant_stage_file_result) matches. An encrypted copy's plaintext cannot be checked without
 * the recipient's key: it is kept if present, and *sha_known is false. */
static bool resume_verified(struct run *r, const struct ant_stage_file *spec, uint8_t sha[32],
                            bool *sha_known, uint64_t *bytes)
{
    enum { RESUME_BUF = 1u << 20 };
    /* O_NONBLOCK: a FIFO planted under the name in scratch must not hold the run (an
     * O_RDONLY open waits for a writer); it is not a regular file, so it is copied again */
    int fd = ant_stage_openat(r->partial_fd, spec->dst, O_RDONLY | O_NONBLOCK, 0);
    EVP_MD_CTX *md = NULL;
    /* not a chunk slot: those may be in flight for other files */
    uint8_t *buf = NULL;
    bool ok = false;
    struct stat st;
    uint64_t skip = 0;
    *sha_known = false;
    /* a second link: the name was replaced by a link to a file elsewhere, which is not ours */
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        goto out;
    }
    *bytes = (uint64_t)st.st_size;
    if (spec->xform == ANT_XFORM_ENCRYPT) {
        ok = true;
        goto out;
    }
    buf = malloc(RESUME_BUF);
    if (buf == NULL) {
        goto out;
    }
    if (spec->xform == ANT_XFORM_REENCRYPT) {
        /* the digest is the body's: skip the header */
        ssize_t n = ant_pread_full(fd, buf, RESUME_BUF, 0);
        if (n < 0 || xform_header_len(buf, (size_t)n, &skip) < 0 ||
            lseek(fd, (off_t)skip, SEEK_SET) < 0) {
            goto out;
        }
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, RESUME_BUF);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || (n > 0 && EVP_DigestUpdate(md, buf, (size_t)n) != 1)) {
            goto out;
        }
        if (n == 0) {
            break;
        }
    }
    ok = EVP_DigestFinal_ex(md, sha, NULL) == 1 &&
         (!spec->has_sha256 || CRYPTO_memcmp(sha, spec->sha256, ANT_SHA256_LEN) == 0);
    *sha_known = ok;
out:
    free(buf);
    EVP_MD_CTX_free(md);
    ant_close(fd);
    return ok;
}

static int admit(struct run *r)
{
    size_t i = r->next_file++;
    const struct ant_stage_file *spec = &r->job->files[i];
    const char *slash = strrchr(spec->dst, '/');
    size_t plen = slash != NULL ? (size_t)(slash - spec->dst) : 0;
    struct sfile *f = NULL;
    bool recopy = false;
    int rc;
    if (spec->done) {
        uint8_t sha[ANT_SHA256_LEN];
        uint64_t bytes = 0;
        bool known = false;
        if (resume_verified(r, spec, sha, &known, &bytes)) {
            r->nended++;
            report(r, i, 0, bytes, known ? sha : NULL, NULL, NULL);
            return 0;
        }
        ant_log_kv(ANT_LOG_INFO, "engine.resume_recopy", JOB_FIELDS(r),
                "%s: checkpointed copy missing or changed, copying again", spec->dst);
        /* if the new copy fails, the stale one must not stay under the final name */
        const char *leaf = NULL;
        int pfd = open_parent(r, spec->dst, &leaf);
        if (pfd >= 0) {
            (void)unlinkat(pfd, leaf, 0);
            ant_close(pfd);
        }
        recopy = true;
    }
    if (!r->have_lastdir || plen != r->lastdir_len || memcmp(r->lastdir, spec->dst, plen) != 0) {
        rc = stage_mkdirs(r->partial_fd, spec->dst, plen);
        if (rc < 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s: could not create its folder: %s%s", spec->dst,
                     strerror(-rc), rc == -ELOOP || rc == -ENOTDIR ? " (a symlink or file is in the way)" : "");
            r->nended++;
            if (r->first_err == 0) {
                r->first_err = rc;
                ant_diag_set(r->d, "%s", msg);
            }
            report(r, i, rc, 0, NULL, NULL, msg);
            return 0;
        }
        memcpy(r->lastdir, spec->dst, plen);
        r->lastdir_len = plen;
        r->have_lastdir = true;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    f->index = i;
    f->spec = spec;
    f->srcfd = f->tmpfd = -1;
    f->state = F_OPENING;
    snprintf(f->tmpname, sizeof(f->tmpname), "%zu", i);
    /* A file is written in place under its logical name inside .J.partial, which nobody sees
     * before the job is published: no temp file, no rename, and its inode is allocated beside
     * its folder (one shared temp folder put 20,000 creates and renames under one directory
     * lock). Only a re-copy of a checkpointed file goes through .J.tmp: a crash in the middle
     * must not leave a partial file under a name that the jobs table says is done. */
    f->via_tmp = recopy;
    /* an earlier run's durable prefix (see resume_check); its output is opened as it is */
    if (!recopy && spec->resume_at > 0 && spec->has_sha256 && spec->xform != ANT_XFORM_ENCRYPT) {
        f->resume_at = spec->resume_at;
        f->keep_out = true;
    }
    f->md = EVP_MD_CTX_new();
    if (f->md == NULL || EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
        file_free(f);
        return -ENOMEM;
    }
    if (spec->xform == ANT_XFORM_ENCRYPT) {
        /* the check digest is the plaintext's; the catalog also wants the new body's */
        f->md_body = EVP_MD_CTX_new();
        if (f->md_body == NULL || EVP_DigestInit_ex(f->md_body, EVP_sha256(), NULL) != 1) {
            file_free(f);
            return -ENOMEM;
        }
    }
    f->next = NULL;
    struct sfile **pp = &r->active;
    while (*pp != NULL) {
        pp = &(*pp)->next;
    }
    *pp = f;
    r->nactive++;
    f->op_open_src = (struct io_op){.kind = OP_OPEN, .f = f, .dirfd = r->job->src_root,
                                    .path = spec->src, .oflags = O_RDONLY | O_NONBLOCK,
                                    .buf_index = -1};
    op_submit(r, &f->op_open_src);
    if (f->err == 0) {
        f->op_open_tmp = (struct io_op){.kind = OP_OPEN, .f = f,
                                        .dirfd = f->via_tmp ? r->tmp_fd : r->partial_fd,
                                        .path = f->via_tmp ? f->tmpname : spec->dst,
                                        /* O_RDWR: keep the output (stage_output_open) */
                                        .oflags = f->resume_at > 0 ? O_RDWR : O_WRONLY,
                                        .mode = 0640,
                                        .buf_index = -1};
        f->out_created = true; /* from here on a failure removes it */
        open_submit(r, &f->op_open_tmp);
    }
    return 0;
}

/* --- the pool threads --- */

/* The checked digest: of the plaintext (decrypt: as written; encrypt: as read), else of the
 * bytes copied (raw: the file; reencrypt: the body). Chunks strictly in order. */
static int hash_slot(struct sfile *f, const struct slot *s)
{
    bool dec = f->spec->xform == ANT_XFORM_DECRYPT;
    /* a shifted reencrypt's chunk 0 starts with the header, which is not hashed */
    size_t lead = chunk_lead(f, s->chunk);
    const uint8_t *p = (dec ? s->out : s->in) + lead;
    size_t n = (f->spec->xform == ANT_XFORM_ENCRYPT ? s->in_len : s->out_len) - lead;
    if (EVP_DigestUpdate(f->md, p, n) != 1) {
        return -ENOMEM;
    }
    if (f->md_body != NULL && EVP_DigestUpdate(f->md_body, s->out, s->out_len) != 1) {
        return -ENOMEM;
    }
    return 0;
}

/* Header task of a file with resume_at (pool thread; the control thread leaves the file alone
 * until the task is back): does the output hold a prefix of resume_at bytes that this run can
 * go on after, on whole Crypt4GH segments of the source (decrypt: plaintext k x 65536 bytes,
 * ciphertext k x 65564 after the header; raw: whole 64 KiB; reencrypt: any length of body
 * behind a header as long as this run's)? If so its bytes (the checked digest's: the
 * plaintext, the raw bytes, reencrypt's body after the header) go into f->md and the output is
 * cut there (bytes past a mark may be garbage); if not, the output is emptied to start over.
 * The prefix is trusted only as far as the file's digest check (file_restart). */
static void resume_check(const struct run *r, struct sfile *f)
{
    enum { RESUME_BUF = 1u << 20 };
    uint64_t m = f->resume_at, hdr = f->out_body_off, in_skip = m - hdr;
    uint8_t *buf = NULL;
    struct stat st;
    bool ok = xform_resumable(f) && m > hdr && m < f->out_size && fstat(f->tmpfd, &st) == 0 &&
              (uint64_t)st.st_size >= m;
    if (f->spec->xform == ANT_XFORM_DECRYPT) {
        ok = ok && m % C4GH_SEG == 0;
        in_skip = m / C4GH_SEG * C4GH_SEG_ENC;
    } else if (f->spec->xform == ANT_XFORM_RAW) {
        ok = ok && m % C4GH_SEG == 0; /* reads stay on blocks (O_DIRECT) */
    }
    buf = ok ? malloc(RESUME_BUF) : NULL;
    ok = ok && buf != NULL;
    if (ok && f->spec->xform == ANT_XFORM_REENCRYPT) {
        /* the earlier run's header stays (the body behind it is the same) */
        uint64_t old = 0;
        ssize_t n = ant_pread_full(f->tmpfd, buf, RESUME_BUF, 0);
        ok = n > 0 && xform_header_len(buf, (size_t)n, &old) == 0 && old == hdr;
    }
    for (uint64_t off = hdr; ok && off < m;) {
        if (run_stop_asked(r)) {
            f->resume_stopped = true; /* the output is left as it is */
            goto out;
        }
        size_t want = m - off < RESUME_BUF ? (size_t)(m - off) : RESUME_BUF;
        ok = ant_pread_full(f->tmpfd, buf, want, (off_t)off) == (ssize_t)want &&
             EVP_DigestUpdate(f->md, buf, want) == 1;
        off += want;
    }
    if (ok && ftruncate(f->tmpfd, (off_t)m) == 0) {
        f->in_skip = in_skip;
        f->out_skip = m - hdr;
        f->resume_ok = true;
    } else if (ftruncate(f->tmpfd, 0) < 0) {
        f->resume_rc = -errno;
    } else if (EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
        f->resume_rc = -ENOMEM;
    }
out:
    free(buf);
}

/* Header task (pool thread): parse or build the header; for a small file whose bytes all came
 * with the header read, also transform and hash its only chunk (header_slot_reuse's case),
 * saving the control thread two round trips per file. */
static int header_task(const struct run *r, struct xform_tls *tls, struct sfile *f)
{
    struct slot *hs = f->hdr_slot;
    const uint8_t *in = hs != NULL ? hs->in : NULL;
    size_t len = hs != NULL ? (size_t)hs->op.off : 0;
    /* raw has no header (only a resume check brings it here) */
    int rc = f->spec->xform == ANT_XFORM_RAW ? 0 : xform_header(r, f, in, len);
    if (rc == 0 && f->resume_at > 0) {
        resume_check(r, f);
        return 0;
    }
    if (rc < 0 || hs == NULL || !xform_changes_bytes(f->spec->xform) || f->in_body_len == 0 ||
        f->in_body_len > f->in_chunk || hs->op.off != f->src_size) {
        return rc;
    }
    memmove(hs->in, hs->in + f->in_body_off, (size_t)f->in_body_len);
    hs->in_len = (size_t)f->in_body_len;
    f->whole_xrc = xform_chunk(tls, f, 0, hs->in, hs->in_len, hs->out, r->bufsize, &hs->out_len);
    f->whole_hrc = f->whole_xrc == 0 ? hash_slot(f, hs) : 0;
    f->whole_done = true;
    return 0;
}

static void *cpool_main(void *arg)
{
    struct run *r = arg;
    struct xform_tls tls = {0};
    struct ev *ev;
    while ((ev = evq_pop(&r->cq)) != NULL) {
        if (ev->kind == EV_HDR) {
            ev->rc = header_task(r, &tls, ev->obj);
        } else if (ev->kind == EV_XFORM) {
            struct slot *s = ev->obj;
            struct sfile *f = s->f;
            size_t in_len = (size_t)(s->op.off - (f->in_body_off + chunk_body_start(f, s->chunk)));
            s->in_len = in_len;
            ev->rc = xform_chunk(&tls, f, s->chunk, s->in, in_len, s->out, r->bufsize,
                                 &s->out_len);
        } else {
            struct slot *s = ev->obj;
            ev->rc = hash_slot(s->f, s);
        }
        evq_push(&r->evq, ev);
    }
    xform_tls_fini(&tls);
    return NULL;
}

/* --- the run --- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Two files with one destination would race for its name: refused up front. */
static int check_duplicates(const struct ant_stage_job *job, struct ant_diag *d)
{
    const char **dst = NULL;
    int rc = 0;
    if (job->nfiles < 2) {
        return 0;
    }
    dst = calloc(job->nfiles, sizeof(*dst));
    if (dst == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < job->nfiles; i++) {
        dst[i] = job->files[i].dst;
    }
    qsort(dst, job->nfiles, sizeof(*dst), cmp_str);
    for (size_t i = 1; i < job->nfiles && rc == 0; i++) {
        if (strcmp(dst[i - 1], dst[i]) == 0) {
            ant_diag_set(d, "two files have the same destination %s", dst[i]);
            rc = -EINVAL;
        }
    }
    free(dst);
    return rc;
}

static int check_job(const struct ant_stage_job *job, struct ant_diag *d)
{
    if (job->name == NULL || stage_name_check(job->name) < 0) {
        ant_diag_set(d, "job name must be one path component not starting with '.'");
        return -EINVAL;
    }
    if (job->nfiles > 0 && job->files == NULL) {
        return -EINVAL;
    }
    for (size_t i = 0; i < job->nfiles; i++) {
        const struct ant_stage_file *f = &job->files[i];
        if (f->src == NULL || ant_stage_path_check(ant_bytes_str(f->src)) < 0) {
            ant_diag_set(d, "file %zu: source path is not an acceptable relative path", i);
            return -EINVAL;
        }
        if (f->dst == NULL || ant_stage_path_check(ant_bytes_str(f->dst)) < 0) {
            ant_diag_set(d, "file %zu: destination path is not an acceptable relative path", i);
            return -EINVAL;
        }
        if ((unsigned)f->xform > ANT_XFORM_ENCRYPT) {
            return -EINVAL;
        }
        int rc = xform_check_job(job, f->xform);
        if (rc < 0) {
            ant_diag_set(d, "file %zu (%s): %s needs %s", i, f->dst, ant_xform_name(f->xform),
                         rc == -ENOKEY ? "a key / recipient public key" : "Crypt4GH support");
            return rc;
        }
    }
    return check_duplicates(job, d);
}

/* Opens (creating if needed) a work folder directly under dst_root, never through a link. */
static int open_workdir(int root, const char *name)
{
    if (mkdirat(root, name, 0750) < 0 && errno != EEXIST) {
        return -errno;
    }
    int fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Before the backend stops: a pool thread may still push to the run's event queue, whose
 * eventfd the io_uring backend closes. */
static void run_stop_crypto(struct run *r)
{
    if (r->open_thread_on) {
        evq_stop(&r->oq);
        pthread_join(r->open_thread, NULL);
        r->open_thread_on = false;
    }
    if (r->sync_thread_on) {
        evq_stop(&r->sq);
        pthread_join(r->sync_thread, NULL);
        r->sync_thread_on = false;
    }
    if (r->cthreads != NULL) {
        evq_stop(&r->cq);
        for (unsigned i = 0; i < r->ncthreads; i++) {
            pthread_join(r->cthreads[i], NULL);
        }
        free(r->cthreads);
        r->cthreads = NULL;
    }
}

static void run_fini(struct run *r)
{
    run_stop_crypto(r);
    free(r->slots);
    free(r->bufmem);
    free(r->ck);
    free(r->ck_sync);
    ant_close(r->partial_fd);
    ant_close(r->tmp_fd);
}

static int run_init(struct run *r)
{
    const struct ant_engine_opts *o = &r->e->o;
    int rc;
    r->plain_chunk = (size_t)o->chunk_segments * C4GH_SEG;
    r->bufsize = (size_t)o->chunk_segments * C4GH_SEG_ENC;
    if (r->bufsize < STAGE_HDR_READ_MAX) {
        r->bufsize = STAGE_HDR_READ_MAX;
    }
    r->bufsize = (r->bufsize + 4095) & ~(size_t)4095;
    r->nslots = o->nbufs;
    r->slots = calloc(r->nslots, sizeof(*r->slots));
    r->bufmem = aligned_alloc(4096, r->bufsize * 2 * r->nslots);
    /* a full batch grows by the files in flight while the previous one syncs (ck_room) */
    r->ck_cap = (size_t)o->checkpoint_files + o->max_open_files;
    r->ck = calloc(r->ck_cap, sizeof(*r->ck));
    r->ck_sync = calloc(r->ck_cap, sizeof(*r->ck_sync));
    r->cthreads = calloc(o->crypto_threads, sizeof(*r->cthreads));
    if (r->slots == NULL || r->bufmem == NULL || r->ck == NULL || r->ck_sync == NULL ||
        r->cthreads == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = r->nslots; i-- > 0;) {
        struct slot *s = &r->slots[i];
        s->idx = i;
        s->in = r->bufmem + (size_t)2 * i * r->bufsize;
        s->out = s->in + r->bufsize;
        s->next = r->free_slots;
        r->free_slots = s;
    }
    r->nfree = r->nslots;
    rc = -pthread_create(&r->open_thread, NULL, open_main, r);
    if (rc < 0) {
        return rc;
    }
    r->open_thread_on = true;
    for (; r->ncthreads < o->crypto_threads; r->ncthreads++) {
        rc = -pthread_create(&r->cthreads[r->ncthreads], NULL, cpool_main, r);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int work_folders(struct run *r, char *partial, char *tmp, size_t cap)
{
    const struct ant_stage_job *job = r->job;
    struct stat st;
    if (fstatat(job->dst_root, job->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        ant_diag_set(r->d, "%s already exists in the destination", job->name);
        return -EEXIST;
    }
    int n1 = snprintf(partial, cap, ".%s.partial", job->name);
    int n2 = snprintf(tmp, cap, ".%s.tmp", job->name);
    if (n1 < 0 || (size_t)n1 >= cap || n2 < 0 || (size_t)n2 >= cap) {
        return -EINVAL;
    }
    r->partial_fd = open_workdir(job->dst_root, partial);
    if (r->partial_fd < 0) {
        ant_diag_set(r->d, "cannot create %s: %s", partial, strerror(-r->partial_fd));
        return r->partial_fd;
    }
    r->tmp_fd = open_workdir(job->dst_root, tmp);
    if (r->tmp_fd < 0) {
        ant_diag_set(r->d, "cannot create %s: %s", tmp, strerror(-r->tmp_fd));
        return r->tmp_fd;
    }
    return 0;
}

int ant_engine_discard(int dst_root, const char *name)
{
    char p[ANT_STAGE_NAME_MAX + 16];
    int rc = 0;
    if (name == NULL || stage_name_check(name) < 0) {
        return -EINVAL;
    }
    for (int i = 0; i < 2 && rc >= 0; i++) {
        int n = snprintf(p, sizeof(p), i == 0 ? ".%s.tmp" : ".%s.partial", name);
        if (n < 0 || (size_t)n >= sizeof(p)) {
            return -EINVAL;
        }
        rc = ant_rmtree_at(dst_root, p);
        rc = rc == -ENOENT ? 0 : rc;
    }
    if (rc == 0) {
        rc = ant_fsync_dir(dst_root);
    }
    return rc;
}

static void remove_tree(int dirfd, const char *name)
{
    int rc = ant_rmtree_at(dirfd, name);
    if (rc < 0 && rc != -ENOENT) {
        ant_log(ANT_LOG_WARN, "engine.cleanup", "could not remove %s: %s", name, strerror(-rc));
    }
}

static int publish(struct run *r, const char *partial, const char *tmp)
{
    const struct ant_stage_job *job = r->job;
    int rc = ant_rmtree_at(job->dst_root, tmp);
    if (rc < 0 && rc != -ENOENT) {
        return rc;
    }
    /* everything under .J.partial is durable (ck_flush synced it): now make it visible */
    if (renameat2(job->dst_root, partial, job->dst_root, job->name, RENAME_NOREPLACE) < 0) {
        rc = -errno;
        ant_diag_set(r->d, "could not publish %s: %s", job->name, strerror(errno));
        return rc;
    }
    rc = ant_fsync_dir(job->dst_root);
    if (rc < 0) {
        ant_diag_set(r->d, "could not sync the destination folder: %s", strerror(-rc));
    }
    return rc;
}

int ant_engine_run(struct ant_engine *e, const struct ant_stage_job *job, struct ant_diag *d)
{
    struct run r;
    char partial[ANT_STAGE_NAME_MAX + 16], tmp[ANT_STAGE_NAME_MAX + 16];
    bool be_started = false, made_folders = false;
    int rc;
    memset(&r, 0, sizeof(r));
    r.e = e;
    r.job = job;
    r.be = e->be;
    r.d = d;
    r.partial_fd = r.tmp_fd = -1;
    rc = evq_init(&r.evq);
    if (rc < 0) {
        return rc;
    }
    rc = evq_init(&r.cq);
    if (rc < 0) {
        evq_fini(&r.evq);
        return rc;
    }
    rc = evq_init(&r.sq);
    if (rc < 0) {
        evq_fini(&r.evq);
        evq_fini(&r.cq);
        return rc;
    }
    rc = evq_init(&r.oq);
    if (rc < 0) {
        evq_fini(&r.evq);
        evq_fini(&r.cq);
        evq_fini(&r.sq);
        return rc;
    }
    rc = check_job(job, d);
    if (rc < 0) {
        goto out;
    }
    rc = work_folders(&r, partial, tmp, sizeof(partial));
    made_folders = r.partial_fd >= 0;
    if (rc < 0) {
        goto out;
    }
    rc = run_init(&r);
    if (rc < 0) {
        goto out;
    }
    rc = r.be->start(&r);
    if (rc < 0 && r.be == &g_ant_uring_ops && e->o.io_engine == ANT_IO_ENGINE_AUTO) {
        /* the probe at start-up passed, but this ring did not set up (memory, limits) */
        ant_log_kv(ANT_LOG_WARN, "engine.fallback", JOB_FIELDS(&r),
                   "io_uring ring failed (%s), this job uses %u pread/pwrite threads",
                   strerror(-rc), e->o.io_threads);
        r.be = &g_ant_threads_ops;
        rc = r.be->start(&r);
    }
    if (rc < 0) {
        ant_diag_set(d, "the %s backend did not start: %s", r.be->name, strerror(-rc));
        goto out;
    }
    be_started = true;
    for (;;) {
        if (!r.cancelled && job->cancel != NULL && atomic_load(job->cancel)) {
            r.cancelled = true;
            for (struct sfile *f = r.active, *next; f != NULL; f = next) {
                next = f->next;
                file_fail(&r, f, -ECANCELED, "cancelled");
            }
        }
        if (!r.cancelled && !r.stopping && job->stop != NULL && atomic_load(job->stop)) {
            run_stop(&r);
        }
        while (!r.cancelled && !r.stopping && r.nactive < e->o.max_open_files &&
               r.next_file < job->nfiles && ck_room(&r)) {
            rc = admit(&r);
            if (rc < 0) {
                goto out;
            }
        }
        sweep_failed(&r);
        sweep_drained(&r);
        schedule(&r);
        if (r.nactive == 0 && !r.syncing &&
            (r.cancelled || r.stopping || r.next_file >= job->nfiles)) {
            break;
        }
        rc = r.be->reap(&r, REAP_TIMEOUT_MS);
        if (rc < 0) {
            ant_log_kv(ANT_LOG_ERROR, "engine.backend_failed", JOB_FIELDS(&r), "%s: %s", r.be->name,
                       strerror(-rc));
            ant_diag_set(d, "the %s backend failed: %s", r.be->name, strerror(-rc));
            goto out;
        }
    }
    r.be->stop(&r);
    be_started = false;
    if (r.cancelled) {
        ant_log_kv(ANT_LOG_INFO, "engine.cancelled", JOB_FIELDS(&r), "job %s cancelled, partial output removed",
                job->name);
        rc = -ECANCELED;
        ant_diag_set(d, "job %s was cancelled", job->name);
        goto out;
    }
    /* One syncfs covers the data, the renames into .J.partial and the folders made for them;
     * only then are the last checkpoints reported and the job folder published. */
    rc = ck_flush(&r, true);
    if (rc < 0) {
        ant_diag_set(d, "could not make the staged files durable: %s", strerror(-rc));
    }
    bool interrupted = r.stopping && (r.ninterrupted > 0 || r.next_file < job->nfiles);
    if (rc == 0 && r.first_err == 0 && !interrupted) {
        rc = publish(&r, partial, tmp);
    }
    if (rc == 0) {
        rc = r.first_err;
    }
    if (rc == 0 && interrupted) {
        ant_log_kv(ANT_LOG_INFO, "engine.interrupted", JOB_FIELDS(&r),
                   "job %s stopped: %zu file(s) interrupted, finished files and resume marks "
                   "kept", job->name, r.ninterrupted);
        ant_diag_set(d, "job %s was interrupted", job->name);
        rc = -EINTR;
    }
out:
    run_stop_crypto(&r);
    if (be_started) {
        r.be->stop(&r);
        /* a file opened by the open thread or the I/O pool after the run stopped taking
         * completions (an error exit) holds an fd nobody else closes (outputs are removed
         * below with their file) */
        for (struct ev *ev = evq_take_all(&r.evq); ev != NULL; ev = ev->next) {
            const struct io_op *op = ev->obj;
            if (ev->kind == EV_IO && op->kind == OP_OPEN && op->res >= 0) {
                ant_close(op->res);
            }
        }
        /* the ring is gone (its ops cancelled) or the pool joined: release what files hold */
        while (r.active != NULL) {
            struct sfile *f = r.active;
            ant_close(f->srcfd);
            ant_close(f->tmpfd);
            if (!f->keep_out) {
                output_remove(&r, f); /* else a reported mark covers its prefix */
            }
            r.active = f->next;
            file_free(f);
        }
    }
    run_fini(&r);
    if (made_folders && rc == -ECANCELED) {
        remove_tree(job->dst_root, partial);
        remove_tree(job->dst_root, tmp);
    } else if (made_folders && rc < 0) {
        /* .J.partial keeps the checkpointed files for a resumed run */
        remove_tree(job->dst_root, tmp);
    }
    evq_fini(&r.evq);
    evq_fini(&r.cq);
    evq_fini(&r.sq);
    evq_fini(&r.oq);
    return rc;
}
