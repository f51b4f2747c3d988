/* Fuzz target: the offline verifier of an audit export (NDJSON from whoever hands it to an
 * auditor), and the parser of witness files (peers' records of checkpoints, the same lines).
 * The public key is derived from a fixed seed, the one the corpus's valid exports are signed
 * with, so mutations reach the chain and signature checks, not only the JSON parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pub[ANT_KEY_LEN];
    static bool have_pub;
    if (!have_pub) {
        uint8_t seed[ANT_KEY_LEN];
        struct ant_signkey *sk = NULL;
        memset(seed, 0x42, sizeof(seed));
        if (ant_signkey_from_seed(seed, &sk) != 0) {
            return 0;
        }
        memcpy(pub, ant_signkey_public(sk), sizeof(pub));
        ant_signkey_free(sk);
        have_pub = true;
    }
    struct ant_audit_report rep;
    int rc = ant_audit_verify_export(ant_bytes_of(data, size), pub, &rep);
    /* the report must agree with the result */
    if ((rc == 0) != (rep.first_bad_seq == 0) && rc != -ENOMEM) {
        __builtin_trap();
    }
    /* the same bytes as a witness file (`antenna audit verify --witness`): its parser, then
     * the export checked against what it parsed */
    struct ant_audit_ckpt *w = NULL;
    size_t n = 0;
    if (ant_audit_witness_parse(ant_bytes_of(data, size), &w, &n, NULL) == 0) {
        for (size_t i = 1; i < n; i++) {
            if (w[i - 1].seq > w[i].seq) {
                __builtin_trap(); /* the verifier relies on the order */
            }
        }
        struct ant_audit_witnesses ws = {w, n};
        rc = ant_audit_verify_export_witnessed(ant_bytes_of(data, size), pub, &ws, &rep);
        if ((rc == 0) != (rep.first_bad_seq == 0) && rc != -ENOMEM) {
            __builtin_trap();
        }
        free(w);
    }
    return 0;
}
