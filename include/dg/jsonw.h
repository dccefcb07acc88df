/*
 * jsonw.h -- a small streaming JSON writer on dg_buf_t.
 *
 * jansson cannot print a number with a fixed count of decimals ("120.50"),
 * which the API promises for number cells, so responses that carry cells are
 * written with this: it tracks nesting and commas, escapes strings, and
 * writes numbers as the caller formats them.
 *
 *   dg_jsonw_t w; dg_jsonw_init(&w, &buf);
 *   dg_jsonw_obj(&w); dg_jsonw_key(&w, "rows"); dg_jsonw_arr(&w); ... dg_jsonw_end(&w); dg_jsonw_end(&w);
 */
#ifndef DG_JSONW_H
#define DG_JSONW_H

#include <stdint.h>

#include "dg/buf.h"

/* Deeper nesting than any response of ours has. */
#define DG_JSONW_MAX_DEPTH 16

typedef struct dg_jsonw_s {
  dg_buf_t *out;                     /* borrowed                              */
  int depth;
  uint8_t first[DG_JSONW_MAX_DEPTH]; /* 1 until a value is written at a level */
  char close[DG_JSONW_MAX_DEPTH];    /* '}' or ']' for each open level        */
  int after_key;                     /* a key was written; its value is next  */
} dg_jsonw_t;

void dg_jsonw_init(dg_jsonw_t *w, dg_buf_t *out);
/** Goes on writing members into an object already open in out, after at
 *  least one member (e.g. a request built as text); end() closes it. */
void dg_jsonw_resume_obj(dg_jsonw_t *w, dg_buf_t *out);
void dg_jsonw_obj(dg_jsonw_t *w);
void dg_jsonw_arr(dg_jsonw_t *w);
void dg_jsonw_end(dg_jsonw_t *w);
void dg_jsonw_key(dg_jsonw_t *w, const char *key);
void dg_jsonw_str(dg_jsonw_t *w, const char *s);
void dg_jsonw_strn(dg_jsonw_t *w, const char *s, size_t n);
void dg_jsonw_int(dg_jsonw_t *w, int64_t v);
/** A row id: a JSON number up to 2^53, a string beyond (API.md). */
void dg_jsonw_id(dg_jsonw_t *w, int64_t id);
/** A scaled decimal printed with exactly `scale` decimals. */
void dg_jsonw_dec(dg_jsonw_t *w, int64_t v, int scale);
void dg_jsonw_bool(dg_jsonw_t *w, int v);
void dg_jsonw_null(dg_jsonw_t *w);
/** Pre-encoded JSON text, inserted as one value. */
void dg_jsonw_raw(dg_jsonw_t *w, const char *json, size_t n);

/**
 * Finds the raw text of top-level member `key` of the JSON object in
 * json[0..len) (no decoding, so numbers keep their exact digits). 0 and
 * val and vlen set, or DG_ENOTFOUND / DG_EINVAL (not an object).
 */
int dg_json_raw_member(const char *json, size_t len, const char *key, const char **val,
                       size_t *vlen);

#endif
