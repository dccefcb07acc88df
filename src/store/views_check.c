/*
 * views_check.c -- dg_view_sql_check: is this SQL fit to become a view?
 *
 * A view's SQL comes from a client and runs on every read of the view, so
 * it must be one read-only SELECT that reads nothing but the users' own
 * tables and views. Matching keywords in the text cannot decide that
 * (comments, quoting, DuckDB's FROM-first syntax, replacement scans such as
 * FROM 'file.csv' ...), so every decision here is taken on DuckDB's own
 * reading of the SQL:
 *
 *   1. duckdb_extract_statements   exactly one statement
 *   2. json_serialize_sql(?)       DuckDB's parse tree as JSON (SELECTs only),
 *                                  walked below; nothing is bound yet, so a
 *                                  rejected query never opens a file
 *   3. dg.tables / dg.views        each table name read is a user's
 *   4. duckdb_prepare_extracted_   binds: names resolve, types check, and
 *      statement                   the statement type is SELECT
 *
 * The walk (step 2) is an allow-list. Every JSON object in the tree is one of
 *
 *   - an expression ("class" is set): allowed classes only; functions must
 *     be unqualified and not on the deny-list below;
 *   - a query node, table reference, result modifier, order or type-info
 *     ("type" is a string): allowed types only; a BASE_TABLE must have no
 *     catalog, a schema of "" or "main", and name a CTE in scope or a user
 *     table/view; TABLE_FUNCTION and SHOW_REF are refused by name;
 *   - a plain container (neither): walked through.
 *
 * Anything with a "class" or "type" the walk does not know is refused, so a
 * construct added by a later DuckDB is rejected until someone looks at it.
 *
 * CTE scope is tracked exactly as DuckDB binds it, because a name that is not
 * a CTE where it is used falls through to the catalog: in
 *   WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT ...
 * the inner name is DuckDB's catalog view, not the CTE. So:
 *   - the i-th CTE of a WITH sees the ones before it, never itself (unless
 *     its body is a RECURSIVE_CTE_NODE, whose recursive side sees its name);
 *   - the query after WITH, and everything nested in it, sees all of them;
 *   - a CTE defined in a subquery is not visible outside it.
 */
#include "dg/views.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dg/common.h"
#include "dg/dgsql.h"

/* CTE names in scope at one point: far beyond any hand-written query. */
#define SCOPE_MAX 256
/* Distinct table/view names one view may read. */
#define REFS_MAX 256
/* Nesting of the parse tree walked; DuckDB's own expression depth limit is
 * 1000 and jansson's parser stops at 2048, so this only guards the stack. */
#define WALK_DEPTH_MAX 4096
/* Table references in one view, repeats counted. DuckDB plans joins by
 * recursive search whose time grows steeply with their number (150 joins:
 * ~5 s to plan, 300 overflowed a thread stack); a summary over a planning
 * grid joins a handful. */
#define TABLE_REFS_MAX 32

typedef struct {
  const char *scope[SCOPE_MAX]; /* CTE names in scope (borrowed from the tree) */
  size_t nscope;
  const char *refs[REFS_MAX];   /* catalog names read (borrowed), deduplicated */
  size_t nrefs;
  char *err;                    /* the caller's reason buffer                */
  size_t errcap;
  int depth;                    /* current recursion depth                   */
  size_t table_refs;            /* table references, repeats counted         */
} walk_t;

/* ---- reasons ----------------------------------------------------------- */

/* Writes a one-line reason: the text up to the first line break. */
static void set_reason(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_reason(char *err, size_t errcap, const char *fmt, ...) {
  if (err == NULL || errcap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  err[strcspn(err, "\r\n")] = '\0';
}

/* The first line of a DuckDB error, or a fallback. */
static const char *first_line(const char *msg, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", msg && *msg ? msg : "DuckDB refused the SQL");
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

/* ---- allow- and deny-lists ----------------------------------------------- */

static int in_list(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0) return 1;
  return 0;
}

/* Expression classes of DuckDB's parser that only compute values. Left out on
 * purpose: PARAMETER (a view has no parameters) and DEFAULT. */
static const char *const allowed_classes[] = {
    "BETWEEN",  "CASE",     "CAST",   "COLLATE",  "COLUMN_REF", "COMPARISON",
    "CONJUNCTION", "CONSTANT", "FUNCTION", "LAMBDA", "LAMBDA_REF", "OPERATOR",
    "POSITIONAL_REFERENCE", "STAR", "SUBQUERY", "WINDOW", NULL,
};

/* Table references, result modifiers and orders that only shape what the
 * query reads from its other references (checked on their own). */
static const char *const allowed_types[] = {
    "JOIN", "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "PIVOT",
    "ORDER_MODIFIER", "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER", "DISTINCT_MODIFIER",
    "ORDER_DEFAULT", "ASCENDING", "DESCENDING", NULL,
};

/* Scalar functions and macros that change state, read the session, or read
 * DuckDB's catalog (the pg_* compatibility macros and *_description expand,
 * at bind time, into queries over duckdb_views(), duckdb_constraints() ...,
 * which would show duckgrid's own schema). Table functions never get here:
 * they are TABLE_FUNCTION refs. */
static const char *const denied_functions[] = {
    "nextval", "currval", "setseed", "current_setting", "getvariable", "getenv",
    "json_execute_serialized_sql", "query", "query_table", "sql_auto_complete",
    "col_description", "obj_description", "shobj_description", NULL,
};
static const char *const denied_prefixes[] = {"duckdb_", "pragma_", "read_", "pg_", NULL};

static int function_denied(const char *name) {
  char low[128];
  size_t n = strlen(name);
  if (n >= sizeof low) return 0; /* no denied name is that long */
  for (size_t i = 0; i <= n; i++)
    low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
  if (in_list(low, denied_functions)) return 1;
  for (const char *const *p = denied_prefixes; *p; p++)
    if (strncmp(low, *p, strlen(*p)) == 0) return 1;
  return 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A member that is a string, or "" when absent or not a string. */
static const char *str_member(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

/* ---- the walk ------------------------------------------------------------ */

static int walk_value(walk_t *w, json_t *v);

static int reject(walk_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reject(walk_t *w, const char *fmt, ...) {
  if (w->err && w->errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, w->errcap, fmt, ap);
    va_end(ap);
    w->err[strcspn(w->err, "\r\n")] = '\0';
  }
  return DG_EINVAL;
}

/* Walks every member of o except those named in skip (NULL-terminated). */
static int walk_members(walk_t *w, json_t *o, const char *const *skip) {
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    if (skip && in_list(key, skip)) continue;
    int rc = walk_value(w, v);
    if (rc != 0) return rc;
  }
  return 0;
}

static int push_scope(walk_t *w, const char *name) {
  if (w->nscope == SCOPE_MAX) return reject(w, "too many common table expressions");
  w->scope[w->nscope++] = name;
  return 0;
}

static int in_scope(const walk_t *w, const char *name) {
  /* DuckDB matches CTE names case-insensitively. */
  for (size_t i = w->nscope; i-- > 0;)
    if (strcasecmp(w->scope[i], name) == 0) return 1;
  return 0;
}

/* The CTEs of a WITH in order: each body sees the names before it; each name
 * is in scope afterwards (the caller restores the scope). */
static int walk_cte_map(walk_t *w, json_t *node) {
  json_t *map = json_object_get(json_object_get(node, "cte_map"), "map");
  if (map == NULL) return 0;
  if (!json_is_array(map)) return reject(w, "unsupported WITH clause");
  size_t i;
  json_t *e;
  json_array_foreach(map, i, e) {
    const char *name = json_string_value(json_object_get(e, "key"));
    if (name == NULL) return reject(w, "unsupported WITH clause");
    int rc = walk_value(w, json_object_get(e, "value"));
    if (rc == 0) rc = push_scope(w, name);
    if (rc != 0) return rc;
  }
  return 0;
}

/* SELECT_NODE, SET_OPERATION_NODE: the WITH first, then the rest in its scope. */
static int walk_query_node(walk_t *w, json_t *o) {
  size_t saved = w->nscope;
  static const char *const skip[] = {"cte_map", NULL};
  int rc = walk_cte_map(w, o);
  if (rc == 0) rc = walk_members(w, o, skip);
  w->nscope = saved;
  return rc;
}

/* CTE_NODE (a materialized CTE): "query" is the CTE's body and sees only the
 * outer scope; "child" is the rest of the query and sees the CTE. */
static int walk_cte_node(walk_t *w, json_t *o) {
  size_t saved = w->nscope;
  static const char *const skip[] = {"cte_map", "query", NULL};
  const char *name = json_string_value(json_object_get(o, "cte_name"));
  if (name == NULL) return reject(w, "unsupported WITH clause");
  int rc = walk_value(w, json_object_get(o, "query"));
  if (rc == 0) rc = walk_cte_map(w, o);
  if (rc == 0) rc = push_scope(w, name);
  if (rc == 0) rc = walk_members(w, o, skip);
  w->nscope = saved;
  return rc;
}

/* RECURSIVE_CTE_NODE: only the recursive side ("right") sees its own name. */
static int walk_recursive_node(walk_t *w, json_t *o) {
  size_t saved = w->nscope;
  static const char *const skip[] = {"cte_map", "left", "right", NULL};
  const char *name = json_string_value(json_object_get(o, "cte_name"));
  if (name == NULL) return reject(w, "unsupported recursive WITH clause");
  int rc = walk_cte_map(w, o);
  if (rc == 0) rc = walk_value(w, json_object_get(o, "left"));
  if (rc == 0) rc = walk_members(w, o, skip);
  if (rc == 0) rc = push_scope(w, name);
  if (rc == 0) rc = walk_value(w, json_object_get(o, "right"));
  w->nscope = saved;
  return rc;
}

static int check_base_table(walk_t *w, json_t *o) {
  const char *catalog = str_member(o, "catalog_name");
  const char *schema = str_member(o, "schema_name");
  const char *name = json_string_value(json_object_get(o, "table_name"));
  if (name == NULL) return reject(w, "unsupported table reference");
  if (++w->table_refs > TABLE_REFS_MAX)
    return reject(w, "a view may reference at most %d tables (repeats counted)", TABLE_REFS_MAX);
  if (*catalog)
    return reject(w, "'%s.%s.%s': a view may not read another database", catalog, schema, name);
  if (strcasecmp(schema, "dg") == 0)
    return reject(w, "'%s.%s': duckgrid's internal schema is off limits", schema, name);
  if (*schema && strcasecmp(schema, "main") != 0)
    return reject(w, "'%s.%s': a view may only read the tables and views of the grid", schema,
                  name);
  json_t *at = json_object_get(o, "at_clause");
  if (at && !json_is_null(at)) return reject(w, "'%s': time travel (AT ...) is not supported", name);
  /* A bare name that is a CTE in scope reads that CTE. (main.x never does.) */
  if (*schema == '\0' && in_scope(w, name)) return 0;
  for (size_t i = 0; i < w->nrefs; i++)
    if (strcasecmp(w->refs[i], name) == 0) return 0;
  if (w->nrefs == REFS_MAX) return reject(w, "the query reads too many tables");
  w->refs[w->nrefs++] = name;
  return 0;
}

static int walk_expression(walk_t *w, json_t *o, const char *cls) {
  if (strcmp(cls, "PARAMETER") == 0) return reject(w, "a view cannot have parameters");
  if (!in_list(cls, allowed_classes)) return reject(w, "unsupported expression (%s)", cls);
  if (strcmp(cls, "FUNCTION") == 0 || strcmp(cls, "WINDOW") == 0) {
    const char *fn = str_member(o, "function_name");
    const char *schema = str_member(o, "schema");
    const char *catalog = str_member(o, "catalog");
    /* The parser itself writes main.list_value for [1, 2]; "main" is fine. */
    if (*catalog || (*schema && strcasecmp(schema, "main") != 0))
      return reject(w, "'%s%s%s%s%s': qualified function names are not allowed", catalog,
                    *catalog ? "." : "", schema, *schema ? "." : "", fn);
    if (function_denied(fn)) return reject(w, "the function '%s' is not allowed in a view", fn);
  }
  return walk_members(w, o, NULL);
}

static int walk_object(walk_t *w, json_t *o) {
  const char *cls = json_string_value(json_object_get(o, "class"));
  if (cls) return walk_expression(w, o, cls);
  const char *t = json_string_value(json_object_get(o, "type"));
  if (t == NULL) return walk_members(w, o, NULL); /* a plain container */
  if (strcmp(t, "SELECT_NODE") == 0 || strcmp(t, "SET_OPERATION_NODE") == 0)
    return walk_query_node(w, o);
  if (strcmp(t, "CTE_NODE") == 0) return walk_cte_node(w, o);
  if (strcmp(t, "RECURSIVE_CTE_NODE") == 0) return walk_recursive_node(w, o);
  if (strcmp(t, "BASE_TABLE") == 0) return check_base_table(w, o);
  if (strcmp(t, "TABLE_FUNCTION") == 0) {
    const char *fn = str_member(json_object_get(o, "function"), "function_name");
    return reject(w, "table functions%s%s%s are not allowed in a view", *fn ? " ('" : "", fn,
                  *fn ? "')" : "");
  }
  if (strcmp(t, "SHOW_REF") == 0)
    return reject(w, "SHOW, DESCRIBE and SUMMARIZE are not allowed in a view");
  if (in_list(t, allowed_types) || ends_with(t, "_TYPE_INFO")) return walk_members(w, o, NULL);
  return reject(w, "unsupported construct (%s)", t);
}

static int walk_value(walk_t *w, json_t *v) {
  if (v == NULL) return 0;
  if (++w->depth > WALK_DEPTH_MAX) {
    w->depth--;
    return reject(w, "the query is nested too deeply");
  }
  int rc = 0;
  if (json_is_object(v)) {
    rc = walk_object(w, v);
  } else if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      rc = walk_value(w, e);
      if (rc != 0) break;
    }
  }
  w->depth--;
  return rc;
}

/* ---- DuckDB steps ---------------------------------------------------------- */

/* json_serialize_sql(sql) as a jansson tree (caller json_decref's it). The SQL
 * is bound as a parameter, never spliced. */
static int serialize(duckdb_connection c, const char *sql, json_t **out, char *err,
                     size_t errcap) {
  duckdb_prepared_statement st = NULL;
  char line[512];
  if (duckdb_prepare(c, "SELECT json_serialize_sql($1::VARCHAR)", &st) == DuckDBError) {
    set_reason(err, errcap, "json_serialize_sql is unavailable: %s",
               first_line(duckdb_prepare_error(st), line, sizeof line));
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  duckdb_bind_varchar(st, 1, sql);
  duckdb_result res;
  int rc = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    set_reason(err, errcap, "%s", first_line(duckdb_result_error(&res), line, sizeof line));
    rc = DG_EINVAL;
  } else {
    char *text = duckdb_row_count(&res) == 1 ? duckdb_value_varchar(&res, 0, 0) : NULL;
    json_error_t jerr;
    /* query_location can be 2^64-1, beyond json_int_t: numbers are not used. */
    json_t *tree = text ? json_loads(text, JSON_DECODE_INT_AS_REAL, &jerr) : NULL;
    duckdb_free(text);
    if (tree == NULL) {
      set_reason(err, errcap, "cannot read DuckDB's parse tree");
      rc = DG_EIO;
    } else {
      *out = tree;
    }
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

/* Each name read must be a user's table or view (the check is case-blind,
 * as DuckDB's name resolution is). */
static int check_refs(duckdb_connection c, const walk_t *w, char *err, size_t errcap) {
  if (w->nrefs == 0) return 0;
  duckdb_prepared_statement st = NULL;
  if (duckdb_prepare(c, dg_sql_name_taken, &st) == DuckDBError) {
    char line[512];
    set_reason(err, errcap, "cannot read the catalog: %s",
               first_line(duckdb_prepare_error(st), line, sizeof line));
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  int rc = 0;
  for (size_t i = 0; i < w->nrefs && rc == 0; i++) {
    duckdb_bind_varchar(st, 1, w->refs[i]);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBError) {
      set_reason(err, errcap, "cannot read the catalog");
      rc = DG_EIO;
    } else if (duckdb_value_int64(&res, 0, 0) == 0) {
      set_reason(err, errcap, "'%.100s' is not a table or view of the grid", w->refs[i]);
      rc = DG_EINVAL;
    }
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

/* Binds the single extracted statement and checks its type. */
static int check_bound(duckdb_connection c, duckdb_extracted_statements ex, char *err,
                       size_t errcap) {
  duckdb_prepared_statement st = NULL;
  char line[512];
  int rc = 0;
  if (duckdb_prepare_extracted_statement(c, ex, 0, &st) == DuckDBError) {
    set_reason(err, errcap, "%s", first_line(duckdb_prepare_error(st), line, sizeof line));
    rc = DG_EINVAL;
  } else if (duckdb_prepared_statement_type(st) != DUCKDB_STATEMENT_TYPE_SELECT) {
    set_reason(err, errcap, "only a SELECT statement is allowed");
    rc = DG_EINVAL;
  } else if (duckdb_nparams(st) != 0) {
    set_reason(err, errcap, "a view cannot have parameters");
    rc = DG_EINVAL;
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

/* The check; with reads != NULL, also the names read as ",a,b," (lower
 * case; empty when the walk failed). bind = 0 skips steps 3 and 4. */
static int check_sql(duckdb_connection c, const char *sql, char *err, size_t errcap, char *reads,
                     size_t readcap, int bind) {
  if (reads && readcap) reads[0] = '\0';
  if (err && errcap) err[0] = '\0';
  if (sql == NULL || sql[strspn(sql, " \t\r\n")] == '\0') {
    set_reason(err, errcap, "the SQL is empty");
    return DG_EINVAL;
  }
  if (strnlen(sql, DG_VIEW_SQL_MAX + 1) > DG_VIEW_SQL_MAX) {
    set_reason(err, errcap, "the SQL is longer than %d bytes", DG_VIEW_SQL_MAX);
    return DG_EINVAL;
  }

  /* 1. Exactly one statement, by DuckDB's parser. */
  duckdb_extracted_statements ex = NULL;
  idx_t n = duckdb_extract_statements(c, sql, &ex);
  char line[512];
  int rc = 0;
  if (n == 0) {
    const char *why = duckdb_extract_statements_error(ex);
    set_reason(err, errcap, "%s", why ? first_line(why, line, sizeof line) : "no SQL statement");
    rc = DG_EINVAL;
  } else if (n != 1) {
    set_reason(err, errcap, "exactly one SQL statement is allowed, not %llu",
               (unsigned long long)n);
    rc = DG_EINVAL;
  }

  /* 2. The parse tree, before anything is bound. */
  json_t *tree = NULL;
  if (rc == 0) rc = serialize(c, sql, &tree, err, errcap);
  walk_t *w = NULL;
  if (rc == 0) {
    json_t *stmts = json_object_get(tree, "statements");
    if (json_is_true(json_object_get(tree, "error"))) {
      const char *m = str_member(tree, "error_message");
      if (strstr(m, "Only SELECT") != NULL)
        set_reason(err, errcap, "only a SELECT statement is allowed");
      else
        set_reason(err, errcap, "%s", first_line(m, line, sizeof line));
      rc = DG_EINVAL;
    } else if (!json_is_array(stmts) || json_array_size(stmts) != 1) {
      set_reason(err, errcap, "exactly one SQL statement is allowed");
      rc = DG_EINVAL;
    } else {
      w = dg_calloc(1, sizeof *w);
      w->err = err;
      w->errcap = errcap;
      rc = walk_value(w, json_array_get(stmts, 0));
    }
  }

  if (rc == 0 && reads && readcap > 1) {
    size_t o = 0;
    reads[o++] = ',';
    for (size_t i = 0; i < w->nrefs && rc == 0; i++) {
      size_t n = strlen(w->refs[i]);
      if (o + n + 2 > readcap) {
        rc = DG_EINVAL;
        set_reason(err, errcap, "the query reads too many tables");
        break;
      }
      for (size_t k = 0; k < n; k++) reads[o++] = (char)tolower((unsigned char)w->refs[i][k]);
      reads[o++] = ',';
    }
    reads[rc == 0 ? o : 0] = '\0';
  }
  /* 3. Every name read is the grid's; 4. it binds, as a SELECT. */
  if (rc == 0 && bind) rc = check_refs(c, w, err, errcap);
  if (rc == 0 && bind) rc = check_bound(c, ex, err, errcap);

  dg_free(w);
  json_decref(tree); /* the refs borrowed from it are not used after here */
  duckdb_destroy_extracted(&ex);
  return rc;
}

int dg_view_sql_check(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  return check_sql(c, sql, err, errcap, NULL, 0, 1);
}

int dg_view_sql_reads(duckdb_connection c, const char *sql, char *reads, size_t cap) {
  char err[256];
  return check_sql(c, sql, err, sizeof err, reads, cap, 0);
}
