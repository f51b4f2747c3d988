/* Token buckets in a fixed, striped table; see ratelimit.h. */
#include "gateway/ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_STRIPES 64
#define RL_WAYS 32 /* buckets per stripe: 2048 principals tracked at once */
#define RL_KEY_MAX 96

struct bucket {
    char key[RL_KEY_MAX];
    double tokens;
    int64_t t_ns; /* last refill */
};

struct stripe {
    pthread_mutex_t mu;
    struct bucket b[RL_WAYS];
};

struct ant_ratelimit {
    double rate;  /* tokens per second */
    double burst; /* bucket size */
    struct stripe s[RL_STRIPES];
};

int ant_ratelimit_new(unsigned rate, unsigned burst, struct ant_ratelimit **out)
{
    struct ant_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return -ENOMEM;
    }
    rl->rate = rate;
    rl->burst = burst != 0 ? burst : rate;
    for (size_t i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_init(&rl->s[i].mu, NULL);
    }
    *out = rl;
    return 0;
}

void ant_ratelimit_free(struct ant_ratelimit *rl)
{
    if (rl == NULL) {
        return;
    }
    for (size_t i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_destroy(&rl->s[i].mu);
    }
    free(rl);
}

/* FNV-1a: spreads keys over stripes; not a security boundary (a collision only shares a lock). */
static uint32_t key_hash(const char *k)
{
    uint32_t h = 2166136261u;
    for (; *k != '\0'; k++) {
        h = (h ^ (uint8_t)*k) * 16777619u;
    }
    return h;
}

unsigned ant_ratelimit_take(struct ant_ratelimit *rl, const char *key, int64_t now_ns)
{
    if (rl == NULL || rl->rate <= 0) {
        return 0;
    }
    char k[RL_KEY_MAX];
    snprintf(k, sizeof(k), "%s", key);
    struct stripe *s = &rl->s[key_hash(k) % RL_STRIPES];
    unsigned wait = 0;
    pthread_mutex_lock(&s->mu);
    struct bucket *b = NULL, *victim = NULL;
    for (size_t i = 0; i < RL_WAYS && b == NULL; i++) {
        struct bucket *c = &s->b[i];
        if (c->key[0] == '\0') {
            if (victim == NULL || victim->key[0] != '\0') {
                victim = c; /* an empty slot beats any used one */
            }
        } else if (strcmp(c->key, k) == 0) {
            b = c;
        } else if (victim == NULL || (victim->key[0] != '\0' && c->t_ns < victim->t_ns)) {
            victim = c;
        }
    }
    if (b == NULL) {
        b = victim;
        memcpy(b->key, k, sizeof(k));
        b->tokens = rl->burst;
        b->t_ns = now_ns;
    }
    double elapsed = (double)(now_ns - b->t_ns) / 1e9;
    if (elapsed > 0) {
        b->tokens += elapsed * rl->rate;
        if (b->tokens > rl->burst) {
            b->tokens = rl->burst;
        }
        b->t_ns = now_ns;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        double need = (1.0 - b->tokens) / rl->rate;
        wait = (unsigned)need + 1;
    }
    pthread_mutex_unlock(&s->mu);
    return wait;
}
