/* JSON-lines logger on stderr. Thread-safe: each line is one write(2). */
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

/* Parses "error|warn|info|debug"; -EINVAL otherwise. */
int ant_log_level_parse(const char *s, int *out);

/* Appends s as the body of a JSON string (escaping quotes, controls and non-UTF-8 bytes). */
struct ant_buf;
int ant_json_escape(struct ant_buf *b, const char *s, size_t len);

#endif
