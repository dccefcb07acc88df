/*
 * buf.h -- a growable byte buffer that tracks length and capacity (after
 * Redis's sds and h2o's h2o_buffer_t), always NUL-terminated for convenience.
 */
#ifndef DG_BUF_H
#define DG_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct dg_buf_s {
  char *data; /* NUL-terminated contents, NULL until the first append */
  size_t len; /* bytes used, excluding the terminator                */
  size_t cap; /* bytes allocated                                       */
} dg_buf_t;

/** Initialises an empty buffer (no allocation). Dispose with dg_buf_dispose. */
void dg_buf_init(dg_buf_t *b);
/** Frees the contents; the buffer is empty again afterwards. */
void dg_buf_dispose(dg_buf_t *b);
/** Drops the contents but keeps the allocation for reuse. */
void dg_buf_reset(dg_buf_t *b);
/** Makes room for n more bytes (aborts on OOM). */
void dg_buf_reserve(dg_buf_t *b, size_t n);
void dg_buf_append(dg_buf_t *b, const void *p, size_t n);
void dg_buf_puts(dg_buf_t *b, const char *s);
void dg_buf_putc(dg_buf_t *b, char c);
void dg_buf_printf(dg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dg_buf_vprintf(dg_buf_t *b, const char *fmt, va_list ap);
/** Appends s as a JSON string literal, quotes included, escaping as needed. */
void dg_buf_json_str(dg_buf_t *b, const char *s, size_t n);
/**
 * Reads a whole file of at most 1 MiB (keys, certificates, JWKS). Returns
 * its bytes NUL-terminated (free with dg_free) and the length in *len, or
 * NULL when it cannot be read.
 */
char *dg_read_small_file(const char *path, size_t *len);

/** The current UTC time as ISO 8601 with milliseconds ("2026-11-29T08:00:00.000Z"). */
void dg_time_iso(char *out, size_t cap);

/** Gives the contents to the caller (free with dg_free); the buffer is empty after. */
char *dg_buf_steal(dg_buf_t *b);

/** A new formatted string (free with dg_free; aborts on OOM). */
char *dg_strprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
