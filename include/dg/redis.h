/*
 * redis.h -- duckgrid's Redis client: URL parsing, a blocking connection with
 * AUTH, SELECT, timeouts and reconnect-with-backoff, argv commands,
 * pipelining, and helpers for stream replies (XREAD, XREADGROUP, XRANGE).
 *
 * Threading: a dg_redis_t is used by one thread at a time. Each thread that
 * talks to Redis (the manager, each response reader, each API worker pool
 * slot) owns its own connections; nothing in here locks. Handing a connection
 * to another thread is fine as long as the hand-over itself synchronizes
 * (a mutex or queue) and the first thread stops using it.
 *
 * Commands are built from argv arrays, never by formatting user data into a
 * command string, so any byte (spaces, CRLF, NUL) is safe in keys and values.
 * hiredis 0.14 formats commands and parses replies; the bytes travel over our
 * own transport (src/stream/redis_transport.h): a plain socket, or TLS on
 * OpenSSL for rediss:// URLs (certificate and host always verified). The
 * protocol is RESP2.
 *
 * Reply objects are hiredis's redisReply; the caller frees each one it gets
 * with freeReplyObject() (include <hiredis/hiredis.h>).
 */
#ifndef DG_REDIS_H
#define DG_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "dg/common.h"

/* ======================================================================= */
/* URLs                                                                      */
/* ======================================================================= */

/*
 * Accepted forms (scheme case-insensitive):
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   rediss://[[user]:password@]host[:port][/db]      TLS (see dg_redis_opts_t)
 *   unix://[[user]:password@]/abs/path/to.sock[?db=N]
 *
 * For unix sockets only the unix:// form (as redis-py writes it) is
 * accepted; "redis+unix://" and "redis-socket://" are not.
 *
 * host is a name, an IPv4 address or a bracketed IPv6 literal ("[::1]").
 * port defaults to 6379 and must be 1..65535; db defaults to 0 and must be a
 * plain decimal 0..DG_REDIS_DB_MAX without sign or leading zeros. user,
 * password and the socket path are percent-decoded ("%40" is '@'); in a
 * password '@', '/', '?', '#', '%' and spaces must be percent-encoded (a raw
 * ':' after the first one is part of the password). A bare
 * "user@" without ':' is rejected as ambiguous: write ":password@" for a
 * password alone (the ACL "default" user) or "user:password@".
 * Anything else (fragments, unknown query parameters, control characters,
 * spaces, empty port, zone ids) is rejected rather than repaired.
 */

/** Longest URL accepted; a Redis URL with long credentials fits well within. */
#define DG_REDIS_URL_MAX 4096
/** Highest db index accepted (Redis's `databases` setting is an int). */
#define DG_REDIS_DB_MAX 2147483647
/** Default TCP port. */
#define DG_REDIS_DEFAULT_PORT 6379

/** A parsed Redis URL. Owns its strings; release with dg_redis_url_dispose(). */
typedef struct dg_redis_url_s {
  int tls;        /* 1 for rediss:// */
  int is_unix;    /* 1 for unix:// (then host is NULL and path is set) */
  char *host;     /* host name or IP literal without brackets; NULL for unix */
  uint16_t port;  /* TCP port; 0 for unix */
  char *path;     /* unix socket path, decoded; NULL for TCP */
  char *user;     /* ACL user name, decoded; NULL when absent */
  char *password; /* decoded; NULL when absent. Never logged. */
  int db;         /* database index selected after connecting */
} dg_redis_url_t;

/**
 * Parses url into *out (which must later be disposed).
 * err/errcap (err may be NULL) receive a one-line reason on failure; the
 * reason never contains the password.
 * Fails with DG_EINVAL on any malformed URL, DG_ETOOBIG when url is longer
 * than DG_REDIS_URL_MAX. *out is untouched on failure.
 */
int dg_redis_url_parse(const char *url, dg_redis_url_t *out, char *err, size_t errcap);

/** Frees the strings of a parsed URL (wiping the password) and zeroes it. */
void dg_redis_url_dispose(dg_redis_url_t *url);

/**
 * Writes a loggable description ("redis://user@host:port/db",
 * "unix:///path?db=N") with the password left out, always NUL-terminated.
 * Fails with DG_ETOOBIG when it does not fit (buf then holds a truncated copy).
 */
int dg_redis_url_describe(const dg_redis_url_t *url, char *buf, size_t cap);

/* ======================================================================= */
/* Connections                                                               */
/* ======================================================================= */

typedef struct dg_redis_s dg_redis_t;

/** Connection options. A zeroed struct (or NULL) means the defaults. */
typedef struct dg_redis_opts_s {
  int connect_timeout_ms; /* TCP/unix connect plus handshake; 0 = 2000 ms */
  int command_timeout_ms; /* one command round trip; 0 = 5000 ms */
  int backoff_min_ms;     /* first reconnect delay after a failed attempt; 0 = 50 ms */
  int backoff_max_ms;     /* cap of the doubling delay; 0 = 2000 ms */
  int no_auto_reconnect;  /* 1: commands on a broken connection fail until
                             dg_redis_reconnect(); 0: they reconnect themselves */
  const char *client_name; /* sent as CLIENT SETNAME when not NULL; copied;
                              must be a non-empty token without spaces */
  /* TLS, for rediss:// URLs only (a redis:// or unix:// URL with any of these
     set is refused, so a TLS setting never silently goes unused). Paths are
     copied by dg_redis_create and read at the first connect attempt, and
     again after a failed attempt (so replaced files are picked up). The
     server certificate is always verified; there is no option to skip it. */
  const char *tls_ca_file;     /* PEM bundle or hashed directory of trusted CAs;
                                  NULL: the system store */
  const char *tls_cert_file;   /* client certificate chain (PEM), for servers with
                                  tls-auth-clients; needs tls_key_file */
  const char *tls_key_file;    /* its private key, unencrypted PEM */
  const char *tls_server_name; /* name (or IP) the certificate must match and the
                                  SNI sent; NULL: the URL's host */
  int cluster;                 /* 1: Redis Cluster: the URL names a seed node; each
                                  command goes to its key slot's master, MOVED/ASK
                                  are followed (see "Cluster" below) */
} dg_redis_opts_t;

/** What dg_redis_status() reports, for health checks and logs. */
typedef struct dg_redis_status_s {
  int connected;          /* 1 while a connection is established */
  unsigned failures;      /* consecutive failed connect attempts */
  int64_t retry_in_ms;    /* ms until the next connect attempt is allowed; 0 = now */
  uint64_t connects;      /* successful connects, the first one included */
  uint64_t redirects;     /* cluster: MOVED/ASK replies followed */
  uint64_t refreshes;     /* cluster: slot map (re)loads */
} dg_redis_status_t;

/**
 * Creates a connection object without doing any I/O; the first command (or
 * dg_redis_reconnect) connects. url and the option strings are deep-copied.
 * Fails with DG_EINVAL on bad options (TLS options without rediss://, a
 * client certificate without its key or the reverse, an empty path, a
 * malformed tls_server_name); the reason goes to err/errcap (err may be
 * NULL). Files are not read here. *out untouched on failure. Free with
 * dg_redis_destroy().
 */
int dg_redis_create(const dg_redis_url_t *url, const dg_redis_opts_t *opts, dg_redis_t **out,
                    char *err, size_t errcap);

/**
 * dg_redis_create() and one connection attempt: connect, TLS handshake for
 * rediss://, AUTH (user+password or password alone), SELECT db when not 0,
 * CLIENT SETNAME when asked, PING. Bounded by opts->connect_timeout_ms.
 * Fails with
 *   DG_EINVAL   bad options, SELECT refused, a TLS file unreadable or
 *               unusable (bad PEM, key not matching the certificate);
 *   DG_EUNAVAIL cannot connect (refused, unreachable, timed out, LOADING),
 *               TLS handshake failed (certificate not trusted or not for
 *               this host, client certificate required or rejected);
 *   DG_EAUTH    AUTH refused (WRONGPASS) or a password is required (NOAUTH);
 *   DG_EIO      the peer does not speak RESP, or (rediss://) not TLS.
 * The reason goes to err/errcap (err may be NULL); it never contains the
 * password. *out untouched on failure. Free with dg_redis_destroy().
 */
int dg_redis_connect(const dg_redis_url_t *url, const dg_redis_opts_t *opts, dg_redis_t **out,
                     char *err, size_t errcap);

/** Closes the connection and frees r and every queued reply. NULL is fine. */
void dg_redis_destroy(dg_redis_t *r);

/**
 * Drops the current connection (if any), waits out what is left of the
 * backoff delay (at most backoff_max_ms) and makes one connection attempt
 * (at most connect_timeout_ms). Failure codes as dg_redis_connect(); a
 * failed attempt doubles the next delay (with jitter).
 */
int dg_redis_reconnect(dg_redis_t *r);

/** 1 when a connection is established, 0 while broken or not yet connected. */
int dg_redis_is_connected(const dg_redis_t *r);

/** Fills *st with the connection and backoff state. */
void dg_redis_status(const dg_redis_t *r, dg_redis_status_t *st);

/**
 * One-line message for the most recent failure on r ("" if none). Valid until
 * the next call on r. Never contains the password.
 */
const char *dg_redis_last_error(const dg_redis_t *r);

/* ======================================================================= */
/* Commands                                                                  */
/* ======================================================================= */

/*
 * Failure semantics shared by every call that talks to the server:
 * - A REDIS_REPLY_ERROR reply is a successful round trip: the call returns 0
 *   and hands over the reply; the connection stays up.
 * - An I/O error, EOF, protocol error or timeout marks the connection broken
 *   and returns DG_EIO (DG_ETIMEOUT for a timeout). A command whose reply was
 *   lost is never re-sent by this layer (XADD is not idempotent); the caller
 *   decides.
 * - On a broken connection a new command first reconnects (unless
 *   opts.no_auto_reconnect), but only once the backoff delay has passed;
 *   inside the delay it fails at once with DG_EUNAVAIL, so no call blocks
 *   longer than connect_timeout_ms + its command timeout.
 * - Before a new command on an idle connection, a non-blocking check notices
 *   a connection the server has closed (restart, idle timeout) and reconnects
 *   without sending anything on the dead socket.
 */

/**
 * Sends one command and reads its reply (one round trip), bounded by the
 * connection's command timeout. argvlen may be NULL when every argv[i] is a
 * NUL-terminated string. *reply receives the reply; free it with
 * freeReplyObject().
 * Fails with DG_EINVAL (argc < 1, a NULL argument, replies of an unfinished
 * pipeline pending), DG_EUNAVAIL/DG_EAUTH (not connected and reconnecting
 * failed or waits in backoff), DG_EIO, DG_ETIMEOUT, DG_ETOOBIG (arguments
 * over DG_REDIS_MAX_COMMAND_BYTES), DG_ENOMEM (formatting failed).
 * *reply is untouched on failure.
 */
int dg_redis_command(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                     redisReply **reply);

/**
 * dg_redis_command() with its own timeout (timeout_ms >= 1), for blocking
 * commands: give XREAD(GROUP) BLOCK n a timeout of n plus a margin. A
 * timeout breaks the connection (the reply may still come), so a too-short
 * timeout costs a reconnect. Failures as dg_redis_command().
 */
int dg_redis_command_timeout(dg_redis_t *r, int timeout_ms, int argc, const char **argv,
                             const size_t *argvlen, redisReply **reply);

/**
 * Queues a command for pipelining without reading its reply. The queued bytes
 * are written by dg_redis_flush() or the next dg_redis_get_reply(), or here
 * once more than DG_REDIS_AUTOFLUSH_BYTES are queued. The first append after
 * a completed exchange may reconnect, as a command does.
 * Fails with DG_EINVAL (argc < 1), DG_ETOOBIG, DG_ENOMEM, DG_EUNAVAIL,
 * DG_EAUTH, and, when it writes, DG_EIO/DG_ETIMEOUT.
 */
int dg_redis_append(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen);

/**
 * Largest command accepted, arguments summed: Redis's own default limit on a
 * bulk argument (proto-max-bulk-len) is 512 MiB, and hiredis 0.14 keeps the
 * formatted length in an int.
 */
#define DG_REDIS_MAX_COMMAND_BYTES (512 * 1024 * 1024)

/** Queued bytes beyond which dg_redis_append() writes them out (bounds memory). */
#define DG_REDIS_AUTOFLUSH_BYTES (1024 * 1024)

/**
 * Writes every queued command, bounded by the command timeout.
 * Fails with DG_EIO, DG_ETIMEOUT (connection broken, queued replies lost).
 */
int dg_redis_flush(dg_redis_t *r);

/**
 * Flushes if needed and reads the reply of the oldest appended command,
 * bounded by the command timeout. Free *reply with freeReplyObject().
 * Fails with DG_EINVAL when no reply is pending, DG_EIO/DG_ETIMEOUT on I/O
 * failure; after such a failure each further call for a reply that was lost
 * fails with DG_EIO, so a loop over N replies sees N results.
 */
int dg_redis_get_reply(dg_redis_t *r, redisReply **reply);

/**
 * Number of dg_redis_get_reply() calls still owed: replies of appended
 * commands not yet read, plus those lost to a connection failure.
 */
size_t dg_redis_pending(const dg_redis_t *r);

/** One command of a batch: argv as for dg_redis_command(). */
typedef struct dg_redis_cmd_s {
  int argc;
  const char **argv;
  const size_t *argvlen; /* may be NULL for NUL-terminated argv */
} dg_redis_cmd_t;

/**
 * Runs n commands pipelined (append all, flush, read n replies) and stores
 * reply i in replies[i]; the caller frees each with freeReplyObject().
 * Error replies count as replies. Fails as dg_redis_append/get_reply; on
 * failure every reply already read is freed and replies[] is untouched.
 */
int dg_redis_pipeline(dg_redis_t *r, size_t n, const dg_redis_cmd_t *cmds, redisReply **replies);

/** PING; fails as dg_redis_command(), or DG_EIO when the answer is not PONG. */
int dg_redis_ping(dg_redis_t *r);

/**
 * Copies redis_version from INFO server into buf (NUL-terminated).
 * Fails as dg_redis_command(), DG_EIO when the reply lacks redis_version,
 * DG_ETOOBIG when it does not fit in cap (buf untouched on every failure).
 */
int dg_redis_server_version(dg_redis_t *r, char *buf, size_t cap);

/* ======================================================================= */
/* Stream replies                                                            */
/* ======================================================================= */

/** Bytes borrowed from a reply: valid until the reply is freed. */
typedef struct dg_redis_str_s {
  const char *ptr;
  size_t len;
} dg_redis_str_t;

/** A stream entry id "ms-seq". */
typedef struct dg_redis_xid_s {
  uint64_t ms;
  uint64_t seq;
} dg_redis_xid_t;

/** Buffer size that holds any formatted id with its NUL (20 + 1 + 20 + 1). */
#define DG_REDIS_XID_BUFSZ 42

/**
 * Parses exactly "ms-seq" (plain decimals, each <= UINT64_MAX, no sign, no
 * spaces) from s[0..len). Fails with DG_EINVAL; *out untouched on failure.
 */
int dg_redis_xid_parse(const char *s, size_t len, dg_redis_xid_t *out);

/** Returns <0, 0, >0 as a sorts before, equal to, after b. */
int dg_redis_xid_cmp(dg_redis_xid_t a, dg_redis_xid_t b);

/** Formats id as "ms-seq" into buf. Fails with DG_ETOOBIG if cap is too small. */
int dg_redis_xid_format(dg_redis_xid_t id, char *buf, size_t cap);

/** One entry of a stream reply. Every pointer borrows from the reply. */
typedef struct dg_redis_xentry_s {
  dg_redis_str_t stream; /* stream key; empty for XRANGE replies */
  dg_redis_str_t id;     /* entry id as sent by the server */
  size_t nfields;        /* number of field/value pairs */
  int deleted;           /* 1: pending entry whose content was deleted (XREADGROUP
                            history read), nfields is 0 */
  const redisReply *_fv; /* private: the field/value array or NULL */
} dg_redis_xentry_t;

/** Iterator over the entries of a stream reply. Private fields. */
typedef struct dg_redis_xiter_s {
  const redisReply *_streams; /* XREAD: array of [key, entries]; NULL for XRANGE */
  const redisReply *_entries; /* entries of the current stream */
  size_t _s;                  /* index of the current stream */
  size_t _e;                  /* index of the next entry in _entries */
} dg_redis_xiter_t;

/**
 * Starts iterating an XREAD / XREADGROUP reply (a nil reply, as after BLOCK
 * timing out, iterates nothing). The whole reply shape is checked here, so
 * dg_redis_xiter_next() cannot fail. Fails with DG_EIO on an unexpected shape
 * (an error reply included); *it untouched on failure.
 */
int dg_redis_xiter_init_xread(dg_redis_xiter_t *it, const redisReply *reply);

/** The same for an XRANGE / XREVRANGE reply (an array of entries). */
int dg_redis_xiter_init_xrange(dg_redis_xiter_t *it, const redisReply *reply);

/** Stores the next entry in *e and returns 1, or returns 0 at the end. */
int dg_redis_xiter_next(dg_redis_xiter_t *it, dg_redis_xentry_t *e);

/**
 * Field/value pair i (0 <= i < e->nfields) of an entry.
 * Fails with DG_EINVAL when i is out of range (outputs untouched).
 */
int dg_redis_xentry_field(const dg_redis_xentry_t *e, size_t i, dg_redis_str_t *field,
                          dg_redis_str_t *value);

/** Bytes of an entry's id, fields and values (what its reply holds). */
size_t dg_redis_xentry_bytes(const dg_redis_xentry_t *e);

/**
 * Value of the first field named name[0..namelen) of an entry.
 * Fails with DG_ENOTFOUND when the entry has no such field (*value untouched).
 */
int dg_redis_xentry_get(const dg_redis_xentry_t *e, const char *name, size_t namelen,
                        dg_redis_str_t *value);

/* ======================================================================= */
/* Cluster                                                                   */
/* ======================================================================= */

/*
 * With opts.cluster set, a dg_redis_t still holds one connection at a time,
 * but to the master of the slot its command addresses: the slot map comes
 * from CLUSTER SHARDS (CLUSTER SLOTS before 7.0) asked of any known node,
 * and is reloaded after a MOVED, a connection that cannot be made, or a
 * CLUSTERDOWN/TRYAGAIN answer. A MOVED or ASK answer (the command did not
 * run) is followed by re-sending the command to the named node (ASKING first
 * for ASK), at most DG_REDIS_MAX_REDIRECTS times, also for pipelined
 * commands; the caller only sees the final reply. Keyless commands (PING,
 * INFO, WAIT) go to the node of the previous command, so WAIT follows the
 * writes it waits for. Every node is reached with the seed URL's scheme,
 * credentials and TLS options; the host and port come from the cluster.
 */

/** Number of hash slots of a Redis Cluster. */
#define DG_REDIS_SLOTS 16384
/** Redirects followed for one command before its last answer is handed over. */
#define DG_REDIS_MAX_REDIRECTS 5

/**
 * Hash slot of a key: CRC16 (XMODEM) of the key, or of the part between the
 * first '{' and the next '}' when that part is not empty, modulo 16384.
 */
unsigned dg_redis_key_slot(const char *key, size_t len);

/** A MOVED or ASK answer. host borrows nothing: it is copied. */
typedef struct dg_redis_redirect_s {
  int ask;        /* 1: ASK (one command, send ASKING first), 0: MOVED */
  unsigned slot;  /* 0..16383 */
  char host[256]; /* node address; "" when the server left it out (same host) */
  uint16_t port;
} dg_redis_redirect_t;

/**
 * Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" from an
 * error reply's text s[0..len) (host may be an IPv6 literal, bracketed or
 * not, a name, or empty). Fails with DG_EINVAL for anything else (*out
 * untouched).
 */
int dg_redis_redirect_parse(const char *s, size_t len, dg_redis_redirect_t *out);

/**
 * Asks the server behind r whether it runs in cluster mode (INFO cluster:
 * cluster_enabled:1). Fails as dg_redis_command(), DG_EIO on an unexpected
 * answer.
 */
int dg_redis_cluster_detect(dg_redis_t *r, int *enabled);

/**
 * WAIT numreplicas timeout_ms on r's current connection: blocks until the
 * writes made on it so far are on numreplicas replicas, or the timeout.
 * *acked receives the number of replicas that have them. Fails as
 * dg_redis_command(), DG_EIO on an unexpected answer.
 */
int dg_redis_wait_replicas(dg_redis_t *r, int numreplicas, int timeout_ms, int *acked);

/**
 * Makes sure everything the server holds up to now (writes of any client,
 * e.g. an outcome another connection published and this process has read)
 * is on numreplicas replicas: a small write to fence_key (INCR, same slot as
 * the data) followed by WAIT on the same connection, in one round trip.
 * *acked as dg_redis_wait_replicas(). Fails as dg_redis_command().
 */
int dg_redis_replicate_fence(dg_redis_t *r, const char *fence_key, int numreplicas,
                             int timeout_ms, int *acked);

#endif
