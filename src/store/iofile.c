/*
 * iofile.c -- scratch files for import and export: see dg/iofile.h.
 */
#include "dg/iofile.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/log.h"
#include "dg/snapshot.h"

static pthread_mutex_t sweep_lock = PTHREAD_MUTEX_INITIALIZER;
static int swept;

/* Removes what an earlier process left in the io directory: only files
 * older than a minute, so a sibling process sharing the directory (two
 * servers on one snapshot directory) keeps the files it is using. */
static void sweep(const char *sweep_dir) {
  DIR *d = opendir(sweep_dir);
  if (d == NULL) return;
  time_t now = time(NULL);
  struct dirent *e;
  int removed = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[DG_IOFILE_PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", sweep_dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > 60 && unlink(p) == 0) removed++;
  }
  closedir(d);
  if (removed) dg_log_info("removed %d leftover import/export file(s) from %s", removed, sweep_dir);
}

int dg_iofile_path(const char *db_path, const char *kind, const char *ext, char *out, size_t cap) {
  char dir[DG_IOFILE_PATH_MAX];
  dg_snapshot_dir(db_path, dir, sizeof dir - 4);
  size_t n = strlen(dir);
  snprintf(dir + n, sizeof dir - n, "/io");
  if (dg_fs_mkdir_p(dir) != 0) return DG_EIO;
  pthread_mutex_lock(&sweep_lock);
  if (!swept) sweep(dir);
  swept = 1;
  pthread_mutex_unlock(&sweep_lock);
  unsigned char raw[12];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    errno = EIO;
    return DG_EIO;
  }
  char hex[2 * sizeof raw + 1];
  for (size_t i = 0; i < sizeof raw; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  int w = snprintf(out, cap, "%s/%s-%s.%s", dir, kind, hex, ext);
  if (w < 0 || (size_t)w >= cap) {
    errno = ENAMETOOLONG;
    return DG_EIO;
  }
  return 0;
}

void dg_iofile_sql_literal(dg_buf_t *sql, const char *path) {
  dg_buf_putc(sql, '\'');
  for (const char *p = path; *p; p++) {
    if (*p == '\'') dg_buf_putc(sql, '\'');
    dg_buf_putc(sql, *p);
  }
  dg_buf_putc(sql, '\'');
}
