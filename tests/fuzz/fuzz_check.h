/*
 * fuzz_check.h -- the harnesses' invariant check: a failed CHECK prints the
 * condition, where it is and why, then aborts, so libFuzzer saves the input
 * as a crash.
 */
#ifndef DG_FUZZ_CHECK_H
#define DG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "fuzz: invariant failed: %s (%s:%d): ", #cond,       \
              __FILE__, __LINE__);                                         \
      fprintf(stderr, __VA_ARGS__);                                        \
      fputc('\n', stderr);                                                 \
      abort();                                                             \
    }                                                                      \
  } while (0)

#endif
