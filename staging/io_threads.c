/* The event queue shared by all pools, plain-syscall ops, and the pread/pwrite thread-pool
 * backend used where io_uring is unavailable (old kernels, seccomp profiles, io_uring_disabled). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/base/log.h"
#include "staging/engine_internal.h"

int evq_init(struct evq *q)
{
    pthread_condattr_t ca;
    memset(q, 0, sizeof(*q));
    q->efd = -1;
    if (pthread_condattr_init(&ca) != 0) {
        return -ENOMEM;
    }
    /* timed waits must not jump with the wall clock */
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&q->c, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        return -rc;
    }
    rc = pthread_mutex_init(&q->m, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&q->c);
        return -rc;
    }
    return 0;
}

void evq_fini(struct evq *q)
{
    pthread_mutex_destroy(&q->m);
    pthread_cond_destroy(&q->c);
}

void evq_push(struct evq *q, struct ev *e)
{
    e->next = NULL;
    pthread_mutex_lock(&q->m);
    bool was_empty = q->head == NULL;
    if (q->tail != NULL) {
        q->tail->next = e;
    } else {
        q->head = e;
    }
    q->tail = e;
    pthread_cond_signal(&q->c);
    pthread_mutex_unlock(&q->m);
    /* Only the push that made the queue non-empty pokes the eventfd: the waiter takes the
     * whole queue once woken, so a poke per event only cost a syscall and a wake-up each. */
    if (q->efd >= 0 && was_empty) {
        uint64_t one = 1;
        /* EAGAIN means the counter is already non-zero: the waiter will wake anyway */
        ssize_t n = write(q->efd, &one, sizeof(one));
        (void)n;
    }
}

struct ev *evq_take_all(struct evq *q)
{
    pthread_mutex_lock(&q->m);
    struct ev *h = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->m);
    return h;
}

struct ev *evq_wait_all(struct evq *q, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->m);
    while (q->head == NULL && !q->stop) {
        if (pthread_cond_timedwait(&q->c, &q->m, &ts) != 0) {
            break;
        }
    }
    struct ev *h = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->m);
    return h;
}

struct ev *evq_pop(struct evq *q)
{
    pthread_mutex_lock(&q->m);
    while (q->head == NULL && !q->stop) {
        pthread_cond_wait(&q->c, &q->m);
    }
    struct ev *h = q->head;
    if (h != NULL) {
        q->head = h->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
    }
    pthread_mutex_unlock(&q->m);
    return h;
}

void evq_stop(struct evq *q)
{
    pthread_mutex_lock(&q->m);
    q->stop = true;
    pthread_cond_broadcast(&q->c);
    pthread_mutex_unlock(&q->m);
}

int op_exec_sync(struct io_op *op)
{
    ssize_t n;
    switch (op->kind) {
    case OP_OPEN:
        return ant_stage_openat(op->dirfd, op->path, op->oflags, op->mode);
    case OP_READ:
        n = pread(op->fd, op->buf, op->len, (off_t)op->off);
        return n < 0 ? -errno : (int)n;
    case OP_WRITE:
        n = pwrite(op->fd, op->buf, op->len, (off_t)op->off);
        return n < 0 ? -errno : (int)n;
    case OP_FSYNC:
        return fsync(op->fd) < 0 ? -errno : 0;
    case OP_DATASYNC:
        return fdatasync(op->fd) < 0 ? -errno : 0;
    case OP_CLOSE:
        /* Linux releases the fd even when close reports an error (EIO from NFS etc.) */
        return close(op->fd) < 0 ? -errno : 0;
    }
    return -EINVAL;
}

/* --- the thread-pool backend --- */

struct tpool {
    struct evq q; /* ops to do */
    pthread_t *th;
    unsigned n;
    struct run *r;
};

static void *tpool_main(void *arg)
{
    struct tpool *tp = arg;
    struct ev *e;
    while ((e = evq_pop(&tp->q)) != NULL) {
        struct io_op *op = e->obj;
        int res;
        do {
            res = op_exec_sync(op);
        } while (res == -EINTR);
        op->res = res;
        op->ev.kind = EV_IO;
        evq_push(&tp->r->evq, &op->ev);
    }
    return NULL;
}

static void threads_stop(struct run *r)
{
    struct tpool *tp = r->be_state;
    if (tp == NULL) {
        return;
    }
    evq_stop(&tp->q);
    for (unsigned i = 0; i < tp->n; i++) {
        pthread_join(tp->th[i], NULL);
    }
    evq_fini(&tp->q);
    free(tp->th);
    free(tp);
    r->be_state = NULL;
}

static int threads_start(struct run *r)
{
    unsigned n = r->e->o.io_threads;
    struct tpool *tp = calloc(1, sizeof(*tp));
    int rc = tp == NULL ? -ENOMEM : evq_init(&tp->q);
    if (rc < 0) {
        free(tp);
        return rc;
    }
    tp->r = r;
    r->be_state = tp;
    tp->th = calloc(n, sizeof(*tp->th));
    if (tp->th == NULL) {
        threads_stop(r);
        return -ENOMEM;
    }
    for (; tp->n < n; tp->n++) {
        rc = -pthread_create(&tp->th[tp->n], NULL, tpool_main, tp);
        if (rc < 0) {
            threads_stop(r);
            return rc;
        }
    }
    return 0;
}

static int threads_submit(struct run *r, struct io_op *op)
{
    struct tpool *tp = r->be_state;
    op->ev.obj = op;
    evq_push(&tp->q, &op->ev);
    return 0;
}

static int threads_reap(struct run *r, int timeout_ms)
{
    struct ev *e = evq_wait_all(&r->evq, timeout_ms);
    while (e != NULL) {
        struct ev *next = e->next;
        if (e->kind == EV_IO) {
            struct io_op *op = e->obj;
            run_op_done(r, op, op->res);
        } else {
            run_event(r, e);
        }
        e = next;
    }
    return 0;
}

const struct backend_ops g_ant_threads_ops = {
    .name = "threads",
    .start = threads_start,
    .submit = threads_submit,
    .reap = threads_reap,
    .stop = threads_stop,
};
