/*
 * jwt.h -- OAuth bearer tokens: JWTs verified with libjwt (Debian's libjwt,
 * OpenSSL backend), keys from a shared secret (HS256), a PEM public key
 * (RS256 / ES256) or a JWKS file.
 *
 * Every key is bound to one algorithm, and a token is accepted only if its
 * header names exactly that algorithm: this closes the classic confusion
 * where an RS256 public key is used as an HS256 secret. `exp` is required;
 * `nbf`, `iss` and `aud` are checked (iss/aud when configured), with a
 * 30-second clock leeway.
 */
#ifndef DG_JWT_H
#define DG_JWT_H

#include <stddef.h>

#include "dg/auth.h"

typedef struct dg_jwt_config_s {
  const char *secret;          /* HS256 shared secret, or NULL               */
  const char *public_key_file; /* PEM public key (RSA: RS256, P-256: ES256)   */
  const char *jwks_file;       /* JSON Web Key Set file                       */
  const char *issuer;          /* required `iss`, or NULL                      */
  const char *audience;        /* required in `aud`, or NULL                   */
  const char *role_claim;      /* claim naming the role (default "role")      */
  long max_lifetime_s;         /* longest token lifetime, s (0: 24 h)         */
} dg_jwt_config_t;

typedef struct dg_jwt_s dg_jwt_t;

/**
 * Loads the keys. *out is NULL (and 0 returned) when no key is configured:
 * bearer tokens are then API keys only. DG_EINVAL with a one-line reason for
 * unreadable or unusable keys.
 */
int dg_jwt_create(const dg_jwt_config_t *cfg, dg_jwt_t **out, char *err, size_t errcap);
void dg_jwt_destroy(dg_jwt_t *j);

/** 1 when token has the shape of a JWT (three base64url parts). */
int dg_jwt_looks_like(const char *token);

/**
 * Verifies token and maps it to a principal: `sub` becomes the user, the
 * role claim (a string or an array of strings; the highest known role wins)
 * the role. DG_EAUTH with a reason (never the token) in why on any failure.
 */
int dg_jwt_check(dg_jwt_t *j, const char *token, dg_principal_t *out, char *why, size_t whycap);

#endif
