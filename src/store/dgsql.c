/*
 * dgsql.c -- the SQL of the schema `dg` (dgsql.h lists its tables, who
 * writes and who reads each).
 *
 * Sections: the migrations (the schema's DDL, run in order by db.c), then
 * the statements by table, then the builders of the statements made from
 * parts. Each statement's parameters are documented in dgsql.h.
 */
#include "dg/dgsql.h"

#include <stdarg.h>
#include <stdio.h>

#include "dg/buf.h"
#include "dg/common.h"

/* ---- migrations ----------------------------------------------------------
 * Append only: never edit a script that has shipped; add a new one. */
static const char *const migrations[] = {
    /* 1: API keys. Only a SHA-256 of each key is stored. */
    "CREATE TABLE dg.api_keys ("
    "  id BIGINT PRIMARY KEY,"
    "  name VARCHAR NOT NULL,"
    "  role VARCHAR NOT NULL CHECK (role IN ('read','write','admin')),"
    "  prefix VARCHAR NOT NULL,"
    "  hash VARCHAR NOT NULL UNIQUE,"
    "  created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,"
    "  last_used_at TIMESTAMP);"
    "CREATE SEQUENCE dg.api_keys_seq START 1;",
    /* 2: the catalog, holds, the audit log, outcomes and the manager's mark.
     * dg.outcomes keeps each request's outcome in the same transaction as
     * its effects, so a crash between COMMIT and publishing loses nothing;
     * dg.applied holds the id of the last request applied (one row). */
    "CREATE TABLE dg.tables ("
    "  name VARCHAR PRIMARY KEY,"
    "  created_at TIMESTAMP NOT NULL DEFAULT current_timestamp);"
    "CREATE TABLE dg.columns ("
    "  table_name VARCHAR NOT NULL,"
    "  name VARCHAR NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  type VARCHAR NOT NULL CHECK (type IN ('text','number')),"
    "  scale INTEGER NOT NULL,"
    "  PRIMARY KEY (table_name, name));"
    "CREATE TABLE dg.holds ("
    "  table_name VARCHAR NOT NULL,"
    "  row_id BIGINT NOT NULL,"
    "  column_name VARCHAR NOT NULL);"
    "CREATE TABLE dg.views ("
    "  name VARCHAR PRIMARY KEY,"
    "  sql VARCHAR NOT NULL);"
    "CREATE TABLE dg.cell_history ("
    "  stream_id VARCHAR NOT NULL,"
    "  request_id VARCHAR NOT NULL,"
    "  \"user\" VARCHAR,"
    "  ts TIMESTAMP NOT NULL,"
    "  table_name VARCHAR NOT NULL,"
    "  row_id BIGINT NOT NULL,"
    "  column_name VARCHAR,"
    "  old VARCHAR,"
    "  new VARCHAR);"
    "CREATE TABLE dg.outcomes ("
    "  stream_id VARCHAR NOT NULL,"
    "  request_id VARCHAR NOT NULL,"
    "  res VARCHAR NOT NULL);"
    "CREATE INDEX outcomes_request ON dg.outcomes(request_id);"
    "CREATE TABLE dg.applied (last_id VARCHAR NOT NULL);"
    "INSERT INTO dg.applied VALUES ('0-0');",
    /* 3: outcomes carry their stream id's milliseconds, so the manager can
     * drop those response_duck no longer retains (idempotency "within
     * retention") with a range delete. */
    "ALTER TABLE dg.outcomes ADD COLUMN ms BIGINT;"
    "UPDATE dg.outcomes SET ms = CAST(split_part(stream_id, '-', 1) AS BIGINT);",
    /* 4: bootstrap keys registered once: a DUCKGRID_ADMIN_KEY deleted
     * through /admin/keys stays deleted across restarts. */
    "CREATE TABLE dg.bootstrapped (hash VARCHAR PRIMARY KEY);",
    /* 5: a typed audit log. dg.cell_history had nine columns per changed
     * cell, six of them text repeated across a request's rows; writing it
     * was the largest part of a batch and of every checkpoint (~1.5 us a row
     * to fold into the file against ~0.2 us for integer rows, measured on
     * 1.4.4). Now: one row per request (dg.audit_requests), one integer row
     * per cell (dg.cell_log: numbers as scaled integers, text only for text
     * cells and row records), names and scales once (dg.audit_cols). The view
     * dg.cell_history gives the old rows, the old table's included, with the
     * same text as before. */
    "ALTER TABLE dg.cell_history RENAME TO cell_history_v1;"
    "CREATE TABLE dg.audit_requests ("
    "  ms BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  request_id VARCHAR NOT NULL,"
    "  \"user\" VARCHAR,"
    "  ts TIMESTAMP NOT NULL);"
    "CREATE TABLE dg.audit_cols ("
    "  id INTEGER PRIMARY KEY,"
    "  table_name VARCHAR NOT NULL,"
    "  column_name VARCHAR,"
    "  scale INTEGER NOT NULL);"
    "CREATE TABLE dg.cell_log ("
    "  ms BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  row_id BIGINT NOT NULL,"
    "  col INTEGER NOT NULL,"
    "  old_num BIGINT,"
    "  new_num BIGINT,"
    "  old_text VARCHAR,"
    "  new_text VARCHAR);"
    "CREATE MACRO dg.scaled_text(v, s) AS CASE WHEN v IS NULL THEN NULL"
    "  WHEN s <= 0 THEN CAST(v AS VARCHAR)"
    "  ELSE (CASE WHEN v < 0 THEN '-' ELSE '' END) || CAST(abs(v) // CAST(10 ** s AS BIGINT) AS VARCHAR)"
    "    || '.' || lpad(CAST(abs(v) % CAST(10 ** s AS BIGINT) AS VARCHAR), s, '0') END;"
    "CREATE VIEW dg.cell_history AS"
    "  SELECT * FROM dg.cell_history_v1"
    "  UNION ALL"
    "  SELECT r.ms || '-' || r.seq, r.request_id, r.\"user\", r.ts, c.table_name, l.row_id, c.column_name,"
    "         coalesce(l.old_text, dg.scaled_text(l.old_num, c.scale)),"
    "         coalesce(l.new_text, dg.scaled_text(l.new_num, c.scale))"
    "  FROM dg.cell_log l JOIN dg.audit_requests r ON r.ms = l.ms AND r.seq = l.seq"
    "  JOIN dg.audit_cols c ON c.id = l.col;",
    /* 6: the stream is the log (issue 12). Outcomes no longer live in
     * DuckDB: they are published before their effects are persisted, and a
     * retry finds the first one in response_duck by its update id, which
     * dg.idem keeps per (caller, request_id). Requests recorded before
     * callers were (caller '') keep their ids. dg.applied also keeps the
     * next automatic row id, which a replay must hand out again. */
    "CREATE TABLE dg.idem ("
    "  caller VARCHAR NOT NULL,"
    "  request_id VARCHAR NOT NULL,"
    "  ms BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL);"
    "INSERT INTO dg.idem SELECT '', request_id, ms, CAST(split_part(stream_id, '-', 2) AS BIGINT)"
    "  FROM dg.outcomes WHERE ms IS NOT NULL;"
    "DROP TABLE dg.outcomes;"
    "ALTER TABLE dg.applied ADD COLUMN next_row_id BIGINT;",
    /* 7: revoked JWT ids (POST /admin/tokens/revoke): a token whose jti is
     * here is refused, and its open streams end within a second. */
    "CREATE TABLE dg.revoked_tokens ("
    "  jti VARCHAR PRIMARY KEY,"
    "  revoked_by VARCHAR NOT NULL,"
    "  revoked_at TIMESTAMP NOT NULL DEFAULT current_timestamp);",
    /* 8: key scopes and expiry (POST /admin/keys "tables", "expires_at"),
     * and the admin audit log (GET /admin/audit). A key without a row in
     * key_scopes reaches every table and never expires. */
    "CREATE TABLE dg.key_scopes ("
    "  key_id BIGINT PRIMARY KEY,"
    "  tables VARCHAR,"      /* ",a,b," or NULL: every table      */
    "  expires_s BIGINT);"   /* seconds since the epoch, or NULL  */
    "CREATE SEQUENCE dg.admin_audit_seq START 1;"
    "CREATE TABLE dg.admin_audit ("
    "  id BIGINT PRIMARY KEY,"
    "  done_at TIMESTAMP NOT NULL DEFAULT current_timestamp,"
    "  actor VARCHAR NOT NULL,"
    "  action VARCHAR NOT NULL,"
    "  detail VARCHAR NOT NULL);",
    /* 9: row images (issue 19: reverting a delete). Every row a delete
     * removes, with its parent and every cell as they were just before, so
     * POST /updates/{id}/revert can bring it back. pos orders a request's
     * images (each deleted subtree in pre-order); col is the dg.audit_cols
     * id of the table's row records (column_name NULL); cells is a JSON
     * object, numbers as exact decimal strings at the column's scale. */
    "CREATE TABLE dg.row_images ("
    "  ms BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  pos INTEGER NOT NULL,"
    "  col INTEGER NOT NULL,"
    "  row_id BIGINT NOT NULL,"
    "  parent_id BIGINT,"
    "  cells VARCHAR NOT NULL);",
};

int dg_sql_migration_count(void) { return (int)DG_ARRAY_SIZE(migrations); }

const char *dg_sql_migration(int version) {
  return version >= 1 && version <= (int)DG_ARRAY_SIZE(migrations) ? migrations[version - 1] : NULL;
}

const char dg_sql_schema_init[] =
    "CREATE SCHEMA IF NOT EXISTS dg;"
    "CREATE TABLE IF NOT EXISTS dg.schema_version(version INTEGER NOT NULL);";
const char dg_sql_schema_version_read[] = "SELECT max(version) FROM dg.schema_version";
const char dg_sql_schema_version_insert0[] = "INSERT INTO dg.schema_version VALUES (0)";

int dg_sql_schema_version_set(char *buf, size_t cap, const char *catalog, int version) {
  return snprintf(buf, cap, "UPDATE %s%sdg.schema_version SET version = %d", catalog ? catalog : "",
                  catalog ? "." : "", version);
}

/* ---- keys (auth/keys.c, auth/alive.c) ------------------------------------- */

const char dg_sql_key_insert[] =
    "INSERT INTO dg.api_keys(id, name, role, prefix, hash) "
    "VALUES (nextval('dg.api_keys_seq'), $1, $2, $3, $4) RETURNING id";
const char dg_sql_key_lookup[] =
    "SELECT k.id, k.role, k.name, s.tables, s.expires_s FROM dg.api_keys k "
    "LEFT JOIN dg.key_scopes s ON s.key_id = k.id WHERE k.hash = $1";
const char dg_sql_key_touch[] = "UPDATE dg.api_keys SET last_used_at = current_timestamp WHERE id = $1";
const char dg_sql_key_admin_count[] = "SELECT count(*) FROM dg.api_keys WHERE role = 'admin'";
const char dg_sql_key_delete[] =
    "DELETE FROM dg.api_keys WHERE id = $1 AND (role <> 'admin' OR "
    "(SELECT count(*) FROM dg.api_keys WHERE role = 'admin') > 1) RETURNING id";
const char dg_sql_key_role[] = "SELECT role FROM dg.api_keys WHERE id = $1";
const char dg_sql_key_scope_upsert[] = "INSERT OR REPLACE INTO dg.key_scopes VALUES ($1, $2, $3)";
const char dg_sql_key_scope_delete[] = "DELETE FROM dg.key_scopes WHERE key_id = $1";
const char dg_sql_bootstrapped_count[] = "SELECT count(*) FROM dg.bootstrapped WHERE hash = $1";
const char dg_sql_bootstrapped_insert[] = "INSERT INTO dg.bootstrapped VALUES ($1)";
const char dg_sql_key_ids[] = "SELECT id FROM dg.api_keys ORDER BY id";
const char dg_sql_revoked_jtis[] = "SELECT jti FROM dg.revoked_tokens ORDER BY jti";

/* ---- the catalog ------------------------------------------------------------ */

const char dg_sql_table_names[] = "SELECT name FROM dg.tables ORDER BY name";
const char dg_sql_table_columns[] =
    "SELECT name, type, scale FROM dg.columns WHERE table_name = $1 "
    "ORDER BY position";
const char dg_sql_view_names[] = "SELECT name FROM dg.views";
const char dg_sql_name_taken[] =
    "SELECT count(*) FROM (SELECT name FROM dg.tables UNION ALL "
    "SELECT name FROM dg.views) WHERE name = lower($1::VARCHAR)";
const char dg_sql_view_insert[] = "INSERT INTO dg.views VALUES ($1, $2)";

/* ---- dg.applied --------------------------------------------------------------- */

const char dg_sql_applied_last_id[] = "SELECT last_id FROM dg.applied";
const char dg_sql_applied_read[] = "SELECT last_id, next_row_id FROM dg.applied";
const char dg_sql_applied_write[] = "UPDATE dg.applied SET last_id = $1, next_row_id = $2";

/* ---- dg.holds ------------------------------------------------------------------- */

const char dg_sql_holds_read[] = "SELECT table_name, row_id, column_name FROM dg.holds";
const char dg_sql_hold_delete[] = "DELETE FROM dg.holds WHERE table_name = $1 AND row_id = $2 AND column_name = $3";
const char dg_sql_hold_insert[] = "INSERT INTO dg.holds VALUES ($1, $2, $3)";

/* ---- dg.idem --------------------------------------------------------------------- */

const char dg_sql_idem_since[] = "SELECT caller, request_id, ms, seq FROM dg.idem WHERE ms >= $1";
const char dg_sql_idem_prune[] = "DELETE FROM dg.idem WHERE ms < $1";
const char dg_sql_idem_lookup[] =
    "SELECT ms, seq FROM dg.idem WHERE caller = $1 AND request_id = $2 ORDER BY ms, seq LIMIT 1";

/* ---- the audit log ------------------------------------------------------------- */

const char dg_sql_audit_cols_read[] = "SELECT id, table_name, column_name, scale FROM dg.audit_cols ORDER BY id";
const char dg_sql_audit_cols_names[] = "SELECT id, table_name, column_name FROM dg.audit_cols";
const char dg_sql_audit_col_insert[] = "INSERT INTO dg.audit_cols VALUES ($1, $2, $3, $4)";
/* rowid: the order of the appends, which is the order of apply. */
const char dg_sql_cell_log_of[] =
    "SELECT row_id, col, old_num, new_num, old_text, new_text FROM dg.cell_log"
    " WHERE ms = $1 AND seq = $2 ORDER BY rowid";
const char dg_sql_revert_cells[] =
    "SELECT c.table_name, l.row_id, c.column_name,"
    "  coalesce(l.old_text, dg.scaled_text(l.old_num, c.scale)),"
    "  coalesce(l.new_text, dg.scaled_text(l.new_num, c.scale)),"
    "  (SELECT count(*) FROM dg.audit_requests q WHERE q.ms = $1 AND q.seq = $2),"
    "  t.type, l.new_num"
    " FROM dg.cell_log l JOIN dg.audit_cols c ON c.id = l.col"
    " LEFT JOIN dg.columns t ON t.table_name = c.table_name AND t.name = c.column_name"
    " WHERE l.ms = $1 AND l.seq = $2"
    " ORDER BY c.table_name, l.row_id, c.column_name NULLS FIRST";
/* Depth within the deleted set (a row whose parent is not in it is a root),
 * then the order they were recorded in. */
const char dg_sql_revert_images[] =
    "WITH RECURSIVE img AS (SELECT a.table_name AS tn, i.row_id, i.parent_id, i.cells, i.pos"
    "   FROM dg.row_images i JOIN dg.audit_cols a ON a.id = i.col WHERE i.ms = $1 AND i.seq = $2),"
    " d(tn, row_id, depth) AS ("
    "   SELECT tn, row_id, 0 FROM img p WHERE NOT EXISTS"
    "     (SELECT 1 FROM img q WHERE q.tn = p.tn AND q.row_id = p.parent_id)"
    "   UNION ALL SELECT img.tn, img.row_id, d.depth + 1 FROM img JOIN d"
    "     ON img.tn = d.tn AND img.parent_id = d.row_id)"
    " SELECT img.tn, img.row_id, img.parent_id, img.cells FROM img JOIN d USING (tn, row_id)"
    " ORDER BY d.depth, img.pos";

/* ---- dg.snapshot_rebuild ---------------------------------------------------------- */

const char dg_sql_rebuild_create[] =
    "CREATE TABLE " DG_SQL_SNAPSHOT_ALIAS ".dg.snapshot_rebuild (pos INTEGER NOT NULL, kind VARCHAR NOT NULL,"
    " schema_name VARCHAR, name VARCHAR, sql VARCHAR NOT NULL)";
const char dg_sql_rebuild_insert[] = "INSERT INTO " DG_SQL_SNAPSHOT_ALIAS ".dg.snapshot_rebuild VALUES (?, ?, ?, ?, ?)";
const char dg_sql_rebuild_exists[] =
    "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
    " AND schema_name = 'dg' AND table_name = 'snapshot_rebuild'";
const char dg_sql_rebuild_steps[] = "SELECT kind, schema_name, name, sql FROM dg.snapshot_rebuild ORDER BY pos";
const char dg_sql_rebuild_drop[] = "DROP TABLE dg.snapshot_rebuild";

/* ---- builders: DDL from whitelisted names ------------------------------------------ */

char *dg_sql_table_insert(const char *table) { return dg_strprintf("INSERT INTO dg.tables(name) VALUES ('%s')", table); }

char *dg_sql_column_insert(const char *table, const char *column, int position, const char *type, int scale) {
  return dg_strprintf("INSERT INTO dg.columns VALUES ('%s', '%s', %d, '%s', %d)", table, column, position, type, scale);
}

char *dg_sql_table_delete(const char *table) { return dg_strprintf("DELETE FROM dg.tables WHERE name = '%s'", table); }

char *dg_sql_columns_delete(const char *table) { return dg_strprintf("DELETE FROM dg.columns WHERE table_name = '%s'", table); }

char *dg_sql_holds_delete(const char *table) { return dg_strprintf("DELETE FROM dg.holds WHERE table_name = '%s'", table); }

char *dg_sql_view_delete(const char *view) { return dg_strprintf("DELETE FROM dg.views WHERE name = '%s'", view); }

int dg_sql_holds_delete_staged(char *buf, size_t cap, const char *table) {
  return snprintf(buf, cap, "DELETE FROM dg.holds WHERE table_name = '%s' AND row_id IN (SELECT id FROM temp.dg_del)",
                  table);
}

/* ---- the read side and the admin tables (src/service/) ------------------ */

const char dg_sql_admin_audit_insert[] =
    "INSERT INTO dg.admin_audit(id, actor, action, detail) "
    "VALUES (nextval('dg.admin_audit_seq'), $1, $2, $3)";
const char dg_sql_admin_audit_list[] =
    "SELECT id, strftime(done_at, '%Y-%m-%dT%H:%M:%S.%gZ'), actor, action, detail "
    "FROM dg.admin_audit ORDER BY id DESC LIMIT $1";
const char dg_sql_key_list[] =
    "SELECT k.id, k.name, k.role, k.prefix, strftime(k.created_at, '%Y-%m-%dT%H:%M:%S.%gZ'), "
    "strftime(k.last_used_at, '%Y-%m-%dT%H:%M:%S.%gZ'), s.tables, "
    "strftime(make_timestamp(s.expires_s * 1000000), '%Y-%m-%dT%H:%M:%SZ') "
    "FROM dg.api_keys k LEFT JOIN dg.key_scopes s ON s.key_id = k.id ORDER BY k.id";
const char dg_sql_token_revoke[] =
    "INSERT INTO dg.revoked_tokens(jti, revoked_by) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const char dg_sql_holds_of_table[] =
    "SELECT row_id, column_name FROM dg.holds WHERE table_name = $1"
    " ORDER BY row_id, column_name";
const char dg_sql_row_history[] =
    "WITH h AS (SELECT CAST(split_part(stream_id, '-', 1) AS BIGINT) AS ms,"
    "  CAST(split_part(stream_id, '-', 2) AS BIGINT) AS seq, stream_id, request_id,"
    "  \"user\", strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts, column_name, old, new"
    "  FROM dg.cell_history WHERE table_name = $1 AND row_id = $2"
    "  AND ($3::VARCHAR IS NULL OR column_name = $3)),"
    " p AS (SELECT * FROM h WHERE ms < $4 OR (ms = $4 AND seq < $5)),"
    " u AS (SELECT DISTINCT ms, seq FROM p ORDER BY ms DESC, seq DESC LIMIT $6)"
    " SELECT p.ms, p.seq, stream_id, request_id, \"user\", ts, column_name, old, new"
    " FROM p JOIN u ON p.ms = u.ms AND p.seq = u.seq"
    " ORDER BY p.ms DESC, p.seq DESC, column_name NULLS FIRST, old NULLS FIRST";
const char dg_sql_view_sql[] =
    "SELECT sql FROM dg.views WHERE name = $1";
const char dg_sql_view_list[] =
    "SELECT name, sql FROM dg.views ORDER BY name";
const char dg_sql_view_exists[] =
    "SELECT count(*) FROM dg.views WHERE name = $1";
const char dg_sql_update_changes_from[] =
    " FROM dg.cell_log l JOIN dg.audit_cols c ON c.id = l.col"
    " WHERE l.ms = $1 AND l.seq = $2 AND c.column_name IS NOT NULL"
    " AND NOT (l.old_num IS NULL AND l.new_num IS NULL AND coalesce(l.old_text, '') IN ('held', 'free')"
    " AND coalesce(l.new_text, '') IN ('held', 'free') AND c.scale > 0)";
