/*
 * keys.c -- API keys, hashed at rest, checked on every request.
 *
 * At rest a key is HMAC-SHA256(pepper, key): the pepper is 32 random bytes
 * in a 0600 file beside the database (DUCKGRID_KEY_PEPPER_FILE), so a
 * stolen database file alone does not let anyone test candidate keys.
 *
 * The check path: HMAC the presented key, look the digest up in a small
 * in-process cache (constant-time comparison of digests), and on a miss or an
 * entry older than CACHE_TTL_MS ask DuckDB. So a key deleted by another
 * process is refused within a second, and a key deleted in this process at
 * once (dg_auth_invalidate).
 */
#include "dg/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/hmac.h"
#include "dg/log.h"

/* A deleted key must stop working within a second across processes. */
#define CACHE_TTL_MS 1000
/* last_used_at is a coarse stamp: written at most once a minute per key,
 * so the check path does not write to DuckDB on every refresh. */
#define TOUCH_EVERY_MS 60000
/* Deployments hold a handful of keys; past this the oldest entry is evicted. */
#define CACHE_SLOTS 256

typedef struct {
  unsigned char digest[32]; /* SHA-256 of the key                  */
  int64_t key_id;           /* 0 = empty slot                       */
  dg_role_t role;
  char user[64];
  char tables[DG_SCOPE_MAX]; /* ",a,b," or "": every table        */
  int64_t expires_s;        /* 0: never                           */
  int64_t fetched_ms;       /* monotonic time of the database read  */
  int64_t touched_ms;       /* when last_used_at was last written   */
  int refreshing;           /* a thread is re-reading this entry     */
} cache_entry_t;

/* Digests of keys DuckDB did not know, remembered this long: a client
 * hammering with made-up keys costs one HMAC each, not a DuckDB lookup. A
 * key is random and shown once, so nobody presents a real key before it
 * exists; one created here is also dropped from this cache. */
#define NEG_TTL_MS 5000
#define NEG_SLOTS 1024

struct dg_auth_s {
  unsigned char neg[NEG_SLOTS][32]; /* unknown digests (guarded by lock) */
  int64_t neg_ms[NEG_SLOTS];        /* when each was found unknown, 0: free */
  atomic_ullong neg_hits;           /* requests answered from neg        */
  dg_db_t *db;              /* borrowed                             */
  unsigned char pepper[32]; /* HMAC key for hashes at rest (secret) */
  pthread_mutex_t lock;     /* guards cache and generation          */
  cache_entry_t cache[CACHE_SLOTS];
  /* Bumped by every dg_auth_invalidate. A check that read DuckDB stores
   * what it read only if no invalidation happened since it started: its
   * read may predate a delete, and caching it would let a key deleted in
   * this process pass for another CACHE_TTL_MS. */
  uint64_t generation;
};


/* On the thread's kept context: every request checks its key (hmac.h). */
_Static_assert(sizeof ((dg_auth_t *)0)->pepper == DG_HMAC_KEY_LEN, "the pepper is an HMAC key");
static void keyed_hash(const dg_auth_t *a, const char *key, size_t len, unsigned char out[32]) {
  dg_hmac_sha256(a->pepper, key, len, out);
}

unsigned long long dg_auth_negative_hits(dg_auth_t *a) { return atomic_load(&a->neg_hits); }

int dg_principal_can(const dg_principal_t *p, const char *table) {
  if (p->tables[0] == '\0') return 1;
  if (table == NULL) return 0;
  size_t n = strlen(table);
  for (const char *s = strstr(p->tables, table); s; s = strstr(s + 1, table))
    if (s > p->tables && s[-1] == ',' && s[n] == ',') return 1;
  return 0;
}

void dg_principal_id(const dg_principal_t *p, char *buf, size_t cap) {
  if (p->key_id > 0) snprintf(buf, cap, "key:%lld", (long long)p->key_id);
  else snprintf(buf, cap, "jwt:%s", p->user);
}

void dg_auth_derive(const dg_auth_t *a, const char *label, unsigned char out[32]) {
  keyed_hash(a, label, strlen(label), out);
}

void dg_auth_hash(const dg_auth_t *a, const char *key, size_t len, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char d[32];
  keyed_hash(a, key, len, d);
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = '\0';
}

const char *dg_role_name(dg_role_t r) {
  switch (r) {
    case DG_ROLE_READ: return "read";
    case DG_ROLE_WRITE: return "write";
    case DG_ROLE_ADMIN: return "admin";
    default: return "none";
  }
}

int dg_role_parse(const char *s, dg_role_t *out) {
  if (s == NULL) return DG_EINVAL;
  if (strcmp(s, "read") == 0) *out = DG_ROLE_READ;
  else if (strcmp(s, "write") == 0) *out = DG_ROLE_WRITE;
  else if (strcmp(s, "admin") == 0) *out = DG_ROLE_ADMIN;
  else return DG_EINVAL;
  return 0;
}

/* Reads the pepper, or makes one (first start). 0 or DG_EIO with a reason. */
static int load_pepper(unsigned char pepper[32], const char *path, char *err, size_t errcap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
      close(fd);
      snprintf(err, errcap, "the key pepper file '%s' is open to group or others (mode %03o); chmod 600 it",
               path, (unsigned)(st.st_mode & 0777));
      return DG_EIO;
    }
    ssize_t n = read(fd, pepper, 32);
    close(fd);
    if (n != 32) {
      snprintf(err, errcap, "the key pepper file '%s' is damaged (want 32 bytes)", path);
      return DG_EIO;
    }
    return 0;
  }
  if (RAND_bytes(pepper, 32) != 1) {
    snprintf(err, errcap, "no randomness for the key pepper");
    return DG_EIO;
  }
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, pepper, 32) != 32 || fsync(fd) != 0) {
    snprintf(err, errcap, "cannot write the key pepper file '%s'", path);
    if (fd >= 0) close(fd);
    return DG_EIO;
  }
  close(fd);
  return 0;
}

int dg_auth_create(dg_db_t *db, const char *pepper_file, dg_auth_t **out, char *err, size_t errcap) {
  dg_auth_t *a = dg_calloc(1, sizeof *a);
  if (load_pepper(a->pepper, pepper_file, err, errcap) != 0) {
    dg_free(a);
    return DG_EIO;
  }
  a->db = db;
  pthread_mutex_init(&a->lock, NULL);
  *out = a;
  return 0;
}

void dg_auth_destroy(dg_auth_t *a) {
  if (a == NULL) return;
  pthread_mutex_destroy(&a->lock);
  OPENSSL_cleanse(a->cache, sizeof a->cache);
  OPENSSL_cleanse(a->pepper, sizeof a->pepper);
  dg_free(a);
}

void dg_auth_invalidate(dg_auth_t *a) {
  pthread_mutex_lock(&a->lock);
  memset(a->cache, 0, sizeof a->cache);
  a->generation++;
  pthread_mutex_unlock(&a->lock);
}

/* 256 random bits as "dg_" + 43 base64url characters. */
static int generate_key(char out[DG_KEY_LEN + 1]) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char raw[33];
  if (RAND_bytes(raw, 32) != 1) return DG_EIO;
  raw[32] = 0;
  memcpy(out, "dg_", 3);
  int o = 3;
  for (int i = 0; i < 33; i += 3) {
    uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
    for (int k = 3; k >= 0 && o < DG_KEY_LEN; k--) out[o++] = alphabet[(v >> (6 * k)) & 63];
  }
  out[DG_KEY_LEN] = '\0';
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

/* Inserts a key row; the key's first characters become its visible prefix. */
static int insert_key(dg_auth_t *a, const char *name, dg_role_t role, const char *key, size_t len,
                      int64_t *id_out) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st;
  if (duckdb_prepare(c, dg_sql_key_insert, &st) == DuckDBError) {
    dg_log_error("prepare insert key: %s", duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  char hex[65];
  dg_auth_hash(a, key, len, hex);
  unsigned char d[32];
  keyed_hash(a, key, len, d);
  pthread_mutex_lock(&a->lock); /* a new key is not "unknown" any more */
  a->neg_ms[((size_t)d[0] << 8 | d[1]) % NEG_SLOTS] = 0;
  pthread_mutex_unlock(&a->lock);
  char prefix[12];
  snprintf(prefix, sizeof prefix, "%.*s", (int)(len < 8 ? len : 8), key);
  duckdb_bind_varchar(st, 1, name);
  duckdb_bind_varchar(st, 2, dg_role_name(role));
  duckdb_bind_varchar(st, 3, prefix);
  duckdb_bind_varchar(st, 4, hex);
  duckdb_result res;
  int rc = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    dg_log_error("insert key: %s", duckdb_result_error(&res));
    rc = DG_EIO;
  } else if (id_out) {
    *id_out = duckdb_value_int64(&res, 0, 0);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_auth_key_create(dg_auth_t *a, const char *name, dg_role_t role, char key_out[DG_KEY_LEN + 1],
                       int64_t *id_out) {
  if (name == NULL || name[0] == '\0' || strlen(name) > 63 || role == DG_ROLE_NONE) return DG_EINVAL;
  char key[DG_KEY_LEN + 1];
  if (generate_key(key) != 0) return DG_EIO;
  int rc = insert_key(a, name, role, key, DG_KEY_LEN, id_out);
  if (rc == 0) memcpy(key_out, key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  return rc;
}

/* Looks the digest up in DuckDB: 0 found, DG_EAUTH absent, DG_EUNAVAIL. */
static int lookup(dg_auth_t *a, const char *hex, cache_entry_t *e) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st;
  if (duckdb_prepare(c, dg_sql_key_lookup, &st) == DuckDBError) {
    duckdb_destroy_prepare(&st);
    return DG_EUNAVAIL;
  }
  duckdb_bind_varchar(st, 1, hex);
  duckdb_result res;
  int rc = DG_EAUTH;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    rc = DG_EUNAVAIL;
  } else if (duckdb_row_count(&res) == 1) {
    e->key_id = duckdb_value_int64(&res, 0, 0);
    char *role = duckdb_value_varchar(&res, 1, 0);
    char *name = duckdb_value_varchar(&res, 2, 0);
    if (dg_role_parse(role, &e->role) != 0) e->role = DG_ROLE_NONE;
    snprintf(e->user, sizeof e->user, "%s", name ? name : "");
    char *tables = duckdb_value_is_null(&res, 3, 0) ? NULL : duckdb_value_varchar(&res, 3, 0);
    snprintf(e->tables, sizeof e->tables, "%s", tables ? tables : "");
    e->expires_s = duckdb_value_is_null(&res, 4, 0) ? 0 : duckdb_value_int64(&res, 4, 0);
    duckdb_free(tables);
    duckdb_free(role);
    duckdb_free(name);
    rc = 0;
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

static void touch_last_used(dg_auth_t *a, int64_t id) {
  duckdb_connection c = dg_db_conn(a->db);
  duckdb_prepared_statement st;
  if (c == NULL) return;
  if (duckdb_prepare(c, dg_sql_key_touch, &st) == DuckDBSuccess) {
    duckdb_bind_int64(st, 1, id);
    duckdb_result res;
    /* Two threads touching one key may conflict; the stamp is advisory. */
    duckdb_execute_prepared(st, &res);
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
}

/* An expired key is refused like an unknown one (and its open streams end:
 * dg_alive_check compares the same expires_s). */
static int expired(int64_t expires_s) { return expires_s > 0 && (int64_t)time(NULL) >= expires_s; }

/* The principal a cache entry names (the lock held). */
static void principal_of(const cache_entry_t *e, dg_principal_t *out) {
  out->key_id = e->key_id;
  out->role = e->role;
  out->expires_s = e->expires_s;
  out->jti[0] = '\0';
  memcpy(out->user, e->user, sizeof out->user);
  memcpy(out->tables, e->tables, sizeof out->tables);
}

int dg_auth_peek(dg_auth_t *a, const char *key, size_t len, dg_principal_t *out) {
  if (key == NULL || len == 0 || len > 512) return DG_EUNAVAIL;
  unsigned char d[32];
  keyed_hash(a, key, len, d);
  int64_t now = dg_mono_us() / 1000;
  int found = -1;
  pthread_mutex_lock(&a->lock);
  for (int i = 0; i < CACHE_SLOTS; i++) {
    /* As dg_auth_check compares: every slot, in constant time. Only a
     * fresh entry answers; a stale one is dg_auth_check's to refresh. */
    int hit = a->cache[i].key_id != 0 && CRYPTO_memcmp(a->cache[i].digest, d, 32) == 0;
    if (hit && now - a->cache[i].fetched_ms < CACHE_TTL_MS) found = i;
  }
  if (found >= 0) principal_of(&a->cache[found], out);
  pthread_mutex_unlock(&a->lock);
  if (found < 0 || out->role == DG_ROLE_NONE || expired(out->expires_s)) return DG_EUNAVAIL;
  return 0;
}

int dg_auth_check(dg_auth_t *a, const char *key, size_t len, dg_principal_t *out) {
  if (key == NULL || len == 0 || len > 512) return DG_EAUTH;
  unsigned char d[32];
  keyed_hash(a, key, len, d);
  int64_t now = dg_mono_us() / 1000;
  int found = -1;
  pthread_mutex_lock(&a->lock);
  uint64_t generation = a->generation;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    /* Every slot is compared, in constant time, whatever matches. */
    int hit = a->cache[i].key_id != 0 && CRYPTO_memcmp(a->cache[i].digest, d, 32) == 0;
    if (!hit) continue;
    int64_t age = now - a->cache[i].fetched_ms;
    /* Fresh, or stale by less than a lookup while one thread re-reads it:
     * the others go on with it instead of all querying DuckDB at once. */
    if (age < CACHE_TTL_MS || (a->cache[i].refreshing && age < CACHE_TTL_MS + 250)) found = i;
    else a->cache[i].refreshing = 1;
  }
  if (found >= 0) principal_of(&a->cache[found], out);
  pthread_mutex_unlock(&a->lock);
  if (found >= 0) return out->role == DG_ROLE_NONE || expired(out->expires_s) ? DG_EAUTH : 0;
  size_t ns = ((size_t)d[0] << 8 | d[1]) % NEG_SLOTS;
  pthread_mutex_lock(&a->lock);
  int neg = a->neg_ms[ns] != 0 && now - a->neg_ms[ns] < NEG_TTL_MS && CRYPTO_memcmp(a->neg[ns], d, 32) == 0;
  pthread_mutex_unlock(&a->lock);
  if (neg) {
    atomic_fetch_add(&a->neg_hits, 1);
    return DG_EAUTH;
  }

  static const char digits[] = "0123456789abcdef";
  char hex[65];
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = '\0';
  cache_entry_t e;
  memset(&e, 0, sizeof e);
  int rc = lookup(a, hex, &e);
  pthread_mutex_lock(&a->lock);
  /* Invalidated while we read DuckDB (a key was deleted): our answer stands
   * for this request, which began before the delete returned, but it must
   * not be cached for the requests that begin after. */
  int keep = a->generation == generation;
  int slot = 0;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    if (a->cache[i].key_id != 0 && CRYPTO_memcmp(a->cache[i].digest, d, 32) == 0) {
      slot = i;
      break;
    }
    if (a->cache[i].fetched_ms < a->cache[slot].fetched_ms) slot = i;
  }
  int touch = 0;
  if (rc == 0 && keep) {
    int same = a->cache[slot].key_id == e.key_id && CRYPTO_memcmp(a->cache[slot].digest, d, 32) == 0;
    e.touched_ms = same ? a->cache[slot].touched_ms : 0;
    touch = e.touched_ms == 0 || now - e.touched_ms >= TOUCH_EVERY_MS;
    if (touch) e.touched_ms = now;
    memcpy(e.digest, d, 32);
    e.fetched_ms = now;
    e.refreshing = 0;
    a->cache[slot] = e;
  } else if (rc != 0 && a->cache[slot].key_id != 0 && CRYPTO_memcmp(a->cache[slot].digest, d, 32) == 0) {
    memset(&a->cache[slot], 0, sizeof a->cache[slot]); /* deleted elsewhere */
  }
  if (rc == DG_EAUTH) {
    memcpy(a->neg[ns], d, 32);
    a->neg_ms[ns] = now;
  }
  pthread_mutex_unlock(&a->lock);
  if (rc != 0) return rc;
  if (touch) touch_last_used(a, e.key_id);
  if (e.role == DG_ROLE_NONE || expired(e.expires_s)) return DG_EAUTH;
  out->key_id = e.key_id;
  out->role = e.role;
  out->expires_s = e.expires_s;
  out->jti[0] = '\0';
  memcpy(out->user, e.user, sizeof out->user);
  memcpy(out->tables, e.tables, sizeof out->tables);
  return 0;
}

static int has_admin(dg_auth_t *a, int *yes) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_result res;
  if (duckdb_query(c, dg_sql_key_admin_count, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  *yes = duckdb_value_int64(&res, 0, 0) > 0;
  duckdb_destroy_result(&res);
  return 0;
}

int dg_auth_bootstrap(dg_auth_t *a, const char *admin_key, const char *key_file, char **generated,
                      char *err, size_t errcap) {
  *generated = NULL;
  if (admin_key != NULL) {
    /* Registered once: if this key was bootstrapped before (and perhaps
     * deleted since by an admin), it is not brought back. */
    char hex[65];
    dg_auth_hash(a, admin_key, strlen(admin_key), hex);
    duckdb_connection c = dg_db_conn(a->db);
    duckdb_prepared_statement st;
    int seen = -1;
    if (c && duckdb_prepare(c, dg_sql_bootstrapped_count, &st) == DuckDBSuccess) {
      duckdb_bind_varchar(st, 1, hex);
      duckdb_result res;
      if (duckdb_execute_prepared(st, &res) == DuckDBSuccess) seen = duckdb_value_int64(&res, 0, 0) > 0;
      duckdb_destroy_result(&res);
    }
    if (c) duckdb_destroy_prepare(&st);
    if (seen < 0) {
      snprintf(err, errcap, "cannot read the key table");
      return DG_EIO;
    }
    if (seen) return 0;
    dg_principal_t p;
    if (dg_auth_check(a, admin_key, strlen(admin_key), &p) != 0 &&
        insert_key(a, "bootstrap-admin", DG_ROLE_ADMIN, admin_key, strlen(admin_key), NULL) != 0) {
      snprintf(err, errcap, "cannot store the bootstrap admin key in the database");
      return DG_EIO;
    }
    if (duckdb_prepare(c, dg_sql_bootstrapped_insert, &st) == DuckDBSuccess) {
      duckdb_bind_varchar(st, 1, hex);
      duckdb_result res;
      duckdb_execute_prepared(st, &res);
      duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    return 0;
  }
  int yes = 0;
  if (has_admin(a, &yes) != 0) {
    snprintf(err, errcap, "cannot read the key table");
    return DG_EIO;
  }
  if (yes) return 0;
  char key[DG_KEY_LEN + 1];
  if (generate_key(key) != 0) {
    snprintf(err, errcap, "no randomness for a key");
    return DG_EIO;
  }
  /* The file first: a key we could not hand over must not be stored. */
  int fd = open(key_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, key, DG_KEY_LEN) != DG_KEY_LEN ||
      write(fd, "\n", 1) != 1) {
    snprintf(err, errcap, "cannot write the admin key file '%s'", key_file);
    if (fd >= 0) close(fd);
    OPENSSL_cleanse(key, sizeof key);
    return DG_EIO;
  }
  close(fd);
  if (insert_key(a, "admin", DG_ROLE_ADMIN, key, DG_KEY_LEN, NULL) != 0) {
    unlink(key_file);
    OPENSSL_cleanse(key, sizeof key);
    snprintf(err, errcap, "cannot store the admin key in the database");
    return DG_EIO;
  }
  *generated = dg_strdup(key);
  OPENSSL_cleanse(key, sizeof key);
  return 0;
}

int dg_auth_key_scope(dg_auth_t *a, int64_t id, const char *scope, int64_t expires_s) {
  if ((scope == NULL || *scope == '\0') && expires_s <= 0) return 0;
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st;
  int rc = DG_EIO;
  if (duckdb_prepare(c, dg_sql_key_scope_upsert, &st) == DuckDBSuccess) {
    duckdb_bind_int64(st, 1, id);
    if (scope && *scope) duckdb_bind_varchar(st, 2, scope);
    else duckdb_bind_null(st, 2);
    if (expires_s > 0) duckdb_bind_int64(st, 3, expires_s);
    else duckdb_bind_null(st, 3);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBSuccess) rc = 0;
    else dg_log_error("insert key scope: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
  dg_auth_invalidate(a);
  return rc;
}

int dg_auth_key_delete(dg_auth_t *a, int64_t id) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st;
  /* One statement decides: it deletes only when the key exists and is not
   * the last admin key, so two concurrent deletes cannot both pass. */
  if (duckdb_prepare(c, dg_sql_key_delete, &st) == DuckDBError) {
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  duckdb_bind_int64(st, 1, id);
  duckdb_result res;
  int rc = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) rc = DG_EIO;
  else if (duckdb_row_count(&res) == 0) rc = DG_ENOTFOUND;
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  /* Its scope row goes after it; were that to fail, the orphan row names
   * an id the sequence never hands out again (harmless), and it is logged. */
  if (rc == 0) {
    if (duckdb_prepare(c, dg_sql_key_scope_delete, &st) == DuckDBSuccess) {
      duckdb_bind_int64(st, 1, id);
      if (duckdb_execute_prepared(st, &res) == DuckDBError)
        dg_log_warn("keys: key %lld deleted, its scope row not: %s", (long long)id, duckdb_result_error(&res));
      duckdb_destroy_result(&res);
    } else {
      dg_log_warn("keys: key %lld deleted, its scope row not: %s", (long long)id, duckdb_prepare_error(st));
    }
    duckdb_destroy_prepare(&st);
  }
  if (rc == DG_ENOTFOUND) {
    /* Absent, or the last admin? Tell them apart for a clear answer. */
    duckdb_prepared_statement q;
    if (duckdb_prepare(c, dg_sql_key_role, &q) == DuckDBSuccess) {
      duckdb_bind_int64(q, 1, id);
      duckdb_result r2;
      if (duckdb_execute_prepared(q, &r2) == DuckDBSuccess && duckdb_row_count(&r2) == 1) rc = DG_ECONFLICT;
      duckdb_destroy_result(&r2);
    }
    duckdb_destroy_prepare(&q);
  }
  dg_auth_invalidate(a);
  return rc;
}
