/*
 * row.h -- a decoded row as readers hand it to a handler: from DuckDB's
 * result chunks (src/service/read.c) or from the manager's state in memory
 * (src/manager/rows.c, through dg_links_t.row_read). Plain data, no
 * dependencies, so both sides include it without including each other.
 */
#ifndef DG_ROW_H
#define DG_ROW_H

#include <stddef.h>
#include <stdint.h>

/** One cell of a decoded row, valid during the callback only. */
typedef struct dg_cell_s {
  int null;           /* 1: the cell is NULL (the rest is unset)          */
  int64_t num;        /* number: the raw scaled integer DuckDB stores      */
  int scale;          /* number: its decimals (the result's DECIMAL scale) */
  const char *str;    /* text: its bytes, not NUL-terminated (borrowed)    */
  size_t len;         /* text: bytes at str                                */
} dg_cell_t;

/** A decoded row, valid during the callback only. */
typedef struct dg_row_s {
  int64_t id;
  int64_t parent_id;      /* when has_parent                               */
  int has_parent;         /* 0: a root (parent_id NULL)                    */
  const dg_cell_t *cells; /* the table's columns in declared order (ncols) */
  int64_t children;       /* child count, when the query asked for it      */
} dg_row_t;

/** How a read from the manager's memory may wait (dg_links_t.row_read). */
typedef enum dg_rowread_mode_e {
  DG_ROWREAD_TRY = 0,   /* only try its lock (an HTTP loop, never waits)      */
  DG_ROWREAD_LOCK = 1,  /* take its lock, answer from the state as it is      */
  DG_ROWREAD_CATCH = 2, /* take its lock and, when the state is behind want,
                           wait up to a second for it to catch up             */
} dg_rowread_mode_t;

/** Receives each row in id order. */
typedef void (*dg_row_fn)(void *arg, const dg_row_t *row);

#endif
