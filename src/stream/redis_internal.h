/*
 * redis_internal.h -- private helpers shared by the files of the Redis layer
 * (redis.c, redis_url.c, redis_xstream.c, redis_transport_sock.c,
 * redis_transport_tls.c).
 */
#ifndef DG_STREAM_REDIS_INTERNAL_H
#define DG_STREAM_REDIS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/** snprintf into err[0..errcap) when err is not NULL and errcap > 0. */
void dg__redis_seterr(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Parses s[0..len) as a plain decimal in [0, max]: at least one digit, digits
 * only, no sign, no leading zero unless the number is 0, overflow checked.
 * Returns 0 and sets *out, or -1 (*out untouched).
 */
int dg__redis_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);

#endif
