/*
 * import.c (service) -- a request body read by DuckDB for POST
 * /tables/{table}/import (service_import.h): the only place the import
 * speaks DuckDB.
 *
 * External access is off, so the body goes to a scratch file of the
 * server's making in the one directory SQL may read (iofile.h), is read
 * with read_csv or read_parquet (the path a bound parameter) and is removed
 * at once. The answer's chunks are kept as DuckDB returned them, every
 * field VARCHAR, and indexed by row: the handler checks every value in
 * place and copies each once into its request.
 */
#include "dg/service_import.h"

#include <duckdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/iofile.h"
#include "dg/log.h"

struct dg_sheet_s {
  duckdb_data_chunk *chunks;
  size_t nchunks;
  idx_t ncols;
  size_t nrows;       /* rows over all chunks                          */
  uint32_t *at_chunk; /* per row: its chunk and its row in it (a chunk
                         holds at most 2048 rows: uint16_t)            */
  uint16_t *at_off;
  char **names;       /* the result's column names (Parquet), or NULL  */
};

void dg_sheet_destroy(dg_sheet_t *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->nchunks; i++) duckdb_destroy_data_chunk(&s->chunks[i]);
  dg_free(s->chunks);
  dg_free(s->at_chunk);
  dg_free(s->at_off);
  for (idx_t k = 0; s->names && k < s->ncols; k++) dg_free(s->names[k]);
  dg_free(s->names);
  dg_free(s);
}

size_t dg_sheet_ncols(const dg_sheet_t *s) { return (size_t)s->ncols; }
size_t dg_sheet_nrows(const dg_sheet_t *s) { return s->nrows; }
const char *dg_sheet_name(const dg_sheet_t *s, size_t k) { return s->names ? s->names[k] : NULL; }

const char *dg_sheet_cell(const dg_sheet_t *s, size_t row, size_t k, size_t *len) {
  duckdb_data_chunk c = s->chunks[s->at_chunk[row]];
  idx_t off = s->at_off[row];
  duckdb_vector v = duckdb_data_chunk_get_vector(c, k);
  uint64_t *valid = duckdb_vector_get_validity(v);
  if (valid && !duckdb_validity_row_is_valid(valid, off)) return NULL;
  duckdb_string_t *str = &((duckdb_string_t *)duckdb_vector_get_data(v))[off];
  *len = duckdb_string_t_length(*str);
  return duckdb_string_t_data(str);
}

/* Writes len bytes to a new file at path (mode 0600). 0 or DG_EIO. */
static int write_file(const char *path, const char *p, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return DG_EIO;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      close(fd);
      return DG_EIO;
    }
    p += w;
    len -= (size_t)w;
  }
  return close(fd) == 0 ? 0 : DG_EIO;
}

/* DuckDB's message about a bad file, cut to what concerns the client: its
 * first paragraph, without the reader's settings or the scratch path. */
static void reader_message(const char *msg, const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", msg ? msg : "the file could not be read");
  char *cut = strstr(out, "\n\n");
  if (cut) *cut = '\0';
  cut = strstr(out, "Possible fixes");
  if (cut) *cut = '\0';
  cut = strstr(out, path);
  if (cut) *cut = '\0';
  for (size_t n = strlen(out); n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ' || out[n - 1] == ':' ||
                                out[n - 1] == '\'' || out[n - 1] == '"'); n--)
    out[n - 1] = '\0';
  for (char *q = out; *q; q++)
    if (*q == '\n') *q = ' ';
}

/* Numbers the rows of s over its chunks: at_chunk/at_off, nrows. */
static void index_rows(dg_sheet_t *s) {
  size_t total = 0;
  for (size_t i = 0; i < s->nchunks; i++) total += duckdb_data_chunk_get_size(s->chunks[i]);
  s->nrows = total;
  s->at_chunk = dg_malloc((total + 1) * sizeof *s->at_chunk);
  s->at_off = dg_malloc((total + 1) * sizeof *s->at_off);
  size_t row = 0;
  for (size_t i = 0; i < s->nchunks; i++) {
    idx_t n = duckdb_data_chunk_get_size(s->chunks[i]);
    for (idx_t k = 0; k < n; k++, row++) {
      s->at_chunk[row] = (uint32_t)i;
      s->at_off[row] = (uint16_t)k;
    }
  }
}

/* Runs sql (one parameter: path) and keeps every chunk of the answer
 * (names from the result's columns when names_from_columns). */
static int read_into(dg_app_t *app, const char *sql, const char *path, int names_from_columns, dg_sheet_t **out,
                     char *why, size_t whycap) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st;
  duckdb_result res;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) {
    dg_log_error("import: preparing the reader failed: %s", duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    return DG_EINTERNAL;
  }
  duckdb_bind_varchar(st, 1, path);
  int rc = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    reader_message(duckdb_result_error(&res), path, why, whycap);
    rc = DG_EINVAL;
  } else {
    dg_sheet_t *s = dg_calloc(1, sizeof *s);
    s->ncols = duckdb_column_count(&res);
    if (names_from_columns) {
      s->names = dg_calloc(s->ncols + 1, sizeof *s->names);
      for (idx_t k = 0; k < s->ncols; k++) {
        const char *n = duckdb_column_name(&res, k);
        s->names[k] = n ? dg_strdup(n) : NULL;
      }
    }
    size_t cap = 0;
    duckdb_data_chunk ch;
    while ((ch = duckdb_fetch_chunk(res)) != NULL) {
      if (duckdb_data_chunk_get_size(ch) == 0) {
        duckdb_destroy_data_chunk(&ch);
        continue;
      }
      if (s->nchunks == cap) {
        cap = cap ? cap * 2 : 64;
        s->chunks = dg_realloc(s->chunks, cap * sizeof *s->chunks);
      }
      s->chunks[s->nchunks++] = ch;
    }
    index_rows(s);
    *out = s;
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

/* body into a new scratch file (path), then sql over it; the file is
 * removed whatever happens. */
static int read_body(dg_app_t *app, const char *ext, const char *sql, const char *body, size_t len,
                     int names_from_columns, dg_sheet_t **out, char *why, size_t whycap) {
  char path[DG_IOFILE_PATH_MAX];
  if (dg_iofile_path(dg_db_path(app->db), "import", ext, path, sizeof path) != 0 ||
      write_file(path, body, len) != 0) {
    dg_log_error("import: cannot write a scratch file: %s", strerror(errno));
    unlink(path);
    return DG_EIO;
  }
  int rc = read_into(app, sql, path, names_from_columns, out, why, whycap);
  unlink(path);
  return rc;
}

int dg_service_import_csv(dg_app_t *app, const char *body, size_t len, size_t fields, dg_sheet_t **out, char *why,
                          size_t whycap) {
  /* Every choice spelled out, nothing sniffed: the reader parses exactly
   * what the handler's scan counted. The names c0… are ours. */
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_puts(&sql, "SELECT * FROM read_csv($1, header = false, auto_detect = false, delim = ',', quote = '\"',"
                    " escape = '\"', allow_quoted_nulls = false, strict_mode = true, null_padding = false,"
                    " columns = {");
  for (size_t k = 0; k < fields; k++) dg_buf_printf(&sql, "%s'c%zu': 'VARCHAR'", k ? ", " : "", k);
  dg_buf_puts(&sql, "})");
  int rc = read_body(app, "csv", sql.data, body, len, 0, out, why, whycap);
  dg_buf_dispose(&sql);
  return rc;
}

int dg_service_import_parquet(dg_app_t *app, const char *body, size_t len, dg_sheet_t **out, char *why,
                              size_t whycap) {
  /* COLUMNS(*): no name of the file's is ever spliced into SQL. */
  return read_body(app, "parquet", "SELECT COLUMNS(*)::VARCHAR FROM read_parquet($1)", body, len, 1, out, why,
                   whycap);
}
