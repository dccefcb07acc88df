/*
 * hub.c -- outcome fan-out (see hub.h).
 *
 * One mutex guards the subscriber list, every queue and the events'
 * reference counts; each subscriber has its own condition variable. The
 * publisher (the response reader) does O(subscribers) pointer pushes per
 * event and never waits for a client.
 *
 * The ring (second half of the file) has its own lock and one condition
 * variable that every waiting long poll shares: the reader appends a batch of
 * entries and broadcasts once. A per-waiter queue, as subscribers have, would
 * cost the reader a push per waiter per entry for a thousand long polls that
 * each want the same entries; with the ring each waiter takes references to
 * what it needs when it wakes and copies the texts after unlocking (the
 * entries are reference-counted with atomics, so the copy and the release
 * need no lock). Lock order: the hub lock and the ring lock are never held
 * together; the single-flight lock is never held with either.
 */
#include "dg/hub.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/wire.h"

/* Entries the ring holds at most: at 1,000 outcomes/s about 16 s of
 * history, far more than a long-poll client falls behind between two polls,
 * at a few MiB for typical outcomes. A power of two for the index mask. */
#define RING_MAX_ENTRIES 16384
/* Bytes the ring holds at most (texts plus bookkeeping): a few outcomes of
 * big spreads or inserts must not pin gigabytes. A cursor behind what this
 * allows is served from Redis instead. */
#define RING_MAX_BYTES ((size_t)64 << 20)
/* Bookkeeping counted per entry besides its texts. */
#define RING_ENTRY_OVERHEAD 128
/* Largest result dg_hub_shared_run passes on. */
#define FLIGHT_RESULT_MAX 256

/* One entry, in one block with its texts (dg_ring_append). Immutable once
 * appended, except refs and dead_next. */
typedef struct rentry_s {
  dg_redis_xid_t id;      /* stream id, ascending along the ring        */
  dg_event_t ev;          /* ev.res NULL: entry without a usable update;
                           * ev._refs unused (refs counts)              */
  size_t cost;            /* bytes counted against RING_MAX_BYTES       */
  atomic_uint refs;       /* the ring's (while held) + each reader's    */
  struct rentry_s *dead_next; /* evicted, awaiting unref after unlock   */
} rentry_t;

typedef struct ring_s {
  pthread_mutex_t lock;
  pthread_cond_t cond;    /* broadcast: new entries, reset, close       */
  rentry_t **slots;       /* RING_MAX_ENTRIES, circular                 */
  size_t head;            /* index of the oldest entry                  */
  size_t n;               /* entries held                               */
  size_t bytes;           /* sum of the entries' cost                   */
  dg_redis_xid_t floor;   /* every entry after this is held (see hub.h) */
  int ready;              /* dg_ring_reset has run                      */
  int closed;             /* shutdown: waiters leave                    */
} ring_t;

typedef struct flight_s {
  pthread_mutex_t lock;
  pthread_cond_t cond;    /* broadcast when a run finishes              */
  uint64_t started;       /* runs begun                                 */
  uint64_t done;          /* number of the last run finished            */
  int running;
  uint64_t asked;         /* the highest ticket dg_hub_shared_ask gave  */
  int serving;            /* dg_hub_shared_serve is asked for or runs   */
  int rc;                 /* the last run's return value                */
  unsigned char result[FLIGHT_RESULT_MAX];
} flight_t;

typedef struct qnode_s {
  dg_event_t *ev;
  struct qnode_s *next;
} qnode_t;

struct dg_sub_s {
  void (*notify)(void *); /* called under the hub's lock when something is queued, dropped or closed */
  void *notify_arg;
  pthread_cond_t cond;
  qnode_t *head, *tail;   /* pending events, oldest first                */
  size_t bytes;           /* pending bytes                               */
  size_t max_bytes;
  int dropped;            /* the queue overflowed                        */
  int all;                /* no table filter                             */
  char **tables;
  size_t ntables;
  char *scope;            /* a scoped key's ",a,b,", or NULL             */
  struct dg_sub_s *next;
};

struct dg_hub_s {
  pthread_mutex_t lock;
  dg_sub_t *subs;
  size_t nsubs;
  int closed;
  ring_t ring;
  flight_t flight;
  void (*ring_hook)(void *); /* after every dg_ring_notify and at close */
  void *ring_hook_arg;
};

static void cond_init_monotonic(pthread_cond_t *c) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(c, &attr);
  pthread_condattr_destroy(&attr);
}

static void ring_evict_locked(ring_t *r, struct rentry_s **dead);
static void unref_chain(struct rentry_s *dead);

dg_hub_t *dg_hub_create(void) {
  dg_hub_t *h = dg_calloc(1, sizeof *h);
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->ring.lock, NULL);
  cond_init_monotonic(&h->ring.cond);
  h->ring.slots = dg_calloc(RING_MAX_ENTRIES, sizeof *h->ring.slots);
  pthread_mutex_init(&h->flight.lock, NULL);
  pthread_cond_init(&h->flight.cond, NULL);
  return h;
}

static void run_ring_hook(dg_hub_t *h) {
  void (*fn)(void *) = __atomic_load_n(&h->ring_hook, __ATOMIC_ACQUIRE);
  if (fn) fn(__atomic_load_n(&h->ring_hook_arg, __ATOMIC_RELAXED));
}

void dg_hub_close(dg_hub_t *h) {
  if (h == NULL) return;
  pthread_mutex_lock(&h->lock);
  h->closed = 1;
  for (dg_sub_t *s = h->subs; s; s = s->next) {
    pthread_cond_signal(&s->cond);
    if (s->notify) s->notify(s->notify_arg);
  }
  pthread_mutex_unlock(&h->lock);
  pthread_mutex_lock(&h->ring.lock);
  h->ring.closed = 1;
  pthread_cond_broadcast(&h->ring.cond);
  pthread_mutex_unlock(&h->ring.lock);
  run_ring_hook(h);
}

void dg_hub_destroy(dg_hub_t *h) {
  if (h == NULL) return;
  dg_hub_close(h);
  /* The HTTP server has stopped, so no subscriber or waiter remains, and
   * no reference but the ring's. */
  rentry_t *dead = NULL;
  while (h->ring.n > 0) ring_evict_locked(&h->ring, &dead);
  unref_chain(dead);
  dg_free(h->ring.slots);
  pthread_cond_destroy(&h->ring.cond);
  pthread_mutex_destroy(&h->ring.lock);
  pthread_cond_destroy(&h->flight.cond);
  pthread_mutex_destroy(&h->flight.lock);
  pthread_mutex_destroy(&h->lock);
  dg_free(h);
}

static void set_tables(dg_sub_t *s, const char *const *tables, size_t n, int all) {
  for (size_t i = 0; i < s->ntables; i++) dg_free(s->tables[i]);
  dg_free(s->tables);
  s->tables = NULL;
  s->ntables = 0;
  s->all = all != 0; /* the caller says "every table"; none listed is none */
  if (s->all || n == 0) return;
  s->tables = dg_calloc(n + 1, sizeof *s->tables);
  for (size_t i = 0; i < n; i++) s->tables[s->ntables++] = dg_strdup(tables[i]);
}

dg_sub_t *dg_hub_subscribe(dg_hub_t *h, const char *const *tables, size_t ntables, size_t max_bytes) {
  return dg_hub_subscribe_scoped(h, tables, ntables, max_bytes, NULL);
}

dg_sub_t *dg_hub_subscribe_scoped(dg_hub_t *h, const char *const *tables, size_t ntables, size_t max_bytes,
                                  const char *scope) {
  dg_sub_t *s = dg_calloc(1, sizeof *s);
  s->scope = scope && *scope ? dg_strdup(scope) : NULL; /* before it is linked: nothing slips by */
  cond_init_monotonic(&s->cond);
  s->max_bytes = max_bytes;
  set_tables(s, tables, ntables, tables == NULL || ntables == 0);
  pthread_mutex_lock(&h->lock);
  s->next = h->subs;
  h->subs = s;
  h->nsubs++;
  pthread_mutex_unlock(&h->lock);
  return s;
}

void dg_sub_set_notify(dg_hub_t *h, dg_sub_t *s, void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&h->lock);
  s->notify = fn;
  s->notify_arg = arg;
  int now = s->head != NULL || s->dropped || h->closed;
  if (fn && now) fn(arg);
  pthread_mutex_unlock(&h->lock);
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
  dg_free(s->scope);
  pthread_cond_destroy(&s->cond);
  dg_free(s);
}

int dg_event_matches(const dg_event_t *ev, const char *table) {
  if (table == NULL) return 1;
  for (size_t i = 0; i < ev->ntables; i++)
    if (strcmp(ev->tables[i], table) == 0) return 1;
  return 0;
}

static int in_list(const char *scope, const char *name) {
  size_t n = strlen(name);
  for (const char *p = strstr(scope, name); p; p = strstr(p + 1, name))
    if (p > scope && p[-1] == ',' && p[n] == ',') return 1;
  return 0;
}

int dg_event_within(const dg_event_t *ev, const char *scope) {
  if (scope == NULL || *scope == '\0') return 1;
  if (ev->ntables == 0) return 0; /* concerns no table: not a scoped key's */
  for (size_t i = 0; i < ev->ntables; i++)
    if (!in_list(scope, ev->tables[i])) return 0;
  return 1;
}

typedef struct {
  const char *scope;
  int any; /* some table named */
  int ok;  /* every table named is in scope */
} within_t;

static int within_each(const char *table, void *arg) {
  within_t *w = arg;
  w->any = 1;
  w->ok = in_list(w->scope, table);
  return !w->ok;
}

int dg_update_within(const char *res, size_t len, const char *scope) {
  if (scope == NULL || *scope == '\0') return 1;
  within_t w = {scope, 0, 1};
  (void)dg_wire_out_tables(res, len, within_each, &w);
  return w.ok && w.any;
}

static int wants(const dg_sub_t *s, const dg_event_t *ev) {
  if (s->scope && !dg_event_within(ev, s->scope)) return 0;
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
      if (s->notify) s->notify(s->notify_arg);
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
    if (s->notify) s->notify(s->notify_arg);
  }
  event_unref_locked(ev);
  pthread_mutex_unlock(&h->lock);
}

int dg_sub_next(dg_hub_t *h, dg_sub_t *s, int timeout_ms, dg_event_t **ev) {
  struct timespec until;
  dg_deadline_after_ms(&until, timeout_ms);
  pthread_mutex_lock(&h->lock);
  int rc = timeout_ms <= 0 ? ETIMEDOUT : 0; /* 0: look, never wait (a loop) */
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

/* ======================================================================= */
/* The ring of recent outcomes                                               */
/* ======================================================================= */

static rentry_t *ring_at(ring_t *r, size_t i) {
  return r->slots[(r->head + i) & (RING_MAX_ENTRIES - 1)];
}

/* The entry around an event handed out by dg_ring_read. Readers get the
 * event const (its texts are shared); the count beside it is what they may
 * change, hence the cast. */
static rentry_t *entry_of(const dg_event_t *ev) {
  return (rentry_t *)((char *)(uintptr_t)ev - offsetof(rentry_t, ev));
}

/* Drops one reference; the last one frees the entry (one block, see
 * dg_ring_append). acq_rel: the freeing thread sees every other holder's
 * reads finished. */
static void entry_unref(rentry_t *e) {
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) dg_free(e);
}

/* Unlinks the oldest entry and chains it on *dead for entry_unref after
 * the lock is released (freeing a big text under the lock would hold up
 * every waiter). The floor moves onto it, so a cursor before it is no
 * longer covered. */
static void ring_evict_locked(ring_t *r, rentry_t **dead) {
  size_t slot = r->head & (RING_MAX_ENTRIES - 1);
  rentry_t *e = r->slots[slot];
  r->slots[slot] = NULL;
  r->floor = e->id;
  r->bytes -= e->cost;
  r->head = (r->head + 1) & (RING_MAX_ENTRIES - 1);
  r->n--;
  e->dead_next = *dead;
  *dead = e;
}

static void unref_chain(rentry_t *dead) {
  while (dead) {
    rentry_t *next = dead->dead_next; /* read before the entry may go */
    entry_unref(dead);
    dead = next;
  }
}

void dg_ring_reset(dg_hub_t *h, dg_redis_xid_t start) {
  ring_t *r = &h->ring;
  rentry_t *dead = NULL;
  pthread_mutex_lock(&r->lock);
  while (r->n > 0) ring_evict_locked(r, &dead);
  r->head = 0;
  r->floor = start;
  r->ready = 1;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
  unref_chain(dead);
}

void dg_ring_append(dg_hub_t *h, dg_redis_xid_t id, const char *res, size_t len,
                    const char *const *tables, size_t ntables) {
  ring_t *r = &h->ring;
  /* The entry is built before taking the lock, so readers wait for pointer
   * moves only. One block holds it all, laid out as
   *   [rentry_t][table pointers, NULL-terminated][table names][text, NUL]
   * so an entry costs one malloc and one free however many readers share
   * it. sizeof(rentry_t) is a multiple of its alignment, which is at least
   * a pointer's, so the pointer array right behind it is aligned. */
  if (res == NULL) ntables = 0;
  size_t names = 0;
  for (size_t i = 0; i < ntables; i++) names += strlen(tables[i]) + 1;
  size_t size = sizeof(rentry_t) + (ntables + 1) * sizeof(char *) + names + (res ? len + 1 : 0);
  rentry_t *e = dg_malloc(size);
  memset(e, 0, sizeof *e);
  e->id = id;
  dg_redis_xid_format(id, e->ev.id, sizeof e->ev.id);
  e->cost = RING_ENTRY_OVERHEAD;
  char **tv = (char **)(e + 1);
  char *p = (char *)(tv + ntables + 1);
  for (size_t i = 0; i < ntables; i++) {
    size_t n = strlen(tables[i]) + 1;
    memcpy(p, tables[i], n);
    tv[i] = p;
    p += n;
    e->cost += n + sizeof(char *);
  }
  tv[ntables] = NULL;
  if (res) {
    memcpy(p, res, len);
    p[len] = '\0';
    e->ev.res = p;
    e->ev.len = len;
    e->ev.tables = tv;
    e->ev.ntables = ntables;
    e->cost += len;
  }
  atomic_init(&e->refs, 1); /* the ring's own */
  rentry_t *dead = NULL;
  pthread_mutex_lock(&r->lock);
  /* Entries arrive in stream order from the one reader; one out of order
   * would break the binary search and the floor, so it is a bug. */
  DG_ASSERT(r->ready);
  DG_ASSERT(dg_redis_xid_cmp(id, r->n ? ring_at(r, r->n - 1)->id : r->floor) > 0);
  if (r->n == RING_MAX_ENTRIES) ring_evict_locked(r, &dead);
  r->slots[(r->head + r->n) & (RING_MAX_ENTRIES - 1)] = e;
  r->n++;
  r->bytes += e->cost;
  /* An entry bigger than the whole budget is evicted at once: the floor
   * passes it, and cursors before it are read from Redis. */
  while (r->n > 0 && r->bytes > RING_MAX_BYTES) ring_evict_locked(r, &dead);
  pthread_mutex_unlock(&r->lock);
  unref_chain(dead);
}

void dg_ring_notify(dg_hub_t *h) {
  /* Broadcast without the lock: every entry was appended under it, so a
   * waiter either saw the entry before it went to sleep or was already
   * waiting (it joins the condition variable before it lets the lock go)
   * and is woken here. No wake-up is lost, and the reader, which the
   * synchronous writers wait for, does not queue for the lock behind the
   * thousand waiters it is waking. */
  pthread_cond_broadcast(&h->ring.cond);
  run_ring_hook(h);
}

void dg_ring_set_hook(dg_hub_t *h, void (*fn)(void *), void *arg) {
  __atomic_store_n(&h->ring_hook_arg, arg, __ATOMIC_RELAXED);
  __atomic_store_n(&h->ring_hook, fn, __ATOMIC_RELEASE); /* the reader may be running */
}

static int covered_locked(const ring_t *r, dg_redis_xid_t cursor) {
  return r->ready && dg_redis_xid_cmp(cursor, r->floor) >= 0;
}

int dg_ring_covers(dg_hub_t *h, dg_redis_xid_t cursor) {
  pthread_mutex_lock(&h->ring.lock);
  int yes = covered_locked(&h->ring, cursor);
  pthread_mutex_unlock(&h->ring.lock);
  return yes;
}

/* Index of the first held entry after cursor (n when none). */
static size_t first_after_locked(ring_t *r, dg_redis_xid_t cursor) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (dg_redis_xid_cmp(ring_at(r, mid)->id, cursor) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* One scan (dg_ring_read): pointers and references only. */
static void scan_locked(ring_t *r, dg_ring_read_t *rd) {
  for (size_t i = first_after_locked(r, rd->cursor);
       i < r->n && rd->matched < rd->limit && rd->scanned < rd->scan_max &&
       (rd->max_bytes == 0 || rd->bytes < rd->max_bytes);
       i++) {
    rentry_t *e = ring_at(r, i);
    rd->cursor = e->id;
    rd->scanned++;
    if (e->ev.res == NULL || !dg_event_matches(&e->ev, rd->table) || !dg_event_within(&e->ev, rd->scope))
      continue;
    /* relaxed: the ring's reference keeps the entry alive while we add ours */
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    rd->out[rd->matched++] = &e->ev;
    rd->bytes += e->ev.len;
  }
}

static int read_complete(const dg_ring_read_t *rd) {
  return rd->matched > 0 || (rd->any_entry && rd->scanned > 0) || rd->scanned >= rd->scan_max;
}

int dg_ring_read(dg_hub_t *h, dg_ring_read_t *rd, const struct timespec *until) {
  ring_t *r = &h->ring;
  int out = DG_RING_COVERED, timed_out = 0;
  pthread_mutex_lock(&r->lock);
  for (;;) {
    if (!covered_locked(r, rd->cursor)) {
      out = DG_RING_NOT_COVERED;
      break;
    }
    scan_locked(r, rd);
    /* After the deadline one last scan has run: an entry appended as the
     * time ran out is still answered. */
    if (until == NULL || read_complete(rd) || timed_out) break;
    if (r->closed) {
      out = DG_RING_CLOSED;
      break;
    }
    /* The scan and the wait are one lock hold: an entry appended after the
     * scan comes with a broadcast this wait receives. A woken waiter scans
     * before it lets the lock go, so each wake-up costs one lock hold. */
    timed_out = pthread_cond_timedwait(&r->cond, &r->lock, until) == ETIMEDOUT;
  }
  pthread_mutex_unlock(&r->lock);
  return out;
}

void dg_ring_release(const dg_event_t *const *evs, size_t n) {
  for (size_t i = 0; i < n; i++) entry_unref(entry_of(evs[i]));
}

/* ======================================================================= */
/* Single flight                                                             */
/* ======================================================================= */

/* One run of fn, begun and recorded under f->lock (held on entry and on
 * return, let go while fn runs); its number. */
static uint64_t flight_run_locked(flight_t *f, int (*fn)(void *arg, void *result), void *arg, size_t size) {
  f->running = 1;
  uint64_t mine = ++f->started;
  pthread_mutex_unlock(&f->lock);
  unsigned char buf[FLIGHT_RESULT_MAX];
  memset(buf, 0, sizeof buf);
  int rc = fn(arg, buf);
  pthread_mutex_lock(&f->lock);
  f->rc = rc;
  memcpy(f->result, buf, size);
  f->done = mine;
  f->running = 0;
  pthread_cond_broadcast(&f->cond);
  return mine;
}

int dg_hub_shared_run(dg_hub_t *h, int (*fn)(void *arg, void *result), void *arg, void *result,
                      size_t size) {
  DG_ASSERT(size <= FLIGHT_RESULT_MAX);
  flight_t *f = &h->flight;
  pthread_mutex_lock(&f->lock);
  /* A run counts for this caller only if it begins after now: a run already
   * under way may have read the state before the caller's own view of it. */
  uint64_t need = f->started + 1;
  while (f->done < need) {
    if (f->running) {
      pthread_cond_wait(&f->cond, &f->lock);
      continue;
    }
    flight_run_locked(f, fn, arg, size);
  }
  int rc = f->rc;
  memcpy(result, f->result, size);
  pthread_mutex_unlock(&f->lock);
  return rc;
}

uint64_t dg_hub_shared_ask(dg_hub_t *h, int *serve) {
  flight_t *f = &h->flight;
  pthread_mutex_lock(&f->lock);
  uint64_t need = f->started + 1; /* as dg_hub_shared_run */
  if (need > f->asked) f->asked = need;
  *serve = !f->serving;
  f->serving = 1;
  pthread_mutex_unlock(&f->lock);
  return need;
}

void dg_hub_shared_serve(dg_hub_t *h, int (*fn)(void *arg, void *result), void *arg, size_t size) {
  DG_ASSERT(size <= FLIGHT_RESULT_MAX);
  flight_t *f = &h->flight;
  uint64_t told = 0; /* f->done when the hook last ran */
  pthread_mutex_lock(&f->lock);
  while (f->done < f->asked) {
    if (f->running) { /* a dg_hub_shared_run: its run may serve the asks */
      pthread_cond_wait(&f->cond, &f->lock);
      continue;
    }
    uint64_t mine = flight_run_locked(f, fn, arg, size);
    pthread_mutex_unlock(&f->lock);
    run_ring_hook(h); /* without the lock: the hook posts to the loops */
    told = mine;
    pthread_mutex_lock(&f->lock);
  }
  /* In the same hold as the last look at asked: an ask after this starts
   * another serve. */
  f->serving = 0;
  uint64_t done = f->done;
  pthread_mutex_unlock(&f->lock);
  if (done != told) run_ring_hook(h); /* the last tickets were a dg_hub_shared_run's */
}

int dg_hub_shared_result(dg_hub_t *h, uint64_t ticket, int *rc, void *result, size_t size) {
  DG_ASSERT(size <= FLIGHT_RESULT_MAX);
  flight_t *f = &h->flight;
  pthread_mutex_lock(&f->lock);
  int ready = f->done >= ticket;
  if (ready) {
    *rc = f->rc;
    memcpy(result, f->result, size);
  }
  pthread_mutex_unlock(&f->lock);
  return ready;
}
