/* test_hmac.c -- the per-thread HMAC-SHA256 contexts (hmac.h): known
 * answers, keys that alternate and evict each other, the same answers as
 * OpenSSL's one-shot HMAC(), and threads that each keep their own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>
#include <pthread.h>

#include "dg/hmac.h"

static void hex(const unsigned char d[32], char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void key_of(unsigned char k[32], int first) {
  for (int i = 0; i < 32; i++) k[i] = (unsigned char)(first + i);
}

/* Computed apart (Python's hmac module) for key bytes 0..31 and 32..63. */
static void test_known_answers(void **state) {
  (void)state;
  unsigned char k0[32], k1[32], d[32];
  char h[65];
  key_of(k0, 0);
  key_of(k1, 32);
  dg_hmac_sha256(k0, "duckgrid", 8, d);
  hex(d, h);
  assert_string_equal(h, "024b3e616fa81b6dab7ec035a20d97240b79e526b0266f6efadc850a511fe122");
  dg_hmac_sha256(k1, "", 0, d);
  hex(d, h);
  assert_string_equal(h, "f49240b78aa90e53f46106c3481e377e19696e777328b1cd6ec6061a0bd868a9");
  /* The first key again, after the second: its context kept its key. */
  dg_hmac_sha256(k0, "duckgrid", 8, d);
  hex(d, h);
  assert_string_equal(h, "024b3e616fa81b6dab7ec035a20d97240b79e526b0266f6efadc850a511fe122");
}

/* The one-shot HMAC's answer, for comparison. */
static void reference(const unsigned char k[32], const char *msg, unsigned char out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), k, 32, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* Three keys in turns through two contexts: every order of reuse and
 * eviction, each answer equal to the one-shot HMAC's. */
static void test_alternating_keys(void **state) {
  (void)state;
  unsigned char keys[3][32];
  for (int i = 0; i < 3; i++) key_of(keys[i], 7 * i + 1);
  const int order[] = {0, 1, 0, 2, 2, 1, 0, 1, 2, 0, 0, 1};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "message %zu", i);
    unsigned char got[32], want[32];
    dg_hmac_sha256(keys[order[i]], msg, strlen(msg), got);
    reference(keys[order[i]], msg, want);
    assert_memory_equal(got, want, 32);
  }
}

/* A MAC fed in pieces on the context equals the MAC of the whole. */
static void test_streaming(void **state) {
  (void)state;
  unsigned char k[32], got[32], want[32];
  key_of(k, 3);
  EVP_MAC_CTX *c = dg_hmac_ctx(k);
  EVP_MAC_update(c, (const unsigned char *)"duck", 4);
  EVP_MAC_update(c, (const unsigned char *)"grid", 4);
  size_t n = 0;
  assert_int_equal(EVP_MAC_final(c, got, &n, sizeof got), 1);
  assert_int_equal(n, 32);
  reference(k, "duckgrid", want);
  assert_memory_equal(got, want, 32);
}

static void *thread_main(void *arg) {
  int first = *(int *)arg;
  unsigned char k[32], other[32];
  key_of(k, first);
  key_of(other, first + 100);
  for (int i = 0; i < 2000; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "%d/%d", first, i);
    unsigned char got[32], want[32];
    dg_hmac_sha256(i % 3 ? k : other, msg, strlen(msg), got);
    reference(i % 3 ? k : other, msg, want);
    if (memcmp(got, want, 32) != 0) return (void *)1;
  }
  return NULL;
}

/* Threads with different keys at once: each has its own contexts. */
static void test_threads(void **state) {
  (void)state;
  pthread_t t[4];
  int firsts[4] = {1, 2, 3, 4};
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, thread_main, &firsts[i]), 0);
  for (int i = 0; i < 4; i++) {
    void *rc = (void *)1;
    assert_int_equal(pthread_join(t[i], &rc), 0);
    assert_null(rc);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_alternating_keys),
      cmocka_unit_test(test_streaming),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
