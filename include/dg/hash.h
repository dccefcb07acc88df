/*
 * hash.h -- FNV-1a, 64 bits (Fowler, Noll, Vo): a cheap, well-spread,
 * non-cryptographic hash for bucket choice, content ETags and the manager's
 * in-memory request_id set. Never a security check.
 *
 * The parameters are the published 64-bit ones: offset basis
 * 14695981039346656037 (0xcbf29ce484222325), prime 1099511628211
 * (0x100000001b3).
 */
#ifndef DG_HASH_H
#define DG_HASH_H

#include <stddef.h>
#include <stdint.h>

#define DG_FNV1A64_BASIS 14695981039346656037ULL
#define DG_FNV1A64_PRIME 1099511628211ULL

/** FNV-1a 64 of n bytes at p (p may be NULL when n is 0). */
uint64_t dg_fnv1a64(const void *p, size_t n);

/** FNV-1a 64 of a NUL-terminated string, without its terminator. */
uint64_t dg_fnv1a64_str(const char *s);

#endif
