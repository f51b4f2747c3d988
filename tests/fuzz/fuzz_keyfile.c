/* Fuzz target: both key-file decoders over arbitrary text, with the vectors' passphrase, so
 * a mutated salt or sealed key reaches the KDF and the AEAD. */
#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[ANT_KEY_LEN];
    struct ant_diag d = {{0}};
    struct ant_bytes text = ant_bytes_of(data, size);
    if (size > ANT_KEYFILE_MAX) {
        return 0; /* ant_key_load refuses these before parsing */
    }
    (void)!ant_keyfile_public_decode(text, ANT_KEYFILE_C4GH_PUBLIC, key, &d);
    (void)!ant_keyfile_public_decode(text, ANT_KEYFILE_ED25519_PUBLIC, key, &d);
    (void)!ant_keyfile_secret_decode(text, ANT_KEYFILE_C4GH_SECRET, "antenna-test", key, &d);
    (void)!ant_keyfile_secret_decode(text, ANT_KEYFILE_ED25519_SECRET, NULL, key, &d);
    return 0;
}
