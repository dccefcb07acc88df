/*
 * waiters.c -- a hash table of waiting requests under one mutex. Each waiter
 * has its own condition variable, so a delivery wakes exactly the threads
 * that wait for that request.
 */
#include "dg/waiters.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/hash.h"

/* Power of two; a few hundred waiting requests spread thinly over it. */
#define BUCKETS 1024

struct dg_waiters_s {
  pthread_mutex_t lock;          /* guards buckets and every waiter's fields */
  dg_waiter_t *buckets[BUCKETS];
  int closing;                   /* 1 after dg_waiters_wake_all              */
};

static size_t bucket_of(const char *s) {
  return (size_t)(dg_fnv1a64_str(s) & (BUCKETS - 1));
}

dg_waiters_t *dg_waiters_create(void) {
  dg_waiters_t *ws = dg_calloc(1, sizeof *ws);
  pthread_mutex_init(&ws->lock, NULL);
  return ws;
}

void dg_waiters_destroy(dg_waiters_t *ws) {
  if (ws == NULL) return;
  pthread_mutex_destroy(&ws->lock);
  dg_free(ws);
}

static atomic_ullong serials;

static void add(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id, void (*notify)(void *), void *arg) {
  memset(w, 0, sizeof *w);
  w->notify = notify;
  w->notify_arg = arg;
  w->serial = atomic_fetch_add(&serials, 1) + 1;
  size_t n = strlen(request_id);
  if (n >= sizeof w->request_id) n = sizeof w->request_id - 1;
  memcpy(w->request_id, request_id, n);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &attr);
  pthread_condattr_destroy(&attr);
  size_t b = bucket_of(w->request_id);
  pthread_mutex_lock(&ws->lock);
  w->next = ws->buckets[b];
  ws->buckets[b] = w;
  pthread_mutex_unlock(&ws->lock);
}

void dg_waiters_add(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id) { add(ws, w, request_id, NULL, NULL); }

void dg_waiters_add_notify(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id, void (*notify)(void *),
                           void *arg) {
  add(ws, w, request_id, notify, arg);
}

char *dg_waiters_take(dg_waiters_t *ws, dg_waiter_t *w, size_t *len) {
  size_t b = bucket_of(w->request_id);
  pthread_mutex_lock(&ws->lock);
  for (dg_waiter_t **pp = &ws->buckets[b]; *pp; pp = &(*pp)->next) {
    if (*pp == w) {
      *pp = w->next;
      break;
    }
  }
  char *res = w->done ? w->res : NULL;
  if (len) *len = w->done ? w->res_len : 0;
  if (!w->done) dg_free(w->res);
  w->res = NULL;
  pthread_mutex_unlock(&ws->lock);
  pthread_cond_destroy(&w->cond);
  return res;
}

int dg_waiters_wait(dg_waiters_t *ws, dg_waiter_t *w, int timeout_ms) {
  struct timespec until;
  dg_deadline_after_ms(&until, timeout_ms);
  pthread_mutex_lock(&ws->lock);
  int rc = 0;
  while (!w->done && !ws->closing && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&w->cond, &ws->lock, &until);
  int done = w->done;
  pthread_mutex_unlock(&ws->lock);
  return done ? 0 : DG_ETIMEOUT;
}

void dg_waiters_remove(dg_waiters_t *ws, dg_waiter_t *w) {
  size_t b = bucket_of(w->request_id);
  pthread_mutex_lock(&ws->lock);
  for (dg_waiter_t **pp = &ws->buckets[b]; *pp; pp = &(*pp)->next) {
    if (*pp == w) {
      *pp = w->next;
      break;
    }
  }
  pthread_mutex_unlock(&ws->lock);
  pthread_cond_destroy(&w->cond);
  dg_free(w->res);
  w->res = NULL;
}

int dg_waiters_visit(dg_waiters_t *ws, const char *request_id, dg_waiter_t *w, unsigned long long serial,
                     void (*fn)(dg_waiter_t *w, void *arg), void *arg) {
  char key[sizeof w->request_id]; /* cut as add() cuts it */
  snprintf(key, sizeof key, "%s", request_id);
  size_t b = bucket_of(key);
  int found = 0;
  pthread_mutex_lock(&ws->lock);
  /* Compared as a pointer before it is read: a waiter taken away may be
   * freed memory, and one made since at the same address has its own serial. */
  for (dg_waiter_t *x = ws->buckets[b]; x && !found; x = x->next) found = x == w && x->serial == serial;
  if (found) fn(w, arg);
  pthread_mutex_unlock(&ws->lock);
  return found;
}

int dg_waiters_deliver(dg_waiters_t *ws, const char *request_id, const char *res, size_t len) {
  size_t b = bucket_of(request_id);
  int n = 0;
  pthread_mutex_lock(&ws->lock);
  for (dg_waiter_t *w = ws->buckets[b]; w; w = w->next) {
    if (w->done || strcmp(w->request_id, request_id) != 0) continue;
    w->res = dg_strndup(res, len);
    w->res_len = len;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    if (w->notify) w->notify(w->notify_arg);
    n++;
  }
  pthread_mutex_unlock(&ws->lock);
  return n;
}

void dg_waiters_key(char *out, size_t cap, const char *scope, const char *request_id) {
  snprintf(out, cap, "%s\x1f%s", scope ? scope : "", request_id ? request_id : "");
}

void dg_waiters_wake_all(dg_waiters_t *ws) {
  pthread_mutex_lock(&ws->lock);
  ws->closing = 1;
  for (size_t b = 0; b < BUCKETS; b++)
    for (dg_waiter_t *w = ws->buckets[b]; w; w = w->next) {
      pthread_cond_signal(&w->cond);
      if (w->notify && !w->done) w->notify(w->notify_arg);
    }
  pthread_mutex_unlock(&ws->lock);
}
