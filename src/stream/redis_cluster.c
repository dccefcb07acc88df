/*
 * redis_cluster.c -- the pure parts of Redis Cluster support: the key slot
 * (CRC16 with hash tags), which argument of a command is its key, MOVED/ASK
 * answers, and the slot map read from CLUSTER SHARDS or CLUSTER SLOTS.
 *
 * Routing itself (connections, redirects, refreshes) is in redis.c, which
 * owns the connection state; nothing here does I/O.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dg/redis.h"
#include "stream/redis_cluster.h"
#include "stream/redis_internal.h"

/* ======================================================================= */
/* Key slot                                                                  */
/* ======================================================================= */

/* CRC16-CCITT as Redis Cluster specifies it (XMODEM: polynomial 0x1021,
   initial value 0, no reflection, no final xor), computed bit by bit: a key
   is short and the table would be 512 bytes of constants to get wrong. */
static uint16_t crc16_xmodem(const unsigned char *p, size_t n) {
  uint16_t crc = 0;
  for (size_t i = 0; i < n; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

unsigned dg_redis_key_slot(const char *key, size_t len) {
  const char *open = memchr(key, '{', len);
  if (open != NULL) {
    size_t rest = len - (size_t)(open - key) - 1;
    const char *close = memchr(open + 1, '}', rest);
    /* "{}" hashes the whole key: an empty tag would put every such key in one slot by accident. */
    if (close != NULL && close > open + 1) {
      key = open + 1;
      len = (size_t)(close - key);
    }
  }
  return crc16_xmodem((const unsigned char *)key, len) & (DG_REDIS_SLOTS - 1);
}

/* ======================================================================= */
/* Which argument is the key                                                 */
/* ======================================================================= */

static size_t arglen(const char **argv, const size_t *argvlen, int i) {
  return argvlen ? argvlen[i] : strlen(argv[i]);
}

static int arg_is(const char **argv, const size_t *argvlen, int i, const char *word) {
  size_t n = strlen(word);
  return arglen(argv, argvlen, i) == n && strncasecmp(argv[i], word, n) == 0;
}

/* Commands that address no key (or whose arguments are not keys). */
static const char *const keyless[] = {
    "PING", "INFO", "WAIT", "CLUSTER", "AUTH", "HELLO", "SELECT", "CLIENT", "SCRIPT",
    "FUNCTION", "COMMAND", "ECHO", "QUIT", "DBSIZE", "TIME", "CONFIG", "ACL", "ASKING",
    "READONLY", "READWRITE", "MULTI", "EXEC", "DISCARD", "PUBLISH", "FLUSHALL", "FLUSHDB",
    "KEYS", "SCAN", "RANDOMKEY", "LASTSAVE", "SAVE", "BGSAVE", "BGREWRITEAOF", "ROLE",
    "SLOWLOG", "LATENCY", "SWAPDB", "RESET", "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE",
    "PUNSUBSCRIBE", "MEMORY", "DEBUG", "MONITOR", "SHUTDOWN", "FAILOVER", "REPLICAOF",
    "SLAVEOF", "WAITAOF",
};

int dg__redis_command_key(int argc, const char **argv, const size_t *argvlen) {
  if (argc < 2) return -1;
  for (size_t i = 0; i < sizeof keyless / sizeof *keyless; i++)
    if (arg_is(argv, argvlen, 0, keyless[i])) return -1;
  if (arg_is(argv, argvlen, 0, "EVAL") || arg_is(argv, argvlen, 0, "EVALSHA") ||
      arg_is(argv, argvlen, 0, "EVAL_RO") || arg_is(argv, argvlen, 0, "EVALSHA_RO") ||
      arg_is(argv, argvlen, 0, "FCALL") || arg_is(argv, argvlen, 0, "FCALL_RO")) {
    uint64_t nkeys;
    if (argc < 4 || dg__redis_parse_uint(argv[2], arglen(argv, argvlen, 2), 1u << 20, &nkeys) != 0 ||
        nkeys == 0)
      return -1;
    return 3;
  }
  if (arg_is(argv, argvlen, 0, "XREAD") || arg_is(argv, argvlen, 0, "XREADGROUP")) {
    for (int i = 1; i + 1 < argc; i++)
      if (arg_is(argv, argvlen, i, "STREAMS")) return i + 1;
    return -1;
  }
  if (arg_is(argv, argvlen, 0, "XGROUP") || arg_is(argv, argvlen, 0, "XINFO") ||
      arg_is(argv, argvlen, 0, "OBJECT"))
    return argc > 2 ? 2 : -1;
  return 1;
}

int dg__redis_command_slot(int argc, const char **argv, const size_t *argvlen) {
  int k = dg__redis_command_key(argc, argv, argvlen);
  if (k < 0) return -1;
  return (int)dg_redis_key_slot(argv[k], arglen(argv, argvlen, k));
}

/* ======================================================================= */
/* MOVED / ASK                                                               */
/* ======================================================================= */

int dg_redis_redirect_parse(const char *s, size_t len, dg_redis_redirect_t *out) {
  int ask;
  size_t i;
  if (len > 6 && memcmp(s, "MOVED ", 6) == 0) {
    ask = 0;
    i = 6;
  } else if (len > 4 && memcmp(s, "ASK ", 4) == 0) {
    ask = 1;
    i = 4;
  } else {
    return DG_EINVAL;
  }
  const char *sp = memchr(s + i, ' ', len - i);
  uint64_t slot, port;
  if (sp == NULL || dg__redis_parse_uint(s + i, (size_t)(sp - (s + i)), DG_REDIS_SLOTS - 1, &slot) != 0)
    return DG_EINVAL;
  const char *addr = sp + 1;
  size_t alen = len - (size_t)(addr - s);
  while (alen > 0 && (addr[alen - 1] == '\r' || addr[alen - 1] == '\n')) alen--;
  /* The port follows the last ':' (an IPv6 address has more of them). */
  const char *colon = NULL;
  for (size_t k = alen; k > 0; k--)
    if (addr[k - 1] == ':') {
      colon = addr + k - 1;
      break;
    }
  if (colon == NULL ||
      dg__redis_parse_uint(colon + 1, alen - (size_t)(colon + 1 - addr), 65535, &port) != 0 || port == 0)
    return DG_EINVAL;
  const char *host = addr;
  size_t hlen = (size_t)(colon - addr);
  if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
    host++;
    hlen -= 2;
  }
  if (hlen >= sizeof out->host) return DG_EINVAL;
  for (size_t k = 0; k < hlen; k++)
    if ((unsigned char)host[k] <= 0x20 || (unsigned char)host[k] >= 0x7f) return DG_EINVAL;
  out->ask = ask;
  out->slot = (unsigned)slot;
  memcpy(out->host, host, hlen);
  out->host[hlen] = '\0';
  out->port = (uint16_t)port;
  return 0;
}

/* ======================================================================= */
/* Slot map                                                                  */
/* ======================================================================= */

void dg__redis_slotmap_dispose(dg__redis_slotmap_t *m) {
  for (size_t i = 0; i < m->nnodes; i++) dg_free(m->nodes[i].host);
  dg_free(m->nodes);
  dg_free(m->ranges);
  memset(m, 0, sizeof *m);
}

/* Index of host:port in m->nodes, added when new. */
static int add_node(dg__redis_slotmap_t *m, const char *host, size_t hlen, uint16_t port, int master) {
  for (size_t i = 0; i < m->nnodes; i++)
    if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hlen &&
        memcmp(m->nodes[i].host, host, hlen) == 0) {
      m->nodes[i].master |= master;
      return (int)i;
    }
  m->nodes = dg_realloc(m->nodes, (m->nnodes + 1) * sizeof *m->nodes);
  m->nodes[m->nnodes] = (dg__redis_node_t){dg_strndup(host, hlen), port, master};
  return (int)m->nnodes++;
}

static void add_range(dg__redis_slotmap_t *m, long long a, long long b, int node) {
  if (a < 0 || b < a || b >= DG_REDIS_SLOTS) return;
  m->ranges = dg_realloc(m->ranges, (m->nranges + 1) * sizeof *m->ranges);
  m->ranges[m->nranges++] = (dg__redis_range_t){(unsigned)a, (unsigned)b, node};
}

static int is_str(const redisReply *r) {
  return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* Value of key `name` in a flat [k, v, k, v...] array, or NULL. */
static const redisReply *field(const redisReply *a, const char *name) {
  if (a->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t i = 0; i + 1 < a->elements; i += 2)
    if (is_str(a->element[i]) && strcmp(a->element[i]->str, name) == 0) return a->element[i + 1];
  return NULL;
}

static long long int_field(const redisReply *a, const char *name) {
  const redisReply *v = field(a, name);
  return v && v->type == REDIS_REPLY_INTEGER ? v->integer : 0;
}

/* The address to reach a node by: its endpoint unless empty or "?", else
   its ip, else the host the map was read from. */
static void node_host(const redisReply *n, const char *asked, const char **h, size_t *hl) {
  const char *names[] = {"endpoint", "ip"};
  for (int i = 0; i < 2; i++) {
    const redisReply *v = field(n, names[i]);
    if (v && is_str(v) && v->len > 0 && strcmp(v->str, "?") != 0) {
      *h = v->str;
      *hl = v->len;
      return;
    }
  }
  *h = asked;
  *hl = strlen(asked);
}

int dg__redis_slotmap_from_shards(const redisReply *rep, int tls, const char *asked,
                                  dg__redis_slotmap_t *out) {
  if (rep->type != REDIS_REPLY_ARRAY) return DG_EIO;
  dg__redis_slotmap_t m = {0};
  for (size_t s = 0; s < rep->elements; s++) {
    const redisReply *sh = rep->element[s];
    const redisReply *slots = field(sh, "slots"), *nodes = field(sh, "nodes");
    if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
        nodes->type != REDIS_REPLY_ARRAY)
      continue;
    int master = -1;
    for (size_t k = 0; k < nodes->elements; k++) {
      const redisReply *n = nodes->element[k];
      const redisReply *role = field(n, "role"), *health = field(n, "health");
      long long port = tls ? int_field(n, "tls-port") : int_field(n, "port");
      if (port <= 0) port = tls ? int_field(n, "port") : int_field(n, "tls-port");
      if (port <= 0 || port > 65535) continue;
      int is_master = role && is_str(role) && strcmp(role->str, "master") == 0;
      int online = health == NULL || (is_str(health) && strcmp(health->str, "online") == 0);
      const char *h;
      size_t hl;
      node_host(n, asked, &h, &hl);
      int idx = add_node(&m, h, hl, (uint16_t)port, is_master && online);
      if (is_master && online) master = idx;
    }
    if (master < 0) continue; /* a shard without a live master: its slots stay unmapped */
    for (size_t k = 0; k + 1 < slots->elements; k += 2) {
      if (slots->element[k]->type != REDIS_REPLY_INTEGER || slots->element[k + 1]->type != REDIS_REPLY_INTEGER)
        continue;
      add_range(&m, slots->element[k]->integer, slots->element[k + 1]->integer, master);
    }
  }
  if (m.nranges == 0) {
    dg__redis_slotmap_dispose(&m);
    return DG_EIO;
  }
  *out = m;
  return 0;
}

int dg__redis_slotmap_from_slots(const redisReply *rep, const char *asked, dg__redis_slotmap_t *out) {
  if (rep->type != REDIS_REPLY_ARRAY) return DG_EIO;
  dg__redis_slotmap_t m = {0};
  for (size_t s = 0; s < rep->elements; s++) {
    const redisReply *e = rep->element[s];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER)
      continue;
    int master = -1;
    for (size_t k = 2; k < e->elements; k++) {
      const redisReply *n = e->element[k];
      if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 || !is_str(n->element[0]) ||
          n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
          n->element[1]->integer > 65535)
        continue;
      const char *h = n->element[0]->str;
      size_t hl = n->element[0]->len;
      if (hl == 0 || strcmp(h, "?") == 0) {
        h = asked;
        hl = strlen(asked);
      }
      int idx = add_node(&m, h, hl, (uint16_t)n->element[1]->integer, k == 2);
      if (k == 2) master = idx;
    }
    if (master >= 0) add_range(&m, e->element[0]->integer, e->element[1]->integer, master);
  }
  if (m.nranges == 0) {
    dg__redis_slotmap_dispose(&m);
    return DG_EIO;
  }
  *out = m;
  return 0;
}

int dg__redis_slotmap_lookup(const dg__redis_slotmap_t *m, unsigned slot) {
  for (size_t i = 0; i < m->nranges; i++)
    if (slot >= m->ranges[i].start && slot <= m->ranges[i].end) return m->ranges[i].node;
  return -1;
}
