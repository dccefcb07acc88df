/*
 * ratelimit.h -- per-caller token buckets: `rate` requests a second on
 * average, bursts of up to `burst`. A caller over its rate gets 429 with
 * Retry-After (the seconds until a token is back).
 */
#ifndef DG_RATELIMIT_H
#define DG_RATELIMIT_H

#include <stdint.h>

typedef struct dg_ratelimit_s dg_ratelimit_t;

/** rate <= 0: no limit (dg_ratelimit_take always allows). */
dg_ratelimit_t *dg_ratelimit_create(double rate, double burst);
void dg_ratelimit_destroy(dg_ratelimit_t *rl);
/** Takes a token for caller; 0 allowed, else the whole seconds to wait (>= 1). */
int dg_ratelimit_take(dg_ratelimit_t *rl, const char *caller);

#endif
