/*
 * archive.c -- every request_duck entry, in order, in sealed segment files.
 *
 * DESIGN
 *
 * With DUCKGRID_ARCHIVE_DIR set, a thread of each duckgrid process reads
 * request_duck with XRANGE from the last archived id (no consumer group:
 * it takes nothing from the manager) and, every DUCKGRID_ARCHIVE_INTERVAL_MS
 * (default 10 s) or once ARCHIVE_SEGMENT_MAX entries wait, writes them as
 * one segment:
 *
 *   seg-<first>_<last>.duckdb   a DuckDB file of its own (a separate DuckDB
 *                               instance, not the server's database): table
 *                               entries(ms, seq, req, t, mac), the fields
 *                               replay needs, as stored (BLOBs), MAC and all
 *   seg-<first>_<last>.json     manifest: first_id, last_id, prev_id (the
 *                               previous segment's last id; "0-0" when the
 *                               archive holds the stream from its start; null
 *                               when it began after a trim), count, bytes,
 *                               sha256
 *
 * written to a temporary name, synced, hashed, renamed; the manifest last.
 * A segment is sealed once its manifest is in place: only then does the
 * archived mark move, and the manager trims request_duck only up to that
 * mark (dg_archive_clamp, called by its trimming), so no entry leaves Redis
 * before it is in a sealed segment. prev_id chains the segments: restore
 * refuses a chain with a hole or a segment whose checksum fails.
 *
 * /metrics: duckgrid_archive_lag_seconds (stream time from the newest
 * archived entry to the newest entry), duckgrid_archive_entries_total,
 * duckgrid_archive_segments_total, duckgrid_archive_errors_total.
 */
#include "dg/archive.h"

#include <dirent.h>
#include <duckdb.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dg/common.h"
#include "dg/log.h"
#include "dg/snapshot.h"

#define ARCHIVE_SEGMENT_MAX 100000
#define ARCHIVE_PAGE 10000

const char *dg_archive_dir(void) {
  const char *d = getenv("DUCKGRID_ARCHIVE_DIR");
  return d && *d ? d : NULL;
}

struct dg_archive_s {
  const dg_streams_t *streams;     /* request_duck (its name), borrowed */
  char dir[PATH_MAX];
  dg_redis_t *redis;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stop;                        /* lock */
  dg_redis_xid_t last;             /* lock: newest archived (sealed) entry */
  int have_last;                   /* lock */
  int64_t interval_ms;
  atomic_llong entries, segments, errors;
  atomic_llong lag_ms;
};

/* ---- segments on disk ------------------------------------------------------------ */

static int by_first(const void *a, const void *b) {
  const dg_segment_t *x = a, *y = b;
  return dg_redis_xid_cmp(x->first, y->first);
}

static int xid_of(json_t *o, const char *k, dg_redis_xid_t *out) {
  const char *s = json_string_value(json_object_get(o, k));
  return s && dg_redis_xid_parse(s, strlen(s), out) == 0 ? 0 : -1;
}

int dg_archive_segments(const char *dir, dg_segment_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= 9 || strncmp(e->d_name, "seg-", 4) != 0 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    json_t *m = json_load_file(p, 0, NULL);
    dg_segment_t s;
    memset(&s, 0, sizeof s);
    const char *file = json_string_value(json_object_get(m, "file"));
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    if (m == NULL || xid_of(m, "first_id", &s.first) || xid_of(m, "last_id", &s.last) || file == NULL ||
        strchr(file, '/') || strlen(file) >= sizeof s.file || sha == NULL || strlen(sha) != 64) {
      json_decref(m);
      continue;
    }
    s.has_prev = xid_of(m, "prev_id", &s.prev) == 0;
    s.count = json_integer_value(json_object_get(m, "count"));
    snprintf(s.file, sizeof s.file, "%s", file);
    snprintf(s.sha256, sizeof s.sha256, "%s", sha);
    json_decref(m);
    if (*n == cap) {
      cap = cap ? cap * 2 : 64;
      *out = dg_realloc(*out, cap * sizeof **out);
    }
    (*out)[(*n)++] = s;
  }
  closedir(d);
  if (*n) qsort(*out, *n, sizeof **out, by_first);
  return 0;
}

/* A segment file as a DuckDB instance of its own: one thread, no file
 * access from SQL; read-only for restore. */
static int open_segment(const char *path, int readonly, duckdb_database *db, char *err, size_t errcap) {
  duckdb_config cfg;
  duckdb_create_config(&cfg);
  if (readonly) duckdb_set_config(cfg, "access_mode", "READ_ONLY");
  duckdb_set_config(cfg, "threads", "1");
  duckdb_set_config(cfg, "enable_external_access", "false");
  char *oerr = NULL;
  int rc = 0;
  if (duckdb_open_ext(path, db, cfg, &oerr) == DuckDBError) {
    snprintf(err, errcap, "%s", oerr ? oerr : "?");
    duckdb_free(oerr);
    rc = DG_EIO;
  }
  duckdb_destroy_config(&cfg);
  return rc;
}

/* A reply element for a stored field, so that archived entries go through
 * the same MAC check as live ones (dg_entry_check_req reads the fields of a
 * dg_redis_xentry_t). */
static void fake_str(redisReply *r, const char *s, size_t len) {
  memset(r, 0, sizeof *r);
  r->type = REDIS_REPLY_STRING;
  r->str = (char *)s;
  r->len = len;
}

/* Whether a result's (ms, seq) columns ascend. */
static int in_order(duckdb_result res) {
  dg_redis_xid_t prev = {0, 0};
  int first = 1, ok = 1;
  idx_t nchunks = duckdb_result_chunk_count(res);
  for (idx_t ci = 0; ci < nchunks && ok; ci++) {
    duckdb_data_chunk ch = duckdb_result_get_chunk(res, ci);
    if (ch == NULL) break;
    idx_t m = duckdb_data_chunk_get_size(ch);
    const uint64_t *ms = duckdb_vector_get_data(duckdb_data_chunk_get_vector(ch, 0));
    const uint64_t *seq = duckdb_vector_get_data(duckdb_data_chunk_get_vector(ch, 1));
    for (idx_t i = 0; i < m && ok; i++) {
      dg_redis_xid_t id = {ms[i], seq[i]};
      ok = first || dg_redis_xid_cmp(prev, id) < 0;
      prev = id;
      first = 0;
    }
    duckdb_destroy_data_chunk(&ch);
  }
  return ok;
}

int dg_archive_read(const char *dir, const dg_segment_t *s, dg_archive_entry_fn fn, void *arg, char *err,
                    size_t errcap) {
  char path[PATH_MAX + 200], hex[65];
  snprintf(path, sizeof path, "%s/%s", dir, s->file);
  uint64_t bytes = 0;
  if (dg_sha256_file(path, hex, &bytes) != 0) {
    snprintf(err, errcap, "archive segment %s is missing", s->file);
    return DG_EIO;
  }
  if (strcmp(hex, s->sha256) != 0) {
    snprintf(err, errcap, "archive segment %s is corrupt: its SHA-256 is %s, the manifest says %s", s->file, hex,
             s->sha256);
    return DG_EIO;
  }
  duckdb_database db;
  char oerr[256];
  if (open_segment(path, 1, &db, oerr, sizeof oerr) != 0) {
    snprintf(err, errcap, "archive segment %s does not open: %s", s->file, oerr);
    return DG_EIO;
  }
  duckdb_connection c;
  duckdb_connect(db, &c);
  duckdb_result res;
  int rc = 0;
  /* In the order the archiver appended them (one appender, stream order;
   * one thread and DuckDB's insertion order keep it), checked before any
   * is passed on; sorted only if ever they are not (sorting every segment
   * cost more than reading it). */
  if (duckdb_query(c, "SELECT ms, seq, req, t, mac FROM entries", &res) == DuckDBError) {
    snprintf(err, errcap, "archive segment %s: %s", s->file, duckdb_result_error(&res));
    rc = DG_EIO;
  } else if (!in_order(res)) {
    duckdb_destroy_result(&res);
    if (duckdb_query(c, "SELECT ms, seq, req, t, mac FROM entries ORDER BY ms, seq", &res) == DuckDBError) {
      snprintf(err, errcap, "archive segment %s: %s", s->file, duckdb_result_error(&res));
      rc = DG_EIO;
    }
  }
  idx_t n = rc ? 0 : duckdb_row_count(&res);
  if (rc == 0 && (long long)n != s->count) {
    snprintf(err, errcap, "archive segment %s holds %llu entries, its manifest says %lld", s->file,
             (unsigned long long)n, s->count);
    rc = DG_EIO;
  }
  /* By chunks, the blobs read in place (the value-at-a-time API copied
   * every blob twice: ~17 us an entry of the restore's reader thread). */
  static const char *names[] = {"req", "t", "mac"};
  idx_t nchunks = rc ? 0 : duckdb_result_chunk_count(res);
  for (idx_t ci = 0; ci < nchunks && rc == 0; ci++) {
    duckdb_data_chunk ch = duckdb_result_get_chunk(res, ci);
    if (ch == NULL) break;
    idx_t m = duckdb_data_chunk_get_size(ch);
    const uint64_t *ms = duckdb_vector_get_data(duckdb_data_chunk_get_vector(ch, 0));
    const uint64_t *seq = duckdb_vector_get_data(duckdb_data_chunk_get_vector(ch, 1));
    duckdb_string_t *blob[3];
    uint64_t *valid[3];
    for (int f = 0; f < 3; f++) {
      duckdb_vector v = duckdb_data_chunk_get_vector(ch, (idx_t)f + 2);
      blob[f] = duckdb_vector_get_data(v);
      valid[f] = duckdb_vector_get_validity(v);
    }
    for (idx_t i = 0; i < m && rc == 0; i++) {
      dg_redis_xid_t id = {ms[i], seq[i]};
      char ids[DG_REDIS_XID_BUFSZ];
      dg_redis_xid_format(id, ids, sizeof ids);
      redisReply el[6], *els[6], fv;
      size_t k = 0;
      for (int f = 0; f < 3; f++) {
        if (valid[f] && !duckdb_validity_row_is_valid(valid[f], i)) continue;
        fake_str(&el[2 * k], names[f], strlen(names[f]));
        fake_str(&el[2 * k + 1], duckdb_string_t_data(&blob[f][i]), duckdb_string_t_length(blob[f][i]));
        els[2 * k] = &el[2 * k];
        els[2 * k + 1] = &el[2 * k + 1];
        k++;
      }
      memset(&fv, 0, sizeof fv);
      fv.type = REDIS_REPLY_ARRAY;
      fv.elements = 2 * k;
      fv.element = els;
      dg_redis_xentry_t x;
      memset(&x, 0, sizeof x);
      x.id = (dg_redis_str_t){ids, strlen(ids)};
      x.nfields = k;
      x._fv = &fv;
      rc = fn(arg, &x);
    }
    duckdb_destroy_data_chunk(&ch);
  }
  duckdb_destroy_result(&res);
  duckdb_disconnect(&c);
  duckdb_close(&db);
  return rc;
}

/* ---- writing ------------------------------------------------------------------------ */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append_field(duckdb_appender app, const dg_redis_xentry_t *x, const char *name) {
  dg_redis_str_t v;
  if (dg_redis_xentry_get(x, name, strlen(name), &v) == 0) duckdb_append_blob(app, v.ptr, v.len);
  else duckdb_append_null(app);
}

/* Writes the entries of `reps` (XRANGE replies, in order) as one sealed
 * segment. prev: the entry before them (NULL: unknown). */
static int write_segment(dg_archive_t *a, redisReply **reps, size_t nreps, const dg_redis_xid_t *prev,
                         dg_redis_xid_t *first, dg_redis_xid_t *last, long long *count, char *err, size_t errcap) {
  /* Ids first, for the name. */
  int64_t t0 = dg_mono_us();
  *count = 0;
  for (size_t r = 0; r < nreps; r++) {
    dg_redis_xiter_t it;
    dg_redis_xentry_t e;
    if (dg_redis_xiter_init_xrange(&it, reps[r]) != 0) continue;
    while (dg_redis_xiter_next(&it, &e)) {
      dg_redis_xid_t x;
      if (dg_redis_xid_parse(e.id.ptr, e.id.len, &x) != 0) continue;
      if (*count == 0) *first = x;
      *last = x;
      (*count)++;
    }
  }
  if (*count == 0) return 0;
  char fid[DG_REDIS_XID_BUFSZ], lid[DG_REDIS_XID_BUFSZ], pid[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(*first, fid, sizeof fid);
  dg_redis_xid_format(*last, lid, sizeof lid);
  char base[128], path[PATH_MAX + 200], tmp[PATH_MAX + 210], wal[PATH_MAX + 220], mpath[PATH_MAX + 200],
      mtmp[PATH_MAX + 210];
  snprintf(base, sizeof base, "seg-%s_%s", fid, lid);
  snprintf(path, sizeof path, "%s/%s.duckdb", a->dir, base);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  snprintf(wal, sizeof wal, "%s.wal", tmp);
  snprintf(mpath, sizeof mpath, "%s/%s.json", a->dir, base);
  snprintf(mtmp, sizeof mtmp, "%s.tmp", mpath);
  unlink(tmp);
  unlink(wal);
  duckdb_database db;
  char oerr[256];
  if (open_segment(tmp, 0, &db, oerr, sizeof oerr) != 0) {
    snprintf(err, errcap, "cannot create %.300s: %.150s", tmp, oerr);
    return DG_EIO;
  }
  duckdb_connection c;
  duckdb_connect(db, &c);
  int rc = 0;
  duckdb_result res;
  if (duckdb_query(c, "CREATE TABLE entries(ms UBIGINT NOT NULL, seq UBIGINT NOT NULL, req BLOB, t BLOB, mac BLOB)",
                   &res) == DuckDBError)
    rc = DG_EIO;
  duckdb_destroy_result(&res);
  duckdb_appender app = NULL;
  if (rc == 0 && duckdb_appender_create(c, NULL, "entries", &app) == DuckDBError) rc = DG_EIO;
  for (size_t r = 0; r < nreps && rc == 0; r++) {
    dg_redis_xiter_t it;
    dg_redis_xentry_t e;
    if (dg_redis_xiter_init_xrange(&it, reps[r]) != 0) continue;
    while (rc == 0 && dg_redis_xiter_next(&it, &e)) {
      dg_redis_xid_t x;
      if (dg_redis_xid_parse(e.id.ptr, e.id.len, &x) != 0) continue;
      duckdb_append_uint64(app, x.ms);
      duckdb_append_uint64(app, x.seq);
      append_field(app, &e, "req");
      append_field(app, &e, "t");
      append_field(app, &e, "mac");
      if (duckdb_appender_end_row(app) == DuckDBError) rc = DG_EIO;
    }
  }
  if (app && duckdb_appender_close(app) == DuckDBError) rc = DG_EIO;
  if (rc) snprintf(err, errcap, "writing %.300s: %.150s", tmp, app ? duckdb_appender_error(app) : "no appender");
  duckdb_appender_destroy(&app);
  duckdb_disconnect(&c);
  duckdb_close(&db); /* checkpoints */
  char hex[65];
  uint64_t bytes = 0;
  struct stat st;
  if (rc == 0 && stat(wal, &st) == 0) {
    snprintf(err, errcap, "%.300s left a WAL", tmp);
    rc = DG_EIO;
  }
  if (rc == 0 && (dg_fs_sync(tmp, 0) != 0 || dg_sha256_file(tmp, hex, &bytes) != 0 || rename(tmp, path) != 0)) {
    snprintf(err, errcap, "sealing %.300s: %s", path, strerror(errno));
    rc = DG_EIO;
  }
  if (rc) {
    unlink(tmp);
    unlink(wal);
    return rc;
  }
  json_t *m = json_object();
  const char *slash = strrchr(path, '/');
  json_object_set_new(m, "file", json_string(slash ? slash + 1 : path));
  json_object_set_new(m, "first_id", json_string(fid));
  json_object_set_new(m, "last_id", json_string(lid));
  if (prev) {
    dg_redis_xid_format(*prev, pid, sizeof pid);
    json_object_set_new(m, "prev_id", json_string(pid));
  } else {
    json_object_set_new(m, "prev_id", json_null());
  }
  json_object_set_new(m, "count", json_integer(*count));
  json_object_set_new(m, "bytes", json_integer((json_int_t)bytes));
  json_object_set_new(m, "sha256", json_string(hex));
  json_object_set_new(m, "created_ms", json_integer(wall_ms()));
  json_object_set_new(m, "write_ms", json_integer((dg_mono_us() - t0) / 1000));
  if (json_dump_file(m, mtmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || dg_fs_sync(mtmp, 0) != 0 ||
      rename(mtmp, mpath) != 0) {
    snprintf(err, errcap, "cannot write %.300s: %s", mpath, strerror(errno));
    unlink(mtmp);
    unlink(path);
    rc = DG_EIO;
  }
  json_decref(m);
  if (rc == 0) dg_fs_sync(a->dir, 1);
  return rc;
}

/* Where the archive starts when it is empty: the stream's start (prev
 * 0-0) if Redis never removed an entry from it, else unknown (NULL). */
static int stream_whole(dg_archive_t *a) {
  const char *argv[] = {"XINFO", "STREAM", a->streams->req};
  redisReply *rep = NULL;
  if (dg_redis_command(a->redis, 3, argv, NULL, &rep) != 0) return -1;
  long long length = -1, added = -2;
  int whole = rep->type == REDIS_REPLY_ERROR; /* no stream yet: whole */
  for (size_t k = 0; rep->type == REDIS_REPLY_ARRAY && k + 1 < rep->elements; k += 2) {
    redisReply *key = rep->element[k], *val = rep->element[k + 1];
    if (key->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_INTEGER) continue;
    if (strcmp(key->str, "length") == 0) length = val->integer;
    if (strcmp(key->str, "entries-added") == 0) added = val->integer;
  }
  freeReplyObject(rep);
  return whole || added == length;
}

static void update_lag(dg_archive_t *a, dg_redis_xid_t last, int have_last) {
  const char *argv[] = {"XREVRANGE", a->streams->req, "+", "-", "COUNT", "1"};
  redisReply *rep = NULL;
  if (dg_redis_command(a->redis, 6, argv, NULL, &rep) != 0) return;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  dg_redis_xid_t top;
  long long lag = 0;
  if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
      dg_redis_xid_parse(e.id.ptr, e.id.len, &top) == 0 && (!have_last || dg_redis_xid_cmp(top, last) > 0))
    lag = (long long)top.ms - (have_last ? (long long)last.ms : (long long)top.ms);
  freeReplyObject(rep);
  atomic_store(&a->lag_ms, lag < 0 ? 0 : lag);
}

/* One round: reads what is new; seals it as a segment when it is due. */
static void round_once(dg_archive_t *a) {
  pthread_mutex_lock(&a->lock);
  dg_redis_xid_t last = a->last;
  int have_last = a->have_last;
  pthread_mutex_unlock(&a->lock);
  update_lag(a, last, have_last);
  dg_redis_xid_t prev = last;
  int prev_known = have_last;
  if (!have_last) {
    int whole = stream_whole(a);
    if (whole < 0) return;
    prev = (dg_redis_xid_t){0, 0};
    prev_known = whole;
  }
  char cursor[DG_REDIS_XID_BUFSZ + 1];
  if (have_last) {
    char l[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(last, l, sizeof l);
    snprintf(cursor, sizeof cursor, "(%s", l);
  } else {
    snprintf(cursor, sizeof cursor, "-");
  }
  /* Due when the oldest entry not archived is DUCKGRID_ARCHIVE_INTERVAL_MS
   * old (stream time): a cheap probe of one entry each round. */
  int64_t now = wall_ms();
  {
    const char *argv[] = {"XRANGE", a->streams->req, cursor, "+", "COUNT", "1"};
    redisReply *rep = NULL;
    if (dg_redis_command(a->redis, 6, argv, NULL, &rep) != 0) return;
    dg_redis_xiter_t it;
    dg_redis_xentry_t e;
    dg_redis_xid_t oldest;
    int any = dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
              dg_redis_xid_parse(e.id.ptr, e.id.len, &oldest) == 0;
    freeReplyObject(rep);
    if (!any || now - (int64_t)oldest.ms < a->interval_ms) return;
  }
  redisReply **reps = NULL;
  size_t nreps = 0, total = 0;
  int failed = 0;
  while (total < ARCHIVE_SEGMENT_MAX) {
    char page[16];
    snprintf(page, sizeof page, "%d", ARCHIVE_PAGE);
    const char *argv[] = {"XRANGE", a->streams->req, cursor, "+", "COUNT", page};
    redisReply *rep = NULL;
    if (dg_redis_command(a->redis, 6, argv, NULL, &rep) != 0) {
      failed = 1;
      break;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
      freeReplyObject(rep);
      break;
    }
    reps = dg_realloc(reps, (nreps + 1) * sizeof *reps);
    reps[nreps++] = rep;
    total += rep->elements;
    redisReply *lastent = rep->element[rep->elements - 1];
    if (lastent->type != REDIS_REPLY_ARRAY || lastent->elements < 1 || lastent->element[0]->type != REDIS_REPLY_STRING)
      break;
    snprintf(cursor, sizeof cursor, "(%s", lastent->element[0]->str);
    if (rep->elements < ARCHIVE_PAGE) break;
  }
  int due = total > 0;
  if (!failed && due) {
    char err[512] = "";
    dg_redis_xid_t first, lst;
    long long count = 0;
    int rc = write_segment(a, reps, nreps, prev_known ? &prev : NULL, &first, &lst, &count, err, sizeof err);
    if (rc != 0) {
      atomic_fetch_add(&a->errors, 1);
      dg_log_error("archive: %s", err);
    } else if (count > 0) {
      pthread_mutex_lock(&a->lock);
      a->last = lst;
      a->have_last = 1;
      pthread_mutex_unlock(&a->lock);
      atomic_fetch_add(&a->entries, count);
      atomic_fetch_add(&a->segments, 1);
      update_lag(a, lst, 1);
    }
  }
  for (size_t i = 0; i < nreps; i++) freeReplyObject(reps[i]);
  dg_free(reps);
}

static void *run(void *arg) {
  dg_archive_t *a = arg;
  pthread_setname_np(pthread_self(), "dg-archive");
  for (;;) {
    pthread_mutex_lock(&a->lock);
    if (a->stop) {
      pthread_mutex_unlock(&a->lock);
      break;
    }
    pthread_mutex_unlock(&a->lock);
    round_once(a);
    pthread_mutex_lock(&a->lock);
    struct timespec until;
    int wait = a->interval_ms < 1000 ? (int)a->interval_ms / 2 + 1 : 500;
    dg_deadline_after_ms(&until, wait);
    if (!a->stop) pthread_cond_timedwait(&a->cond, &a->lock, &until);
    pthread_mutex_unlock(&a->lock);
  }
  return NULL;
}

dg_archive_t *dg_archive_start(const dg_streams_t *streams, const dg_redis_url_t *url,
                               const dg_redis_opts_t *opts) {
  const char *dir = dg_archive_dir();
  if (dir == NULL) return NULL;
  dg_archive_t *a = dg_calloc(1, sizeof *a);
  a->streams = streams;
  snprintf(a->dir, sizeof a->dir, "%s", dir);
  const char *iv = getenv("DUCKGRID_ARCHIVE_INTERVAL_MS");
  a->interval_ms = iv && *iv ? strtoll(iv, NULL, 10) : 10000;
  if (a->interval_ms < 10 || a->interval_ms > 3600 * 1000) a->interval_ms = 10000;
  char err[256];
  if (dg_fs_mkdir_p(a->dir) != 0) {
    dg_log_error("archive: cannot make %s: %s; no archive", a->dir, strerror(errno));
    dg_free(a);
    return NULL;
  }
  if (dg_redis_create(url, opts, &a->redis, err, sizeof err) != 0) {
    dg_log_error("archive: %s; no archive", err);
    dg_free(a);
    return NULL;
  }
  dg_segment_t *segs;
  size_t n;
  dg_archive_segments(a->dir, &segs, &n);
  if (n) {
    a->last = segs[n - 1].last;
    a->have_last = 1;
  }
  dg_free(segs);
  pthread_mutex_init(&a->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&a->cond, &attr);
  pthread_condattr_destroy(&attr);
  if (pthread_create(&a->thread, NULL, run, a) != 0) {
    dg_redis_destroy(a->redis);
    dg_free(a);
    return NULL;
  }
  dg_log_info("archive: request_duck is archived into %s (%zu segments so far)", a->dir, n);
  return a;
}

void dg_archive_stop(dg_archive_t *a) {
  if (a == NULL) return;
  pthread_mutex_lock(&a->lock);
  a->stop = 1;
  pthread_cond_signal(&a->cond);
  pthread_mutex_unlock(&a->lock);
  pthread_join(a->thread, NULL);
  dg_redis_destroy(a->redis);
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  dg_free(a);
}

void dg_archive_clamp(dg_archive_t *a, char *id, size_t cap) {
  if (a == NULL) return;
  pthread_mutex_lock(&a->lock);
  dg_redis_xid_t last = a->have_last ? a->last : (dg_redis_xid_t){0, 0};
  pthread_mutex_unlock(&a->lock);
  dg_redis_xid_t x;
  if (dg_redis_xid_parse(id, strlen(id), &x) != 0 || dg_redis_xid_cmp(last, x) < 0)
    dg_redis_xid_format(last, id, cap);
}

void dg_archive_metrics(dg_archive_t *a, dg_buf_t *out) {
  if (a == NULL) return;
  dg_buf_printf(out,
                "# HELP duckgrid_archive_lag_seconds Stream time from the newest archived request_duck entry "
                "to the newest entry (DUCKGRID_ARCHIVE_DIR).\n# TYPE duckgrid_archive_lag_seconds gauge\n"
                "duckgrid_archive_lag_seconds %.3f\n"
                "# HELP duckgrid_archive_entries_total request_duck entries archived by this process.\n"
                "# TYPE duckgrid_archive_entries_total counter\nduckgrid_archive_entries_total %lld\n"
                "# HELP duckgrid_archive_segments_total Archive segments sealed by this process.\n"
                "# TYPE duckgrid_archive_segments_total counter\nduckgrid_archive_segments_total %lld\n"
                "# HELP duckgrid_archive_errors_total Archive segments that could not be written.\n"
                "# TYPE duckgrid_archive_errors_total counter\nduckgrid_archive_errors_total %lld\n",
                (double)atomic_load(&a->lag_ms) / 1000.0, (long long)atomic_load(&a->entries),
                (long long)atomic_load(&a->segments), (long long)atomic_load(&a->errors));
}
