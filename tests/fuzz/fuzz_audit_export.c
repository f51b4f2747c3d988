/* Fuzz target: the offline verifier of an audit export (NDJSON from whoever hands it to an
 * auditor). The public key is derived from a fixed seed, the one the corpus's valid exports are
 * signed with, so mutations reach the chain and signature checks, not only the JSON parser. */
#include <stddef.h>
#include <stdint.h>
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
    return 0;
}
