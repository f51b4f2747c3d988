/* The audit chain's canonical encoding and its verifier, for the live database and for exports
 * (untrusted input: an auditor runs this on a file someone handed them). */
#include "policy/audit.h"

#include "crypto/base/json.h"
#include "policy/audit_internal.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENT_MAGIC "antenna-audit-event-v1"
#define COMMIT_MAGIC "antenna-audit-commit-v2"
#define LINK_MAGIC "antenna-audit-link-v2"
#define CKPT_MAGIC "antenna-audit-checkpoint-v1"
#define CANON_MAX ANT_AUDIT_CANON_MAX
/* Export lines hold objects of strings and numbers: nesting deeper than 2 is malformed. */
#define EXPORT_DEPTH 2

int ant_audit_canonical(int64_t seq, int64_t time_ms, const struct ant_audit_event *ev,
                        struct ant_buf *out)
{
    struct ant_bytes f[ANT_AUDIT_NFIELDS];
    ant_audit_event_fields(ev, f);
    return ant_audit_canonical_fields(seq, time_ms, (int)ev->decision, f, out);
}

void ant_audit_event_fields(const struct ant_audit_event *ev, struct ant_bytes f[ANT_AUDIT_NFIELDS])
{
    const char *s[ANT_AUDIT_NFIELDS] = {
        ev->request_id,  ev->actor,      ev->tenant, ev->credential, ev->action, ev->resource_kind,
        ev->resource_id, ev->dataset_id, ev->reason, ev->transfer,   ev->detail,
    };
    for (size_t i = 0; i < ANT_AUDIT_NFIELDS; i++) {
        f[i] = s[i] != NULL ? ant_bytes_of(s[i], strlen(s[i])) : ANT_BYTES_NULL;
    }
}

int ant_audit_canonical_fields(int64_t seq, int64_t time_ms, int decision,
                               const struct ant_bytes f[ANT_AUDIT_NFIELDS], struct ant_buf *out)
{
    size_t need = sizeof(EVENT_MAGIC) - 1 + 8 + 8 + 1;
    /* One reservation, then plain stores: this runs once per event on append and verify. */
    for (size_t i = 0; i < ANT_AUDIT_NFIELDS; i++) {
        if (f[i].len > ANT_AUDIT_DETAIL_MAX) {
            return -E2BIG;
        }
        need += 4 + f[i].len;
    }
    int rc = ant_buf_reserve(out, need);
    if (rc < 0) {
        return rc;
    }
    uint8_t *p = out->p + out->len;
    memcpy(p, EVENT_MAGIC, sizeof(EVENT_MAGIC) - 1);
    p += sizeof(EVENT_MAGIC) - 1;
    ant_store_u64le(p, (uint64_t)seq);
    ant_store_u64le(p + 8, (uint64_t)time_ms);
    p[16] = (uint8_t)decision;
    p += 17;
    for (size_t i = 0; i < ANT_AUDIT_NFIELDS; i++) {
        ant_store_u32le(p, f[i].p != NULL ? (uint32_t)f[i].len : 0xffffffffu);
        p += 4;
        if (f[i].len > 0) {
            memcpy(p, f[i].p, f[i].len);
            p += f[i].len;
        }
    }
    out->len += need;
    return 0;
}

/* SHA-256 over up to three pieces, on the caller's context with an EVP_MD it fetched once:
 * EVP_sha256() makes OpenSSL 3.0 fetch the implementation from the provider again at each
 * init, and EVP_Digest() also allocates a context per digest (a 290-byte digest: ~700-900 ns
 * that way, ~330 ns this way; the per-digest provider context that Init still allocates in 3.0
 * is the rest of the gap to the deprecated SHA256_* functions). */
static int sha256_3(EVP_MD_CTX *c, const EVP_MD *md, struct ant_bytes a, struct ant_bytes b,
                    struct ant_bytes d, uint8_t out[ANT_AUDIT_HASH_LEN])
{
    unsigned hl = 0;
    if (EVP_DigestInit_ex2(c, md, NULL) != 1 || EVP_DigestUpdate(c, a.p, a.len) != 1 ||
        EVP_DigestUpdate(c, b.p, b.len) != 1 || EVP_DigestUpdate(c, d.p, d.len) != 1 ||
        EVP_DigestFinal_ex(c, out, &hl) != 1 || hl != ANT_AUDIT_HASH_LEN) {
        return -ENOMEM;
    }
    return 0;
}

int ant_audit_link_v1(EVP_MD_CTX *c, const EVP_MD *md, const uint8_t prev[ANT_AUDIT_HASH_LEN],
                      struct ant_bytes canon, uint8_t out[ANT_AUDIT_HASH_LEN])
{
    return sha256_3(c, md, ant_bytes_of(prev, ANT_AUDIT_HASH_LEN), canon, ant_bytes_of("", 0),
                    out);
}

int ant_audit_commit_v2(EVP_MD_CTX *c, const EVP_MD *md, const uint8_t salt[ANT_AUDIT_SALT_LEN],
                        struct ant_bytes canon, uint8_t out[ANT_AUDIT_HASH_LEN])
{
    return sha256_3(c, md, ant_bytes_of(COMMIT_MAGIC, sizeof(COMMIT_MAGIC) - 1),
                    ant_bytes_of(salt, ANT_AUDIT_SALT_LEN), canon, out);
}

int ant_audit_link_v2(EVP_MD_CTX *c, const EVP_MD *md, const uint8_t prev[ANT_AUDIT_HASH_LEN],
                      int64_t seq, const uint8_t commit[ANT_AUDIT_HASH_LEN],
                      uint8_t out[ANT_AUDIT_HASH_LEN])
{
    /* the magic differs from v1's "antenna-audit-event-v1" right after h_{n-1}: no input of one
     * formula is an input of the other */
    uint8_t tail[sizeof(LINK_MAGIC) - 1 + 8 + ANT_AUDIT_HASH_LEN];
    memcpy(tail, LINK_MAGIC, sizeof(LINK_MAGIC) - 1);
    ant_store_u64le(tail + sizeof(LINK_MAGIC) - 1, (uint64_t)seq);
    memcpy(tail + sizeof(LINK_MAGIC) - 1 + 8, commit, ANT_AUDIT_HASH_LEN);
    return sha256_3(c, md, ant_bytes_of(prev, ANT_AUDIT_HASH_LEN), ant_bytes_of(tail, sizeof(tail)),
                    ant_bytes_of("", 0), out);
}

void ant_audit_checkpoint_msg(int64_t seq, const uint8_t hash[ANT_AUDIT_HASH_LEN], int64_t time_ms,
                              int64_t prev_seq, uint8_t out[ANT_AUDIT_CKPT_MSG_LEN])
{
    size_t off = sizeof(CKPT_MAGIC) - 1;
    memcpy(out, CKPT_MAGIC, off);
    ant_store_u64le(out + off, (uint64_t)seq);
    off += 8;
    memcpy(out + off, hash, ANT_AUDIT_HASH_LEN);
    off += ANT_AUDIT_HASH_LEN;
    ant_store_u64le(out + off, (uint64_t)time_ms);
    off += 8;
    ant_store_u64le(out + off, (uint64_t)prev_seq);
}

/* --- the streaming verifier --- */

int ant_audit_verifier_init(struct ant_audit_verifier *v, const uint8_t pub[ANT_KEY_LEN])
{
    memset(v, 0, sizeof(*v));
    memcpy(v->pub, pub, ANT_KEY_LEN);
    ant_buf_init(&v->canon, CANON_MAX);
    v->md_ctx = EVP_MD_CTX_new();
    v->md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    return v->md_ctx == NULL || v->md == NULL ? -ENOMEM : 0;
}

void ant_audit_verifier_fini(struct ant_audit_verifier *v)
{
    EVP_MD_CTX_free(v->md_ctx);
    EVP_MD_free(v->md);
    v->md_ctx = NULL;
    v->md = NULL;
    ant_buf_fini(&v->canon);
}

void ant_audit_verifier_fail(struct ant_audit_verifier *v, int64_t seq, const char *fmt, ...)
{
    if (v->rep.first_bad_seq != 0 || v->rep.what[0] != '\0') {
        return; /* the first failure is the one that counts */
    }
    v->rep.first_bad_seq = seq > 0 ? seq : 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rep.what, sizeof(v->rep.what), fmt, ap);
    va_end(ap);
}

static bool failed(const struct ant_audit_verifier *v)
{
    return v->rep.first_bad_seq != 0;
}

/* The checks every event shares, shown in full or redacted: the next seq, and no v1 event
 * after a v2 one (an antenna never writes one, and showing a v2 event as v1 would leave its
 * link unchecked). */
static int next_event(struct ant_audit_verifier *v, int64_t seq, bool v2, const char *kind)
{
    if (failed(v)) {
        return -EBADMSG;
    }
    int64_t want = v->rep.last_seq + 1;
    if (seq != want) {
        ant_audit_verifier_fail(v, seq > want ? want : seq,
                                seq > want ? "event %lld is missing (next is %lld)"
                                           : "event %lld out of order (after %lld)",
                                (long long)(seq > want ? want : seq),
                                (long long)(seq > want ? seq : v->rep.last_seq));
        return -EBADMSG;
    }
    if (!v2 && v->v2) {
        ant_audit_verifier_fail(v, seq,
                                "%sevent %lld has no %s, after events that do (a v2 chain "
                                "never holds a v1 event)",
                                kind, (long long)seq, kind[0] != '\0' ? "commitment" : "salt");
        return -EBADMSG;
    }
    v->v2 = v->v2 || v2;
    return 0;
}

static void chained(struct ant_audit_verifier *v, int64_t seq, const uint8_t h[ANT_AUDIT_HASH_LEN])
{
    memcpy(v->head, h, ANT_AUDIT_HASH_LEN);
    v->rep.last_seq = seq;
    v->rep.events++;
    /* a witnessed checkpoint at this seq must name this hash */
    while (v->wit != NULL && v->wit_next < v->wit->n && v->wit->c[v->wit_next].seq <= seq) {
        const struct ant_audit_ckpt *w = &v->wit->c[v->wit_next++];
        if (w->seq == seq && memcmp(w->hash, h, ANT_AUDIT_HASH_LEN) != 0) {
            ant_audit_verifier_fail(v, seq,
                                    "event %lld was rewritten after a peer witnessed its "
                                    "checkpoint (the hashes differ)",
                                    (long long)seq);
        }
    }
}

void ant_audit_verifier_witness(struct ant_audit_verifier *v, const struct ant_audit_witnesses *w)
{
    v->wit = w;
    v->wit_next = 0;
    for (size_t i = 0; w != NULL && i < w->n; i++) {
        if (!ant_audit_ckpt_sig_is_valid(v->pub, &w->c[i])) {
            ant_audit_verifier_fail(v, w->c[i].seq,
                                    "witnessed checkpoint %lld is not signed by this key",
                                    (long long)w->c[i].seq);
            return;
        }
    }
}

bool ant_audit_ckpt_sig_is_valid(const uint8_t pub[ANT_KEY_LEN], const struct ant_audit_ckpt *c)
{
    uint8_t msg[ANT_AUDIT_CKPT_MSG_LEN];
    ant_audit_checkpoint_msg(c->seq, c->hash, c->time_ms, c->prev_seq, msg);
    return ant_sig_verify(pub, ant_bytes_of(msg, sizeof(msg)), c->sig) == 0;
}

void ant_audit_event_prepare(EVP_MD_CTX *c, const EVP_MD *md, int64_t seq, int64_t time_ms,
                             int decision, const struct ant_bytes f[ANT_AUDIT_NFIELDS],
                             const uint8_t *salt, struct ant_buf *canon,
                             struct ant_audit_prepared *out)
{
    size_t at = canon->len;
    out->v2 = salt != NULL;
    out->canon_off = at;
    out->canon_len = 0;
    if ((unsigned)decision > ANT_AUDIT_INFO) {
        out->status = -EDOM;
        return;
    }
    out->status = ant_audit_canonical_fields(seq, time_ms, decision, f, canon) < 0 ? -E2BIG : 0;
    if (out->status == 0) {
        out->canon_len = canon->len - at;
        if (salt != NULL) {
            out->status = ant_audit_commit_v2(
                c, md, salt, ant_bytes_of(canon->p + at, out->canon_len), out->commit);
        }
    }
}

int ant_audit_verifier_prepared(struct ant_audit_verifier *v, EVP_MD_CTX *c, int64_t seq,
                                const struct ant_audit_prepared *e, struct ant_bytes canon,
                                const uint8_t *hash)
{
    uint8_t h[ANT_AUDIT_HASH_LEN];
    int rc = next_event(v, seq, e->v2, "");
    if (rc < 0) {
        return rc;
    }
    if (e->status == -EDOM) {
        ant_audit_verifier_fail(v, seq, "event %lld has an unknown decision", (long long)seq);
        return -EBADMSG;
    }
    if (e->status == -E2BIG) {
        ant_audit_verifier_fail(v, seq, "event %lld has a field over the limit", (long long)seq);
        return -EBADMSG;
    }
    if (e->status < 0) {
        return e->status;
    }
    if (e->v2) {
        rc = ant_audit_link_v2(c, v->md, v->head, seq, e->commit, h);
    } else {
        rc = ant_audit_link_v1(c, v->md, v->head, canon, h);
    }
    if (rc < 0) {
        return rc;
    }
    if (hash != NULL && memcmp(hash, h, sizeof(h)) != 0) {
        ant_audit_verifier_fail(v, seq,
                                "event %lld does not match its hash (changed, swapped or "
                                "inserted)",
                                (long long)seq);
        return -EBADMSG;
    }
    if (v->pending++ == 0) {
        v->pending_first = seq;
    }
    chained(v, seq, h);
    return 0;
}

int ant_audit_verifier_event(struct ant_audit_verifier *v, int64_t seq, int64_t time_ms,
                             const struct ant_audit_event *ev, const uint8_t *salt,
                             const uint8_t *hash)
{
    struct ant_audit_prepared e;
    struct ant_bytes f[ANT_AUDIT_NFIELDS];
    ant_audit_event_fields(ev, f);
    v->canon.len = 0;
    ant_audit_event_prepare(v->md_ctx, v->md, seq, time_ms, (int)ev->decision, f, salt, &v->canon,
                            &e);
    return ant_audit_verifier_prepared(v, v->md_ctx, seq, &e, ant_buf_view(&v->canon), hash);
}

int ant_audit_verifier_redacted(struct ant_audit_verifier *v, int64_t seq, const uint8_t *commit,
                                const uint8_t hash[ANT_AUDIT_HASH_LEN])
{
    uint8_t h[ANT_AUDIT_HASH_LEN];
    int rc = next_event(v, seq, commit != NULL, "redacted ");
    if (rc < 0) {
        return rc;
    }
    if (commit == NULL) {
        /* v1: h_n hashes the hidden event itself, so nothing ties it to h_{n-1}. It is taken as
         * given (a checkpoint or a later link still checks it); what came before it in full
         * since the last checkpoint is tied to no signature. */
        if (v->pending > 0 && v->rep.unbound == 0) {
            v->rep.first_unbound = v->pending_first;
        }
        v->rep.unbound += v->pending;
        v->pending = 0;
        memcpy(h, hash, sizeof(h));
    } else {
        rc = ant_audit_link_v2(v->md_ctx, v->md, v->head, seq, commit, h);
        if (rc < 0) {
            return rc;
        }
        if (memcmp(hash, h, sizeof(h)) != 0) {
            ant_audit_verifier_fail(v, seq,
                                    "redacted event %lld does not match its hash (changed, "
                                    "swapped or inserted)",
                                    (long long)seq);
            return -EBADMSG;
        }
    }
    v->rep.redacted++;
    chained(v, seq, h);
    return 0;
}

int ant_audit_verifier_checkpoint(struct ant_audit_verifier *v, int64_t seq,
                                  const uint8_t hash[ANT_AUDIT_HASH_LEN], int64_t time_ms,
                                  int64_t prev_seq, const uint8_t sig[ANT_SIG_LEN])
{
    struct ant_audit_ckpt c = {.seq = seq, .time_ms = time_ms, .prev_seq = prev_seq};
    memcpy(c.hash, hash, ANT_AUDIT_HASH_LEN);
    memcpy(c.sig, sig, ANT_SIG_LEN);
    return ant_audit_verifier_ckpt_checked(v, &c, -1);
}

int ant_audit_verifier_ckpt_checked(struct ant_audit_verifier *v, const struct ant_audit_ckpt *c,
                                    int sig_ok)
{
    int64_t seq = c->seq, prev_seq = c->prev_seq;
    if (failed(v)) {
        return -EBADMSG;
    }
    if (seq != v->rep.last_seq || seq <= v->last_ck_seq) {
        ant_audit_verifier_fail(v, seq > v->rep.last_seq ? v->rep.last_seq + 1 : seq,
                                "checkpoint %lld is out of place (last event %lld, last "
                                "checkpoint %lld)",
                                (long long)seq, (long long)v->rep.last_seq,
                                (long long)v->last_ck_seq);
        return -EBADMSG;
    }
    if (prev_seq != v->last_ck_seq) {
        /* signed link to the previous checkpoint: one in between was dropped */
        bool dropped = prev_seq > v->last_ck_seq && prev_seq < seq;
        ant_audit_verifier_fail(v, dropped ? prev_seq : seq,
                                dropped ? "checkpoint %lld is missing (checkpoint %lld follows it)"
                                        : "checkpoint %lld names a wrong predecessor",
                                (long long)(dropped ? prev_seq : seq), (long long)seq);
        return -EBADMSG;
    }
    if (memcmp(c->hash, v->head, ANT_AUDIT_HASH_LEN) != 0) {
        ant_audit_verifier_fail(v, seq,
                                "checkpoint %lld does not match the chain (events "
                                "up to it were rewritten)",
                                (long long)seq);
        return -EBADMSG;
    }
    if (sig_ok < 0 ? !ant_audit_ckpt_sig_is_valid(v->pub, c) : sig_ok == 0) {
        ant_audit_verifier_fail(v, seq, "checkpoint %lld has a bad signature", (long long)seq);
        return -EBADMSG;
    }
    v->last_ck_seq = seq;
    v->rep.signed_seq = seq;
    v->rep.checkpoints++;
    v->pending = 0; /* every link since the last unchecked one checked: bound to this one */
    return 0;
}

int ant_audit_verifier_finish(struct ant_audit_verifier *v, bool strict,
                              struct ant_audit_report *rep)
{
    const struct ant_audit_witnesses *w = v->wit;
    if (!failed(v) && w != NULL && w->n > 0 && w->c[w->n - 1].seq > v->rep.signed_seq) {
        ant_audit_verifier_fail(v, v->rep.signed_seq + 1,
                                "tail removed after it was witnessed: a peer recorded checkpoint "
                                "%lld, the last checkpoint here is %lld",
                                (long long)w->c[w->n - 1].seq, (long long)v->rep.signed_seq);
    }
    if (!failed(v) && strict && v->rep.last_seq > v->rep.signed_seq) {
        ant_audit_verifier_fail(v, v->rep.signed_seq + 1,
                                "events %lld..%lld are not covered by a checkpoint",
                                (long long)(v->rep.signed_seq + 1), (long long)v->rep.last_seq);
    }
    if (rep != NULL) {
        *rep = v->rep;
    }
    return failed(v) ? -EBADMSG : 0;
}

/* --- exports --- */

static const char *const k_event_fields[] = {
    "request_id",  "actor",      "tenant", "credential", "action", "resource_kind",
    "resource_id", "dataset_id", "reason", "transfer",   "detail",
};

static const char **event_slot(struct ant_audit_event *ev, size_t i)
{
    const char **slots[] = {&ev->request_id, &ev->actor,         &ev->tenant,      &ev->credential,
                            &ev->action,     &ev->resource_kind, &ev->resource_id, &ev->dataset_id,
                            &ev->reason,     &ev->transfer,      &ev->detail};
    return slots[i];
}

static bool get_seq(json_t *o, const char *key, int64_t min, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < min) {
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool get_hex(json_t *o, const char *key, uint8_t *out, size_t len)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) == 2 * len &&
           ant_hex_decode(ant_bytes_of(json_string_value(v), json_string_length(v)), out, len) == 0;
}

static int parse_decision(const char *s, enum ant_audit_decision *out)
{
    static const char *const names[] = {"deny", "allow", "info"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum ant_audit_decision)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* One event line: every member known, every type right, every length within limits; "salt"
 * only on v2 events. */
static int feed_event_line(struct ant_audit_verifier *v, json_t *o, int64_t line)
{
    struct ant_audit_event ev = {0};
    int64_t seq = 0, t = 0;
    uint8_t hash[ANT_AUDIT_HASH_LEN], salt[ANT_AUDIT_SALT_LEN];
    bool has_salt = json_object_get(o, "salt") != NULL;
    size_t known = has_salt ? 6 : 5; /* type, seq, time_ms, decision, hash; salt */
    json_t *d = json_object_get(o, "decision");
    int64_t at = v->rep.last_seq + 1;
    if (!get_seq(o, "seq", 1, &seq) || !get_seq(o, "time_ms", 0, &t) || !json_is_string(d) ||
        parse_decision(json_string_value(d), &ev.decision) < 0 ||
        !get_hex(o, "hash", hash, sizeof(hash)) ||
        (has_salt && !get_hex(o, "salt", salt, sizeof(salt)))) {
        ant_audit_verifier_fail(v, at, "line %lld: malformed event", (long long)line);
        return -EBADMSG;
    }
    for (size_t i = 0; i < ANT_ARRAY_LEN(k_event_fields); i++) {
        json_t *f = json_object_get(o, k_event_fields[i]);
        if (f == NULL) {
            continue;
        }
        size_t max =
            i == ANT_ARRAY_LEN(k_event_fields) - 1 ? ANT_AUDIT_DETAIL_MAX : ANT_AUDIT_FIELD_MAX;
        if (!json_is_string(f) || json_string_length(f) > max ||
            strlen(json_string_value(f)) != json_string_length(f)) {
            ant_audit_verifier_fail(v, at, "line %lld: malformed field %s", (long long)line,
                                    k_event_fields[i]);
            return -EBADMSG;
        }
        *event_slot(&ev, i) = json_string_value(f);
        known++;
    }
    if (json_object_size(o) != known) {
        ant_audit_verifier_fail(v, at, "line %lld: unknown member in event", (long long)line);
        return -EBADMSG;
    }
    return ant_audit_verifier_event(v, seq, t, &ev, has_salt ? salt : NULL, hash);
}

/* A redacted event: its seq and hash, and (v2) its commitment; nothing else. */
static int feed_redacted_line(struct ant_audit_verifier *v, json_t *o, int64_t line)
{
    int64_t seq = 0;
    uint8_t hash[ANT_AUDIT_HASH_LEN], commit[ANT_AUDIT_HASH_LEN];
    bool has_commit = json_object_get(o, "commit") != NULL;
    if (json_object_size(o) != (has_commit ? 4u : 3u) || !get_seq(o, "seq", 1, &seq) ||
        !get_hex(o, "hash", hash, sizeof(hash)) ||
        (has_commit && !get_hex(o, "commit", commit, sizeof(commit)))) {
        ant_audit_verifier_fail(v, v->rep.last_seq + 1, "line %lld: malformed redacted event",
                                (long long)line);
        return -EBADMSG;
    }
    return ant_audit_verifier_redacted(v, seq, has_commit ? commit : NULL, hash);
}

int ant_audit_ckpt_from_json(const json_t *o, struct ant_audit_ckpt *out)
{
    json_t *obj = (json_t *)(uintptr_t)o; /* jansson's getters take no const */
    const char *type = json_string_value(json_object_get(obj, "type"));
    struct ant_audit_ckpt c;
    memset(&c, 0, sizeof(c));
    if (!json_is_object(obj) || json_object_size(obj) != 6 || type == NULL ||
        strcmp(type, "checkpoint") != 0 || !get_seq(obj, "seq", 1, &c.seq) ||
        !get_seq(obj, "time_ms", 0, &c.time_ms) || !get_seq(obj, "prev_seq", 0, &c.prev_seq) ||
        !get_hex(obj, "hash", c.hash, sizeof(c.hash)) ||
        !get_hex(obj, "sig", c.sig, sizeof(c.sig))) {
        return -EBADMSG;
    }
    *out = c;
    return 0;
}

json_t *ant_audit_ckpt_to_json(const struct ant_audit_ckpt *c)
{
    char hash[2 * ANT_AUDIT_HASH_LEN + 1], sig[2 * ANT_SIG_LEN + 1];
    ant_hex_encode(c->hash, sizeof(c->hash), hash);
    ant_hex_encode(c->sig, sizeof(c->sig), sig);
    return json_pack("{s:s, s:I, s:s, s:I, s:I, s:s}", "type", "checkpoint", "seq",
                     (json_int_t)c->seq, "hash", hash, "time_ms", (json_int_t)c->time_ms,
                     "prev_seq", (json_int_t)c->prev_seq, "sig", sig);
}

static int feed_checkpoint_line(struct ant_audit_verifier *v, json_t *o, int64_t line)
{
    struct ant_audit_ckpt c;
    if (ant_audit_ckpt_from_json(o, &c) < 0) {
        ant_audit_verifier_fail(v, v->rep.last_seq + 1, "line %lld: malformed checkpoint",
                                (long long)line);
        return -EBADMSG;
    }
    return ant_audit_verifier_checkpoint(v, c.seq, c.hash, c.time_ms, c.prev_seq, c.sig);
}

static int ckpt_cmp(const void *x, const void *y)
{
    const struct ant_audit_ckpt *a = x, *b = y;
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    return memcmp(a->hash, b->hash, ANT_AUDIT_HASH_LEN);
}

int ant_audit_witness_parse(struct ant_bytes ndjson, struct ant_audit_ckpt **out, size_t *n,
                            struct ant_diag *d)
{
    struct ant_rd rd = ant_rd_init(ndjson);
    struct ant_audit_ckpt *arr = NULL;
    size_t cnt = 0, cap = 0;
    int64_t line = 0;
    int rc = 0;
    while (rc == 0 && ant_rd_left(&rd) > 0) {
        struct ant_bytes rest = ant_rd_rest(&rd);
        const uint8_t *nl = memchr(rest.p, '\n', rest.len);
        size_t len = nl != NULL ? (size_t)(nl - rest.p) : rest.len;
        json_t *o = NULL;
        rd = ant_rd_init(rest);
        rc = ant_rd_skip(&rd, nl != NULL ? len + 1 : len);
        line++;
        if (rc < 0 || len == 0) {
            continue;
        }
        if (cnt == ANT_AUDIT_WITNESS_MAX) {
            ant_diag_set(d, "line %lld: more than %d witnessed checkpoints", (long long)line,
                         ANT_AUDIT_WITNESS_MAX);
            rc = -E2BIG;
            break;
        }
        if (cnt == cap) {
            size_t ncap = cap != 0 ? 2 * cap : 64;
            struct ant_audit_ckpt *p = realloc(arr, ncap * sizeof(*arr));
            if (p == NULL) {
                rc = -ENOMEM;
                break;
            }
            arr = p;
            cap = ncap;
        }
        if (len > ANT_AUDIT_EXPORT_LINE_MAX ||
            ant_json_parse(ant_bytes_of(rest.p, len), ANT_AUDIT_EXPORT_LINE_MAX, EXPORT_DEPTH, &o,
                           NULL) < 0 ||
            ant_audit_ckpt_from_json(o, &arr[cnt]) < 0) {
            ant_diag_set(d, "line %lld: not an export checkpoint line", (long long)line);
            rc = -EBADMSG;
        }
        json_decref(o);
        cnt += rc == 0 ? 1 : 0;
    }
    if (rc == 0) {
        if (cnt > 1) {
            qsort(arr, cnt, sizeof(*arr), ckpt_cmp);
        }
        *out = arr;
        *n = cnt;
        arr = NULL;
    }
    free(arr);
    return rc;
}

int ant_audit_verify_export(struct ant_bytes ndjson, const uint8_t pub[ANT_KEY_LEN],
                            struct ant_audit_report *rep)
{
    return ant_audit_verify_export_witnessed(ndjson, pub, NULL, rep);
}

int ant_audit_verify_export_witnessed(struct ant_bytes ndjson, const uint8_t pub[ANT_KEY_LEN],
                                      const struct ant_audit_witnesses *w,
                                      struct ant_audit_report *rep)
{
    struct ant_audit_verifier v;
    struct ant_rd rd = ant_rd_init(ndjson);
    int64_t line = 0;
    bool last_is_ckpt = false;
    int rc = ant_audit_verifier_init(&v, pub);
    if (rc == 0) {
        ant_audit_verifier_witness(&v, w);
        rc = v.rep.first_bad_seq != 0 ? -EBADMSG : 0;
    }
    while (rc == 0 && ant_rd_left(&rd) > 0) {
        struct ant_bytes rest = ant_rd_rest(&rd);
        const uint8_t *nl = memchr(rest.p, '\n', rest.len);
        size_t n = nl != NULL ? (size_t)(nl - rest.p) : rest.len;
        struct ant_diag diag = {{0}};
        json_t *o = NULL;
        /* rewind the cursor to just past this line */
        rd = ant_rd_init(rest);
        rc = ant_rd_skip(&rd, nl != NULL ? n + 1 : n);
        line++;
        if (rc < 0) {
            break;
        }
        if (n > ANT_AUDIT_EXPORT_LINE_MAX ||
            ant_json_parse(ant_bytes_of(rest.p, n), ANT_AUDIT_EXPORT_LINE_MAX, EXPORT_DEPTH, &o,
                           &diag) < 0 ||
            !json_is_object(o) || !json_is_string(json_object_get(o, "type"))) {
            ant_audit_verifier_fail(&v, v.rep.last_seq + 1, "line %lld: not an export record%s%s",
                                    (long long)line, diag.msg[0] ? ": " : "", diag.msg);
            json_decref(o);
            rc = -EBADMSG;
            break;
        }
        const char *type = json_string_value(json_object_get(o, "type"));
        if (strcmp(type, "event") == 0) {
            rc = feed_event_line(&v, o, line);
            last_is_ckpt = false;
        } else if (strcmp(type, "redacted") == 0) {
            rc = feed_redacted_line(&v, o, line);
            last_is_ckpt = false;
        } else if (strcmp(type, "checkpoint") == 0) {
            rc = feed_checkpoint_line(&v, o, line);
            last_is_ckpt = true;
        } else {
            ant_audit_verifier_fail(&v, v.rep.last_seq + 1, "line %lld: unknown record type",
                                    (long long)line);
            rc = -EBADMSG;
        }
        json_decref(o);
    }
    if (rc == 0 && v.rep.events > 0 && !last_is_ckpt) {
        ant_audit_verifier_fail(&v, v.rep.signed_seq + 1,
                                "the export does not end with a checkpoint: events %lld..%lld "
                                "are not signed",
                                (long long)(v.rep.signed_seq + 1), (long long)v.rep.last_seq);
    }
    if (rc == -ENOMEM) {
        goto out;
    }
    if (rc == -EBADMSG || rc == 0) {
        v.rep.line = v.rep.first_bad_seq != 0 ? line : 0;
        rc = ant_audit_verifier_finish(&v, true, rep);
    }
out:
    ant_audit_verifier_fini(&v);
    return rc;
}
