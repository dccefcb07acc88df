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
/*
 * One error space, after libuv's UV_ERRNO_MAP: every DG_E* code with its
 * value, the HTTP status an API answer for it carries, and its text. Add a
 * code here and dg_strerror and dg_err_status know it.
 */
#define DG_ERRNO_MAP(X)                                                                           \
  X(EINVAL, -1, 400, "invalid argument")       /* bad input from a client or caller            */ \
  X(ENOMEM, -2, 413, "out of memory")          /* an allocation sized by a client failed       */ \
  X(ENOTFOUND, -3, 404, "not found")           /* table, row, column, key ... does not exist   */ \
  X(ECONFLICT, -4, 409, "conflict")            /* held cells, CAS mismatch, cycle, duplicate   */ \
  X(EOVERFLOW, -5, 400, "value out of range")  /* a value left the DECIMAL(18,scale) range     */ \
  X(EEXIST, -6, 409, "already exists")         /* the thing to create exists already          */ \
  X(EIO, -7, 500, "i/o error")                 /* I/O or protocol error talking to a peer      */ \
  X(EUNAVAIL, -8, 503, "unavailable")          /* a dependency (Redis, DuckDB) is unreachable  */ \
  X(ETIMEOUT, -9, 504, "timed out")            /* a deadline passed                            */ \
  X(ETOOBIG, -10, 413, "too large")            /* input over a configured size limit           */ \
  X(EGONE, -11, 410, "gone")                   /* a cursor points before what is retained      */ \
  X(EINTERNAL, -12, 500, "internal error")     /* a bug or an invariant broken                 */ \
  X(EAUTH, -13, 401, "authentication failed")  /* authentication with a peer failed            */

#define DG__ERRNO_ENUM(name, value, status, text) DG_##name = (value),
enum { DG_OK = 0, DG_ERRNO_MAP(DG__ERRNO_ENUM) };
#undef DG__ERRNO_ENUM

/** Returns a static, human readable name for a DG_E* code. */
const char *dg_strerror(int err);
/** The HTTP status of an answer that fails with DG_E* code err (500 for
 *  an unknown one). */
int dg_err_status(int err);

/*
 * Every HTTP status duckgrid answers with: the status, the problem's "code"
 * (RFC 9457 problem details, ../shared/API.md; NULL where no problem is
 * answered with it) and the reason phrase.
 */
#define DG_STATUS_MAP(X)                                                  \
  X(200, NULL, "OK")                                                      \
  X(201, NULL, "Created")                                                 \
  X(202, NULL, "Accepted")                                                \
  X(204, NULL, "No Content")                                              \
  X(206, NULL, "Partial Content")                                         \
  X(304, NULL, "Not Modified")                                            \
  X(307, NULL, "Temporary Redirect")                                      \
  X(400, "bad_request", "Bad Request")                                    \
  X(401, "unauthorized", "Unauthorized")                                  \
  X(403, "forbidden", "Forbidden")                                        \
  X(404, "not_found", "Not Found")                                        \
  X(405, "method_not_allowed", "Method Not Allowed")                      \
  X(409, "conflict", "Conflict")                                          \
  X(410, "gone", "Gone")                                                  \
  X(413, "payload_too_large", "Payload Too Large")                        \
  X(429, "too_many_requests", "Too Many Requests")                        \
  X(431, "headers_too_large", "Request Header Fields Too Large")          \
  X(500, "internal", "Internal Server Error")                             \
  X(503, "unavailable", "Service Unavailable")                            \
  X(504, "timeout", "Gateway Timeout")

/** The problem code of an error status ("internal" for one not listed). */
const char *dg_status_code(int status);
/** The reason phrase of a status ("OK" / "Internal Server Error" by class
 *  for one not listed). */
const char *dg_status_reason(int status);

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
