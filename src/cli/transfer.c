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
 *
 * HTTP is libcurl's. Neither command holds the file in memory: an import
 * sends a regular file as it reads it, and an export writes each piece of
 * a 200 answer as it arrives (only a refusal's small body is kept, for its
 * message). Proxies from the environment are honoured, as curl(1) does.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* ---- progress on a terminal ------------------------------------------------------- */

/* One status line on stderr, redrawn in place (at most every 0.25 s unless
 * forced); nothing when stderr is not a terminal. */
typedef struct {
  int tty;
  double t0, shown; /* s, monotonic                        */
  int width;        /* characters of the line drawn last    */
} meter_t;

static void meter_init(meter_t *m) {
  m->tty = isatty(2);
  m->t0 = now_s();
  m->shown = 0;
  m->width = 0;
}

__attribute__((format(printf, 3, 4))) static void meter_show(meter_t *m, int force, const char *fmt, ...) {
  if (!m->tty) return;
  double t = now_s();
  if (!force && t - m->shown < 0.25) return;
  m->shown = t;
  char line[200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  fprintf(stderr, "\r%s%*s", line, m->width > n ? m->width - n : 0, ""); /* blanks the rest of a longer line */
  m->width = n;
}

/* Ends the line drawn, if any, so what follows starts on its own. */
static void meter_end(meter_t *m) {
  if (m->tty && m->width > 0) fputc('\n', stderr);
  m->width = 0;
}

/* "[#####---------------]" for frac in [0, 1]. */
static void bar(char out[24], double frac) {
  int k = frac <= 0 ? 0 : frac >= 1 ? 20 : (int)(frac * 20);
  out[0] = '[';
  for (int i = 0; i < 20; i++) out[1 + i] = i < k ? '#' : '-';
  out[21] = ']';
  out[22] = '\0';
}

/* ---- HTTP through libcurl ------------------------------------------------------------ */

/* A transfer to the server: the handle with what both commands set, and
 * the request headers (the key among them). curl_easy_cleanup and
 * curl_slist_free_all free them (http_dispose). */
typedef struct {
  CURL *c;
  struct curl_slist *hdrs;
  char err[CURL_ERROR_SIZE]; /* libcurl's reason for a failed transfer */
} http_t;

static int http_init(http_t *h, const opts_t *o, const char *key, const char *url) {
  memset(h, 0, sizeof *h);
  char auth[600];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
  h->hdrs = curl_slist_append(NULL, auth);
  h->c = curl_easy_init();
  if (h->c == NULL || h->hdrs == NULL) return DG_ENOMEM;
  curl_easy_setopt(h->c, CURLOPT_URL, url);
  curl_easy_setopt(h->c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h->c, CURLOPT_ERRORBUFFER, h->err);
  curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, h->hdrs);
  curl_easy_setopt(h->c, CURLOPT_USERAGENT, "duckgrid/" DG_VERSION);
  /* No overall timeout: a large import or export takes as long as it takes. */
  if (o->insecure) {
    curl_easy_setopt(h->c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h->c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  return 0;
}

static void http_dispose(http_t *h) {
  if (h->c) curl_easy_cleanup(h->c);
  curl_slist_free_all(h->hdrs);
}

/* The reason a transfer failed, from libcurl. */
static const char *http_reason(const http_t *h, CURLcode rc) {
  return h->err[0] ? h->err : curl_easy_strerror(rc);
}

/* The key goes into a header line: no control characters. */
static int key_printable(const char *cmd, const char *key) {
  for (const unsigned char *p = (const unsigned char *)key; *p; p++)
    if (*p < 0x20 || *p == 0x7f) {
      fprintf(stderr, "duckgrid %s: the API key holds a control character\n", cmd);
      return 0;
    }
  return 1;
}

static size_t to_buf(char *data, size_t size, size_t nmemb, void *arg) {
  dg_buf_append(arg, data, size * nmemb);
  return size * nmemb;
}

/* ---- export ------------------------------------------------------------------------- */

/* Where an export's body goes. A 200's body is written as it arrives: to
 * stdout, or to --output F through a temporary file beside F renamed over
 * it at the end (so a failed export leaves F as it was; F that exists and
 * is no regular file, such as /dev/null, is written directly). Any other
 * answer's body (a problem) is kept in memory for say_problem. */
typedef struct {
  CURL *c;
  const opts_t *o;
  int decided;      /* the status was looked at (first body bytes)   */
  long status;      /* the HTTP status                              */
  FILE *out;        /* NULL until opened                            */
  char *tmp;        /* the temporary file's path, or NULL           */
  int open_errno;   /* opening the output failed: its errno         */
  int write_errno;  /* writing it failed: its errno                 */
  uint64_t written; /* bytes, of the 200's body                     */
  dg_buf_t problem; /* the body of any other answer                 */
  meter_t m;
} sink_t;

static int sink_open(sink_t *s) {
  if (s->o->output == NULL) {
    s->out = stdout;
    return 0;
  }
  struct stat st;
  if (stat(s->o->output, &st) == 0 && !S_ISREG(st.st_mode)) {
    s->out = fopen(s->o->output, "wb");
  } else {
    size_t n = strlen(s->o->output) + 32;
    s->tmp = dg_malloc(n);
    snprintf(s->tmp, n, "%s.%ld.part", s->o->output, (long)getpid());
    int fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    s->out = fd < 0 ? NULL : fdopen(fd, "wb");
    if (s->out == NULL) {
      int e = errno;
      if (fd >= 0) close(fd), unlink(s->tmp);
      errno = e;
    }
  }
  if (s->out == NULL) {
    s->open_errno = errno;
    dg_free(s->tmp);
    s->tmp = NULL;
    return -1;
  }
  return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
  sink_t *s = arg;
  size_t n = size * nmemb;
  if (!s->decided) {
    s->decided = 1;
    curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status == 200 && sink_open(s) != 0) return 0; /* ends the transfer */
  }
  if (s->status != 200) {
    dg_buf_append(&s->problem, data, n);
    return n;
  }
  if (fwrite(data, 1, n, s->out) != n) {
    s->write_errno = errno ? errno : EIO;
    return 0;
  }
  s->written += n;
  curl_off_t total = -1;
  curl_easy_getinfo(s->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &total);
  if (total > 0) {
    char b[24];
    bar(b, (double)s->written / (double)total);
    meter_show(&s->m, 0, "export: %s %.1f of %.1f MB", b, (double)s->written / 1e6, (double)total / 1e6);
  } else {
    meter_show(&s->m, 0, "export: %.1f MB", (double)s->written / 1e6);
  }
  return n;
}

int dg_cli_export(int argc, char **argv) {
  opts_t o;
  if (parse("export", argc, argv, &o) != 0) return usage("export");
  char *key = load_key("export", &o);
  if (key == NULL) return 2;
  if (!key_printable("export", key)) {
    dg_free(key);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "duckgrid export: libcurl did not start\n");
    dg_free(key);
    return 1;
  }
  char *base = base_url(&o);
  char url[1024];
  snprintf(url, sizeof url, "%s/tables/%s/export?format=%s", base, o.table, o.format);
  http_t h;
  sink_t s = {.o = &o};
  dg_buf_init(&s.problem);
  meter_init(&s.m);
  int rc = 1;
  if (http_init(&h, &o, key, url) != 0) {
    fprintf(stderr, "duckgrid export: libcurl could not start a transfer\n");
    goto out;
  }
  s.c = h.c;
  curl_easy_setopt(h.c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h.c, CURLOPT_WRITEDATA, &s);
  CURLcode cr = curl_easy_perform(h.c);
  if (!s.decided && cr == CURLE_OK) { /* an answer without a body */
    s.decided = 1;
    curl_easy_getinfo(h.c, CURLINFO_RESPONSE_CODE, &s.status);
    if (s.status == 200) sink_open(&s);
  }
  if (s.open_errno) {
    meter_end(&s.m);
    fprintf(stderr, "duckgrid export: cannot write %s: %s\n", o.output, strerror(s.open_errno));
  } else if (s.write_errno) {
    meter_end(&s.m);
    fprintf(stderr, "duckgrid export: writing the file failed: %s\n", strerror(s.write_errno));
  } else if (cr != CURLE_OK && s.written > 0) {
    meter_end(&s.m);
    fprintf(stderr, "duckgrid export: the answer from %s broke off after %.1f MB: %s\n", base,
            (double)s.written / 1e6, http_reason(&h, cr));
  } else if (cr != CURLE_OK || s.status <= 0) {
    meter_end(&s.m);
    fprintf(stderr, "duckgrid export: no answer from %s (%s)\n", base, http_reason(&h, cr));
  } else if (s.status != 200) {
    meter_end(&s.m);
    say_problem("export", s.status, s.problem.data, s.problem.len);
  } else {
    int closed = s.out == stdout ? fflush(stdout) : fclose(s.out);
    s.out = NULL;
    if (closed != 0) {
      meter_end(&s.m);
      fprintf(stderr, "duckgrid export: writing the file failed: %s\n", strerror(errno));
    } else if (s.tmp && rename(s.tmp, o.output) != 0) {
      meter_end(&s.m);
      fprintf(stderr, "duckgrid export: cannot write %s: %s\n", o.output, strerror(errno));
    } else {
      dg_free(s.tmp);
      s.tmp = NULL; /* renamed: nothing to remove */
      rc = 0;
      meter_show(&s.m, 1, "export: %.1f MB of %s in %.1f s", (double)s.written / 1e6, o.table, now_s() - s.m.t0);
      meter_end(&s.m);
    }
  }
out:
  if (s.out && s.out != stdout) fclose(s.out);
  if (s.tmp) unlink(s.tmp);
  dg_free(s.tmp);
  dg_buf_dispose(&s.problem);
  http_dispose(&h);
  curl_global_cleanup();
  dg_free(base);
  dg_free(key);
  return rc;
}

/* ---- import ------------------------------------------------------------------------- */

/* What an import sends: a regular file is read as it is sent (its size,
 * taken at the start, is the Content-Length); anything else (a pipe) is
 * read whole first, as its size is known only at its end. */
typedef struct {
  FILE *f;          /* the file, or NULL when mem holds the body */
  dg_buf_t mem;     /* the body read whole                       */
  uint64_t size;    /* bytes to send                             */
  uint64_t sent;    /* bytes handed to libcurl                   */
  int failed;       /* 1 read error, 2 the file shrank           */
  int uploaded;     /* the "waiting" line was drawn              */
  const char *table, *format;
  meter_t m;
} source_t;

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg) {
  source_t *src = arg;
  size_t want = size * nitems;
  if ((uint64_t)want > src->size - src->sent) want = (size_t)(src->size - src->sent);
  if (want == 0) return 0;
  size_t n;
  if (src->f == NULL) {
    memcpy(dst, src->mem.data + src->sent, want);
    n = want;
  } else {
    n = fread(dst, 1, want, src->f);
    if (n == 0) {
      src->failed = ferror(src->f) ? 1 : 2;
      return CURL_READFUNC_ABORT;
    }
  }
  src->sent += n;
  return n;
}

static int on_upload(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal;
  source_t *src = arg;
  if ((uint64_t)ulnow < src->size) {
    char b[24];
    bar(b, src->size ? (double)ulnow / (double)src->size : 1);
    meter_show(&src->m, 0, "import: %s %.1f of %.1f MB (%s) to %s", b, (double)ulnow / 1e6, (double)src->size / 1e6,
               src->format, src->table);
  } else if (!src->uploaded) {
    src->uploaded = 1;
    meter_show(&src->m, 1, "import: %.1f MB sent in %.1f s; waiting for the server …", (double)src->size / 1e6,
               now_s() - src->m.t0);
  }
  return 0;
}

int dg_cli_import(int argc, char **argv) {
  opts_t o;
  if (parse("import", argc, argv, &o) != 0) return usage("import");
  source_t src = {.table = o.table, .format = o.format};
  dg_buf_init(&src.mem);
  src.f = fopen(o.file, "rb");
  if (src.f == NULL) {
    fprintf(stderr, "duckgrid import: cannot read %s: %s\n", o.file, strerror(errno));
    return 1;
  }
  struct stat st;
  if (fstat(fileno(src.f), &st) == 0 && S_ISREG(st.st_mode)) {
    src.size = (uint64_t)st.st_size;
  } else {
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, src.f)) > 0) dg_buf_append(&src.mem, chunk, n);
    int bad = ferror(src.f);
    fclose(src.f);
    src.f = NULL;
    if (bad) {
      fprintf(stderr, "duckgrid import: reading %s failed\n", o.file);
      dg_buf_dispose(&src.mem);
      return 1;
    }
    src.size = src.mem.len;
  }
  char *key = load_key("import", &o);
  if (key == NULL || !key_printable("import", key)) {
    if (src.f) fclose(src.f);
    dg_buf_dispose(&src.mem);
    dg_free(key);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "duckgrid import: libcurl did not start\n");
    if (src.f) fclose(src.f);
    dg_buf_dispose(&src.mem);
    dg_free(key);
    return 1;
  }
  char *base = base_url(&o);
  char url[1024];
  snprintf(url, sizeof url, "%s/tables/%s/import?format=%s", base, o.table, o.format);
  http_t h;
  dg_buf_t answer;
  dg_buf_init(&answer);
  int rc = 1;
  if (http_init(&h, &o, key, url) != 0 ||
      (h.hdrs = curl_slist_append(h.hdrs, strcmp(o.format, "csv") == 0
                                              ? "Content-Type: text/csv"
                                              : "Content-Type: application/vnd.apache.parquet")) == NULL) {
    fprintf(stderr, "duckgrid import: libcurl could not start a transfer\n");
    goto out;
  }
  curl_easy_setopt(h.c, CURLOPT_HTTPHEADER, h.hdrs);
  curl_easy_setopt(h.c, CURLOPT_POST, 1L);
  curl_easy_setopt(h.c, CURLOPT_READFUNCTION, on_read);
  curl_easy_setopt(h.c, CURLOPT_READDATA, &src);
  curl_easy_setopt(h.c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)src.size);
  curl_easy_setopt(h.c, CURLOPT_WRITEFUNCTION, to_buf);
  curl_easy_setopt(h.c, CURLOPT_WRITEDATA, &answer);
  meter_init(&src.m);
  if (src.m.tty) {
    curl_easy_setopt(h.c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h.c, CURLOPT_XFERINFOFUNCTION, on_upload);
    curl_easy_setopt(h.c, CURLOPT_XFERINFODATA, &src);
    on_upload(&src, 0, 0, 0, 0);
  }
  CURLcode cr = curl_easy_perform(h.c);
  long status = 0;
  if (cr == CURLE_OK) curl_easy_getinfo(h.c, CURLINFO_RESPONSE_CODE, &status);
  if (src.failed) {
    meter_end(&src.m);
    fprintf(stderr, "duckgrid import: reading %s failed%s\n", o.file,
            src.failed == 2 ? " (it became shorter while it was sent)" : "");
  } else if (cr != CURLE_OK || status <= 0) {
    meter_end(&src.m);
    fprintf(stderr, "duckgrid import: no answer from %s (%s)\n", base, http_reason(&h, cr));
  } else if (status != 200 && status != 201 && status != 202) {
    meter_end(&src.m);
    say_problem("import", status, answer.data, answer.len);
  } else {
    fwrite(answer.data ? answer.data : "", 1, answer.len, stdout);
    fputc('\n', stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
    json_t *r = json_loadb(answer.data ? answer.data : "", answer.len, 0, NULL);
    meter_show(&src.m, 1, "import: %lld rows into %s %s in %.1f s",
               (long long)json_integer_value(json_object_get(r, "imported")), o.table,
               status == 202 ? "queued" : "applied", now_s() - src.m.t0);
    meter_end(&src.m);
    json_decref(r);
  }
out:
  if (src.f) fclose(src.f);
  dg_buf_dispose(&src.mem);
  dg_buf_dispose(&answer);
  http_dispose(&h);
  curl_global_cleanup();
  dg_free(base);
  dg_free(key);
  return rc;
}
