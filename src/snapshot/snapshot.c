/*
 * snapshot.c -- consistent copies of the DuckDB state at an update id.
 *
 * DESIGN
 *
 * DuckDB holds the state as of the update id in dg.applied: the persister
 * writes rows, audit log and dg.applied in one transaction (persist.c). So
 * any read transaction sees a state and the update id it is the state at,
 * together. A snapshot is one read transaction on a connection of its own:
 *
 *     ATTACH '<dir>/<id>.duckdb.tmp' AS dg_snapshot_out
 *     BEGIN;  SELECT last_id FROM dg.applied;  row counts;
 *             COPY FROM DATABASE <this one> TO dg_snapshot_out (SCHEMA);
 *             per table: the rows, without its keys (below);
 *             dg.snapshot_rebuild: what the consumer must rebuild;
 *     COMMIT; DETACH            (the copy is checkpointed, no WAL left)
 *     SHA-256 of the file, fsync, rename to <id>.duckdb, then <id>.json
 *
 * Format 2 (manifest "format": 2): building the primary-key and unique
 * indexes (ART) was ~80% of copying a table with COPY FROM DATABASE (10M
 * rows: 1.2 s of data, 4.3 s of index). So a table with a PRIMARY KEY or
 * UNIQUE constraint is copied as data alone (CREATE TABLE AS SELECT: the
 * same columns and types, no constraint), and so are explicit indexes
 * (CREATE INDEX) left out; the file's table dg.snapshot_rebuild lists each
 * such table with its CREATE TABLE statement as the catalog gives it, and
 * each left-out index with its own. Tables without keys are created as
 * they are (the schema copy) and filled with INSERT ... SELECT.
 *
 * Whoever opens the file rebuilds first: dg_db_open calls
 * dg_snapshot_rebuild, which in one transaction renames each listed table
 * aside, creates it again with its own statement, inserts the rows back
 * (DuckDB checks the keys as it builds them), drops the copy, creates the
 * indexes, and drops dg.snapshot_rebuild. So restore (which opens its copy
 * with dg_db_open), a node bootstrapping from a snapshot (the server opens
 * the copied file) and anyone starting a server on a snapshot file get the
 * server's own tables, constraints and rows. Until then the file's
 * dg.schema_version is its real version + DG_SNAPSHOT_SCHEMA_GUARD, so an
 * older duckgrid, which knows nothing of the rebuild, refuses the file
 * ("schema version ... is newer than this duckgrid") rather than running
 * without keys. Format 1 snapshots (no "format" in the manifest: a full
 * COPY FROM DATABASE) have no dg.snapshot_rebuild and open as they are.
 *
 * Nothing waits for it: the manager applies and publishes, the persister
 * commits on its own connection (MVCC keeps the versions this transaction
 * reads), reads go on. Only a checkpoint of the main file is skipped while
 * it runs (DuckDB does not checkpoint under an open transaction); the
 * persister's next idle checkpoint does it.
 *
 * The manifest is written last and renamed into place: a listing shows
 * only finished snapshots, and a snapshot whose file does not match its
 * manifest's SHA-256 is refused by restore.
 */
#include "dg/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/log.h"

#define OUT_ALIAS DG_SQL_SNAPSHOT_ALIAS

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dg_snapshot_dir(const char *db_path, char *out, size_t cap) {
  const char *env = getenv("DUCKGRID_SNAPSHOT_DIR");
  char rel[PATH_MAX];
  if (env && *env) {
    snprintf(rel, sizeof rel, "%s", env);
  } else {
    const char *slash = strrchr(db_path, '/');
    if (slash == NULL) snprintf(rel, sizeof rel, "snapshots");
    else snprintf(rel, sizeof rel, "%.*s/snapshots", (int)(slash - db_path), db_path);
  }
  /* Absolute: DuckDB's allowed_directories compares whole paths. */
  char cwd[PATH_MAX];
  if (rel[0] != '/' && getcwd(cwd, sizeof cwd) != NULL) snprintf(out, cap, "%s/%s", cwd, rel);
  else snprintf(out, cap, "%s", rel);
}

int dg_snapshot_id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= DG_SNAPSHOT_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

int dg_sha256_file(const char *path, char hex[65], uint64_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return DG_ENOTFOUND;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  unsigned char *buf = dg_malloc(1 << 20);
  uint64_t total = 0;
  size_t n;
  while ((n = fread(buf, 1, 1 << 20, f)) > 0) {
    EVP_DigestUpdate(ctx, buf, n);
    total += n;
  }
  int rc = ferror(f) ? DG_EIO : 0;
  fclose(f);
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  dg_free(buf);
  if (rc) return rc;
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  if (size) *size = total;
  return 0;
}

/* SQL text literal / identifier: quotes doubled. Our own paths and names. */
static void put_quoted(dg_buf_t *b, const char *s, char q) {
  dg_buf_printf(b, "%c", q);
  for (; *s; s++) {
    if (*s == q) dg_buf_printf(b, "%c", q);
    dg_buf_printf(b, "%c", *s);
  }
  dg_buf_printf(b, "%c", q);
}

static int run(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  duckdb_result res;
  int rc = 0;
  if (duckdb_query(c, sql, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
    rc = DG_EIO;
  }
  duckdb_destroy_result(&res);
  return rc;
}

/* First value of a one-row query as text (owned), NULL on error. */
static char *one_text(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  duckdb_result res;
  char *out = NULL;
  if (duckdb_query(c, sql, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
  } else if (duckdb_row_count(&res) >= 1) {
    char *v = duckdb_value_varchar(&res, 0, 0);
    out = dg_strdup(v ? v : "");
    duckdb_free(v);
  } else {
    snprintf(err, errcap, "no row: %.80s", sql);
  }
  duckdb_destroy_result(&res);
  return out;
}

int dg_fs_sync(const char *path, int dir) {
  int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return DG_EIO;
  int rc = fsync(fd) == 0 ? 0 : DG_EIO;
  close(fd);
  return rc;
}

int dg_fs_mkdir_p(const char *dir) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return DG_EIO;
    *p = '/';
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return DG_EIO;
  return 0;
}

static void iso_of_ms(int64_t ms, char *out, size_t cap) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

/* A new id from the time: snap-YYYYMMDDTHHMMSS-mmm, made unique in dir. */
static void new_id(const char *dir, char id[DG_SNAPSHOT_ID_MAX]) {
  int64_t ms = wall_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y%m%dT%H%M%S", &tm);
  for (int k = 0; k < 1000; k++) {
    if (k == 0) snprintf(id, DG_SNAPSHOT_ID_MAX, "snap-%s-%03d", base, (int)(ms % 1000));
    else snprintf(id, DG_SNAPSHOT_ID_MAX, "snap-%s-%03d-%d", base, (int)(ms % 1000), k);
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s.json", dir, id);
    int taken = stat(p, &st) == 0;
    snprintf(p, sizeof p, "%s/%s.duckdb", dir, id);
    taken |= stat(p, &st) == 0;
    if (!taken) return;
  }
}

/* Row counts of the user tables, inside the open transaction. */
static json_t *table_rows(duckdb_connection c, char *err, size_t errcap) {
  duckdb_result res;
  if (duckdb_query(c, dg_sql_table_names, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    return NULL;
  }
  json_t *o = json_object();
  dg_buf_t sql;
  dg_buf_init(&sql);
  for (idx_t i = 0; i < duckdb_row_count(&res) && o; i++) {
    char *name = duckdb_value_varchar(&res, 0, i);
    dg_buf_reset(&sql);
    dg_buf_puts(&sql, "SELECT count(*) FROM main.");
    put_quoted(&sql, name ? name : "", '"');
    char *n = one_text(c, sql.data, err, errcap);
    if (n == NULL) {
      json_decref(o);
      o = NULL;
    } else {
      json_object_set_new(o, name, json_integer(strtoll(n, NULL, 10)));
    }
    dg_free(n);
    duckdb_free(name);
  }
  dg_buf_dispose(&sql);
  duckdb_destroy_result(&res);
  return o;
}

/* The source's catalog, as seen by the open transaction: one row a table
 * (schema, name, CREATE statement, its key constraints' text or NULL when
 * it has none, its foreign keys). */
#define TABLES_SQL                                                                                                \
  "SELECT t.schema_name, t.table_name, t.sql,"                                                                    \
  " (SELECT string_agg(c.constraint_text, ', ' ORDER BY c.constraint_index) FROM duckdb_constraints() c"          \
  "   WHERE c.database_name = t.database_name AND c.schema_name = t.schema_name AND c.table_name = t.table_name"    \
  "   AND c.constraint_type IN ('PRIMARY KEY', 'UNIQUE')),"                                                       \
  " (SELECT count(*) FROM duckdb_constraints() c"                                                                 \
  "   WHERE c.database_name = t.database_name AND c.schema_name = t.schema_name AND c.table_name = t.table_name"    \
  "   AND c.constraint_type = 'FOREIGN KEY')"                                                                     \
  " FROM duckdb_tables() t WHERE t.database_name = current_database() AND NOT t.temporary"                        \
  " ORDER BY t.schema_name, t.table_name"

static char *dup_value(duckdb_result *res, idx_t col, idx_t row) {
  if (duckdb_value_is_null(res, col, row)) return NULL;
  char *v = duckdb_value_varchar(res, col, row);
  char *out = dg_strdup(v ? v : "");
  duckdb_free(v);
  return out;
}

/* "db"."schema"."name" */
static void put_qualified(dg_buf_t *b, const char *db, const char *schema, const char *name) {
  if (db) {
    put_quoted(b, db, '"');
    dg_buf_puts(b, ".");
  }
  put_quoted(b, schema, '"');
  dg_buf_puts(b, ".");
  put_quoted(b, name, '"');
}

/* One row of dg.snapshot_rebuild in the copy. */
static int rebuild_row(duckdb_prepared_statement st, int pos, const char *kind, const char *schema, const char *name,
                       const char *sql, char *err, size_t errcap) {
  duckdb_bind_int32(st, 1, pos);
  duckdb_bind_varchar(st, 2, kind);
  if (schema) duckdb_bind_varchar(st, 3, schema);
  else duckdb_bind_null(st, 3);
  if (name) duckdb_bind_varchar(st, 4, name);
  else duckdb_bind_null(st, 4);
  duckdb_bind_varchar(st, 5, sql);
  duckdb_result res;
  int rc = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
    rc = DG_EIO;
  }
  duckdb_destroy_result(&res);
  return rc;
}

/*
 * The copy, format 2 (the design note above), inside the open transaction:
 * the schema, then every table's rows, keyed tables without their keys.
 * *rebuild: the manifest's list of what the consumer rebuilds. *format: 2,
 * or 1 when a table has a foreign key (a keyed table cannot be renamed
 * aside under one): then the whole database is copied as before.
 */
static int copy_tables(duckdb_connection c, const char *dbname, json_t **rebuild, int *format, char *err,
                       size_t errcap) {
  dg_buf_t sql;
  dg_buf_init(&sql);
  *rebuild = json_array();
  *format = DG_SNAPSHOT_FORMAT;
  duckdb_result tabs, idx;
  memset(&tabs, 0, sizeof tabs);
  memset(&idx, 0, sizeof idx);
  int have_tabs = 0, have_idx = 0, rc = 0;
  if (duckdb_query(c, TABLES_SQL, &tabs) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&tabs));
    rc = DG_EIO;
  }
  have_tabs = 1;
  idx_t ntab = rc == 0 ? duckdb_row_count(&tabs) : 0;
  int fks = 0;
  for (idx_t i = 0; i < ntab; i++) fks += duckdb_value_int64(&tabs, 4, i) > 0;
  if (rc == 0 && fks) {
    *format = 1;
    dg_buf_puts(&sql, "COPY FROM DATABASE ");
    put_quoted(&sql, dbname, '"');
    dg_buf_puts(&sql, " TO " OUT_ALIAS);
    rc = run(c, sql.data, err, errcap);
    goto out;
  }
  if (rc == 0) {
    dg_buf_puts(&sql, "COPY FROM DATABASE ");
    put_quoted(&sql, dbname, '"');
    dg_buf_puts(&sql, " TO " OUT_ALIAS " (SCHEMA)");
    rc = run(c, sql.data, err, errcap);
  }
  if (rc == 0) {
    if (duckdb_query(c,
                     "SELECT schema_name, index_name, table_name, sql FROM duckdb_indexes() "
                     "WHERE database_name = current_database() AND sql IS NOT NULL ORDER BY schema_name, index_name",
                     &idx) == DuckDBError) {
      snprintf(err, errcap, "%s", duckdb_result_error(&idx));
      rc = DG_EIO;
    }
    have_idx = 1;
  }
  idx_t nidx = rc == 0 ? duckdb_row_count(&idx) : 0;
  /* Indexes are rebuilt by the consumer: none in the copy. */
  for (idx_t i = 0; i < nidx && rc == 0; i++) {
    char *schema = dup_value(&idx, 0, i), *name = dup_value(&idx, 1, i);
    dg_buf_reset(&sql);
    dg_buf_puts(&sql, "DROP INDEX IF EXISTS ");
    put_qualified(&sql, OUT_ALIAS, schema, name);
    rc = run(c, sql.data, err, errcap);
    dg_free(schema);
    dg_free(name);
  }
  duckdb_prepared_statement ins = NULL;
  if (rc == 0) {
    rc = run(c, dg_sql_rebuild_create, err, errcap);
    if (rc == 0 && duckdb_prepare(c, dg_sql_rebuild_insert, &ins) == DuckDBError) {
      snprintf(err, errcap, "%s", duckdb_prepare_error(ins));
      rc = DG_EIO;
    }
  }
  int pos = 0;
  for (idx_t i = 0; i < ntab && rc == 0; i++) {
    char *schema = dup_value(&tabs, 0, i), *name = dup_value(&tabs, 1, i), *create = dup_value(&tabs, 2, i);
    char *keys = dup_value(&tabs, 3, i);
    dg_buf_reset(&sql);
    if (keys && create) {
      /* Data alone; the consumer creates it again with its keys. */
      dg_buf_puts(&sql, "DROP TABLE ");
      put_qualified(&sql, OUT_ALIAS, schema, name);
      rc = run(c, sql.data, err, errcap);
      dg_buf_reset(&sql);
      dg_buf_puts(&sql, "CREATE TABLE ");
      put_qualified(&sql, OUT_ALIAS, schema, name);
      dg_buf_puts(&sql, " AS SELECT * FROM ");
      put_qualified(&sql, dbname, schema, name);
      if (rc == 0) rc = run(c, sql.data, err, errcap);
      if (rc == 0) rc = rebuild_row(ins, pos++, "table", schema, name, create, err, errcap);
      char qn[600];
      snprintf(qn, sizeof qn, "%s.%s", schema, name);
      json_array_append_new(*rebuild, json_pack("{s:s,s:s}", "table", qn, "keys", keys));
    } else {
      dg_buf_puts(&sql, "INSERT INTO ");
      put_qualified(&sql, OUT_ALIAS, schema, name);
      dg_buf_puts(&sql, " SELECT * FROM ");
      put_qualified(&sql, dbname, schema, name);
      rc = run(c, sql.data, err, errcap);
    }
    dg_free(schema);
    dg_free(name);
    dg_free(create);
    dg_free(keys);
  }
  for (idx_t i = 0; i < nidx && rc == 0; i++) {
    char *schema = dup_value(&idx, 0, i), *name = dup_value(&idx, 1, i), *table = dup_value(&idx, 2, i);
    char *create = dup_value(&idx, 3, i);
    rc = rebuild_row(ins, pos++, "index", schema, name, create, err, errcap);
    char qn[600];
    snprintf(qn, sizeof qn, "%s.%s", schema, table ? table : "");
    json_array_append_new(*rebuild, json_pack("{s:s,s:s}", "table", qn, "index", create));
    dg_free(schema);
    dg_free(name);
    dg_free(table);
    dg_free(create);
  }
  if (rc == 0) {
    /* The real schema version (as this transaction reads it), restored by
     * the rebuild; meanwhile one no duckgrid migrates to, so an older one
     * refuses the file. */
    char *v = one_text(c, dg_sql_schema_version_read, err, errcap);
    rc = v ? rebuild_row(ins, pos++, "schema_version", NULL, NULL, v, err, errcap) : DG_EIO;
    char set[128];
    dg_sql_schema_version_set(set, sizeof set, OUT_ALIAS, (v ? atoi(v) : 0) + DG_SNAPSHOT_SCHEMA_GUARD);
    if (rc == 0) rc = run(c, set, err, errcap);
    dg_free(v);
  }
  if (ins) duckdb_destroy_prepare(&ins);
out:
  if (have_tabs) duckdb_destroy_result(&tabs);
  if (have_idx) duckdb_destroy_result(&idx);
  dg_buf_dispose(&sql);
  return rc;
}

/* ---- the consumer's side --------------------------------------------------------- */

typedef struct {
  char *kind, *schema, *name, *sql;
} rb_step_t;

int dg_snapshot_rebuild(duckdb_connection c, int *rebuilt, char *err, size_t errcap) {
  *rebuilt = 0;
  char *n = one_text(c, dg_sql_rebuild_exists, err, errcap);
  if (n == NULL) return DG_EIO;
  int has = strcmp(n, "0") != 0;
  dg_free(n);
  if (!has) return 0;
  int64_t t0 = dg_mono_us();
  int rc = run(c, "BEGIN TRANSACTION", err, errcap);
  if (rc != 0) return rc;
  duckdb_result res;
  rb_step_t *steps = NULL;
  idx_t nsteps = 0;
  if (duckdb_query(c, dg_sql_rebuild_steps, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
    rc = DG_EIO;
  } else {
    nsteps = duckdb_row_count(&res);
    steps = dg_calloc(nsteps ? nsteps : 1, sizeof *steps);
    for (idx_t i = 0; i < nsteps; i++)
      steps[i] = (rb_step_t){dup_value(&res, 0, i), dup_value(&res, 1, i), dup_value(&res, 2, i),
                             dup_value(&res, 3, i)};
  }
  duckdb_destroy_result(&res);
  dg_buf_t sql;
  dg_buf_init(&sql);
  int tables = 0, indexes = 0, version = -1;
  for (idx_t i = 0; i < nsteps && rc == 0; i++) {
    rb_step_t *s = &steps[i];
    if (s->kind == NULL || s->sql == NULL) {
      snprintf(err, errcap, "dg.snapshot_rebuild: step %llu is incomplete", (unsigned long long)i);
      rc = DG_EINVAL;
    } else if (strcmp(s->kind, "table") == 0 && s->schema && s->name) {
      /* Aside, created again with its own statement, filled back. */
      char aside[600];
      snprintf(aside, sizeof aside, "%s__dg_rebuild", s->name);
      dg_buf_reset(&sql);
      dg_buf_puts(&sql, "ALTER TABLE ");
      put_qualified(&sql, NULL, s->schema, s->name);
      dg_buf_puts(&sql, " RENAME TO ");
      put_quoted(&sql, aside, '"');
      rc = run(c, sql.data, err, errcap);
      if (rc == 0) rc = run(c, s->sql, err, errcap);
      dg_buf_reset(&sql);
      dg_buf_puts(&sql, "INSERT INTO ");
      put_qualified(&sql, NULL, s->schema, s->name);
      dg_buf_puts(&sql, " SELECT * FROM ");
      put_qualified(&sql, NULL, s->schema, aside);
      if (rc == 0) rc = run(c, sql.data, err, errcap);
      dg_buf_reset(&sql);
      dg_buf_puts(&sql, "DROP TABLE ");
      put_qualified(&sql, NULL, s->schema, aside);
      if (rc == 0) rc = run(c, sql.data, err, errcap);
      tables++;
    } else if (strcmp(s->kind, "index") == 0) {
      rc = run(c, s->sql, err, errcap);
      indexes++;
    } else if (strcmp(s->kind, "schema_version") == 0) {
      version = atoi(s->sql);
      char set[128];
      dg_sql_schema_version_set(set, sizeof set, NULL, version);
      rc = run(c, set, err, errcap);
    } else {
      snprintf(err, errcap, "dg.snapshot_rebuild: unknown step '%s' (a newer duckgrid's snapshot?)", s->kind);
      rc = DG_EINVAL;
    }
    if (rc != 0 && s->name) {
      size_t l = strlen(err);
      snprintf(err + l, errcap > l ? errcap - l : 0, " (rebuilding %s.%s)", s->schema ? s->schema : "",
               s->name);
    }
  }
  if (rc == 0 && version < 0) {
    snprintf(err, errcap, "dg.snapshot_rebuild has no schema version");
    rc = DG_EINVAL;
  }
  if (rc == 0) rc = run(c, dg_sql_rebuild_drop, err, errcap);
  if (rc == 0) rc = run(c, "COMMIT", err, errcap);
  else run(c, "ROLLBACK", NULL, 0);
  for (idx_t i = 0; i < nsteps; i++) {
    dg_free(steps[i].kind);
    dg_free(steps[i].schema);
    dg_free(steps[i].name);
    dg_free(steps[i].sql);
  }
  dg_free(steps);
  dg_buf_dispose(&sql);
  if (rc != 0) return rc;
  /* The rebuilt tables into the file now, not in the first commit after. */
  int64_t t1 = dg_mono_us();
  if (run(c, "CHECKPOINT", err, errcap) != 0) dg_log_warn("snapshot rebuild: checkpoint: %s", err);
  *rebuilt = 1;
  dg_log_info("snapshot rebuild: %d tables' keys and %d indexes rebuilt in %lld ms (checkpoint %lld ms)", tables,
              indexes, (long long)((dg_mono_us() - t0) / 1000), (long long)((dg_mono_us() - t1) / 1000));
  return 0;
}

int dg_snapshot_take(duckdb_connection conn, const char *dir, int schema_version, const char *want_id,
                     json_t **manifest, char *err, size_t errcap) {
  *manifest = NULL;
  if (dg_fs_mkdir_p(dir) != 0) {
    snprintf(err, errcap, "cannot make the snapshot directory %s: %s", dir, strerror(errno));
    return DG_EIO;
  }
  char id[DG_SNAPSHOT_ID_MAX];
  if (want_id) snprintf(id, sizeof id, "%s", want_id);
  else new_id(dir, id);
  char tmp[PATH_MAX], final[PATH_MAX], mpath[PATH_MAX], mtmp[PATH_MAX], wal[PATH_MAX + 8];
  snprintf(tmp, sizeof tmp, "%s/%s.duckdb.tmp", dir, id);
  snprintf(final, sizeof final, "%s/%s.duckdb", dir, id);
  snprintf(mpath, sizeof mpath, "%s/%s.json", dir, id);
  snprintf(mtmp, sizeof mtmp, "%s/%s.json.tmp", dir, id);
  snprintf(wal, sizeof wal, "%s.wal", tmp);
  struct stat st;
  if (stat(final, &st) == 0 || stat(mpath, &st) == 0) {
    snprintf(err, errcap, "snapshot %s exists already", id);
    return DG_EEXIST;
  }
  unlink(tmp); /* a failed attempt's leftovers */
  unlink(wal);

  int64_t t0 = dg_mono_us(), created = wall_ms();
  char *dbname = one_text(conn, "SELECT current_database()", err, errcap);
  if (dbname == NULL) return DG_EIO;
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_puts(&sql, "ATTACH ");
  put_quoted(&sql, tmp, '\'');
  dg_buf_puts(&sql, " AS " OUT_ALIAS);
  int rc = run(conn, sql.data, err, errcap);
  char *applied = NULL;
  json_t *rows = NULL, *rebuild = NULL;
  int format = DG_SNAPSHOT_FORMAT;
  int attached = rc == 0;
  if (rc == 0) rc = run(conn, "BEGIN TRANSACTION", err, errcap);
  if (rc == 0) {
    /* The first read fixes what the transaction sees: dg.applied and the
     * rows come from the same committed state. */
    applied = one_text(conn, dg_sql_applied_last_id, err, errcap);
    if (applied == NULL) rc = DG_EIO;
    if (rc == 0 && (rows = table_rows(conn, err, errcap)) == NULL) rc = DG_EIO;
    if (rc == 0) rc = copy_tables(conn, dbname, &rebuild, &format, err, errcap);
    if (rc == 0) rc = run(conn, "COMMIT", err, errcap);
    else run(conn, "ROLLBACK", NULL, 0);
  }
  if (attached && run(conn, "DETACH " OUT_ALIAS, rc ? NULL : err, rc ? 0 : errcap) != 0 && rc == 0) rc = DG_EIO;
  dg_buf_dispose(&sql);
  dg_free(dbname);
  int64_t copied = dg_mono_us();
  if (rc == 0 && stat(wal, &st) == 0) {
    snprintf(err, errcap, "the copy left a WAL behind (%s)", wal);
    rc = DG_EIO;
  }
  char hex[65] = "";
  uint64_t bytes = 0;
  if (rc == 0 && dg_fs_sync(tmp, 0) != 0) {
    snprintf(err, errcap, "cannot sync %s: %s", tmp, strerror(errno));
    rc = DG_EIO;
  }
  if (rc == 0 && dg_sha256_file(tmp, hex, &bytes) != 0) {
    snprintf(err, errcap, "cannot read back %s", tmp);
    rc = DG_EIO;
  }
  if (rc == 0 && rename(tmp, final) != 0) {
    snprintf(err, errcap, "cannot rename %s: %s", tmp, strerror(errno));
    rc = DG_EIO;
  }
  if (rc != 0) {
    unlink(tmp);
    unlink(wal);
    dg_free(applied);
    json_decref(rows);
    json_decref(rebuild);
    return rc;
  }
  char iso[40];
  iso_of_ms(created, iso, sizeof iso);
  const char *base = strrchr(final, '/');
  json_t *m = json_object();
  json_object_set_new(m, "id", json_string(id));
  json_object_set_new(m, "update_id", json_string(applied));
  json_object_set_new(m, "schema_version", json_integer(schema_version));
  json_object_set_new(m, "created_at", json_string(iso));
  json_object_set_new(m, "created_ms", json_integer(created));
  json_object_set_new(m, "file", json_string(base ? base + 1 : final));
  json_object_set_new(m, "bytes", json_integer((json_int_t)bytes));
  json_object_set_new(m, "sha256", json_string(hex));
  json_object_set_new(m, "tables", rows);
  json_object_set_new(m, "format", json_integer(format));
  if (format >= 2) json_object_set_new(m, "rebuild", rebuild);
  else json_decref(rebuild);
  json_object_set_new(m, "copy_ms", json_integer((copied - t0) / 1000));
  json_object_set_new(m, "took_ms", json_integer((dg_mono_us() - t0) / 1000));
  json_object_set_new(m, "duckdb", json_string(duckdb_library_version()));
  dg_free(applied);
  if (json_dump_file(m, mtmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || dg_fs_sync(mtmp, 0) != 0 ||
      rename(mtmp, mpath) != 0) {
    snprintf(err, errcap, "cannot write the manifest %s: %s", mpath, strerror(errno));
    unlink(mtmp);
    unlink(final);
    json_decref(m);
    return DG_EIO;
  }
  dg_fs_sync(dir, 1);
  *manifest = m;
  return 0;
}

static int by_created(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  json_int_t cx = json_integer_value(json_object_get(x, "created_ms"));
  json_int_t cy = json_integer_value(json_object_get(y, "created_ms"));
  if (cx != cy) return cx < cy ? -1 : 1;
  return strcmp(json_string_value(json_object_get(x, "id")), json_string_value(json_object_get(y, "id")));
}

json_t *dg_snapshot_list(const char *dir) {
  json_t *arr = json_array();
  DIR *d = opendir(dir);
  if (d == NULL) return arr;
  json_t **items = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
    char id[DG_SNAPSHOT_ID_MAX];
    if (len - 5 >= sizeof id) continue;
    snprintf(id, sizeof id, "%.*s", (int)(len - 5), e->d_name);
    if (!dg_snapshot_id_ok(id)) continue;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    json_t *m = json_load_file(p, 0, NULL);
    const char *mid = json_string_value(json_object_get(m, "id"));
    if (m == NULL || mid == NULL || strcmp(mid, id) != 0 || !json_is_string(json_object_get(m, "update_id"))) {
      json_decref(m);
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      items = dg_realloc(items, cap * sizeof *items);
    }
    items[n++] = m;
  }
  closedir(d);
  if (n) qsort(items, n, sizeof *items, by_created);
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, items[i]);
  dg_free(items);
  return arr;
}

json_t *dg_snapshot_find(const char *dir, const char *id) {
  json_t *all = dg_snapshot_list(dir);
  json_t *hit = NULL;
  size_t n = json_array_size(all);
  if (strcmp(id, "latest") == 0) {
    if (n) hit = json_incref(json_array_get(all, n - 1));
  } else {
    for (size_t i = 0; i < n && hit == NULL; i++) {
      json_t *m = json_array_get(all, i);
      if (strcmp(json_string_value(json_object_get(m, "id")), id) == 0) hit = json_incref(m);
    }
  }
  json_decref(all);
  return hit;
}

int dg_snapshot_prune(const char *dir, long keep, long max_age_s) {
  json_t *all = dg_snapshot_list(dir);
  size_t n = json_array_size(all);
  int64_t now = wall_ms();
  int removed = 0;
  for (size_t i = 0; i + 1 < n; i++) { /* never the newest */
    json_t *m = json_array_get(all, i);
    int64_t created = json_integer_value(json_object_get(m, "created_ms"));
    int too_many = keep > 0 && n > (size_t)keep && i < n - (size_t)keep;
    int too_old = max_age_s > 0 && now - created > (int64_t)max_age_s * 1000;
    if (!too_many && !too_old) continue;
    const char *id = json_string_value(json_object_get(m, "id"));
    char p[PATH_MAX];
    /* The manifest first: a snapshot without one is not listed. */
    snprintf(p, sizeof p, "%s/%s.json", dir, id);
    if (unlink(p) != 0) continue;
    snprintf(p, sizeof p, "%s/%s.duckdb", dir, id);
    unlink(p);
    dg_log_info("snapshot %s removed (retention: %s)", id, too_many ? "keep count" : "max age");
    removed++;
  }
  json_decref(all);
  return removed;
}

/* ---- the service ------------------------------------------------------------------- */

struct dg_snapshots_s {
  dg_db_t *db;
  char dir[PATH_MAX];
  long keep, max_age_s;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t thread;
  int has_thread;                 /* joinable                               */
  int running;                    /* lock: a snapshot is under way          */
  char cur[DG_SNAPSHOT_ID_MAX];   /* lock: the one under way, or the last   */
  int failed;                     /* lock: the last one failed              */
  char error[512];                /* lock: why                              */
};

/* "30", "30s", "15m", "12h", "7d": seconds; -1 when malformed. */
static long parse_age(const char *v) {
  char *end;
  long n = strtol(v, &end, 10);
  if (end == v || n < 0) return -1;
  long mul = 1;
  if (*end == 's') mul = 1, end++;
  else if (*end == 'm') mul = 60, end++;
  else if (*end == 'h') mul = 3600, end++;
  else if (*end == 'd') mul = 86400, end++;
  if (*end != '\0') return -1;
  return n * mul;
}

void dg_snapshot_retention(long *keep, long *max_age_s) {
  *keep = 7;
  *max_age_s = 0;
  const char *v = getenv("DUCKGRID_SNAPSHOT_KEEP");
  if (v && *v) {
    char *end;
    long k = strtol(v, &end, 10);
    if (*end == '\0' && k >= 0) *keep = k;
    else dg_log_warn("DUCKGRID_SNAPSHOT_KEEP=%s is not a count; keeping %ld", v, *keep);
  }
  v = getenv("DUCKGRID_SNAPSHOT_MAX_AGE");
  if (v && *v) {
    *max_age_s = parse_age(v);
    if (*max_age_s < 0) {
      dg_log_warn("DUCKGRID_SNAPSHOT_MAX_AGE=%s is not an age (e.g. 7d, 12h, 3600); no age limit", v);
      *max_age_s = 0;
    }
  }
}

dg_snapshots_t *dg_snapshots_create(dg_db_t *db) {
  dg_snapshots_t *s = dg_calloc(1, sizeof *s);
  s->db = db;
  dg_snapshot_dir(dg_db_path(db), s->dir, sizeof s->dir);
  dg_snapshot_retention(&s->keep, &s->max_age_s);
  pthread_mutex_init(&s->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cond, &attr);
  pthread_condattr_destroy(&attr);
  return s;
}

static void *worker(void *arg) {
  dg_snapshots_t *s = arg;
  pthread_setname_np(pthread_self(), "dg-snapshot");
  /* The copy is CPU-bound: at the lowest priority it takes what the
   * manager, the persister and the HTTP threads leave, so writes do not
   * queue behind it on a busy machine (bench/snapshot.py). DuckDB runs the
   * COPY on this thread (threads = 1, see main.c). */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
    dg_log_warn("snapshot: cannot lower the thread's priority: %s", strerror(errno));
  char id[DG_SNAPSHOT_ID_MAX], err[512] = "";
  pthread_mutex_lock(&s->lock);
  memcpy(id, s->cur, sizeof id);
  pthread_mutex_unlock(&s->lock);
  duckdb_connection c = NULL;
  json_t *m = NULL;
  int rc = dg_db_connect(s->db, &c);
  if (rc != 0) snprintf(err, sizeof err, "no DuckDB connection");
  else rc = dg_snapshot_take(c, s->dir, dg_db_schema_version(s->db), id, &m, err, sizeof err);
  if (c) dg_db_disconnect(&c);
  if (rc == 0) {
    dg_log_info("snapshot %s at update %s: %" JSON_INTEGER_FORMAT " bytes in %" JSON_INTEGER_FORMAT " ms (%s)", id,
                json_string_value(json_object_get(m, "update_id")),
                json_integer_value(json_object_get(m, "bytes")), json_integer_value(json_object_get(m, "took_ms")),
                s->dir);
    dg_snapshot_prune(s->dir, s->keep, s->max_age_s);
  } else {
    dg_log_error("snapshot %s failed: %s", id, err);
  }
  json_decref(m);
  pthread_mutex_lock(&s->lock);
  s->running = 0;
  s->failed = rc != 0;
  snprintf(s->error, sizeof s->error, "%s", rc ? err : "");
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int dg_snapshots_start(dg_snapshots_t *s, char id[DG_SNAPSHOT_ID_MAX]) {
  pthread_mutex_lock(&s->lock);
  if (s->running) {
    memcpy(id, s->cur, DG_SNAPSHOT_ID_MAX);
    pthread_mutex_unlock(&s->lock);
    return DG_ECONFLICT;
  }
  if (s->has_thread) pthread_join(s->thread, NULL); /* finished: running is 0 */
  s->has_thread = 0;
  dg_fs_mkdir_p(s->dir);
  new_id(s->dir, s->cur);
  s->running = 1;
  s->failed = 0;
  s->error[0] = '\0';
  memcpy(id, s->cur, DG_SNAPSHOT_ID_MAX);
  if (pthread_create(&s->thread, NULL, worker, s) != 0) {
    s->running = 0;
    pthread_mutex_unlock(&s->lock);
    return DG_EUNAVAIL;
  }
  s->has_thread = 1;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

static json_t *status_obj(const char *id, const char *status, const char *error) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "status", json_string(status));
  if (error) json_object_set_new(o, "error", json_string(error));
  return o;
}

json_t *dg_snapshots_wait(dg_snapshots_t *s, const char *id, int wait_ms) {
  pthread_mutex_lock(&s->lock);
  struct timespec until;
  dg_deadline_after_ms(&until, wait_ms);
  while (s->running && strcmp(s->cur, id) == 0 && wait_ms > 0)
    if (pthread_cond_timedwait(&s->cond, &s->lock, &until) != 0) break;
  json_t *out = NULL;
  if (strcmp(s->cur, id) == 0 && s->running) out = status_obj(id, "running", NULL);
  else if (strcmp(s->cur, id) == 0 && s->failed) out = status_obj(id, "failed", s->error);
  pthread_mutex_unlock(&s->lock);
  if (out) return out;
  out = dg_snapshot_find(s->dir, id);
  if (out) json_object_set_new(out, "status", json_string("done"));
  return out;
}

json_t *dg_snapshots_list(dg_snapshots_t *s) {
  json_t *all = dg_snapshot_list(s->dir);
  size_t i;
  json_t *m;
  json_array_foreach(all, i, m) json_object_set_new(m, "status", json_string("done"));
  pthread_mutex_lock(&s->lock);
  if (s->running) json_array_append_new(all, status_obj(s->cur, "running", NULL));
  else if (s->failed && s->cur[0]) json_array_append_new(all, status_obj(s->cur, "failed", s->error));
  pthread_mutex_unlock(&s->lock);
  return all;
}

void dg_snapshots_destroy(dg_snapshots_t *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->lock);
  int join = s->has_thread;
  pthread_mutex_unlock(&s->lock);
  if (join) pthread_join(s->thread, NULL);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->lock);
  dg_free(s);
}
