/*
 * fuzz_redis_url.c -- libFuzzer harness for the Redis URL parser
 * (src/stream/redis_url.c): dg_redis_url_parse, _describe, _dispose.
 *
 * The input (up to its first NUL) is the URL. Checks:
 *   - never crashes; a failure leaves *out untouched and the error message
 *     NUL-terminated within its buffer (small buffers included) and free of
 *     the password: when the raw password contains a character that no
 *     error template uses, the message must not contain it;
 *   - a success is well formed: TCP has a host and a port 1..65535, unix an
 *     absolute socket path that fits sun_path and no host, a user comes with
 *     a non-empty password, db is 0..DG_REDIS_DB_MAX;
 *   - describe() does not depend on the password (it is the same with the
 *     password removed), fails cleanly on a small buffer, and without
 *     credentials its output parses back to the same endpoint.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "dg/redis.h"

#include "fuzz_check.h"

/* Characters that appear in no error message of redis_url.c (its templates
 * and their numeric arguments): a password containing one is recognisable. */
static const char foreign[] = "BDEFGHJKMOQTVWXYZj!$&*+~<>^`{|}";

/* The raw (still encoded) password of a URL: after the first ':' of the
 * userinfo, up to the '@' that ends it. */
static int raw_password(const char *url, const char **p, size_t *n) {
  const char *s = strstr(url, "://");
  if (s == NULL) return 0;
  s += 3;
  size_t alen = strcspn(s, "/?");
  const char *at = memchr(s, '@', alen);
  if (at == NULL) return 0;
  const char *colon = memchr(s, ':', (size_t)(at - s));
  if (colon == NULL) return 0;
  *p = colon + 1;
  *n = (size_t)(at - colon - 1);
  return 1;
}

static int safe(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '/' || *s == '.' || *s == '_' || *s == '-' || *s == ':'))
      return 0;
  return 1;
}

static int streq(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void check_ok(const char *url, const dg_redis_url_t *u) {
  if (u->is_unix) {
    CHECK(!u->tls && u->host == NULL && u->port == 0, "unix URL with TCP parts: %s", url);
    CHECK(u->path && u->path[0] == '/' && strlen(u->path) > 1 &&
              u->path[strlen(u->path) - 1] != '/' &&
              strlen(u->path) < sizeof(((struct sockaddr_un *)0)->sun_path),
          "bad socket path from %s", url);
  } else {
    CHECK(u->host && u->host[0] && u->port >= 1 && u->path == NULL, "bad TCP endpoint from %s", url);
  }
  CHECK(u->db >= 0 && u->db <= DG_REDIS_DB_MAX, "db %d", u->db);
  if (u->user) {
    CHECK(u->user[0] && u->password && u->password[0], "user without password from %s", url);
    for (const char *c = u->user; *c; c++)
      CHECK((unsigned char)*c > 0x20 && *c != 0x7f, "control character in user from %s", url);
  }
  if (u->password) CHECK(u->password[0], "empty password from %s", url);

  char d1[DG_REDIS_URL_MAX + 64], d2[DG_REDIS_URL_MAX + 64];
  CHECK(dg_redis_url_describe(u, d1, sizeof d1) == 0, "describe");
  dg_redis_url_t nopw = *u;
  nopw.password = NULL;
  CHECK(dg_redis_url_describe(&nopw, d2, sizeof d2) == 0 && strcmp(d1, d2) == 0,
        "describe depends on the password: %s", url);
  /* Too small a buffer: DG_ETOOBIG, NUL-terminated prefix. */
  size_t n = strlen(d1);
  char small[8];
  size_t cap = n < sizeof small ? n : sizeof small;
  if (cap > 0) {
    CHECK(dg_redis_url_describe(u, small, cap) == DG_ETOOBIG, "describe into %zu bytes", cap);
    CHECK(memchr(small, '\0', cap) != NULL, "describe into %zu bytes: not terminated", cap);
  }
  CHECK(dg_redis_url_describe(u, small, 0) == DG_ETOOBIG, "describe into 0 bytes");
  /* Without credentials the description is a URL for the same endpoint. */
  if (u->user == NULL && u->password == NULL && (u->host == NULL || safe(u->host)) &&
      (u->path == NULL || safe(u->path))) {
    dg_redis_url_t v;
    char err[128];
    int rc = dg_redis_url_parse(d1, &v, err, sizeof err);
    CHECK(rc == 0, "description '%s' of '%s' does not parse: %s", d1, url, err);
    CHECK(v.tls == u->tls && v.is_unix == u->is_unix && streq(v.host, u->host) &&
              v.port == u->port && streq(v.path, u->path) && v.db == u->db && !v.user && !v.password,
          "'%s' -> '%s' describes another endpoint", url, d1);
    dg_redis_url_dispose(&v);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *url = malloc(size + 1);
  memcpy(url, data, size);
  url[size] = '\0';
  size_t errcap = size % 3 == 0 ? 12 : 256;
  char *err = malloc(errcap);
  memset(err, 'x', errcap);

  dg_redis_url_t u;
  memset(&u, 0xa5, sizeof u);
  int rc = dg_redis_url_parse(url, &u, err, errcap);
  if (rc == 0) {
    check_ok(url, &u);
    dg_redis_url_dispose(&u);
    CHECK(u.host == NULL && u.password == NULL && u.user == NULL && u.path == NULL,
          "dispose left pointers");
  } else {
    CHECK(rc == DG_EINVAL || rc == DG_ETOOBIG, "rc %d", rc);
    unsigned char pat[sizeof u];
    memset(pat, 0xa5, sizeof pat);
    CHECK(memcmp(&u, pat, sizeof u) == 0, "failed parse wrote *out");
    CHECK(memchr(err, '\0', errcap) != NULL, "error message not terminated");
    CHECK(strlen(err) > 0, "failure without a reason");
    const char *pw;
    size_t pn;
    if (raw_password(url, &pw, &pn) && pn >= 1) {
      char *p = strndup(pw, pn);
      if (strpbrk(p, foreign)) CHECK(strstr(err, p) == NULL, "error '%s' shows the password", err);
      free(p);
    }
  }
  /* NULL arguments where the API allows them. */
  CHECK(dg_redis_url_parse(url, &u, NULL, 0) == rc, "result depends on the error buffer");
  if (rc == 0) dg_redis_url_dispose(&u);
  free(err);
  free(url);
  return 0;
}
