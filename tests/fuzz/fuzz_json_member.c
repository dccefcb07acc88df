/*
 * fuzz_json_member.c -- libFuzzer harness for dg_json_raw_member
 * (src/common/jsonw.c), the raw top-level member lookup the manager uses to
 * classify a request (dg__mgr_is_ddl) without decoding it.
 *
 * Input: byte 0 picks the key: 0..7 one of a fixed set ("op", "table", ...),
 * otherwise the key is the next (byte0 & 31) bytes (up to a NUL). The rest
 * is the JSON text, in a heap copy of exactly its length so any read past
 * the end is an ASan report.
 * Checks:
 *   - never reads outside the text; on success the value lies inside it;
 *   - when jansson accepts the text as an object without duplicate keys and
 *     the key needs no escaping: a value found raw decodes (jansson, any
 *     type) to exactly jansson's member; and when the text has no backslash
 *     at all (so no key is escaped), found/not found agree with jansson.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/common.h"
#include "dg/jsonw.h"

#include "fuzz_check.h"

static const char *const keys[] = {"op", "table", "row_id", "value", "", "a", "updates", "request_id"};

/* A key that means the same raw and decoded: printable ASCII, no '"' or '\'. */
static int plain_key(const char *k) {
  for (; *k; k++)
    if ((unsigned char)*k < 0x20 || (unsigned char)*k >= 0x7f || *k == '"' || *k == '\\') return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  char key[40];
  size_t pos = 1;
  if (data[0] < 8) {
    snprintf(key, sizeof key, "%s", keys[data[0]]);
  } else {
    size_t kl = data[0] & 31;
    if (kl > size - 1) kl = size - 1;
    memcpy(key, data + 1, kl);
    key[kl] = '\0';
    pos += kl;
  }
  size_t len = size - pos;
  char *json = malloc(len ? len : 1);
  memcpy(json, data + pos, len);

  const char *val = NULL;
  size_t vlen = 0;
  int rc = dg_json_raw_member(json, len, key, &val, &vlen);
  CHECK(rc == 0 || rc == DG_EINVAL || rc == DG_ENOTFOUND, "rc %d", rc);
  if (rc == 0) {
    CHECK(val >= json && val <= json + len && vlen <= (size_t)(json + len - val),
          "value [%td, +%zu) outside the text of %zu bytes", val - json, vlen, len);
  }

  json_error_t err;
  json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
  if (o != NULL && json_is_object(o) && plain_key(key)) {
    json_t *want = json_object_get(o, key);
    if (rc == 0) {
      CHECK(want != NULL, "raw lookup found '%s' that jansson does not have: %.*s", key, (int)len,
            json);
      json_t *got = json_loadb(val, vlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
      CHECK(got != NULL && json_equal(got, want), "raw value of '%s' is '%.*s', jansson's differs",
            key, (int)vlen, val);
      json_decref(got);
    } else if (memchr(json, '\\', len) == NULL) {
      CHECK(want == NULL && rc == DG_ENOTFOUND,
            "raw lookup of '%s' failed (rc %d) in a valid object%s: %.*s", key, rc,
            want ? " that has it" : "", (int)len, json);
    }
  }
  json_decref(o);
  free(json);
  return 0;
}
