/*
 * docs.c -- the API describes itself, served by duckgrid with no CDN:
 *
 *   GET /openapi.json     docs/openapi.json, byte for byte (OpenAPI 3.1)
 *   GET /docs             Swagger UI: our own page, pointing at /openapi.json
 *   GET /docs/{file}      the page's assets, a fixed whitelist (below)
 *
 *   GET /                 the web grid's page (web/index.html, built)
 *   GET /app/{file}       its assets: app.js, app.css (built by esbuild)
 *
 * All of them are open without a key, as the contract says (API.md v1.1:
 * the web UI's static files are open; every API call the page makes carries
 * the user's key).
 *
 * Where the files are. The document and the Swagger UI assets are files, not
 * compiled in, so the hand-written docs/openapi.json stays the one source of
 * truth and swagger-ui-dist (pinned in tools/package-lock.json, copied by
 * scripts/node-deps.sh) is never vendored into git:
 *
 *   DUCKGRID_DOCS_DIR set    $DUCKGRID_DOCS_DIR/openapi.json
 *                            $DUCKGRID_DOCS_DIR/swagger-ui/<asset>
 *   otherwise                <exe dir>/../docs/openapi.json
 *                            <exe dir>/../third_party/swagger-ui/<asset>
 *   DUCKGRID_WEB_DIR set     $DUCKGRID_WEB_DIR/<file>      (the web grid)
 *   otherwise                <exe dir>/../web/dist/<file>  (scripts/web-build.sh)
 *
 * (<exe dir> is the directory of /proc/self/exe, so build/duckgrid finds the
 * source tree's files whatever the working directory.)
 *
 * When. Every file is read once, at start-up (dg_docs_load from
 * dg_http_start, or from the first docs request, whichever comes first:
 * pthread_once), into memory that lives as long as the process. Requests do
 * no file I/O, and the set of files cannot change under a running server.
 * This is the one piece of process-wide state in the HTTP layer; it is
 * written once before any reader can see it and read-only after, like a
 * constant table.
 *
 * What. A request names a file only by matching one of the whitelist's names
 * exactly, so no path a client sends ever reaches the file system: there is
 * nothing to traverse. index.html and swagger-initializer.js are ours,
 * compiled in below; the rest are swagger-ui-dist's. A file that could not
 * be read is 404 with the reason, and start-up logs a warning once.
 *
 * Caching. Each file carries a strong ETag (FNV-1a of its bytes); a matching
 * If-None-Match gets 304. The document and the page say no-cache (always
 * revalidate: they change with the server); the assets may be cached for a
 * day (they change only with the pinned swagger-ui-dist version).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dg/common.h"
#include "dg/hash.h"
#include "dg/http.h"
#include "dg/log.h"

/* Largest file we load: swagger-ui-bundle.js is ~1.7 MB; anything near this
 * is not one of ours. */
#define DOC_FILE_MAX (16u << 20)

/* ======================================================================= */
/* Our own page                                                              */
/* ======================================================================= */

/* Swagger UI's page, with every asset from /docs/ and the script in a file of
 * its own, so the Content-Security-Policy can forbid inline scripts. */
static const char INDEX_HTML[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "  <meta charset=\"utf-8\">\n"
    "  <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "  <title>duckgrid API</title>\n"
    "  <link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\">\n"
    "  <link rel=\"icon\" type=\"image/png\" href=\"/docs/favicon-32x32.png\" sizes=\"32x32\">\n"
    "</head>\n"
    "<body>\n"
    "  <div id=\"swagger-ui\"></div>\n"
    "  <script src=\"/docs/swagger-ui-bundle.js\"></script>\n"
    "  <script src=\"/docs/swagger-ui-standalone-preset.js\"></script>\n"
    "  <script src=\"/docs/swagger-initializer.js\"></script>\n"
    "</body>\n"
    "</html>\n";

/* validatorUrl null: Swagger UI would otherwise send the document to an
 * outside validator for its badge. Keys typed into "Authorize" stay in the
 * page (persistAuthorization off), and ?url= is ignored (queryConfigEnabled
 * off), so the page shows only this server's document. */
static const char INITIALIZER_JS[] =
    "window.onload = function () {\n"
    "  window.ui = SwaggerUIBundle({\n"
    "    url: \"/openapi.json\",\n"
    "    dom_id: \"#swagger-ui\",\n"
    "    deepLinking: true,\n"
    "    validatorUrl: null,\n"
    "    queryConfigEnabled: false,\n"
    "    persistAuthorization: false,\n"
    "    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],\n"
    "    plugins: [SwaggerUIBundle.plugins.DownloadUrl],\n"
    "    layout: \"StandaloneLayout\"\n"
    "  });\n"
    "};\n";

/* Swagger UI styles elements inline and draws icons from data: URIs; it
 * needs nothing else, and "Try it out" calls this same origin. */
#define DOCS_CSP                                                                              \
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "               \
  "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "   \
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* The web grid: its own script and style sheet only, no inline code, API
 * calls (fetch, the SSE stream read through fetch) to this origin only. */
#define WEB_CSP                                                                               \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#define CACHE_REVALIDATE "no-cache"
#define CACHE_ASSET "public, max-age=86400"

/* ======================================================================= */
/* The files                                                                 */
/* ======================================================================= */

typedef enum {
  FROM_DOCS,     /* <docs dir>/<name>                 */
  FROM_UI,       /* <swagger-ui dir>/<name>            */
  FROM_WEB,      /* <web dir>/<name>: the web grid     */
  BUILT_IN,      /* the text compiled in above         */
} origin_t;

typedef struct {
  const char *name;       /* as requested, and as on disk             */
  origin_t origin;
  const char *type;       /* Content-Type                             */
  const char *cache;      /* Cache-Control                            */
  const char *builtin;    /* BUILT_IN: the text                       */
  const char *csp;        /* Content-Security-Policy, or NULL         */
  /* Filled once by load_all(), read-only after: */
  char *data;             /* the bytes (owned; NULL when missing)     */
  size_t len;             /* bytes                                    */
  char etag[20];          /* "\"%016llx\""                            */
  char why[160];          /* why data is NULL, for the 404            */
} doc_file_t;

enum { F_OPENAPI, F_INDEX, F_INIT, F_CSS, F_BUNDLE, F_PRESET, F_FAVICON,
       F_WEB_INDEX, F_WEB_JS, F_WEB_CSS, F_COUNT };

static doc_file_t files[F_COUNT] = {
    [F_OPENAPI] = {"openapi.json", FROM_DOCS, "application/json", CACHE_REVALIDATE, NULL},
    [F_INDEX] = {"index.html", BUILT_IN, "text/html; charset=utf-8", CACHE_REVALIDATE, INDEX_HTML,
                 DOCS_CSP},
    [F_INIT] = {"swagger-initializer.js", BUILT_IN, "text/javascript; charset=utf-8",
                CACHE_REVALIDATE, INITIALIZER_JS},
    [F_CSS] = {"swagger-ui.css", FROM_UI, "text/css; charset=utf-8", CACHE_ASSET, NULL},
    [F_BUNDLE] = {"swagger-ui-bundle.js", FROM_UI, "text/javascript; charset=utf-8", CACHE_ASSET,
                  NULL},
    [F_PRESET] = {"swagger-ui-standalone-preset.js", FROM_UI, "text/javascript; charset=utf-8",
                  CACHE_ASSET, NULL},
    [F_FAVICON] = {"favicon-32x32.png", FROM_UI, "image/png", CACHE_ASSET, NULL},
    /* The web grid changes with every build: always revalidated (ETag). */
    [F_WEB_INDEX] = {"index.html", FROM_WEB, "text/html; charset=utf-8", CACHE_REVALIDATE, NULL,
                     WEB_CSP},
    [F_WEB_JS] = {"app.js", FROM_WEB, "text/javascript; charset=utf-8", CACHE_REVALIDATE, NULL,
                  WEB_CSP},
    [F_WEB_CSS] = {"app.css", FROM_WEB, "text/css; charset=utf-8", CACHE_REVALIDATE, NULL, WEB_CSP},
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;


/* Reads a whole regular file of at most DOC_FILE_MAX bytes into f. 0, or
 * DG_EIO / DG_ETOOBIG / DG_ENOMEM with the reason in f->why. */
static int read_file(doc_file_t *f, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) {
    snprintf(f->why, sizeof f->why, "cannot open %.100s: %s", path, strerror(errno));
    return DG_EIO;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(f->why, sizeof f->why, "%.120s is not a regular file", path);
    rc = DG_EIO;
  } else if ((unsigned long long)st.st_size > DOC_FILE_MAX) {
    snprintf(f->why, sizeof f->why, "%.100s is larger than %u bytes", path, DOC_FILE_MAX);
    rc = DG_ETOOBIG;
  } else {
    size_t n = (size_t)st.st_size;
    char *buf = dg_try_malloc(n + 1);
    if (buf == NULL) {
      snprintf(f->why, sizeof f->why, "out of memory reading %.100s", path);
      rc = DG_ENOMEM;
    } else if (fread(buf, 1, n, fp) != n) {
      snprintf(f->why, sizeof f->why, "cannot read %.100s", path);
      dg_free(buf);
      rc = DG_EIO;
    } else {
      buf[n] = '\0';
      f->data = buf;
      f->len = n;
    }
  }
  fclose(fp);
  return rc;
}

/* dir + "/" + name into out; 0, or DG_EINVAL when it does not fit. */
static int join(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  return n >= 0 && (size_t)n < cap ? 0 : DG_EINVAL;
}

/* The directories of the document and of the Swagger UI assets (see the top
 * of this file); 0, or DG_EINVAL when they cannot be told. */
static int find_dirs(char docs_dir[PATH_MAX], char ui_dir[PATH_MAX], char web_dir[PATH_MAX]) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return DG_EINVAL;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash == NULL) return DG_EINVAL;
  *slash = '\0';
  const char *web = getenv("DUCKGRID_WEB_DIR");
  if (web && *web) {
    if (strlen(web) >= PATH_MAX) return DG_EINVAL;
    memcpy(web_dir, web, strlen(web) + 1);
  } else if (join(web_dir, PATH_MAX, exe, "../web/dist") != 0) {
    return DG_EINVAL;
  }
  const char *env = getenv("DUCKGRID_DOCS_DIR");
  if (env && *env) {
    if (strlen(env) >= PATH_MAX) return DG_EINVAL;
    memcpy(docs_dir, env, strlen(env) + 1);
    return join(ui_dir, PATH_MAX, env, "swagger-ui");
  }
  if (join(docs_dir, PATH_MAX, exe, "../docs") != 0) return DG_EINVAL;
  return join(ui_dir, PATH_MAX, exe, "../third_party/swagger-ui");
}

static void load_all(void) {
  char docs_dir[PATH_MAX], ui_dir[PATH_MAX], web_dir[PATH_MAX];
  int dirs_rc = find_dirs(docs_dir, ui_dir, web_dir);
  for (size_t i = 0; i < F_COUNT; i++) {
    doc_file_t *f = &files[i];
    char path[PATH_MAX];
    int rc = 0;
    if (f->origin == BUILT_IN) {
      f->data = (char *)f->builtin; /* never freed: the files live as long as the process */
      f->len = strlen(f->builtin);
    } else if (dirs_rc != 0) {
      snprintf(f->why, sizeof f->why, "the docs directory is unknown: set DUCKGRID_DOCS_DIR");
      rc = DG_EINVAL;
    } else if (join(path, sizeof path,
                    f->origin == FROM_DOCS ? docs_dir : f->origin == FROM_UI ? ui_dir : web_dir,
                    f->name) != 0) {
      snprintf(f->why, sizeof f->why, "the docs directory's path is too long");
      rc = DG_EINVAL;
    } else {
      rc = read_file(f, path);
    }
    if (rc == 0) {
      snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long)dg_fnv1a64(f->data, f->len));
    } else {
      dg_log_warn("%s: %s is not served: %s%s", f->origin == FROM_WEB ? "web" : "docs", f->name,
                  f->why,
                  f->origin == FROM_UI    ? " (scripts/node-deps.sh installs Swagger UI)"
                  : f->origin == FROM_WEB ? " (make builds the web grid: scripts/web-build.sh)"
                                          : "");
    }
  }
}

void dg_docs_load(void) { pthread_once(&load_once, load_all); }

/* ======================================================================= */
/* Routes                                                                    */
/* ======================================================================= */

static void serve(dg_req_t *r, const doc_file_t *f) {
  if (f->data == NULL) {
    /* f->why names filesystem paths: it is in the start-up log only. */
    dg_problem(r, 404, NULL, "%s is not available on this server (see the server log)", f->name);
    return;
  }
  dg_set_header(r, "ETag", f->etag);
  dg_set_header(r, "Cache-Control", f->cache);
  dg_set_header(r, "X-Content-Type-Options", "nosniff");
  if (f->csp) dg_set_header(r, "Content-Security-Policy", f->csp);
  if (f->origin == FROM_WEB) dg_set_header(r, "Referrer-Policy", "no-referrer");
  const char *inm = dg_header(r, "If-None-Match");
  if (inm && (strstr(inm, f->etag) != NULL || strcmp(inm, "*") == 0)) {
    dg_reply_empty(r, 304);
    return;
  }
  dg_reply_bytes(r, 200, f->type, f->data, f->len);
}

static int openapi_get(dg_req_t *r) {
  dg_docs_load();
  serve(r, &files[F_OPENAPI]);
  return 0;
}

static int docs_page(dg_req_t *r) {
  dg_docs_load();
  /* The page is useless without the assets or the document: say which. */
  for (size_t i = 0; i < F_COUNT; i++) {
    if (files[i].data == NULL && files[i].origin != FROM_WEB) {
      dg_problem(r, 404, NULL, "the interactive docs are not available: %s is missing (see the server log)",
                 files[i].name);
      return 0;
    }
  }
  serve(r, &files[F_INDEX]);
  return 0;
}

/* The file of the whitelist named exactly `name` among [from, to) (never
 * the document), served; else 404. */
static void serve_named(dg_req_t *r, size_t from, size_t to, const char *what) {
  dg_docs_load();
  const char *name = r->params[0];
  for (size_t i = from; i < to; i++) {
    if (i != F_OPENAPI && strcmp(name, files[i].name) == 0) {
      serve(r, &files[i]);
      return;
    }
  }
  dg_problem(r, 404, NULL, "no such %s file: '%.80s'", what, name);
}

static int docs_file(dg_req_t *r) {
  serve_named(r, 0, F_WEB_INDEX, "docs");
  return 0;
}

/* The web grid's page and its assets (the page itself only at /). */
static int web_page(dg_req_t *r) {
  dg_docs_load();
  serve(r, &files[F_WEB_INDEX]);
  return 0;
}

static int web_file(dg_req_t *r) {
  serve_named(r, F_WEB_JS, F_COUNT, "web app");
  return 0;
}

const dg_route_t dg_routes_docs[] = {
    {"GET", "/openapi.json", DG_ROLE_NONE, openapi_get, 0, NULL},
    {"GET", "/docs", DG_ROLE_NONE, docs_page, 0, NULL},
    {"GET", "/docs/:file", DG_ROLE_NONE, docs_file, 0, NULL},
    {"GET", "/", DG_ROLE_NONE, web_page, 0, NULL},
    {"GET", "/app/:file", DG_ROLE_NONE, web_file, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
