/* Fuzz target: every token verifier over arbitrary bytes, against a fixed Ed25519 public key
 * (RFC 8037 Appendix A's) and a small fixed JWKS (one RSA 2048, one P-256, that Ed25519 key),
 * with a fixed clock so the corpus's valid tokens reach the claims checks; and the JWKS
 * parser over the same bytes. Only public keys are here; the corpus was signed elsewhere. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "crypto/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000100

static const char jwks_doc[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"sig\",\"kid\":\"rsa1\",\"alg\":\"RS256\",\"n\":\"r"
    "MMGdwJXRKR9BzPYH5lp6MpkGVzO3HsxXysXuOYpnJBkuL6gqUiVchQLZHxVBBcKtXNZUwP7l8j0aUC4MPzJa5Wka"
    "-hICmSAqWS8KrpyK3Z61vCHf-mY21IG5EDaRBgC1zGQFnLegBhETV-Iuk66mRsKErlTgSPrz-Etiw4f2l1URs8Rc"
    "0HSZYtwDO8DsYqvmlKIvKInlHszUdTtBO5EUjCtPt5-YUm2AIQG5KEz3hILOmEtl3JSAB_isEgCNo8KrlC193Azr"
    "G2E2nj2jilaOCGrPwgTrGm1xICHvAloEIfnlGlm5X66_cQF76sERJLOBZJI0GKk9vw6FSmgIUtXJw\",\"e\":\""
    "AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec1\",\"x\":\"C40pkuCEMwsx3oCoYJ5jy2"
    "9pnAUw8s1GhA0DNSec5xs\",\"y\":\"D_r_XoZ3PVmT5sMjkAgc89cq90oIZGTWbtqtg_4kZJU\"},{\"kty\":"
    "\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed1\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIa"
    "aPcHURo\"}]}";

static struct ant_jwks *g_set;
static uint8_t g_ed_pk[ANT_KEY_LEN];

static void setup_once(void)
{
    size_t n = 0;
    if (g_set != NULL) {
        return;
    }
    if (ant_jwks_parse(ant_bytes_of(jwks_doc, sizeof(jwks_doc) - 1), &g_set, NULL) != 0 ||
        ant_b64url_decode(ant_bytes_str("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"), g_ed_pk,
                          sizeof(g_ed_pk), &n) != 0 ||
        n != ANT_KEY_LEN) {
        abort(); /* the fixture itself is broken */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ant_bytes in = ant_bytes_of(data, size);
    struct ant_diag d = {{0}};
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_EDDSA | ANT_TOKEN_RS256 | ANT_TOKEN_ES256,
        .iss = "https://idp.example/realms/ls",
        .aud = "antenna",
        .now = NOW,
        .skew_s = 60,
        .max_lifetime_s = 3000000000u,
    };
    struct ant_job_token job;
    struct ant_fed_token fed;
    struct ant_jwks *set = NULL;
    char iss[ANT_TOKEN_ID_MAX + 1];
    json_t *c = NULL;
    setup_once();
    if (ant_token_verify(in, g_set, &ex, &c, &d) == 0) {
        json_decref(c);
        c = NULL;
    }
    if (ant_token_oidc_verify(in, g_set, ex.iss, ex.aud, NOW, &c, &d) == 0) {
        json_decref(c);
        c = NULL;
    }
    (void)!ant_token_job_verify(in, g_ed_pk, "site-a", NOW, &job, &d);
    (void)!ant_token_fed_verify(in, g_ed_pk, "site-b", "site-a", NOW, &fed, &d);
    (void)!ant_token_peek_iss(in, iss, &d);
    if (ant_jwks_parse(in, &set, &d) == 0) {
        ant_jwks_free(set);
    }
    return 0;
}
