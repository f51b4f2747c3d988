/* antenna.conf parsing and rendering, driven by one table of known keys. */
#include "gateway/config.h"

#include "crypto/base/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum kind {
    K_NAME,     /* identifier: [a-z0-9-], 1..63, starts alphanumeric */
    K_REGION,   /* [A-Za-z0-9-], 1..32 */
    K_PATH,     /* non-empty, no NUL/control characters */
    K_UINT,     /* unsigned within [min, max] */
    K_SIZE,     /* "64M" style, within [min, max] */
    K_DURATION, /* "30s" style, within [min, max] seconds */
    K_LISTEN,   /* ADDR:PORT */
    K_CHOICE,   /* one of the words choices_of() gives */
    K_LOGLEVEL, /* error | warn | info | debug */
};

struct key {
    const char *section, *name;
    enum kind kind;
    size_t off, size; /* field offset and size in struct ant_config */
    uint64_t min, max;
    const char *help;
};

#define F(field) offsetof(struct ant_config, field), sizeof(((struct ant_config *)0)->field)
#define GiB (1024ULL * 1024 * 1024)
#define TiB (1024ULL * GiB)

static const struct key keys[] = {
    {"site", "id", K_NAME, F(site_id), 0, 0, "this site's id, as peers know it"},
    {"site", "region", K_REGION, F(region), 0, 0,
     "the region this site is in; residency rules name regions"},
    {"server", "listen", K_LISTEN, F(listen_addr), 0, 0,
     "address and port of the HTTPS listener (port 0: any free port, printed at start)"},
    {"server", "threads", K_UINT, F(threads), 0, 256, "HTTP worker threads (0: 2 per core, at least 4)"},
    {"server", "connection_limit", K_UINT, F(connection_limit), 1, 1000000,
     "most connections at once"},
    {"server", "per_ip_connection_limit", K_UINT, F(per_ip_connection_limit), 0, 1000000,
     "most connections from one address (0: no limit)"},
    {"server", "event_loop", K_CHOICE, F(event_loop), 0, 0,
     "how each HTTP worker waits for its connections: poll (least CPU per request up to a few "
     "hundred connections at once) | epoll (for more: its cost does not grow with idle ones)"},
    {"server", "connection_timeout", K_DURATION, F(connection_timeout_s), 1, 3600,
     "idle time after which a connection is closed (against slow clients)"},
    {"server", "max_header_bytes", K_SIZE, F(max_header_bytes), 4096, 1024 * 1024,
     "memory for one request's headers; larger headers get 431"},
    {"server", "max_json_body", K_SIZE, F(max_json_body), 1024, 64 * 1024 * 1024,
     "largest JSON request body; larger gets 413"},
    {"server", "shutdown_grace", K_DURATION, F(shutdown_grace_s), 0, 3600,
     "how long in-flight requests may finish after SIGTERM"},
    {"server", "rate_limit", K_UINT, F(rate_limit_per_s), 0, 1000000,
     "requests per second per principal (0: no limit); over it gets 429"},
    {"server", "rate_burst", K_UINT, F(rate_limit_burst), 1, 1000000,
     "requests a principal may send at once before the rate applies"},
    {"server", "tls_cert", K_PATH, F(tls_cert), 0, 0, "PEM certificate chain"},
    {"server", "tls_key", K_PATH, F(tls_key), 0, 0, "PEM private key"},
    {"storage", "archive", K_PATH, F(archive_dir), 0, 0,
     "where encrypted datasets are kept (may be another filesystem)"},
    {"storage", "scratch", K_PATH, F(scratch_dir), 0, 0,
     "where stage jobs put data for compute jobs (a parallel filesystem, say)"},
    {"storage", "max_upload", K_SIZE, F(max_upload_bytes), 0, 64 * TiB,
     "largest file accepted by an upload; larger gets 413"},
    {"audit", "checkpoint_every", K_UINT, F(checkpoint_every), 1, 10000000,
     "sign a checkpoint after this many events"},
    {"audit", "checkpoint_seconds", K_DURATION, F(checkpoint_seconds), 1, 86400,
     "or after this long, whichever comes first"},
    {"audit", "max_batch", K_UINT, F(audit_max_batch), 1, 100000,
     "most events written in one group commit"},
    {"staging", "io_engine", K_CHOICE, F(io_engine), 0, 0,
     "auto (io_uring when it sets up, else threads) | uring | threads"},
    {"staging", "direct_io", K_CHOICE, F(direct_io), 0, 0,
     "auto (O_DIRECT where the filesystem takes it) | off (page cache only, e.g. NFS scratch)"},
    {"staging", "resume_min", K_SIZE, F(resume_min), 64 * 1024, 1024 * TiB,
     "files at least this big record how much of them is durable as they are staged, so that "
     "a restart (crash, upgrade) continues them from there instead of from their start"},
    {"staging", "resume_every", K_SIZE, F(resume_every), 64 * 1024, 1024 * TiB,
     "how often such a file's written part is made durable and recorded (at most 64 times per "
     "file: bigger files record less often)"},
    {"staging", "workers", K_UINT, F(stage_workers), 0, 256,
     "stage job worker threads (0: one per core)"},
    {"staging", "default_scratch_quota", K_SIZE, F(default_scratch_quota), 0, 1024 * TiB,
     "scratch quota of a tenant that has none of its own"},
    {"staging", "max_jobs", K_UINT, F(max_stage_jobs), 0, 1000000,
     "stage jobs a tenant may have queued, running or ready at once (0: no limit)"},
    {"staging", "default_ttl", K_DURATION, F(default_ttl_s), 60, 90 * 86400,
     "time to live of staged data when a job names none"},
    {"staging", "purge_interval", K_DURATION, F(purge_interval_s), 1, 3600,
     "how often expired jobs' output is looked for and removed (a pass is one indexed query when"
     " nothing is due); an expired job's output is refused from its expiry on either way"},
    {"federation", "connections", K_UINT, F(fed_connections), 0, 256,
     "transfers at once when a stage job pulls from a peer (0: 8)"},
    {"federation", "max_rate", K_SIZE, F(fed_max_rate), 0, 1024 * GiB,
     "bytes per second per pulling connection, such as 10M (0: no limit)"},
    {"federation", "cache_max", K_SIZE, F(fed_cache_max), 0, 1024 * TiB,
     "most bytes of peers' files kept in archive/fed, such as 500G; past it the least recently "
     "used copies not used for an hour are evicted after remote stage jobs (0: no limit)"},
    {"log", "level", K_LOGLEVEL, F(log_level), 0, 0, "error | warn | info | debug"},
    {"log", "flush_ms", K_UINT, F(log_flush_ms), 0, ANT_LOG_FLUSH_MS_MAX,
     "info lines (the request log) are written in batches at most this many ms late; a crash "
     "loses at most that much of them, never a warning or an error (0: each line at once)"},
};

void ant_config_defaults(struct ant_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->site_id, sizeof(c->site_id), "site");
    snprintf(c->region, sizeof(c->region), "EU");
    snprintf(c->listen_addr, sizeof(c->listen_addr), "127.0.0.1");
    c->listen_port = 8443;
    c->threads = 0;
    c->connection_limit = 1024;
    snprintf(c->event_loop, sizeof(c->event_loop), "poll");
    c->per_ip_connection_limit = 256;
    c->connection_timeout_s = 60;
    /* libmicrohttpd's memory per connection, which it zeroes for every request: 16 KiB takes
     * headers up to ~15 KB (S3 takes 8 KB, nginx 8 KB a line) and cost ~4 % less CPU per small
     * request than 32 KiB (docs/benchmarks.md), with half the memory per connection. */
    c->max_header_bytes = 16 * 1024;
    c->max_json_body = 1024 * 1024;
    c->shutdown_grace_s = 10;
    c->rate_limit_per_s = 1000;
    c->rate_limit_burst = 2000;
    snprintf(c->tls_cert, sizeof(c->tls_cert), "tls/cert.pem");
    snprintf(c->tls_key, sizeof(c->tls_key), "tls/key.pem");
    snprintf(c->archive_dir, sizeof(c->archive_dir), "archive");
    snprintf(c->scratch_dir, sizeof(c->scratch_dir), "scratch");
    c->max_upload_bytes = 1 * TiB;
    c->checkpoint_every = 1000;
    c->checkpoint_seconds = 60;
    c->audit_max_batch = 1024;
    snprintf(c->io_engine, sizeof(c->io_engine), "auto");
    snprintf(c->direct_io, sizeof(c->direct_io), "auto");
    c->resume_min = 1 * GiB;
    c->resume_every = 1 * GiB;
    c->stage_workers = 0;
    c->default_scratch_quota = 1 * TiB;
    c->max_stage_jobs = 1000;
    c->default_ttl_s = 7 * 86400;
    c->purge_interval_s = 2;
    c->log_level = ANT_LOG_INFO;
    c->log_flush_ms = 250;
}

int ant_listen_parse(struct ant_bytes s, char addr[64], uint16_t *port)
{
    struct ant_bytes host, p;
    size_t colon = s.len;
    for (size_t i = s.len; i > 0; i--) {
        if (s.p[i - 1] == ':') {
            colon = i - 1;
            break;
        }
    }
    if (colon == s.len || colon == 0) {
        return -EINVAL;
    }
    host = ant_bytes_of(s.p, colon);
    p = ant_bytes_of(s.p + colon + 1, s.len - colon - 1);
    if (host.len >= 2 && host.p[0] == '[' && host.p[host.len - 1] == ']') {
        host = ant_bytes_of(host.p + 1, host.len - 2);
    }
    uint64_t v;
    char tmp[64];
    uint8_t bin[16];
    if (host.len == 0 || host.len >= sizeof(tmp) || ant_parse_u64(p, 0, 65535, &v) < 0) {
        return -EINVAL;
    }
    memcpy(tmp, host.p, host.len);
    tmp[host.len] = '\0';
    if (memchr(host.p, '\0', host.len) != NULL ||
        (inet_pton(AF_INET, tmp, bin) != 1 && inet_pton(AF_INET6, tmp, bin) != 1)) {
        return -EINVAL;
    }
    memcpy(addr, tmp, host.len + 1);
    *port = (uint16_t)v;
    return 0;
}

/* The words a K_CHOICE key accepts, ", "-separated. */
static const char *choices_of(const struct key *k)
{
    static const struct {
        size_t off;
        const char *words;
    } sets[] = {
        {offsetof(struct ant_config, event_loop), "poll, epoll"},
        {offsetof(struct ant_config, io_engine), "auto, uring, threads"},
        {offsetof(struct ant_config, direct_io), "auto, off"},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(sets); i++) {
        if (sets[i].off == k->off) {
            return sets[i].words;
        }
    }
    return ""; /* accepts nothing: a K_CHOICE key missing above fails every value */
}

/* Whether v is one of the words of choices ("a, b, c"). */
static bool is_choice(const char *choices, struct ant_bytes v)
{
    for (const char *p = choices; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (v.len == n && memcmp(v.p, p, n) == 0) {
            return true;
        }
        p += n;
        p += strspn(p, ", ");
    }
    return false;
}

static bool is_name(struct ant_bytes v, size_t max, bool upper_ok)
{
    if (v.len == 0 || v.len > max) {
        return false;
    }
    for (size_t i = 0; i < v.len; i++) {
        uint8_t c = v.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0) ||
                  (upper_ok && c >= 'A' && c <= 'Z');
        if (!ok) {
            return false;
        }
    }
    return true;
}

static int set_str(struct ant_config *c, const struct key *k, struct ant_bytes v)
{
    char *dst = (char *)c + k->off;
    if (v.len >= k->size) {
        return -EINVAL;
    }
    memcpy(dst, v.p, v.len);
    dst[v.len] = '\0';
    return 0;
}

static int set_uint(struct ant_config *c, const struct key *k, uint64_t v)
{
    void *dst = (char *)c + k->off;
    if (k->size == sizeof(uint64_t)) {
        memcpy(dst, &v, sizeof(v));
    } else {
        unsigned u = (unsigned)v;
        memcpy(dst, &u, sizeof(u));
    }
    return 0;
}

/* Applies one value; on error fills why with what is wrong. */
static int apply(struct ant_config *c, const struct key *k, struct ant_bytes v, const char **why)
{
    uint64_t n;
    int lvl;
    char tmp[16];
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < 0x20 || v.p[i] == 0x7f) {
            *why = "control characters are not allowed";
            return -EINVAL;
        }
    }
    switch (k->kind) {
    case K_NAME:
        *why = "expected lower-case letters, digits and '-', at most 63";
        return is_name(v, 63, false) ? set_str(c, k, v) : -EINVAL;
    case K_REGION:
        *why = "expected letters, digits and '-', at most 32";
        return is_name(v, 32, true) ? set_str(c, k, v) : -EINVAL;
    case K_PATH:
        *why = "expected a non-empty path shorter than 1024 bytes";
        return v.len > 0 ? set_str(c, k, v) : -EINVAL;
    case K_UINT:
        *why = "expected a whole number in range";
        return ant_parse_u64(v, k->min, k->max, &n) < 0 ? -EINVAL : set_uint(c, k, n);
    case K_SIZE:
        *why = "expected a size such as 4096, 64K, 1M, 2G within range";
        return (ant_parse_size(v, k->max, &n) < 0 || n < k->min) ? -EINVAL : set_uint(c, k, n);
    case K_DURATION:
        *why = "expected a duration such as 30s, 5m, 2h, 1d within range";
        return (ant_parse_duration(v, k->max, &n) < 0 || n < k->min) ? -EINVAL
                                                                      : set_uint(c, k, n);
    case K_LISTEN:
        *why = "expected ADDRESS:PORT with a numeric IPv4 or [IPv6] address";
        return ant_listen_parse(v, c->listen_addr, &c->listen_port);
    case K_CHOICE:
        *why = choices_of(k); /* the caller says "expected one of" */
        return is_choice(*why, v) ? set_str(c, k, v) : -EINVAL;
    case K_LOGLEVEL:
        *why = "expected error, warn, info or debug";
        if (v.len >= sizeof(tmp)) {
            return -EINVAL;
        }
        memcpy(tmp, v.p, v.len);
        tmp[v.len] = '\0';
        if (ant_log_level_parse(tmp, &lvl) < 0) {
            return -EINVAL;
        }
        c->log_level = lvl;
        return 0;
    }
    return -EINVAL;
}

static struct ant_bytes trim(struct ant_bytes b)
{
    while (b.len > 0 && (b.p[0] == ' ' || b.p[0] == '\t')) {
        b.p++;
        b.len--;
    }
    while (b.len > 0 && (b.p[b.len - 1] == ' ' || b.p[b.len - 1] == '\t' ||
                         b.p[b.len - 1] == '\r')) {
        b.len--;
    }
    return b;
}

static bool bytes_eq(struct ant_bytes b, const char *s)
{
    return ant_bytes_eq_str(b, s);
}

int ant_config_parse(struct ant_bytes text, const char *fname, struct ant_config *c,
                     struct ant_diag *d)
{
    struct ant_bytes section = ANT_BYTES_NULL;
    bool seen[ANT_ARRAY_LEN(keys)] = {false};
    bool section_known = false;
    size_t off = 0;
    unsigned lineno = 0;
    if (text.len > ANT_CONFIG_MAX_BYTES) {
        ant_diag_set(d, "%s: larger than %u bytes", fname, ANT_CONFIG_MAX_BYTES);
        return -E2BIG;
    }
    while (off < text.len) {
        size_t end = off;
        while (end < text.len && text.p[end] != '\n') {
            end++;
        }
        lineno++;
        struct ant_bytes line = trim(ant_bytes_of(text.p + off, end - off));
        off = end + 1;
        if (end - (off - 1) > ANT_CONFIG_MAX_LINE || line.len > ANT_CONFIG_MAX_LINE) {
            ant_diag_set(d, "%s:%u: line longer than %u bytes", fname, lineno,
                         ANT_CONFIG_MAX_LINE);
            return -EINVAL;
        }
        if (line.len == 0 || line.p[0] == '#' || line.p[0] == ';') {
            continue;
        }
        if (memchr(line.p, '\0', line.len) != NULL) {
            ant_diag_set(d, "%s:%u: NUL byte in line", fname, lineno);
            return -EINVAL;
        }
        if (line.p[0] == '[') {
            if (line.p[line.len - 1] != ']') {
                ant_diag_set(d, "%s:%u: section header without ']'", fname, lineno);
                return -EINVAL;
            }
            section = trim(ant_bytes_of(line.p + 1, line.len - 2));
            section_known = false;
            for (size_t i = 0; i < ANT_ARRAY_LEN(keys); i++) {
                section_known = section_known || bytes_eq(section, keys[i].section);
            }
            if (!section_known) {
                ant_diag_set(d, "%s:%u: unknown section [%.*s]", fname, lineno,
                             (int)(section.len > 64 ? 64 : section.len), (const char *)section.p);
                return -EINVAL;
            }
            continue;
        }
        const uint8_t *eq = memchr(line.p, '=', line.len);
        if (eq == NULL) {
            ant_diag_set(d, "%s:%u: expected 'key = value'", fname, lineno);
            return -EINVAL;
        }
        struct ant_bytes name = trim(ant_bytes_of(line.p, (size_t)(eq - line.p)));
        struct ant_bytes val = trim(ant_bytes_of(eq + 1, line.len - (size_t)(eq - line.p) - 1));
        int shown = (int)(name.len > 64 ? 64 : name.len);
        if (!section_known) {
            ant_diag_set(d, "%s:%u: key '%.*s' outside any section", fname, lineno, shown,
                         (const char *)name.p);
            return -EINVAL;
        }
        size_t ki = ANT_ARRAY_LEN(keys);
        for (size_t i = 0; i < ANT_ARRAY_LEN(keys); i++) {
            if (bytes_eq(section, keys[i].section) && bytes_eq(name, keys[i].name)) {
                ki = i;
                break;
            }
        }
        if (ki == ANT_ARRAY_LEN(keys)) {
            ant_diag_set(d, "%s:%u: unknown key '%.*s' in [%.*s]", fname, lineno, shown,
                         (const char *)name.p, (int)section.len, (const char *)section.p);
            return -EINVAL;
        }
        if (seen[ki]) {
            ant_diag_set(d, "%s:%u: key '%s' set twice in [%s]", fname, lineno, keys[ki].name,
                         keys[ki].section);
            return -EINVAL;
        }
        seen[ki] = true;
        const char *why = "invalid value";
        if (apply(c, &keys[ki], val, &why) < 0) {
            ant_diag_set(d, "%s:%u: key '%s' in [%s]: bad value: %s%s", fname, lineno,
                         keys[ki].name, keys[ki].section,
                         keys[ki].kind == K_CHOICE ? "expected one of " : "", why);
            return -EINVAL;
        }
    }
    return 0;
}

int ant_config_load(int dirfd, const char *path, struct ant_config *c, struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_CONFIG_MAX_BYTES);
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : ant_read_all(fd, &raw);
    if (rc == -E2BIG) {
        ant_diag_set(d, "%s: larger than %u bytes", path, ANT_CONFIG_MAX_BYTES);
    } else if (rc < 0) {
        ant_diag_set(d, "%s: cannot read: %s", path, strerror(-rc));
    } else {
        rc = ant_config_parse(ant_buf_view(&raw), path, c, d);
    }
    ant_buf_fini(&raw);
    ant_close(fd);
    return rc;
}

static int render_value(struct ant_buf *out, const struct ant_config *c, const struct key *k)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    const char *base = (const char *)c + k->off;
    uint64_t v64 = 0;
    unsigned u = 0;
    switch (k->kind) {
    case K_NAME:
    case K_REGION:
    case K_PATH:
    case K_CHOICE:
        return ant_buf_append_str(out, base);
    case K_LISTEN:
        return strchr(c->listen_addr, ':') != NULL
                   ? ant_buf_printf(out, "[%s]:%u", c->listen_addr, c->listen_port)
                   : ant_buf_printf(out, "%s:%u", c->listen_addr, c->listen_port);
    case K_LOGLEVEL:
        return ant_buf_append_str(out, levels[c->log_level & 3]);
    case K_UINT:
    case K_SIZE:
    case K_DURATION:
        if (k->size == sizeof(uint64_t)) {
            memcpy(&v64, base, sizeof(v64));
        } else {
            memcpy(&u, base, sizeof(u));
            v64 = u;
        }
        if (k->kind == K_SIZE) {
            static const char units[] = "KMGT";
            int i = -1;
            while (v64 >= 1024 && v64 % 1024 == 0 && i < 3) {
                v64 /= 1024;
                i++;
            }
            return i < 0 ? ant_buf_printf(out, "%llu", (unsigned long long)v64)
                         : ant_buf_printf(out, "%llu%c", (unsigned long long)v64, units[i]);
        }
        if (k->kind == K_DURATION) {
            if (v64 != 0 && v64 % 86400 == 0) {
                return ant_buf_printf(out, "%llud", (unsigned long long)(v64 / 86400));
            }
            if (v64 != 0 && v64 % 3600 == 0) {
                return ant_buf_printf(out, "%lluh", (unsigned long long)(v64 / 3600));
            }
            if (v64 != 0 && v64 % 60 == 0) {
                return ant_buf_printf(out, "%llum", (unsigned long long)(v64 / 60));
            }
            return ant_buf_printf(out, "%llus", (unsigned long long)v64);
        }
        return ant_buf_printf(out, "%llu", (unsigned long long)v64);
    }
    return -EINVAL;
}

int ant_config_render(const struct ant_config *c, struct ant_buf *out)
{
    const char *cur = NULL;
    int rc = ant_buf_append_str(out, "# antenna site configuration. Every option is listed with "
                                     "its value;\n# relative paths are relative to this "
                                     "site's folder. Unknown keys are errors.\n");
    for (size_t i = 0; i < ANT_ARRAY_LEN(keys) && rc == 0; i++) {
        if (cur == NULL || strcmp(cur, keys[i].section) != 0) {
            cur = keys[i].section;
            rc = ant_buf_printf(out, "\n[%s]\n", cur);
        }
        rc = rc < 0 ? rc : ant_buf_printf(out, "# %s\n%s = ", keys[i].help, keys[i].name);
        rc = rc < 0 ? rc : render_value(out, c, &keys[i]);
        rc = rc < 0 ? rc : ant_buf_append_str(out, "\n");
    }
    return rc;
}

unsigned ant_config_http_threads(const struct ant_config *c)
{
    if (c->threads != 0) {
        return c->threads;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = 2u * (unsigned)(ncpu > 0 ? ncpu : 2);
    return n < 4 ? 4 : n > 256 ? 256 : n;
}
