/*
 * bench_duckdb.c -- the floor under the write path: what DuckDB itself
 * takes for one batch transaction shaped like the manager's, with no HTTP,
 * no Redis and no engine (scenario `duckdb` of bench/run.py).
 *
 * A fresh file with the bench table (101,010 rows: id BIGINT PRIMARY KEY,
 * parent_id, v DECIMAL(18,2)), dg-like audit and outcome tables, then for
 * each batch size (requests; ~13 changed cells each, as in the bench mix):
 *
 *   BEGIN
 *   append the changed rows to a temp staging table (data chunk)
 *   UPDATE bench AS x SET v = s.v FROM stage AS s WHERE x.id = s.id
 *   DELETE FROM stage
 *   append one audit row per request and one integer row per cell
 *   append one outcome (~1 KB of JSON) per request
 *   UPDATE applied SET last_id = $1
 *   COMMIT
 *
 * and the same with a CHECKPOINT after the run (what folding that many
 * batches into the file costs). Every step is timed; figures are means over
 * the batches. The manager does exactly these statements (persist.c), so
 * (batch time) bounds a synchronous write's latency from below: a write
 * arriving during a batch waits for it and then for its own.
 *
 * Usage: bench_duckdb [quick]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <duckdb.h>

#define ROWS 101010

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static duckdb_connection conn;

static void run(const char *sql) {
  duckdb_result res;
  if (duckdb_query(conn, sql, &res) == DuckDBError) {
    fprintf(stderr, "bench_duckdb: %s: %s\n", sql, duckdb_result_error(&res));
    exit(1);
  }
  duckdb_destroy_result(&res);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Appends n rows of int64 columns produced by fill(row, col) through one
 * data chunk at a time. */
typedef int64_t (*fill_fn)(idx_t row, idx_t col, void *arg);

static void append_ints(const char *schema, const char *table, idx_t n, fill_fn fill, void *arg) {
  duckdb_appender app;
  if (duckdb_appender_create_ext(conn, NULL, schema, table, &app) == DuckDBError) {
    fprintf(stderr, "bench_duckdb: appender %s.%s\n", schema, table);
    exit(1);
  }
  idx_t ncols = duckdb_appender_column_count(app);
  duckdb_logical_type types[8];
  for (idx_t c = 0; c < ncols; c++) types[c] = duckdb_appender_column_type(app, c);
  duckdb_data_chunk chunk = duckdb_create_data_chunk(types, ncols);
  idx_t cap = duckdb_vector_size(), done = 0;
  while (done < n) {
    idx_t k = n - done < cap ? n - done : cap;
    for (idx_t c = 0; c < ncols; c++) {
      int64_t *d = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, c));
      for (idx_t r = 0; r < k; r++) d[r] = fill(done + r, c, arg);
    }
    duckdb_data_chunk_set_size(chunk, k);
    duckdb_append_data_chunk(app, chunk);
    duckdb_data_chunk_reset(chunk);
    done += k;
  }
  duckdb_appender_close(app);
  duckdb_destroy_data_chunk(&chunk);
  for (idx_t c = 0; c < ncols; c++) duckdb_destroy_logical_type(&types[c]);
  duckdb_appender_destroy(&app);
}

static int64_t fill_stage(idx_t row, idx_t col, void *arg) {
  (void)arg;
  (void)row;
  static int64_t id;
  if (col == 0) id = 1 + (int64_t)(next_rand() % ROWS);
  return col == 0 ? id : col == 1 ? id / 100 : (int64_t)(next_rand() % 10000000);
}

static int64_t fill_audit(idx_t row, idx_t col, void *arg) {
  int64_t base = *(int64_t *)arg;
  switch (col) {
    case 0: return base + (int64_t)row / 13; /* ms */
    case 1: return 0;                        /* seq */
    case 2: return (int64_t)(next_rand() % ROWS);
    case 3: return 1;                        /* column id */
    default: return (int64_t)(next_rand() % 10000000);
  }
}

enum { S_BEGIN, S_STAGE, S_UPDATE, S_DELETE, S_AUDIT, S_OUTCOMES, S_APPLIED, S_COMMIT, NSTEPS };
static const char *step_names[NSTEPS] = {"begin", "stage", "update", "delete", "audit", "outcomes", "applied",
                                         "commit"};

static void batch(int requests, double *acc, int64_t *ms) {
  idx_t cells = (idx_t)requests * 13;
  double t = now_ms(), u;
#define STEP(i)        \
  u = now_ms();        \
  acc[i] += u - t;     \
  t = u
  run("BEGIN TRANSACTION");
  STEP(S_BEGIN);
  append_ints("main", "stage", cells, fill_stage, NULL);
  STEP(S_STAGE);
  /* A batch's rows are distinct: deduplicate what the random ids repeat. */
  run("UPDATE bench AS x SET v = s.v FROM (SELECT DISTINCT ON (id) * FROM stage) AS s WHERE x.id = s.id");
  STEP(S_UPDATE);
  run("DELETE FROM stage");
  STEP(S_DELETE);
  duckdb_appender ra;
  duckdb_appender_create(conn, "dg", "audit_requests", &ra);
  char rid[48], sid[48];
  for (int r = 0; r < requests; r++) {
    snprintf(rid, sizeof rid, "r-%016llx", (unsigned long long)next_rand());
    duckdb_append_int64(ra, *ms + r);
    duckdb_append_int64(ra, 0);
    duckdb_append_varchar(ra, rid);
    duckdb_append_varchar(ra, "bench-user");
    duckdb_timestamp ts = {*ms * 1000};
    duckdb_append_timestamp(ra, ts);
    duckdb_appender_end_row(ra);
  }
  duckdb_appender_close(ra);
  duckdb_appender_destroy(&ra);
  append_ints("dg", "cell_log", cells, fill_audit, ms);
  STEP(S_AUDIT);
  duckdb_appender oa;
  duckdb_appender_create(conn, "dg", "outcomes", &oa);
  static char res[1100];
  for (int r = 0; r < requests; r++) {
    snprintf(sid, sizeof sid, "%lld-0", (long long)(*ms + r));
    snprintf(rid, sizeof rid, "r-%016llx", (unsigned long long)next_rand());
    int n = snprintf(res, sizeof res, "{\"update_id\":\"%s\",\"request_id\":\"%s\",\"changes\":[", sid, rid);
    while (n < 1000) n += snprintf(res + n, sizeof res - (size_t)n, "{\"row_id\":%llu,\"old\":%llu.%02d},",
                                   (unsigned long long)(next_rand() % ROWS),
                                   (unsigned long long)(next_rand() % 100000), (int)(next_rand() % 100));
    duckdb_append_varchar(oa, sid);
    duckdb_append_varchar(oa, rid);
    duckdb_append_varchar_length(oa, res, (idx_t)n);
    duckdb_append_int64(oa, *ms + r);
    duckdb_appender_end_row(oa);
  }
  duckdb_appender_close(oa);
  duckdb_appender_destroy(&oa);
  STEP(S_OUTCOMES);
  duckdb_prepared_statement st;
  duckdb_prepare(conn, "UPDATE dg.applied SET last_id = $1", &st);
  duckdb_bind_varchar(st, 1, sid);
  duckdb_result res2;
  duckdb_execute_prepared(st, &res2);
  duckdb_destroy_result(&res2);
  duckdb_destroy_prepare(&st);
  STEP(S_APPLIED);
  run("COMMIT");
  STEP(S_COMMIT);
#undef STEP
  *ms += requests;
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
  char path[96];
  snprintf(path, sizeof path, "%s/bench_duckdb-%d.duckdb", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           (int)getpid());
  duckdb_database db;
  duckdb_config cfg;
  duckdb_create_config(&cfg);
  duckdb_set_config(cfg, "checkpoint_threshold", "256MB"); /* as the server (db.c) */
  char *err = NULL;
  if (duckdb_open_ext(path, &db, cfg, &err) == DuckDBError || duckdb_connect(db, &conn) == DuckDBError) {
    fprintf(stderr, "bench_duckdb: cannot open %s: %s\n", path, err ? err : "?");
    return 1;
  }
  duckdb_destroy_config(&cfg);
  run("CREATE SCHEMA dg");
  run("CREATE TABLE bench (id BIGINT PRIMARY KEY, parent_id BIGINT, v DECIMAL(18,2))");
  run("INSERT INTO bench SELECT i, i // 100, i * 1.5 FROM range(1, 101011) r(i)");
  run("CREATE TABLE dg.audit_requests (ms BIGINT NOT NULL, seq BIGINT NOT NULL, request_id VARCHAR NOT NULL, "
      "\"user\" VARCHAR, ts TIMESTAMP NOT NULL)");
  run("CREATE TABLE dg.cell_log (ms BIGINT NOT NULL, seq BIGINT NOT NULL, row_id BIGINT NOT NULL, "
      "col BIGINT NOT NULL, old_num BIGINT, new_num BIGINT)"); /* all int64: append_ints */
  run("CREATE TABLE dg.outcomes (stream_id VARCHAR NOT NULL, request_id VARCHAR NOT NULL, res VARCHAR NOT NULL, "
      "ms BIGINT)");
  run("CREATE INDEX outcomes_request ON dg.outcomes(request_id)");
  run("CREATE TABLE dg.applied (last_id VARCHAR NOT NULL)");
  run("INSERT INTO dg.applied VALUES ('0-0')");
  run("CHECKPOINT");
  run("CREATE TEMP TABLE stage (id BIGINT, parent_id BIGINT, v DECIMAL(18,2))");
  /* The manager sets this per table (persist.c): probe under ~1% of rows. */
  char th[96];
  snprintf(th, sizeof th, "SET dynamic_or_filter_threshold = %s", getenv("DG_OR_THRESHOLD") ? getenv("DG_OR_THRESHOLD") : "800");
  run(th);

  const int sizes[] = {1, 36, 1024, 20000}; /* 20,000: the persister's largest transaction */
  int64_t ms = 1764000000000;
  printf("# one batch transaction as the manager writes it, on a %d-row table (means, ms)\n", ROWS);
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    int requests = sizes[k];
    int batches = quick ? 10 : (requests >= 10000 ? 10 : requests >= 1000 ? 30 : 200);
    double acc[NSTEPS] = {0};
    for (int b = 0; b < 3; b++) batch(requests, (double[NSTEPS]){0}, &ms); /* warm-up */
    double t0 = now_ms();
    for (int b = 0; b < batches; b++) batch(requests, acc, &ms);
    double total = (now_ms() - t0) / batches;
    double t1 = now_ms();
    run("CHECKPOINT");
    double ck = now_ms() - t1;
    printf("batch requests=%d cells=%d total=%.2f", requests, requests * 13, total);
    for (int i = 0; i < NSTEPS; i++) printf(" %s=%.2f", step_names[i], acc[i] / batches);
    printf(" per_request_us=%.0f checkpoint_after_%d_batches=%.0f\n", 1000.0 * total / requests, batches, ck);
  }
  duckdb_disconnect(&conn);
  duckdb_close(&db);
  unlink(path);
  char wal[128];
  snprintf(wal, sizeof wal, "%s.wal", path);
  unlink(wal);
  return 0;
}
