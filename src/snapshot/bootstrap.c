/*
 * bootstrap.c -- a node without a database file: from the log, from the
 * newest snapshot the log still follows, or not at all (bootstrap.h).
 * The copied file is opened by the server's dg_db_open, which rebuilds a
 * format-2 snapshot's keys and indexes first (snapshot.c).
 */
#include "dg/bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dg/common.h"
#include "dg/log.h"
#include "dg/snapshot.h"
#include "dg/streamlog.h"

/* Copies src to dst (created 0600, must not exist), synced. */
static int copy_file(const char *src, const char *dst) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return DG_EIO;
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    close(in);
    return DG_EIO;
  }
  char buf[1 << 16];
  ssize_t n;
  int rc = 0;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        rc = DG_EIO;
        break;
      }
      off += w;
    }
    if (rc) break;
  }
  if (n < 0) rc = DG_EIO;
  if (rc == 0 && fsync(out) != 0) rc = DG_EIO;
  close(in);
  if (close(out) != 0) rc = DG_EIO;
  return rc;
}

int dg_bootstrap(const char *db_path, const dg_redis_url_t *url, const dg_redis_opts_t *opts, const char *req_stream,
                 char *err, size_t errcap) {
  struct stat st;
  if (stat(db_path, &st) == 0 || errno != ENOENT) return 0;
  dg_redis_t *r = NULL;
  char why[320];
  if (dg_redis_connect(url, opts, &r, why, sizeof why) != 0) {
    /* Said once by the rest of the start (and the manager checks the log
     * again before it follows or leads). */
    dg_redis_destroy(r);
    return 0;
  }
  int rc = dg_streamlog_covers(r, req_stream, (dg_redis_xid_t){0, 0}, why, sizeof why);
  if (rc != DG_EGONE) {
    dg_redis_destroy(r);
    return 0; /* the log from its start (or Redis does not say) */
  }
  char dir[PATH_MAX];
  dg_snapshot_dir(db_path, dir, sizeof dir);
  json_t *all = dg_snapshot_list(dir);
  json_t *pick = NULL;
  for (size_t i = json_array_size(all); i-- > 0 && pick == NULL;) {
    json_t *m = json_array_get(all, i);
    const char *uid = json_string_value(json_object_get(m, "update_id"));
    json_t *fmt = json_object_get(m, "format"); /* absent: format 1 */
    dg_redis_xid_t x;
    char w2[320];
    if (fmt && (!json_is_integer(fmt) || json_integer_value(fmt) < 1 ||
                json_integer_value(fmt) > DG_SNAPSHOT_FORMAT)) {
      dg_log_warn("bootstrap: snapshot %s has a format this duckgrid does not read; not used",
                  json_string_value(json_object_get(m, "id")));
      continue;
    }
    if (uid && dg_redis_xid_parse(uid, strlen(uid), &x) == 0 &&
        dg_streamlog_covers(r, req_stream, x, w2, sizeof w2) == 0)
      pick = m;
  }
  dg_redis_destroy(r);
  if (pick == NULL) {
    snprintf(err, errcap,
             "this node has no database (%s) and cannot start from the log: %s; no snapshot in %s is recent "
             "enough to follow from. Restore one with `duckgrid restore --snapshot latest --db %s` (it reads "
             "the archive too), copy another node's database there, or set DUCKGRID_SNAPSHOT_DIR to where "
             "the snapshots are",
             db_path, why, dir, db_path);
    json_decref(all);
    return DG_EGONE;
  }
  const char *file = json_string_value(json_object_get(pick, "file"));
  const char *sha = json_string_value(json_object_get(pick, "sha256"));
  const char *id = json_string_value(json_object_get(pick, "id"));
  char src[PATH_MAX + 256], tmp[PATH_MAX + 32], hex[65];
  snprintf(src, sizeof src, "%s/%s", dir, file ? file : "");
  snprintf(tmp, sizeof tmp, "%s.bootstrapping", db_path);
  unlink(tmp);
  uint64_t bytes = 0;
  rc = file && sha ? copy_file(src, tmp) : DG_EIO;
  if (rc == 0 && (dg_sha256_file(tmp, hex, &bytes) != 0 || strcmp(hex, sha) != 0)) {
    snprintf(err, errcap, "snapshot %s (%s) does not match its manifest's SHA-256: not used", id ? id : "?", src);
    unlink(tmp);
    json_decref(all);
    return DG_EIO;
  }
  if (rc != 0 || rename(tmp, db_path) != 0) {
    snprintf(err, errcap, "cannot copy snapshot %s to %s: %s", id ? id : "?", db_path, strerror(errno));
    unlink(tmp);
    json_decref(all);
    return DG_EIO;
  }
  dg_log_warn("bootstrap: this node had no database and %s no longer holds the log from its start: it starts "
              "from snapshot %s (update %s, %llu bytes; its keys are rebuilt as it opens) and follows the log "
              "from there",
              req_stream, id, json_string_value(json_object_get(pick, "update_id")), (unsigned long long)bytes);
  json_decref(all);
  return 0;
}
