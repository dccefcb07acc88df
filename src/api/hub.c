/*
 * hub.c -- outcome fan-out (see hub.h).
 *
 * One mutex guards the subscriber list, every queue and the events'
 * reference counts; each subscriber has its own condition variable. The
 * publisher (the response reader) does O(subscribers) pointer pushes per
 * event and never waits for a client.
 */
#include "dg/hub.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"

typedef struct qnode_s {
  dg_event_t *ev;
  struct qnode_s *next;
} qnode_t;

struct dg_sub_s {
  pthread_cond_t cond;
  qnode_t *head, *tail;   /* pending events, oldest first                */
  size_t bytes;           /* pending bytes                               */
  size_t max_bytes;
  int dropped;            /* the queue overflowed                        */
  int all;                /* no table filter                             */
  char **tables;
  size_t ntables;
  struct dg_sub_s *next;
};

struct dg_hub_s {
  pthread_mutex_t lock;
  dg_sub_t *subs;
  size_t nsubs;
  int closed;
};

dg_hub_t *dg_hub_create(void) {
  dg_hub_t *h = dg_calloc(1, sizeof *h);
  pthread_mutex_init(&h->lock, NULL);
  return h;
}

void dg_hub_close(dg_hub_t *h) {
  if (h == NULL) return;
  pthread_mutex_lock(&h->lock);
  h->closed = 1;
  for (dg_sub_t *s = h->subs; s; s = s->next) pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&h->lock);
}

void dg_hub_destroy(dg_hub_t *h) {
  if (h == NULL) return;
  dg_hub_close(h);
  /* The HTTP server has stopped, so no subscriber remains. */
  pthread_mutex_destroy(&h->lock);
  dg_free(h);
}

static void set_tables(dg_sub_t *s, const char *const *tables, size_t n, int all) {
  for (size_t i = 0; i < s->ntables; i++) dg_free(s->tables[i]);
  dg_free(s->tables);
  s->tables = NULL;
  s->ntables = 0;
  s->all = all || tables == NULL;
  if (s->all) return;
  s->tables = dg_calloc(n + 1, sizeof *s->tables);
  for (size_t i = 0; i < n; i++) s->tables[s->ntables++] = dg_strdup(tables[i]);
}

dg_sub_t *dg_hub_subscribe(dg_hub_t *h, const char *const *tables, size_t ntables, size_t max_bytes) {
  dg_sub_t *s = dg_calloc(1, sizeof *s);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cond, &attr);
  pthread_condattr_destroy(&attr);
  s->max_bytes = max_bytes;
  set_tables(s, tables, ntables, tables == NULL || ntables == 0);
  pthread_mutex_lock(&h->lock);
  s->next = h->subs;
  h->subs = s;
  h->nsubs++;
  pthread_mutex_unlock(&h->lock);
  return s;
}

void dg_sub_set_tables(dg_hub_t *h, dg_sub_t *s, const char *const *tables, size_t n, int all) {
  pthread_mutex_lock(&h->lock);
  set_tables(s, tables, n, all);
  pthread_mutex_unlock(&h->lock);
}

static void event_unref_locked(dg_event_t *ev) {
  if (--ev->_refs > 0) return;
  for (size_t i = 0; i < ev->ntables; i++) dg_free(ev->tables[i]);
  dg_free(ev->tables);
  dg_free(ev->res);
  dg_free(ev);
}

void dg_event_release(dg_hub_t *h, dg_event_t *ev) {
  if (ev == NULL) return;
  pthread_mutex_lock(&h->lock);
  event_unref_locked(ev);
  pthread_mutex_unlock(&h->lock);
}

void dg_hub_unsubscribe(dg_hub_t *h, dg_sub_t *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&h->lock);
  for (dg_sub_t **pp = &h->subs; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      h->nsubs--;
      break;
    }
  }
  while (s->head) {
    qnode_t *n = s->head;
    s->head = n->next;
    event_unref_locked(n->ev);
    dg_free(n);
  }
  pthread_mutex_unlock(&h->lock);
  set_tables(s, NULL, 0, 1);
  pthread_cond_destroy(&s->cond);
  dg_free(s);
}

int dg_event_matches(const dg_event_t *ev, const char *table) {
  if (table == NULL) return 1;
  for (size_t i = 0; i < ev->ntables; i++)
    if (strcmp(ev->tables[i], table) == 0) return 1;
  return 0;
}

static int wants(const dg_sub_t *s, const dg_event_t *ev) {
  if (s->all) return 1;
  for (size_t i = 0; i < s->ntables; i++)
    if (dg_event_matches(ev, s->tables[i])) return 1;
  return 0;
}

void dg_hub_publish(dg_hub_t *h, const char *id, const char *res, size_t len,
                    const char *const *tables, size_t ntables) {
  pthread_mutex_lock(&h->lock);
  if (h->nsubs == 0) {
    pthread_mutex_unlock(&h->lock);
    return;
  }
  pthread_mutex_unlock(&h->lock);
  dg_event_t *ev = dg_calloc(1, sizeof *ev);
  snprintf(ev->id, sizeof ev->id, "%s", id);
  ev->res = dg_strndup(res, len);
  ev->len = len;
  ev->tables = dg_calloc(ntables + 1, sizeof *ev->tables);
  for (size_t i = 0; i < ntables; i++) ev->tables[ev->ntables++] = dg_strdup(tables[i]);
  ev->_refs = 1; /* ours, until the loop ends */
  pthread_mutex_lock(&h->lock);
  for (dg_sub_t *s = h->subs; s; s = s->next) {
    if (s->dropped || !wants(s, ev)) continue;
    if (s->bytes + len > s->max_bytes) {
      s->dropped = 1; /* too slow: the stream ends with a reason */
      pthread_cond_signal(&s->cond);
      continue;
    }
    qnode_t *n = dg_malloc(sizeof *n);
    n->ev = ev;
    n->next = NULL;
    ev->_refs++;
    if (s->tail) s->tail->next = n;
    else s->head = n;
    s->tail = n;
    s->bytes += len;
    pthread_cond_signal(&s->cond);
  }
  event_unref_locked(ev);
  pthread_mutex_unlock(&h->lock);
}

int dg_sub_next(dg_hub_t *h, dg_sub_t *s, int timeout_ms, dg_event_t **ev) {
  struct timespec until;
  dg_deadline_after_ms(&until, timeout_ms);
  pthread_mutex_lock(&h->lock);
  int rc = 0;
  while (s->head == NULL && !s->dropped && !h->closed && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&s->cond, &h->lock, &until);
  int out;
  if (s->dropped) {
    out = DG_HUB_DROPPED;
  } else if (s->head) {
    qnode_t *n = s->head;
    s->head = n->next;
    if (s->head == NULL) s->tail = NULL;
    s->bytes -= n->ev->len;
    *ev = n->ev;
    dg_free(n);
    out = DG_HUB_EVENT;
  } else {
    out = h->closed ? DG_HUB_CLOSED : DG_HUB_TIMEOUT;
  }
  pthread_mutex_unlock(&h->lock);
  return out;
}

size_t dg_hub_count(dg_hub_t *h) {
  pthread_mutex_lock(&h->lock);
  size_t n = h->nsubs;
  pthread_mutex_unlock(&h->lock);
  return n;
}
