/*
 * jwt.c -- bearer JWT verification (see jwt.h).
 *
 * The token's header is decoded here first (base64url JSON) to pick the key
 * by `kid` and to compare `alg` with the key's own algorithm; only then does
 * libjwt verify the signature with that key. Claims are checked here.
 */
#include "dg/jwt.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/buf.h"
#include "dg/common.h"

/* Clock skew we forgive between the issuer and us. */
#define LEEWAY_S 30
/* Keys in a JWKS file; a rotating issuer publishes two or three. */
#define MAX_KEYS 32
/* Longest token we look at; real ones are well under 4 KiB. */
#define MAX_TOKEN 8192

typedef struct {
  char kid[128];          /* "" when the key has none              */
  jwt_alg_t alg;          /* the one algorithm this key verifies   */
  unsigned char *key;     /* secret bytes or PEM text (owned)       */
  size_t key_len;
} jkey_t;

struct dg_jwt_s {
  jkey_t keys[MAX_KEYS];
  int nkeys;
  char *issuer;
  char *audience;
  char *role_claim;
  long max_lifetime_s;  /* longest accepted exp - iat (or exp - now), s */
};

/* base64url without padding -> bytes; NULL on bad input. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len) {
  static const signed char map[256] = {
      ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
      ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
      ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
      ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
      ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
      ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
      ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
      ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
  };
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) return NULL;
  unsigned char *out = dg_malloc(n * 3 / 4 + 3);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = map[(unsigned char)s[i]];
    if (v == 0) {
      dg_free(out);
      return NULL;
    }
    acc = (acc << 6) | (uint32_t)(v - 1);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  *out_len = o;
  out[o] = '\0';
  return out;
}

static int add_key(dg_jwt_t *j, const char *kid, jwt_alg_t alg, const void *key, size_t len) {
  if (j->nkeys == MAX_KEYS) return DG_EINVAL;
  jkey_t *k = &j->keys[j->nkeys++];
  snprintf(k->kid, sizeof k->kid, "%s", kid ? kid : "");
  k->alg = alg;
  k->key = dg_malloc(len + 1);
  memcpy(k->key, key, len);
  k->key[len] = '\0';
  k->key_len = len;
  return 0;
}

/* The algorithm a PEM public key is good for: RS256 or ES256/384. */
static int alg_of_pem(const char *pem, size_t len, jwt_alg_t *alg) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (pk == NULL) return DG_EINVAL;
  int rc = 0;
  if (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA) {
    *alg = JWT_ALG_RS256;
  } else if (EVP_PKEY_base_id(pk) == EVP_PKEY_EC) {
    *alg = EVP_PKEY_get_bits(pk) == 384 ? JWT_ALG_ES384 : JWT_ALG_ES256;
  } else {
    rc = DG_EINVAL;
  }
  EVP_PKEY_free(pk);
  return rc;
}

/* A JWK (RSA n/e or EC crv/x/y) as PEM text (owned). */
static char *jwk_to_pem(json_t *k, jwt_alg_t *alg) {
  const char *kty = json_string_value(json_object_get(k, "kty"));
  EVP_PKEY *pk = NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  BIGNUM *n = NULL, *e = NULL;
  unsigned char *a = NULL, *b = NULL, *point = NULL;
  size_t al = 0, bl = 0;
  char *pem = NULL;
  const char *type = NULL;
  if (kty && strcmp(kty, "RSA") == 0) {
    const char *ns = json_string_value(json_object_get(k, "n"));
    const char *es = json_string_value(json_object_get(k, "e"));
    if (!ns || !es || !(a = b64url_decode(ns, strlen(ns), &al)) || !(b = b64url_decode(es, strlen(es), &bl)))
      goto out;
    n = BN_bin2bn(a, (int)al, NULL);
    e = BN_bin2bn(b, (int)bl, NULL);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    type = "RSA";
    *alg = JWT_ALG_RS256;
  } else if (kty && strcmp(kty, "EC") == 0) {
    const char *crv = json_string_value(json_object_get(k, "crv"));
    const char *xs = json_string_value(json_object_get(k, "x"));
    const char *ys = json_string_value(json_object_get(k, "y"));
    const char *group = crv && strcmp(crv, "P-256") == 0 ? "prime256v1" : crv && strcmp(crv, "P-384") == 0 ? "secp384r1" : NULL;
    /* Coordinates are fixed-size (RFC 7518 6.2.1.2), but some encoders
     * (PyJWT 2.6 among them) drop leading zero bytes, one key in 128 or so:
     * left-pad a short one, refuse a long one. */
    size_t cl = group && strcmp(group, "secp384r1") == 0 ? 48 : 32;
    if (!group || !xs || !ys || !(a = b64url_decode(xs, strlen(xs), &al)) || !(b = b64url_decode(ys, strlen(ys), &bl)) ||
        al == 0 || bl == 0 || al > cl || bl > cl)
      goto out;
    point = dg_calloc(1, 1 + 2 * cl);
    point[0] = 4; /* uncompressed */
    memcpy(point + 1 + (cl - al), a, al);
    memcpy(point + 1 + cl + (cl - bl), b, bl);
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * cl);
    type = "EC";
    *alg = strcmp(group, "secp384r1") == 0 ? JWT_ALG_ES384 : JWT_ALG_ES256;
  } else {
    goto out;
  }
  params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  if (ctx && EVP_PKEY_fromdata_init(ctx) == 1) EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  if (pk) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PUBKEY(bio, pk) == 1) {
      char *data;
      long len = BIO_get_mem_data(bio, &data);
      pem = dg_strndup(data, (size_t)len);
    }
    BIO_free(bio);
  }
out:
  EVP_PKEY_free(pk);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  dg_free(a);
  dg_free(b);
  dg_free(point);
  return pem;
}

void dg_jwt_destroy(dg_jwt_t *j) {
  if (j == NULL) return;
  for (int i = 0; i < j->nkeys; i++) {
    memset(j->keys[i].key, 0, j->keys[i].key_len);
    dg_free(j->keys[i].key);
  }
  dg_free(j->issuer);
  dg_free(j->audience);
  dg_free(j->role_claim);
  dg_free(j);
}

int dg_jwt_create(const dg_jwt_config_t *cfg, dg_jwt_t **out, char *err, size_t errcap) {
  *out = NULL;
  if (!cfg->secret && !cfg->public_key_file && !cfg->jwks_file) return 0;
  dg_jwt_t *j = dg_calloc(1, sizeof *j);
  j->issuer = cfg->issuer ? dg_strdup(cfg->issuer) : NULL;
  j->audience = cfg->audience ? dg_strdup(cfg->audience) : NULL;
  j->role_claim = dg_strdup(cfg->role_claim ? cfg->role_claim : "role");
  if (cfg->secret) {
    if (strlen(cfg->secret) < 32) {
      snprintf(err, errcap, "DUCKGRID_JWT_SECRET needs at least 32 bytes for HS256");
      goto fail;
    }
    add_key(j, NULL, JWT_ALG_HS256, cfg->secret, strlen(cfg->secret));
  }
  if (cfg->public_key_file) {
    size_t len;
    char *pem = dg_read_small_file(cfg->public_key_file, &len);
    jwt_alg_t alg = JWT_ALG_INVAL;
    if (pem == NULL || alg_of_pem(pem, len, &alg) != 0) {
      snprintf(err, errcap, "DUCKGRID_JWT_PUBLIC_KEY: '%s' is not a readable RSA or EC public key (PEM)",
               cfg->public_key_file);
      dg_free(pem);
      goto fail;
    }
    add_key(j, NULL, alg, pem, len);
    dg_free(pem);
  }
  if (cfg->jwks_file) {
    size_t len;
    char *text = dg_read_small_file(cfg->jwks_file, &len);
    json_t *set = text ? json_loadb(text, len, 0, NULL) : NULL;
    dg_free(text);
    json_t *keys = json_object_get(set, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
      snprintf(err, errcap, "DUCKGRID_JWT_JWKS: '%s' is not a JSON Web Key Set", cfg->jwks_file);
      json_decref(set);
      goto fail;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
      json_t *k = json_array_get(keys, i);
      jwt_alg_t alg = JWT_ALG_INVAL;
      char *pem = jwk_to_pem(k, &alg);
      const char *want = json_string_value(json_object_get(k, "alg"));
      if (pem && want && strcmp(want, jwt_alg_str(alg)) != 0) {
        jwt_alg_t named = jwt_str_alg(want);
        /* RS384/RS512 keys are RSA keys too: honour the JWK's alg. */
        if ((alg == JWT_ALG_RS256 && (named == JWT_ALG_RS384 || named == JWT_ALG_RS512))) alg = named;
        else {
          dg_free(pem);
          pem = NULL;
        }
      }
      if (pem == NULL) {
        snprintf(err, errcap, "DUCKGRID_JWT_JWKS: key %zu is not a usable RSA or EC (P-256/P-384) key", i);
        json_decref(set);
        goto fail;
      }
      if (add_key(j, json_string_value(json_object_get(k, "kid")), alg, pem, strlen(pem)) != 0) {
        snprintf(err, errcap, "DUCKGRID_JWT_JWKS: more than %d keys", MAX_KEYS);
        dg_free(pem);
        json_decref(set);
        goto fail;
      }
      dg_free(pem);
    }
    json_decref(set);
  }
  /* Without iss and aud any token signed with the key is accepted, also
   * one minted for another service that shares it: both are required. */
  if (cfg->issuer == NULL || cfg->audience == NULL || !*cfg->issuer || !*cfg->audience) {
    snprintf(err, errcap, "DUCKGRID_JWT_ISSUER and DUCKGRID_JWT_AUDIENCE are required when a JWT key is configured");
    goto fail;
  }
  j->max_lifetime_s = cfg->max_lifetime_s > 0 ? cfg->max_lifetime_s : 86400;
  *out = j;
  return 0;
fail:
  dg_jwt_destroy(j);
  return DG_EINVAL;
}

int dg_jwt_looks_like(const char *t) {
  int dots = 0;
  for (const char *p = t; *p; p++) {
    if (*p == '.') dots++;
    else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '-' || *p == '_'))
      return 0;
  }
  return dots == 2;
}

static int reject(char *why, size_t cap, const char *reason) {
  snprintf(why, cap, "%s", reason);
  return DG_EAUTH;
}

static int aud_ok(jwt_t *jwt, const char *want) {
  const char *one = jwt_get_grant(jwt, "aud");
  if (one) return strcmp(one, want) == 0;
  char *list = jwt_get_grants_json(jwt, "aud");
  int ok = 0;
  json_t *a = list ? json_loads(list, 0, NULL) : NULL;
  for (size_t i = 0; json_is_array(a) && i < json_array_size(a) && !ok; i++) {
    const char *s = json_string_value(json_array_get(a, i));
    ok = s && strcmp(s, want) == 0;
  }
  json_decref(a);
  free(list);
  return ok;
}

static dg_role_t role_of(jwt_t *jwt, const char *claim) {
  dg_role_t best = DG_ROLE_NONE, r;
  const char *one = jwt_get_grant(jwt, claim);
  if (one) return dg_role_parse(one, &r) == 0 ? r : DG_ROLE_NONE;
  char *list = jwt_get_grants_json(jwt, claim);
  json_t *a = list ? json_loads(list, 0, NULL) : NULL;
  for (size_t i = 0; json_is_array(a) && i < json_array_size(a); i++)
    if (dg_role_parse(json_string_value(json_array_get(a, i)), &r) == 0 && r > best) best = r;
  json_decref(a);
  free(list);
  return best;
}

int dg_jwt_check(dg_jwt_t *j, const char *token, dg_principal_t *out, char *why, size_t cap) {
  size_t tlen = strlen(token);
  if (tlen > MAX_TOKEN || !dg_jwt_looks_like(token)) return reject(why, cap, "not a JWT");
  const char *dot = strchr(token, '.');
  size_t hlen;
  unsigned char *hdr = b64url_decode(token, (size_t)(dot - token), &hlen);
  json_t *h = hdr ? json_loadb((const char *)hdr, hlen, 0, NULL) : NULL;
  dg_free(hdr);
  const char *alg_s = json_string_value(json_object_get(h, "alg"));
  const char *kid = json_string_value(json_object_get(h, "kid"));
  jwt_alg_t alg = alg_s ? jwt_str_alg(alg_s) : JWT_ALG_INVAL;
  jkey_t *key = NULL;
  for (int i = 0; i < j->nkeys && key == NULL; i++) {
    jkey_t *k = &j->keys[i];
    if (k->alg != alg) continue;
    if (kid && k->kid[0] && strcmp(kid, k->kid) != 0) continue;
    key = k;
  }
  json_decref(h);
  if (alg == JWT_ALG_NONE || alg == JWT_ALG_INVAL) return reject(why, cap, "the token's algorithm is not accepted");
  if (key == NULL) return reject(why, cap, "no configured key verifies this token (alg/kid)");
  jwt_t *jwt = NULL;
  if (jwt_decode(&jwt, token, key->key, (int)key->key_len) != 0 || jwt == NULL)
    return reject(why, cap, "the token's signature does not verify");
  int rc = 0;
  time_t now = time(NULL);
  long exp = jwt_get_grant_int(jwt, "exp");
  long nbf = jwt_get_grant_int(jwt, "nbf");
  const char *sub = jwt_get_grant(jwt, "sub");
  const char *iss = jwt_get_grant(jwt, "iss");
  dg_role_t role = role_of(jwt, j->role_claim);
  if (jwt_get_alg(jwt) != key->alg) rc = reject(why, cap, "algorithm mismatch");
  else if (exp <= 0) rc = reject(why, cap, "the token has no exp");
  else if (now > exp + LEEWAY_S) rc = reject(why, cap, "the token has expired");
  else if (nbf > 0 && now + LEEWAY_S < nbf) rc = reject(why, cap, "the token is not valid yet (nbf)");
  else if (exp - (jwt_get_grant_int(jwt, "iat") > 0 ? jwt_get_grant_int(jwt, "iat") : (long)now) >
           j->max_lifetime_s + LEEWAY_S)
    rc = reject(why, cap, "the token lives longer than the allowed lifetime (DUCKGRID_JWT_MAX_LIFETIME_S)");
  else if (j->issuer && (iss == NULL || strcmp(iss, j->issuer) != 0)) rc = reject(why, cap, "wrong issuer");
  else if (j->audience && !aud_ok(jwt, j->audience)) rc = reject(why, cap, "wrong audience");
  else if (sub == NULL || *sub == '\0') rc = reject(why, cap, "the token has no sub");
  else if (role == DG_ROLE_NONE) rc = reject(why, cap, "the token grants no known role");
  else if (jwt_get_grant(jwt, "jti") == NULL || *jwt_get_grant(jwt, "jti") == '\0')
    rc = reject(why, cap, "the token has no jti (every token must be revocable: POST /admin/tokens/revoke)");
  else if (strlen(jwt_get_grant(jwt, "jti")) >= sizeof out->jti)
    rc = reject(why, cap, "the token's jti is longer than 71 bytes");
  if (rc == 0) {
    out->key_id = 0;
    out->role = role;
    out->expires_s = (int64_t)exp + LEEWAY_S; /* open streams end then (alive.h) */
    snprintf(out->jti, sizeof out->jti, "%s", jwt_get_grant(jwt, "jti") ? jwt_get_grant(jwt, "jti") : "");
    snprintf(out->user, sizeof out->user, "%s", sub);
  }
  jwt_free(jwt);
  return rc;
}
