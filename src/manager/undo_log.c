/*
 * undo_log.c -- a compact revert's records read from the audit log
 * (dg.cell_log), for an update the undo cache (undo.c) does not hold.
 * Apart from undo.c so that the apply fuzzer links the cache without DuckDB.
 */
#include <string.h>

#include "dg/common.h"
#include "dg/dgsql.h"
#include "internal.h"

static size_t cell_bytes(const mundo_cell_t *c) {
  return sizeof *c + (c->old_text ? strlen(c->old_text) + 1 : 0) + (c->new_text ? strlen(c->new_text) + 1 : 0);
}

/* ---- from the audit log -------------------------------------------------------- */

typedef struct {
  int32_t id;
  mtable_t *t;               /* NULL: the table is gone */
  const dg_coldef_t *c;      /* NULL: a row record, or the column is gone */
  int row_record;
} colmap_t;

static char *text_at(duckdb_vector v, idx_t i) {
  uint64_t *valid = duckdb_vector_get_validity(v);
  if (valid && !duckdb_validity_row_is_valid(valid, i)) return NULL;
  duckdb_string_t *s = &((duckdb_string_t *)duckdb_vector_get_data(v))[i];
  return dg_strndup(duckdb_string_t_data(s), duckdb_string_t_length(*s));
}

static int is_null_at(duckdb_vector v, idx_t i) {
  uint64_t *valid = duckdb_vector_get_validity(v);
  return valid && !duckdb_validity_row_is_valid(valid, i);
}

int dg__mgr_undo_load(dg_manager_t *m, dg_redis_xid_t id, char *err, size_t errcap) {
  dg__mgr_undo_free(&m->undo_loaded);
  mundo_t *u = &m->undo_loaded;
  u->id = id;
  colmap_t *cols = NULL;
  size_t ncols = 0;
  duckdb_result res;
  memset(&res, 0, sizeof res);
  duckdb_prepared_statement st = NULL;
  int rc = DG_EIO;
  /* The names of the audit's columns, resolved against the state now. */
  if (duckdb_query(m->conn, dg_sql_audit_cols_names, &res) == DuckDBError) {
    snprintf(err, errcap, "reading dg.audit_cols: %s", duckdb_result_error(&res));
    goto out;
  }
  ncols = duckdb_row_count(&res);
  cols = dg_calloc(ncols + 1, sizeof *cols);
  for (idx_t i = 0; i < ncols; i++) {
    char *tn = duckdb_value_varchar(&res, 1, i), *cn = duckdb_value_varchar(&res, 2, i);
    cols[i].id = duckdb_value_int32(&res, 0, i);
    cols[i].t = dg__mgr_table(m, tn);
    cols[i].row_record = cn == NULL;
    cols[i].c = cols[i].t && cn ? dg_tabledef_col(cols[i].t->def, cn) : NULL;
    duckdb_free(tn);
    duckdb_free(cn);
  }
  duckdb_destroy_result(&res);
  memset(&res, 0, sizeof res);
  /* The records in the order they were appended: the order of apply. */
  if (duckdb_prepare(m->conn, dg_sql_cell_log_of, &st) == DuckDBError) {
    snprintf(err, errcap, "preparing the audit read: %s", duckdb_prepare_error(st));
    goto out;
  }
  duckdb_bind_int64(st, 1, (int64_t)id.ms);
  duckdb_bind_int64(st, 2, (int64_t)id.seq);
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    snprintf(err, errcap, "reading the audit log: %s", duckdb_result_error(&res));
    goto out;
  }
  size_t cap = 0;
  duckdb_data_chunk ch;
  int32_t last_col = INT32_MIN;
  const colmap_t *cm = NULL;
  while ((ch = duckdb_fetch_chunk(res)) != NULL) {
    idx_t n = duckdb_data_chunk_get_size(ch);
    duckdb_vector vrow = duckdb_data_chunk_get_vector(ch, 0), vcol = duckdb_data_chunk_get_vector(ch, 1),
                  vold = duckdb_data_chunk_get_vector(ch, 2), vnew = duckdb_data_chunk_get_vector(ch, 3),
                  vot = duckdb_data_chunk_get_vector(ch, 4), vnt = duckdb_data_chunk_get_vector(ch, 5);
    const int64_t *rows = duckdb_vector_get_data(vrow), *olds = duckdb_vector_get_data(vold),
                  *news = duckdb_vector_get_data(vnew);
    const int32_t *cids = duckdb_vector_get_data(vcol);
    if (u->n + n > cap) {
      cap = (u->n + n) * 2;
      u->cells = dg_realloc(u->cells, cap * sizeof *u->cells);
    }
    for (idx_t i = 0; i < n; i++) {
      if (cm == NULL || cids[i] != last_col) {
        cm = NULL;
        for (size_t k = 0; k < ncols; k++)
          if (cols[k].id == cids[i]) cm = &cols[k];
        last_col = cids[i];
      }
      mundo_cell_t *c = &u->cells[u->n++];
      *c = (mundo_cell_t){.row = rows[i], .has_old = !is_null_at(vold, i), .old_num = olds[i], .new_num = news[i]};
      int has_text = !is_null_at(vot, i) || !is_null_at(vnt, i);
      if (cm == NULL || cm->row_record) {
        c->kind = MUNDO_OTHER;
      } else if (cm->t == NULL || cm->c == NULL) {
        c->kind = MUNDO_GONE;
      } else if (cm->c->type == DG_COL_NUMBER) {
        c->kind = has_text ? MUNDO_OTHER : MUNDO_NUM; /* text on a number column: a hold */
        c->tag = cm->t->tag;
        c->col = (int32_t)(cm->c - cm->t->def->cols);
        if (is_null_at(vnew, i)) c->new_num = 0;
      } else {
        c->kind = MUNDO_TEXT;
        c->tag = cm->t->tag;
        c->col = (int32_t)(cm->c - cm->t->def->cols);
        c->has_old = 1;
        c->old_text = text_at(vot, i);
        c->new_text = text_at(vnt, i);
      }
      u->bytes += cell_bytes(c);
    }
    duckdb_destroy_data_chunk(&ch);
  }
  u->loaded = 1;
  rc = 0;
out:
  dg_free(cols);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  if (rc != 0) dg__mgr_undo_free(u);
  return rc;
}

