/*
 * import.c -- POST /tables/{table}/import?format=csv|parquet (write role):
 * the file is the body; its rows are inserted through the log as one request.
 *
 *   body ──scratch file (dg/iofile.h)──▶ DuckDB read_csv, every field VARCHAR
 *        ──validate every value here, as POST /tables/{t}/rows does──▶ 400 with
 *          {"errors":[{"line","column","detail"}…]} and nothing queued
 *        ──parents before children──▶ one insert_rows request, by column ──▶ request_duck
 *
 * The CSV is what GET /tables/{t}/export?format=csv writes: RFC 4180, a
 * header line naming the fields, "," between fields, '"' quoting with '""'
 * for a quote, CRLF or LF lines. The header may name id, parent_id and any
 * of the table's columns, each at most once, in any order; any other name is
 * a 400. An empty field is null: no id (the row gets a new one), no parent (a
 * root), a null text, or a number left at 0 (at its children's sum once it
 * has some); "" (quoted) is an empty text. A column the header leaves out is
 * left out of every row the same way. A parent_id names a row of the table
 * or a row of the file, before or after its child in the file: the rows are
 * queued parents first, in file order otherwise, so a file exported from a
 * tree imports into an empty table as the same tree. An id that exists
 * already (409 when that is all that is wrong), twice in the file, an unknown
 * parent or a cycle among the file's rows is a line error like a malformed
 * value. The first MAX_LISTED errors are listed by CSV line (the header is
 * line 1; a quoted field may span lines: a record is reported at the line it
 * starts on). Nothing is applied unless every row is good, and then the
 * manager applies them in one request, all or nothing.
 *
 * The answer is like every write's: the outcome (sync, 201
 * {"table","imported","update_id","request_id","status":"applied"}),
 * ?async=true 202, ?request_id= / Idempotency-Key replays. The body limit
 * (DUCKGRID_BODY_LIMIT) applies as to every request.
 *
 * Parquet (?format=parquet) is read the same way with DuckDB's Parquet
 * reader, every column cast to VARCHAR (a DECIMAL keeps its exact digits),
 * its column names standing for the header; rows are numbered from 1 and
 * errors name a "row" instead of a "line".
 *
 * DuckDB parses, behind the service seam (service_import.h,
 * src/service/import.c: the body goes to a scratch file of the server's
 * making in the one directory SQL may read, and is removed at once); line
 * numbers come from a scan of the body here that follows the same quoting,
 * checked against DuckDB's record count.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/decimal.h"
#include "dg/http.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/service_import.h"

/* Rows in one import: as many as one POST /tables/{t}/rows takes. */
#define MAX_ROWS 1000000
/* Fields in the header: id, parent_id and far more columns than a table has. */
#define MAX_FIELDS 1024
/* Line errors listed in a 400 (the total is given too). */
#define MAX_LISTED 100

enum { FIELD_ID = -1, FIELD_PARENT = -2 };
enum { PARENT_NONE = 0, PARENT_IN_FILE = 1, PARENT_IN_TABLE = 2 };

/* The file as DuckDB read it (service_import.h), every field VARCHAR. */
typedef struct {
  dg_sheet_t *src;       /* the rows DuckDB read                            */
  size_t first;          /* the first data row of src (1 after a header)    */
  size_t ncols;
  size_t nrows;          /* data rows (the header excluded)                */
  int64_t *line;         /* per data row: the CSV line its record starts on */
  int64_t header_line;   /* the line of the header (0: Parquet, none)       */
  char **names;          /* the header's fields (NULL for an empty one)    */
} sheet_t;

static void sheet_dispose(sheet_t *s) {
  dg_sheet_destroy(s->src);
  dg_free(s->line);
  for (size_t k = 0; s->names && k < s->ncols; k++) dg_free(s->names[k]);
  dg_free(s->names);
}

static const char *cell(const sheet_t *s, size_t row, size_t k, size_t *len) {
  return dg_sheet_cell(s->src, s->first + row, k, len);
}

/* ---- the CSV scan: where each record starts ------------------------------------ */

/*
 * The line each record of the CSV text starts on (1-based), skipping blank
 * lines as DuckDB's reader does, and the field count of the first record.
 * Quotes toggle quoting ('""' inside quotes toggles twice, so it stays
 * quoted); a line break inside quotes belongs to the field. Returns the
 * array (owned) and sets *n.
 */
static int64_t *record_lines(const char *p, size_t len, size_t *n, size_t *fields0) {
  size_t cap = 1024, count = 0;
  int64_t *lines = dg_malloc(cap * sizeof *lines);
  int64_t line = 1;
  size_t i = 0;
  *fields0 = 0;
  while (i < len) {
    if (p[i] == '\n' || p[i] == '\r') { /* a blank line */
      i += p[i] == '\r' && i + 1 < len && p[i + 1] == '\n' ? 2 : 1;
      line++;
      continue;
    }
    if (count == cap) {
      cap *= 2;
      lines = dg_realloc(lines, cap * sizeof *lines);
    }
    lines[count++] = line;
    int quoted = 0;
    size_t fields = 1;
    for (; i < len; i++) {
      char c = p[i];
      if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        fields++;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && i + 1 < len && p[i + 1] == '\n') i++;
        line++;
        if (!quoted) {
          i++;
          break;
        }
      }
    }
    if (count == 1) *fields0 = fields;
  }
  *n = count;
  return lines;
}

/* ---- reading with DuckDB (service_import.h) ---------------------------------------- */

/* A JSON string of text that should be UTF-8; where it is not (a value cut
 * short inside a character), its bytes beyond ASCII become '?'. */
static json_t *json_text(const char *text) {
  json_t *j = json_string(text);
  if (j) return j;
  char *copy = dg_strdup(text);
  for (char *q = copy; *q; q++)
    if ((unsigned char)*q >= 0x80) *q = '?';
  j = json_string(copy);
  dg_free(copy);
  return j;
}

/* Answers a failed read: DuckDB's refusal as a 400 with its message (and
 * the line it names), the rest as 503 or 500. Returns rc. */
static int read_problem(dg_req_t *r, int rc, const char *why) {
  if (rc == DG_EINVAL) {
    json_t *errors = json_array();
    const char *on = strstr(why, "on Line: ");
    json_t *e = json_object();
    json_object_set_new(e, "detail", json_text(why));
    if (on) json_object_set_new(e, "line", json_integer(strtoll(on + 9, NULL, 10)));
    json_array_append_new(errors, e);
    dg_problem(r, 400, json_pack("{s:o,s:i}", "errors", errors, "errors_total", 1), "the file cannot be read: %s",
               why);
  } else if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
  } else if (rc == DG_EIO) {
    dg_problem(r, 500, NULL, "the file could not be stored for reading");
  } else {
    dg_problem(r, 500, NULL, "reading the file failed");
  }
  return rc;
}

/* The CSV body into s: names from its first record, lines from the scan.
 * 0, or nonzero with the problem answered. */
static int read_csv_body(dg_req_t *r, sheet_t *s) {
  const char *body = r->raw_body;
  size_t len = r->raw_body_len;
  if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) { /* a UTF-8 byte order mark */
    body += 3;
    len -= 3;
  }
  size_t nrec = 0, fields = 0;
  int64_t *lines = record_lines(body, len, &nrec, &fields);
  if (nrec == 0) {
    dg_free(lines);
    dg_problem(r, 400, NULL, "the body is empty: send the CSV file, a header line and the rows");
    return DG_EINVAL;
  }
  if (fields > MAX_FIELDS) {
    dg_free(lines);
    dg_problem(r, 400, NULL, "the header has %zu fields, more than %d", fields, MAX_FIELDS);
    return DG_EINVAL;
  }
  char why[400];
  int rc = dg_service_import_csv(r->app, body, len, fields, &s->src, why, sizeof why);
  if (rc != 0) {
    dg_free(lines);
    return read_problem(r, rc, why);
  }
  size_t total = dg_sheet_nrows(s->src);
  s->ncols = dg_sheet_ncols(s->src);
  s->first = 1;
  s->nrows = total > 1 ? total - 1 : 0;
  if (total == 0 || total != nrec) {
    dg_log_error("import: DuckDB read %zu records where the scan counted %zu", total, nrec);
    dg_free(lines);
    dg_problem(r, 400, NULL, "the CSV could not be read consistently (%zu records counted, %zu read): "
               "check its quoting", nrec, total);
    return DG_EINVAL;
  }
  s->header_line = lines[0];
  s->line = dg_malloc((s->nrows + 1) * sizeof *s->line);
  memcpy(s->line, lines + 1, s->nrows * sizeof *s->line);
  dg_free(lines);
  s->names = dg_calloc(s->ncols, sizeof *s->names);
  for (size_t k = 0; k < s->ncols; k++) {
    size_t n = 0;
    const char *v = dg_sheet_cell(s->src, 0, k, &n);
    s->names[k] = v ? dg_strndup(v, n) : NULL;
  }
  return 0;
}

/* The Parquet body into s: names from its columns, rows numbered from 1.
 * 0, or nonzero with the problem answered. */
static int read_parquet_body(dg_req_t *r, sheet_t *s) {
  const char *body = r->raw_body;
  size_t len = r->raw_body_len;
  if (len == 0) {
    dg_problem(r, 400, NULL, "the body is empty: send the Parquet file");
    return DG_EINVAL;
  }
  char why[400];
  int rc = dg_service_import_parquet(r->app, body, len, &s->src, why, sizeof why);
  if (rc != 0) return read_problem(r, rc, why);
  s->ncols = dg_sheet_ncols(s->src);
  s->names = dg_calloc(s->ncols + 1, sizeof *s->names);
  for (size_t k = 0; k < s->ncols; k++) {
    const char *n = dg_sheet_name(s->src, k);
    s->names[k] = n ? dg_strdup(n) : NULL;
  }
  if (s->ncols > MAX_FIELDS) {
    dg_problem(r, 400, NULL, "the file has %llu columns, more than %d", (unsigned long long)s->ncols, MAX_FIELDS);
    return DG_EINVAL;
  }
  s->first = 0;
  s->nrows = dg_sheet_nrows(s->src);
  s->header_line = 0;
  s->line = dg_malloc((s->nrows + 1) * sizeof *s->line);
  for (size_t i = 0; i < s->nrows; i++) s->line[i] = (int64_t)i + 1;
  return 0;
}

/* ---- validation --------------------------------------------------------------------- */

typedef struct {
  const char *key;   /* "line" (CSV) or "row" (Parquet)     */
  json_t *list;      /* the first MAX_LISTED                */
  size_t total;
  size_t conflicts;  /* of which: ids that exist already    */
} errors_t;

static void add_error(errors_t *e, int64_t line, const char *column, int conflict, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_error(errors_t *e, int64_t line, const char *column, int conflict, const char *fmt, ...) {
  e->total++;
  e->conflicts += conflict != 0;
  if (json_array_size(e->list) >= MAX_LISTED) return;
  char detail[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  json_t *o = json_object();
  if (line > 0) json_object_set_new(o, e->key, json_integer((json_int_t)line));
  json_object_set_new(o, "column", column ? json_text(column) : json_null());
  json_object_set_new(o, "detail", json_text(detail));
  json_array_append_new(e->list, o);
}

typedef struct {
  int64_t id;
  size_t row;
} idrow_t;

static int by_id(const void *a, const void *b) {
  const idrow_t *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

/* The rows of a validated file, parsed. */
typedef struct {
  int64_t *id, *parent;
  uint8_t *has_id, *pkind;
  size_t *pidx;      /* the parent's row when it is in the file */
  size_t *order;     /* rows in queueing order: parents first    */
} plan_t;

static void plan_dispose(plan_t *p) {
  dg_free(p->id);
  dg_free(p->parent);
  dg_free(p->has_id);
  dg_free(p->pkind);
  dg_free(p->pidx);
  dg_free(p->order);
}

/* The header: fmap[k] is FIELD_ID, FIELD_PARENT or the column's index. */
static void check_header(const sheet_t *s, const dg_tabledef_t *t, int *fmap, errors_t *e) {
  for (size_t k = 0; k < s->ncols; k++) {
    const char *name = s->names[k];
    fmap[k] = INT32_MIN;
    if (name == NULL || *name == '\0') {
      add_error(e, s->header_line, NULL, 0, "field %llu of the header is empty: name a column", (unsigned long long)k + 1);
      continue;
    }
    if (strcmp(name, "id") == 0) {
      fmap[k] = FIELD_ID;
    } else if (strcmp(name, "parent_id") == 0) {
      fmap[k] = FIELD_PARENT;
    } else {
      const dg_coldef_t *c = dg_name_valid(name) ? dg_tabledef_col(t, name) : NULL;
      if (c == NULL) {
        add_error(e, s->header_line, name, 0, "table '%s' has no column '%.80s'", t->name, name);
        continue;
      }
      fmap[k] = (int)(c - t->cols);
    }
    for (size_t j = 0; j < k; j++) {
      if (fmap[j] == fmap[k]) {
        add_error(e, s->header_line, name, 0, "'%.80s' is named twice in the header", name);
        fmap[k] = INT32_MIN;
        break;
      }
    }
  }
}

/* Every value of every row, then ids, parents and their order. */
static void check_rows(dg_req_t *r, const sheet_t *s, const dg_tabledef_t *t, const int *fmap, plan_t *p,
                       errors_t *e) {
  size_t n = s->nrows;
  p->id = dg_calloc(n + 1, sizeof *p->id);
  p->parent = dg_calloc(n + 1, sizeof *p->parent);
  p->has_id = dg_calloc(n + 1, 1);
  p->pkind = dg_calloc(n + 1, 1);
  p->pidx = dg_calloc(n + 1, sizeof *p->pidx);
  idrow_t *ids = dg_malloc((n + 1) * sizeof *ids);
  size_t nids = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t line = s->line[i];
    for (size_t k = 0; k < s->ncols; k++) {
      size_t len = 0;
      const char *v = cell(s, i, k, &len);
      if (fmap[k] == FIELD_ID || fmap[k] == FIELD_PARENT) {
        int is_id = fmap[k] == FIELD_ID;
        int64_t x;
        if (v == NULL) continue;
        if (dg_row_id_parse(v, len, &x) != 0) {
          add_error(e, line, is_id ? "id" : "parent_id", 0, "%s must be a 64-bit integer%s",
                    is_id ? "id" : "parent_id", is_id ? " or empty (a new id)" : " or empty (a root)");
          continue;
        }
        if (is_id) {
          p->id[i] = x;
          p->has_id[i] = 1;
          ids[nids].id = x;
          ids[nids++].row = i;
        } else {
          p->parent[i] = x;
          p->pkind[i] = PARENT_IN_TABLE; /* settled below */
        }
        continue;
      }
      if (fmap[k] < 0) continue;
      const dg_coldef_t *c = &t->cols[fmap[k]];
      if (v == NULL) continue;
      if (c->type == DG_COL_TEXT) {
        if (memchr(v, '\0', len) != NULL) add_error(e, line, c->name, 0, "a text cannot hold a NUL byte");
        continue;
      }
      int64_t x;
      int rc = dg_decimal_parse(v, len, c->scale, &x);
      if (rc == DG_EOVERFLOW)
        add_error(e, line, c->name, 0, "value out of range for column '%s' (|v| < 10^%d)", c->name, 18 - c->scale);
      else if (rc != 0)
        add_error(e, line, c->name, 0, "column '%s' is a number (scale %d); '%.*s' is not a decimal number", c->name,
                  c->scale, (int)(len <= 40 ? len : 40), v);
    }
  }
  /* Ids: each once in the file, none in the table yet. */
  qsort(ids, nids, sizeof *ids, by_id);
  for (size_t j = 0; j < nids; j++) {
    size_t i = ids[j].row;
    if (j > 0 && ids[j - 1].id == ids[j].id)
      add_error(e, s->line[i], "id", 0, "id %" PRId64 " is on line %" PRId64 " already", ids[j].id,
                s->line[ids[j - 1].row]);
    else if (dg_catalog_row_known(r->app->catalog, t->name, ids[j].id))
      add_error(e, s->line[i], "id", 1, "row %" PRId64 " exists already in table '%s'", ids[j].id, t->name);
  }
  /* Parents: a row of the file, or of the table. */
  for (size_t i = 0; i < n; i++) {
    if (p->pkind[i] == PARENT_NONE) continue;
    /* The first row with that id (ids are sorted by id, then row). */
    const idrow_t *hit = NULL;
    size_t lo = 0, hi = nids;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (ids[mid].id < p->parent[i]) lo = mid + 1;
      else hi = mid;
    }
    if (lo < nids && ids[lo].id == p->parent[i]) hit = &ids[lo];
    if (hit) {
      p->pkind[i] = PARENT_IN_FILE;
      p->pidx[i] = hit->row;
    } else if (!dg_catalog_has_row(r->app->catalog, t->name, p->parent[i])) {
      add_error(e, s->line[i], "parent_id", 0, "parent %" PRId64 " is neither in the file nor in table '%s'",
                p->parent[i], t->name);
    }
  }
  dg_free(ids);
  /* The order: each row after its parent, file order otherwise. A walk up
   * from each row not yet placed stacks its unplaced ancestors; meeting a
   * row of the walk again is a cycle. */
  p->order = dg_malloc((n + 1) * sizeof *p->order);
  uint8_t *state = dg_calloc(n + 1, 1); /* 0 new, 1 on the walk, 2 placed */
  size_t *stack = dg_malloc((n + 1) * sizeof *stack);
  size_t placed = 0;
  for (size_t i = 0; i < n; i++) {
    size_t sp = 0, j = i;
    int cycle = 0;
    for (;;) {
      if (state[j] == 2) break;
      if (state[j] == 1) { /* reached again on this walk */
        cycle = 1;
        break;
      }
      state[j] = 1;
      stack[sp++] = j;
      if (p->pkind[j] != PARENT_IN_FILE) break;
      j = p->pidx[j];
    }
    if (cycle) {
      size_t k = j;
      do {
        add_error(e, s->line[k], "parent_id", 0, "row %" PRId64 " is its own ancestor (a cycle of parents)", p->id[k]);
        k = p->pidx[k];
      } while (k != j);
    }
    while (sp > 0) {
      size_t k = stack[--sp];
      state[k] = 2;
      p->order[placed++] = k;
    }
  }
  dg_free(stack);
  dg_free(state);
}

/* ---- the request ------------------------------------------------------------------- */

/* Appends v in decimal to b (no printf: a million rows have millions). */
static void put_int(dg_buf_t *b, int64_t v) {
  char tmp[24], *q = tmp + sizeof tmp;
  uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    *--q = (char)('0' + m % 10);
    m /= 10;
  } while (m);
  if (v < 0) *--q = '-';
  dg_buf_append(b, q, (size_t)(tmp + sizeof tmp - q));
}

/* A by-column integer list as a JSON string, "7,,-3" (an empty item for
 * none), of the plan's rows: field k is the ids, the parent ids or a
 * number column; the JSON text goes to raw through w. */
static void write_int_list(dg_jsonw_t *w, dg_buf_t *tmp, const sheet_t *s, const dg_tabledef_t *t, const int *fmap,
                           const plan_t *p, size_t k) {
  dg_buf_reset(tmp);
  dg_buf_reserve(tmp, s->nrows * 12 + 2);
  dg_buf_putc(tmp, '"');
  for (size_t o = 0; o < s->nrows; o++) {
    size_t i = p->order[o];
    if (o) dg_buf_putc(tmp, ',');
    if (fmap[k] == FIELD_ID) {
      if (p->has_id[i]) put_int(tmp, p->id[i]);
    } else if (fmap[k] == FIELD_PARENT) {
      if (p->pkind[i] != PARENT_NONE) put_int(tmp, p->parent[i]);
    } else {
      size_t len = 0;
      const char *v = cell(s, i, k, &len);
      int64_t x;
      if (v && dg_decimal_parse(v, len, t->cols[fmap[k]].scale, &x) == 0) put_int(tmp, x);
    }
  }
  dg_buf_putc(tmp, '"');
  dg_jsonw_raw(w, tmp->data, tmp->len);
}

/* Appends the rows by column in the plan's order to raw (the request's
 * text): ,"count":N,"ids":"…","parent_ids":"…","columns":[{"name","scale",
 * "values":"…"}|{"name","values":[text|null…]}…] (the form is described
 * at op_insert_columns in src/manager/apply.c). A number goes as an
 * integer in units of its column's scale; an empty field as an empty item
 * (a new id, a root, a number left at 0) or a null text. */
static void write_columns(dg_buf_t *raw, const sheet_t *s, const dg_tabledef_t *t, const int *fmap, const plan_t *p) {
  dg_buf_t tmp;
  dg_buf_init(&tmp);
  dg_jsonw_t w;
  dg_jsonw_resume_obj(&w, raw); /* inside the request object, after its first members */
  dg_jsonw_key(&w, "count");
  dg_jsonw_int(&w, (int64_t)s->nrows);
  for (size_t k = 0; k < s->ncols; k++) {
    if (fmap[k] != FIELD_ID && fmap[k] != FIELD_PARENT) continue;
    dg_jsonw_key(&w, fmap[k] == FIELD_ID ? "ids" : "parent_ids");
    write_int_list(&w, &tmp, s, t, fmap, p, k);
  }
  dg_jsonw_key(&w, "columns");
  dg_jsonw_arr(&w);
  for (size_t k = 0; k < s->ncols; k++) {
    if (fmap[k] < 0) continue;
    const dg_coldef_t *c = &t->cols[fmap[k]];
    dg_jsonw_obj(&w);
    dg_jsonw_key(&w, "name");
    dg_jsonw_str(&w, c->name);
    if (c->type == DG_COL_NUMBER) {
      dg_jsonw_key(&w, "scale");
      dg_jsonw_int(&w, c->scale);
      dg_jsonw_key(&w, "values");
      write_int_list(&w, &tmp, s, t, fmap, p, k);
      dg_jsonw_end(&w);
      continue;
    }
    dg_jsonw_key(&w, "values");
    dg_jsonw_arr(&w);
    for (size_t o = 0; o < s->nrows; o++) {
      size_t len = 0;
      const char *v = cell(s, p->order[o], k, &len);
      if (v) dg_jsonw_strn(&w, v, len);
      else dg_jsonw_null(&w);
    }
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
  }
  dg_jsonw_end(&w);
  dg_buf_dispose(&tmp);
  /* The request object stays open: dg_write_import_submit closes it. */
}

static int table_import(dg_req_t *r) {
  if (dg_write_import_replayed(r)) return 0;
  const char *format = dg_query(r, "format");
  if (format == NULL) format = "csv";
  int parquet = strcmp(format, "parquet") == 0;
  if (!parquet && strcmp(format, "csv") != 0) {
    dg_problem(r, 400, NULL, "format must be csv or parquet; got '%.20s'", format);
    return 0;
  }
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  sheet_t s;
  memset(&s, 0, sizeof s);
  plan_t p;
  memset(&p, 0, sizeof p);
  errors_t e = {parquet ? "row" : "line", json_array(), 0, 0};
  int *fmap = NULL;
  int64_t t0 = dg_mono_us();
  if ((parquet ? read_parquet_body(r, &s) : read_csv_body(r, &s)) != 0) goto out;
  int64_t t_read = dg_mono_us();
  fmap = dg_calloc(s.ncols + 1, sizeof *fmap);
  check_header(&s, t, fmap, &e);
  if (e.total == 0 && s.nrows == 0) {
    dg_problem(r, 400, NULL, "the file has %s and no rows", parquet ? "columns" : "a header");
    goto out;
  }
  if (e.total == 0 && s.nrows > MAX_ROWS) {
    dg_problem(r, 400, NULL, "the file has %zu rows; one import takes at most %d", s.nrows, MAX_ROWS);
    goto out;
  }
  if (e.total == 0) check_rows(r, &s, t, fmap, &p, &e);
  if (e.total > 0) {
    json_t *first = json_array_get(e.list, 0);
    int conflict = e.conflicts == e.total;
    char more[64] = "";
    if (e.total > 1) snprintf(more, sizeof more, " (and %zu more)", e.total - 1);
    const char *col = json_string_value(json_object_get(first, "column"));
    json_t *at = json_object_get(first, e.key);
    char where[160];
    if (at) snprintf(where, sizeof where, "%s %" JSON_INTEGER_FORMAT "%s%.80s%s", e.key, json_integer_value(at),
                     col ? ", column '" : "", col ? col : "", col ? "'" : "");
    else snprintf(where, sizeof where, "column '%.80s'", col ? col : "?");
    dg_problem(r, conflict ? 409 : 400, json_pack("{s:O,s:I}", "errors", e.list, "errors_total", (json_int_t)e.total),
               "nothing was imported: %s: %s%s", where, json_string_value(json_object_get(first, "detail")), more);
    goto out;
  }
  int64_t t_check = dg_mono_us();
  dg_buf_t raw;
  dg_buf_init(&raw);
  dg_write_import_begin(r, &raw, t->name);
  write_columns(&raw, &s, t, fmap, &p);
  size_t nrows = s.nrows, nbytes = raw.len;
  int64_t t_text = dg_mono_us();
  sheet_dispose(&s); /* the text has every value now */
  memset(&s, 0, sizeof s);
  plan_dispose(&p);
  memset(&p, 0, sizeof p);
  dg_write_import_submit(r, &raw);
  dg_log_info("import into '%s': %zu rows (%.1f MB of request): read %.0f ms, checked %.0f ms, request written %.0f ms, "
              "queued and answered %.0f ms", t->name, nrows, (double)nbytes / 1e6, (double)(t_read - t0) / 1000.0,
              (double)(t_check - t_read) / 1000.0, (double)(t_text - t_check) / 1000.0,
              (double)(dg_mono_us() - t_text) / 1000.0);
out:
  dg_free(fmap);
  json_decref(e.list);
  plan_dispose(&p);
  sheet_dispose(&s);
  dg_tabledef_unref(t);
  return 0;
}

const dg_route_t dg_routes_import[] = {
    {"POST", "/tables/:table/import", DG_ROLE_WRITE, table_import, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
