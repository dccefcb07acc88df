/*
 * jsonw.c -- streaming JSON writer (see jsonw.h).
 */
#include "dg/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/decimal.h"

/* Largest integer a double holds exactly: ids beyond it travel as strings. */
#define SAFE_INT (INT64_C(1) << 53)

void dg_jsonw_init(dg_jsonw_t *w, dg_buf_t *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
  w->first[0] = 1;
}

void dg_jsonw_resume_obj(dg_jsonw_t *w, dg_buf_t *out) {
  dg_jsonw_init(w, out);
  w->depth = 1;
  w->first[1] = 0;
  w->close[1] = '}';
}

/* Writes the comma before a value, unless it follows its key. */
static void sep(dg_jsonw_t *w) {
  if (w->after_key) {
    w->after_key = 0;
    return;
  }
  if (!w->first[w->depth]) dg_buf_putc(w->out, ',');
  w->first[w->depth] = 0;
}

static void open(dg_jsonw_t *w, char c) {
  sep(w);
  dg_buf_putc(w->out, c);
  DG_ASSERT(w->depth + 1 < DG_JSONW_MAX_DEPTH);
  w->first[++w->depth] = 1;
  w->close[w->depth] = c == '{' ? '}' : ']';
}

void dg_jsonw_obj(dg_jsonw_t *w) { open(w, '{'); }
void dg_jsonw_arr(dg_jsonw_t *w) { open(w, '['); }

void dg_jsonw_end(dg_jsonw_t *w) {
  DG_ASSERT(w->depth > 0);
  dg_buf_putc(w->out, w->close[w->depth]);
  w->depth--;
}

void dg_jsonw_key(dg_jsonw_t *w, const char *key) {
  sep(w);
  dg_buf_json_str(w->out, key, strlen(key));
  dg_buf_putc(w->out, ':');
  w->after_key = 1;
}

void dg_jsonw_strn(dg_jsonw_t *w, const char *s, size_t n) {
  sep(w);
  dg_buf_json_str(w->out, s, n);
}

void dg_jsonw_str(dg_jsonw_t *w, const char *s) {
  if (s == NULL) {
    dg_jsonw_null(w);
    return;
  }
  dg_jsonw_strn(w, s, strlen(s));
}

void dg_jsonw_int(dg_jsonw_t *w, int64_t v) {
  sep(w);
  dg_buf_printf(w->out, "%" PRId64, v);
}

void dg_jsonw_id(dg_jsonw_t *w, int64_t id) {
  sep(w);
  if (id > SAFE_INT || id < -SAFE_INT) dg_buf_printf(w->out, "\"%" PRId64 "\"", id);
  else dg_buf_printf(w->out, "%" PRId64, id);
}

void dg_jsonw_dec(dg_jsonw_t *w, int64_t v, int scale) {
  char tmp[DG_DECIMAL_FORMAT_MAX + 8];
  size_t n = dg_decimal_format(v, scale, tmp, sizeof tmp);
  sep(w);
  dg_buf_append(w->out, tmp, n);
}

void dg_jsonw_bool(dg_jsonw_t *w, int v) {
  sep(w);
  dg_buf_puts(w->out, v ? "true" : "false");
}

void dg_jsonw_null(dg_jsonw_t *w) {
  sep(w);
  dg_buf_puts(w->out, "null");
}

void dg_jsonw_raw(dg_jsonw_t *w, const char *json, size_t n) {
  sep(w);
  dg_buf_append(w->out, json, n);
}

/* ---- raw member lookup ---------------------------------------------------- */

static size_t skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* Index just past the string starting at s[i] == '"', or n on error. */
static size_t skip_string(const char *s, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (s[i] == '\\') i++;
    else if (s[i] == '"') return i + 1;
  }
  return n + 1;
}

/* Index just past the value starting at s[i], or > n on error. */
static size_t skip_value(const char *s, size_t i, size_t n) {
  if (i >= n) return n + 1;
  if (s[i] == '"') return skip_string(s, i, n);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < n) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i, n);
        continue;
      }
      if (c == '{' || c == '[') depth++;
      else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      i++;
    }
    return n + 1;
  }
  while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n') i++;
  return i;
}

int dg_json_raw_member(const char *json, size_t len, const char *key, const char **val,
                       size_t *vlen) {
  size_t klen = strlen(key);
  size_t i = skip_ws(json, 0, len);
  if (i >= len || json[i] != '{') return DG_EINVAL;
  i++;
  for (;;) {
    i = skip_ws(json, i, len);
    if (i >= len || json[i] == '}') return DG_ENOTFOUND;
    if (json[i] != '"') return DG_EINVAL;
    size_t kstart = i + 1;
    size_t kend = skip_string(json, i, len);
    if (kend > len) return DG_EINVAL;
    i = skip_ws(json, kend, len);
    if (i >= len || json[i] != ':') return DG_EINVAL;
    i = skip_ws(json, i + 1, len);
    size_t vend = skip_value(json, i, len);
    if (vend > len) return DG_EINVAL;
    if (kend - 1 - kstart == klen && memcmp(json + kstart, key, klen) == 0) {
      *val = json + i;
      *vlen = vend - i;
      return 0;
    }
    i = skip_ws(json, vend, len);
    if (i < len && json[i] == ',') i++;
  }
}
