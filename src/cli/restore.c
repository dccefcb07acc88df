/*
 * restore.c -- `duckgrid restore --snapshot <id|latest>
 *                 [--until <update id> | --until-time <ISO time>] --db NEW.duckdb [options]`
 *
 * Rebuilds the state at a point of the log: copies the snapshot (checking
 * its SHA-256 against the manifest while copying), opens the copy (which
 * rebuilds a format-2 snapshot's keys and indexes, snapshot.c; format 1,
 * the old full copy, opens as it is), then applies the
 * request_duck entries after the snapshot's update id, up to --until (or
 * the last entry with a time at or before --until-time; default: the end
 * of the stream), with the manager's apply and persist code (replay.h).
 * Entries are checked with the stream MAC as the manager checks them, so
 * the pepper file of the server (DUCKGRID_KEY_PEPPER_FILE, default
 * <DUCKGRID_DB>.pepper) must be there; it is copied next to NEW.duckdb
 * (NEW.duckdb.pepper, unless one exists) so a server started on NEW
 * accepts the same keys.
 *
 * It refuses, changing nothing, when: a file exists at --db (never
 * touched: the copy is made under a temporary name and linked into place
 * only at the end, link() failing if a file appeared meanwhile); the
 * snapshot is unknown or its checksum fails; entries after the snapshot
 * are gone from request_duck (Redis trimmed past the snapshot:
 * XINFO STREAM's max-deleted-entry-id is above its update id); --until is
 * before the snapshot. The settings that apply depends on
 * (DUCKGRID_IDEMPOTENCY_WINDOW_MS, DUCKGRID_REQUEST_CHANGES_MAX) must be
 * the server's. A progress line goes to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dg/app.h"
#include "dg/archive.h"
#include "dg/auth.h"
#include "dg/cli.h"
#include "dg/common.h"
#include "dg/config.h"
#include "dg/db.h"
#include "dg/entry_mac.h"
#include "dg/isotime.h"
#include "dg/log.h"
#include "dg/redis.h"
#include "dg/replay.h"
#include "dg/streamlog.h"
#include "dg/snapshot.h"

#define PAGE "5000"

static int usage(void) {
  fprintf(stderr, "usage: duckgrid restore --snapshot <id|latest> [--until <update id> | --until-time <ISO time>] "
                  "--db NEW.duckdb [options]\n");
  return 2;
}

/* "ms-seq" or "ms" (every entry of that millisecond). */
static int parse_until(const char *s, dg_redis_xid_t *out) {
  if (dg_redis_xid_parse(s, strlen(s), out) == 0) return 0;
  char *end;
  errno = 0;
  unsigned long long ms = strtoull(s, &end, 10);
  if (*s < '0' || *s > '9' || *end != '\0' || errno) return -1;
  *out = (dg_redis_xid_t){ms, UINT64_MAX};
  return 0;
}

/* Copies src to a new file dst (O_EXCL), hashing what it copies. */
static int copy_hashed(const char *src, const char *dst, char hex[65], char *err, size_t errcap) {
  int in = open(src, O_RDONLY);
  if (in < 0) {
    snprintf(err, errcap, "cannot open %s: %s", src, strerror(errno));
    return DG_EIO;
  }
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (out < 0) {
    snprintf(err, errcap, "cannot create %s: %s", dst, strerror(errno));
    close(in);
    return DG_EIO;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  unsigned char *buf = dg_malloc(1 << 20);
  int rc = 0;
  for (;;) {
    ssize_t n = read(in, buf, 1 << 20);
    if (n == 0) break;
    if (n < 0 || write(out, buf, (size_t)n) != n) {
      snprintf(err, errcap, "copying %s: %s", src, strerror(errno));
      rc = DG_EIO;
      break;
    }
    EVP_DigestUpdate(ctx, buf, (size_t)n);
  }
  if (rc == 0 && fsync(out) != 0) rc = DG_EIO;
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  dg_free(buf);
  close(in);
  close(out);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return rc;
}

/* Entries after `from` are all still in the stream (streamlog.h): 0, or
 * DG_EGONE with the reason. */
static int stream_covers(dg_redis_t *r, const char *stream, dg_redis_xid_t from, char *err, size_t errcap) {
  char why[256];
  int rc = dg_streamlog_covers(r, stream, from, why, sizeof why);
  if (rc == DG_EUNAVAIL) snprintf(err, errcap, "%s", why);
  if (rc == DG_EGONE) {
    char fid[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(from, fid, sizeof fid);
    snprintf(err, errcap,
             "request_duck no longer holds every entry after the snapshot's update id %s (%s), and there is "
             "no archive of them; use a newer snapshot", fid, why);
  }
  return rc;
}

static void progress(size_t n, dg_redis_xid_t at, dg_redis_xid_t first, dg_redis_xid_t last, int64_t t0, int done) {
  double pct = 100.0;
  if (last.ms > first.ms) pct = 100.0 * (double)(at.ms - first.ms) / (double)(last.ms - first.ms);
  if (pct > 100.0) pct = 100.0;
  double s = (double)(dg_mono_us() - t0) / 1e6;
  fprintf(stderr, "\rrestore: %5.1f%% %zu requests applied, at %" PRIu64 "-%" PRIu64 ", %.0f requests/s%s", pct, n,
          at.ms, at.seq, s > 0 ? (double)n / s : 0.0, done ? "\n" : "   ");
  fflush(stderr);
}

/* Which archive segments carry the log on from `from`: [*a, *b) of *segs,
 * chained without a hole (each one's prev_id the last id of the one
 * before), the first one starting at or before the entry after `from`,
 * up to `until` or the archive's end. 0, or nonzero with the reason. */
static int archive_plan(const char *dir, dg_redis_xid_t from, dg_redis_xid_t until, dg_segment_t **segs,
                        size_t *nsegs, size_t *a, size_t *b, char *why, size_t cap) {
  dg_archive_segments(dir, segs, nsegs);
  size_t i = 0;
  while (i < *nsegs && dg_redis_xid_cmp((*segs)[i].last, from) <= 0) i++;
  if (i == *nsegs) {
    snprintf(why, cap, "no segment in %s holds entries after it", dir);
    return DG_ENOTFOUND;
  }
  const dg_segment_t *s = &(*segs)[i];
  if (dg_redis_xid_cmp(s->first, from) > 0 && !(s->has_prev && dg_redis_xid_cmp(s->prev, from) <= 0)) {
    snprintf(why, cap, "it starts at %" PRIu64 "-%" PRIu64 " (segment %s), after the snapshot, and the entries "
             "between are missing", s->first.ms, s->first.seq, s->file);
    return DG_EGONE;
  }
  size_t j = i + 1;
  while (j < *nsegs && dg_redis_xid_cmp((*segs)[j - 1].last, until) < 0) {
    const dg_segment_t *p = &(*segs)[j - 1], *q = &(*segs)[j];
    if (!q->has_prev || dg_redis_xid_cmp(q->prev, p->last) != 0) {
      /* A hole: what follows may still be in Redis (checked by the caller). */
      dg_log_warn("restore: archive segment %s does not follow %s", q->file, p->file);
      break;
    }
    j++;
  }
  *a = i;
  *b = j;
  return 0;
}

static void progress(size_t n, dg_redis_xid_t at, dg_redis_xid_t first, dg_redis_xid_t last, int64_t t0, int done);

/* ---- reading request_duck ahead ------------------------------------------------- */

/* One page of entries, checked (the MAC): an XRANGE page borrowing from
 * rep, or archived entries copied into own. */
typedef struct {
  dg_redis_str_t id, req;
  int has;               /* 0: no payload or deleted (applied as "{}")  */
} rentry_t;

typedef struct rpage_s {
  redisReply *rep;
  char *own;             /* an archive page's ids and requests          */
  rentry_t *e;
  size_t n;
  struct rpage_s *next;
} rpage_t;

#define AHEAD 2           /* pages read and checked before the applier takes them */
#define ARCHIVE_PAGE 4096 /* archived entries a page                              */

/* The reader thread: the archive's segments first (when Redis no longer
 * holds everything after the snapshot), then request_duck after them, so
 * that reading, the segments' SHA-256 and the MACs run beside the apply. */
typedef struct {
  dg_redis_t *redis;     /* the reader's alone while it runs          */
  const dg_streams_t *streams; /* the stream key, for the MACs      */
  dg_node_status_t *status;    /* counts a refused entry            */
  const char *stream;
  const char *adir;      /* the archive, and its segments to read     */
  const dg_segment_t *segs;
  size_t seg_a, seg_b;
  dg_redis_xid_t until;  /* archived entries after it are not applied */
  rpage_t *cur;          /* the archive page being filled             */
  dg_buf_t cur_buf;      /* its bytes (rentry_t hold offsets until it is queued) */
  int refused;           /* the archive failed (else Redis did)       */
  dg_redis_xid_t at, last; /* read after at, up to last                */
  pthread_mutex_t mu;    /* guards what follows                        */
  pthread_cond_t cv;
  rpage_t *head, *tail;
  size_t queued;
  int done, stop, failed;
  char err[512];
  int64_t us_read, us_mac, us_wait; /* us_wait: waiting for the applier      */
  double cpu_s;          /* the reader thread's CPU                   */
} reader_t;

static double thread_cpu_s(void);
static void *reader_run(reader_t *rd);

static void rpage_free(rpage_t *pg) {
  freeReplyObject(pg->rep);
  dg_free(pg->own);
  dg_free(pg->e);
  dg_free(pg);
}

/* Queues a page for the applier, waiting while AHEAD are queued; 1 when
 * the applier asked the reader to stop (the page is then freed). */
static int page_queue(reader_t *rd, rpage_t *pg) {
  int64_t t0 = dg_mono_us();
  pthread_mutex_lock(&rd->mu);
  while (rd->queued >= AHEAD && !rd->stop) pthread_cond_wait(&rd->cv, &rd->mu);
  rd->us_wait += dg_mono_us() - t0;
  int stop = rd->stop;
  if (!stop) {
    if (rd->tail) rd->tail->next = pg;
    else rd->head = pg;
    rd->tail = pg;
    rd->queued++;
    pthread_cond_broadcast(&rd->cv);
  }
  pthread_mutex_unlock(&rd->mu);
  if (stop) rpage_free(pg);
  return stop;
}

/* Queues the archive page being filled, its offsets made pointers. */
static int archive_page_queue(reader_t *rd) {
  rpage_t *pg = rd->cur;
  rd->cur = NULL;
  if (pg == NULL) return 0;
  pg->own = dg_buf_steal(&rd->cur_buf);
  for (size_t i = 0; i < pg->n; i++) {
    pg->e[i].id.ptr = pg->own + (uintptr_t)pg->e[i].id.ptr;
    pg->e[i].req.ptr = pg->own + (uintptr_t)pg->e[i].req.ptr;
  }
  return page_queue(rd, pg);
}

/* One archived entry (dg_archive_read's callback): copied into the page
 * when it is after what is read and not after --until; 1 ends the
 * segment early (past --until), 2 stops the reading (asked to stop). */
static int archive_entry(void *arg, const dg_redis_xentry_t *x) {
  reader_t *rd = arg;
  dg_redis_xid_t id;
  if (dg_redis_xid_parse(x->id.ptr, x->id.len, &id) != 0) return 0;
  if (dg_redis_xid_cmp(id, rd->at) <= 0) return 0;
  if (dg_redis_xid_cmp(id, rd->until) > 0) return 1;
  int64_t t0 = dg_mono_us();
  dg_redis_str_t v;
  int has = dg_entry_open_req_with(rd->streams, rd->status, x, &v) == 0;
  rd->us_mac += dg_mono_us() - t0;
  if (rd->cur == NULL) {
    rd->cur = dg_calloc(1, sizeof *rd->cur);
    rd->cur->e = dg_malloc(ARCHIVE_PAGE * sizeof *rd->cur->e);
    dg_buf_init(&rd->cur_buf);
  }
  rentry_t *e = &rd->cur->e[rd->cur->n++];
  e->id = (dg_redis_str_t){(const char *)(uintptr_t)rd->cur_buf.len, x->id.len};
  dg_buf_append(&rd->cur_buf, x->id.ptr, x->id.len);
  e->has = has;
  e->req = (dg_redis_str_t){(const char *)(uintptr_t)rd->cur_buf.len, has ? v.len : 0};
  if (has) dg_buf_append(&rd->cur_buf, v.ptr, v.len);
  rd->at = id;
  return rd->cur->n == ARCHIVE_PAGE && archive_page_queue(rd) ? 2 : 0;
}

/* The archive's segments, in order; 0 when the Redis part may follow. */
static int read_archive(reader_t *rd) {
  char err[512] = "";
  int rc = 0;
  int64_t t0 = dg_mono_us(), w0 = rd->us_wait, m0 = rd->us_mac;
  for (size_t k = rd->seg_a; k < rd->seg_b && rc == 0; k++)
    rc = dg_archive_read(rd->adir, &rd->segs[k], archive_entry, rd, err, sizeof err);
  rd->us_read += dg_mono_us() - t0 - (rd->us_wait - w0) - (rd->us_mac - m0);
  if (rc == 0 || rc == 1) rc = archive_page_queue(rd) ? 2 : 0; /* past --until: the rest is after it too */
  if (rc != 0 && rc != 2) {
    pthread_mutex_lock(&rd->mu);
    rd->failed = rd->refused = 1;
    snprintf(rd->err, sizeof rd->err, "%s", err);
    pthread_mutex_unlock(&rd->mu);
  }
  if (rd->cur) {
    rpage_free(rd->cur);
    rd->cur = NULL;
    dg_buf_dispose(&rd->cur_buf);
  }
  return rc;
}

static void *reader_main(void *arg) {
  reader_t *rd = arg;
  double c0 = thread_cpu_s();
  void *ret = reader_run(rd);
  rd->cpu_s = thread_cpu_s() - c0;
  return ret;
}

static void *reader_run(reader_t *rd) {
  if ((rd->seg_a < rd->seg_b && read_archive(rd) != 0) || dg_redis_xid_cmp(rd->at, rd->last) >= 0) {
    pthread_mutex_lock(&rd->mu);
    rd->done = 1;
    pthread_cond_broadcast(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
    return NULL;
  }
  char cursor[DG_REDIS_XID_BUFSZ + 1], endid[DG_REDIS_XID_BUFSZ], atbuf[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(rd->last, endid, sizeof endid);
  dg_redis_xid_t at = rd->at;
  for (;;) {
    pthread_mutex_lock(&rd->mu);
    while (rd->queued >= AHEAD && !rd->stop) pthread_cond_wait(&rd->cv, &rd->mu);
    int stop = rd->stop;
    pthread_mutex_unlock(&rd->mu);
    if (stop) break;
    dg_redis_xid_format(at, atbuf, sizeof atbuf);
    snprintf(cursor, sizeof cursor, "(%s", atbuf);
    const char *av[] = {"XRANGE", rd->stream, cursor, endid, "COUNT", PAGE};
    rpage_t *pg = dg_calloc(1, sizeof *pg);
    int64_t t0 = dg_mono_us();
    dg_redis_xiter_t it;
    const char *why = NULL;
    if (dg_redis_command(rd->redis, 6, av, NULL, &pg->rep) != 0) why = dg_redis_last_error(rd->redis);
    else if (dg_redis_xiter_init_xrange(&it, pg->rep) != 0) why = "XRANGE answered something else than entries";
    int64_t t1 = dg_mono_us();
    rd->us_read += t1 - t0;
    if (why == NULL) {
      size_t cap = pg->rep->elements;
      pg->e = dg_malloc((cap ? cap : 1) * sizeof *pg->e);
      dg_redis_xentry_t x;
      while (pg->n < cap && dg_redis_xiter_next(&it, &x)) {
        rentry_t *e = &pg->e[pg->n++];
        e->id = x.id;
        e->has = !x.deleted && dg_entry_open_req_with(rd->streams, rd->status, &x, &e->req) == 0;
      }
      rd->us_mac += dg_mono_us() - t1;
      if (pg->n > 0 && dg_redis_xid_parse(pg->e[pg->n - 1].id.ptr, pg->e[pg->n - 1].id.len, &at) != 0)
        why = "an entry id that does not parse";
    }
    int end = why != NULL || pg->n == 0 || dg_redis_xid_cmp(at, rd->last) >= 0;
    pthread_mutex_lock(&rd->mu);
    if (why) {
      rd->failed = 1;
      snprintf(rd->err, sizeof rd->err, "%s", why);
    }
    if (why == NULL && pg->n > 0) {
      if (rd->tail) rd->tail->next = pg;
      else rd->head = pg;
      rd->tail = pg;
      rd->queued++;
      pg = NULL;
    }
    if (end) rd->done = 1;
    pthread_cond_broadcast(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
    if (pg) rpage_free(pg);
    if (end) break;
  }
  return NULL;
}

/* CPU seconds (user + system) of the whole process, and of this thread. */
static double process_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int dg_cli_restore(int argc, char **argv) {
  /* The tail's arrays (requests, audit rows) grow to tens of MB and are
   * freed at each persist: kept in the heap rather than mapped and
   * unmapped each time, they cost no page faults the next time. */
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1024 << 20);
  const char *snap = NULL, *until_s = NULL, *until_time = NULL, *target = NULL;
  char **rest = dg_calloc((size_t)argc + 1, sizeof *rest);
  int nrest = 0;
  for (int i = 0; i < argc; i++) {
    const char **slot = strcmp(argv[i], "--snapshot") == 0     ? &snap
                        : strcmp(argv[i], "--until") == 0      ? &until_s
                        : strcmp(argv[i], "--until-time") == 0 ? &until_time
                        : strcmp(argv[i], "--db") == 0         ? &target
                                                               : NULL;
    if (slot == NULL) {
      rest[nrest++] = argv[i];
      continue;
    }
    if (i + 1 >= argc) {
      dg_free(rest);
      fprintf(stderr, "duckgrid restore: %s needs a value\n", argv[i]);
      return usage();
    }
    *slot = argv[++i];
  }
  if (snap == NULL || target == NULL || (until_s && until_time)) {
    dg_free(rest);
    return usage();
  }
  dg_redis_xid_t until = {UINT64_MAX, UINT64_MAX};
  if (until_s && parse_until(until_s, &until) != 0) {
    fprintf(stderr, "duckgrid restore: --until '%s' is not an update id (ms-seq)\n", until_s);
    dg_free(rest);
    return 2;
  }
  if (until_time) {
    int64_t ms = -1;
    if (dg_parse_rfc3339_ms(until_time, &ms) != 0 || ms < 0) {
      fprintf(stderr, "duckgrid restore: --until-time '%s' is not an ISO time (e.g. 2026-12-05T18:30:00Z)\n",
              until_time);
      dg_free(rest);
      return 2;
    }
    until = (dg_redis_xid_t){(uint64_t)ms, UINT64_MAX};
  }
  if (strcmp(snap, "latest") != 0 && !dg_snapshot_id_ok(snap)) {
    fprintf(stderr, "duckgrid restore: '%s' is not a snapshot id\n", snap);
    dg_free(rest);
    return 2;
  }
  dg_config_t cfg;
  char err[1024];
  umask(077);
  int rc = dg_config_load(&cfg, nrest, rest, err, sizeof err);
  dg_free(rest);
  if (rc != 0) {
    fprintf(stderr, "duckgrid restore: %s\n", err);
    return 2;
  }
  dg_log_setup(DG_LOG_WARN, 0);
  int code = 1;
  char dir[PATH_MAX], tmp[PATH_MAX + 32], tmpwal[PATH_MAX + 40], src[PATH_MAX + 80];
  dg_snapshot_dir(cfg.db_path, dir, sizeof dir);
  snprintf(tmp, sizeof tmp, "%s.restoring", target);
  snprintf(tmpwal, sizeof tmpwal, "%s.wal", tmp);
  json_t *man = NULL;
  dg_db_t *db = NULL;
  dg_auth_t *auth = NULL;
  dg_redis_t *redis = NULL;
  dg_replay_t *rp = NULL;
  int made_tmp = 0;
  dg_redis_url_t url;
  int have_url = 0;
  struct stat st;
  dg_segment_t *segs = NULL;
  size_t nsegs = 0, seg_a = 0, seg_b = 0;

  if (lstat(target, &st) == 0) {
    fprintf(stderr, "duckgrid restore: %s exists; restore never overwrites a file (choose a new path)\n", target);
    goto done;
  }
  man = dg_snapshot_find(dir, snap);
  if (man == NULL) {
    fprintf(stderr, "duckgrid restore: no snapshot '%s' in %s\n", snap, dir);
    goto done;
  }
  const char *sid = json_string_value(json_object_get(man, "id"));
  const char *supd = json_string_value(json_object_get(man, "update_id"));
  const char *ssha = json_string_value(json_object_get(man, "sha256"));
  const char *sfile = json_string_value(json_object_get(man, "file"));
  dg_redis_xid_t from;
  if (supd == NULL || ssha == NULL || sfile == NULL || strchr(sfile, '/') != NULL ||
      dg_redis_xid_parse(supd, strlen(supd), &from) != 0) {
    fprintf(stderr, "duckgrid restore: the manifest of snapshot %s is damaged\n", sid);
    goto done;
  }
  json_int_t sformat = json_is_integer(json_object_get(man, "format")) ? json_integer_value(json_object_get(man, "format")) : 1;
  if (sformat < 1 || sformat > DG_SNAPSHOT_FORMAT) {
    fprintf(stderr, "duckgrid restore: snapshot %s has format %lld, which this duckgrid does not read (formats 1 "
                    "to %d): restore it with a newer duckgrid\n", sid, (long long)sformat, DG_SNAPSHOT_FORMAT);
    goto done;
  }
  if (dg_redis_xid_cmp(until, from) < 0) {
    fprintf(stderr, "duckgrid restore: --until is before snapshot %s (update %s): restore from an older snapshot\n",
            sid, supd);
    goto done;
  }
  if (access(cfg.pepper_file, R_OK) != 0) {
    fprintf(stderr, "duckgrid restore: the server's key pepper file %s is missing: stream entries cannot be "
                    "checked without it (DUCKGRID_KEY_PEPPER_FILE)\n", cfg.pepper_file);
    goto done;
  }
  /* Redis first: refuse before copying anything when entries are gone. */
  dg_redis_opts_t opts;
  memset(&opts, 0, sizeof opts);
  opts.connect_timeout_ms = opts.command_timeout_ms = cfg.redis_timeout_ms;
  opts.tls_ca_file = cfg.redis_ca;
  opts.tls_cert_file = cfg.redis_cert;
  opts.tls_key_file = cfg.redis_key;
  if (dg_redis_url_parse(cfg.redis_url, &url, err, sizeof err) != 0 ||
      (have_url = 1, dg_redis_connect(&url, &opts, &redis, err, sizeof err)) != 0) {
    fprintf(stderr, "duckgrid restore: redis: %s\n", err);
    goto done;
  }
  char req_stream[128];
  snprintf(req_stream, sizeof req_stream, "%srequest_duck", cfg.stream_prefix);
  /* Redis alone, when it still holds everything after the snapshot; else
   * the archive's segments from the snapshot on, then Redis after them. */
  const char *adir = dg_archive_dir();
  if (stream_covers(redis, req_stream, from, err, sizeof err) != 0) {
    char why[1024];
    if (adir == NULL || archive_plan(adir, from, until, &segs, &nsegs, &seg_a, &seg_b, why, sizeof why) != 0) {
      fprintf(stderr, "duckgrid restore: refused: %s%s%s\n", err, adir ? "; the archive: " : "", adir ? why : "");
      goto done;
    }
    if (dg_redis_xid_cmp(segs[seg_b - 1].last, until) < 0 &&
        stream_covers(redis, req_stream, segs[seg_b - 1].last, err, sizeof err) != 0) {
      fprintf(stderr, "duckgrid restore: refused: the archive ends at %" PRIu64 "-%" PRIu64 " and %s\n",
              segs[seg_b - 1].last.ms, segs[seg_b - 1].last.seq, err);
      goto done;
    }
  }

  snprintf(src, sizeof src, "%s/%s", dir, sfile);
  char hex[65];
  unlink(tmpwal);
  if (lstat(tmp, &st) == 0) {
    fprintf(stderr, "duckgrid restore: %s exists (an earlier restore that stopped?); remove it first\n", tmp);
    goto done;
  }
  made_tmp = 1;
  if (copy_hashed(src, tmp, hex, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid restore: %s\n", err);
    goto done;
  }
  if (strcmp(hex, ssha) != 0) {
    fprintf(stderr, "duckgrid restore: refused: snapshot %s is corrupt: its file's SHA-256 is %s, the manifest "
                    "says %s\n", sid, hex, ssha);
    goto done;
  }
  /* The open rebuilds a format-2 snapshot's keys and indexes (snapshot.c)
   * before anything reads it. */
  int64_t t_open = dg_mono_us();
  if (dg_db_open(tmp, 1, &db, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid restore: cannot open the copy: %s\n", err);
    goto done;
  }
  double open_s = (double)(dg_mono_us() - t_open) / 1e6;
  double rebuild_s = dg_db_rebuild_ms(db) >= 0 ? (double)dg_db_rebuild_ms(db) / 1e3 : 0.0;
  if (dg_auth_create(db, cfg.pepper_file, &auth, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid restore: %s\n", err);
    goto done;
  }
  /* The entries' MACs are checked as the manager checks them. */
  dg_streams_t streams;
  dg_node_status_t status;
  memset(&streams, 0, sizeof streams);
  memset(&status, 0, sizeof status);
  dg_auth_derive(auth, DG_ENTRY_KEY_LABEL, streams.mac_key);
  snprintf(streams.req, sizeof streams.req, "%s", req_stream);
  if (dg_replay_open(db, &rp, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid restore: cannot load the snapshot: %s\n", err);
    goto done;
  }
  {
    /* Requests the leader rejected as poison are rejected here too. */
    char pkey[160];
    snprintf(pkey, sizeof pkey, "%s" DG_POISONED_SUFFIX, req_stream);
    const char *av[] = {"HGETALL", pkey};
    redisReply *rep = NULL;
    if (dg_redis_command(redis, 2, av, NULL, &rep) == 0) {
      for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i + 1]->type == REDIS_REPLY_STRING)
          dg_replay_poisoned(rp, rep->element[i]->str, atoi(rep->element[i + 1]->str));
      freeReplyObject(rep);
    }
  }
  if (strcmp(dg_replay_at(rp), supd) != 0) {
    fprintf(stderr, "duckgrid restore: snapshot %s holds update %s, its manifest says %s\n", sid, dg_replay_at(rp),
            supd);
    goto done;
  }
  /* The end: --until, or the stream's last entry now. */
  dg_redis_xid_t last = until;
  {
    const char *av[] = {"XREVRANGE", req_stream, "+", "-", "COUNT", "1"};
    redisReply *rep = NULL;
    if (dg_redis_command(redis, 6, av, NULL, &rep) == 0) {
      dg_redis_xiter_t it;
      dg_redis_xentry_t e;
      dg_redis_xid_t top;
      if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
          dg_redis_xid_parse(e.id.ptr, e.id.len, &top) == 0 && dg_redis_xid_cmp(top, last) < 0)
        last = top;
      freeReplyObject(rep);
    }
  }
  if (seg_b > 0 && dg_redis_xid_cmp(segs[seg_b - 1].last, last) > 0)
    last = dg_redis_xid_cmp(segs[seg_b - 1].last, until) < 0 ? segs[seg_b - 1].last : until;
  int64_t t0 = dg_mono_us(), shown = 0, us_mac = 0, us_read = 0;
  double reader_cpu_s = 0;
  /* CPU, beside the wall time: what the replay costs whatever else runs. */
  double cpu0 = process_cpu_s(), tcpu0 = thread_cpu_s();
  dg_redis_xid_t at = from;
  int failed = 0;
  {
    /* A reader thread reads the archive's segments (if the plan has any),
     * then request_duck's pages after them, and checks them, ahead of this
     * thread, which applies. */
    reader_t rd;
    memset(&rd, 0, sizeof rd);
    rd.redis = redis;
    rd.streams = &streams;
    rd.status = &status;
    rd.stream = req_stream;
    rd.adir = adir;
    rd.segs = segs;
    rd.seg_a = seg_a;
    rd.seg_b = seg_b;
    rd.until = until;
    rd.at = at;
    rd.last = last;
    pthread_mutex_init(&rd.mu, NULL);
    pthread_cond_init(&rd.cv, NULL);
    pthread_t rth;
    int want = seg_a < seg_b || dg_redis_xid_cmp(at, last) < 0;
    int started = want && pthread_create(&rth, NULL, reader_main, &rd) == 0;
    if (want && !started) {
      fprintf(stderr, "\nduckgrid restore: cannot start the reader thread\n");
      failed = 1;
    }
    if (!started) rd.done = 1;
    while (!failed) {
      pthread_mutex_lock(&rd.mu);
      while (rd.head == NULL && !rd.done) pthread_cond_wait(&rd.cv, &rd.mu);
      rpage_t *pg = rd.head;
      if (pg) {
        rd.head = pg->next;
        if (rd.head == NULL) rd.tail = NULL;
        rd.queued--;
        pthread_cond_broadcast(&rd.cv);
      }
      pthread_mutex_unlock(&rd.mu);
      if (pg == NULL) break;
      for (size_t i = 0; i < pg->n && !failed; i++) {
        const rentry_t *e = &pg->e[i];
        if (dg_replay_apply(rp, e->id.ptr, e->id.len, e->has ? e->req.ptr : NULL, e->has ? e->req.len : 0, err,
                            sizeof err) != 0) {
          fprintf(stderr, "\nduckgrid restore: applying %.*s: %s\n", (int)e->id.len, e->id.ptr, err);
          failed = 1;
        }
        dg_redis_xid_parse(e->id.ptr, e->id.len, &at);
      }
      rpage_free(pg);
      if (dg_mono_us() - shown >= 500 * 1000) {
        progress(dg_replay_count(rp), at, from, last, t0, 0);
        shown = dg_mono_us();
      }
    }
    pthread_mutex_lock(&rd.mu);
    rd.stop = 1;
    pthread_cond_broadcast(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
    if (started) pthread_join(rth, NULL);
    while (rd.head) {
      rpage_t *pg = rd.head;
      rd.head = pg->next;
      rpage_free(pg);
    }
    if (!failed && rd.failed) {
      fprintf(stderr, "\nduckgrid restore: %s: %s\n", rd.refused ? "refused" : "redis", rd.err);
      failed = 1;
    }
    us_read = rd.us_read;
    reader_cpu_s = rd.cpu_s;
    us_mac += rd.us_mac;
    pthread_mutex_destroy(&rd.mu);
    pthread_cond_destroy(&rd.cv);
  }
  if (failed) goto done;
  if (dg_replay_flush(rp, err, sizeof err) != 0) {
    fprintf(stderr, "\nduckgrid restore: writing the state: %s\n", err);
    goto done;
  }
  progress(dg_replay_count(rp), at, from, last, t0, 1);
  char final_at[DG_REDIS_XID_BUFSZ];
  snprintf(final_at, sizeof final_at, "%s", dg_replay_at(rp));
  size_t replayed = dg_replay_count(rp);
  double rate_s = (double)(dg_mono_us() - t0) / 1e6;
  double cpu_s = process_cpu_s() - cpu0, apply_cpu_s = thread_cpu_s() - tcpu0;
  double t_apply, t_batch, t_persist;
  dg_replay_times(rp, &t_apply, &t_batch, &t_persist);
  double t_bg = dg_replay_persist_thread_s(rp);
  dg_replay_close(rp);
  rp = NULL;
  dg_auth_destroy(auth);
  auth = NULL;
  dg_db_close(db); /* checkpoints: no WAL left */
  db = NULL;
  if (lstat(tmpwal, &st) == 0) {
    fprintf(stderr, "duckgrid restore: DuckDB left a WAL behind (%s)\n", tmpwal);
    goto done;
  }
  if (link(tmp, target) != 0) {
    fprintf(stderr, "duckgrid restore: cannot put the result at %s: %s\n", target, strerror(errno));
    goto done;
  }
  unlink(tmp);
  made_tmp = 0;
  {
    /* The pepper goes along, so a server on the new file knows the keys. */
    char pep[PATH_MAX + 16];
    snprintf(pep, sizeof pep, "%s.pepper", target);
    if (lstat(pep, &st) != 0 && strcmp(pep, cfg.pepper_file) != 0) {
      char ignored[65], perr[256];
      if (copy_hashed(cfg.pepper_file, pep, ignored, perr, sizeof perr) != 0)
        fprintf(stderr, "duckgrid restore: note: %s\n", perr);
    }
  }
  {
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:f,s:s,s:I,s:f,s:f,s:{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}}", "snapshot", sid,
                          "snapshot_update_id", supd, "update_id", final_at, "replayed", (json_int_t)replayed,
                          "seconds", rate_s, "db", target, "snapshot_format", sformat, "open_s", open_s,
                          "rebuild_s", rebuild_s, "profile", "apply_s", t_apply, "batch_s", t_batch, "persist_s",
                          t_persist, "persister_s", t_bg, "mac_s", (double)us_mac / 1e6, "read_s",
                          (double)us_read / 1e6, "cpu_s", cpu_s, "applier_cpu_s", apply_cpu_s,
                          "reader_cpu_s", reader_cpu_s);
    char *text = json_dumps(o, JSON_SORT_KEYS);
    printf("%s\n", text);
    free(text);
    json_decref(o);
  }
  code = 0;

done:
  if (rp) dg_replay_close(rp);
  dg_auth_destroy(auth);
  dg_db_close(db);
  if (made_tmp) {
    unlink(tmp);
    unlink(tmpwal);
  }
  dg_redis_destroy(redis);
  if (have_url) dg_redis_url_dispose(&url);
  json_decref(man);
  dg_free(segs);
  dg_config_dispose(&cfg);
  return code;
}
