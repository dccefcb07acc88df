/*
 * alloc.c -- the one allocator every module uses, swappable for tests, plus
 * the error-name table and the always-on assertion.
 */
#include "dg/common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static dg_allocator_t allocator = {malloc, realloc, calloc, free};

void dg_allocator_replace(const dg_allocator_t *a) {
  if (a == NULL) {
    allocator = (dg_allocator_t){malloc, realloc, calloc, free};
    return;
  }
  allocator = *a;
}

static void oom(size_t n) {
  fprintf(stderr, "duckgrid: out of memory allocating %zu bytes\n", n);
  abort();
}

void *dg_try_malloc(size_t n) { return allocator.malloc_fn(n ? n : 1); }

void *dg_try_realloc(void *p, size_t n) { return allocator.realloc_fn(p, n ? n : 1); }

void *dg_malloc(size_t n) {
  void *p = dg_try_malloc(n);
  if (p == NULL) oom(n);
  return p;
}

void *dg_calloc(size_t count, size_t size) {
  void *p = allocator.calloc_fn(count ? count : 1, size ? size : 1);
  if (p == NULL) oom(count * size);
  return p;
}

void *dg_realloc(void *p, size_t n) {
  void *q = dg_try_realloc(p, n);
  if (q == NULL) oom(n);
  return q;
}

char *dg_strndup(const char *s, size_t n) {
  char *d = dg_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *dg_strdup(const char *s) { return dg_strndup(s, strlen(s)); }

void dg_free(void *p) {
  if (p != NULL) allocator.free_fn(p);
}

void dg__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "duckgrid: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}

int64_t dg_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void dg_deadline_after_ms(struct timespec *until, int ms) {
  clock_gettime(CLOCK_MONOTONIC, until);
  until->tv_sec += ms / 1000;
  until->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until->tv_nsec >= 1000000000L) {
    until->tv_sec++;
    until->tv_nsec -= 1000000000L;
  }
}
