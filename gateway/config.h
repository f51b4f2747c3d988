/* antenna.conf: an INI file of [section] and `key = value` lines ('#' or ';' start a comment).
 * Every key is known in advance: an unknown section or key, a bad value or a duplicate is an
 * error naming the file, the line and the key. Relative paths are relative to the site folder. */
#ifndef ANT_CONFIG_H
#define ANT_CONFIG_H

#include "crypto/base/base.h"

#include <stdbool.h>
#include <stdint.h>

/* A config file larger than this is refused before it is parsed. */
#define ANT_CONFIG_MAX_BYTES (256u * 1024u)
#define ANT_CONFIG_MAX_LINE 4096u

struct ant_config {
    /* [site] */
    char site_id[64];
    char region[33];
    /* [server] */
    char listen_addr[64]; /* IPv4 or IPv6 literal */
    uint16_t listen_port;
    unsigned threads; /* 0: ant_config_http_threads() picks */
    unsigned connection_limit;
    unsigned per_ip_connection_limit;
    unsigned connection_timeout_s;
    char event_loop[8]; /* poll | epoll: MHD_USE_POLL or MHD_USE_EPOLL in every worker */
    uint64_t max_header_bytes; /* per-connection memory for headers */
    uint64_t max_json_body;
    unsigned shutdown_grace_s;
    unsigned rate_limit_per_s; /* per principal; 0 disables */
    unsigned rate_limit_burst;
    char tls_cert[1024];
    char tls_key[1024];
    /* [storage] */
    char archive_dir[1024];
    char scratch_dir[1024];
    uint64_t max_upload_bytes;
    /* [audit] */
    unsigned checkpoint_every;
    unsigned checkpoint_seconds;
    unsigned audit_max_batch;
    /* [staging] */
    char io_engine[16]; /* auto | uring | threads */
    char direct_io[8];  /* auto | off: O_DIRECT for the engine's outputs and aligned inputs */
    uint64_t resume_min;   /* ant_engine_opts.resume_min: files this big record resume marks */
    uint64_t resume_every; /* ... about every this many bytes */
    unsigned stage_workers;
    uint64_t default_scratch_quota;
    unsigned max_stage_jobs;
    unsigned default_ttl_s;
    unsigned purge_interval_s;
    /* [federation]: how remote stage jobs pull from a peer */
    unsigned fed_connections; /* transfers at once; 0: the fetcher's default (8) */
    uint64_t fed_max_rate;    /* bytes/s per connection; 0: no limit */
    uint64_t fed_cache_max;   /* bytes of peers' copies kept in archive/fed; 0: no limit */
    /* [log] */
    int log_level;
    unsigned log_flush_ms; /* info lines buffered up to this long; 0: written at once */
};

/* Fills every field with its default (the values `antenna init` writes out). */
void ant_config_defaults(struct ant_config *c);

/* Parses text into c (which should hold the defaults). `fname` names the file in messages.
 * Returns 0, or -EINVAL with diag "FILE:LINE: key 'k': what is wrong". */
ANT_MUST_CHECK int ant_config_parse(struct ant_bytes text, const char *fname, struct ant_config *c,
                                    struct ant_diag *d);

/* Reads and parses a file (relative to dirfd or absolute). -errno when it cannot be read,
 * -E2BIG past ANT_CONFIG_MAX_BYTES, -EINVAL on a bad line; diag says which. */
ANT_MUST_CHECK int ant_config_load(int dirfd, const char *path, struct ant_config *c,
                                   struct ant_diag *d);

/* Writes the full, commented configuration for a new site into out. */
ANT_MUST_CHECK int ant_config_render(const struct ant_config *c, struct ant_buf *out);

/* The HTTP worker threads to run: `threads`, or for 0, 2 per core (at least 4). The read-only
 * routes do not wait on a thread for their audit event's group commit (their answers are held
 * and the connection suspended: gateway/server.h), so the requests in flight, and the commit
 * batches, grow without threads; writes and downloads still wait on theirs, and two workers per
 * core (four at least) keep one slow commit from stalling the others. More workers cost CPU in
 * thread switches: 4 per core ~20 % more per small request than 2, 16 per core more again
 * (docs/benchmarks.md). */
unsigned ant_config_http_threads(const struct ant_config *c);

/* Parses "ADDR:PORT" / "[V6]:PORT"; -EINVAL otherwise. addr needs 64 bytes. */
ANT_MUST_CHECK int ant_listen_parse(struct ant_bytes s, char addr[64], uint16_t *port);

#endif
