/*
 * transfer.c -- `duckgrid import FILE --table T` and `duckgrid export T`:
 * the command-line side of POST /tables/{t}/import and GET
 * /tables/{t}/export (issue 19). They talk to a running server over HTTP
 * (the server holds the database; an import goes through the log like
 * every write), so they need its address and a key:
 *
 *   --url URL       the server (default: DUCKGRID_URL, else
 *                   http://<DUCKGRID_LISTEN>, else http://127.0.0.1:8080)
 *   --key-file F    a file whose first line is the API key (default: the
 *                   DUCKGRID_KEY environment variable)
 *   --format F      csv (default) or parquet; export also takes json
 *   --insecure      do not check an https server's certificate
 *
 * import prints the server's answer (JSON) on stdout; export writes the
 * file to stdout (or --output F). On a terminal, progress goes to stderr.
 * A refusal prints the problem's detail (and, for an import, the rows it
 * names) on stderr and exits 1; bad usage exits 2.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <ulfius.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/cli.h"
#include "dg/common.h"

typedef struct {
  const char *url, *key_file, *format, *table, *file, *output;
  int insecure;
} opts_t;

static int usage(const char *cmd) {
  if (strcmp(cmd, "import") == 0)
    fprintf(stderr, "usage: duckgrid import FILE --table T [--format csv|parquet] [--url URL] [--key-file F] "
                    "[--insecure]\n");
  else
    fprintf(stderr, "usage: duckgrid export T [--format csv|parquet|json] [--output F] [--url URL] "
                    "[--key-file F] [--insecure]\n");
  return 2;
}

static int parse(const char *cmd, int argc, char **argv, opts_t *o) {
  memset(o, 0, sizeof *o);
  o->format = "csv";
  const char *positional = NULL;
  for (int i = 0; i < argc; i++) {
    const char **slot = strcmp(argv[i], "--url") == 0        ? &o->url
                        : strcmp(argv[i], "--key-file") == 0 ? &o->key_file
                        : strcmp(argv[i], "--format") == 0   ? &o->format
                        : strcmp(argv[i], "--table") == 0    ? &o->table
                        : strcmp(argv[i], "--output") == 0   ? &o->output
                                                             : NULL;
    if (strcmp(argv[i], "--insecure") == 0) {
      o->insecure = 1;
    } else if (slot != NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "duckgrid %s: %s needs a value\n", cmd, argv[i]);
        return 2;
      }
      *slot = argv[++i];
    } else if (argv[i][0] == '-' || positional != NULL) {
      fprintf(stderr, "duckgrid %s: unexpected argument '%s'\n", cmd, argv[i]);
      return 2;
    } else {
      positional = argv[i];
    }
  }
  int imp = strcmp(cmd, "import") == 0;
  if (imp) {
    o->file = positional;
    if (o->file == NULL || o->table == NULL || o->output) return 2;
  } else {
    if (o->table && positional) return 2;
    o->table = o->table ? o->table : positional;
    if (o->table == NULL) return 2;
  }
  if (!dg_name_valid(o->table)) {
    fprintf(stderr, "duckgrid %s: '%.80s' is not a valid table name\n", cmd, o->table);
    return 2;
  }
  int fmt_ok = strcmp(o->format, "csv") == 0 || strcmp(o->format, "parquet") == 0 ||
               (!imp && strcmp(o->format, "json") == 0);
  if (!fmt_ok) {
    fprintf(stderr, "duckgrid %s: --format must be csv or parquet%s; got '%s'\n", cmd, imp ? "" : " or json",
            o->format);
    return 2;
  }
  return 0;
}

/* The key: first line of --key-file, else DUCKGRID_KEY. Owned. */
static char *load_key(const char *cmd, const opts_t *o) {
  if (o->key_file) {
    FILE *f = fopen(o->key_file, "r");
    if (f == NULL) {
      fprintf(stderr, "duckgrid %s: cannot read the key file %s: %s\n", cmd, o->key_file, strerror(errno));
      return NULL;
    }
    char line[512] = "";
    if (fgets(line, sizeof line, f) == NULL) line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') {
      fprintf(stderr, "duckgrid %s: the key file %s is empty\n", cmd, o->key_file);
      return NULL;
    }
    return dg_strdup(line);
  }
  const char *k = getenv("DUCKGRID_KEY");
  if (k == NULL || *k == '\0') {
    fprintf(stderr, "duckgrid %s: no API key: set DUCKGRID_KEY or give --key-file\n", cmd);
    return NULL;
  }
  return dg_strdup(k);
}

/* The server's base URL, without a trailing slash. Owned. */
static char *base_url(const opts_t *o) {
  const char *u = o->url ? o->url : getenv("DUCKGRID_URL");
  char buf[512];
  if (u == NULL || *u == '\0') {
    const char *l = getenv("DUCKGRID_LISTEN");
    if (l == NULL || *l == '\0') l = "127.0.0.1:8080";
    if (strncmp(l, "0.0.0.0:", 8) == 0) l += 7, snprintf(buf, sizeof buf, "http://127.0.0.1%s", l);
    else snprintf(buf, sizeof buf, "http://%s", l);
    u = buf;
  }
  char *s = dg_strdup(u);
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '/') s[--n] = '\0';
  return s;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The answer of a refusal: status, title/detail, and the rows it names. */
static void say_problem(const char *cmd, long status, const char *body, size_t len) {
  json_t *p = json_loadb(body ? body : "", len, 0, NULL);
  const char *detail = p ? json_string_value(json_object_get(p, "detail")) : NULL;
  const char *title = p ? json_string_value(json_object_get(p, "title")) : NULL;
  fprintf(stderr, "duckgrid %s: the server answered %ld%s%s%s%s\n", cmd, status, title ? " " : "", title ? title : "",
          detail ? ": " : "", detail ? detail : "");
  json_t *errs = p ? json_object_get(p, "errors") : NULL;
  size_t i;
  json_t *e;
  json_array_foreach(errs, i, e) {
    if (i >= 20) {
      fprintf(stderr, "  … %zu more\n", json_array_size(errs) - 20);
      break;
    }
    json_t *line = json_object_get(e, "line"), *row = json_object_get(e, "row");
    const char *col = json_string_value(json_object_get(e, "column"));
    const char *d = json_string_value(json_object_get(e, "detail"));
    fprintf(stderr, "  %s %lld%s%s: %s\n", line ? "line" : "row",
            (long long)json_integer_value(line ? line : row), col ? ", column " : "", col ? col : "", d ? d : "");
  }
  json_decref(p);
}

static void prepare(struct _u_request *q, const opts_t *o, const char *key, const char *verb, const char *url) {
  ulfius_init_request(q);
  q->http_verb = dg_strdup(verb);
  q->http_url = dg_strdup(url);
  q->timeout = 0;
  if (o->insecure) q->check_server_certificate = 0;
  char auth[600];
  snprintf(auth, sizeof auth, "Bearer %s", key);
  u_map_put(q->map_header, "Authorization", auth);
}

/* ---- export ------------------------------------------------------------------------- */

typedef struct {
  dg_buf_t body;
  double t0, shown;
  int tty;
} sink_t;

static size_t on_body(void *data, size_t size, size_t nmemb, void *arg) {
  sink_t *s = arg;
  dg_buf_append(&s->body, data, size * nmemb);
  double t = now_s();
  if (s->tty && t - s->shown >= 0.25) {
    fprintf(stderr, "\rexport: %.1f MB", (double)s->body.len / 1e6);
    s->shown = t;
  }
  return size * nmemb;
}

int dg_cli_export(int argc, char **argv) {
  opts_t o;
  if (parse("export", argc, argv, &o) != 0) return usage("export");
  char *key = load_key("export", &o);
  if (key == NULL) return 2;
  char *base = base_url(&o);
  char url[1024];
  snprintf(url, sizeof url, "%s/tables/%s/export?format=%s", base, o.table, o.format);
  struct _u_request q;
  struct _u_response a;
  prepare(&q, &o, key, "GET", url);
  ulfius_init_response(&a);
  sink_t s = {.t0 = now_s(), .tty = isatty(2)};
  dg_buf_init(&s.body);
  int rc = 1;
  if (ulfius_send_http_streaming_request(&q, &a, on_body, &s) != U_OK) {
    fprintf(stderr, "%sduckgrid export: no answer from %s\n", s.tty ? "\n" : "", base);
  } else if (a.status != 200) {
    if (s.tty) fputc('\n', stderr);
    say_problem("export", a.status, s.body.data, s.body.len);
  } else {
    FILE *out = o.output ? fopen(o.output, "wb") : stdout;
    if (out == NULL) {
      fprintf(stderr, "duckgrid export: cannot write %s: %s\n", o.output, strerror(errno));
    } else {
      size_t w = fwrite(s.body.data, 1, s.body.len, out);
      int closed = o.output ? fclose(out) : fflush(out);
      if (w == s.body.len && closed == 0) rc = 0;
      else fprintf(stderr, "duckgrid export: writing the file failed: %s\n", strerror(errno));
    }
    if (s.tty)
      fprintf(stderr, "\rexport: %.1f MB of %s in %.1f s\n", (double)s.body.len / 1e6, o.table, now_s() - s.t0);
  }
  dg_buf_dispose(&s.body);
  ulfius_clean_request(&q);
  ulfius_clean_response(&a);
  dg_free(base);
  dg_free(key);
  return rc;
}

/* ---- import ------------------------------------------------------------------------- */

int dg_cli_import(int argc, char **argv) {
  opts_t o;
  if (parse("import", argc, argv, &o) != 0) return usage("import");
  FILE *f = fopen(o.file, "rb");
  if (f == NULL) {
    fprintf(stderr, "duckgrid import: cannot read %s: %s\n", o.file, strerror(errno));
    return 1;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  char chunk[1 << 16];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) dg_buf_append(&body, chunk, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "duckgrid import: reading %s failed\n", o.file);
    dg_buf_dispose(&body);
    return 1;
  }
  char *key = load_key("import", &o);
  if (key == NULL) {
    dg_buf_dispose(&body);
    return 2;
  }
  char *base = base_url(&o);
  char url[1024];
  snprintf(url, sizeof url, "%s/tables/%s/import?format=%s", base, o.table, o.format);
  struct _u_request q;
  struct _u_response a;
  prepare(&q, &o, key, "POST", url);
  u_map_put(q.map_header, "Content-Type", strcmp(o.format, "csv") == 0 ? "text/csv" : "application/vnd.apache.parquet");
  ulfius_set_binary_body_request(&q, body.data ? body.data : "", body.len);
  ulfius_init_response(&a);
  int tty = isatty(2);
  double t0 = now_s();
  if (tty) fprintf(stderr, "import: sending %.1f MB (%s) to %s …", (double)body.len / 1e6, o.format, o.table);
  int rc = 1;
  if (ulfius_send_http_request(&q, &a) != U_OK) {
    fprintf(stderr, "%sduckgrid import: no answer from %s\n", tty ? "\n" : "", base);
  } else if (a.status != 200 && a.status != 201 && a.status != 202) {
    if (tty) fputc('\n', stderr);
    say_problem("import", a.status, a.binary_body, a.binary_body_length);
  } else {
    fwrite(a.binary_body, 1, a.binary_body_length, stdout);
    fputc('\n', stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
    if (tty) {
      json_t *r = json_loadb(a.binary_body, a.binary_body_length, 0, NULL);
      fprintf(stderr, "\rimport: %lld rows into %s %s in %.1f s%*s\n",
              (long long)json_integer_value(json_object_get(r, "imported")), o.table,
              a.status == 202 ? "queued" : "applied", now_s() - t0, 20, "");
      json_decref(r);
    }
  }
  dg_buf_dispose(&body);
  ulfius_clean_request(&q);
  ulfius_clean_response(&a);
  dg_free(base);
  dg_free(key);
  return rc;
}
