/* Stage jobs (DESIGN.md §7, issue 6): put (part of) a dataset into this site's scratch, decrypted
 * or re-encrypted for a recipient, on the daemon's worker threads.
 *
 * A job lives in antenna.db (tables stage_jobs and stage_job_files, schema steps 3, 6 and 8). Its
 * file list is fixed at admission from the catalog (optionally narrowed by path globs), which
 * also reserves its output size against the tenant's scratch quota. States:
 *
 * A stage-out (mode encrypt, ant_jobs_submit_out) goes the other way, into a draft dataset.
 *
 * A remote job (ant_jobs_submit_remote, issue 7 part 4) stages a peer's dataset: admission
 * fetches and verifies the peer's signed manifest (the peer decides and audits), the runner
 * first pulls the files with ant_fed_pull (staging/fetch.h) into the archive cache (archive/fed,
 * kept once: a file already there is not transferred again), then the engine writes scratch
 * from those copies exactly as for a local job. Same states, token, purge and resume. With a
 * cache limit (conf.fed_cache_max) the cache is trimmed to it, least recently used copies
 * first, at open and when the last running remote job ends, never while a remote job runs (it
 * may be reading any copy); a steady stream of overlapping remote jobs is paused for a pass
 * every ANT_FED_CACHE_TRIM_EVERY of them.
 *
 *     queued -> running -> ready -> expired            (ready: output visible, token issued)
 *        |         |  \-> failed -> expired            (failed: nothing left in scratch)
 *        |         \---> queued                        (daemon stopped or crashed: resumes)
 *        \-> cancelled / expired      running|ready -> cancelled (output removed)
 *
 * Output: <scratch>/<tenant>/<job-id>/<logical path>, written by the engine (staging/engine.h)
 * into <scratch>/<tenant>/.<job-id>.partial and renamed once complete and durable, so a reader
 * never sees a partial job. Each file checkpointed durable by the engine is marked `done`, and
 * a big file's durable prefix is recorded as it grows (resume_bytes); a restarted daemon
 * requeues its running jobs, the engine keeps their done files and continues big files after
 * their recorded prefix.
 *
 * Time to live: a job expires `ttl` after it became ready (after admission while not ready); the
 * purger removes its output, marks it expired and audits the purge (action "stage.purge").
 *
 * Threads: every function may be called from any thread (one mutex guards the job connection);
 * ant_jobs_start/stop/close from the owning thread only. */
#ifndef ANT_STAGING_JOBS_H
#define ANT_STAGING_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "crypto/base/base.h"
#include "crypto/keys.h"
#include "policy/store.h"
#include "staging/engine.h"
#include "staging/fetch.h"

struct ant_audit;

/* "job_" + 16 hex */
#define ANT_JOB_ID_LEN 20
#define ANT_JOB_GLOBS_MAX 32
#define ANT_JOB_GLOB_MAX 1024
/* At most this many files per job (a bound on the admission transaction and the status body). */
#define ANT_JOB_FILES_MAX 200000
/* The status document lists at most this many files (failed ones first). */
#define ANT_JOB_STATUS_FILES_MAX 1000
#define ANT_JOB_TTL_MIN 1
#define ANT_JOB_TTL_MAX (90 * 86400)
/* A cached copy of a peer's file used within this many seconds is never evicted: a pull that
 * another process (`antenna admin peer pull`) is reading from, or a job's copies that a next
 * job of the same dataset will want again, stay even past the cache limit. */
#define ANT_FED_CACHE_GRACE_S 3600
/* No eviction pass runs while a remote job runs, so remote jobs that overlap without a pause
 * would postpone it for ever. Once this many remote jobs have ended with the pass skipped
 * (others still running), remote jobs about to start wait (claimed, before their pull) until
 * the running ones have ended; the last of them runs the pass, and the waiting ones go on. */
#define ANT_FED_CACHE_TRIM_EVERY 8

enum ant_job_state {
    ANT_JOB_QUEUED = 0,
    ANT_JOB_RUNNING,
    ANT_JOB_READY,
    ANT_JOB_FAILED,
    ANT_JOB_CANCELLED,
    ANT_JOB_EXPIRED,
};
const char *ant_job_state_name(enum ant_job_state s);
ANT_MUST_CHECK int ant_job_state_parse(const char *s, enum ant_job_state *out);
/* The state machine above: may a job in `from` move to `to`? */
bool ant_job_transition_is_allowed(enum ant_job_state from, enum ant_job_state to);
/* ready, failed, cancelled and expired: no worker will touch the job again. */
bool ant_job_state_is_final(enum ant_job_state s);

/* What test_fed_step (ant_jobs_conf) is told about remote jobs and the archive cache. */
enum ant_jobs_fed_step {
    ANT_JOBS_FED_HELD = 0,     /* a remote job waits for the running ones to end and the pass */
    ANT_JOBS_FED_RUNNING,      /* a remote job is counted running: it is about to pull */
    ANT_JOBS_FED_TRIM_SKIPPED, /* a remote job ended while others run: no pass */
    ANT_JOBS_FED_TRIMMED,      /* a pass ran (ant_fed_cache_evict; job_id NULL at open) */
};

enum ant_job_mode {
    ANT_JOB_DECRYPT = 0, /* plaintext into this site's scratch */
    ANT_JOB_REENCRYPT,   /* Crypt4GH for recipient_pk, body unchanged */
    ANT_JOB_ENCRYPT,     /* stage-out: scratch files encrypted into a draft dataset */
};
const char *ant_job_mode_name(enum ant_job_mode m);
ANT_MUST_CHECK int ant_job_mode_parse(const char *s, enum ant_job_mode *out);

/* The scratch bytes a file of `size` plaintext bytes takes in `mode` (a Crypt4GH copy carries a
 * header and 28 bytes per 64 KiB segment): what admission reserves against the quota. */
uint64_t ant_job_output_size(enum ant_job_mode m, uint64_t size);

struct ant_jobs_conf {
    int dirfd;               /* the site folder, holding antenna.db (migrated) */
    const char *db_name;     /* NULL: "antenna.db" */
    int archive_fd;          /* archive root: <dataset-id>/<storage-id>.c4gh */
    int scratch_fd;          /* scratch root: <tenant>/<job-id>/... */
    const struct ant_key *kx;  /* the site's X25519 key the archive is encrypted for */
    struct ant_audit *audit; /* purge and completion events; required */
    const char *site_id;     /* for audit details; copied */
    unsigned workers;        /* job runner threads; 0: 2 */
    uint64_t default_quota;  /* scratch bytes per tenant without a scratch_quotas row; 0: none */
    unsigned max_jobs;       /* queued, running and ready jobs per tenant; 0: no limit */
    unsigned default_ttl_s;  /* 0: 7 days */
    unsigned purge_interval_s; /* 0: 10 */
    const struct ant_engine_opts *engine; /* NULL: defaults (io_engine auto) */
    struct ant_store_pool *pool; /* the catalog, where stage-out registers files; NULL: no
                                    stage-out (-ENOTSUP) */
    /* remote jobs: this site's keys sign the federation tokens (as site_id) and open the
     * copies; with `pool` (peers, fed_cache). NULL: remote jobs are refused (-ENOTSUP). */
    const struct ant_site_keys *keys;
    const struct ant_fetch_opts *fetch; /* remote pulls; NULL: defaults; copied */
    /* bytes of peers' copies kept in archive/fed ([federation] cache_max); 0: no limit. Past
     * it, the least recently used copies not used for ANT_FED_CACHE_GRACE_S are evicted
     * (ant_fed_cache_evict) at ant_jobs_open and when a remote job ends with no other remote
     * job running (see ANT_FED_CACHE_TRIM_EVERY). Needs `pool`. */
    uint64_t fed_cache_max;
    /* testing only: copy archive files as they are (ANT_XFORM_RAW, catalog SHA-256 checked),
     * so the runner can be tested without Crypt4GH; kx may then be NULL */
    bool test_raw;
    /* testing only: called on the runner thread after each file is checkpointed done */
    void (*test_file_done)(void *arg, const char *job_id, uint64_t files_done);
    /* testing only: called on the runner thread after a resume mark (the first `bytes` bytes
     * of file idx durable, ant_stage_job.on_mark) is recorded, without the jobs mutex held: it
     * may block (holding that job's engine), and must return once ant_jobs_is_stopping */
    void (*test_file_mark)(void *arg, const char *job_id, size_t idx, uint64_t bytes);
    /* testing only: called at each step of enum ant_jobs_fed_step, on the thread that takes it
     * (a runner, or ant_jobs_open's caller for the pass at open), without the jobs mutex held:
     * it may block (holding that job at that step) but must not call ant_jobs_* */
    void (*test_fed_step)(void *arg, const char *job_id, enum ant_jobs_fed_step step);
    void *test_arg;
};

struct ant_jobs;

/* Opens the job table on its own connection, creates the engine, and requeues jobs left running
 * by a stopped or crashed daemon (they resume when the workers start). Sweeps what killed pulls
 * left in archive/fed and trims the cache to conf.fed_cache_max (a failure there is logged,
 * not returned). Errors: -ENOTSUP the database has no job tables (schema older than step 8),
 * -EINVAL bad conf, errors of ant_engine_new, -EIO / -ENOMEM. */
ANT_MUST_CHECK int ant_jobs_open(const struct ant_jobs_conf *c, struct ant_jobs **out);
/* Starts the runner threads and the purger. -EALREADY if started; -errno of pthread_create. */
ANT_MUST_CHECK int ant_jobs_start(struct ant_jobs *j);
/* Stops the threads: running jobs are interrupted (the engine's stop: finished files made
 * durable and recorded, big files' durable prefixes recorded as resume marks) and go back to
 * queued; the next start keeps those files and continues those big files from their marks.
 * Accepts a jobs table that was never started. */
void ant_jobs_stop(struct ant_jobs *j);
/* Whether ant_jobs_stop has begun (on an open table): once true, every running job's stop flag
 * is set. For a hook that holds a runner (conf.test_file_mark) and must let it go at a stop.
 * Any thread. */
bool ant_jobs_is_stopping(struct ant_jobs *j);
void ant_jobs_close(struct ant_jobs *j); /* stops first; accepts NULL */
/* "io_uring" or "threads". */
const char *ant_jobs_backend(const struct ant_jobs *j);

/* What this jobs table's eviction passes (conf.fed_cache_max) removed since ant_jobs_open; a
 * pass of another process (`antenna admin peer pull`) is not counted. Any thread. */
struct ant_jobs_fed_stats {
    uint64_t evicted_files;
    uint64_t evicted_bytes;
};
void ant_jobs_fed_stats(struct ant_jobs *j, struct ant_jobs_fed_stats *out);

struct ant_job_request {
    const struct ant_principal *who; /* owner; its tenant pays the quota and owns the scratch */
    const char *dataset_id;          /* the caller has checked ant_decide(ANT_ACT_STAGE) */
    const char *const *globs;        /* fnmatch(3) patterns, no flags: '*' also matches '/' */
    unsigned nglobs;                 /* 0: every file of the dataset */
    enum ant_job_mode mode;
    const uint8_t *recipient_pk;     /* reencrypt: 32-byte X25519 public key; else NULL */
    uint64_t ttl_s;                  /* 0: the default */
    int64_t now;                     /* unix s; 0: now */
    /* remote jobs only (ant_jobs_submit_remote): dataset_id is the peer's dataset */
    const char *peer_id;             /* the peer holding it, a row of the peers table */
    const char *purpose;             /* the stated purpose (a DUO code) the token carries */
};

/* Admits a job: lists the dataset's files through `st` (the catalog), keeps those matching a
 * glob, checks the tenant's scratch quota and records the job as queued. id_out receives the
 * job id. Errors, each with diag saying what to change: -EINVAL bad request (no tenant, bad
 * glob, recipient missing or given for decrypt, ttl out of range, or the files picked hold
 * both "a" and "a/b": a catalog from before that was refused), -ENOENT the dataset has no
 * file matching (or no file at all), -E2BIG more than ANT_JOB_FILES_MAX files, -EDQUOT the
 * job's output would exceed the tenant's quota, -EBUSY / -EIO database. */
ANT_MUST_CHECK int ant_jobs_submit(struct ant_jobs *j, struct ant_store *st,
                                   const struct ant_job_request *rq,
                                   char id_out[ANT_JOB_ID_LEN + 1], struct ant_diag *d);

/* Admits a remote job for rq->who (a member of a tenant: the local right to stage a peer's
 * dataset is only that; the peer decides `transfer` under its own policy). Fetches the peer's
 * signed manifest with a federation token for rq->who (sub = its id, tenant "<tenant>@<site>",
 * rq->purpose) under a new transfer id, written to transfer_out (also on failure, once drawn),
 * keeps the files matching a glob, checks the quota against the manifest's sizes and records
 * the job with the files' digests. Errors with diag: -ENOTSUP remote jobs not configured,
 * -EINVAL bad request (no purpose, ...), -ENXIO rq->peer_id is not a peer of this site, the
 * peer's refusals as ant_fetch_manifest_get (-EACCES its 403 with its reason, -ENOENT its 404,
 * -EPERM it refused this site's token, -EKEYREJECTED bad signature, -EIO unreachable), then as
 * ant_jobs_submit. */
ANT_MUST_CHECK int ant_jobs_submit_remote(struct ant_jobs *j, struct ant_store *st,
                                          const struct ant_job_request *rq,
                                          char id_out[ANT_JOB_ID_LEN + 1], char transfer_out[65],
                                          struct ant_diag *d);

/* Stage-out (issue 6 part 4): the regular files beneath <scratch>/<tenant>/<source> become
 * files of a draft dataset, encrypted for the site's key into <archive>/<dataset-id>/, each
 * registered in the catalog with its digests as an upload is (the row is committed only after
 * the file is in place and durable). Logical paths are the files' paths inside `source`. */
struct ant_job_out_request {
    const struct ant_principal *who; /* owner; `source` is in its tenant's scratch */
    const char *source;              /* a folder, relative to <scratch>/<tenant> */
    const char *dataset_id;          /* a draft; the caller has checked ant_decide(WRITE) */
    int64_t now;                     /* unix s; 0: now */
};
/* Admits a stage-out job. Errors with diag: -EINVAL bad source path, a symlink or a file name
 * the catalog refuses beneath it; -ENOENT no such folder or no file in it; -EEXIST a path is
 * already in the dataset, or a file of the dataset is in its way ("a" for "a/b" or the reverse:
 * ant_store_file_conflict); -E2BIG too many files; -ENOTSUP no catalog pool configured. */
ANT_MUST_CHECK int ant_jobs_submit_out(struct ant_jobs *j, struct ant_store *st,
                                       const struct ant_job_out_request *rq,
                                       char id_out[ANT_JOB_ID_LEN + 1], struct ant_diag *d);

/* A snapshot of one job. */
struct ant_job_info {
    char id[ANT_JOB_ID_LEN + 1];
    char tenant[ANT_NAME_MAX + 1];
    char principal[ANT_NAME_MAX + 1];
    char dataset_id[ANT_ID_MAX + 1]; /* remote job: the peer's dataset id */
    char peer_id[ANT_NAME_MAX + 1];  /* remote job: the peer; "" for a local job */
    char remote_name[ANT_NAME_MAX + 1];
    char transfer_id[65];            /* remote job: the id both sites audit under */
    char purpose[ANT_DUO_CODE_MAX + 1];
    enum ant_job_state state;
    enum ant_job_mode mode;
    uint64_t files_total, files_done, bytes_total, bytes_done, scratch_bytes;
    uint64_t ttl_s;
    int64_t created, started, finished, expires; /* unix s; 0: not yet */
    char error[256];
};

/* -ENOENT unknown job. */
ANT_MUST_CHECK int ant_jobs_get(struct ant_jobs *j, const char *id, struct ant_job_info *out);
/* The status document of GET /v1/stage/{id}: id, dataset_id, tenant, owner, mode, state, error,
 * files_total, files_done, bytes_total, bytes_done, rate_bytes_per_s, eta_s, created, started,
 * finished, expires (RFC 3339), scratch_path (relative to the scratch root) and files [{path,
 * size, state, bytes_done, error, resume_bytes (the durable prefix of a pending file's partial
 * copy that a restart continues after; 0: none)}] (at most ANT_JOB_STATUS_FILES_MAX, failed
 * first); a remote job also site, dataset_name, transfer_id, purpose, phase ("transfer" while
 * pulling, "stage" while writing scratch) and bytes_received (this run's pull). -ENOENT. */
ANT_MUST_CHECK int ant_jobs_status_json(struct ant_jobs *j, const char *id, int64_t now,
                                        json_t **out);
/* The jobs of one owner (principal NULL: every job of the tenant; tenant NULL too: all), newest
 * first, at most `limit` (1..1000): [{id, dataset_id, mode, state, files_total, bytes_total,
 * created, expires, error}]. */
ANT_MUST_CHECK int ant_jobs_list_json(struct ant_jobs *j, const char *tenant,
                                      const char *principal, unsigned limit, json_t **out);
/* The files of a job for a puller: [{path, size, sha256}] in job order, sha256 (hex, of the
 * plaintext) only for decrypt jobs. -ENOENT unknown job. */
ANT_MUST_CHECK int ant_jobs_manifest_json(struct ant_jobs *j, const char *id, json_t **out);
/* Cancels a queued or running job, or withdraws a ready one: its output (partial or complete)
 * is removed and it becomes cancelled. Waits until a running job has stopped. -ENOENT unknown,
 * -EALREADY failed, cancelled or expired already, or a stage-out that has finished (its files
 * are the dataset's). */
ANT_MUST_CHECK int ant_jobs_cancel(struct ant_jobs *j, const char *id, int64_t now);
/* One purge pass: every job past its expiry (not running) loses its output, becomes expired, and
 * the purge is audited. A job whose event cannot be audited is left for the next pass. Returns
 * the number of jobs purged or a negative errno. The purger thread calls it every interval. */
ANT_MUST_CHECK int ant_jobs_purge(struct ant_jobs *j, int64_t now);
/* Runs the oldest queued job to its end on the calling thread (what a worker does); *ran says
 * whether there was one. Returns 0 or a database error; the job's own outcome is in its state. */
ANT_MUST_CHECK int ant_jobs_run_next(struct ant_jobs *j, bool *ran);

/* Scratch quota of a tenant: a row in scratch_quotas, else the configured default. */
ANT_MUST_CHECK int ant_jobs_quota_set(struct ant_jobs *j, const char *tenant, uint64_t bytes);
/* *quota (0: unlimited) and *used: the reserved output of its queued, running and ready jobs. */
ANT_MUST_CHECK int ant_jobs_quota_get(struct ant_jobs *j, const char *tenant, uint64_t *quota,
                                      uint64_t *used);

/* Opens the output folder of a ready job, <scratch>/<tenant>/<id>, O_DIRECTORY beneath the
 * scratch root (no symlink followed): for serving its files. -ENOENT not ready or gone. */
ANT_MUST_CHECK int ant_jobs_open_output(struct ant_jobs *j, const struct ant_job_info *info,
                                        int *fd_out);

#endif
