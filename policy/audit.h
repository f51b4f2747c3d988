/* The audit chain in audit.db (DESIGN.md §6).
 *
 * Every event is hash-chained, h_0 = 32 zero bytes. Events written since schema step 3 ("v2")
 * carry 16 bytes of salt (keyed BLAKE2b of the seq under a random key of the writing handle,
 * never stored: unpredictable to readers, no system call per event), and chain through a commitment to the event:
 *   c_n = SHA-256("antenna-audit-commit-v2" || salt_n || canonical bytes of event n)
 *   h_n = SHA-256(h_{n-1} || "antenna-audit-link-v2" || u64le n || c_n)
 * so that an export may show an event as (seq, c_n, h_n) only and every link still checks; the
 * salt keeps c_n from confirming a guess of the event. Events written before ("v1") chain as
 * h_n = SHA-256(h_{n-1} || canonical bytes of event n); a v1 event never follows a v2 one.
 * Whenever `checkpoint_every` events or `checkpoint_seconds` seconds have gone
 * unsigned, the site signs (seq, h_seq, time, previous checkpoint seq) with its Ed25519 key;
 * signing the previous checkpoint's seq makes a dropped checkpoint visible. Triggers refuse
 * UPDATE and DELETE. One writer thread appends in group commits; ant_audit_append() returns only
 * once its event is durable, so a caller that gets an error releases nothing. Durable: the
 * writer commits in WAL mode with synchronous=NORMAL (the COMMIT writes the WAL, no fsync), then
 * fdatasyncs the WAL; a caller is released only after an fdatasync that started after its
 * commit returned, so a power loss cannot take back an event a caller was told about. What is
 * queued meanwhile forms the next group. A failed fdatasync fails
 * every caller waiting for it or queued behind it and poisons the handle: every later append
 * fails with -EIO until it is closed and reopened (the events it committed stay in the chain:
 * logged, never confirmed; over-logging, never under-logging). Several processes may append to
 * one file (the daemon and an admin command): each batch reads the chain head inside BEGIN
 * IMMEDIATE, so the chain stays linear. A second thread of the handle wakes the blocking callers
 * of each durable (or failed) group commit, so that waking them overlaps with the next commit
 * and fdatasync; the callbacks of ant_audit_append_async run on the writer thread itself.
 *
 * The log never holds a secret: append refuses (-EINVAL) any field that looks like an API key,
 * a bearer token, a JWT or a PEM block; put key ids in events, never keys.
 *
 * Threads: everything taking a `struct ant_audit *` may be called from any thread. */
#ifndef ANT_AUDIT_H
#define ANT_AUDIT_H

#include <jansson.h>

#include "crypto/base/base.h"
#include "crypto/keys.h"

#ifndef ANT_STORE_CREATE
#define ANT_STORE_CREATE 1u /* as in policy/store.h: create the file (must not exist) */
#endif

struct ant_audit_opts {
    unsigned checkpoint_every;   /* events; 0: 1000 */
    unsigned checkpoint_seconds; /* 0: 60 */
    unsigned max_batch;          /* events per group commit; 0: 1024 */
    /* The secondary indexes (actor, tenant, dataset) are built in batches by the writer, once
     * index_batch events wait or the oldest has waited index_delay_ms (and when the handle
     * closes); queries scan the events not indexed yet. */
    unsigned index_batch;    /* 0: 512 */
    unsigned index_delay_ms; /* 0: 250 */
    /* A thread of the handle copies the WAL into the database (a PASSIVE WAL checkpoint, on a
     * connection of its own) once a commit leaves this many pages in it, so no group commit
     * waits for the copy and its fsync. */
    unsigned wal_checkpoint_pages; /* 0: 4000 */
};

enum ant_audit_decision {
    ANT_AUDIT_DENY = 0,
    ANT_AUDIT_ALLOW = 1,
    ANT_AUDIT_INFO = 2, /* not a decision: something happened (purge, start-up, key created) */
};

/* Field limits; longer values are refused with -E2BIG. */
#define ANT_AUDIT_FIELD_MAX 256
#define ANT_AUDIT_DETAIL_MAX 8192
#define ANT_AUDIT_HASH_LEN 32
#define ANT_AUDIT_SALT_LEN 16

/* One event. All strings are borrowed for the call, may be NULL (absent) and must be UTF-8.
 * The writer sets the time (milliseconds since the epoch, never before the previous event of
 * the file), so time order and sequence order agree. */
struct ant_audit_event {
    const char *request_id;
    const char *actor;         /* principal id, or peer site id */
    const char *tenant;        /* the actor's tenant */
    const char *credential;    /* key id ("3fa9..."), "oidc:<issuer>", "job:<id>": never a secret */
    const char *action;        /* "read", "stage", "admin.key.create", ... */
    const char *resource_kind; /* "dataset", "file", "grant", "key", "tenant", "job", ... */
    const char *resource_id;
    const char *dataset_id;
    enum ant_audit_decision decision;
    const char *reason;   /* stable reason code from the decision function */
    const char *transfer; /* transfer or stage job id, shared by both sites */
    const char *detail;   /* a JSON object as text (kept byte for byte), or NULL */
};

struct ant_audit; /* thread-safe; owns the writer thread */

/* Opens (ANT_STORE_CREATE: creates; the file must not exist) the audit database `name` under
 * dirfd (AT_FDCWD: cwd) and brings its schema up to date (PRAGMA user_version migrations).
 * `sign` is borrowed and must outlive the handle; NULL opens it for query, export and verify
 * only (append gives -EROFS). `opts` may be NULL (defaults). Errors: -ENOENT / -EEXIST (file),
 * -EBADMSG not an audit database, -ENOTSUP schema newer than this binary, -EBUSY, -EIO, -ENOMEM. */
ANT_MUST_CHECK int ant_audit_open(int dirfd, const char *name, unsigned flags,
                                  const struct ant_signkey *sign, const struct ant_audit_opts *opts,
                                  struct ant_audit **out);
/* Drains the queue, writes a final checkpoint if events are unsigned, stops the writer. Must
 * not race with calls on the same handle. Accepts NULL. */
void ant_audit_close(struct ant_audit *a);

/* Blocks until the event is durable; returns its seq (>= 1) or a negative errno, and then the
 * caller must release nothing: -EINVAL a field is malformed (bad UTF-8, detail not a JSON
 * object, decision out of range) or looks like a secret, -E2BIG a field is too long, -EROFS
 * opened without a key, -ESHUTDOWN closing, -EIO / -ENOSPC / -EBUSY the write failed (the whole
 * group commit was rolled back: the chain is as before), or the fdatasync of the WAL failed
 * (its errno; the event may be in the chain, unconfirmed) or failed earlier on this handle
 * (-EIO until reopened). */
ANT_MUST_CHECK int64_t ant_audit_append(struct ant_audit *a, const struct ant_audit_event *ev);
/* Whether s holds what an event field may not (the append refuses it with -EINVAL): an API key
 * "ak_<hex>_<32+ hex>", "Bearer " and a credential, a JWT ("eyJ...eyJ"), a PEM block. For
 * values that are checked before they reach the log (file paths: ant_path_is_valid). */
bool ant_audit_looks_secret(const char *s);
/* Called exactly once, on the audit writer thread, when the event is durable (seq > 0) or its
 * group commit failed (negative errno; nothing of it is in the chain). It must not block and
 * must not call the audit API. */
typedef void (*ant_audit_done_fn)(void *arg, int64_t seq);
/* Queues a copy of ev (fields copied: ev may be freed on return) and returns 0; done(arg, seq)
 * follows. A negative errno (-EINVAL a secret-looking field, -ENOTSUP no key, -ESHUTDOWN
 * closing, -EIO an fdatasync failed on this handle, -ENOMEM) means refused now and done is
 * never called. */
ANT_MUST_CHECK int ant_audit_append_async(struct ant_audit *a, const struct ant_audit_event *ev,
                                          ant_audit_done_fn done, void *arg);
/* The fine print of ant_audit_append_async: the event goes through the same checks, queue and
 * group commits as ant_audit_append (so -EINVAL also covers any malformed field and -E2BIG a
 * field that is too long); -ENOMEM is also the answer while ANT_AUDIT_QUEUE_MAX events wait,
 * which bounds the memory a stalled disk can pin (an event counts until its done returned).
 * A done that blocks holds up every caller behind it. ant_audit_close() first writes every
 * event queued before it, so each done still comes (with a seq, or the error of its commit). */
#define ANT_AUDIT_QUEUE_MAX (64 * 1024)
/* Appends n events (1..max_batch) atomically in one commit: they get consecutive seqs, the first
 * is returned. Same errors; for bulk producers (imports, benchmarks) that cannot use threads. */
ANT_MUST_CHECK int64_t ant_audit_append_many(struct ant_audit *a, const struct ant_audit_event *evs,
                                             size_t n);
/* Signs a checkpoint now if events are unsigned (also those of other processes); 0 or
 * negative errno as append. */
ANT_MUST_CHECK int ant_audit_checkpoint(struct ant_audit *a);

/* For /metrics: events waiting, mean seconds of the last group commits (EWMA; -1 before the
 * first), group commits so far. Never fails. */
struct ant_audit_stats {
    int64_t queue_depth;
    double commit_seconds; /* inserts and COMMIT (WAL written, not yet synced) */
    uint64_t commits;
    double sync_seconds; /* fdatasync of the WAL (EWMA; -1 before the first) */
    uint64_t syncs;
    int failed; /* 0, or the negative errno of the fdatasync that failed: every append is
                   refused until the handle is reopened (the daemon restarted) */
};
void ant_audit_stats(struct ant_audit *a, struct ant_audit_stats *out);

/* --- queries --- */
struct ant_audit_query {
    int64_t from_ms, to_ms;                           /* time in [from, to); 0: open */
    const char *actor, *tenant, *dataset_id, *action; /* NULL: any; else exact match */
    const char *decision;                             /* NULL: any; "allow" | "deny" | "info" */
    int64_t after_seq;                                /* cursor: 0, or *next of the last page */
    unsigned limit;                                   /* 1..1000; 0: 100 */
};
/* Sets *out to a new JSON array (caller json_decref()s) of event objects in sequence order,
 * each as one export line (ant_audit_export) without its "type" and "salt" members; *next to
 * the cursor of the next page, or 0 when there is none. -EINVAL bad filter (limit > 1000,
 * unknown decision, to < from), -EIO, -ENOMEM. Reads the indexed events through events_by (the
 * most selective of dataset_id, actor, tenant given), then scans those not indexed yet; time
 * bounds by binary search over seq. */
ANT_MUST_CHECK int ant_audit_query_run(struct ant_audit *a, const struct ant_audit_query *q,
                                       json_t **out, int64_t *next);

/* --- verification --- */
struct ant_audit_report {
    int64_t events;        /* events checked */
    int64_t checkpoints;   /* checkpoints whose signature and hash checked */
    int64_t last_seq;      /* last event seq */
    int64_t signed_seq;    /* last seq covered by a valid checkpoint */
    int64_t first_bad_seq; /* 0: none; else the first event (or checkpoint) seq that fails */
    int64_t line;          /* exports: the line of the first failure (1-based), else 0 */
    char what[160];        /* what failed at first_bad_seq */
    /* Tenant-scoped exports: events shown only as their seq and hashes ("redacted"; counted in
     * `events` too), and events shown in full that no checked link ties to a signed checkpoint:
     * a v1 event shown redacted follows them before the next checkpoint, and its link cannot be
     * checked without its content. Such events are in the export, but not proven unchanged. */
    int64_t redacted;
    int64_t unbound;
    int64_t first_unbound; /* the seq of the first of those, or 0 */
};
/* Recomputes the live chain (one snapshot: a read transaction on each of 2-4 connections of its
 * own, the later ones reading only up to the first one's last event and checkpoint; ranges of
 * seqs read and hashed on as many threads, the caller's among them, and chained in seq order)
 * and checks every checkpoint against `pub`
 * (the site's Ed25519 public key). Returns 0 if intact, -EBADMSG if not (report says where),
 * -EIO / -ENOMEM / -EAGAIN. `strict`: events after the last checkpoint count as a failure (a
 * closed log is fully signed; a running one signs its tail within checkpoint_seconds). */
ANT_MUST_CHECK int ant_audit_verify(struct ant_audit *a, const uint8_t pub[ANT_KEY_LEN],
                                    bool strict, struct ant_audit_report *rep);

/* Checks the queries' index (events_by, derived data that verify above never reads): every
 * event up to the index's mark must have its actor, tenant and dataset rows, else a filtered
 * query would not return it, while the chain still verifies. *upto = the mark; 0, or -EBADMSG
 * with *first_missing the first event whose rows are missing; -EIO / -ENOMEM. Cost: three
 * primary-key lookups per indexed event, on a connection of its own. */
ANT_MUST_CHECK int ant_audit_verify_index(struct ant_audit *a, int64_t *upto,
                                          int64_t *first_missing);

/* Export: NDJSON, one JSON object per line, in seq order (one read transaction): events
 *   {"type":"event","seq":N,"time_ms":T,<each present string field by its struct name>,
 *    "decision":"allow|deny|info","salt":"<hex, v2 events only>","hash":"<hex h_N>"}
 * and, right after the event they sign, checkpoints
 *   {"type":"checkpoint","seq":N,"hash":"<hex h_N>","time_ms":T,"prev_seq":P,"sig":"<hex>"}.
 * The export ends at the last checkpoint, so every line of it verifies; a handle that can sign
 * first signs the tail, so it holds every event appended before the call (events appended
 * during it belong to the next export). Without a key, an unsigned tail is left out until the
 * daemon signs it (within checkpoint_seconds). Returns the number of lines or a negative errno
 * (write errors as -errno). */
ANT_MUST_CHECK int64_t ant_audit_export(struct ant_audit *a, int fd);
/* The same, handing the bytes to `write` (in pieces of up to ~256 KiB) instead of an fd, e.g.
 * for an HTTP response; `write` returns 0 or a negative errno, which stops the export and is
 * returned. Runs on a connection of its own, so a slow consumer holds up nobody else. */
ANT_MUST_CHECK int64_t ant_audit_export_cb(struct ant_audit *a,
                                           int (*write)(void *ctx, const uint8_t *p, size_t len),
                                           void *ctx);
/* Which events a tenant-scoped export shows in full. `visible` is called for every event in
 * seq order, on the exporting thread, with the event's fields (valid for the call only): 1
 * shows it, 0 redacts it, a negative errno stops the export and is returned. */
struct ant_audit_scope {
    int (*visible)(void *ctx, const struct ant_audit_event *ev);
    void *ctx;
};
/* ant_audit_export_cb, except that the events `scope` does not show are exported redacted:
 *   {"type":"redacted","seq":N,"commit":"<hex c_N>","hash":"<hex h_N>"}
 * (v1 events: no "commit", whose link then cannot be checked), nothing else of them: no time,
 * actor, tenant or any other field. Checkpoints as in the full export. scope NULL: the full
 * export. The verifier (ant_audit_verify_export) takes either form. */
ANT_MUST_CHECK int64_t ant_audit_export_scoped(struct ant_audit *a,
                                               const struct ant_audit_scope *scope,
                                               int (*write)(void *ctx, const uint8_t *p,
                                                            size_t len),
                                               void *ctx);

/* The last `limit` (1..1000; 0: 100) checkpoints, oldest first: *out is a new JSON array of
 * {"seq","hash","time_ms","prev_seq","sig"} (hex strings). -EINVAL, -EIO, -ENOMEM. */
ANT_MUST_CHECK int ant_audit_checkpoints(struct ant_audit *a, unsigned limit, json_t **out);

/* Chain status, recomputed now (ant_audit_verify, not strict) with `pub`, or with the handle's
 * own key when pub is NULL (-EINVAL if it has none): *out = {"intact", "events",
 * "checkpoints", "last_seq", "signed_seq", "first_bad_seq", "what" (when broken),
 * "queue_depth"}. A broken chain is a successful call with "intact": false. */
ANT_MUST_CHECK int ant_audit_status(struct ant_audit *a, const uint8_t *pub, json_t **out);

/* Verifies an export offline with only the site's public key; the input is untrusted (lines of
 * at most ANT_AUDIT_EXPORT_LINE_MAX bytes, duplicate keys and unknown members refused, nesting
 * bounded). Every event must chain from seq 1 on and be covered by a valid checkpoint (the last
 * line is a checkpoint). Full and tenant-scoped exports alike: an event shown in full is
 * re-hashed, a redacted one's commitment chained (report: redacted, unbound). 0, or -EBADMSG
 * with the report naming the first bad seq and its line. */
#define ANT_AUDIT_EXPORT_LINE_MAX (64 * 1024)
ANT_MUST_CHECK int ant_audit_verify_export(struct ant_bytes ndjson, const uint8_t pub[ANT_KEY_LEN],
                                           struct ant_audit_report *rep);

/* The canonical bytes of an event (the hash input after h_{n-1}): "antenna-audit-event-v1",
 * u64le seq, i64le time_ms, u8 decision, then each string field in struct order as u32le length
 * + bytes (0xffffffff for absent). */
ANT_MUST_CHECK int ant_audit_canonical(int64_t seq, int64_t time_ms,
                                       const struct ant_audit_event *ev, struct ant_buf *out);
/* The bytes a checkpoint signs: "antenna-audit-checkpoint-v1", u64le seq, h_seq, i64le time_ms,
 * u64le prev_seq. out needs ANT_AUDIT_CKPT_MSG_LEN bytes. */
#define ANT_AUDIT_CKPT_MSG_LEN (27 + 8 + ANT_AUDIT_HASH_LEN + 8 + 8)
void ant_audit_checkpoint_msg(int64_t seq, const uint8_t hash[ANT_AUDIT_HASH_LEN], int64_t time_ms,
                              int64_t prev_seq, uint8_t out[ANT_AUDIT_CKPT_MSG_LEN]);

/* A checkpoint as a value: what an export's checkpoint line, the federation route
 * /v1/federation/checkpoint and a peer's witness record (policy/peers.h) hold. */
struct ant_audit_ckpt {
    int64_t seq, time_ms, prev_seq;
    uint8_t hash[ANT_AUDIT_HASH_LEN];
    uint8_t sig[ANT_SIG_LEN];
};
/* Whether sig is `pub`'s signature of the checkpoint (ant_audit_checkpoint_msg). */
bool ant_audit_ckpt_sig_is_valid(const uint8_t pub[ANT_KEY_LEN], const struct ant_audit_ckpt *c);
/* Reads an export checkpoint line's object (untrusted): exactly "type":"checkpoint", "seq" >= 1,
 * "hash", "time_ms" >= 0, "prev_seq" >= 0, "sig" (hex). 0 or -EBADMSG; the signature is not
 * checked here. */
ANT_MUST_CHECK int ant_audit_ckpt_from_json(const json_t *o, struct ant_audit_ckpt *out);
/* The export's checkpoint line object (the key order of ant_audit_export); NULL: no memory. */
json_t *ant_audit_ckpt_to_json(const struct ant_audit_ckpt *c);

/* Witnesses: checkpoints of this site that a peer recorded (`antenna admin peer witnessed`), as
 * NDJSON checkpoint lines. At most ANT_AUDIT_WITNESS_MAX lines of at most
 * ANT_AUDIT_EXPORT_LINE_MAX bytes; empty lines are skipped. On success *out (free()) holds *n
 * checkpoints sorted by seq (then hash). -EBADMSG (diag names the line), -E2BIG, -ENOMEM. */
#define ANT_AUDIT_WITNESS_MAX 100000
ANT_MUST_CHECK int ant_audit_witness_parse(struct ant_bytes ndjson, struct ant_audit_ckpt **out,
                                           size_t *n, struct ant_diag *d);
/* What the verifiers check against witnesses, borrowed for the verification: every witnessed
 * checkpoint must carry a valid signature of the site's key and be in the chain verified: its
 * hash the chain's hash at its seq ("rewritten" otherwise), its seq at most the last verified
 * checkpoint's ("tail removed after it was witnessed" otherwise). */
struct ant_audit_witnesses {
    const struct ant_audit_ckpt *c; /* sorted by seq, as ant_audit_witness_parse leaves them */
    size_t n;
};
/* ant_audit_verify and ant_audit_verify_export, also checking witnesses (NULL: none). */
ANT_MUST_CHECK int ant_audit_verify_witnessed(struct ant_audit *a, const uint8_t pub[ANT_KEY_LEN],
                                              bool strict, const struct ant_audit_witnesses *w,
                                              struct ant_audit_report *rep);
ANT_MUST_CHECK int ant_audit_verify_export_witnessed(struct ant_bytes ndjson,
                                                     const uint8_t pub[ANT_KEY_LEN],
                                                     const struct ant_audit_witnesses *w,
                                                     struct ant_audit_report *rep);

/* A streaming verifier, fed events and checkpoints in export order (what ant_audit_verify and
 * ant_audit_verify_export use). It stops at the first failure: later feeds return -EBADMSG. */
struct ant_audit_verifier {
    uint8_t pub[ANT_KEY_LEN];
    uint8_t head[ANT_AUDIT_HASH_LEN]; /* h of the last event fed */
    int64_t last_ck_seq;
    bool v2;         /* a v2 event was fed: no v1 event may follow */
    int64_t pending; /* events fed in full since the last checkpoint or unchecked link */
    int64_t pending_first;
    void *md_ctx; /* EVP_MD_CTX */
    void *md;     /* EVP_MD, fetched once: an implicit fetch per event costs a lock and a malloc */
    struct ant_buf canon;
    struct ant_audit_report rep;
    const struct ant_audit_witnesses *wit; /* NULL: none (ant_audit_verifier_witness) */
    size_t wit_next;                       /* the first witness whose seq is not reached yet */
};
ANT_MUST_CHECK int ant_audit_verifier_init(struct ant_audit_verifier *v,
                                           const uint8_t pub[ANT_KEY_LEN]);
void ant_audit_verifier_fini(struct ant_audit_verifier *v);
/* Makes the verifier check `w` (borrowed until finish) as it goes; call before the first feed.
 * A witness whose signature is not the key's fails the verification at once. */
void ant_audit_verifier_witness(struct ant_audit_verifier *v, const struct ant_audit_witnesses *w);
/* `salt`: the event's (ANT_AUDIT_SALT_LEN bytes; NULL: a v1 event). `hash`: the hash stored
 * with the event (NULL: not stored). 0 or -EBADMSG (-ENOMEM). */
ANT_MUST_CHECK int ant_audit_verifier_event(struct ant_audit_verifier *v, int64_t seq,
                                            int64_t time_ms, const struct ant_audit_event *ev,
                                            const uint8_t *salt, const uint8_t *hash);
/* An event shown redacted: `commit` is its c_n (NULL: a v1 event, whose link to the previous
 * hash cannot be checked; the events fed in full since the last checkpoint are then counted as
 * unbound); `hash` its h_n, which must match the chain. 0 or -EBADMSG (-ENOMEM). */
ANT_MUST_CHECK int ant_audit_verifier_redacted(struct ant_audit_verifier *v, int64_t seq,
                                               const uint8_t *commit,
                                               const uint8_t hash[ANT_AUDIT_HASH_LEN]);
ANT_MUST_CHECK int ant_audit_verifier_checkpoint(struct ant_audit_verifier *v, int64_t seq,
                                                 const uint8_t hash[ANT_AUDIT_HASH_LEN],
                                                 int64_t time_ms, int64_t prev_seq,
                                                 const uint8_t sig[ANT_SIG_LEN]);
/* Marks a failure found by the feeder (a malformed line, a checkpoint past the last event). */
void ant_audit_verifier_fail(struct ant_audit_verifier *v, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* After the last feed: `strict` makes unsigned events a failure. Copies the report. */
ANT_MUST_CHECK int ant_audit_verifier_finish(struct ant_audit_verifier *v, bool strict,
                                             struct ant_audit_report *rep);

/* testing only */
/* Makes the next group commits fail with `err` (negative errno; 0 clears) after their inserts,
 * as a full disk would: the batch is rolled back. */
void ant_audit_test_fail_writes(struct ant_audit *a, int err);
/* Runs `hook` on the writer thread before each fdatasync of the WAL (NULL: none): it may sleep
 * (a slow disk) or return a negative errno, taken as the fdatasync's failure (which poisons
 * the handle). */
void ant_audit_test_sync_hook(struct ant_audit *a, int (*hook)(void *ctx), void *ctx);
/* Makes the writer chain the next events as v1 (no salt), as an antenna before schema step 3
 * wrote them, or (false) as v2 again; for tests of logs that hold both. */
void ant_audit_test_write_v1(struct ant_audit *a, bool v1);
/* Replaces the clock that stamps events (NULL: the wall clock), so a benchmark can spread events
 * over days. Called from the writer thread, under no lock of ours: `clock` must be thread-safe.
 * Set it before the first append. */
void ant_audit_test_clock(struct ant_audit *a, int64_t (*clock)(void *ctx), void *ctx);
/* Makes ant_audit_verify cut the log into ranges of `range_seqs` seqs, read in pieces of at most
 * `piece_rows` rows by `workers` threads (at most 4); 0 keeps a default (4,096 seqs; a range
 * and its checkpoints; the cores). Not thread-safe: set it while no verify runs. */
void ant_audit_test_verify_split(struct ant_audit *a, int64_t range_seqs, size_t piece_rows,
                                 unsigned workers);
/* How many ranges the last ant_audit_verify on `a` handed out to its threads (a range starts at
 * a seq the log holds, so a tampered seq far past the head costs one range). Any thread. */
int64_t ant_audit_test_verify_ranges(struct ant_audit *a);
/* Drops the append-only triggers of a closed file so a test can tamper with it. */
ANT_MUST_CHECK int ant_audit_test_drop_triggers(int dirfd, const char *name);
/* Testing only: creates a new audit.db with only the first `steps` schema steps applied (to
 * test the upgrade of a log written by an older antenna). */
ANT_MUST_CHECK int ant_audit_test_create_at_step(int dirfd, const char *name, int steps);

#endif
