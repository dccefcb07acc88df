/*
 * routes_driver.c -- prints every route the HTTP server serves, straight from
 * the router's own tables (dg_http_route_tables), one a line:
 *
 *   <METHOD> <pattern> <role> <json_body>
 *
 * e.g. "PATCH /tables/:table/rows/:id write 1". tests/api/test_openapi.py
 * compares this list with docs/openapi.json both ways, so a route added to
 * the router without documentation (or documented but not served) fails a
 * test. Exit 0, or 3 when a table is malformed (a route without a pattern,
 * handler or leading slash).
 */
#include <stdio.h>

#include "dg/http.h"

int main(void) {
  size_t n = 0;
  const dg_route_t *const *tables = dg_http_route_tables(&n);
  int bad = 0;
  for (size_t t = 0; t < n; t++) {
    for (const dg_route_t *r = tables[t]; r->method; r++) {
      if (r->pattern == NULL || r->pattern[0] != '/' || r->fn == NULL) {
        fprintf(stderr, "route table %zu: malformed route %s %s\n", t, r->method,
                r->pattern ? r->pattern : "(null)");
        bad = 1;
        continue;
      }
      printf("%s %s %s %d\n", r->method, r->pattern,
             r->role == DG_ROLE_NONE ? "none" : dg_role_name(r->role), r->json_body);
    }
  }
  return bad ? 3 : 0;
}
