/*
 * catalog.c -- tables, columns, row ids and views known to this process.
 *
 * One reader-writer lock guards the whole catalog: validation (readers) is
 * the hot path and never waits for another reader; updates come from one
 * thread (the response reader) and are short.
 */
#include "dg/catalog.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/rowset.h"

/* One change to a stale row set, kept to be replayed on its reload. */
typedef struct {
  int64_t id;
  int add;
} op_t;

/* At most this many changes are kept for a stale set (16 B each): past
 * that the log starts again at the outcome that overflowed it. */
#define OPLOG_MAX ((size_t)1 << 22)

typedef struct {
  dg_tabledef_t *def;  /* counted reference                */
  dg_rowset_t rows;    /* ids of the table's rows (a bitmap when dense) */
  /* Stale: an outcome changed rows without listing them (see
   * dg_catalog_rows_stale). Until a reload from DuckDB at or after
   * stale_at, has_row answers "may be there" and every later change is
   * logged in ops, to be replayed on the reloaded set. */
  int stale;
  dg_redis_xid_t stale_at;
  uint64_t stale_gen;  /* bumped by each mark: a reload that saw another is retried */
  op_t *ops;
  size_t nops, opcap;
} entry_t;

struct dg_catalog_s {
  pthread_rwlock_t lock;
  entry_t *tables;     /* unordered; a grid has few tables */
  size_t ntables, cap;
  char **views;
  size_t nviews, vcap;
};

int dg_name_valid(const char *s) {
  if (s == NULL) return 0;
  size_t n = 0;
  for (const char *p = s; *p; p++, n++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || c == '_' || (n > 0 && c >= '0' && c <= '9');
    if (!ok || n >= DG_NAME_MAX) return 0;
  }
  return n > 0 && strcmp(s, "id") != 0 && strcmp(s, "parent_id") != 0;
}

dg_tabledef_t *dg_tabledef_new(const char *name, int ncols) {
  dg_tabledef_t *t = dg_calloc(1, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ncols = ncols;
  t->cols = dg_calloc((size_t)(ncols > 0 ? ncols : 1), sizeof *t->cols);
  atomic_init(&t->_refs, 1);
  return t;
}

void dg_tabledef_finish(dg_tabledef_t *t) {
  t->nnum = t->ntext = 0;
  for (int i = 0; i < t->ncols; i++)
    t->cols[i].slot = t->cols[i].type == DG_COL_NUMBER ? t->nnum++ : t->ntext++;
}

dg_tabledef_t *dg_tabledef_ref(dg_tabledef_t *t) {
  atomic_fetch_add(&t->_refs, 1);
  return t;
}

void dg_tabledef_unref(dg_tabledef_t *t) {
  if (t == NULL || atomic_fetch_sub(&t->_refs, 1) != 1) return;
  dg_free(t->cols);
  dg_free(t);
}

dg_tabledef_t *dg_tabledef_from_json(const void *obj) {
  /* The definition comes from a stream: every name must pass the same
   * whitelist as a client's before it may go near SQL (count_rows, the
   * row reads), and nothing is repaired. */
  const json_t *j = obj;
  const char *name = json_string_value(json_object_get(j, "name"));
  json_t *cols = json_object_get(j, "columns");
  if (name == NULL || !dg_name_valid(name) || !json_is_array(cols) ||
      json_array_size(cols) > DG_MAX_COLUMNS)
    return NULL;
  for (size_t i = 0; i < json_array_size(cols); i++) {
    json_t *c = json_array_get(cols, i), *sc = json_object_get(c, "scale");
    const char *cn = json_string_value(json_object_get(c, "name"));
    const char *ty = json_string_value(json_object_get(c, "type"));
    if (cn == NULL || !dg_name_valid(cn) || ty == NULL || (strcmp(ty, "number") != 0 && strcmp(ty, "text") != 0))
      return NULL;
    if (sc != NULL && !json_is_null(sc) &&
        (!json_is_integer(sc) || json_integer_value(sc) < 0 || json_integer_value(sc) > 6))
      return NULL;
  }
  dg_tabledef_t *t = dg_tabledef_new(name, (int)json_array_size(cols));
  for (size_t i = 0; i < json_array_size(cols); i++) {
    json_t *c = json_array_get(cols, i);
    const char *cn = json_string_value(json_object_get(c, "name"));
    const char *ty = json_string_value(json_object_get(c, "type"));
    snprintf(t->cols[i].name, sizeof t->cols[i].name, "%s", cn);
    t->cols[i].type = strcmp(ty, "number") == 0 ? DG_COL_NUMBER : DG_COL_TEXT;
    t->cols[i].scale = (int)json_integer_value(json_object_get(c, "scale"));
  }
  dg_tabledef_finish(t);
  return t;
}

const dg_coldef_t *dg_tabledef_col(const dg_tabledef_t *t, const char *name) {
  if (name == NULL) return NULL;
  for (int i = 0; i < t->ncols; i++)
    if (strcmp(t->cols[i].name, name) == 0) return &t->cols[i];
  return NULL;
}

dg_catalog_t *dg_catalog_create(void) {
  dg_catalog_t *c = dg_calloc(1, sizeof *c);
  pthread_rwlock_init(&c->lock, NULL);
  return c;
}

static void entry_dispose(entry_t *e) {
  dg_tabledef_unref(e->def);
  dg_rowset_dispose(&e->rows);
  dg_free(e->ops);
}

static void clear(dg_catalog_t *c) {
  for (size_t i = 0; i < c->ntables; i++) entry_dispose(&c->tables[i]);
  c->ntables = 0;
  for (size_t i = 0; i < c->nviews; i++) dg_free(c->views[i]);
  c->nviews = 0;
}

void dg_catalog_destroy(dg_catalog_t *c) {
  if (c == NULL) return;
  clear(c);
  dg_free(c->tables);
  dg_free(c->views);
  pthread_rwlock_destroy(&c->lock);
  dg_free(c);
}

/* Callers hold the lock. */
static entry_t *find(dg_catalog_t *c, const char *name) {
  for (size_t i = 0; i < c->ntables; i++)
    if (strcmp(c->tables[i].def->name, name) == 0) return &c->tables[i];
  return NULL;
}

dg_tabledef_t *dg_catalog_table(dg_catalog_t *c, const char *name) {
  pthread_rwlock_rdlock(&c->lock);
  entry_t *e = find(c, name);
  dg_tabledef_t *t = e ? dg_tabledef_ref(e->def) : NULL;
  pthread_rwlock_unlock(&c->lock);
  return t;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char **dg_catalog_table_names(dg_catalog_t *c, size_t *n) {
  pthread_rwlock_rdlock(&c->lock);
  char **names = dg_calloc(c->ntables + 1, sizeof *names);
  for (size_t i = 0; i < c->ntables; i++) names[i] = dg_strdup(c->tables[i].def->name);
  *n = c->ntables;
  pthread_rwlock_unlock(&c->lock);
  qsort(names, *n, sizeof *names, cmp_str);
  return names;
}

void dg_catalog_names_free(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) dg_free(names[i]);
  dg_free(names);
}

static void put_locked(dg_catalog_t *c, dg_tabledef_t *def) {
  entry_t *e = find(c, def->name);
  if (e) {
    entry_dispose(e);
  } else {
    if (c->ntables == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 8;
      c->tables = dg_realloc(c->tables, c->cap * sizeof *c->tables);
    }
    e = &c->tables[c->ntables++];
  }
  memset(e, 0, sizeof *e);
  e->def = def;
  dg_rowset_init(&e->rows);
}

void dg_catalog_put_table(dg_catalog_t *c, dg_tabledef_t *def) {
  pthread_rwlock_wrlock(&c->lock);
  put_locked(c, def);
  pthread_rwlock_unlock(&c->lock);
}

void dg_catalog_drop_table(dg_catalog_t *c, const char *name) {
  pthread_rwlock_wrlock(&c->lock);
  entry_t *e = find(c, name);
  if (e) {
    entry_dispose(e);
    *e = c->tables[--c->ntables];
  }
  pthread_rwlock_unlock(&c->lock);
}

int dg_catalog_has_row(dg_catalog_t *c, const char *table, int64_t id) {
  pthread_rwlock_rdlock(&c->lock);
  entry_t *e = find(c, table);
  int yes = e && (e->stale || dg_rowset_has(&e->rows, id));
  pthread_rwlock_unlock(&c->lock);
  return yes;
}

int dg_catalog_row_known(dg_catalog_t *c, const char *table, int64_t id) {
  pthread_rwlock_rdlock(&c->lock);
  entry_t *e = find(c, table);
  int yes = e && !e->stale && dg_rowset_has(&e->rows, id);
  pthread_rwlock_unlock(&c->lock);
  return yes;
}

size_t dg_catalog_row_count(dg_catalog_t *c, const char *table) {
  pthread_rwlock_rdlock(&c->lock);
  entry_t *e = find(c, table);
  size_t n = e ? e->rows.count : 0;
  pthread_rwlock_unlock(&c->lock);
  return n;
}

/* A change to a stale set is logged as well as made. Caller holds the
 * write lock. */
static void log_op(entry_t *e, int64_t id, int add, dg_redis_xid_t at) {
  if (!e->stale) return;
  if (e->nops == OPLOG_MAX) {
    /* The log starts again here: a reload must now reach this outcome,
     * whose changes DuckDB then holds (replaying older ones is harmless). */
    e->nops = 0;
    e->stale_at = at;
    e->stale_gen++;
  }
  if (e->nops == e->opcap) {
    e->opcap = e->opcap ? e->opcap * 2 : 1024;
    e->ops = dg_realloc(e->ops, e->opcap * sizeof *e->ops);
  }
  e->ops[e->nops].id = id;
  e->ops[e->nops].add = add;
  e->nops++;
}

/* The rows an outcome added (add 1) or removed, logged when the set is stale. */
static void rows_change(dg_catalog_t *c, const char *table, const int64_t *ids, size_t n, dg_redis_xid_t at,
                        int add) {
  pthread_rwlock_wrlock(&c->lock);
  entry_t *e = find(c, table);
  for (size_t i = 0; e && i < n; i++) {
    if (add) dg_rowset_add(&e->rows, ids[i]);
    else dg_rowset_remove(&e->rows, ids[i]);
    log_op(e, ids[i], add, at);
  }
  pthread_rwlock_unlock(&c->lock);
}

void dg_catalog_rows_add(dg_catalog_t *c, const char *table, const int64_t *ids, size_t n, dg_redis_xid_t at) {
  rows_change(c, table, ids, n, at, 1);
}

void dg_catalog_rows_remove(dg_catalog_t *c, const char *table, const int64_t *ids, size_t n, dg_redis_xid_t at) {
  rows_change(c, table, ids, n, at, 0);
}

void dg_catalog_rows_stale(dg_catalog_t *c, const char *table, dg_redis_xid_t at) {
  pthread_rwlock_wrlock(&c->lock);
  entry_t *e = find(c, table);
  if (e) {
    /* Changes logged before this outcome are kept: replaying them on a
     * set read at or after it changes nothing (each id ends as its last
     * change left it). */
    e->stale = 1;
    e->stale_at = at;
    e->stale_gen++;
  }
  pthread_rwlock_unlock(&c->lock);
}

static int load_rows(duckdb_connection conn, const char *table, dg_rowset_t *rows);

int dg_catalog_refresh(dg_catalog_t *c, duckdb_connection conn, dg_redis_xid_t persisted) {
  int reloaded = 0;
  for (;;) {
    /* One stale table whose outcome DuckDB holds, its name copied out. */
    char name[DG_NAME_MAX + 1] = "";
    uint64_t gen = 0;
    dg_tabledef_t *def = NULL;
    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < c->ntables && def == NULL; i++) {
      entry_t *e = &c->tables[i];
      if (!e->stale || dg_redis_xid_cmp(e->stale_at, persisted) > 0) continue;
      snprintf(name, sizeof name, "%s", e->def->name);
      def = dg_tabledef_ref(e->def);
      gen = e->stale_gen;
    }
    pthread_rwlock_unlock(&c->lock);
    if (def == NULL) return reloaded;
    /* Read without the lock: validation goes on meanwhile, and the
     * changes that arrive are logged. The read sees at least persisted. */
    dg_rowset_t rows;
    dg_rowset_init(&rows);
    int rc = load_rows(conn, name, &rows);
    int swapped = 0;
    pthread_rwlock_wrlock(&c->lock);
    entry_t *e = find(c, name);
    if (rc == 0 && e && e->def == def && e->stale && e->stale_gen == gen) {
      for (size_t i = 0; i < e->nops; i++) {
        if (e->ops[i].add) dg_rowset_add(&rows, e->ops[i].id);
        else dg_rowset_remove(&rows, e->ops[i].id);
      }
      dg_rowset_dispose(&e->rows);
      e->rows = rows;
      e->stale = 0;
      dg_free(e->ops);
      e->ops = NULL;
      e->nops = e->opcap = 0;
      swapped = 1;
    }
    pthread_rwlock_unlock(&c->lock);
    dg_tabledef_unref(def);
    if (!swapped) {
      dg_rowset_dispose(&rows);
      /* Dropped, made again, or marked again meanwhile: the next call
       * tries again (after a newer persist, if it was marked again). */
      return rc == 0 ? reloaded : DG_EIO;
    }
    reloaded++;
  }
}

int dg_catalog_has_view(dg_catalog_t *c, const char *name) {
  pthread_rwlock_rdlock(&c->lock);
  int yes = 0;
  for (size_t i = 0; i < c->nviews && !yes; i++) yes = strcmp(c->views[i], name) == 0;
  pthread_rwlock_unlock(&c->lock);
  return yes;
}

void dg_catalog_put_view(dg_catalog_t *c, const char *name) {
  if (dg_catalog_has_view(c, name)) return;
  pthread_rwlock_wrlock(&c->lock);
  if (c->nviews == c->vcap) {
    c->vcap = c->vcap ? c->vcap * 2 : 8;
    c->views = dg_realloc(c->views, c->vcap * sizeof *c->views);
  }
  c->views[c->nviews++] = dg_strdup(name);
  pthread_rwlock_unlock(&c->lock);
}

void dg_catalog_drop_view(dg_catalog_t *c, const char *name) {
  pthread_rwlock_wrlock(&c->lock);
  for (size_t i = 0; i < c->nviews; i++) {
    if (strcmp(c->views[i], name) != 0) continue;
    dg_free(c->views[i]);
    c->views[i] = c->views[--c->nviews];
    break;
  }
  pthread_rwlock_unlock(&c->lock);
}

/* ---- loading from DuckDB ---------------------------------------------------- */

int dg_catalog_read_def(duckdb_connection conn, const char *name, dg_tabledef_t **out) {
  duckdb_prepared_statement st;
  if (duckdb_prepare(conn, dg_sql_table_columns, &st) == DuckDBError) {
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  duckdb_bind_varchar(st, 1, name);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  idx_t n = duckdb_row_count(&res);
  dg_tabledef_t *t = dg_tabledef_new(name, (int)n);
  for (idx_t i = 0; i < n; i++) {
    char *cn = duckdb_value_varchar(&res, 0, i);
    char *ty = duckdb_value_varchar(&res, 1, i);
    snprintf(t->cols[i].name, sizeof t->cols[i].name, "%s", cn ? cn : "");
    t->cols[i].type = ty && strcmp(ty, "number") == 0 ? DG_COL_NUMBER : DG_COL_TEXT;
    t->cols[i].scale = (int)duckdb_value_int32(&res, 2, i);
    duckdb_free(cn);
    duckdb_free(ty);
  }
  dg_tabledef_finish(t);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  *out = t;
  return 0;
}

static int load_rows(duckdb_connection conn, const char *table, dg_rowset_t *rows) {
  char sql[160];
  /* The name passed the whitelist when the table was made; quote it anyway. */
  snprintf(sql, sizeof sql, "SELECT id FROM main.\"%s\"", table);
  /* Streamed: a materialised result would hold all ids a second time
   * (80 MB at 10M rows) in DuckDB's allocator, which keeps freed pages a
   * while. */
  duckdb_prepared_statement st;
  duckdb_result res;
  if (duckdb_prepare(conn, sql, &st) == DuckDBError) {
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  if (duckdb_execute_prepared_streaming(st, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  for (;;) {
    duckdb_data_chunk chunk = duckdb_fetch_chunk(res);
    if (chunk == NULL) break;
    idx_t n = duckdb_data_chunk_get_size(chunk);
    const int64_t *ids = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, 0));
    for (idx_t i = 0; i < n; i++) dg_rowset_add(rows, ids[i]);
    duckdb_destroy_data_chunk(&chunk);
  }
  int rc = duckdb_result_error(&res) != NULL ? DG_EIO : 0; /* a stream that broke off */
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_catalog_load(dg_catalog_t *c, duckdb_connection conn, char *err, size_t errcap) {
  duckdb_result res;
  if (duckdb_query(conn, dg_sql_table_names, &res) == DuckDBError) {
    snprintf(err, errcap, "cannot read the table catalog: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  idx_t n = duckdb_row_count(&res);
  pthread_rwlock_wrlock(&c->lock);
  clear(c);
  int rc = 0;
  for (idx_t i = 0; i < n && rc == 0; i++) {
    char *name = duckdb_value_varchar(&res, 0, i);
    dg_tabledef_t *t;
    rc = dg_catalog_read_def(conn, name, &t);
    if (rc == 0) {
      put_locked(c, t);
      rc = load_rows(conn, name, &find(c, name)->rows);
    }
    if (rc != 0) snprintf(err, errcap, "cannot load table '%s'", name);
    duckdb_free(name);
  }
  duckdb_destroy_result(&res);
  if (rc == 0 && duckdb_query(conn, dg_sql_view_names, &res) == DuckDBSuccess) {
    for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
      char *name = duckdb_value_varchar(&res, 0, i);
      if (c->nviews == c->vcap) {
        c->vcap = c->vcap ? c->vcap * 2 : 8;
        c->views = dg_realloc(c->views, c->vcap * sizeof *c->views);
      }
      c->views[c->nviews++] = dg_strdup(name);
      duckdb_free(name);
    }
    duckdb_destroy_result(&res);
  } else if (rc == 0) {
    duckdb_destroy_result(&res);
    snprintf(err, errcap, "cannot read the view catalog");
    rc = DG_EIO;
  }
  pthread_rwlock_unlock(&c->lock);
  return rc;
}
