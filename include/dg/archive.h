/*
 * archive.h -- the request_duck archive: every entry, in order, in sealed
 * segment files in DUCKGRID_ARCHIVE_DIR, before Redis may trim it; read
 * back by `duckgrid restore`. Design note: src/archive/archive.c.
 */
#ifndef DG_ARCHIVE_H
#define DG_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/buf.h"
#include "dg/redis.h"

typedef struct dg_archive_s dg_archive_t;

/** The archive directory (DUCKGRID_ARCHIVE_DIR), or NULL: no archive. */
const char *dg_archive_dir(void);

/** Starts the archiver thread when DUCKGRID_ARCHIVE_DIR is set (else NULL).
 *  It reads request_duck, named in streams (borrowed: must outlive
 *  dg_archive_stop), and touches nothing else of the process. */
dg_archive_t *dg_archive_start(const dg_streams_t *streams, const dg_redis_url_t *url,
                               const dg_redis_opts_t *opts);
void dg_archive_stop(dg_archive_t *a);
/** Lowers the stream id `id` (text, in place) to the newest archived one:
 *  what may be trimmed. a NULL: unchanged. */
void dg_archive_clamp(dg_archive_t *a, char *id, size_t cap);
/** Prometheus lines: archive lag, entries and segments. a NULL: none. */
void dg_archive_metrics(dg_archive_t *a, dg_buf_t *out);

/* ---- reading ------------------------------------------------------------------ */

typedef struct dg_segment_s {
  dg_redis_xid_t first, last;  /* ids of its first and last entry         */
  dg_redis_xid_t prev;         /* the entry before its first: the previous
                                  segment's last (0-0: the stream's start) */
  int has_prev;                /* 0: the archive began mid-stream here    */
  long long count;
  char file[128];              /* name in the archive directory           */
  char sha256[65];
} dg_segment_t;

/** Every sealed segment (by manifest), in stream order. *out owned. */
int dg_archive_segments(const char *dir, dg_segment_t **out, size_t *n);

/** One archived entry, as a stream entry (its fields borrowed for the call). */
typedef int (*dg_archive_entry_fn)(void *arg, const dg_redis_xentry_t *x);
/**
 * Checks a segment's SHA-256 against its manifest, then calls fn for each
 * of its entries in order (stops at fn's nonzero return, which it returns).
 * DG_EIO with a reason when the file is missing, corrupt or unreadable.
 */
int dg_archive_read(const char *dir, const dg_segment_t *s, dg_archive_entry_fn fn, void *arg, char *err,
                    size_t errcap);

#endif
