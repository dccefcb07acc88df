/*
 * isotime.h -- RFC 3339 date-times.
 */
#ifndef DG_ISOTIME_H
#define DG_ISOTIME_H

#include <stdint.h>

/** "2026-12-31T23:59:59Z", "...59.5+01:00" (year 1970 on, real dates) to
 *  milliseconds since the epoch (digits past the third are dropped).
 *  0, or -1 when malformed. */
int dg_parse_rfc3339_ms(const char *s, int64_t *out);

#endif
