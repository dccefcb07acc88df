/*
 * hash.c -- FNV-1a, 64 bits: the one copy every module uses (include/dg/hash.h).
 */
#include "dg/hash.h"

uint64_t dg_fnv1a64(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = DG_FNV1A64_BASIS;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * DG_FNV1A64_PRIME;
  return h;
}

uint64_t dg_fnv1a64_str(const char *s) {
  uint64_t h = DG_FNV1A64_BASIS;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * DG_FNV1A64_PRIME;
  return h;
}
