/*
 * engine_driver.c -- runs engine operations read from stdin and prints each
 * result, for tests/prop/test_engine_reference.py, which checks every line
 * against an independent exact-rational model written in Python.
 *
 * Input: one command a line (ids and values are decimal int64; N = none):
 *   T nnum ntext scale...          new table (replaces the previous one)
 *   I id parent v... t...          insert; text: '-' null, '=' empty, else hex
 *   D id cascade                   delete
 *   M id parent                    move
 *   S id col value mode by has_exp expected
 *   X id col text                  text set
 *   H id col 0|1                   hold / release
 *   P | R mark | L mark            savepoint / rollback / release
 *   B expected                     dg_etable_load_begin
 *   W id parent v... t...          dg_etable_load_row (same notation as I)
 *   F flags                        dg_etable_load_finish
 *   Q                              dump the whole table
 *   K                              count children slot ranges (white box)
 * Output: one line a command: "<rc>" then " kind,row,col,old,new" per
 * change (text sides in the input's text notation); for Q: "Q" then
 * " id:parent:v,..:heldbits:text|.." per row in pre-order; for P: "P mark";
 * for B, W, F just "<rc>"; for K: "K n", the number of parents (the
 * super-root included) whose children are still a slot range rather than an
 * array. The API cannot tell the two apart, so K peeks at the engine's
 * internals: it lets the test check that its loads really form ranges and
 * that exactly the expected ones turn into arrays.
 * After every command (but mid-load, where verify refuses) the driver runs
 * dg_etable_verify and checks that a failed operation appended nothing;
 * either problem ends it with exit 3.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/engine.h"
#include "engine/internal.h" /* K, and skipping verify mid-load */

static dg_etable_t *T;
static dg_changes_t *C;

static int64_t parse_id(const char *s) {
  return strcmp(s, "N") == 0 ? DG_ROW_NONE : strtoll(s, NULL, 10);
}

static void put_id(int64_t v) {
  if (v == DG_ROW_NONE)
    fputs("N", stdout);
  else
    printf("%" PRId64, v);
}

/* Decodes the text notation into buf; returns the dg_etext_t. */
static dg_etext_t parse_text(const char *s, char *buf) {
  if (strcmp(s, "-") == 0) return (dg_etext_t){NULL, 0};
  if (strcmp(s, "=") == 0) return (dg_etext_t){buf, 0};
  size_t n = strlen(s) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned x;
    sscanf(s + 2 * i, "%2x", &x);
    buf[i] = (char)x;
  }
  return (dg_etext_t){buf, n};
}

static void put_text(const char *p, size_t n) {
  if (p == NULL) {
    fputs("-", stdout);
    return;
  }
  if (n == 0) {
    fputs("=", stdout);
    return;
  }
  for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)p[i]);
}

static void put_changes(int rc) {
  printf("%d", rc);
  size_t n = dg_changes_count(C);
  const dg_change_t *ch = dg_changes_items(C);
  for (size_t i = 0; i < n; i++) {
    printf(" %d,%" PRId64 ",%u,", ch[i].kind, ch[i].row_id, ch[i].col);
    if (ch[i].kind == DG_CHANGE_TEXT) {
      const char *p;
      size_t len;
      dg_changes_text(C, &ch[i], false, &p, &len);
      put_text(p, len);
      putchar(',');
      dg_changes_text(C, &ch[i], true, &p, &len);
      put_text(p, len);
    } else if (ch[i].kind == DG_CHANGE_NUMBER || ch[i].kind == DG_CHANGE_HOLD) {
      printf("%" PRId64 ",%" PRId64, ch[i].old_value, ch[i].new_value);
    } else {
      put_id(ch[i].old_value);
      putchar(',');
      put_id(ch[i].new_value);
    }
  }
  putchar('\n');
}

static unsigned count_ranges(void) {
  unsigned n = 0;
  for (uint32_t s = 0; s < T->nslots; s++) {
    const erow_t *r = ROW(T, s);
    if ((s == SENTINEL || (r->flags & ROW_LIVE)) && KIDS_IS_RANGE(r)) n++;
  }
  return n;
}

static void dump(int64_t parent) {
  int64_t after = DG_ROW_NONE;
  for (;;) {
    int64_t ids[256];
    size_t n = 0;
    if (dg_etable_children_get(T, parent, after, ids, 256, &n) != 0) exit(4);
    if (n == 0) return;
    for (size_t i = 0; i < n; i++) {
      printf(" %" PRId64 ":", ids[i]);
      put_id(parent);
      putchar(':');
      uint32_t nn = dg_etable_num_columns(T), nt = dg_etable_text_columns(T);
      for (uint32_t c = 0; c < nn; c++) {
        int64_t v;
        dg_etable_number_get(T, ids[i], c, &v);
        printf("%s%" PRId64, c ? "," : "", v);
      }
      putchar(':');
      for (uint32_t c = 0; c < nn; c++) {
        bool h;
        dg_etable_is_held(T, ids[i], c, &h);
        putchar(h ? '1' : '0');
      }
      putchar(':');
      for (uint32_t c = 0; c < nt; c++) {
        const char *p;
        size_t len;
        dg_etable_text_get(T, ids[i], c, &p, &len);
        if (c) putchar('|');
        put_text(p, len);
      }
      dump(ids[i]);
    }
    after = ids[n - 1];
  }
}

int main(void) {
  static char line[1 << 16];
  static char tbuf[8][4096];
  char *tok[64];
  C = dg_changes_create();
  long lineno = 0;
  while (fgets(line, sizeof line, stdin)) {
    lineno++;
    int nt = 0;
    for (char *p = strtok(line, " \n"); p && nt < 64; p = strtok(NULL, " \n")) tok[nt++] = p;
    if (nt == 0) continue;
    dg_changes_clear(C);
    int rc = 0;
    switch (tok[0][0]) {
      case 'T': {
        dg_etable_destroy(T);
        uint8_t sc[16];
        uint32_t nn = (uint32_t)atoi(tok[1]);
        for (uint32_t c = 0; c < nn; c++) sc[c] = (uint8_t)atoi(tok[3 + c]);
        dg_etable_opts_t o = {.scales = sc, .nnum = nn, .ntext = (uint32_t)atoi(tok[2]), .tag = 1};
        rc = dg_etable_create(&o, &T);
        printf("%d\n", rc);
        break;
      }
      case 'I':
      case 'W': {
        uint32_t nn = dg_etable_num_columns(T), ntx = dg_etable_text_columns(T);
        int64_t v[16];
        dg_etext_t tx[8];
        for (uint32_t c = 0; c < nn; c++) v[c] = strtoll(tok[3 + c], NULL, 10);
        for (uint32_t c = 0; c < ntx; c++) tx[c] = parse_text(tok[3 + nn + c], tbuf[c]);
        if (tok[0][0] == 'W') {
          rc = dg_etable_load_row(T, parse_id(tok[1]), parse_id(tok[2]), v, tx);
          printf("%d\n", rc);
        } else {
          rc = dg_etable_insert(T, parse_id(tok[1]), parse_id(tok[2]), v, tx, C);
          put_changes(rc);
        }
        break;
      }
      case 'B':
        rc = dg_etable_load_begin(T, (size_t)strtoull(tok[1], NULL, 10));
        printf("%d\n", rc);
        break;
      case 'F':
        rc = dg_etable_load_finish(T, (unsigned)atoi(tok[1]));
        printf("%d\n", rc);
        break;
      case 'K':
        printf("K %u\n", count_ranges());
        break;
      case 'D':
        rc = dg_etable_delete(T, parse_id(tok[1]), atoi(tok[2]) != 0, C);
        put_changes(rc);
        break;
      case 'M':
        rc = dg_etable_move(T, parse_id(tok[1]), parse_id(tok[2]), C);
        put_changes(rc);
        break;
      case 'S': {
        dg_eset_t how = {.mode = (dg_spread_mode_t)atoi(tok[4]),
                         .by_col = (uint32_t)atoi(tok[5]),
                         .has_expected = atoi(tok[6]) != 0,
                         .expected = strtoll(tok[7], NULL, 10)};
        rc = dg_etable_set(T, parse_id(tok[1]), (uint32_t)atoi(tok[2]), strtoll(tok[3], NULL, 10),
                           &how, C);
        put_changes(rc);
        break;
      }
      case 'X': {
        dg_etext_t x = parse_text(tok[3], tbuf[0]);
        rc = dg_etable_text_set(T, parse_id(tok[1]), (uint32_t)atoi(tok[2]), x.ptr, x.len, C);
        put_changes(rc);
        break;
      }
      case 'H':
        rc = dg_etable_hold(T, parse_id(tok[1]), (uint32_t)atoi(tok[2]), atoi(tok[3]) != 0, C);
        put_changes(rc);
        break;
      case 'P':
        printf("P %u\n", dg_etable_savepoint(T));
        break;
      case 'R':
        printf("%d\n", dg_etable_rollback(T, (dg_emark_t)atoi(tok[1])));
        break;
      case 'L':
        printf("%d\n", dg_etable_release(T, (dg_emark_t)atoi(tok[1])));
        break;
      case 'Q':
        putchar('Q');
        dump(DG_ROW_NONE);
        putchar('\n');
        break;
      default:
        fprintf(stderr, "line %ld: unknown command %s\n", lineno, tok[0]);
        return 2;
    }
    /* (verify refuses a table in the middle of a bulk load) */
    if (T && !T->loading && dg_etable_verify(T) != 0) {
      fflush(stdout);
      fprintf(stderr, "line %ld: verify failed\n", lineno);
      return 3;
    }
    if (rc < 0 && dg_changes_count(C) != 0) {
      fflush(stdout);
      fprintf(stderr, "line %ld: failed operation appended changes\n", lineno);
      return 3;
    }
  }
  dg_etable_destroy(T);
  dg_changes_destroy(C);
  return 0;
}
