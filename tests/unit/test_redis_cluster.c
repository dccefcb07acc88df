/*
 * test_redis_cluster.c -- the pure parts of Redis Cluster support: the key
 * slot (CRC16/XMODEM test vectors, hash tags), MOVED/ASK parsing, which
 * argument of a command is its key, and the slot map read from CLUSTER
 * SLOTS / CLUSTER SHARDS answers built with hiredis's own reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <hiredis/read.h>

#include "dg/common.h"
#include "dg/redis.h"
#include "stream/redis_cluster.h"

static unsigned slot(const char *k) { return dg_redis_key_slot(k, strlen(k)); }

static void test_slot_vectors(void **state) {
  (void)state;
  /* CRC16/XMODEM("123456789") = 0x31C3, the check value of the spec. */
  assert_int_equal(slot("123456789"), 0x31C3 & 16383);
  /* Values Redis answers to CLUSTER KEYSLOT. */
  assert_int_equal(slot("foo"), 12182);
  assert_int_equal(slot("bar"), 5061);
  assert_int_equal(slot("{dg}"), 7087);
  assert_int_equal(slot(""), 0);
  for (const char *k = "a"; *k; k++) assert_true(slot(k) < DG_REDIS_SLOTS);
}

static void test_hash_tags(void **state) {
  (void)state;
  assert_int_equal(slot("{dg}:request_duck"), slot("dg"));
  assert_int_equal(slot("{dg}:response_duck"), slot("{dg}:duckgrid:manager"));
  assert_int_equal(slot("x{dg}y"), slot("dg"));
  /* Only the first '{' and the next '}' count. */
  assert_int_equal(slot("{a}{b}"), slot("a"));
  assert_int_equal(slot("{{a}}"), slot("{a"));
  /* An empty tag, or no closing brace: the whole key. */
  assert_int_equal(slot("{}dg"), dg_redis_key_slot("{}dg", 4));
  assert_int_not_equal(slot("{}dg"), slot("dg"));
  assert_int_equal(slot("{dg"), dg_redis_key_slot("{dg", 3));
  /* Bytes, not C strings: a NUL inside the tag. */
  assert_int_equal(dg_redis_key_slot("{a\0b}x", 6), dg_redis_key_slot("a\0b", 3));
}

static void test_redirect_parse(void **state) {
  (void)state;
  dg_redis_redirect_t r;
  const char *m = "MOVED 3999 127.0.0.1:6381";
  assert_int_equal(dg_redis_redirect_parse(m, strlen(m), &r), 0);
  assert_int_equal(r.ask, 0);
  assert_int_equal(r.slot, 3999);
  assert_string_equal(r.host, "127.0.0.1");
  assert_int_equal(r.port, 6381);
  const char *a = "ASK 7087 ::1:7000";
  assert_int_equal(dg_redis_redirect_parse(a, strlen(a), &r), 0);
  assert_int_equal(r.ask, 1);
  assert_string_equal(r.host, "::1");
  assert_int_equal(r.port, 7000);
  const char *b = "MOVED 1 [fe80::1]:7001";
  assert_int_equal(dg_redis_redirect_parse(b, strlen(b), &r), 0);
  assert_string_equal(r.host, "fe80::1");
  const char *e = "MOVED 16383 :7002"; /* endpoint left out: same host */
  assert_int_equal(dg_redis_redirect_parse(e, strlen(e), &r), 0);
  assert_string_equal(r.host, "");
  assert_int_equal(r.slot, 16383);
  const char *bad[] = {"MOVED", "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1 h", "MOVED 1 h:0",
                       "MOVED 1 h:65536", "ASK x h:1", "moved 1 h:1", "ERR MOVED 1 h:1",
                       "MOVED 01 h:1", "MOVED 1 h :1", "TRYAGAIN"};
  r.port = 4242;
  for (size_t i = 0; i < DG_ARRAY_SIZE(bad); i++)
    assert_int_equal(dg_redis_redirect_parse(bad[i], strlen(bad[i]), &r), DG_EINVAL);
  assert_int_equal(r.port, 4242); /* untouched */
}

static void test_command_key(void **state) {
  (void)state;
  const char *xadd[] = {"XADD", "{dg}:request_duck", "*", "req", "x"};
  assert_int_equal(dg__redis_command_key(5, xadd, NULL), 1);
  const char *xrg[] = {"XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "streams", "{dg}:r", ">"};
  assert_int_equal(dg__redis_command_key(9, xrg, NULL), 7);
  const char *eval[] = {"EVAL", "return 1", "1", "{dg}:lease", "v"};
  assert_int_equal(dg__redis_command_key(5, eval, NULL), 3);
  const char *eval0[] = {"eval", "return 1", "0"};
  assert_int_equal(dg__redis_command_key(3, eval0, NULL), -1);
  const char *xinfo[] = {"XINFO", "GROUPS", "{dg}:r"};
  assert_int_equal(dg__redis_command_key(3, xinfo, NULL), 2);
  const char *wait[] = {"WAIT", "1", "100"};
  assert_int_equal(dg__redis_command_key(3, wait, NULL), -1);
  const char *ping[] = {"PING"};
  assert_int_equal(dg__redis_command_slot(1, ping, NULL), -1);
  assert_int_equal(dg__redis_command_slot(5, xadd, NULL), (int)slot("dg"));
}

/* Parses RESP text into a reply with hiredis's reader. */
static redisReply *resp(const char *text) {
  redisReader *rd = redisReaderCreate();
  assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
  void *obj = NULL;
  assert_int_equal(redisReaderGetReply(rd, &obj), REDIS_OK);
  assert_non_null(obj);
  redisReaderFree(rd);
  return obj;
}

static void test_slotmap_from_slots(void **state) {
  (void)state;
  /* Two ranges: 0-8191 on 127.0.0.1:7000 (replica 7003), 8192-16383 on an
     empty ip (the node asked) port 7001. */
  redisReply *r = resp("*2\r\n"
                       "*4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                       "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n"
                       "*3\r\n:8192\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n");
  dg__redis_slotmap_t m;
  assert_int_equal(dg__redis_slotmap_from_slots(r, "10.0.0.9", &m), 0);
  int a = dg__redis_slotmap_lookup(&m, 100), b = dg__redis_slotmap_lookup(&m, 9000);
  assert_true(a >= 0 && b >= 0);
  assert_string_equal(m.nodes[a].host, "127.0.0.1");
  assert_int_equal(m.nodes[a].port, 7000);
  assert_string_equal(m.nodes[b].host, "10.0.0.9");
  assert_int_equal(m.nodes[b].port, 7001);
  assert_int_equal(m.nnodes, 3); /* the replica is known too (a refresh candidate) */
  dg__redis_slotmap_dispose(&m);
  freeReplyObject(r);
  redisReply *e = resp("*0\r\n");
  assert_int_equal(dg__redis_slotmap_from_slots(e, "h", &m), DG_EIO);
  freeReplyObject(e);
}

static void test_slotmap_from_shards(void **state) {
  (void)state;
  /* One shard, slots 0-16383, a failed master on 7000 and the online
     master on 7100 (tls-port 8100), a replica. */
  redisReply *r = resp(
      "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*2\r\n"
      "*10\r\n$4\r\nport\r\n:7000\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n"
      "$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$4\r\nfail\r\n"
      "*12\r\n$4\r\nport\r\n:7100\r\n$8\r\ntls-port\r\n:8100\r\n$2\r\nip\r\n$9\r\n127.0.0.2\r\n"
      "$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n");
  dg__redis_slotmap_t m;
  assert_int_equal(dg__redis_slotmap_from_shards(r, 0, "h", &m), 0);
  int n = dg__redis_slotmap_lookup(&m, 7087);
  assert_true(n >= 0);
  assert_string_equal(m.nodes[n].host, "127.0.0.2"); /* endpoint "?": the ip */
  assert_int_equal(m.nodes[n].port, 7100);
  dg__redis_slotmap_dispose(&m);
  assert_int_equal(dg__redis_slotmap_from_shards(r, 1, "h", &m), 0);
  n = dg__redis_slotmap_lookup(&m, 0);
  assert_int_equal(m.nodes[n].port, 8100); /* TLS: the tls-port */
  dg__redis_slotmap_dispose(&m);
  freeReplyObject(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slot_vectors),       cmocka_unit_test(test_hash_tags),
      cmocka_unit_test(test_redirect_parse),     cmocka_unit_test(test_command_key),
      cmocka_unit_test(test_slotmap_from_slots), cmocka_unit_test(test_slotmap_from_shards),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
