/*
 * auth.h -- API keys: generation, hashing, bootstrap of the first admin key,
 * and the per-request check with a short-lived cache.
 *
 * A key is "dg_" followed by 43 base64url characters (256 random bits). Only
 * a keyed hash, HMAC-SHA256 with a secret pepper kept in a 0600 file beside
 * the database, is stored (dg.api_keys.hash); a key is high-entropy, so a
 * fast hash is enough, and the plain key never touches the disk except in
 * the 0600 bootstrap file the operator asked for by not setting one.
 */
#ifndef DG_AUTH_H
#define DG_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "dg/db.h"

typedef enum {
  DG_ROLE_NONE = 0,
  DG_ROLE_READ = 1,
  DG_ROLE_WRITE = 2,
  DG_ROLE_ADMIN = 3,
} dg_role_t;

/** Room for a key's table scope, ",a,b,": at most 16 names of 63 bytes. */
#define DG_SCOPE_MAX 1040
#define DG_SCOPE_TABLES 16

/** Who is calling, after a successful check. */
typedef struct dg_principal_s {
  int64_t key_id;   /* dg.api_keys.id                     */
  dg_role_t role;   /* the key's role                      */
  char user[64];    /* the key's name, recorded as "user"  */
  int64_t expires_s; /* when the credential expires, seconds since
                        the epoch (a JWT's exp); 0: never         */
  char jti[72];      /* a JWT's id, "" when none (revocation)     */
  char tables[DG_SCOPE_MAX]; /* a scoped key's tables as ",a,b,"; "" = all */
  int64_t seen_us;   /* monotonic time it was authenticated (alive.h)  */
} dg_principal_t;

/** 1 when p may touch table name (an unscoped caller may touch any). */
int dg_principal_can(const dg_principal_t *p, const char *table);

/** The caller's identity for per-caller limits: "key:<id>" or "jwt:<sub>". */
void dg_principal_id(const dg_principal_t *p, char *buf, size_t cap);

typedef struct dg_auth_s dg_auth_t;

/** Requests refused from the negative cache of unknown keys (for /metrics). */
unsigned long long dg_auth_negative_hits(dg_auth_t *a);

/** Length of a generated key, without the terminator. */
#define DG_KEY_LEN 46

/**
 * Creates the key checker on top of db (borrowed; must outlive it), with the
 * hashing pepper read from pepper_file, or made there (0600) on first start.
 * DG_EIO with a reason in err when the file cannot be read or written.
 */
int dg_auth_create(dg_db_t *db, const char *pepper_file, dg_auth_t **out, char *err, size_t errcap);
void dg_auth_destroy(dg_auth_t *a);

/**
 * Makes sure an admin key exists. With admin_key set: registers it (once) as
 * "bootstrap-admin". Without: if the database has no admin key, generates
 * one, stores its hash, writes it to key_file with mode 0600 and returns it
 * in *generated (free with dg_free) so the caller can print it once;
 * otherwise *generated is NULL. Fails with DG_EIO (database, file) with a
 * reason in err.
 */
int dg_auth_bootstrap(dg_auth_t *a, const char *admin_key, const char *key_file, char **generated,
                      char *err, size_t errcap);

/**
 * Checks a presented key. 0 and *out filled when it is known; DG_EAUTH when
 * unknown (or deleted more than a second ago); DG_EUNAVAIL when the
 * database cannot answer.
 */
int dg_auth_check(dg_auth_t *a, const char *key, size_t len, dg_principal_t *out);

/**
 * dg_auth_check from the cache alone, for a thread that must not block (an
 * HTTP loop): 0 and *out filled when the key is in the cache, fresh, and
 * valid; DG_EUNAVAIL for anything else (unknown here, stale, refused):
 * then dg_auth_check decides, on a thread that may query DuckDB. Never
 * queries, never changes the cache.
 */
int dg_auth_peek(dg_auth_t *a, const char *key, size_t len, dg_principal_t *out);

/**
 * Creates a key: writes the secret (DG_KEY_LEN chars + NUL) into key_out and
 * its id into *id_out. DG_EINVAL for a bad name, DG_EIO on database errors.
 */
int dg_auth_key_create(dg_auth_t *a, const char *name, dg_role_t role, char key_out[DG_KEY_LEN + 1],
                       int64_t *id_out);

/**
 * Limits key id (just created) to the tables in scope (",a,b,"; NULL or ""
 * for all) and/or makes it expire at expires_s (seconds since the epoch;
 * 0 never). 0 or DG_EIO.
 */
int dg_auth_key_scope(dg_auth_t *a, int64_t id, const char *scope, int64_t expires_s);

/**
 * Deletes key id. Refuses (DG_ECONFLICT) to delete the last admin key, so
 * the service cannot lock its operators out. DG_ENOTFOUND, DG_EIO.
 * The in-process cache is cleared, so the key fails on the next request.
 */
int dg_auth_key_delete(dg_auth_t *a, int64_t id);

/** Forgets cached entries so a deleted key is refused at once in this process. */
void dg_auth_invalidate(dg_auth_t *a);

/** A 32-byte key for another purpose, HMAC-SHA256(pepper, label): the
 *  pepper itself never leaves this module. */
void dg_auth_derive(const dg_auth_t *a, const char *label, unsigned char out[32]);

/** HMAC-SHA256(pepper, key) as 64 lowercase hex characters plus NUL. */
void dg_auth_hash(const dg_auth_t *a, const char *key, size_t len, char hex[65]);

const char *dg_role_name(dg_role_t r);
/** "read", "write", "admin" -> role; DG_EINVAL otherwise. */
int dg_role_parse(const char *s, dg_role_t *out);

#endif
