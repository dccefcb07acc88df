/*
 * log.h -- one line per event on stderr, plain text or JSON
 * (DUCKGRID_LOG_FORMAT=json). Never pass a secret to these functions.
 */
#ifndef DG_LOG_H
#define DG_LOG_H

typedef enum { DG_LOG_DEBUG, DG_LOG_INFO, DG_LOG_WARN, DG_LOG_ERROR } dg_log_level_t;

/** Set once at start-up, before threads exist. */
void dg_log_setup(dg_log_level_t min_level, int json);
void dg_log(dg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define dg_log_info(...) dg_log(DG_LOG_INFO, __VA_ARGS__)
#define dg_log_warn(...) dg_log(DG_LOG_WARN, __VA_ARGS__)
#define dg_log_error(...) dg_log(DG_LOG_ERROR, __VA_ARGS__)
#define dg_log_debug(...) dg_log(DG_LOG_DEBUG, __VA_ARGS__)

#endif
