/*
 * reader.c -- follows response_duck for this process (see reader.h).
 *
 * Start position: on its first connection the reader takes DuckDB's
 * dg.applied (or the stream's newest id, if older), *then* reloads the
 * catalog from DuckDB. DuckDB is written behind the stream, so every
 * outcome at or before dg.applied is in the snapshot, and outcomes after it
 * are replayed on top in order; replaying one the snapshot already holds is
 * harmless (adding a row twice, dropping a table already gone).
 *
 * Every entry read goes, in order, into the hub's ring of recent outcomes
 * (before the synchronous waiter is woken), from which GET /get_updates
 * answers and on which its long polls wait; see updates.c.
 *
 * The manager of this process feeds its own outcomes straight into the
 * same pipeline (app->links.feed) as soon as they are in Redis, when the reader
 * has handled everything before them; the reader then skips them. So a
 * synchronous write is answered without the round trip through XREAD, and
 * still after the catalog and the ring have it.
 */
#include "dg/reader.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/entry_mac.h"
#include "dg/hub.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/progress.h"
#include "dg/waiters.h"
#include "dg/wire.h"

/* How long one XREAD blocks: bounds how long dg_reader_stop waits. */
#define BLOCK_MS 500
/* Entries per XREAD: enough to drain a burst in a few round trips. */
#define READ_COUNT 1000

struct dg_reader_s {
  dg_reader_deps_t deps; /* what it was given (reader.h) */
  dg_redis_t *conn;
  pthread_t thread;
  atomic_int stop;
  char last_id[DG_REDIS_XID_BUFSZ];
  int positioned;
  uint64_t connects_seen; /* Redis connects already counted in metrics */
  /* The pipeline (handle) is fed by this thread from Redis and by the
   * manager of this process with what it has just published; feed_lock
   * serialises the two and `fed` is the last entry handled, so each
   * entry goes through once, in stream order, with no gap. */
  pthread_mutex_t feed_lock;
  dg_redis_xid_t fed;
  int fed_valid;
  size_t fed_by_manager; /* entries since the last dg_ring_notify */
};

static void ids_of(json_t *arr, int64_t **ids, size_t *n) {
  *n = json_array_size(arr);
  *ids = dg_malloc((*n ? *n : 1) * sizeof **ids);
  for (size_t i = 0; i < *n; i++) {
    json_t *v = json_array_get(arr, i);
    (*ids)[i] = json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : json_integer_value(v);
  }
}

/* The tables an outcome concerns, for the table filters of the ring and of
 * the live clients: its top-level "table", or when it has none (update_cells
 * across tables, the one op whose changes may span tables) the tables of
 * its changes. Every outcome that names a table has changes in that table
 * only, so this is the same set GET /get_updates matched on before the ring
 * (own table or any change's), without decoding the changes of an outcome
 * that can be megabytes. *changes keeps the decoded changes alive while the
 * names are used; json_decref it after. Returns how many names. */
static size_t tables_of(const char *res, size_t len, const char *table, json_t **changes,
                        const char ***out) {
  *changes = NULL;
  if (table[0]) {
    const char **t = dg_malloc(sizeof *t);
    t[0] = table;
    *out = t;
    return 1;
  }
  *changes = dg_wire_out_get(res, len, DG_WIRE_O_CHANGES);
  size_t cap = json_array_size(*changes), n = 0;
  const char **t = dg_malloc((cap ? cap : 1) * sizeof *t);
  for (size_t i = 0; i < cap; i++) {
    const char *ct = json_string_value(json_object_get(json_array_get(*changes, i), DG_WIRE_TABLE));
    int seen = ct == NULL;
    for (size_t k = 0; k < n && !seen; k++) seen = strcmp(t[k], ct) == 0;
    if (!seen) t[n++] = ct;
  }
  *out = t;
  return n;
}

/* Is the text a JSON object, at a glance? GET /get_updates skips an entry
 * that is not (a damaged entry must not break a whole page). */
static int looks_like_object(const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t')) n--;
  return n >= 2 && s[0] == '{' && s[n - 1] == '}';
}

/* The ids of a raw array as the manager writes it ([1,2,"9007199254740993"],
 * dg_jsonw_id), scanned without a DOM: an import's outcome lists a million.
 * 0, or -1 when the text is anything else (the caller decodes it then). */
static int ids_scan(const char *v, size_t n, int64_t **ids, size_t *count) {
  const char *p = v, *end = v + n;
  if (p == end || *p != '[') return -1;
  size_t cap = 0, k = 0;
  int64_t *out = NULL;
  p++;
  if (p < end && *p == ']' && p + 1 == end) {
    *ids = dg_malloc(sizeof **ids);
    *count = 0;
    return 0;
  }
  while (p < end) {
    int quoted = *p == '"';
    p += quoted;
    int neg = p < end && *p == '-';
    p += neg;
    uint64_t x = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 19) x = x * 10 + (uint64_t)(*p++ - '0');
    if (p == digits || (p < end && *p >= '0' && *p <= '9') || x > (uint64_t)INT64_MAX) break;
    if (quoted && (p == end || *p++ != '"')) break;
    if (k == cap) {
      cap = cap ? cap * 2 : 1024;
      out = dg_realloc(out, cap * sizeof *out);
    }
    out[k++] = neg ? -(int64_t)x : (int64_t)x;
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    if (p + 1 == end && *p == ']') {
      *ids = out ? out : dg_malloc(sizeof **ids);
      *count = k;
      return 0;
    }
    break;
  }
  dg_free(out);
  return -1;
}

static int64_t id_of(const json_t *v) {
  return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : (int64_t)json_integer_value(v);
}

/* A compact outcome's "<key>_ranges" ([[first,last],…], apply.c
 * write_id_map): every id, added to or removed from the row set a chunk at
 * a time. 1 if the outcome has them. */
static int rows_update_ranges(dg_catalog_t *catalog, const char *res, size_t len, const char *table, int add,
                              dg_redis_xid_t at) {
  json_t *ranges = dg_wire_out_get(res, len, dg_wire_out_ids_ranges(add));
  if (ranges == NULL) {
    /* Truncated without ranges: too many scattered ids to list (apply.c
     * write_id_map). The row set is reloaded from DuckDB once it holds
     * this outcome (refresh, below); the manager checks rows meanwhile. */
    if (dg_wire_out_true(res, len, dg_wire_out_ids_truncated(add))) {
      dg_catalog_rows_stale(catalog, table, at);
      return 1;
    }
    return 0;
  }
  enum { CHUNK = 65536 };
  int64_t *ids = dg_malloc(CHUNK * sizeof *ids);
  size_t k = 0;
  for (size_t i = 0; i < json_array_size(ranges); i++) {
    json_t *r = json_array_get(ranges, i);
    if (json_array_size(r) != 2) continue;
    int64_t a = id_of(json_array_get(r, 0)), b = id_of(json_array_get(r, 1));
    /* A table holds at most ~2^32 rows: a range beyond that is no outcome
     * of ours (even signed), and is not walked id by id. */
    if (b < a || (uint64_t)b - (uint64_t)a > UINT32_MAX) {
      dg_log_warn("response reader: an outcome for '%s' has an impossible id range; ignored", table);
      continue;
    }
    for (int64_t id = a; id <= b; id++) {
      ids[k++] = id;
      if (k == CHUNK) {
        if (add) dg_catalog_rows_add(catalog, table, ids, k, at);
        else dg_catalog_rows_remove(catalog, table, ids, k, at);
        k = 0;
      }
      if (id == INT64_MAX) break;
    }
  }
  if (k && add) dg_catalog_rows_add(catalog, table, ids, k, at);
  else if (k) dg_catalog_rows_remove(catalog, table, ids, k, at);
  dg_free(ids);
  json_decref(ranges);
  return 1;
}

static void rows_update(dg_catalog_t *catalog, const char *res, size_t len, const char *table, int add,
                        dg_redis_xid_t at) {
  const char *raw;
  size_t rawn, n;
  int64_t *ids;
  if (rows_update_ranges(catalog, res, len, table, add, at)) return;
  if (dg_wire_out_raw(res, len, dg_wire_out_ids(add), &raw, &rawn) == 0 &&
      ids_scan(raw, rawn, &ids, &n) == 0) {
    if (n && add) dg_catalog_rows_add(catalog, table, ids, n, at);
    else if (n) dg_catalog_rows_remove(catalog, table, ids, n, at);
    dg_free(ids);
    return;
  }
  json_t *list = dg_wire_out_get(res, len, dg_wire_out_ids(add));
  if (json_array_size(list)) {
    ids_of(list, &ids, &n);
    if (add) dg_catalog_rows_add(catalog, table, ids, n, at);
    else dg_catalog_rows_remove(catalog, table, ids, n, at);
    dg_free(ids);
  }
  json_decref(list);
}

/* Applies one outcome to the catalog, then wakes its waiters. Only the few
 * members it needs are read (the changes can be megabytes). */
static void handle(dg_reader_t *rd, const char *id, const char *res, size_t len) {
  const dg_reader_deps_t *d = &rd->deps;
  char op[32] = "", status[16] = "", table[DG_NAME_MAX + 1] = "", rid[256] = "";
  dg_wire_out_str(res, len, DG_WIRE_O_OP, op, sizeof op);
  dg_wire_out_str(res, len, DG_WIRE_O_STATUS, status, sizeof status);
  /* A name that fails the whitelist is not used at all (the outcome still
   * reaches the ring and its waiter: it was signed by our manager). */
  if (dg_wire_out_str(res, len, DG_WIRE_O_TABLE, table, sizeof table) && !dg_name_valid(table)) table[0] = '\0';
  dg_redis_xid_t at = {0, 0};
  (void)dg_redis_xid_parse(id, strlen(id), &at);
  if (strcmp(status, DG_WIRE_APPLIED) == 0) {
    if (strcmp(op, DG_OP_CREATE_TABLE) == 0) {
      json_t *def = dg_wire_out_get(res, len, DG_WIRE_O_TABLE_DEF);
      dg_tabledef_t *t = def ? dg_tabledef_from_json(def) : NULL;
      if (t) dg_catalog_put_table(d->catalog, t);
      json_decref(def);
    } else if (strcmp(op, DG_OP_DELETE_TABLE) == 0 && table[0]) {
      dg_catalog_drop_table(d->catalog, table);
    } else if (strcmp(op, DG_OP_CREATE_VIEW) == 0 || strcmp(op, DG_OP_DELETE_VIEW) == 0) {
      char v[DG_NAME_MAX + 1];
      if (dg_wire_out_str(res, len, DG_WIRE_O_VIEW, v, sizeof v) && dg_name_valid(v)) {
        if (op[0] == 'c') dg_catalog_put_view(d->catalog, v);
        else dg_catalog_drop_view(d->catalog, v);
      }
    }
    /* A revert may insert and delete rows too (undoing a delete or an insert). */
    if (table[0] && (strcmp(op, DG_OP_INSERT_ROWS) == 0 || strcmp(op, DG_OP_DELETE_ROW) == 0 ||
                     strcmp(op, DG_OP_UPDATE_ROW) == 0 || strcmp(op, DG_OP_REVERT) == 0)) {
      rows_update(d->catalog, res, len, table, 1, at);
      rows_update(d->catalog, res, len, table, 0, at);
    }
  }
  /* The ring before the waiter: a client whose synchronous write has been
   * answered finds its update in GET /get_updates at once. */
  const char **tables;
  json_t *changes;
  size_t nt = tables_of(res, len, table, &changes, &tables);
  dg_redis_xid_t xid;
  if (dg_redis_xid_parse(id, strlen(id), &xid) == 0) {
    if (looks_like_object(res, len)) {
      dg_ring_append(d->hub, xid, res, len, tables, nt);
    } else {
      dg_log_warn("response reader: entry %s of %s has no valid 'res'; get_updates skips it", id,
                  d->streams->res);
      dg_ring_append(d->hub, xid, NULL, 0, NULL, 0);
    }
  }
  if (dg_wire_out_str(res, len, DG_WIRE_O_REQUEST_ID, rid, sizeof rid)) {
    /* Waiters wait under (caller tag, request_id): a request_id is scoped
     * to its caller (API v1.1), and two callers may share a user name
     * (entry_mac.h). An outcome without a tag (queued by an older version)
     * is for nobody waiting now. */
    char tag[DG_CALLER_TAG_LEN + 2] = "", key[sizeof tag + sizeof rid + 1];
    if (dg_wire_out_str(res, len, DG_WIRE_O_CALLER_TAG, tag, sizeof tag) && strlen(tag) == DG_CALLER_TAG_LEN) {
      dg_waiters_key(key, sizeof key, tag, rid);
      dg_waiters_deliver(d->waiters, key, res, len);
    }
  }
  if (dg_hub_count(d->hub) > 0) dg_hub_publish(d->hub, id, res, len, tables, nt);
  dg_free(tables);
  json_decref(changes);
}

static int position(dg_reader_t *rd) {
  const char *argv[] = {"XREVRANGE", rd->deps.streams->res, "+", "-", "COUNT", "1"};
  redisReply *rep;
  int rc = dg_redis_command(rd->conn, 6, argv, NULL, &rep);
  if (rc != 0) return rc;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  snprintf(rd->last_id, sizeof rd->last_id, "0-0");
  if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e))
    snprintf(rd->last_id, sizeof rd->last_id, "%.*s", (int)e.id.len, e.id.ptr);
  freeReplyObject(rep);
  dg_redis_xid_t start;
  if (dg_redis_xid_parse(rd->last_id, strlen(rd->last_id), &start) != 0) return DG_EIO;
  /* Every outcome up to the stream's top was published, and perhaps
   * answered, before this process started: a read waits until this node's
   * DuckDB holds it -- also in the moments after a restart, before the
   * manager has led or followed its way there (consistency.c). */
  if (rd->deps.progress) dg_progress_published(rd->deps.progress, start);
  char err[256];
  duckdb_connection c = dg_db_conn(rd->deps.db);
  /* DuckDB is written behind the stream: it holds every outcome up to
   * dg.applied, not up to the stream's top. Start there (read before the
   * catalog, so the catalog holds at least that much) and replay what
   * follows from Redis. */
  duckdb_result q;
  if (c != NULL && duckdb_query(c, dg_sql_applied_last_id, &q) == DuckDBSuccess &&
      duckdb_row_count(&q) == 1) {
    char *v = duckdb_value_varchar(&q, 0, 0);
    dg_redis_xid_t applied;
    if (v && dg_redis_xid_parse(v, strlen(v), &applied) == 0 && dg_redis_xid_cmp(applied, start) < 0) {
      start = applied;
      dg_redis_xid_format(start, rd->last_id, sizeof rd->last_id);
    }
    duckdb_free(v);
  }
  if (c != NULL) duckdb_destroy_result(&q);
  if (c == NULL || dg_catalog_load(rd->deps.catalog, c, err, sizeof err) != 0) {
    dg_log_error("response reader: cannot reload the catalog");
    return DG_EIO;
  }
  /* The ring covers the stream from here on: the reader reads every entry
   * after start, in order, and appends each. */
  pthread_mutex_lock(&rd->feed_lock);
  dg_ring_reset(rd->deps.hub, start);
  rd->fed = start;
  rd->fed_valid = 1;
  pthread_mutex_unlock(&rd->feed_lock);
  rd->positioned = 1;
  return 0;
}

/* Row sets left stale by an outcome that could not list its ids are
 * reloaded here, at most a read's time (BLOCK_MS) after this node's
 * DuckDB holds that outcome. A node without a persister (no manager)
 * leaves them to the manager's checks. */
static void refresh(dg_reader_t *rd) {
  const dg_reader_deps_t *d = &rd->deps;
  if (d->progress == NULL || d->db == NULL) return;
  dg_redis_xid_t persisted;
  dg_progress_get(d->progress, NULL, &persisted);
  duckdb_connection c = dg_db_conn(d->db);
  if (c == NULL) return;
  int n = dg_catalog_refresh(d->catalog, c, persisted);
  if (n > 0) dg_log_info("response reader: reloaded %d row set%s from DuckDB", n, n == 1 ? "" : "s");
  else if (n < 0) dg_log_warn("response reader: cannot reload a row set from DuckDB; will try again");
}

static void *run(void *arg) {
  dg_reader_t *rd = arg;
  pthread_setname_np(pthread_self(), "dg-reader"); /* for top -H and perf --comm */
  while (!atomic_load(&rd->stop)) {
    if (!rd->positioned) {
      if (position(rd) != 0) {
        atomic_store(&rd->deps.status->redis_failing, 1);
        usleep(100 * 1000);
        continue;
      }
      atomic_store(&rd->deps.status->redis_seen_ms, dg_mono_us() / 1000);
      atomic_store(&rd->deps.status->redis_failing, 0);
    }
    const char *argv[] = {"XREAD", "COUNT", "1000", "BLOCK", "500", "STREAMS",
                          rd->deps.streams->res, rd->last_id};
    redisReply *rep;
    int rc = dg_redis_command_timeout(rd->conn, BLOCK_MS + 2000, 8, argv, NULL, &rep);
    dg_redis_status_t st;
    dg_redis_status(rd->conn, &st);
    if (rd->connects_seen > 0 && st.connects > rd->connects_seen)
      atomic_fetch_add(&rd->deps.status->redis_reconnects, (long)(st.connects - rd->connects_seen));
    if (st.connects > rd->connects_seen) rd->connects_seen = st.connects;
    if (rc != 0) {
      atomic_store(&rd->deps.status->redis_failing, 1);
      usleep(50 * 1000); /* the connection's own backoff paces reconnects */
      continue;
    }
    /* What GET /health says of Redis, without a PING per request. */
    atomic_store(&rd->deps.status->redis_seen_ms, dg_mono_us() / 1000);
    atomic_store(&rd->deps.status->redis_failing, 0);
    dg_redis_xiter_t it;
    if (dg_redis_xiter_init_xread(&it, rep) == 0) {
      dg_redis_xentry_t e;
      size_t got = 0;
      while (dg_redis_xiter_next(&it, &e)) {
        got++;
        dg_redis_str_t v;
        snprintf(rd->last_id, sizeof rd->last_id, "%.*s", (int)e.id.len, e.id.ptr);
        dg_redis_xid_t xid;
        if (dg_redis_xid_parse(e.id.ptr, e.id.len, &xid) != 0) continue;
        /* On a follower the published mark follows the leader's outcomes:
         * a read that arrives after one of them (a sync write answered
         * here, an event seen) waits until this node has applied and
         * persisted it (consistency.c). The leader's manager raised it. */
        if (atomic_load(&rd->deps.status->manager_state) == DG_MANAGER_FOLLOWER && rd->deps.progress)
          dg_progress_published(rd->deps.progress, xid);
        pthread_mutex_lock(&rd->feed_lock);
        /* The manager may have handed it over already. */
        if (!rd->fed_valid || dg_redis_xid_cmp(xid, rd->fed) > 0) {
          if (dg_entry_open_res_with(rd->deps.streams, rd->deps.status, &e, &v) == 0)
            handle(rd, rd->last_id, v.ptr, v.len);
          else dg_ring_append(rd->deps.hub, xid, NULL, 0, NULL, 0); /* a bad MAC or no outcome: kept so cursors move past it */
          rd->fed = xid;
          rd->fed_valid = 1;
        }
        pthread_mutex_unlock(&rd->feed_lock);
      }
      /* One wake-up per batch for every waiting long poll. */
      if (got > 0) dg_ring_notify(rd->deps.hub);
    } else if (rep->type == REDIS_REPLY_ERROR) {
      dg_log_warn("response reader: %s", rep->str);
      usleep(100 * 1000);
    }
    freeReplyObject(rep);
    refresh(rd);
  }
  return NULL;
}

/* From the manager (app->links.feed): an outcome it has just published. It goes
 * through the pipeline now if it is the entry right after the last one
 * handled; otherwise this thread has not read that far and will handle it
 * from Redis in its turn. */
static void feed(void *arg, const char *prev, const char *id, const char *res, size_t len) {
  dg_reader_t *rd = arg;
  dg_redis_xid_t p, x;
  if (dg_redis_xid_parse(id, strlen(id), &x) != 0) return;
  int have_prev = prev[0] && dg_redis_xid_parse(prev, strlen(prev), &p) == 0;
  pthread_mutex_lock(&rd->feed_lock);
  if (have_prev && rd->fed_valid && dg_redis_xid_cmp(rd->fed, p) == 0) {
    handle(rd, id, res, len);
    rd->fed = x;
    rd->fed_by_manager++;
  }
  pthread_mutex_unlock(&rd->feed_lock);
}

static void feed_done(void *arg) {
  dg_reader_t *rd = arg;
  pthread_mutex_lock(&rd->feed_lock);
  size_t n = rd->fed_by_manager;
  rd->fed_by_manager = 0;
  pthread_mutex_unlock(&rd->feed_lock);
  if (n) dg_ring_notify(rd->deps.hub);
}

int dg_reader_start(const dg_reader_deps_t *deps, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                    dg_reader_t **out) {
  dg_reader_t *rd = dg_calloc(1, sizeof *rd);
  rd->deps = *deps;
  char err[200];
  int rc = dg_redis_create(url, opts, &rd->conn, err, sizeof err);
  if (rc != 0) {
    dg_free(rd);
    return rc;
  }
  (void)READ_COUNT;
  pthread_mutex_init(&rd->feed_lock, NULL);
  deps->links->feed = feed;
  deps->links->feed_done = feed_done;
  deps->links->feed_arg = rd;
  if (pthread_create(&rd->thread, NULL, run, rd) != 0) {
    dg_redis_destroy(rd->conn);
    dg_free(rd);
    return DG_EIO;
  }
  *out = rd;
  return 0;
}

void dg_reader_stop(dg_reader_t *rd) {
  if (rd == NULL) return;
  atomic_store(&rd->stop, 1);
  pthread_join(rd->thread, NULL);
  rd->deps.links->feed = NULL;
  rd->deps.links->feed_done = NULL;
  pthread_mutex_destroy(&rd->feed_lock);
  dg_redis_destroy(rd->conn);
  dg_free(rd);
}
