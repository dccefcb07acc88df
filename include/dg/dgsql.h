/*
 * dgsql.h -- the SQL of duckgrid's own tables, the DuckDB schema `dg`.
 *
 * Every statement that reads or writes a dg.* table is here, by name, with
 * its parameters; the callers hold no such text. A statement built from
 * parts (a name that passed dg_name_valid(), a version number) has a small
 * builder function instead of a constant. The schema itself (the migrations
 * dg_db_open runs) is in dgsql.c too.
 *
 * THE TABLES (migration that made each in brackets)
 *
 *   schema_version [0]  one row: the number of migrations applied. Written by
 *                       db.c (migrations) and snapshot.c (a snapshot's copy
 *                       carries a guard version until it is rebuilt); read by
 *                       db.c and snapshot.c.
 *   api_keys [1]        API keys: id (from dg.api_keys_seq), name, role, the
 *                       visible prefix and the SHA-256 of the key (never the
 *                       key). Written by auth/keys.c (create, delete,
 *                       last_used_at); read by auth/keys.c (lookup),
 *                       auth/alive.c (the live ids) and http/keys.c (list).
 *   tables [2]          the user tables' names. Written by the persister
 *                       (DDL queued by manager/apply.c); read by catalog.c,
 *                       views_check.c, snapshot.c and persist.c (load).
 *   columns [2]         each user table's columns: position, type, scale.
 *                       Written like dg.tables; read by catalog.c and the
 *                       revert (http/write.c).
 *   holds [2]           the held cells (table, row, column). Written by
 *                       persist.c (hold, release, deleted rows) and the DDL
 *                       of a table's delete (apply.c); read by persist.c
 *                       (load) and http/read.c.
 *   views [2]           user views: name and SQL text. Written by the
 *                       persister (DDL queued by apply.c, the text bound by
 *                       persist.c); read by catalog.c, views_check.c,
 *                       persist.c (load) and http/views.c.
 *   cell_history_v1 [2] the audit log before migration 5 (one text row per
 *                       changed cell; made as dg.cell_history, renamed in
 *                       5); read only through the view dg.cell_history.
 *   outcomes [2]        gone: dropped in 6, its request ids kept in dg.idem.
 *   applied [2]         one row: last_id, the stream id of the last request
 *                       persisted, and next_row_id [6], the next automatic
 *                       row id. Written by persist.c in the batch's
 *                       transaction; read by persist.c (load), snapshot.c
 *                       and api/reader.c.
 *   bootstrapped [4]    hashes of bootstrap admin keys registered once.
 *                       Written and read by auth/keys.c.
 *   audit_requests [5]  the audit log, one row per request with changes:
 *                       (ms, seq) stream id, request_id, user, ts. Written
 *                       by persist.c (appender); read by the revert
 *                       (http/write.c) and dg.cell_history.
 *   audit_cols [5]      id -> (table, column or NULL for row records,
 *                       scale). Written by persist.c; read by persist.c
 *                       (load), undo_log.c, http/write.c, http/updates.c.
 *   cell_log [5]        one row per changed cell: (ms, seq, row_id, col,
 *                       old/new as scaled integers or text). Written by
 *                       persist.c (appender); read by undo_log.c,
 *                       http/write.c, http/updates.c.
 *   cell_history [5]    a VIEW: the whole audit log as text rows, the v1
 *                       table's included (macro dg.scaled_text). Read by
 *                       http/read.c.
 *   idem [6]            (caller, request_id) -> the first request's stream
 *                       id (ms, seq), for idempotent retries. Written by
 *                       persist.c (appender) and pruned by manager.c; read
 *                       by persist.c (load) and service/submit.c.
 *   revoked_tokens [7]  revoked JWT ids. Written by http/keys.c; read by
 *                       auth/alive.c.
 *   key_scopes [8]      a key's tables and expiry (no row: every table,
 *                       never expires). Written by auth/keys.c; read by
 *                       auth/keys.c and http/keys.c.
 *   admin_audit [8]     the admin actions log (ids from
 *                       dg.admin_audit_seq). Written and read by
 *                       http/keys.c.
 *   row_images [9]      every row a delete removed, with its parent and
 *                       cells as JSON, for POST /updates/{id}/revert.
 *                       Written by persist.c (appender); read by
 *                       http/write.c.
 *   snapshot_rebuild    only in a format 2 snapshot file until it is opened:
 *                       the keys and indexes to rebuild. Written by
 *                       snapshot.c into the copy; read and dropped by
 *                       dg_snapshot_rebuild.
 *
 * Besides the tables: the sequences dg.api_keys_seq [1] and
 * dg.admin_audit_seq [8] (the ids of keys and admin audit rows) and the
 * macro dg.scaled_text(v, s) [5] (a scaled integer as decimal text).
 *
 * persist.c writes dg.audit_requests, dg.cell_log, dg.row_images and dg.idem
 * through DuckDB appenders (schema "dg" and the table name, no SQL text).
 */
#ifndef DG_DGSQL_H
#define DG_DGSQL_H

#include <stddef.h>

/* ---- the schema ----------------------------------------------------------- */

/** Creates the schema and dg.schema_version if missing (no parameters). */
extern const char dg_sql_schema_init[];
/** The migrations' number: the newest schema version. */
int dg_sql_migration_count(void);
/** The script of migration version (1 .. dg_sql_migration_count()), which
 *  may hold several statements; NULL out of that range. */
const char *dg_sql_migration(int version);

/** SELECT max(version) FROM dg.schema_version: one row, NULL when empty. */
extern const char dg_sql_schema_version_read[];
/** Inserts version 0 (the first open of an empty database). */
extern const char dg_sql_schema_version_insert0[];
/**
 * Writes "UPDATE dg.schema_version SET version = <version>" into buf (at
 * most cap bytes), the table qualified by catalog ("<catalog>.dg....") when
 * catalog is not NULL; catalog is duckgrid's own alias, never a client's.
 * Returns what snprintf returns.
 */
int dg_sql_schema_version_set(char *buf, size_t cap, const char *catalog, int version);

/* ---- dg.api_keys, dg.key_scopes, dg.bootstrapped (auth/keys.c) ----------- */

/** $1 name, $2 role, $3 prefix, $4 hash; RETURNING id. */
extern const char dg_sql_key_insert[];
/** $1 hash -> id, role, name, tables, expires_s (the latter two NULL
 *  without a dg.key_scopes row). */
extern const char dg_sql_key_lookup[];
/** $1 id: sets last_used_at to now. */
extern const char dg_sql_key_touch[];
/** The number of admin keys (no parameters). */
extern const char dg_sql_key_admin_count[];
/** $1 id: deletes the key unless it is the last admin key; RETURNING id. */
extern const char dg_sql_key_delete[];
/** $1 id -> role (no row: no such key). */
extern const char dg_sql_key_role[];
/** $1 key_id, $2 tables or NULL, $3 expires_s or NULL. */
extern const char dg_sql_key_scope_upsert[];
/** $1 key_id. */
extern const char dg_sql_key_scope_delete[];
/** $1 hash -> count(*). */
extern const char dg_sql_bootstrapped_count[];
/** $1 hash. */
extern const char dg_sql_bootstrapped_insert[];

/* ---- auth/alive.c ----------------------------------------------------------- */

/** Every key id, ascending (no parameters). */
extern const char dg_sql_key_ids[];
/** Every revoked JWT id, ascending (no parameters). */
extern const char dg_sql_revoked_jtis[];

/* ---- dg.tables, dg.columns, dg.views (the catalog) --------------------------- */

/** The user tables' names, ascending (no parameters). */
extern const char dg_sql_table_names[];
/** $1 table -> name, type, scale of its columns in declared order. */
extern const char dg_sql_table_columns[];
/** The views' names, unordered (no parameters). */
extern const char dg_sql_view_names[];
/** $1 name -> how many tables and views have the name lower($1). */
extern const char dg_sql_name_taken[];
/** $1 name, $2 the view's SQL text. */
extern const char dg_sql_view_insert[];

/*
 * The DDL of a table's and a view's create and delete, queued by the
 * manager (apply.c) and run by the persister. Each name (table, column,
 * view) must have passed dg_name_valid(): it is spliced in as a SQL string
 * literal, which no whitelisted name can end. Each returns a string freed
 * with dg_free.
 */
/** INSERT INTO dg.tables(name) VALUES ('<table>'). */
char *dg_sql_table_insert(const char *table);
/** INSERT INTO dg.columns VALUES ('<table>', '<column>', position, '<type>', scale). */
char *dg_sql_column_insert(const char *table, const char *column, int position, const char *type, int scale);
/** DELETE FROM dg.tables WHERE name = '<table>'. */
char *dg_sql_table_delete(const char *table);
/** DELETE FROM dg.columns WHERE table_name = '<table>'. */
char *dg_sql_columns_delete(const char *table);
/** DELETE FROM dg.holds WHERE table_name = '<table>'. */
char *dg_sql_holds_delete(const char *table);
/** DELETE FROM dg.views WHERE name = '<view>'. */
char *dg_sql_view_delete(const char *view);

/* ---- dg.applied ----------------------------------------------------------------- */

/** last_id (no parameters): the stream id DuckDB's state is at. */
extern const char dg_sql_applied_last_id[];
/** last_id, next_row_id (no parameters). */
extern const char dg_sql_applied_read[];
/** $1 last_id, $2 next_row_id. */
extern const char dg_sql_applied_write[];

/* ---- dg.holds (persist.c) ----------------------------------------------------- */

/** Every hold: table_name, row_id, column_name (no parameters). */
extern const char dg_sql_holds_read[];
/** $1 table, $2 row_id, $3 column. */
extern const char dg_sql_hold_delete[];
/** $1 table, $2 row_id, $3 column. */
extern const char dg_sql_hold_insert[];
/**
 * Writes into buf (at most cap bytes) the delete of the holds of table's
 * rows staged in temp.dg_del (the persister's deleted ids). table passed
 * dg_name_valid() (a SQL string literal). Returns what snprintf returns.
 */
int dg_sql_holds_delete_staged(char *buf, size_t cap, const char *table);

/* ---- dg.idem -------------------------------------------------------------------- */

/** $1 ms -> caller, request_id, ms, seq of those at or after ms. */
extern const char dg_sql_idem_since[];
/** $1 ms: drops those before it. */
extern const char dg_sql_idem_prune[];
/** $1 caller, $2 request_id -> ms, seq of the first such request. */
extern const char dg_sql_idem_lookup[];

/* ---- the audit log ------------------------------------------------------------- */

/** id, table_name, column_name, scale of every audit column, by id. */
extern const char dg_sql_audit_cols_read[];
/** id, table_name, column_name of every audit column, unordered. */
extern const char dg_sql_audit_cols_names[];
/** $1 id, $2 table, $3 column or NULL, $4 scale. */
extern const char dg_sql_audit_col_insert[];
/** $1 ms, $2 seq -> row_id, col, old_num, new_num, old_text, new_text of the
 *  request's cell records in the order they were appended. */
extern const char dg_sql_cell_log_of[];
/** $1 ms, $2 seq -> table, row_id, column, old and new as text, the
 *  request's audit_requests count, the column's type, new_num; by table,
 *  row, column (row records first). The revert's read. */
extern const char dg_sql_revert_cells[];
/** $1 ms, $2 seq -> table, row_id, parent_id, cells of the rows the request
 *  deleted, parents before children. */
extern const char dg_sql_revert_images[];

/* ---- dg.snapshot_rebuild (snapshot.c) ------------------------------------------ */

/** The alias snapshot.c ATTACHes its copy under. */
#define DG_SQL_SNAPSHOT_ALIAS "dg_snapshot_out"
/** Creates dg.snapshot_rebuild in the copy (DG_SQL_SNAPSHOT_ALIAS). */
extern const char dg_sql_rebuild_create[];
/** ? pos, ? kind, ? schema_name, ? name, ? sql: one row in the copy. */
extern const char dg_sql_rebuild_insert[];
/** count(*): 1 when this database has a dg.snapshot_rebuild. */
extern const char dg_sql_rebuild_exists[];
/** kind, schema_name, name, sql in order (no parameters). */
extern const char dg_sql_rebuild_steps[];
/** Drops dg.snapshot_rebuild. */
extern const char dg_sql_rebuild_drop[];

/* ---- the read side and the admin tables (src/service/) ------------------ */

/** $1 actor, $2 action, $3 detail: one admin action, its id from
 *  dg.admin_audit_seq. */
extern const char dg_sql_admin_audit_insert[];
/** $1 limit -> id, done_at (ISO text), actor, action, detail; newest first. */
extern const char dg_sql_admin_audit_list[];
/** Every key (no parameter) -> id, name, role, prefix, created_at,
 *  last_used_at (ISO text), tables, expires (ISO text; both NULL without a
 *  dg.key_scopes row). */
extern const char dg_sql_key_list[];
/** $1 jti, $2 revoked_by; a second revocation of a jti changes nothing. */
extern const char dg_sql_token_revoke[];
/** $1 table -> row_id, column_name of each held cell, in that order. */
extern const char dg_sql_holds_of_table[];
/** A row's audit log page, newest first: $1 table, $2 row_id, $3 column or
 *  NULL (all), $4/$5 the (ms, seq) cursor (before it), $6 updates per page +
 *  1 -> ms, seq, stream_id, request_id, user, ts, column_name, old, new. */
extern const char dg_sql_row_history[];
/** $1 name -> the view's SQL text. */
extern const char dg_sql_view_sql[];
/** Every view (no parameter) -> name, sql, by name. */
extern const char dg_sql_view_list[];
/** $1 name -> count(*) (0 or 1). */
extern const char dg_sql_view_exists[];
/** A fragment, not a statement: " FROM ... WHERE ..." over the cell changes
 *  of update ($1 ms, $2 seq), row records and holds left out as in outcomes;
 *  its callers put their SELECT list before it. */
extern const char dg_sql_update_changes_from[];

#endif
