/*
 * qguard.c -- deadlines and concurrency for view queries (see qguard.h).
 *
 * A fixed table of slots under one mutex. The watchdog wakes every
 * TICK_MS, and interrupts (duckdb_interrupt, which is meant to be called
 * from another thread) each query past its deadline. The interrupt is
 * issued under the lock and a slot is released under the same lock, so a
 * connection is never interrupted after its query was unregistered.
 */
#include "dg/qguard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dg/common.h"

/* How late past its deadline a query may be interrupted. */
#define TICK_MS 20

typedef struct {
  int active;
  duckdb_connection conn;  /* borrowed: the request thread's connection */
  int64_t deadline_ms;     /* monotonic                                 */
  int interrupted;         /* 0, 1 deadline, 2 stop                      */
  char caller[80];
} slot_t;

struct dg_qguard_s {
  int timeout_ms;
  int per_caller;
  pthread_mutex_t lock;    /* guards slots and stopping */
  slot_t slots[DG_QGUARD_SLOTS];
  int stopping;
  atomic_int quit;
  pthread_t thread;
};

static void *watch(void *arg) {
  dg_qguard_t *g = arg;
  pthread_setname_np(pthread_self(), "dg-qguard");
  while (!atomic_load(&g->quit)) {
    usleep(TICK_MS * 1000);
    int64_t now = dg_mono_us() / 1000;
    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < DG_QGUARD_SLOTS; i++) {
      slot_t *s = &g->slots[i];
      if (!s->active || s->interrupted) continue;
      if (g->stopping) s->interrupted = 2;
      else if (now >= s->deadline_ms) s->interrupted = 1;
      else continue;
      duckdb_interrupt(s->conn);
    }
    pthread_mutex_unlock(&g->lock);
  }
  return NULL;
}

dg_qguard_t *dg_qguard_create(int timeout_ms, int per_caller) {
  dg_qguard_t *g = dg_calloc(1, sizeof *g);
  g->timeout_ms = timeout_ms;
  g->per_caller = per_caller;
  pthread_mutex_init(&g->lock, NULL);
  DG_ASSERT(pthread_create(&g->thread, NULL, watch, g) == 0);
  return g;
}

void dg_qguard_stop(dg_qguard_t *g) {
  if (g == NULL) return;
  pthread_mutex_lock(&g->lock);
  g->stopping = 1;
  for (int i = 0; i < DG_QGUARD_SLOTS; i++)
    if (g->slots[i].active && !g->slots[i].interrupted) {
      g->slots[i].interrupted = 2;
      duckdb_interrupt(g->slots[i].conn);
    }
  pthread_mutex_unlock(&g->lock);
}

void dg_qguard_destroy(dg_qguard_t *g) {
  if (g == NULL) return;
  atomic_store(&g->quit, 1);
  pthread_join(g->thread, NULL);
  pthread_mutex_destroy(&g->lock);
  dg_free(g);
}

int dg_qguard_enter(dg_qguard_t *g, duckdb_connection conn, const char *caller, int *slot) {
  pthread_mutex_lock(&g->lock);
  int mine = 0, free_slot = -1;
  for (int i = 0; i < DG_QGUARD_SLOTS; i++) {
    if (!g->slots[i].active) {
      if (free_slot < 0) free_slot = i;
    } else if (strcmp(g->slots[i].caller, caller) == 0) {
      mine++;
    }
  }
  int rc = 0;
  if (g->stopping || free_slot < 0) rc = DG_EUNAVAIL;
  else if (mine >= g->per_caller) rc = DG_ECONFLICT;
  if (rc == 0) {
    slot_t *s = &g->slots[free_slot];
    memset(s, 0, sizeof *s);
    s->active = 1;
    s->conn = conn;
    s->deadline_ms = dg_mono_us() / 1000 + g->timeout_ms;
    snprintf(s->caller, sizeof s->caller, "%s", caller);
    *slot = free_slot;
  }
  pthread_mutex_unlock(&g->lock);
  return rc;
}

int dg_qguard_leave(dg_qguard_t *g, int slot) {
  pthread_mutex_lock(&g->lock);
  int was = g->slots[slot].interrupted;
  g->slots[slot].active = 0;
  pthread_mutex_unlock(&g->lock);
  return was;
}
