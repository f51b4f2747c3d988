/* JSON-lines logger on stderr. Thread-safe: each line is one write(2), or, once
 * ant_log_buffer_start() has run, part of one write of many whole lines (the server's request
 * log, like nginx's `access_log ... buffer= flush=`). */
#ifndef ANT_LOG_H
#define ANT_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum {
    ANT_LOG_ERROR = 0,
    ANT_LOG_WARN = 1,
    ANT_LOG_INFO = 2,
    ANT_LOG_DEBUG = 3,
};

/* The level below which lines are dropped; set once at start-up. */
extern int g_ant_log_level;

#define ant_log(lvl, ev, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) <= g_ant_log_level) {                                                            \
            ant_log_emit((lvl), (ev), NULL, __VA_ARGS__);                                          \
        }                                                                                          \
    } while (0)

/* Like ant_log, with extra JSON members: `fields` is a NULL-terminated list of key, value
 * pairs of C strings, e.g. (const char *[]){"request_id", id, NULL}. */
#define ant_log_kv(lvl, ev, fields, ...)                                                           \
    do {                                                                                           \
        if ((lvl) <= g_ant_log_level) {                                                            \
            ant_log_emit((lvl), (ev), (fields), __VA_ARGS__);                                      \
        }                                                                                          \
    } while (0)

void ant_log_emit(int lvl, const char *ev, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes one whole line (ending in '\n') of level lvl: at once, or into the buffer while
 * buffering is on. A warning or an error is never held: it leaves at once, after the lines
 * buffered before it. */
void ant_log_line(int lvl, const char *line, size_t len);

/* Buffering of info and debug lines: they leave in writes of up to ANT_LOG_BUFFER_BYTES, when
 * the buffer is full, at most flush_ms (1..ANT_LOG_FLUSH_MS_MAX) after they were logged (a
 * thread of its own), at ant_log_buffer_stop() and at exit(). A crash loses what is buffered:
 * at most flush_ms of info lines. flush_ms 0: nothing changes (each line written at once).
 * Returns 0, -EINVAL past the maximum, -EALREADY when on, or -errno of the thread. */
#define ANT_LOG_BUFFER_BYTES (64u * 1024u)
#define ANT_LOG_FLUSH_MS_MAX 1000u
int ant_log_buffer_start(unsigned flush_ms) __attribute__((warn_unused_result));
/* Writes what is buffered, stops the thread and goes back to a write per line. Accepts "not
 * started". */
void ant_log_buffer_stop(void);
/* Writes what is buffered now. */
void ant_log_flush(void);

/* Parses "error|warn|info|debug"; -EINVAL otherwise. */
int ant_log_level_parse(const char *s, int *out);

/* Appends s as the body of a JSON string (escaping quotes, controls and non-UTF-8 bytes). */
struct ant_buf;
int ant_json_escape(struct ant_buf *b, const char *s, size_t len);

#endif
