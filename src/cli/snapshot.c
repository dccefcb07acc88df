/*
 * snapshot.c -- `duckgrid snapshot [options]`: a snapshot of the database
 * file of the configuration (DUCKGRID_DB / --db) while no server has it
 * open (DuckDB lets one process open a file); prints the manifest. A
 * running server takes one with POST /admin/snapshots instead.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dg/cli.h"
#include "dg/common.h"
#include "dg/config.h"
#include "dg/db.h"
#include "dg/snapshot.h"

int dg_cli_snapshot(int argc, char **argv) {
  dg_config_t cfg;
  char err[512];
  umask(077);
  if (dg_config_load(&cfg, argc, argv, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid snapshot: %s\n", err);
    return 2;
  }
  struct stat st;
  if (stat(cfg.db_path, &st) != 0) {
    fprintf(stderr, "duckgrid snapshot: no database at %s\n", cfg.db_path);
    dg_config_dispose(&cfg);
    return 1;
  }
  dg_db_t *db = NULL;
  if (dg_db_open(cfg.db_path, 1, &db, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid snapshot: %s\n", err);
    if (strstr(err, "lock") != NULL)
      fprintf(stderr, "duckgrid snapshot: a running server has the database open: ask it instead, "
                      "POST /admin/snapshots with an admin key\n");
    dg_config_dispose(&cfg);
    return 1;
  }
  char dir[4096];
  dg_snapshot_dir(cfg.db_path, dir, sizeof dir);
  json_t *m = NULL;
  int rc = dg_snapshot_take(dg_db_conn(db), dir, dg_db_schema_version(db), NULL, &m, err, sizeof err);
  if (rc == 0) {
    long keep, max_age_s;
    dg_snapshot_retention(&keep, &max_age_s);
    dg_snapshot_prune(dir, keep, max_age_s);
  }
  dg_db_close(db);
  if (rc != 0) {
    fprintf(stderr, "duckgrid snapshot: %s\n", err);
    dg_config_dispose(&cfg);
    return 1;
  }
  char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", text);
  free(text);
  json_decref(m);
  dg_config_dispose(&cfg);
  return 0;
}
