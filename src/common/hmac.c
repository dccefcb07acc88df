/*
 * hmac.c -- per-thread HMAC-SHA256 contexts (hmac.h).
 *
 * A thread keeps two contexts, each with its key; a call with one of the
 * two keys re-initialises that context with EVP_MAC_init(c, NULL, 0, NULL),
 * which keeps the key, and another key replaces the one used least
 * recently. The keys are cleansed when the thread ends.
 */
#include "dg/hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>

#include "dg/common.h"

#define SLOTS 2

typedef struct {
  EVP_MAC_CTX *c[SLOTS];
  unsigned char key[SLOTS][DG_HMAC_KEY_LEN];
  int keyed[SLOTS];
  int last; /* the slot used last */
} mac_cache_t;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg; /* fetched once, never freed */

static void cache_free(void *p) {
  mac_cache_t *mc = p;
  for (int i = 0; i < SLOTS; i++) EVP_MAC_CTX_free(mc->c[i]);
  OPENSSL_cleanse(mc->key, sizeof mc->key);
  dg_free(mc);
}

static void cache_init(void) {
  DG_ASSERT(pthread_key_create(&cache_key, cache_free) == 0);
  hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

EVP_MAC_CTX *dg_hmac_ctx(const unsigned char key[DG_HMAC_KEY_LEN]) {
  pthread_once(&cache_once, cache_init);
  mac_cache_t *mc = pthread_getspecific(cache_key);
  if (mc == NULL) {
    mc = dg_calloc(1, sizeof *mc);
    for (int i = 0; i < SLOTS; i++) DG_ASSERT(hmac_alg != NULL && (mc->c[i] = EVP_MAC_CTX_new(hmac_alg)) != NULL);
    DG_ASSERT(pthread_setspecific(cache_key, mc) == 0);
  }
  for (int i = 0; i < SLOTS; i++) {
    if (mc->keyed[i] && CRYPTO_memcmp(mc->key[i], key, DG_HMAC_KEY_LEN) == 0 &&
        EVP_MAC_init(mc->c[i], NULL, 0, NULL) == 1) {
      mc->last = i;
      return mc->c[i];
    }
  }
  int i = mc->last ^ 1; /* the one used least recently */
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  DG_ASSERT(EVP_MAC_init(mc->c[i], key, DG_HMAC_KEY_LEN, params) == 1);
  memcpy(mc->key[i], key, DG_HMAC_KEY_LEN);
  mc->keyed[i] = 1;
  mc->last = i;
  return mc->c[i];
}

void dg_hmac_sha256(const unsigned char key[DG_HMAC_KEY_LEN], const void *data, size_t len, unsigned char out[32]) {
  EVP_MAC_CTX *c = dg_hmac_ctx(key);
  size_t n = 0;
  EVP_MAC_update(c, data, len);
  DG_ASSERT(EVP_MAC_final(c, out, &n, 32) == 1 && n == 32);
}
