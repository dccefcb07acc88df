/*
 * errors.c -- the tables of DG_ERRNO_MAP and DG_STATUS_MAP (common.h) as
 * functions: every place that names an error, a status or a problem code
 * reads them from here.
 */
#include "dg/common.h"

const char *dg_strerror(int err) {
  switch (err) {
    case DG_OK: return "ok";
#define DG__TEXT(name, value, status, text) \
  case DG_##name: return text;
    DG_ERRNO_MAP(DG__TEXT)
#undef DG__TEXT
    default: return "unknown error";
  }
}

int dg_err_status(int err) {
  switch (err) {
#define DG__STATUS(name, value, status, text) \
  case DG_##name: return status;
    DG_ERRNO_MAP(DG__STATUS)
#undef DG__STATUS
    default: return 500;
  }
}

const char *dg_status_code(int status) {
  switch (status) {
#define DG__CODE(st, code, reason) \
  case st: return (code) ? (code) : "internal";
    DG_STATUS_MAP(DG__CODE)
#undef DG__CODE
    default: return "internal";
  }
}

const char *dg_status_reason(int status) {
  switch (status) {
#define DG__REASON(st, code, reason) \
  case st: return reason;
    DG_STATUS_MAP(DG__REASON)
#undef DG__REASON
    default: return status < 400 ? "OK" : "Internal Server Error";
  }
}
