/* Fuzz target: the value parsers the /v1 routes apply to request bodies and query strings once
 * ant_api_body / the query reader handed them a string (fuzz_json covers the JSON reader): the
 * audit filters' since/until (ant_api_parse_time), cursor and limit (ant_parse_u64), a stage
 * job's ttl and a size limit (ant_parse_duration / ant_parse_size), recipient and site public
 * keys (ant_key_b64_decode), grant actions, roles, grantee kinds, job modes and dataset classes,
 * names and DUO codes, and what the audit events record of request values (ant_api_audit_value,
 * ant_api_audit_detail).
 * The input up to its first NUL is the value, as a JSON string or a query argument arrives.
 * Besides not crashing, what a parser accepts must mean what it says: a time reads back as the
 * same calendar fields, a name parses to the thing of that name, a key encodes back the same. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/keys.h"
#include "policy/audit.h"
#include "gateway/api.h"
#include "policy/store.h"
#include "staging/jobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

/* An accepted RFC 3339 time names a real instant: formatted back it is the same string (a leap
 * second, :60, is the instant after :59). An accepted integer is itself. */
static void check_time(const char *s, size_t len)
{
    int64_t t = 0;
    if (ant_api_parse_time(s, &t) < 0) {
        return;
    }
    must(t >= 0 && t <= 253402300800ll); /* 9999-12-31T23:59:60Z is one past the integers */
    if (strspn(s, "0123456789") == len) {
        char num[24];
        snprintf(num, sizeof(num), "%lld", (long long)t);
        must(strtoull(s, NULL, 10) == (unsigned long long)t && strlen(num) <= len);
        return;
    }
    bool leap = s[17] == '6' && s[18] == '0';
    time_t tt = (time_t)(t - leap);
    struct tm tm;
    char back[96]; /* room for any int the fields could hold */
    must(gmtime_r(&tt, &tm) != NULL);
    if (leap) {
        must(tm.tm_sec == 59);
        tm.tm_sec = 60;
    }
    snprintf(back, sizeof(back), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    must(strcmp(back, s) == 0);
}

static void check_scaled(struct ant_bytes b)
{
    uint64_t v = 0, w = 0;
    if (ant_parse_u64(b, 1, 1000, &v) == 0) {
        must(v >= 1 && v <= 1000);
    }
    if (ant_parse_u64(b, 0, INT64_MAX, &v) == 0) {
        must(v <= INT64_MAX && ant_parse_u64(b, v, v, &w) == 0 && w == v);
    }
    if (ant_parse_duration(b, ANT_JOB_TTL_MAX, &v) == 0) {
        must(v <= ANT_JOB_TTL_MAX);
    }
    if (ant_parse_size(b, UINT64_C(1) << 40, &v) == 0) {
        must(v <= UINT64_C(1) << 40);
    }
    if (ant_parse_size(b, INT64_MAX, &v) == 0) {
        must(v <= INT64_MAX);
    }
}

static void check_names(const char *s)
{
    unsigned bits = 0;
    enum ant_grantee_kind kind;
    enum ant_job_mode mode;
    enum ant_ds_class cls;
    if (ant_action_parse(s, &bits) == 0) {
        must(bits != 0 && (bits & (bits - 1)) == 0 && strcmp(ant_action_name(bits), s) == 0);
    }
    if (ant_actions_parse_list(s, &bits) == 0) {
        must(bits != 0 && (bits & ~(unsigned)ANT_ACT_GRANTABLE) == 0);
    }
    if (ant_role_parse(s, &bits) == 0) {
        must(bits != 0 && (bits & (bits - 1)) == 0);
    }
    if (ant_grantee_kind_parse(s, &kind) == 0) {
        must(strcmp(ant_grantee_kind_name(kind), s) == 0);
    }
    if (ant_job_mode_parse(s, &mode) == 0) {
        must(strcmp(ant_job_mode_name(mode), s) == 0);
    }
    if (ant_ds_class_parse(s, &cls) == 0) {
        must(strcmp(ant_ds_class_name(cls), s) == 0);
    }
    if (ant_name_is_valid(s)) { /* tenant, principal, site names: they go into paths and logs */
        must(strlen(s) <= ANT_NAME_MAX && strpbrk(s, "/\\\"' ") == NULL && s[0] != '.' &&
             s[0] != '-' && !ant_audit_looks_secret(s));
    }
    if (ant_duo_code_is_valid(s)) {
        must(strlen(s) == 11 && strncmp(s, "DUO:", 4) == 0 && strspn(s + 4, "0123456789") == 7);
    }
}

/* What the gateway records of request values the audit log takes, always: a field either as
 * it came or "[redacted]", and a detail (when the value is a JSON object) that the log's own
 * checks pass: no credential shape anywhere, within the size limit, still one JSON object. */
static void check_audit_values(const char *s, size_t len)
{
    const char *v = ant_api_audit_value(s);
    must(v == s || strcmp(v, "[redacted]") == 0);
    must(v != s || (len <= ANT_AUDIT_FIELD_MAX && !ant_audit_looks_secret(s)));
    json_t *doc = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(doc)) {
        char *det = ant_api_audit_detail(doc, JSON_COMPACT);
        must(det != NULL && strlen(det) <= ANT_AUDIT_DETAIL_MAX && !ant_audit_looks_secret(det));
        json_t *back = json_loads(det, JSON_REJECT_DUPLICATES, NULL);
        must(json_is_object(back));
        json_decref(back);
        free(det);
    }
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact size + NUL, the way the strings reach the parsers: ASan sees an over-read */
    char *s = malloc(size + 1);
    uint8_t pk[ANT_KEY_LEN];
    char b64[48];
    if (s == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(s, data, size);
    }
    s[size] = '\0';
    size_t len = strlen(s);
    check_time(s, len);
    check_scaled(ant_bytes_of(s, len));
    check_names(s);
    check_audit_values(s, len);
    if (ant_key_b64_decode(ant_bytes_of(s, len), pk) == 0) {
        ant_key_b64(pk, b64);
        must(strcmp(b64, s) == 0); /* one key, one spelling */
    }
    free(s);
    return 0;
}
