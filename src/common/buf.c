/*
 * buf.c -- growable byte buffers. Capacity doubles, so appending n bytes one
 * at a time costs O(n) overall.
 */
#include "dg/buf.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"

void dg_buf_init(dg_buf_t *b) { *b = (dg_buf_t){NULL, 0, 0}; }

void dg_buf_dispose(dg_buf_t *b) {
  dg_free(b->data);
  dg_buf_init(b);
}

void dg_buf_reset(dg_buf_t *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void dg_buf_reserve(dg_buf_t *b, size_t n) {
  size_t need = b->len + n + 1;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  b->data = dg_realloc(b->data, cap);
  b->cap = cap;
}

void dg_buf_append(dg_buf_t *b, const void *p, size_t n) {
  dg_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void dg_buf_puts(dg_buf_t *b, const char *s) { dg_buf_append(b, s, strlen(s)); }

void dg_buf_putc(dg_buf_t *b, char c) { dg_buf_append(b, &c, 1); }

void dg_buf_vprintf(dg_buf_t *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, cp);
  va_end(cp);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    dg_buf_append(b, small, (size_t)n);
    return;
  }
  dg_buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void dg_buf_printf(dg_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dg_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
  if (k == 0 || k > n || (k == 2 && c < 0xc2) || c > 0xf4) return 0;
  for (size_t i = 1; i < k; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (k == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))) return 0;
  if (k == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0;
  return k;
}

void dg_buf_json_str(dg_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  dg_buf_reserve(b, n + 2);
  dg_buf_putc(b, '"');
  size_t run = 0; /* start of the current run of bytes that need no escape */
  for (size_t i = 0; i < n;) {
    unsigned char c = u[i];
    if (c >= 0x80) {
      size_t k = utf8_len(u + i, n - i);
      if (k) {
        i += k;
        continue;
      }
      /* Not UTF-8: JSON text must be, so the byte becomes U+FFFD. */
      dg_buf_append(b, s + run, i - run);
      dg_buf_append(b, "\\ufffd", 6);
      run = ++i;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') {
      i++;
      continue;
    }
    dg_buf_append(b, s + run, i - run);
    run = ++i;
    switch (c) {
      case '"': dg_buf_append(b, "\\\"", 2); break;
      case '\\': dg_buf_append(b, "\\\\", 2); break;
      case '\n': dg_buf_append(b, "\\n", 2); break;
      case '\r': dg_buf_append(b, "\\r", 2); break;
      case '\t': dg_buf_append(b, "\\t", 2); break;
      default: {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        dg_buf_append(b, e, 6);
      }
    }
  }
  dg_buf_append(b, s + run, n - run);
  dg_buf_putc(b, '"');
}

char *dg_buf_steal(dg_buf_t *b) {
  if (b->data == NULL) dg_buf_reserve(b, 0), b->data[0] = '\0';
  char *p = b->data;
  dg_buf_init(b);
  return p;
}

char *dg_strprintf(const char *fmt, ...) {
  dg_buf_t b;
  dg_buf_init(&b);
  va_list ap;
  va_start(ap, fmt);
  dg_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  return dg_buf_steal(&b);
}

char *dg_read_small_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  dg_buf_t b;
  dg_buf_init(&b);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (1u << 20)) dg_buf_append(&b, chunk, n);
  fclose(f);
  *len = b.len;
  return dg_buf_steal(&b);
}

void dg_time_iso(char *out, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}
