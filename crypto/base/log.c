/* JSON-lines logger. */
#include "crypto/base/log.h"

#include "crypto/base/base.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int g_ant_log_level = ANT_LOG_INFO;

/* The buffered mode (ant_log_buffer_start): lines gather in `cur`; a flush swaps it with
 * `spare` under `mu` and writes it under `wmu`, taken before `mu` is let go, so flushes leave
 * in the order of their swaps and the writing blocks no logger unless the spare is still being
 * written (two buffers filled within one write). */
struct logbuf {
    pthread_mutex_t mu;  /* cur, len, on, stop */
    pthread_mutex_t wmu; /* the write of a swapped-out buffer (and `spare`) */
    pthread_cond_t cv;   /* wakes the flusher early, at stop */
    pthread_t flusher;
    bool on, stop, started_once;
    /* stderr is a regular file: the flusher starts the writeback of what was written since
     * its last tick (sync_file_range, no wait). Left to the kernel, a busy request log (10
     * MB/s at 30,000 requests/s) piled up as dirty pages for 30 s and then went to the disk at
     * once, and the audit's fdatasyncs queued behind it for 40-110 ms (the gateway's p99 went
     * from 5 to 25-47 ms in the fourth 10 s round of a sustained run; 5 ms with the log off). */
    bool push_writeback;
    _Atomic uint64_t written, pushed;
    unsigned flush_ms;
    char *cur, *spare;
    size_t len;
    char a[ANT_LOG_BUFFER_BYTES], b[ANT_LOG_BUFFER_BYTES];
};

static struct logbuf g_lb = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wmu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
};

/* All of the iovecs to stderr, across short writes and EINTR; a failing stderr loses the rest
 * (there is nowhere to report it). */
static void write_all(struct iovec *iov, int n)
{
    while (n > 0) {
        if (iov[0].iov_len == 0) {
            iov++;
            n--;
            continue;
        }
        ssize_t w = writev(STDERR_FILENO, iov, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= iov[0].iov_len) {
            done -= iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + done;
            iov[0].iov_len -= done;
        }
    }
}

/* Called with mu held; returns with it released. Writes the buffered lines, then `extra`. */
static void flush_and_unlock(const char *extra, size_t n)
{
    pthread_mutex_lock(&g_lb.wmu);
    char *p = g_lb.cur;
    size_t len = g_lb.len;
    g_lb.cur = g_lb.spare;
    g_lb.spare = p;
    g_lb.len = 0;
    pthread_mutex_unlock(&g_lb.mu);
    struct iovec iov[2] = {{p, len}, {(void *)(uintptr_t)extra, n}};
    write_all(iov, 2);
    atomic_fetch_add(&g_lb.written, len + n);
    pthread_mutex_unlock(&g_lb.wmu);
}

void ant_log_line(int lvl, const char *line, size_t len)
{
    pthread_mutex_lock(&g_lb.mu);
    if (!g_lb.on) {
        pthread_mutex_unlock(&g_lb.mu);
        struct iovec iov[1] = {{(void *)(uintptr_t)line, len}};
        write_all(iov, 1);
        return;
    }
    if (lvl < ANT_LOG_INFO || len > sizeof(g_lb.a) - g_lb.len) {
        /* warnings and errors go out at once (after the lines before them), as does a line
         * that does not fit: the buffered lines first */
        if (len <= sizeof(g_lb.a) && lvl >= ANT_LOG_INFO) {
            flush_and_unlock(NULL, 0);
            ant_log_line(lvl, line, len);
            return;
        }
        flush_and_unlock(line, len);
        return;
    }
    memcpy(g_lb.cur + g_lb.len, line, len);
    g_lb.len += len;
    pthread_mutex_unlock(&g_lb.mu);
}

void ant_log_flush(void)
{
    pthread_mutex_lock(&g_lb.mu);
    if (g_lb.len == 0) {
        pthread_mutex_unlock(&g_lb.mu);
        return;
    }
    flush_and_unlock(NULL, 0);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lb.mu);
    while (!g_lb.stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (int64_t)g_lb.flush_ms * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        (void)pthread_cond_timedwait(&g_lb.cv, &g_lb.mu, &ts);
        if (g_lb.len > 0) {
            flush_and_unlock(NULL, 0);
            pthread_mutex_lock(&g_lb.mu);
        }
        uint64_t w = atomic_load(&g_lb.written);
        if (g_lb.push_writeback && w != atomic_load(&g_lb.pushed)) {
            atomic_store(&g_lb.pushed, w);
            pthread_mutex_unlock(&g_lb.mu);
            (void)sync_file_range(STDERR_FILENO, 0, 0, SYNC_FILE_RANGE_WRITE);
            pthread_mutex_lock(&g_lb.mu);
        }
    }
    pthread_mutex_unlock(&g_lb.mu);
    return NULL;
}

int ant_log_buffer_start(unsigned flush_ms)
{
    pthread_condattr_t ca;
    int rc = 0;
    if (flush_ms == 0) {
        return 0;
    }
    if (flush_ms > ANT_LOG_FLUSH_MS_MAX) {
        return -EINVAL;
    }
    pthread_mutex_lock(&g_lb.mu);
    if (g_lb.on) {
        rc = -EALREADY;
        goto out;
    }
    if (!g_lb.started_once) {
        /* a clean exit() without ant_log_buffer_stop still writes what is buffered */
        if (atexit(ant_log_flush) != 0) {
            rc = -ENOMEM;
            goto out;
        }
        g_lb.started_once = true;
    }
    /* the flusher waits on CLOCK_MONOTONIC: a clock step must not delay the lines */
    pthread_cond_destroy(&g_lb.cv);
    rc = -pthread_condattr_init(&ca);
    if (rc < 0) {
        goto out;
    }
    rc = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = rc < 0 ? rc : -pthread_cond_init(&g_lb.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc < 0) {
        goto out;
    }
    g_lb.cur = g_lb.a;
    g_lb.spare = g_lb.b;
    g_lb.len = 0;
    g_lb.flush_ms = flush_ms;
    g_lb.stop = false;
    struct stat sb;
    g_lb.push_writeback = fstat(STDERR_FILENO, &sb) == 0 && S_ISREG(sb.st_mode);
    rc = -pthread_create(&g_lb.flusher, NULL, flusher_main, NULL);
    if (rc < 0) {
        goto out;
    }
    g_lb.on = true;
out:
    pthread_mutex_unlock(&g_lb.mu);
    return rc;
}

void ant_log_buffer_stop(void)
{
    pthread_mutex_lock(&g_lb.mu);
    if (!g_lb.on) {
        pthread_mutex_unlock(&g_lb.mu);
        return;
    }
    g_lb.stop = true;
    pthread_cond_signal(&g_lb.cv);
    pthread_mutex_unlock(&g_lb.mu);
    pthread_join(g_lb.flusher, NULL);
    pthread_mutex_lock(&g_lb.mu);
    g_lb.on = false;
    if (g_lb.len > 0) {
        flush_and_unlock(NULL, 0);
    } else {
        pthread_mutex_unlock(&g_lb.mu);
    }
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int ant_log_level_parse(const char *s, int *out)
{
    for (size_t i = 0; i < ANT_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return -EINVAL;
}

int ant_json_escape(struct ant_buf *b, const char *s, size_t len)
{
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = ant_buf_append(b, e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* non-ASCII is escaped byte-wise: logs must stay valid JSON whatever a client sent */
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", c);
            rc = ant_buf_append(b, e, 6);
        } else {
            rc = ant_buf_append(b, &c, 1);
        }
    }
    return rc;
}

void ant_log_emit(int lvl, const char *ev, const char *const *fields, const char *fmt, ...)
{
    char msg[1024];
    char ts[32];
    struct ant_buf b = ANT_BUF_INIT(8192);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int64_t ms = ant_now_ms();
    ant_fmt_time(ms / 1000, ts);
    int rc = ant_buf_printf(&b, "{\"ts\":\"%.19s.%03dZ\",\"level\":\"%s\",\"event\":\"", ts,
                            (int)(ms % 1000), level_names[lvl < 0 ? 0 : lvl > 3 ? 3 : lvl]);
    rc = rc < 0 ? rc : ant_json_escape(&b, ev, strlen(ev));
    rc = rc < 0 ? rc : ant_buf_append_str(&b, "\",\"msg\":\"");
    rc = rc < 0 ? rc : ant_json_escape(&b, msg, strlen(msg));
    rc = rc < 0 ? rc : ant_buf_append_str(&b, "\"");
    for (size_t i = 0; fields != NULL && fields[i] != NULL && fields[i + 1] != NULL && rc == 0;
         i += 2) {
        rc = ant_buf_append_str(&b, ",\"");
        rc = rc < 0 ? rc : ant_json_escape(&b, fields[i], strlen(fields[i]));
        rc = rc < 0 ? rc : ant_buf_append_str(&b, "\":\"");
        rc = rc < 0 ? rc : ant_json_escape(&b, fields[i + 1], strlen(fields[i + 1]));
        rc = rc < 0 ? rc : ant_buf_append_str(&b, "\"");
    }
    rc = rc < 0 ? rc : ant_buf_append_str(&b, "}\n");
    if (rc == 0) {
        ant_log_line(lvl, (const char *)b.p, b.len);
    }
    ant_buf_fini(&b);
}
