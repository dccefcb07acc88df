/*
 * test_webhook.c -- webhook destinations (src/webhook/webhook.c): URL
 * parsing and the allow-list DUCKGRID_WEBHOOK_ALLOW at registration, and
 * the check of resolved addresses before a delivery (IP literals only, so
 * no DNS is needed), and the check of each address the HTTP client is
 * about to connect to (the one that closes the DNS-rebinding gap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "dg/common.h"
#include "dg/webhook.h"

static int check(const char *url) {
  char err[300] = "";
  int rc = dg_webhook_url_check(url, err, sizeof err);
  if (rc != 0) assert_true(err[0] != '\0'); /* every refusal says why */
  return rc;
}

static int resolve(const char *url) {
  char err[300] = "";
  int rc = dg_webhook_url_resolve_check(url, err, sizeof err);
  if (rc != 0) assert_true(err[0] != '\0');
  return rc;
}

static void test_default_loopback_only(void **state) {
  (void)state;
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
  assert_int_equal(check("http://127.0.0.1:8080/hook"), 0);
  assert_int_equal(check("https://127.0.0.1/hook?x=1"), 0);
  assert_int_equal(check("HTTP://LocalHost:9/"), 0);
  assert_int_equal(check("http://[::1]:9000"), 0);
  assert_int_equal(check("http://[0:0:0:0:0:0:0:1]/"), 0); /* the same address, written out */
  assert_int_equal(check("http://10.0.0.1/"), DG_EINVAL);
  assert_int_equal(check("http://127.0.0.2/"), DG_EINVAL);
  assert_int_equal(check("http://example.com/"), DG_EINVAL);
  assert_int_equal(check("http://localhost.example.com/"), DG_EINVAL);
}

static void test_malformed(void **state) {
  (void)state;
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
  const char *bad[] = {"",
                       "ftp://127.0.0.1/",
                       "file:///etc/passwd",
                       "127.0.0.1:80",
                       "http://",
                       "http:///x",
                       "http://u:p@127.0.0.1/",
                       "http://evil@127.0.0.1/",
                       "http://127.0.0.1:0/",
                       "http://127.0.0.1:65536/",
                       "http://127.0.0.1:8x/",
                       "http://127.0.0.1:/",
                       "http://127.0.0.1 /",
                       "http://127.0.0.1/\x01",
                       "http://[::1/",
                       "http://[::1]x/",
                       "http://[zz::1]/",
                       "http://::1/",
                       "http://127.0.0.1_/",
                       "http://localhost%2f/"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (check(bad[i]) != DG_EINVAL) fail_msg("accepted: %s", bad[i]);
  }
  char longurl[DG_WEBHOOK_URL_MAX + 20] = "http://127.0.0.1/";
  for (size_t i = 17; i < sizeof longurl - 1; i++) longurl[i] = 'a';
  longurl[sizeof longurl - 1] = '\0';
  assert_int_equal(check(longurl), DG_EINVAL);
}

static void test_ports_and_names(void **state) {
  (void)state;
  char err[300];
  setenv("DUCKGRID_WEBHOOK_ALLOW", " Hooks.Example.com:8443 , 10.0.0.5,[fd00::1]:80,not a host,", 1);
  assert_int_equal(dg_webhook_allow_valid(err, sizeof err), DG_EINVAL); /* the server refuses to start */
  setenv("DUCKGRID_WEBHOOK_ALLOW", " Hooks.Example.com:8443 , 10.0.0.5,[fd00::1]:80,", 1);
  assert_int_equal(dg_webhook_allow_valid(err, sizeof err), 0);
  assert_int_equal(check("https://hooks.example.com:8443/x"), 0);
  assert_int_equal(check("https://HOOKS.example.com:8443"), 0);
  assert_int_equal(check("https://hooks.example.com/x"), DG_EINVAL);    /* 443 is not 8443 */
  assert_int_equal(check("http://hooks.example.com:8443.evil/"), DG_EINVAL);
  assert_int_equal(check("http://10.0.0.5:1234/"), 0);                  /* no port: any */
  assert_int_equal(check("http://[fd00::1]/"), 0);                      /* 80 by default */
  assert_int_equal(check("http://[fd00::1]:81/"), DG_EINVAL);
  assert_int_equal(check("http://127.0.0.1/"), DG_EINVAL);              /* the default is replaced */
  assert_int_equal(check("http://localhost/"), DG_EINVAL);
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
}

static void test_resolved_addresses(void **state) {
  (void)state;
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
  assert_int_equal(resolve("http://127.0.0.1:9/"), 0);
  assert_int_equal(resolve("http://[::1]:9/"), 0);
  assert_int_equal(resolve("http://10.1.1.1/"), DG_EINVAL);
  /* localhost listed: any loopback address; else only the literals. */
  setenv("DUCKGRID_WEBHOOK_ALLOW", "localhost", 1);
  assert_int_equal(resolve("http://127.0.0.1/"), 0);
  setenv("DUCKGRID_WEBHOOK_ALLOW", "10.0.0.5:80", 1);
  assert_int_equal(resolve("http://10.0.0.5/"), 0);
  assert_int_equal(resolve("http://10.0.0.5:81/"), DG_EINVAL);
  assert_int_equal(resolve("http://127.0.0.1/"), DG_EINVAL);
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
}

/* dg_webhook_addr_check for url and one address given as text. */
static int connect_to(const char *url, const char *addr) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) s4->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) s6->sin6_family = AF_INET6;
  else fail_msg("not an address: %s", addr);
  char err[300] = "";
  int rc = dg_webhook_addr_check(url, (const struct sockaddr *)&ss, err, sizeof err);
  if (rc != 0) assert_non_null(strstr(err, "does not allow"));
  return rc;
}

static void test_connect_time_check(void **state) {
  (void)state;
  /* A listed name: public addresses only, whatever DNS answers at connect. */
  setenv("DUCKGRID_WEBHOOK_ALLOW", "hooks.example.com", 1);
  const char *url = "https://hooks.example.com/x";
  assert_int_equal(connect_to(url, "93.184.216.34"), 0);
  assert_int_equal(connect_to(url, "2606:2800:220:1::1"), 0);
  const char *inside[] = {"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                          "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "::", "fd00::1", "fe80::1",
                          "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1"};
  for (size_t i = 0; i < sizeof inside / sizeof *inside; i++)
    if (connect_to(url, inside[i]) != DG_EINVAL) fail_msg("allowed at connect: %s", inside[i]);
  /* The default list: localhost reaches any loopback address, a literal
   * only itself. */
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
  assert_int_equal(connect_to("http://localhost:9/", "127.0.0.1"), 0);
  assert_int_equal(connect_to("http://localhost:9/", "127.0.0.2"), 0);
  assert_int_equal(connect_to("http://localhost:9/", "::1"), 0);
  assert_int_equal(connect_to("http://localhost:9/", "10.0.0.1"), DG_EINVAL);
  assert_int_equal(connect_to("http://localhost:9/", "93.184.216.34"), DG_EINVAL);
  assert_int_equal(connect_to("http://127.0.0.1:9/", "127.0.0.1"), 0);
  assert_int_equal(connect_to("http://[::1]:9/", "::1"), 0);
  /* A port-bound entry binds the connect check too. */
  setenv("DUCKGRID_WEBHOOK_ALLOW", "localhost:8080", 1);
  assert_int_equal(connect_to("http://localhost:8080/", "127.0.0.1"), 0);
  assert_int_equal(connect_to("http://localhost:8081/", "127.0.0.1"), DG_EINVAL);
  /* Neither IPv4 nor IPv6, or a malformed URL: refused. */
  struct sockaddr_un su = {.sun_family = AF_UNIX};
  char err[300] = "";
  assert_int_equal(dg_webhook_addr_check("http://localhost:8080/", (const struct sockaddr *)&su, err, sizeof err),
                   DG_EINVAL);
  assert_true(err[0] != '\0');
  err[0] = '\0';
  struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  assert_int_equal(dg_webhook_addr_check("ftp://localhost/", (const struct sockaddr *)&s4, err, sizeof err),
                   DG_EINVAL);
  assert_true(err[0] != '\0');
  unsetenv("DUCKGRID_WEBHOOK_ALLOW");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_loopback_only),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_ports_and_names),
      cmocka_unit_test(test_resolved_addresses),
      cmocka_unit_test(test_connect_time_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
