/*
 * redis.c -- the Redis connection: handshake (AUTH, SELECT, CLIENT SETNAME,
 * PING), argv commands, pipelining, timeouts, and reconnect with backoff.
 *
 * Why this shape. Every write in duckgrid is an XADD to request_duck, and the
 * manager, the response readers and the API threads each hold their own
 * connection, so a connection is a plain blocking object owned by one thread:
 * no locks, no callbacks, no event loop. What it must get right is failure:
 *
 * - Every call is bounded. Each exchange gets an absolute deadline
 *   (command_timeout_ms, or the per-call override for XREAD BLOCK), and the
 *   transport never waits past it. Connect plus handshake share one
 *   deadline (connect_timeout_ms).
 * - A reply of type error is data, not a failure. Only I/O errors, EOF,
 *   protocol errors and timeouts break the connection. After a timeout the
 *   reply may still arrive, so the stream is no longer in step with our
 *   requests and the connection must be dropped, too.
 * - Nothing is re-sent. When a connection fails with replies outstanding we
 *   cannot know which commands ran (an XADD may have been applied), so the
 *   caller gets DG_EIO for each of them and decides.
 * - Reconnects are paced. A broken connection is retried on the next
 *   command at once (the server may just have restarted); each failed attempt
 *   doubles the delay from backoff_min_ms up to backoff_max_ms, with "equal
 *   jitter" (half fixed, half random) so that many clients of a restarted
 *   server do not reconnect in lock step. Inside the delay commands fail
 *   immediately with DG_EUNAVAIL instead of sleeping; dg_redis_reconnect()
 *   is the call that sleeps out the delay, for loops that want to wait.
 *
 * State of a dg_redis_t:
 *
 *             connect ok                 I/O error / timeout / EOF
 *   BROKEN -------------> CONNECTED ----------------------------> BROKEN
 *   (tp == NULL)          (tp != NULL)   (unread replies become "lost")
 *     ^   |
 *     +---+  attempt fails: failures++, next_attempt = now + backoff
 *
 * A BROKEN connection is retried by the next command (once next_attempt
 * has passed) or by dg_redis_reconnect(); a probe before each new exchange
 * turns a CONNECTED one the server closed while idle into BROKEN first.
 *
 * Bytes: commands are formatted as RESP straight into obuf (queue_command),
 * written by the transport, and the bytes read are fed to a hiredis
 * redisReader, which hands back complete redisReply trees.
 *
 * TLS: a rediss:// URL opens the TLS transport (redis_transport_tls.c)
 * instead of the plain one; everything above the transport is the same. The
 * loaded TLS context (CAs, client certificate) is kept across reconnects and
 * dropped after a failed attempt, so a replaced CA or certificate file is
 * read again on the next one.
 */
#include "dg/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/read.h>

#include "stream/redis_cluster.h"
#include "stream/redis_internal.h"
#include "stream/redis_transport.h"

/* Defaults when an option is 0. A command on loopback takes ~55 us, so 5 s
   only trips on a hung or overloaded server; 2 s to connect covers a SYN
   retransmit (1 s) on a lossy network. */
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
#define DEFAULT_BACKOFF_MIN_MS 50
#define DEFAULT_BACKOFF_MAX_MS 2000
/* A pipeline buffer grown past this is released after it is written, so one
   large batch does not pin memory for the life of the connection. Above the
   manager's usual publish (~1,000 outcomes, ~1 MB in the bench mix), which
   would otherwise map and unmap a new buffer per batch. */
#define OBUF_KEEP_BYTES (2 * 1024 * 1024)
/* Handshake commands: AUTH, SELECT, CLIENT SETNAME, PING. */
#define HANDSHAKE_MAX 4

struct dg_redis_s {
  dg_redis_url_t url;            /* deep copy of the caller's URL */
  int connect_timeout_ms;        /* ms, connect + handshake */
  int command_timeout_ms;        /* ms, one exchange */
  int backoff_min_ms;            /* ms */
  int backoff_max_ms;            /* ms */
  int auto_reconnect;            /* 1: commands reconnect a broken connection */
  char *client_name;             /* CLIENT SETNAME argument or NULL */
  char *tls_ca_file;             /* rediss://: trusted CAs, NULL = system store */
  char *tls_cert_file;           /* rediss://: client certificate or NULL */
  char *tls_key_file;            /* rediss://: its key or NULL */
  char *tls_server_name;         /* rediss://: name to verify, NULL = URL host */
  dg__redis_tls_ctx_t *tls_ctx;  /* loaded lazily; NULL until then / after a failure */
  dg__redis_transport_t *tp;     /* NULL while broken / not yet connected */
  redisReader *reader;           /* reply parser; NULL while broken */
  char *obuf;                    /* formatted commands not yet written */
  size_t olen;                   /* bytes used in obuf */
  size_t ocap;                   /* bytes allocated for obuf */
  size_t pending;                /* commands queued or sent whose reply is unread */
  size_t lost;                   /* replies lost with the last connection, still to report */
  unsigned failures;             /* consecutive failed connect attempts */
  int64_t next_attempt_ms;       /* monotonic ms before which no attempt is made */
  uint64_t connects;             /* successful connects */
  uint64_t rng;                  /* splitmix64 state for backoff jitter */
  int proto_error;               /* 1: the last read failed on a protocol error */
  uint64_t rx_bytes;             /* bytes read on this connection */
  unsigned char first_byte;      /* the first of them (valid when rx_bytes > 0) */
  char err[512];                 /* last failure, redacted */
  char conn_err[512];            /* reason of the last failed connect attempt */
  char rbuf[16 * 1024];          /* read buffer; 16 KiB = hiredis's reader default */
  /* Cluster mode (opts.cluster); see "Cluster routing" below. url.host and
     url.port name the node the connection is (to be) made to. */
  int cluster;                   /* 1: route by key slot, follow redirects */
  char *seed_host;               /* the URL's own host and port: asked for the */
  uint16_t seed_port;            /* slot map when no known node answers */
  dg__redis_slotmap_t map;       /* slot -> master; empty until first loaded */
  int map_stale;                 /* 1: reload before the next exchange */
  int home_slot;                 /* slot of the last keyed command, or -1 */
  uint64_t redirects;            /* MOVED/ASK followed */
  uint64_t refreshes;            /* slot maps loaded */
  char *lbuf;                    /* formatted commands of the current exchange, */
  size_t llen, lcap;             /* kept to re-send the redirected ones */
  struct logent_s { size_t off, len; int slot; } *lents;
  size_t nl, lentcap;            /* commands in the exchange */
  size_t lnext;                  /* index of the command whose reply comes next */
  struct held_s { redisReply *rep; int rc; size_t idx; } *held;
  size_t nheld, hnext, heldcap;  /* replies read ahead while following a redirect */
};

/* ======================================================================= */
/* Errors                                                                    */
/* ======================================================================= */

/*
 * Replaces every occurrence of the password in s by "***", in place. Our own
 * messages never include the password; this guards against a server or OS
 * message that might echo it. Passwords under 4 bytes are skipped: they
 * would match ordinary words (and are not worth protecting anyway).
 */
static void redact(char *s, const char *password) {
  if (password == NULL) return;
  size_t plen = strlen(password);
  if (plen < 4) return;
  char *hit;
  while ((hit = strstr(s, password)) != NULL) {
    memcpy(hit, "***", 3);
    memmove(hit + 3, hit + plen, strlen(hit + plen) + 1);
  }
}

static void set_error(dg_redis_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(dg_redis_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, sizeof r->err, fmt, ap);
  va_end(ap);
  redact(r->err, r->url.password);
}

/* Copies at most the first line of a server error, for messages. */
static void first_line(const redisReply *rep, char *buf, size_t cap) {
  size_t n = rep->len;
  const char *nl = memchr(rep->str, '\n', n);
  if (nl) n = (size_t)(nl - rep->str);
  if (n >= cap) n = cap - 1;
  memcpy(buf, rep->str, n);
  buf[n] = '\0';
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)buf[i] < 0x20) buf[i] = ' ';
}

static int reply_is_error_prefix(const redisReply *rep, const char *prefix) {
  size_t n = strlen(prefix);
  return rep->type == REDIS_REPLY_ERROR && rep->len >= n && memcmp(rep->str, prefix, n) == 0;
}

/* ======================================================================= */
/* Connection state                                                          */
/* ======================================================================= */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Closes the transport. keep_lost: count unread replies as lost (to report). */
static void drop_conn(dg_redis_t *r, int keep_lost) {
  if (r->tp != NULL) r->tp->ops->destroy(r->tp);
  r->tp = NULL;
  if (r->reader != NULL) redisReaderFree(r->reader);
  r->reader = NULL;
  if (keep_lost) r->lost = r->pending;
  r->pending = 0;
  if (r->olen > 0) explicit_bzero(r->obuf, r->olen); /* may hold AUTH */
  r->olen = 0;
}

/* The transport failed with rc during an exchange: record why, break. */
static int fail_conn(dg_redis_t *r, int rc, const char *what) {
  set_error(r, "redis %s: %s", what, r->tp ? r->tp->err : "not connected");
  drop_conn(r, 1);
  return rc;
}

static void schedule_backoff(dg_redis_t *r) {
  r->failures++;
  int64_t d = r->backoff_min_ms;
  for (unsigned i = 1; i < r->failures && d < r->backoff_max_ms; i++) d *= 2;
  if (d > r->backoff_max_ms) d = r->backoff_max_ms;
  int64_t half = d / 2;
  int64_t jitter = half > 0 ? (int64_t)(splitmix64(&r->rng) % (uint64_t)(half + 1)) : 0;
  r->next_attempt_ms = dg__redis_now_ms() + (d - half) + jitter;
}

/* ---- writing and reading ----------------------------------------------- */

/* Formats one command into obuf. DG_ETOOBIG / DG_ENOMEM. */
/* Decimal digits of n (n >= 0). */
static size_t ndigits(size_t n) {
  size_t d = 1;
  while (n >= 10) n /= 10, d++;
  return d;
}

/* Writes "<c><n>\r\n" at p; returns the end. */
static char *put_head(char *p, char c, size_t n) {
  char tmp[24];
  size_t k = 0;
  do tmp[k++] = (char)('0' + n % 10), n /= 10;
  while (n);
  *p++ = c;
  while (k) *p++ = tmp[--k];
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

/* Appends one command, in RESP (an array of bulk strings), to the output
 * buffer: formatted in place, so a large pipeline (the manager publishes
 * ~1,000 outcomes in one command) costs no allocation beyond the buffer's
 * growth, which is kept between commands up to OBUF_KEEP_BYTES. */
static int queue_command(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen) {
  size_t total = 1 + ndigits((size_t)argc) + 2;
  for (int i = 0; i < argc; i++) {
    size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
    if (n > DG_REDIS_MAX_COMMAND_BYTES - total) {
      set_error(r, "redis: command larger than %d bytes", DG_REDIS_MAX_COMMAND_BYTES);
      return DG_ETOOBIG;
    }
    total += 1 + ndigits(n) + 2 + n + 2;
  }
  if (r->ocap - r->olen < total) {
    size_t ncap = r->ocap ? r->ocap : 4096;
    while (ncap - r->olen < total) ncap *= 2;
    char *nbuf = dg_try_realloc(r->obuf, ncap);
    if (nbuf == NULL) {
      set_error(r, "redis: out of memory queueing a command of %zu bytes", total);
      return DG_ENOMEM;
    }
    r->obuf = nbuf;
    r->ocap = ncap;
  }
  char *p = put_head(r->obuf + r->olen, '*', (size_t)argc);
  for (int i = 0; i < argc; i++) {
    size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
    p = put_head(p, '$', n);
    if (n) memcpy(p, argv[i], n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
  }
  DG_ASSERT((size_t)(p - (r->obuf + r->olen)) == total);
  r->olen += total;
  r->pending++;
  return 0;
}

static int flush_by(dg_redis_t *r, int64_t deadline_ms) {
  size_t off = 0;
  while (off < r->olen) {
    ssize_t n = r->tp->ops->write(r->tp, r->obuf + off, r->olen - off, deadline_ms);
    if (n < 0) return fail_conn(r, (int)n, "write");
    off += (size_t)n;
  }
  r->olen = 0;
  if (r->ocap > OBUF_KEEP_BYTES) {
    dg_free(r->obuf);
    r->obuf = NULL;
    r->ocap = 0;
  }
  return 0;
}

static int read_reply(dg_redis_t *r, int64_t deadline_ms, redisReply **out) {
  r->proto_error = 0;
  for (;;) {
    void *obj = NULL;
    if (redisReaderGetReply(r->reader, &obj) != REDIS_OK) {
      set_error(r, "redis protocol error: %s", r->reader->errstr);
      r->proto_error = 1;
      drop_conn(r, 1);
      return DG_EIO;
    }
    if (obj != NULL) {
      r->pending--;
      *out = obj;
      return 0;
    }
    ssize_t n = r->tp->ops->read(r->tp, r->rbuf, sizeof r->rbuf, deadline_ms);
    if (n < 0) return fail_conn(r, (int)n, "read");
    if (r->rx_bytes == 0) r->first_byte = (unsigned char)r->rbuf[0];
    r->rx_bytes += (uint64_t)n;
    if (redisReaderFeed(r->reader, r->rbuf, (size_t)n) != REDIS_OK) {
      set_error(r, "redis protocol error: %s", r->reader->errstr);
      r->proto_error = 1;
      drop_conn(r, 1);
      return DG_EIO;
    }
  }
}

/* ---- connecting ---------------------------------------------------------- */

/* Classifies the reply to handshake command `what`; 0 when it is fine. */
static int check_handshake_reply(dg_redis_t *r, const char *what, const redisReply *rep) {
  char line[160];
  if (rep->type != REDIS_REPLY_ERROR) return 0;
  first_line(rep, line, sizeof line);
  if (reply_is_error_prefix(rep, "NOAUTH")) {
    set_error(r, "redis %s: the server requires a password (NOAUTH); add one to the URL", what);
    return DG_EAUTH;
  }
  if (strcmp(what, "AUTH") == 0) {
    set_error(r, "redis AUTH%s%s refused: %s", r->url.user ? " as " : "",
              r->url.user ? r->url.user : "", line);
    return DG_EAUTH;
  }
  if (reply_is_error_prefix(rep, "LOADING") || reply_is_error_prefix(rep, "BUSY") ||
      reply_is_error_prefix(rep, "MASTERDOWN") || reply_is_error_prefix(rep, "TRYAGAIN")) {
    set_error(r, "redis %s: server not ready: %s", what, line);
    return DG_EUNAVAIL;
  }
  if (reply_is_error_prefix(rep, "NOPERM")) {
    set_error(r, "redis %s: not permitted for this user: %s", what, line);
    return DG_EAUTH;
  }
  set_error(r, "redis %s refused: %s", what, line);
  return DG_EINVAL;
}

/* One connection attempt: transport, then the pipelined handshake. */
static int connect_once(dg_redis_t *r) {
  DG_ASSERT(r->tp == NULL && r->pending == 0 && r->olen == 0);
  int64_t deadline = dg__redis_now_ms() + r->connect_timeout_ms;
  char where[DG_REDIS_URL_MAX + 64];
  if (dg_redis_url_describe(&r->url, where, sizeof where) != 0) snprintf(where, sizeof where, "?");

  char why[sizeof r->tp->err];
  dg__redis_transport_t *tp = NULL;
  int rc;
  if (r->url.tls) {
    if (r->tls_ctx == NULL) {
      dg__redis_tls_opts_t to = {r->tls_ca_file, r->tls_cert_file, r->tls_key_file};
      rc = dg__redis_tls_ctx_create(&to, &r->tls_ctx, why, sizeof why);
      if (rc != 0) {
        set_error(r, "redis connect %s: %s", where, why);
        return rc;
      }
    }
    rc = dg__redis_tls_open(&r->url, r->tls_ctx, r->tls_server_name, deadline, &tp, why,
                            sizeof why);
  } else {
    rc = dg__redis_transport_open(&r->url, deadline, &tp, why, sizeof why);
  }
  if (rc != 0) {
    set_error(r, "redis connect %s: %s", where, why);
    return rc;
  }
  r->tp = tp;
  r->rx_bytes = 0;
  r->reader = redisReaderCreate();
  if (r->reader == NULL) {
    set_error(r, "redis: out of memory creating the reply reader");
    drop_conn(r, 0);
    return DG_ENOMEM;
  }
  /* hiredis drops its input buffer whenever it is empty with more than
   * maxbuf (16 KiB) unused, so a large reply read 16 KiB at a time made it
   * free and allocate a 32 KiB buffer per read (and glibc consolidate the
   * freed reply objects each time): ~6% of the manager's CPU. Kept up to
   * the output buffer's bound instead. */
  r->reader->maxbuf = OBUF_KEEP_BYTES;

  /* Pipelined: one round trip for the whole handshake. */
  const char *what[HANDSHAKE_MAX];
  int n = 0;
  char dbstr[16];
  if (r->url.password != NULL) {
    const char *a[3] = {"AUTH"};
    int ac = 1;
    if (r->url.user != NULL) a[ac++] = r->url.user;
    a[ac++] = r->url.password;
    if ((rc = queue_command(r, ac, a, NULL)) != 0) goto fail;
    what[n++] = "AUTH";
  }
  if (r->url.db != 0) {
    snprintf(dbstr, sizeof dbstr, "%d", r->url.db);
    const char *a[2] = {"SELECT", dbstr};
    if ((rc = queue_command(r, 2, a, NULL)) != 0) goto fail;
    what[n++] = "SELECT";
  }
  if (r->client_name != NULL) {
    const char *a[3] = {"CLIENT", "SETNAME", r->client_name};
    if ((rc = queue_command(r, 3, a, NULL)) != 0) goto fail;
    what[n++] = "CLIENT SETNAME";
  }
  {
    const char *a[1] = {"PING"};
    if ((rc = queue_command(r, 1, a, NULL)) != 0) goto fail;
    what[n++] = "PING";
  }
  rc = flush_by(r, deadline);
  if (rc != 0) {
    char inner[sizeof r->err];
    memcpy(inner, r->err, sizeof inner);
    set_error(r, "redis connect %s: handshake: %s", where, inner);
    r->lost = 0;
    return DG_EUNAVAIL; /* flush_by dropped the connection */
  }

  int first_rc = 0;
  for (int i = 0; i < n; i++) {
    redisReply *rep = NULL;
    rc = read_reply(r, deadline, &rep);
    if (rc != 0) {
      /* read_reply dropped the connection and set r->err. A peer that is
         not Redis gives a protocol error (DG_EIO); EOF or silence means
         the server is not available to us. */
      char inner[sizeof r->err];
      memcpy(inner, r->err, sizeof inner);
      int hung_up = rc == DG_EIO && !r->proto_error && r->rx_bytes == 0;
      if (!r->proto_error) rc = DG_EUNAVAIL;
      if (!r->url.tls && r->rx_bytes > 0 && (r->first_byte == 0x15 || r->first_byte == 0x16)) {
        /* A TLS record (alert or handshake) where a RESP reply belongs. */
        set_error(r, "redis connect %s: the server answered with TLS; use a rediss:// URL", where);
        rc = DG_EIO;
      } else if (!r->url.tls && hung_up) {
        /* Redis answers every handshake command, even to refuse it; a server
           that hangs up without a byte is often a TLS port we spoke plain to. */
        set_error(r, "redis connect %s: handshake: %s (is it a TLS port? use rediss://)", where,
                  inner);
      } else {
        set_error(r, "redis connect %s: handshake: %s", where, inner);
      }
      r->lost = 0;
      return rc;
    }
    if (first_rc == 0) first_rc = check_handshake_reply(r, what[i], rep);
    if (first_rc == 0 && strcmp(what[i], "PING") == 0 &&
        !(rep->type == REDIS_REPLY_STATUS && rep->len == 4 && memcmp(rep->str, "PONG", 4) == 0)) {
      set_error(r, "redis connect %s: unexpected answer to PING", where);
      first_rc = DG_EIO;
    }
    freeReplyObject(rep);
  }
  if (first_rc != 0) {
    rc = first_rc;
    goto fail;
  }
  r->failures = 0;
  r->next_attempt_ms = 0;
  r->connects++;
  r->lost = 0;
  r->conn_err[0] = '\0';
  return 0;

fail:
  drop_conn(r, 0);
  r->lost = 0;
  return rc;
}

/* connect_once plus the backoff bookkeeping of a failed attempt. */
static int attempt(dg_redis_t *r) {
  int rc = connect_once(r);
  if (rc != 0) {
    schedule_backoff(r);
    snprintf(r->conn_err, sizeof r->conn_err, "%s", r->err);
    /* Read the TLS files again next time: the fix may be a new CA or cert. */
    dg__redis_tls_ctx_destroy(r->tls_ctx);
    r->tls_ctx = NULL;
  }
  return rc;
}

/*
 * Makes sure a connection is up at the start of a new exchange (nothing
 * queued or pending): notices a connection the server closed while idle,
 * and reconnects when allowed.
 */
static int ensure_connected(dg_redis_t *r) {
  if (r->tp != NULL) {
    if (r->tp->ops->probe(r->tp) == 0) return 0;
    /* Nothing was sent on it, so reconnecting cannot duplicate a command. */
    set_error(r, "redis: %s", r->tp->err);
    snprintf(r->conn_err, sizeof r->conn_err, "%s", r->err);
    drop_conn(r, 0);
  }
  if (!r->auto_reconnect) {
    set_error(r, "redis: not connected (auto-reconnect off; call dg_redis_reconnect)%s%s",
              r->conn_err[0] ? ": " : "", r->conn_err);
    return DG_EUNAVAIL;
  }
  int64_t wait = r->next_attempt_ms - dg__redis_now_ms();
  if (wait > 0) {
    set_error(r, "redis: not connected, next attempt in %lld ms%s%s", (long long)wait,
              r->conn_err[0] ? "; last: " : "", r->conn_err);
    return DG_EUNAVAIL;
  }
  return attempt(r);
}

/* ======================================================================= */
/* Cluster routing                                                           */
/* ======================================================================= */

/*
 * One connection, re-pointed. A duckgrid deployment keeps all its keys in
 * one hash slot, so a connection talks to one master nearly all the time;
 * instead of a connection per node, a dg_redis_t re-points its single
 * connection (url.host/url.port) at the master of the slot of the exchange's
 * first command. Re-pointing is not a failure: it resets the backoff.
 *
 * Redirects. A MOVED, ASK, TRYAGAIN or CLUSTERDOWN answer means the command
 * did not run, so re-sending it cannot apply it twice. Each command of an
 * exchange is kept formatted (lbuf/lents); when a reply is a redirect, every
 * later reply of the exchange is read ahead (held), then each redirected
 * command is re-sent to the node named (ASKING first for ASK; a MOVED also
 * patches the map and marks it stale), and the replies are handed over in
 * the original order. Commands that did run keep their place; re-sent ones
 * run after them, which keeps the order of commands on one key (a key that
 * has moved answers every later command with the redirect too).
 *
 * Refreshing. The map is (re)loaded before an exchange when it is empty or
 * stale: after a MOVED, a TRYAGAIN/CLUSTERDOWN, a connection broken during
 * an exchange, or a node that cannot be reached. A master that cannot be
 * reached is retried, with the map reloaded from any other node, for up to
 * connect_timeout_ms, which covers a replica's promotion after a master
 * dies (cluster-node-timeout plus the election).
 */

/* Points the connection at host:port (dropping a connection elsewhere). */
static void retarget(dg_redis_t *r, const char *host, uint16_t port) {
  if (r->url.host != NULL && strcmp(r->url.host, host) == 0 && r->url.port == port) return;
  drop_conn(r, 0);
  r->lost = 0;
  char *h = dg_strdup(host);
  dg_free(r->url.host);
  r->url.host = h;
  r->url.port = port;
  r->failures = 0;
  r->next_attempt_ms = 0;
  r->conn_err[0] = '\0';
}

/* One command on the current connection, no routing (nothing pending). */
static int exchange1(dg_redis_t *r, int argc, const char **argv, redisReply **out) {
  int rc = queue_command(r, argc, argv, NULL);
  if (rc != 0) return rc;
  int64_t deadline = dg__redis_now_ms() + r->command_timeout_ms;
  if ((rc = flush_by(r, deadline)) == 0) rc = read_reply(r, deadline, out);
  r->lost = 0;
  return rc;
}

/* Loads the slot map from the node the connection is up to. */
static int load_map_here(dg_redis_t *r) {
  const char *shards[] = {"CLUSTER", "SHARDS"};
  const char *slots[] = {"CLUSTER", "SLOTS"};
  redisReply *rep = NULL;
  int rc = exchange1(r, 2, shards, &rep);
  if (rc != 0) return rc;
  dg__redis_slotmap_t m;
  int prc;
  if (rep->type == REDIS_REPLY_ERROR && !reply_is_error_prefix(rep, "NOPERM")) {
    /* CLUSTER SHARDS is new in 7.0. */
    freeReplyObject(rep);
    rep = NULL;
    if ((rc = exchange1(r, 2, slots, &rep)) != 0) return rc;
    prc = rep->type == REDIS_REPLY_ERROR ? DG_EIO
                                         : dg__redis_slotmap_from_slots(rep, r->url.host, &m);
  } else {
    prc = rep->type == REDIS_REPLY_ERROR
              ? DG_EIO
              : dg__redis_slotmap_from_shards(rep, r->url.tls, r->url.host, &m);
  }
  if (prc != 0) {
    char line[160] = "no slot with a live master";
    if (rep->type == REDIS_REPLY_ERROR) first_line(rep, line, sizeof line);
    set_error(r, "redis cluster: no slot map from %s:%u: %s", r->url.host, r->url.port, line);
    rc = reply_is_error_prefix(rep, "NOPERM") ? DG_EAUTH : DG_EIO;
    freeReplyObject(rep);
    return rc;
  }
  freeReplyObject(rep);
  dg__redis_slotmap_dispose(&r->map);
  r->map = m;
  r->map_stale = 0;
  r->refreshes++;
  return 0;
}

/* Reloads the map from the current node, else any known node, else the seed. */
static int refresh_map(dg_redis_t *r) {
  if (r->tp != NULL) {
    if (r->tp->ops->probe(r->tp) == 0 && load_map_here(r) == 0) return 0;
    drop_conn(r, 0);
  }
  size_t n = r->map.nnodes + 1;
  char **hosts = dg_malloc(n * sizeof *hosts);
  uint16_t *ports = dg_malloc(n * sizeof *ports);
  for (size_t i = 0; i < r->map.nnodes; i++) {
    hosts[i] = dg_strdup(r->map.nodes[i].host);
    ports[i] = r->map.nodes[i].port;
  }
  hosts[n - 1] = dg_strdup(r->seed_host);
  ports[n - 1] = r->seed_port;
  int rc = DG_EUNAVAIL;
  for (size_t i = 0; i < n; i++) {
    retarget(r, hosts[i], ports[i]);
    if ((rc = attempt(r)) == 0 && (rc = load_map_here(r)) == 0) break;
    if (rc == DG_EAUTH) break; /* the same credentials fail everywhere */
  }
  for (size_t i = 0; i < n; i++) dg_free(hosts[i]);
  dg_free(hosts);
  dg_free(ports);
  return rc;
}

/* A MOVED: slot is served by host:port from now on (until the next load). */
static void note_moved(dg_redis_t *r, unsigned slot, const char *host, uint16_t port) {
  dg__redis_slotmap_t *m = &r->map;
  int node = -1;
  for (size_t i = 0; i < m->nnodes; i++)
    if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0) node = (int)i;
  if (node < 0) {
    m->nodes = dg_realloc(m->nodes, (m->nnodes + 1) * sizeof *m->nodes);
    m->nodes[m->nnodes] = (dg__redis_node_t){dg_strdup(host), port, 1};
    node = (int)m->nnodes++;
  }
  /* Lookups take the first matching range: put this one in front. */
  m->ranges = dg_realloc(m->ranges, (m->nranges + 1) * sizeof *m->ranges);
  memmove(m->ranges + 1, m->ranges, m->nranges * sizeof *m->ranges);
  m->ranges[0] = (dg__redis_range_t){slot, slot, node};
  m->nranges++;
  r->map_stale = 1;
}

static void sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/*
 * Cluster mode's ensure_connected: connects to the master of slot (-1: a
 * keyless command, which stays on the current node, or goes to the last
 * keyed command's node).
 */
static int cluster_route(dg_redis_t *r, int slot) {
  if (slot >= 0) r->home_slot = slot;
  else if (r->tp != NULL && r->tp->ops->probe(r->tp) == 0) return 0;
  else slot = r->home_slot;
  if (r->map.nranges == 0 || r->map_stale) refresh_map(r);
  int64_t until = dg__redis_now_ms() + r->connect_timeout_ms;
  for (;;) {
    int node = slot >= 0 ? dg__redis_slotmap_lookup(&r->map, (unsigned)slot) : -1;
    if (node >= 0) retarget(r, r->map.nodes[node].host, r->map.nodes[node].port);
    int rc = ensure_connected(r);
    if (rc == 0 || rc != DG_EUNAVAIL) return rc;
    int64_t left = until - dg__redis_now_ms();
    if (left <= 0) return rc;
    /* The master may have died: wait a little for its replica's promotion. */
    char why[sizeof r->err];
    memcpy(why, r->err, sizeof why);
    sleep_ms(left < 100 ? left : 100);
    if (refresh_map(r) != 0) set_error(r, "%s", why);
  }
}

/* Starts an exchange: forgets the previous one's commands, routes. */
static int exchange_start(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen) {
  r->lost = 0;
  if (!r->cluster) return ensure_connected(r);
  r->nl = r->llen = r->lnext = 0;
  r->nheld = r->hnext = 0;
  return cluster_route(r, dg__redis_command_slot(argc, argv, argvlen));
}

/* Keeps the command just formatted at obuf[from..olen) for a re-send. */
static void log_command(dg_redis_t *r, size_t from, int argc, const char **argv,
                        const size_t *argvlen) {
  if (!r->cluster) return;
  size_t len = r->olen - from;
  if (r->lcap - r->llen < len) {
    size_t ncap = r->lcap ? r->lcap : 4096;
    while (ncap - r->llen < len) ncap *= 2;
    r->lbuf = dg_realloc(r->lbuf, ncap);
    r->lcap = ncap;
  }
  memcpy(r->lbuf + r->llen, r->obuf + from, len);
  if (r->nl == r->lentcap) {
    r->lentcap = r->lentcap ? r->lentcap * 2 : 16;
    r->lents = dg_realloc(r->lents, r->lentcap * sizeof *r->lents);
  }
  r->lents[r->nl++] = (struct logent_s){r->llen, len, dg__redis_command_slot(argc, argv, argvlen)};
  r->llen += len;
}

/* 1 for an answer that says the command did not run here: follow it. */
static int needs_retry(const redisReply *rep) {
  dg_redis_redirect_t rd;
  if (rep->type != REDIS_REPLY_ERROR) return 0;
  return dg_redis_redirect_parse(rep->str, rep->len, &rd) == 0 ||
         reply_is_error_prefix(rep, "TRYAGAIN") || reply_is_error_prefix(rep, "CLUSTERDOWN");
}

/* Re-sends command idx until its answer is not a redirect (bounded); *io
   holds the redirect on entry and the final answer (or NULL) on return. */
static int retry_one(dg_redis_t *r, size_t idx, redisReply **io) {
  const struct logent_s e = r->lents[idx];
  int64_t give_up = dg__redis_now_ms() + r->command_timeout_ms;
  int hops = 0;
  int64_t pause = 10;
  for (;;) {
    redisReply *rep = *io;
    dg_redis_redirect_t rd;
    int redirect = dg_redis_redirect_parse(rep->str, rep->len, &rd) == 0;
    int rc;
    if (redirect) {
      if (hops++ >= DG_REDIS_MAX_REDIRECTS) return 0; /* hand the last answer over */
      r->redirects++;
      if (rd.host[0] == '\0') snprintf(rd.host, sizeof rd.host, "%s", r->url.host);
      if (!rd.ask) note_moved(r, rd.slot, rd.host, rd.port);
      retarget(r, rd.host, rd.port);
      rc = ensure_connected(r);
    } else {
      if (dg__redis_now_ms() + pause > give_up) return 0;
      sleep_ms(pause);
      pause = pause * 2 > 200 ? 200 : pause * 2;
      r->map_stale = 1;
      rc = cluster_route(r, e.slot);
    }
    if (rc != 0) return rc; /* *io still holds the last answer */
    freeReplyObject(rep);
    *io = NULL;
    if (redirect && rd.ask) {
      const char *asking[] = {"ASKING"};
      if ((rc = queue_command(r, 1, asking, NULL)) != 0) return rc;
    }
    if (r->ocap - r->olen < e.len) {
      size_t ncap = r->ocap ? r->ocap : 4096;
      while (ncap - r->olen < e.len) ncap *= 2;
      r->obuf = dg_realloc(r->obuf, ncap);
      r->ocap = ncap;
    }
    memcpy(r->obuf + r->olen, r->lbuf + e.off, e.len);
    r->olen += e.len;
    r->pending++;
    int64_t deadline = dg__redis_now_ms() + r->command_timeout_ms;
    rc = flush_by(r, deadline);
    if (rc == 0 && redirect && rd.ask) {
      redisReply *ok = NULL;
      if ((rc = read_reply(r, deadline, &ok)) == 0) freeReplyObject(ok);
    }
    if (rc == 0) rc = read_reply(r, deadline, io);
    r->lost = 0;
    if (rc != 0) {
      r->map_stale = 1;
      return rc;
    }
    if (!needs_retry(*io)) return 0;
  }
}

static void hold(dg_redis_t *r, redisReply *rep, int rc) {
  if (r->nheld == r->heldcap) {
    r->heldcap = r->heldcap ? r->heldcap * 2 : 16;
    r->held = dg_realloc(r->held, r->heldcap * sizeof *r->held);
  }
  r->held[r->nheld++] = (struct held_s){rep, rc, r->lnext++};
}

/* Reads the next reply of the exchange; in cluster mode follows redirects. */
static int next_reply(dg_redis_t *r, int64_t deadline, redisReply **out) {
  if (r->hnext < r->nheld) {
    struct held_s h = r->held[r->hnext++];
    if (h.rc != 0) return h.rc;
    *out = h.rep;
    return 0;
  }
  redisReply *rep = NULL;
  int rc = read_reply(r, deadline, &rep);
  if (!r->cluster) {
    if (rc == 0) *out = rep;
    return rc;
  }
  if (rc != 0) {
    r->map_stale = 1;
    return rc;
  }
  if (r->lnext >= r->nl || !needs_retry(rep)) {
    r->lnext++;
    *out = rep;
    return 0;
  }
  /* Read the rest of the exchange ahead, then re-send what was redirected. */
  r->nheld = r->hnext = 0;
  hold(r, rep, 0);
  while (r->pending > 0) {
    redisReply *x = NULL;
    int xrc = read_reply(r, deadline, &x);
    hold(r, xrc == 0 ? x : NULL, xrc);
    if (xrc != 0) break;
  }
  for (; r->lost > 0; r->lost--) hold(r, NULL, DG_EIO);
  for (size_t i = 0; i < r->nheld; i++) {
    struct held_s *h = &r->held[i];
    if (h->rc != 0 || h->idx >= r->nl || !needs_retry(h->rep)) continue;
    h->rc = retry_one(r, h->idx, &h->rep);
    if (h->rc != 0 && h->rep != NULL) {
      freeReplyObject(h->rep);
      h->rep = NULL;
    }
  }
  return next_reply(r, deadline, out);
}

/* ======================================================================= */
/* Public: lifecycle                                                          */
/* ======================================================================= */

static int valid_client_name(const char *s) {
  if (s[0] == '\0' || strlen(s) > 128) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return 0;
  return 1;
}

/* A DNS name (the URL's host alphabet, at most 253 bytes) or an IP literal. */
static int valid_server_name(const char *s) {
  unsigned char a[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1) return 1;
  size_t n = strlen(s);
  if (n == 0 || n > 253) return 0;
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '_'))
      return 0;
  }
  return 1;
}

/* Checks the TLS options against the URL; 0 or DG_EINVAL with err set. */
static int check_tls_opts(const dg_redis_url_t *url, const dg_redis_opts_t *o, char *err,
                          size_t errcap) {
  const char *given = o->tls_ca_file ? "tls_ca_file"
                      : o->tls_cert_file ? "tls_cert_file"
                      : o->tls_key_file ? "tls_key_file"
                      : o->tls_server_name ? "tls_server_name"
                                            : NULL;
  if (given == NULL) return 0;
  if (!url->tls) {
    dg__redis_seterr(err, errcap, "redis: %s is set but the URL is not rediss:// (TLS)", given);
    return DG_EINVAL;
  }
  if ((o->tls_cert_file == NULL) != (o->tls_key_file == NULL)) {
    dg__redis_seterr(err, errcap,
                     "redis: a TLS client certificate needs its key, and a key its certificate");
    return DG_EINVAL;
  }
  if ((o->tls_ca_file && !o->tls_ca_file[0]) || (o->tls_cert_file && !o->tls_cert_file[0]) ||
      (o->tls_key_file && !o->tls_key_file[0])) {
    dg__redis_seterr(err, errcap, "redis: empty TLS file path");
    return DG_EINVAL;
  }
  if (o->tls_server_name != NULL && !valid_server_name(o->tls_server_name)) {
    dg__redis_seterr(err, errcap, "redis: tls_server_name must be a host name or an IP address");
    return DG_EINVAL;
  }
  return 0;
}

int dg_redis_create(const dg_redis_url_t *url, const dg_redis_opts_t *opts, dg_redis_t **out,
                    char *err, size_t errcap) {
  static const dg_redis_opts_t defaults;
  if (opts == NULL) opts = &defaults;
  if (url == NULL || out == NULL || (url->is_unix ? url->path == NULL : url->host == NULL)) {
    dg__redis_seterr(err, errcap, "redis: no URL");
    return DG_EINVAL;
  }
  if (check_tls_opts(url, opts, err, errcap) != 0) return DG_EINVAL;
  if (opts->connect_timeout_ms < 0 || opts->command_timeout_ms < 0 || opts->backoff_min_ms < 0 ||
      opts->backoff_max_ms < 0) {
    dg__redis_seterr(err, errcap, "redis: negative timeout or backoff");
    return DG_EINVAL;
  }
  int bmin = opts->backoff_min_ms ? opts->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
  int bmax = opts->backoff_max_ms ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
  if (bmin > bmax) {
    dg__redis_seterr(err, errcap, "redis: backoff_min_ms > backoff_max_ms");
    return DG_EINVAL;
  }
  if (opts->client_name != NULL && !valid_client_name(opts->client_name)) {
    dg__redis_seterr(err, errcap, "redis: client_name must be 1-128 printable non-space bytes");
    return DG_EINVAL;
  }
  if (opts->cluster && (url->is_unix || url->db != 0)) {
    dg__redis_seterr(err, errcap, "redis: a Redis Cluster is reached over TCP (redis:// or "
                     "rediss://) and has only database 0");
    return DG_EINVAL;
  }

  dg_redis_t *r = dg_calloc(1, sizeof *r);
  r->url.tls = url->tls;
  r->url.is_unix = url->is_unix;
  r->url.host = url->host ? dg_strdup(url->host) : NULL;
  r->url.port = url->port;
  r->url.path = url->path ? dg_strdup(url->path) : NULL;
  r->url.user = url->user ? dg_strdup(url->user) : NULL;
  r->url.password = url->password ? dg_strdup(url->password) : NULL;
  r->url.db = url->db;
  r->connect_timeout_ms =
      opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
  r->command_timeout_ms =
      opts->command_timeout_ms ? opts->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
  r->backoff_min_ms = bmin;
  r->backoff_max_ms = bmax;
  r->auto_reconnect = !opts->no_auto_reconnect;
  r->client_name = opts->client_name ? dg_strdup(opts->client_name) : NULL;
  r->tls_ca_file = opts->tls_ca_file ? dg_strdup(opts->tls_ca_file) : NULL;
  r->tls_cert_file = opts->tls_cert_file ? dg_strdup(opts->tls_cert_file) : NULL;
  r->tls_key_file = opts->tls_key_file ? dg_strdup(opts->tls_key_file) : NULL;
  r->tls_server_name = opts->tls_server_name ? dg_strdup(opts->tls_server_name) : NULL;
  r->cluster = opts->cluster ? 1 : 0;
  r->seed_host = url->host ? dg_strdup(url->host) : NULL;
  r->seed_port = url->port;
  r->home_slot = -1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)r ^
           ((uint64_t)getpid() << 16);
  *out = r;
  return 0;
}

int dg_redis_connect(const dg_redis_url_t *url, const dg_redis_opts_t *opts, dg_redis_t **out,
                     char *err, size_t errcap) {
  dg_redis_t *r = NULL;
  int rc = dg_redis_create(url, opts, &r, err, errcap);
  if (rc != 0) return rc;
  rc = attempt(r);
  if (rc != 0) {
    dg__redis_seterr(err, errcap, "%s", r->err);
    dg_redis_destroy(r);
    return rc;
  }
  *out = r;
  return 0;
}

void dg_redis_destroy(dg_redis_t *r) {
  if (r == NULL) return;
  drop_conn(r, 0);
  dg_free(r->obuf);
  dg_free(r->client_name);
  dg_free(r->tls_ca_file);
  dg_free(r->tls_cert_file);
  dg_free(r->tls_key_file);
  dg_free(r->tls_server_name);
  dg__redis_tls_ctx_destroy(r->tls_ctx);
  dg_redis_url_dispose(&r->url);
  dg_free(r->seed_host);
  dg__redis_slotmap_dispose(&r->map);
  dg_free(r->lbuf);
  dg_free(r->lents);
  for (size_t i = r->hnext; i < r->nheld; i++)
    if (r->held[i].rep) freeReplyObject(r->held[i].rep);
  dg_free(r->held);
  dg_free(r);
}

int dg_redis_reconnect(dg_redis_t *r) {
  drop_conn(r, 0);
  r->lost = 0;
  int64_t wait = r->next_attempt_ms - dg__redis_now_ms();
  if (wait > r->backoff_max_ms) wait = r->backoff_max_ms;
  if (wait > 0) {
    struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (long)(wait % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  return attempt(r);
}

int dg_redis_is_connected(const dg_redis_t *r) { return r->tp != NULL; }

void dg_redis_status(const dg_redis_t *r, dg_redis_status_t *st) {
  int64_t wait = r->tp ? 0 : r->next_attempt_ms - dg__redis_now_ms();
  st->connected = r->tp != NULL;
  st->failures = r->failures;
  st->retry_in_ms = wait > 0 ? wait : 0;
  st->connects = r->connects;
  st->redirects = r->redirects;
  st->refreshes = r->refreshes;
}

const char *dg_redis_last_error(const dg_redis_t *r) { return r->err; }

/* ======================================================================= */
/* Public: commands and pipelining                                           */
/* ======================================================================= */

static int check_argv(dg_redis_t *r, int argc, const char **argv) {
  if (argc < 1 || argv == NULL) {
    set_error(r, "redis: a command needs at least one argument");
    return DG_EINVAL;
  }
  for (int i = 0; i < argc; i++) {
    if (argv[i] == NULL) {
      set_error(r, "redis: argument %d is NULL", i);
      return DG_EINVAL;
    }
  }
  return 0;
}

int dg_redis_command_timeout(dg_redis_t *r, int timeout_ms, int argc, const char **argv,
                             const size_t *argvlen, redisReply **reply) {
  int rc = check_argv(r, argc, argv);
  if (rc != 0) return rc;
  if (reply == NULL || timeout_ms < 1) {
    set_error(r, "redis: command needs a reply pointer and a timeout >= 1 ms");
    return DG_EINVAL;
  }
  if (r->pending > 0 || r->olen > 0 || r->hnext < r->nheld) {
    set_error(r, "redis: %zu pipelined replies are still unread", dg_redis_pending(r));
    return DG_EINVAL;
  }
  if ((rc = exchange_start(r, argc, argv, argvlen)) != 0) return rc;
  size_t from = r->olen;
  if ((rc = queue_command(r, argc, argv, argvlen)) != 0) return rc;
  log_command(r, from, argc, argv, argvlen);
  /* A big command (a revert or an import of a million rows: 100 MB) takes
   * Redis time to read, copy and append to its AOF before it answers: the
   * deadline grows by 1 ms per 16 KiB sent (+6 s for 100 MB), so a timeout
   * tuned for ordinary commands does not fail it half-way. */
  size_t bytes = r->olen - from;
  int64_t deadline = dg__redis_now_ms() + timeout_ms + (int64_t)(bytes >> 14);
  if ((rc = flush_by(r, deadline)) != 0) {
    r->lost = 0;
    if (r->cluster) r->map_stale = 1;
    return rc;
  }
  redisReply *rep = NULL;
  if ((rc = next_reply(r, deadline, &rep)) != 0) {
    r->lost = 0;
    return rc;
  }
  *reply = rep;
  return 0;
}

int dg_redis_command(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                     redisReply **reply) {
  return dg_redis_command_timeout(r, r->command_timeout_ms, argc, argv, argvlen, reply);
}

int dg_redis_append(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen) {
  int rc = check_argv(r, argc, argv);
  if (rc != 0) return rc;
  if (r->pending == 0 && r->olen == 0 && r->hnext >= r->nheld) {
    /* A new exchange: forget replies lost to an earlier failure. */
    if ((rc = exchange_start(r, argc, argv, argvlen)) != 0) return rc;
  }
  size_t from = r->olen;
  if ((rc = queue_command(r, argc, argv, argvlen)) != 0) return rc;
  log_command(r, from, argc, argv, argvlen);
  if (r->olen > DG_REDIS_AUTOFLUSH_BYTES)
    return flush_by(r, dg__redis_now_ms() + r->command_timeout_ms);
  return 0;
}

int dg_redis_flush(dg_redis_t *r) {
  if (r->olen == 0) return 0;
  return flush_by(r, dg__redis_now_ms() + r->command_timeout_ms);
}

int dg_redis_get_reply(dg_redis_t *r, redisReply **reply) {
  if (reply == NULL) {
    set_error(r, "redis: get_reply needs a reply pointer");
    return DG_EINVAL;
  }
  if (r->hnext < r->nheld) return next_reply(r, 0, reply);
  if (r->lost > 0) {
    r->lost--;
    /* r->err still says why the connection failed. */
    return DG_EIO;
  }
  if (r->pending == 0) {
    set_error(r, "redis: no reply pending");
    return DG_EINVAL;
  }
  int64_t deadline = dg__redis_now_ms() + r->command_timeout_ms;
  int rc = 0;
  if (r->olen > 0) rc = flush_by(r, deadline);
  redisReply *rep = NULL;
  if (rc == 0) rc = next_reply(r, deadline, &rep);
  if (rc != 0) {
    if (r->lost > 0) r->lost--; /* this call reports one of them */
    return rc;
  }
  *reply = rep;
  return 0;
}

size_t dg_redis_pending(const dg_redis_t *r) {
  return r->pending + r->lost + (r->nheld - r->hnext);
}

/* Reads and frees every reply still pending (after a failed append). */
static void drain(dg_redis_t *r) {
  while (r->pending > 0 || r->hnext < r->nheld) {
    redisReply *rep = NULL;
    if (dg_redis_get_reply(r, &rep) != 0) break;
    freeReplyObject(rep);
  }
  r->lost = 0;
}

int dg_redis_pipeline(dg_redis_t *r, size_t n, const dg_redis_cmd_t *cmds, redisReply **replies) {
  if (n == 0) return 0;
  if (cmds == NULL || replies == NULL) {
    set_error(r, "redis: pipeline needs commands and a reply array");
    return DG_EINVAL;
  }
  if (r->pending > 0 || r->olen > 0 || r->hnext < r->nheld) {
    set_error(r, "redis: %zu pipelined replies are still unread", dg_redis_pending(r));
    return DG_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = check_argv(r, cmds[i].argc, cmds[i].argv);
    if (rc != 0) return rc;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = dg_redis_append(r, cmds[i].argc, cmds[i].argv, cmds[i].argvlen);
    if (rc != 0) {
      char why[sizeof r->err];
      memcpy(why, r->err, sizeof why);
      drain(r);
      set_error(r, "%s", why);
      return rc;
    }
  }
  redisReply **tmp = dg_malloc(n * sizeof *tmp);
  for (size_t i = 0; i < n; i++) {
    int rc = dg_redis_get_reply(r, &tmp[i]);
    if (rc != 0) {
      for (size_t j = 0; j < i; j++) freeReplyObject(tmp[j]);
      dg_free(tmp);
      r->lost = 0;
      return rc;
    }
  }
  memcpy(replies, tmp, n * sizeof *tmp);
  dg_free(tmp);
  return 0;
}

/* ======================================================================= */
/* Public: small commands                                                    */
/* ======================================================================= */

int dg_redis_ping(dg_redis_t *r) {
  const char *argv[1] = {"PING"};
  redisReply *rep = NULL;
  int rc = dg_redis_command(r, 1, argv, NULL, &rep);
  if (rc != 0) return rc;
  int ok = rep->type == REDIS_REPLY_STATUS && rep->len == 4 && memcmp(rep->str, "PONG", 4) == 0;
  if (!ok) {
    char line[128] = "";
    if (rep->type == REDIS_REPLY_ERROR) first_line(rep, line, sizeof line);
    set_error(r, "redis: PING answered %s", line[0] ? line : "something other than PONG");
  }
  freeReplyObject(rep);
  return ok ? 0 : DG_EIO;
}

int dg_redis_server_version(dg_redis_t *r, char *buf, size_t cap) {
  const char *argv[2] = {"INFO", "server"};
  redisReply *rep = NULL;
  int rc = dg_redis_command(r, 2, argv, NULL, &rep);
  if (rc != 0) return rc;
  rc = DG_EIO;
  if (rep->type == REDIS_REPLY_STRING) {
    static const char key[] = "redis_version:";
    const char *s = rep->str, *end = rep->str + rep->len;
    while (s < end) {
      const char *eol = memchr(s, '\n', (size_t)(end - s));
      const char *le = eol ? eol : end;
      if ((size_t)(le - s) >= sizeof key - 1 && memcmp(s, key, sizeof key - 1) == 0) {
        const char *v = s + sizeof key - 1;
        const char *ve = le;
        if (ve > v && ve[-1] == '\r') ve--;
        size_t vlen = (size_t)(ve - v);
        if (vlen == 0) break;
        if (vlen >= cap) {
          set_error(r, "redis: version string of %zu bytes does not fit", vlen);
          rc = DG_ETOOBIG;
        } else {
          memcpy(buf, v, vlen);
          buf[vlen] = '\0';
          rc = 0;
        }
        break;
      }
      s = le + 1;
    }
  }
  if (rc == DG_EIO) set_error(r, "redis: INFO server has no redis_version");
  freeReplyObject(rep);
  return rc;
}

/* ======================================================================= */
/* Public: cluster and replication                                           */
/* ======================================================================= */

int dg_redis_cluster_detect(dg_redis_t *r, int *enabled) {
  const char *argv[2] = {"INFO", "cluster"};
  redisReply *rep = NULL;
  int rc = dg_redis_command(r, 2, argv, NULL, &rep);
  if (rc != 0) return rc;
  rc = DG_EIO;
  if (rep->type == REDIS_REPLY_STRING) {
    if (strstr(rep->str, "cluster_enabled:1") != NULL) {
      *enabled = 1;
      rc = 0;
    } else if (strstr(rep->str, "cluster_enabled:0") != NULL) {
      *enabled = 0;
      rc = 0;
    }
  }
  if (rc != 0) {
    char line[128] = "no cluster_enabled field";
    if (rep->type == REDIS_REPLY_ERROR) first_line(rep, line, sizeof line);
    set_error(r, "redis: INFO cluster: %s", line);
  }
  freeReplyObject(rep);
  return rc;
}

/* Reads WAIT's answer (an integer) into *acked. */
static int wait_answer(dg_redis_t *r, redisReply *rep, int *acked) {
  int ok = rep->type == REDIS_REPLY_INTEGER;
  if (ok) {
    *acked = (int)rep->integer;
  } else {
    char line[128] = "not an integer";
    if (rep->type == REDIS_REPLY_ERROR) first_line(rep, line, sizeof line);
    set_error(r, "redis: WAIT answered %s", line);
  }
  freeReplyObject(rep);
  return ok ? 0 : DG_EIO;
}

int dg_redis_wait_replicas(dg_redis_t *r, int numreplicas, int timeout_ms, int *acked) {
  char n[16], t[16];
  snprintf(n, sizeof n, "%d", numreplicas);
  snprintf(t, sizeof t, "%d", timeout_ms);
  const char *argv[3] = {"WAIT", n, t};
  redisReply *rep = NULL;
  /* WAIT blocks up to timeout_ms on the server: give the round trip that long on top. */
  int rc = dg_redis_command_timeout(r, r->command_timeout_ms + timeout_ms, 3, argv, NULL, &rep);
  return rc != 0 ? rc : wait_answer(r, rep, acked);
}

int dg_redis_replicate_fence(dg_redis_t *r, const char *fence_key, int numreplicas,
                             int timeout_ms, int *acked) {
  char n[16], t[16];
  snprintf(n, sizeof n, "%d", numreplicas);
  snprintf(t, sizeof t, "%d", timeout_ms);
  /* The fence is a write on this connection that comes after everything the
     server held when it ran, so a replica that has it has all of that too;
     WAIT counts the replicas that have this connection's last write. */
  const char *incr[2] = {"INCR", fence_key};
  const char *wait[3] = {"WAIT", n, t};
  int rc = dg_redis_append(r, 2, incr, NULL);
  if (rc == 0) rc = dg_redis_append(r, 3, wait, NULL);
  if (rc != 0) {
    drain(r);
    return rc;
  }
  int64_t saved = r->command_timeout_ms;
  r->command_timeout_ms += timeout_ms;
  redisReply *reps[2] = {NULL, NULL};
  int rc1 = dg_redis_get_reply(r, &reps[0]);
  int rc2 = dg_redis_get_reply(r, &reps[1]);
  r->command_timeout_ms = (int)saved;
  if (reps[0]) freeReplyObject(reps[0]);
  if (rc1 != 0 || rc2 != 0) {
    if (reps[1]) freeReplyObject(reps[1]);
    return rc1 != 0 ? rc1 : rc2;
  }
  return wait_answer(r, reps[1], acked);
}
