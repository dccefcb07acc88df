/*
 * bench_engine.c -- the engine's speed and memory figures (compute only: no
 * I/O). Prints; asserts nothing about time.
 *
 *   1. spread: one root over 1,000,000 leaves three levels down
 *      (1 -> 100 -> 100 -> 100), proportional, all 1,010,101 cells change;
 *      target <= 30 ms.
 *   2. leaf writes: 1,000,000 writes with roll-up at depth 4
 *      (1 -> 10 -> 10 -> 100 -> 100 leaves), random and sequential order;
 *      target >= 5,000,000 writes/s.
 *   3. memory and bulk load at 10M number cells, two shapes: 10M rows x 1
 *      column and 1M rows x 10 columns, rows fed in shuffled order; target
 *      <= 40 B per number cell + 64 B per row, load well under 5 s.
 *
 * Usage: bench_engine [quick|memory]   ("quick" divides the sizes by 10;
 *        "memory" runs part 3 only)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg/engine.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * 4;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_engine: %s: %s\n", what, dg_strerror(rc));
  exit(1);
}

/* A full tree with fan-outs fan[0..levels), ids in breadth-first order from
 * 1, leaves random 1..1000 units, loaded through the bulk loader. */
static dg_etable_t *build_tree(const int *fan, int levels, int64_t *first_leaf, int64_t *nleaves) {
  uint8_t sc = 2;
  dg_etable_opts_t o = {.scales = &sc, .nnum = 1};
  dg_etable_t *t;
  int rc = dg_etable_create(&o, &t);
  if (rc) die("create", rc);
  int64_t count = 1, width = 1;
  for (int l = 0; l < levels; l++) width *= fan[l], count += width;
  if ((rc = dg_etable_load_begin(t, (size_t)count))) die("load_begin", rc);
  int64_t zero = 0;
  if ((rc = dg_etable_load_row(t, 1, DG_ROW_NONE, &zero, NULL))) die("load_row", rc);
  int64_t level_start = 1, level_n = 1, next = 2;
  for (int l = 0; l < levels; l++) {
    for (int64_t p = level_start; p < level_start + level_n; p++)
      for (int k = 0; k < fan[l]; k++) {
        int64_t v = l == levels - 1 ? (int64_t)(1 + rnd() % 1000) : 0;
        if ((rc = dg_etable_load_row(t, next++, p, &v, NULL))) die("load_row", rc);
      }
    level_start += level_n;
    level_n *= fan[l];
  }
  if ((rc = dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE))) die("load_finish", rc);
  *first_leaf = level_start;
  *nleaves = level_n;
  return t;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_spread(int quick) {
  int fan[3] = {100, 100, quick ? 10 : 100};
  int64_t first, nleaves;
  dg_etable_t *t = build_tree(fan, 3, &first, &nleaves);
  dg_changes_t *c = dg_changes_create();
  int64_t total;
  dg_etable_number_get(t, 1, 0, &total);
  double ms[7];
  int runs = 7;
  for (int i = 0; i < runs; i++) {
    dg_changes_clear(c);
    int64_t v = i % 2 ? total : total + total / 7 + 1234; /* alternate: everything moves */
    double t0 = now_ms();
    int rc = dg_etable_set(t, 1, 0, v, NULL, c);
    ms[i] = now_ms() - t0;
    if (rc) die("spread", rc);
  }
  size_t changed = dg_changes_count(c);
  qsort(ms, (size_t)runs, sizeof ms[0], cmp_double);
  printf("spread   root over %lld leaves (3 levels, proportional): median %.1f ms, best %.1f ms, "
         "%zu cells changed  [target <= 30 ms]\n",
         (long long)nleaves, ms[runs / 2], ms[0], changed);
  /* the same inside a savepoint (the manager's batch): journaling cost */
  dg_emark_t m = dg_etable_savepoint(t);
  dg_changes_clear(c);
  double t0 = now_ms();
  int rc = dg_etable_set(t, 1, 0, total * 2, NULL, c);
  double j = now_ms() - t0;
  if (rc) die("spread", rc);
  t0 = now_ms();
  dg_etable_rollback(t, m);
  double rb = now_ms() - t0;
  printf("spread   same, inside a savepoint: %.1f ms; rollback of it: %.1f ms\n", j, rb);
  if (dg_etable_verify(t) != 0) die("verify", DG_EINTERNAL);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void bench_leaf_writes(int quick) {
  int fan[4] = {10, 10, 100, quick ? 10 : 100};
  int64_t first, nleaves;
  dg_etable_t *t = build_tree(fan, 4, &first, &nleaves);
  dg_changes_t *c = dg_changes_create();
  const int64_t nw = quick ? 100000 : 1000000;
  int64_t *ids = malloc((size_t)nw * sizeof *ids), *vals = malloc((size_t)nw * sizeof *vals);
  static const char *what[3] = {"random order", "random order + dg_etable_prefetch",
                                 "sequential order"};
  for (int pass = 0; pass < 3; pass++) {
    for (int64_t i = 0; i < nw; i++) {
      ids[i] = pass < 2 ? first + (int64_t)(rnd() % (uint64_t)nleaves) : first + i % nleaves;
      vals[i] = (int64_t)(rnd() % 100000);
    }
    double t0 = now_ms();
    for (int64_t i = 0; i < nw; i++) {
      if ((i & 1023) == 0) dg_changes_clear(c); /* a batch's worth of records */
      if (pass == 1 && i + 16 < nw) dg_etable_prefetch(t, ids[i + 16], 0);
      if (pass == 1 && i + 8 < nw) dg_etable_prefetch(t, ids[i + 8], 1);
      int rc = dg_etable_set(t, ids[i], 0, vals[i], NULL, c);
      if (rc) die("leaf write", rc);
    }
    double ms = now_ms() - t0;
    printf("writes   %lld leaf writes, roll-up through 4 ancestors, %s: %.0f ms, "
           "%.2f M writes/s  [target >= 5 M/s]\n",
           (long long)nw, what[pass], ms, nw / ms / 1e3);
  }
  if (dg_etable_verify(t) != 0) die("verify", DG_EINTERNAL);
  free(ids);
  free(vals);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

/* nrows rows x ncols number columns; a forest of fan-out 10 (parents are
 * 1/10 of the rows), fed to the loader in shuffled order. */
static void bench_memory(int64_t nrows, uint32_t ncols, int shuffled) {
  uint8_t sc[16];
  for (uint32_t k = 0; k < ncols; k++) sc[k] = 2;
  dg_etable_opts_t o = {.scales = sc, .nnum = ncols};
  dg_etable_t *t;
  int rc = dg_etable_create(&o, &t);
  if (rc) die("create", rc);
  int64_t *order = malloc((size_t)nrows * sizeof *order);
  for (int64_t i = 0; i < nrows; i++) order[i] = i + 1;
  for (int64_t i = nrows - 1; shuffled && i > 0; i--) {
    int64_t j = (int64_t)(rnd() % (uint64_t)(i + 1)), x = order[i];
    order[i] = order[j];
    order[j] = x;
  }
  int64_t v[16] = {0};
  long rss0 = rss_kb();
  double t0 = now_ms();
  if ((rc = dg_etable_load_begin(t, (size_t)nrows))) die("load_begin", rc);
  for (int64_t i = 0; i < nrows; i++) {
    int64_t id = order[i];
    int64_t parent = id <= 10 ? DG_ROW_NONE : id / 10; /* ids 1..10 roots, k's parent k/10 */
    for (uint32_t k = 0; k < ncols; k++) v[k] = (int64_t)(rnd() % 10000);
    if ((rc = dg_etable_load_row(t, id, parent, v, NULL))) die("load_row", rc);
  }
  double t1 = now_ms();
  if ((rc = dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE))) die("load_finish", rc);
  double t2 = now_ms();
  free(order);
  size_t mem = dg_etable_memory(t);
  long rss = rss_kb() - rss0;
  double cells = (double)nrows * ncols;
  double per_row_excl = ((double)mem - 8.0 * cells) / (double)nrows;
  double budget = 40.0 * cells + 64.0 * (double)nrows;
  /* Both orders: fed in id order, children sit in adjacent slots and are
   * kept as slot ranges (no children arrays); shuffled, they are arrays. */
  printf("memory   %lld rows x %u cols = %.0fM cells, rows %s: %.0f MB (engine count), RSS +%.0f MB; "
         "%.1f B/row besides the 8 B/cell -> %.0f%% of the 40 B/cell + 64 B/row budget\n",
         (long long)nrows, ncols, cells / 1e6, shuffled ? "shuffled" : "in id order", mem / 1e6,
         rss / 1e3, per_row_excl, 100.0 * (double)mem / budget);
  printf("load     %lld x %u, rows %s: %.0f ms to feed the rows, %.0f ms to finish (index, link, "
         "sort, cycle check, aggregate), %.0f ms total  [target well under 5 s]\n",
         (long long)nrows, ncols, shuffled ? "shuffled" : "in id order", t1 - t0, t2 - t1, t2 - t0);
  double t3 = now_ms();
  if (dg_etable_verify(t) != 0) die("verify", DG_EINTERNAL);
  if (shuffled) printf("verify   same: %.0f ms\n", now_ms() - t3);
  dg_etable_destroy(t);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
  int memory_only = argc > 1 && strcmp(argv[1], "memory") == 0; /* just part 3 */
  if (!memory_only) {
    bench_spread(quick);
    bench_leaf_writes(quick);
  }
  bench_memory(quick ? 1000000 : 10000000, 1, 1);
  bench_memory(quick ? 1000000 : 10000000, 1, 0);
  bench_memory(quick ? 100000 : 1000000, 10, 1);
  bench_memory(quick ? 100000 : 1000000, 10, 0);
  return 0;
}
