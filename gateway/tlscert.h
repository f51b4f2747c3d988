/* The site's self-signed TLS certificate, made by `antenna init` with OpenSSL. */
#ifndef ANT_TLSCERT_H
#define ANT_TLSCERT_H

#include "crypto/base/base.h"

/* Makes an ECDSA P-256 key and a self-signed X.509 v3 certificate valid for `days`, with
 * CN = cn and subject alternative names localhost, 127.0.0.1, ::1 and each of hostnames
 * (an IP literal becomes an IP SAN). PEM into cert_pem and key_pem (the key buffer should be
 * wiped by the caller). -EINVAL for a bad hostname, -ENOMEM / -EIO from OpenSSL. */
ANT_MUST_CHECK int ant_tlscert_make(const char *cn, const char *const *hostnames, size_t n,
                                    unsigned days, struct ant_buf *cert_pem,
                                    struct ant_buf *key_pem);

/* SHA-256 of the first certificate's DER in a PEM text, as lower-case hex (65 bytes). */
ANT_MUST_CHECK int ant_tlscert_fingerprint(struct ant_bytes pem, char out[65]);

/* A hostname for a SAN: letters, digits, '-' and '.', 1..253 bytes, or an IP literal. */
bool ant_hostname_is_valid(const char *h);

#endif
