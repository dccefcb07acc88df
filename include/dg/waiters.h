/*
 * waiters.h -- synchronous writes waiting for their outcome.
 *
 * A request thread registers its (user, request_id) *before* it XADDs the
 * request, then sleeps; the response reader (or the manager of this
 * process, through the reader's feed) delivers each outcome to every waiter
 * registered under that key (a repeated request_id in flight gets the same,
 * first, outcome). Registering first
 * closes the race where the outcome arrives before the wait starts.
 */
#ifndef DG_WAITERS_H
#define DG_WAITERS_H

#include <pthread.h>
#include <stddef.h>

typedef struct dg_waiter_s {
  char request_id[256];       /* what it waits for: dg_waiters_key()        */
  pthread_cond_t cond;        /* signalled on delivery                      */
  char *res;                  /* the outcome JSON once delivered (owned)     */
  size_t res_len;
  int done;                   /* 1 once delivered                           */
  /* Instead of a thread in dg_waiters_wait: called once, on delivery (or at
   * dg_waiters_wake_all), on the delivering thread and under the table's
   * lock -- it must only hand the news on (front.c posts to its loop). */
  void (*notify)(void *arg);
  void *notify_arg;
  unsigned long long serial;  /* unique per registration (dg_waiters_visit) */
  struct dg_waiter_s *next;   /* private: bucket chain                       */
} dg_waiter_t;

typedef struct dg_waiters_s dg_waiters_t;

dg_waiters_t *dg_waiters_create(void);
void dg_waiters_destroy(dg_waiters_t *ws);
/** Registers w (caller-owned, e.g. on its stack) for request_id. */
void dg_waiters_add(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id);
/** dg_waiters_add, with notify(arg) called on delivery (see dg_waiter_t). */
void dg_waiters_add_notify(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id, void (*notify)(void *),
                           void *arg);
/** Unregisters w (no notify after it returns) and hands over what was
 *  delivered: the outcome (free it with dg_free), or NULL when none came. */
char *dg_waiters_take(dg_waiters_t *ws, dg_waiter_t *w, size_t *len);
/** Waits until delivered or timeout_ms passes: 0 or DG_ETIMEOUT. */
int dg_waiters_wait(dg_waiters_t *ws, dg_waiter_t *w, int timeout_ms);
/** Unregisters w and frees what was delivered to it. Always call once. */
void dg_waiters_remove(dg_waiters_t *ws, dg_waiter_t *w);
/**
 * Calls fn(w, arg) under the table's lock if w is still registered under
 * request_id with this serial (read from w->serial when it was added):
 * news for one waiter from a thread that does not own it (the submitter's
 * XADD went through or failed), safe against its owner taking it away
 * meanwhile. fn may call w->notify. 1 when fn ran, else 0.
 */
int dg_waiters_visit(dg_waiters_t *ws, const char *request_id, dg_waiter_t *w, unsigned long long serial,
                     void (*fn)(dg_waiter_t *w, void *arg), void *arg);
/** Hands a copy of res to every waiter of request_id; returns how many. */
int dg_waiters_deliver(dg_waiters_t *ws, const char *request_id, const char *res, size_t len);
/** The key a request waits under: its caller's tag (entry_mac.h) and its
 *  request_id (a request_id is scoped to its caller). Cut to cap. */
void dg_waiters_key(char *out, size_t cap, const char *scope, const char *request_id);
/** Wakes every waiter with no outcome (shutdown): they time out at once. */
void dg_waiters_wake_all(dg_waiters_t *ws);

#endif
