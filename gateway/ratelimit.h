/* A per-principal token bucket: `rate` requests per second with bursts of `burst`. A fixed
 * table (no growth with the number of principals): when it is full, the bucket refilled longest
 * ago is reused, which can only ever let a request through early, never refuse one wrongly for
 * long. Thread-safe (striped locks). */
#ifndef ANT_RATELIMIT_H
#define ANT_RATELIMIT_H

#include "crypto/base/base.h"

#include <stdint.h>

struct ant_ratelimit;

/* rate 0 disables limiting (take always allows). burst 0 means burst = rate. */
ANT_MUST_CHECK int ant_ratelimit_new(unsigned rate, unsigned burst, struct ant_ratelimit **out);
void ant_ratelimit_free(struct ant_ratelimit *rl); /* accepts NULL */

/* Takes one token for `key` at time now_ns (monotonic). Returns 0 when allowed, else the whole
 * seconds (>= 1) after which a retry will be allowed, for Retry-After. */
unsigned ant_ratelimit_take(struct ant_ratelimit *rl, const char *key, int64_t now_ns);

#endif
