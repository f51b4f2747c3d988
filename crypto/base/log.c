/* JSON-lines logger. */
#include "crypto/base/log.h"

#include "crypto/base/base.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int g_ant_log_level = ANT_LOG_INFO;

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
        (void)!write(STDERR_FILENO, b.p, b.len);
    }
    ant_buf_fini(&b);
}
