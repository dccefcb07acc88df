/*
 * log.c -- timestamped log lines on stderr. Each line is formatted in full
 * and written with one write(2), so lines from threads never interleave.
 */
#include "dg/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "dg/buf.h"

static dg_log_level_t min_level = DG_LOG_INFO;
static int json_format = 0;

void dg_log_setup(dg_log_level_t level, int json) {
  min_level = level;
  json_format = json;
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t left) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n == 0 || n > left) return 0;
  for (size_t k = 1; k < n; k++)
    if ((s[k] & 0xc0) != 0x80) return 0;
  if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
      (c == 0xf4 && s[1] >= 0x90))
    return 0; /* overlong, surrogate, beyond U+10FFFF */
  return n;
}

void dg_log(dg_log_level_t level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (level < min_level) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[64];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  char stack[512];
  va_list ap;
  va_start(ap, fmt);
  /* Format into the stack buffer first; only a long line allocates. */
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(stack, sizeof stack, fmt, cp);
  va_end(cp);
  dg_buf_t heap;
  dg_buf_init(&heap);
  const char *text = stack;
  size_t text_len = n < 0 ? 0 : (size_t)n;
  if (n >= (int)sizeof stack) {
    dg_buf_vprintf(&heap, fmt, ap);
    text = heap.data;
    text_len = heap.len;
  }
  va_end(ap);
  dg_buf_t line;
  dg_buf_init(&line);
  if (json_format) {
    dg_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, names[level]);
    dg_buf_json_str(&line, text, text_len);
    dg_buf_puts(&line, "}\n");
  } else {
    dg_buf_printf(&line, "%s %-5s ", when, names[level]);
    /* One line per event: control characters (a client's path could hold
     * escape sequences or newlines) are shown as '?': C0, DEL, and C1
     * (U+0080..U+009F, e.g. CSI, which terminals obey), whether UTF-8
     * encoded or as raw bytes; any byte that is not part of valid UTF-8
     * is '?' too. */
    for (size_t i = 0; i < text_len;) {
      size_t n = utf8_len((const unsigned char *)text + i, text_len - i);
      unsigned char c = (unsigned char)text[i];
      int c1 = n == 2 && c == 0xc2 && (unsigned char)text[i + 1] <= 0x9f;
      if (n == 0 || c1 || (n == 1 && (c < 0x20 || c == 0x7f))) {
        dg_buf_putc(&line, '?');
        i += n ? n : 1;
      } else {
        dg_buf_append(&line, text + i, n);
        i += n;
      }
    }
    dg_buf_putc(&line, '\n');
  }
  ssize_t w = write(STDERR_FILENO, line.data, line.len);
  (void)w;
  dg_buf_dispose(&line);
  dg_buf_dispose(&heap);
}
