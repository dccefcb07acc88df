/*
 * rows.c -- rows read from the manager's state in memory (issue 13: an
 * authenticated GET /tables/{t}/rows/{id} without a DuckDB statement).
 *
 * The engine holds every row of every table; DuckDB is written behind it.
 * Between batches the engine is exactly the log applied up to the last
 * request handed over, every outcome of which is in response_duck: what a
 * read that must reflect every answered write wants, without waiting for
 * the persister. A point read through DuckDB costs several hundred µs of
 * CPU (parse, bind, plan, a transaction, a materialized result); here it is
 * a hash look-up under state_lock.
 *
 * When the state in memory cannot answer -- the manager is not leading or
 * following (nothing loaded, or the state was dropped), a DDL request is
 * between its apply and its commit, the state is behind what the read
 * must reflect (a ?min_update above it; an async write not applied yet
 * after up to a second's wait, DG_ROWREAD_CATCH), or its table differs
 * from the caller's definition (dropped and made again meanwhile) -- the
 * answer is DG_EUNAVAIL and the caller reads DuckDB as before. The same
 * goes for a page of one parent's children or of the roots, which the
 * engine keeps in id order.
 *
 * Lock: state_lock, for the look-up and the callback. The manager holds it
 * for a batch's apply and publish (milliseconds); the persister for the
 * copy of a tail's rows. An HTTP loop only tries it (DG_ROWREAD_TRY): a
 * loop that finds it taken hands the read to a worker, which waits.
 */
#include <string.h>
#include <time.h>

#include "dg/catalog.h"
#include "dg/engine.h"
#include "dg/row.h"
#include "internal.h"

/* The callers' cells on the stack up to this many columns, beyond it on
 * the heap (DG_MAX_COLUMNS is 256). */
#define CELLS_ON_STACK 32
/* The longest a read waits for the state to reach what it must reflect
 * before it goes the DuckDB way (which waits again, for the persister). */
#define CATCH_UP_MS 1000

/* 1 when the manager's definition of a table is the caller's: the same
 * columns in the same order. Definitions are immutable, so a table dropped
 * and made again with other columns shows here. */
static int same_def(const dg_tabledef_t *a, const dg_tabledef_t *b) {
  if (a == b) return 1;
  if (a->ncols != b->ncols || a->nnum != b->nnum || a->ntext != b->ntext) return 0;
  for (int i = 0; i < a->ncols; i++) {
    const dg_coldef_t *x = &a->cols[i], *y = &b->cols[i];
    if (x->type != y->type || x->slot != y->slot || (x->type == DG_COL_NUMBER && x->scale != y->scale) ||
        strcmp(x->name, y->name) != 0)
      return 0;
  }
  return 1;
}

static const mtable_t *find_table(const dg_manager_t *m, const char *name) {
  for (uint32_t i = 0; i < m->ntables; i++) {
    const mtable_t *t = m->tables[i];
    if (t != NULL && strcmp(t->def->name, name) == 0) return t;
  }
  return NULL;
}

/* Hands fn row id of t as the caller's definition orders it (state_lock
 * held). nums, cells: room for def's columns. 1, or 0 when there is no
 * such row. */
static int emit(const mtable_t *t, const dg_tabledef_t *def, int64_t id, int64_t *nums, dg_cell_t *cells,
                dg_row_fn fn, void *fnarg) {
  dg_erow_t er;
  if (dg_etable_row_read(t->et, id, &er, nums) != 0) return 0;
  for (int c = 0; c < def->ncols; c++) {
    const dg_coldef_t *col = &def->cols[c];
    dg_cell_t *cell = &cells[c];
    memset(cell, 0, sizeof *cell);
    if (col->type == DG_COL_NUMBER) {
      cell->num = nums[col->slot];
      cell->scale = col->scale;
    } else if (dg_etable_text_get(t->et, id, (uint32_t)col->slot, &cell->str, &cell->len) != 0 ||
               cell->str == NULL) {
      cell->null = 1;
    }
  }
  dg_row_t row = {
      .id = er.id,
      .parent_id = er.parent_id == DG_ROW_NONE ? 0 : er.parent_id,
      .has_parent = er.parent_id != DG_ROW_NONE,
      .cells = cells,
      .children = er.nchildren,
  };
  fn(fnarg, &row);
  return 1;
}

/* The table, when the state may answer a read that must reflect want
 * (state_lock held); *at the update it reflects. */
static const mtable_t *readable(const dg_manager_t *m, const dg_tabledef_t *def, const dg_redis_xid_t *want,
                                dg_redis_xid_t *at) {
  if (!m->rd_ok) return NULL;
  if (want && dg_redis_xid_cmp(*want, m->rd_at) > 0) return NULL;
  const mtable_t *t = find_table(m, def->name);
  if (t == NULL || !same_def(t->def, def)) return NULL;
  *at = m->rd_at;
  return t;
}

/* state_lock held. */
static int read_locked(const dg_manager_t *m, const dg_tabledef_t *def, int64_t id, const dg_redis_xid_t *want,
                       dg_row_fn fn, void *fnarg, dg_redis_xid_t *at) {
  const mtable_t *t = readable(m, def, want, at);
  if (t == NULL) return DG_EUNAVAIL;
  if (id == DG_ROW_NONE) return 0;
  int64_t nums_stack[CELLS_ON_STACK];
  dg_cell_t cells_stack[CELLS_ON_STACK];
  int64_t *nums = def->nnum <= CELLS_ON_STACK ? nums_stack : dg_malloc((size_t)def->nnum * sizeof *nums);
  dg_cell_t *cells = def->ncols <= CELLS_ON_STACK ? cells_stack : dg_malloc((size_t)def->ncols * sizeof *cells);
  int found = emit(t, def, id, nums, cells, fn, fnarg);
  if (nums != nums_stack) dg_free(nums);
  if (cells != cells_stack) dg_free(cells);
  return found;
}

/* state_lock held. */
static int page_locked(const dg_manager_t *m, const dg_tabledef_t *def, int64_t parent, int64_t after, size_t limit,
                       const dg_redis_xid_t *want, dg_row_fn fn, void *fnarg, int *more, dg_redis_xid_t *at) {
  const mtable_t *t = readable(m, def, want, at);
  if (t == NULL) return DG_EUNAVAIL;
  *more = 0;
  int64_t *ids = dg_malloc((limit + 1) * sizeof *ids);
  size_t n = 0;
  /* A parent that does not exist has no children: an empty page, as the
   * DuckDB statement gives. */
  if (dg_etable_children_get(t->et, parent, after, ids, limit + 1, &n) != 0) n = 0;
  if (n > limit) {
    *more = 1;
    n = limit;
  }
  int64_t nums_stack[CELLS_ON_STACK];
  dg_cell_t cells_stack[CELLS_ON_STACK];
  int64_t *nums = def->nnum <= CELLS_ON_STACK ? nums_stack : dg_malloc((size_t)def->nnum * sizeof *nums);
  dg_cell_t *cells = def->ncols <= CELLS_ON_STACK ? cells_stack : dg_malloc((size_t)def->ncols * sizeof *cells);
  for (size_t i = 0; i < n; i++) emit(t, def, ids[i], nums, cells, fn, fnarg);
  if (nums != nums_stack) dg_free(nums);
  if (cells != cells_stack) dg_free(cells);
  dg_free(ids);
  return 0;
}

/* Takes state_lock as mode says (row.h). With DG_ROWREAD_CATCH, when the
 * state is readable but behind want -- a write this node answered 202 that
 * the manager has not applied yet, or an outcome this node's reader saw
 * before the manager handed its batch over -- waits for it up to
 * CATCH_UP_MS: the next batch is usually milliseconds away, and DuckDB,
 * the other way, would have to be flushed and then read. */
static int lock(dg_manager_t *m, int mode, const dg_redis_xid_t *want) {
  if (mode == DG_ROWREAD_TRY)
    return pthread_mutex_trylock(&m->state_lock) == 0 ? 0 : DG_EUNAVAIL; /* a batch, a persist's copy */
  pthread_mutex_lock(&m->state_lock);
  if (mode != DG_ROWREAD_CATCH || want == NULL || !m->rd_ok || dg_redis_xid_cmp(*want, m->rd_at) <= 0) return 0;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += (long)CATCH_UP_MS * 1000000L;
  until.tv_sec += until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  while (m->rd_ok && dg_redis_xid_cmp(*want, m->rd_at) > 0)
    if (pthread_cond_timedwait(&m->rd_cond, &m->state_lock, &until) != 0) break;
  return 0;
}

int dg__mgr_rows_read(void *arg, const struct dg_tabledef_s *def, int64_t parent, int64_t after, size_t limit,
                      const struct dg_redis_xid_s *want, int mode,
                      void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg, int *more,
                      struct dg_redis_xid_s *at) {
  dg_manager_t *m = arg;
  if (lock(m, mode, want) != 0) return DG_EUNAVAIL;
  int rc = page_locked(m, def, parent, after, limit, want, fn, fnarg, more, at);
  pthread_mutex_unlock(&m->state_lock);
  return rc;
}

int dg__mgr_row_read(void *arg, const struct dg_tabledef_s *def, int64_t id, const struct dg_redis_xid_s *want,
                     int mode, void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg,
                     struct dg_redis_xid_s *at) {
  dg_manager_t *m = arg;
  if (lock(m, mode, want) != 0) return DG_EUNAVAIL;
  int rc = read_locked(m, def, id, want, fn, fnarg, at);
  pthread_mutex_unlock(&m->state_lock);
  return rc;
}
