/*
 * ratelimit.c -- token buckets keyed by caller, in a fixed-size open
 * addressing table under one mutex. The table is bounded: when it fills,
 * the stalest bucket is reused, so a flood of distinct callers costs memory
 * proportional to SLOTS, never more. A reused bucket starts full, which can
 * only ever favour a caller, never lock one out.
 */
#include "dg/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/hash.h"

/* Distinct callers tracked at once: keys and JWT subjects, or client IPs
 * (the per-IP limiter before auth is a second table of its own). */
#define SLOTS 4096
#define PROBES 16

typedef struct {
  char caller[72];
  double tokens;
  double last_s;   /* monotonic seconds of the last refill, 0 = empty slot */
} bucket_t;

struct dg_ratelimit_s {
  double rate, burst;
  pthread_mutex_t lock;
  bucket_t *b;
};


dg_ratelimit_t *dg_ratelimit_create(double rate, double burst) {
  dg_ratelimit_t *rl = dg_calloc(1, sizeof *rl);
  rl->rate = rate;
  rl->burst = burst >= 1 ? burst : (rate >= 1 ? rate : 1);
  pthread_mutex_init(&rl->lock, NULL);
  if (rate > 0) rl->b = dg_calloc(SLOTS, sizeof *rl->b);
  return rl;
}

void dg_ratelimit_destroy(dg_ratelimit_t *rl) {
  if (rl == NULL) return;
  pthread_mutex_destroy(&rl->lock);
  dg_free(rl->b);
  dg_free(rl);
}

int dg_ratelimit_take(dg_ratelimit_t *rl, const char *caller) {
  if (rl == NULL || rl->rate <= 0) return 0;
  uint64_t h = dg_fnv1a64_str(caller);
  double now = (double)dg_mono_us() / 1e6;
  pthread_mutex_lock(&rl->lock);
  bucket_t *hit = NULL, *oldest = NULL;
  for (int i = 0; i < PROBES && hit == NULL; i++) {
    bucket_t *b = &rl->b[(h + (uint64_t)i) & (SLOTS - 1)];
    if (b->last_s != 0 && strncmp(b->caller, caller, sizeof b->caller - 1) == 0) hit = b;
    else if (oldest == NULL || b->last_s < oldest->last_s) oldest = b;
  }
  if (hit == NULL) {
    hit = oldest;
    memset(hit, 0, sizeof *hit);
    strncpy(hit->caller, caller, sizeof hit->caller - 1);
    hit->tokens = rl->burst;
    hit->last_s = now;
  }
  hit->tokens = fmin(rl->burst, hit->tokens + (now - hit->last_s) * rl->rate);
  hit->last_s = now;
  int wait = 0;
  if (hit->tokens >= 1) hit->tokens -= 1;
  else wait = (int)ceil((1 - hit->tokens) / rl->rate);
  pthread_mutex_unlock(&rl->lock);
  return wait > 0 ? wait : 0;
}
