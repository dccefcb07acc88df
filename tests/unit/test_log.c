/* test_log.c -- the text log filter: one line per event, control characters
 * (C0, DEL and C1, encoded or raw) and invalid UTF-8 shown as '?', valid
 * UTF-8 kept. stderr is redirected to a temporary file to read the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dg/log.h"

static void logged(const char *msg, char *out, size_t cap) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  int saved = dup(STDERR_FILENO);
  dup2(fileno(tmp), STDERR_FILENO);
  dg_log_setup(DG_LOG_INFO, 0);
  dg_log(DG_LOG_INFO, "%s", msg);
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, cap - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
}

static void test_c1_and_c0_become_question_marks(void **state) {
  (void)state;
  char line[512];
  logged("a\xc2\x9b[31mb\x9b" "c\x1b[0m\n\x7f" "d\xc2\x85" "e", line, sizeof line);
  const char *msg = strstr(line, "info  ");
  assert_non_null(msg);
  assert_string_equal(msg + 6, "a?[31mb?c?[0m??d?e\n");
}

static void test_valid_utf8_is_kept(void **state) {
  (void)state;
  char line[512];
  logged("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0x \xed\xa0\x80", line, sizeof line);
  const char *msg = strstr(line, "info  ");
  assert_non_null(msg);
  /* U+00A0 is not a control; a surrogate (ED A0 80) is not valid UTF-8. */
  assert_string_equal(msg + 6, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0x ???\n");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_c1_and_c0_become_question_marks),
      cmocka_unit_test(test_valid_utf8_is_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
