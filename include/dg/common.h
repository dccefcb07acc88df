/*
 * common.h -- what every duckgrid module shares: the allocator, error codes and
 * a few small helpers.
 *
 * Error convention (after libuv): functions return int, 0 on success and a
 * negative DG_E* code on failure; out-parameters stay untouched on failure.
 */
#ifndef DG_COMMON_H
#define DG_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- error codes ------------------------------------------------------- */
#define DG_OK 0
#define DG_EINVAL -1      /* bad input from a client or caller            */
#define DG_ENOMEM -2      /* an allocation sized by a client failed       */
#define DG_ENOTFOUND -3   /* table, row, column, key ... does not exist   */
#define DG_ECONFLICT -4   /* held cells, CAS mismatch, cycle, duplicate   */
#define DG_EOVERFLOW -5   /* a value left the DECIMAL(18,scale) range     */
#define DG_EEXIST -6      /* the thing to create exists already          */
#define DG_EIO -7         /* I/O or protocol error talking to a peer      */
#define DG_EUNAVAIL -8    /* a dependency (Redis, DuckDB) is unreachable  */
#define DG_ETIMEOUT -9    /* a deadline passed                            */
#define DG_ETOOBIG -10    /* input over a configured size limit           */
#define DG_EGONE -11      /* a cursor points before what is retained      */
#define DG_EINTERNAL -12  /* a bug or an invariant broken                 */
#define DG_EAUTH -13      /* authentication with a peer failed            */

/** Returns a static, human readable name for a DG_E* code. */
const char *dg_strerror(int err);

/* ---- allocation -------------------------------------------------------- */
/*
 * All allocation goes through these. The plain variants abort on OOM (a small
 * internal allocation failing leaves nothing sensible to do, as in Redis's
 * zmalloc); dg_try_* return NULL so sizes chosen by a client can map to
 * 413/503 instead.
 */
void *dg_malloc(size_t n);
void *dg_calloc(size_t count, size_t size);
void *dg_realloc(void *p, size_t n);
char *dg_strdup(const char *s);
char *dg_strndup(const char *s, size_t n);
void dg_free(void *p);
void *dg_try_malloc(size_t n);
void *dg_try_realloc(void *p, size_t n);

/** Lets tests inject allocation failures (libuv's uv_replace_allocator). */
typedef struct dg_allocator_s {
  void *(*malloc_fn)(size_t);
  void *(*realloc_fn)(void *, size_t);
  void *(*calloc_fn)(size_t, size_t);
  void (*free_fn)(void *);
} dg_allocator_t;
void dg_allocator_replace(const dg_allocator_t *a);

/* Invariant check that stays on in release builds (Redis's serverAssert). */
void dg__assert_fail(const char *expr, const char *file, int line);
#define DG_ASSERT(e) ((e) ? (void)0 : dg__assert_fail(#e, __FILE__, __LINE__))

#define DG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/** Microseconds on CLOCK_MONOTONIC: for durations and deadlines. */
int64_t dg_mono_us(void);

struct timespec;
/** *until = CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait on a
 *  condition variable created with that clock. */
void dg_deadline_after_ms(struct timespec *until, int ms);

#endif
