/*
 * db.c -- DuckDB: open, migrate, per-thread connections, transactions.
 *
 * Connections: DuckDB connections are not to be shared between threads that
 * run statements at the same time, so every thread gets its own (a
 * pthread-specific slot, created lazily). The database keeps a list of them
 * so dg_db_close can close those of threads that are still alive.
 *
 * Migrations: an ordered array of SQL scripts (dgsql.c, with every other
 * statement on the schema dg). dg.schema_version holds the number applied;
 * each script runs in its own transaction together with the bump of that
 * number, so a crash mid-migration leaves the old version.
 */
#include "dg/db.h"
#include "dg/snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/log.h"

typedef struct conn_node_s {
  duckdb_connection conn;
  struct conn_node_s *next;
  dg_db_t *db;
} conn_node_t;

struct dg_db_s {
  duckdb_database handle;
  char *path;
  pthread_key_t key;      /* this thread's conn_node_t                 */
  pthread_mutex_t lock;   /* guards conns                              */
  conn_node_t *conns;     /* every per-thread connection still open     */
  int schema_version;
  int64_t rebuild_ms;     /* the snapshot rebuild at the open, or -1    */
};

/* ---- helpers ------------------------------------------------------------ */

int dg_db_exec(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  duckdb_result res;
  if (duckdb_query(c, sql, &res) == DuckDBError) {
    const char *e = duckdb_result_error(&res);
    if (err && errcap) snprintf(err, errcap, "%s", e ? e : "duckdb error");
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  duckdb_destroy_result(&res);
  return 0;
}

int dg_db_transaction(duckdb_connection c, dg_db_tx_fn fn, void *arg, char *err, size_t errcap) {
  int rc = dg_db_exec(c, "BEGIN TRANSACTION", err, errcap);
  if (rc != 0) return rc;
  rc = fn(c, arg, err, errcap);
  if (rc == 0) {
    rc = dg_db_exec(c, "COMMIT", err, errcap);
    if (rc == 0) return 0;
  }
  /* A failed COMMIT has already rolled back; ROLLBACK then errors harmlessly. */
  dg_db_exec(c, "ROLLBACK", NULL, 0);
  return rc;
}

static int query_int(duckdb_connection c, const char *sql, int64_t *out) {
  duckdb_result res;
  if (duckdb_query(c, sql, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  int rc = DG_ENOTFOUND;
  if (duckdb_row_count(&res) > 0 && !duckdb_value_is_null(&res, 0, 0)) {
    *out = duckdb_value_int64(&res, 0, 0);
    rc = 0;
  }
  duckdb_destroy_result(&res);
  return rc;
}

typedef struct {
  int version;
} migration_arg_t;

static int run_migration(duckdb_connection c, void *arg, char *err, size_t errcap) {
  int v = ((migration_arg_t *)arg)->version;
  int rc = dg_db_exec(c, dg_sql_migration(v), err, errcap);
  if (rc != 0) return rc;
  char sql[96];
  dg_sql_schema_version_set(sql, sizeof sql, NULL, v);
  return dg_db_exec(c, sql, err, errcap);
}

static int migrate(dg_db_t *db, duckdb_connection c, char *err, size_t errcap) {
  int rc = dg_db_exec(c, dg_sql_schema_init, err, errcap);
  if (rc != 0) return rc;
  int64_t have = 0;
  rc = query_int(c, dg_sql_schema_version_read, &have);
  if (rc == DG_ENOTFOUND) {
    rc = dg_db_exec(c, dg_sql_schema_version_insert0, err, errcap);
    have = 0;
  }
  if (rc != 0) return rc;
  int want = dg_sql_migration_count();
  if (have > want) {
    snprintf(err, errcap, "database schema version %lld is newer than this duckgrid (%d)",
             (long long)have, want);
    return DG_EINVAL;
  }
  for (int v = (int)have + 1; v <= want; v++) {
    migration_arg_t a = {v};
    char why[512] = "";
    rc = dg_db_transaction(c, run_migration, &a, why, sizeof why);
    if (rc != 0) {
      snprintf(err, errcap, "migration %d failed: %s", v, why);
      return rc;
    }
    dg_log_info("database migrated to schema version %d", v);
  }
  db->schema_version = want;
  return 0;
}

/* Creates missing parent directories (like mkdir -p) and checks we can write. */
static int check_path(const char *path, char *err, size_t errcap) {
  if (path[0] == '\0') {
    snprintf(err, errcap, "database path is empty");
    return DG_EINVAL;
  }
  char *dir = dg_strdup(path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(dir, 0755);
    *p = '/';
  }
  mkdir(dir, 0755);
  int rc = 0;
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errcap, "database directory '%s' does not exist and cannot be created", dir);
    rc = DG_EINVAL;
  } else if (access(dir, W_OK | X_OK) != 0) {
    snprintf(err, errcap, "database directory '%s' is not writable", dir);
    rc = DG_EINVAL;
  } else if (stat(path, &st) == 0 && (S_ISDIR(st.st_mode) || access(path, W_OK) != 0)) {
    snprintf(err, errcap, "database file '%s' is %s", path,
             S_ISDIR(st.st_mode) ? "a directory" : "not writable");
    rc = DG_EINVAL;
  }
  dg_free(dir);
  return rc;
}

static void thread_conn_free(void *p) {
  conn_node_t *n = p;
  dg_db_t *db = n->db;
  pthread_mutex_lock(&db->lock);
  for (conn_node_t **pp = &db->conns; *pp; pp = &(*pp)->next) {
    if (*pp == n) {
      *pp = n->next;
      break;
    }
  }
  pthread_mutex_unlock(&db->lock);
  duckdb_disconnect(&n->conn);
  dg_free(n);
}

/* No file or network access from SQL (a view is user-written SQL), except
 * the snapshot directory (snapshot.c ATTACHes its copies there; views
 * cannot name files: views_check.c refuses table functions). Both
 * settings are locked once external access is off. */
static int lock_down(duckdb_connection c, const char *path, char *err, size_t errcap) {
  char dir[4096];
  dg_snapshot_dir(path, dir, sizeof dir);
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_puts(&sql, "SET allowed_directories = ['");
  for (const char *p = dir; *p; p++) {
    if (*p == '\'') dg_buf_puts(&sql, "'");
    dg_buf_printf(&sql, "%c", *p);
  }
  dg_buf_puts(&sql, "/']");
  int rc = dg_db_exec(c, sql.data, err, errcap);
  dg_buf_dispose(&sql);
  if (rc == 0) rc = dg_db_exec(c, "SET enable_external_access = false", err, errcap);
  return rc;
}

int dg_db_open(const char *path, int threads, dg_db_t **out, char *err, size_t errcap) {
  int rc = check_path(path, err, errcap);
  if (rc != 0) return rc;
  duckdb_config config;
  if (duckdb_create_config(&config) == DuckDBError) {
    snprintf(err, errcap, "duckdb: cannot create a configuration");
    return DG_EIO;
  }
  /* duckgrid reads and writes only its own file: no extension downloads,
   * no file or network access from SQL (a view is user-written SQL). */
  duckdb_set_config(config, "autoinstall_known_extensions", "false");
  duckdb_set_config(config, "autoload_known_extensions", "false");
  /* enable_external_access goes off right after the open (below), once the
   * snapshot directory is allowed: snapshots ATTACH a file there. */
  /* Automatic checkpoints run inside a COMMIT and stalled writes for up to
   * a second at the default 16 MB of WAL; the manager checkpoints when idle
   * instead, and this only bounds the WAL under sustained load. */
  duckdb_set_config(config, "checkpoint_threshold", "256MB");
  if (threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    duckdb_set_config(config, "threads", t);
  }
  dg_db_t *db = dg_calloc(1, sizeof *db);
  char *open_err = NULL;
  if (duckdb_open_ext(path, &db->handle, config, &open_err) == DuckDBError) {
    snprintf(err, errcap, "cannot open database '%s': %s", path, open_err ? open_err : "?");
    duckdb_free(open_err);
    duckdb_destroy_config(&config);
    dg_free(db);
    return DG_EIO;
  }
  duckdb_destroy_config(&config);
  db->path = dg_strdup(path);
  pthread_mutex_init(&db->lock, NULL);
  pthread_key_create(&db->key, thread_conn_free);
  duckdb_connection c;
  if (duckdb_connect(db->handle, &c) == DuckDBError) {
    snprintf(err, errcap, "duckdb: cannot connect to '%s'", path);
    dg_db_close(db);
    return DG_EIO;
  }
  rc = lock_down(c, path, err, errcap);
  if (rc == 0) {
    /* A snapshot file (format 2) gets its keys and indexes back before
     * anything reads it, and before migrating: its statements are those of
     * its own schema version. */
    int64_t t0 = dg_mono_us();
    int rebuilt = 0;
    char why[1024] = "";
    rc = dg_snapshot_rebuild(c, &rebuilt, why, sizeof why);
    if (rc != 0) snprintf(err, errcap, "cannot rebuild the keys of snapshot file '%s': %s", path, why);
    db->rebuild_ms = rebuilt ? (dg_mono_us() - t0) / 1000 : -1;
  }
  if (rc == 0) rc = migrate(db, c, err, errcap);
  duckdb_disconnect(&c);
  if (rc != 0) {
    dg_db_close(db);
    return rc;
  }
  *out = db;
  return 0;
}

void dg_db_close(dg_db_t *db) {
  if (db == NULL) return;
  /* This thread's slot would otherwise be freed again at its exit. */
  pthread_setspecific(db->key, NULL);
  pthread_mutex_lock(&db->lock);
  conn_node_t *n = db->conns;
  db->conns = NULL;
  pthread_mutex_unlock(&db->lock);
  while (n) {
    conn_node_t *next = n->next;
    duckdb_disconnect(&n->conn);
    dg_free(n);
    n = next;
  }
  pthread_key_delete(db->key);
  pthread_mutex_destroy(&db->lock);
  duckdb_close(&db->handle);
  dg_free(db->path);
  dg_free(db);
}

duckdb_connection dg_db_conn(dg_db_t *db) {
  conn_node_t *n = pthread_getspecific(db->key);
  if (n) return n->conn;
  n = dg_calloc(1, sizeof *n);
  n->db = db;
  if (duckdb_connect(db->handle, &n->conn) == DuckDBError) {
    dg_free(n);
    return NULL;
  }
  pthread_mutex_lock(&db->lock);
  n->next = db->conns;
  db->conns = n;
  pthread_mutex_unlock(&db->lock);
  pthread_setspecific(db->key, n);
  return n->conn;
}

int dg_db_connect(dg_db_t *db, duckdb_connection *out) {
  return duckdb_connect(db->handle, out) == DuckDBError ? DG_EIO : 0;
}

void dg_db_disconnect(duckdb_connection *c) { duckdb_disconnect(c); }

duckdb_state dg_db_query_one(duckdb_connection c, const char *sql, duckdb_result *res, char *err, size_t errcap) {
  memset(res, 0, sizeof *res);
  duckdb_prepared_statement st;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) {
    const char *e = duckdb_prepare_error(st);
    snprintf(err, errcap, "%s", e ? e : "cannot prepare the statement");
    duckdb_destroy_prepare(&st);
    return DuckDBError;
  }
  duckdb_state rc = duckdb_execute_prepared(st, res);
  if (rc == DuckDBError) {
    const char *e = duckdb_result_error(res);
    snprintf(err, errcap, "%s", e ? e : "the statement failed");
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_db_ping(dg_db_t *db) {
  duckdb_connection c = dg_db_conn(db);
  if (c == NULL) return DG_EUNAVAIL;
  int64_t one = 0;
  return query_int(c, "SELECT 1", &one) == 0 && one == 1 ? 0 : DG_EUNAVAIL;
}

int dg_db_schema_version(dg_db_t *db) { return db->schema_version; }

int64_t dg_db_rebuild_ms(const dg_db_t *db) { return db->rebuild_ms; }

const char *dg_db_path(const dg_db_t *db) { return db->path; }
