/* The io_uring backend: one ring per job run, created on the run's thread. Opens
 * (IORING_OP_OPENAT2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), reads, writes, fsyncs and
 * closes go through the ring; chunk buffers are registered when the memlock limit allows.
 * Pool threads wake the ring thread through an eventfd polled in the ring. Only the liburing
 * 2.3 API is used (Debian 12); it also builds with 2.9. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "crypto/base/log.h"
#include "staging/engine_internal.h"

struct uring_state {
    struct io_uring ring;
    bool ring_ok;
    bool fixed;
    bool has_openat2, has_close;
    int efd;
    uint64_t efd_val;
    struct ev *sync_done; /* ops run with plain syscalls, delivered at the next reap */
    struct ev *sync_tail;
};

/* Only its address is used: the user_data of the eventfd poll (every other CQE carries an
 * io_op). Not const, as io_uring_sqe_set_data() takes a plain pointer. */
static char g_ant_wake_marker;

/* Optional setup flags, newest last: on -EINVAL the newest is dropped and the setup retried
 * (an older kernel than the headers), as fio's engines/io_uring.c does. */
static const unsigned g_ant_ring_flags[] = {
#ifdef IORING_SETUP_COOP_TASKRUN
    IORING_SETUP_COOP_TASKRUN,
#endif
#ifdef IORING_SETUP_SINGLE_ISSUER
    IORING_SETUP_SINGLE_ISSUER,
#endif
};

static int ring_setup(struct io_uring *ring, unsigned depth)
{
    size_t nflags = ANT_ARRAY_LEN(g_ant_ring_flags);
    int rc;
    for (;;) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        for (size_t i = 0; i < nflags; i++) {
            p.flags |= g_ant_ring_flags[i];
        }
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = depth * 4;
        rc = io_uring_queue_init_params(depth, ring, &p);
        if (rc != -EINVAL || nflags == 0) {
            break;
        }
        nflags--;
    }
    return rc;
}

int uring_probe(unsigned depth)
{
    struct io_uring ring;
    int rc = ring_setup(&ring, depth);
    if (rc == 0) {
        io_uring_queue_exit(&ring);
    }
    return rc;
}

static void uring_stop(struct run *r)
{
    struct uring_state *us = r->be_state;
    if (us == NULL) {
        return;
    }
    if (us->ring_ok) {
        io_uring_queue_exit(&us->ring); /* also drops the registered buffers */
    }
    r->evq.efd = -1;
    ant_close(us->efd);
    free(us);
    r->be_state = NULL;
}

static struct io_uring_sqe *get_sqe(struct uring_state *us)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&us->ring);
    if (sqe == NULL) {
        /* the SQ is full: hand it to the kernel and take a fresh entry */
        (void)io_uring_submit(&us->ring);
        sqe = io_uring_get_sqe(&us->ring);
    }
    return sqe;
}

static int arm_wake(struct uring_state *us)
{
    struct io_uring_sqe *sqe = get_sqe(us);
    if (sqe == NULL) {
        return -EBUSY;
    }
    io_uring_prep_poll_add(sqe, us->efd, POLLIN);
    io_uring_sqe_set_data(sqe, &g_ant_wake_marker);
    return 0;
}

static int uring_start(struct run *r)
{
    struct uring_state *us = calloc(1, sizeof(*us));
    struct io_uring_probe *probe = NULL;
    struct iovec *iov = NULL;
    int rc;
    if (us == NULL) {
        return -ENOMEM;
    }
    us->efd = -1;
    r->be_state = us;
    rc = ring_setup(&us->ring, r->e->o.queue_depth);
    if (rc < 0) {
        goto out;
    }
    us->ring_ok = true;
    probe = io_uring_get_probe_ring(&us->ring);
    us->has_openat2 = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_OPENAT2);
    us->has_close = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_CLOSE);
    iov = calloc((size_t)r->nslots * 2, sizeof(*iov));
    if (iov == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < r->nslots; i++) {
        iov[2 * i] = (struct iovec){r->slots[i].in, r->bufsize};
        iov[2 * i + 1] = (struct iovec){r->slots[i].out, r->bufsize};
    }
    rc = io_uring_register_buffers(&us->ring, iov, r->nslots * 2);
    if (rc == 0) {
        us->fixed = true;
    } else {
        /* usually -ENOMEM: pinned pages count against RLIMIT_MEMLOCK (8 MiB here) */
        ant_log(ANT_LOG_INFO, "engine.buffers_unregistered",
                "registering %u buffers of %zu bytes failed (%s): plain reads and writes",
                r->nslots * 2, r->bufsize, strerror(-rc));
    }
    us->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (us->efd < 0) {
        rc = -errno;
        goto out;
    }
    r->evq.efd = us->efd;
    rc = arm_wake(us);
out:
    if (probe != NULL) {
        io_uring_free_probe(probe);
    }
    free(iov);
    if (rc < 0) {
        uring_stop(r);
    }
    return rc;
}

static int uring_submit(struct run *r, struct io_op *op)
{
    struct uring_state *us = r->be_state;
    bool in_ring = (op->kind != OP_OPEN || us->has_openat2) && (op->kind != OP_CLOSE || us->has_close);
    if (!in_ring) {
        op->res = op_exec_sync(op);
        op->ev.obj = op;
        op->ev.next = NULL;
        if (us->sync_tail != NULL) {
            us->sync_tail->next = &op->ev;
        } else {
            us->sync_done = &op->ev;
        }
        us->sync_tail = &op->ev;
        return 0;
    }
    struct io_uring_sqe *sqe = get_sqe(us);
    if (sqe == NULL) {
        return -EBUSY;
    }
    switch (op->kind) {
    case OP_OPEN:
        op->how = (struct open_how){
            .flags = (uint64_t)(op->oflags | O_CLOEXEC),
            .mode = (op->oflags & O_CREAT) ? op->mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        };
        io_uring_prep_openat2(sqe, op->dirfd, op->path, &op->how);
        break;
    case OP_READ:
        if (us->fixed && op->buf_index >= 0) {
            io_uring_prep_read_fixed(sqe, op->fd, op->buf, (unsigned)op->len, op->off,
                                     op->buf_index);
        } else {
            io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        }
        break;
    case OP_WRITE:
        if (us->fixed && op->buf_index >= 0) {
            io_uring_prep_write_fixed(sqe, op->fd, op->buf, (unsigned)op->len, op->off,
                                      op->buf_index);
        } else {
            io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        }
        break;
    case OP_FSYNC:
        io_uring_prep_fsync(sqe, op->fd, 0);
        break;
    case OP_DATASYNC:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        break;
    case OP_CLOSE:
        io_uring_prep_close(sqe, op->fd);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

static int uring_reap(struct run *r, int timeout_ms)
{
    struct uring_state *us = r->be_state;
    struct io_uring_cqe *cqe = NULL;
    unsigned delivered = 0;
    int rc = io_uring_submit(&us->ring);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
        return rc;
    }
    while (us->sync_done != NULL) {
        struct ev *e = us->sync_done;
        us->sync_done = e->next;
        if (us->sync_done == NULL) {
            us->sync_tail = NULL;
        }
        struct io_op *op = e->obj;
        run_op_done(r, op, op->res);
        delivered++;
    }
    for (struct ev *e = evq_take_all(&r->evq); e != NULL;) {
        struct ev *next = e->next;
        run_event(r, e);
        delivered++;
        e = next;
    }
    if (delivered > 0) {
        /* more work may have been queued: send it and only peek at completions */
        (void)io_uring_submit(&us->ring);
        rc = io_uring_peek_cqe(&us->ring, &cqe);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000LL};
        rc = io_uring_wait_cqe_timeout(&us->ring, &cqe, &ts);
    }
    if (rc == -ETIME || rc == -EAGAIN || rc == -EINTR) {
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    /* Drain what is there; a bound keeps the submission side fed. */
    for (unsigned n = 0; n < 4096 && io_uring_peek_cqe(&us->ring, &cqe) == 0; n++) {
        void *data = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&us->ring, cqe);
        if (data == &g_ant_wake_marker) {
            ssize_t got = read(us->efd, &us->efd_val, sizeof(us->efd_val));
            (void)got;
            for (struct ev *e = evq_take_all(&r->evq); e != NULL;) {
                struct ev *next = e->next;
                run_event(r, e);
                e = next;
            }
            rc = arm_wake(us);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        run_op_done(r, data, res);
    }
    return 0;
}

const struct backend_ops g_ant_uring_ops = {
    .name = "io_uring",
    .start = uring_start,
    .submit = uring_submit,
    .reap = uring_reap,
    .stop = uring_stop,
};
