/* test_hash.c -- FNV-1a 64 against the published test vectors (the FNV
 * authors' test suite, fnv1a64 column) and the helpers' agreement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dg/hash.h"

static const struct {
  const char *in;
  uint64_t want;
} vectors[] = {
    {"", 0xcbf29ce484222325ULL},
    {"a", 0xaf63dc4c8601ec8cULL},
    {"b", 0xaf63df4c8601f1a5ULL},
    {"c", 0xaf63de4c8601eff2ULL},
    {"foo", 0xdcb27518fed9d577ULL},
    {"foob", 0xdd120e790c2512afULL},
    {"fooba", 0xcac165afa2fef40aULL},
    {"foobar", 0x85944171f73967e8ULL},
};

static void test_published_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    assert_int_equal(dg_fnv1a64_str(vectors[i].in), vectors[i].want);
    assert_int_equal(dg_fnv1a64(vectors[i].in, strlen(vectors[i].in)), vectors[i].want);
  }
}

/* The empty input hashes to the offset basis itself, from a NULL pointer too. */
static void test_empty_is_basis(void **state) {
  (void)state;
  assert_int_equal(dg_fnv1a64(NULL, 0), DG_FNV1A64_BASIS);
  assert_int_equal(DG_FNV1A64_BASIS, 14695981039346656037ULL);
  assert_int_equal(DG_FNV1A64_PRIME, 1099511628211ULL);
}

/* Bytes past a NUL count in the length form; high bytes are unsigned. */
static void test_binary_bytes(void **state) {
  (void)state;
  const unsigned char a[] = {'a', 0, 'b'};
  assert_int_not_equal(dg_fnv1a64(a, 3), dg_fnv1a64(a, 1));
  assert_int_equal(dg_fnv1a64(a, 1), 0xaf63dc4c8601ec8cULL);
  const char hi[] = "\xff\x80";
  /* byte by byte by hand: (basis ^ 0xff) * prime, then ^ 0x80, * prime */
  uint64_t h = (DG_FNV1A64_BASIS ^ 0xffu) * DG_FNV1A64_PRIME;
  h = (h ^ 0x80u) * DG_FNV1A64_PRIME;
  assert_int_equal(dg_fnv1a64_str(hi), h);
  assert_int_equal(dg_fnv1a64(hi, 2), h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_vectors),
      cmocka_unit_test(test_empty_is_basis),
      cmocka_unit_test(test_binary_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
