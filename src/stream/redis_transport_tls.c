/*
 * redis_transport_tls.c -- the TLS transport for rediss:// URLs, on OpenSSL.
 *
 * hiredis 0.14 has no TLS, so dg_redis_t formats and parses with hiredis and
 * moves the bytes over a transport (redis_transport.h). This one is a TCP
 * socket from dg__redis_sock_connect_fd() with an OpenSSL session on top,
 * and it keeps the promises the plain transport makes:
 *
 * - Bounded waits. The socket stays non-blocking; every OpenSSL call that
 *   wants more bytes (SSL_ERROR_WANT_READ) or room to write
 *   (SSL_ERROR_WANT_WRITE) -- in either direction, since TLS may need to
 *   write while reading and read while writing -- is followed by a poll()
 *   against the caller's absolute deadline, then retried with the same
 *   arguments, as OpenSSL requires.
 * - No SIGPIPE. OpenSSL's own socket BIO writes with write(2), which raises
 *   SIGPIPE on a connection the peer reset. The session here sits on a small
 *   BIO of our own whose write is send(MSG_NOSIGNAL), so nothing depends on
 *   the process ignoring SIGPIPE (the unit tests do not). The BIO also
 *   remembers errno and the first byte the server sent, which turns "wrong
 *   version number" into "the server did not answer TLS".
 * - An honest idle probe. Bytes may wait inside OpenSSL (SSL_pending) where
 *   a socket peek cannot see them, and bytes on the socket may be TLS
 *   housekeeping (TLS 1.3 session tickets arrive after the handshake) rather
 *   than data; the probe lets OpenSSL process what is there without blocking
 *   and only then decides.
 *
 * Verification is always on: the server certificate must chain to the CA
 * file given (or the system store) and match the host -- a DNS name through
 * SSL_set1_host (and sent as SNI), an IP literal through the certificate's IP
 * addresses (IP literals are never sent as SNI, RFC 6066 section 3). There is
 * deliberately no switch to turn it off. TLS 1.2 is the oldest version
 * offered; renegotiation is refused.
 *
 * Failures become one line that says what to fix, e.g.
 *   TLS handshake with 127.0.0.1:6390 failed: certificate verify failed
 *   (unable to get local issuer certificate)
 *   server at 127.0.0.1:6379 did not answer TLS (is it a plaintext port?)
 *
 * OpenSSL keeps an error queue per thread. Every call here clears it before
 * an operation and after a failure, so nothing stale leaks into the next
 * caller on the same thread (src/auth uses OpenSSL too).
 */
#include "stream/redis_transport.h"
#include "stream/redis_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* See redis_transport_sock.c: the GNU strerror_r, thread-safe. */
#define ERRSTR(e) strerror_r((e), (char[96]){0}, 96)

/* The first byte of every TLS record a server sends in a handshake is its
   content type: handshake (22) or alert (21). RESP replies start with one
   of "+-:$*". */
#define TLS_CT_ALERT 0x15
#define TLS_CT_HANDSHAKE 0x16

/* Longest "host:port" kept for messages: a 253-byte name or a bracketed
   IPv6 literal, ':' and 5 digits. */
#define PEER_MAX 272

struct dg__redis_tls_ctx_s {
  SSL_CTX *ssl_ctx; /* trusted CAs, client certificate, protocol floor */
};

typedef struct tls_transport_s {
  dg__redis_transport_t base; /* must be first */
  int fd;                     /* non-blocking TCP socket */
  SSL *ssl;                   /* owns the BIO below */
  int sys_errno;              /* errno of the BIO's last failed send/recv, 0 if none */
  int eof;                    /* 1 once recv() returned 0 */
  uint64_t rx;                /* bytes received on the socket, TLS framing included */
  unsigned char first_byte;   /* the first of them (valid when rx > 0) */
  int broken;                 /* 1 after a fatal error or timeout: no close_notify */
  char peer[PEER_MAX];        /* "host:port" for messages */
  char name[256];             /* the name or IP the certificate must match */
} tls_transport_t;

/* ======================================================================= */
/* Helpers                                                                   */
/* ======================================================================= */

/* As in redis_transport_sock.c: 1 ready, 0 deadline passed, -1 poll error. */
static int wait_fd(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - dg__redis_now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (n > 0) return 1;
    if (n == 0) continue;
    if (errno == EINTR) continue;
    return -1;
  }
}

static int is_ip_literal(const char *s) {
  unsigned char a[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* The reason of the earliest queued OpenSSL error, or fallback. */
static const char *ssl_reason(char *buf, size_t cap, const char *fallback) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (r != NULL) snprintf(buf, cap, "%s", r);
  else if (e != 0) snprintf(buf, cap, "OpenSSL error %08lx", e);
  else snprintf(buf, cap, "%s", fallback);
  return buf;
}

/* What an alert from the server most likely means for us, or "". */
static const char *alert_hint(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return "";
  switch (ERR_GET_REASON(e)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return " (the server requires a client certificate)";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      return " (the server rejected our client certificate)";
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
      return " (no TLS version in common; TLS 1.2 or later is required)";
    default:
      return "";
  }
}

static int is_unexpected_eof(unsigned long e) {
  return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* OpenSSL reports an alert the peer sent as reason SSL_AD_REASON_OFFSET + code. */
static int is_peer_alert(unsigned long e) {
  return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) > SSL_AD_REASON_OFFSET;
}

/* ======================================================================= */
/* A socket BIO that cannot raise SIGPIPE                                    */
/* ======================================================================= */

static int bio_sock_write(BIO *b, const char *buf, size_t len, size_t *done) {
  tls_transport_t *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *done = (size_t)n;
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(b);
      return 0;
    }
    t->sys_errno = errno;
    return 0;
  }
}

static int bio_sock_read(BIO *b, char *buf, size_t cap, size_t *done) {
  tls_transport_t *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = recv(t->fd, buf, cap, 0);
    if (n > 0) {
      if (t->rx == 0) t->first_byte = (unsigned char)buf[0];
      t->rx += (uint64_t)n;
      *done = (size_t)n;
      return 1;
    }
    if (n == 0) {
      t->eof = 1;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(b);
      return 0;
    }
    t->sys_errno = errno;
    return 0;
  }
}

static long bio_sock_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  tls_transport_t *t = BIO_get_data(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH: /* send() does not buffer */
      return 1;
    case BIO_CTRL_EOF: /* lets OpenSSL tell a closed connection from an error */
      return t != NULL && t->eof;
    default:
      return 0;
  }
}

static int bio_sock_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* The method table is immutable once built and shared by every connection,
   like OpenSSL's own BIO_s_socket(); building it once is all the state. */
static BIO_METHOD *g_bio_method;
static pthread_once_t g_bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "duckgrid socket");
  if (m == NULL) return;
  if (!BIO_meth_set_write_ex(m, bio_sock_write) || !BIO_meth_set_read_ex(m, bio_sock_read) ||
      !BIO_meth_set_ctrl(m, bio_sock_ctrl) || !BIO_meth_set_create(m, bio_sock_create)) {
    BIO_meth_free(m);
    return;
  }
  g_bio_method = m;
}

/* ======================================================================= */
/* Contexts                                                                  */
/* ======================================================================= */

/* OpenSSL would prompt on the terminal for an encrypted key; a server must not. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return -1;
}

/*
 * Checks that path names a readable file (or, with allow_dir, a directory),
 * so a typo gets "No such file or directory" rather than OpenSSL's generic
 * reasons. *is_dir tells which. DG_EINVAL with the reason in err.
 */
static int check_path(const char *what, const char *path, int allow_dir, int *is_dir, char *err,
                      size_t errcap) {
  struct stat st;
  *is_dir = 0;
  if (path[0] == '\0') {
    dg__redis_seterr(err, errcap, "TLS %s: empty path", what);
    return DG_EINVAL;
  }
  if (stat(path, &st) != 0) {
    dg__redis_seterr(err, errcap, "TLS %s '%s': %s", what, path, ERRSTR(errno));
    return DG_EINVAL;
  }
  if (S_ISDIR(st.st_mode)) {
    if (!allow_dir) {
      dg__redis_seterr(err, errcap, "TLS %s '%s' is a directory", what, path);
      return DG_EINVAL;
    }
    *is_dir = 1;
    return 0;
  }
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    dg__redis_seterr(err, errcap, "TLS %s '%s': %s", what, path, ERRSTR(errno));
    return DG_EINVAL;
  }
  fclose(f);
  return 0;
}

int dg__redis_tls_ctx_create(const dg__redis_tls_opts_t *o, dg__redis_tls_ctx_t **out, char *err,
                             size_t errcap) {
  char why[160];
  int ca_dir = 0, dummy = 0;
  if ((o->cert_file == NULL) != (o->key_file == NULL)) {
    dg__redis_seterr(err, errcap, "TLS: a client certificate needs its key, and a key its certificate");
    return DG_EINVAL;
  }
  if (o->ca_file != NULL && check_path("CA file", o->ca_file, 1, &ca_dir, err, errcap) != 0)
    return DG_EINVAL;
  if (o->cert_file != NULL &&
      (check_path("client certificate", o->cert_file, 0, &dummy, err, errcap) != 0 ||
       check_path("client key", o->key_file, 0, &dummy, err, errcap) != 0))
    return DG_EINVAL;

  ERR_clear_error();
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  if (c == NULL) {
    dg__redis_seterr(err, errcap, "TLS: cannot create a context: %s",
                     ssl_reason(why, sizeof why, "out of memory"));
    ERR_clear_error();
    return DG_ENOMEM;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_default_passwd_cb(c, no_passphrase);
  int rc = DG_EINVAL;
  if (o->ca_file != NULL) {
    int ok = ca_dir ? SSL_CTX_load_verify_locations(c, NULL, o->ca_file)
                    : SSL_CTX_load_verify_locations(c, o->ca_file, NULL);
    if (ok != 1) {
      dg__redis_seterr(err, errcap, "TLS CA file '%s': %s", o->ca_file,
                       ssl_reason(why, sizeof why, "no certificates"));
      goto fail;
    }
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    dg__redis_seterr(err, errcap, "TLS: cannot load the system CA store: %s",
                     ssl_reason(why, sizeof why, "unknown error"));
    goto fail;
  }
  if (o->cert_file != NULL) {
    if (SSL_CTX_use_certificate_chain_file(c, o->cert_file) != 1) {
      dg__redis_seterr(err, errcap, "TLS client certificate '%s': %s", o->cert_file,
                       ssl_reason(why, sizeof why, "not a PEM certificate"));
      goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, o->key_file, SSL_FILETYPE_PEM) != 1) {
      dg__redis_seterr(err, errcap, "TLS client key '%s': %s (it must be an unencrypted PEM key "
                       "matching the certificate)", o->key_file,
                       ssl_reason(why, sizeof why, "not a PEM key"));
      goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
      dg__redis_seterr(err, errcap, "TLS client key '%s' does not match certificate '%s'",
                       o->key_file, o->cert_file);
      goto fail;
    }
  }
  ERR_clear_error(); /* loading the system store may leave harmless entries */
  dg__redis_tls_ctx_t *ctx = dg_calloc(1, sizeof *ctx);
  ctx->ssl_ctx = c;
  *out = ctx;
  return 0;

fail:
  ERR_clear_error();
  SSL_CTX_free(c);
  return rc;
}

void dg__redis_tls_ctx_destroy(dg__redis_tls_ctx_t *c) {
  if (c == NULL) return;
  SSL_CTX_free(c->ssl_ctx);
  dg_free(c);
}

/* ======================================================================= */
/* The transport                                                             */
/* ======================================================================= */

/*
 * A read or write failed with OpenSSL error class e (not WANT_*): records a
 * one-line reason in t->err and returns DG_EIO. op is "read" or "write".
 */
static ssize_t io_failed(tls_transport_t *t, int e, const char *op) {
  char why[160];
  unsigned long first = ERR_peek_error();
  t->broken = 1;
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && t->sys_errno == 0) ||
      (e == SSL_ERROR_SSL && is_unexpected_eof(first))) {
    dg__redis_seterr(t->base.err, sizeof t->base.err, "connection closed by server");
  } else if (e == SSL_ERROR_SYSCALL) {
    dg__redis_seterr(t->base.err, sizeof t->base.err, "%s: %s", op, ERRSTR(t->sys_errno));
  } else if (is_peer_alert(first)) {
    dg__redis_seterr(t->base.err, sizeof t->base.err, "TLS alert from server: %s%s",
                     ssl_reason(why, sizeof why, "unknown alert"), alert_hint(first));
  } else {
    dg__redis_seterr(t->base.err, sizeof t->base.err, "TLS %s failed: %s%s", op,
                     ssl_reason(why, sizeof why, "unknown error"), alert_hint(first));
  }
  ERR_clear_error();
  return DG_EIO;
}

/*
 * A write failed because the server hung up (EPIPE, ECONNRESET). A server
 * that refuses a TLS 1.3 client certificate does so after our side of the
 * handshake is complete: it sends an alert and closes, and the reset can
 * beat our first read. The alert is then most likely still in the receive
 * queue (data queued before a reset stays readable), so read it without
 * blocking and report it instead of the bare reset. 1 when it explained the
 * failure (t->base.err set), else 0.
 */
static int salvage_alert(tls_transport_t *t) {
  char scratch[256];
  size_t n = 0;
  ERR_clear_error();
  t->sys_errno = 0;
  int ok = SSL_read_ex(t->ssl, scratch, sizeof scratch, &n);
  unsigned long first = ERR_peek_error();
  if (ok == 1 || SSL_get_error(t->ssl, 0) != SSL_ERROR_SSL || !is_peer_alert(first)) {
    ERR_clear_error();
    return 0;
  }
  io_failed(t, SSL_ERROR_SSL, "read");
  return 1;
}

static ssize_t tls_read(dg__redis_transport_t *tp, char *buf, size_t cap, int64_t deadline_ms) {
  tls_transport_t *t = (tls_transport_t *)tp;
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    t->sys_errno = 0;
    if (SSL_read_ex(t->ssl, buf, cap, &n) == 1) return (ssize_t)n;
    int e = SSL_get_error(t->ssl, 0);
    short ev;
    if (e == SSL_ERROR_WANT_READ) ev = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE) ev = POLLOUT;
    else return io_failed(t, e, "read");
    int w = wait_fd(t->fd, ev, deadline_ms);
    if (w == 0) {
      t->broken = 1;
      dg__redis_seterr(tp->err, sizeof tp->err, "timed out waiting for a reply");
      return DG_ETIMEOUT;
    }
    if (w < 0) {
      t->broken = 1;
      dg__redis_seterr(tp->err, sizeof tp->err, "poll: %s", ERRSTR(errno));
      return DG_EIO;
    }
  }
}

static ssize_t tls_write(dg__redis_transport_t *tp, const char *buf, size_t len,
                         int64_t deadline_ms) {
  tls_transport_t *t = (tls_transport_t *)tp;
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    t->sys_errno = 0;
    /* With SSL_MODE_ENABLE_PARTIAL_WRITE this returns after one record. */
    if (SSL_write_ex(t->ssl, buf, len, &n) == 1) return (ssize_t)n;
    int e = SSL_get_error(t->ssl, 0);
    short ev;
    if (e == SSL_ERROR_WANT_WRITE) ev = POLLOUT;
    else if (e == SSL_ERROR_WANT_READ) ev = POLLIN;
    else {
      int hung_up = e == SSL_ERROR_SYSCALL && (t->sys_errno == EPIPE || t->sys_errno == ECONNRESET);
      ssize_t rc = io_failed(t, e, "write");
      if (hung_up) (void)salvage_alert(t);
      return rc;
    }
    int w = wait_fd(t->fd, ev, deadline_ms);
    if (w == 0) {
      t->broken = 1;
      dg__redis_seterr(tp->err, sizeof tp->err, "timed out sending a command");
      return DG_ETIMEOUT;
    }
    if (w < 0) {
      t->broken = 1;
      dg__redis_seterr(tp->err, sizeof tp->err, "poll: %s", ERRSTR(errno));
      return DG_EIO;
    }
  }
}

/*
 * Without blocking: is the idle connection still usable? Data already
 * decrypted inside OpenSSL is unasked-for data. Bytes on the socket are
 * handed to OpenSSL (SSL_peek on the non-blocking BIO): session tickets and
 * other handshake records are consumed and the connection stays usable;
 * application data, close_notify, an alert or EOF mean it is not. The loop
 * is bounded: each round consumes at least one record or finds the socket
 * empty; a record only partly arrived is left for the next read.
 */
static int tls_probe(dg__redis_transport_t *tp) {
  tls_transport_t *t = (tls_transport_t *)tp;
  for (int round = 0; round < 16; round++) {
    if (SSL_pending(t->ssl) > 0) {
      dg__redis_seterr(tp->err, sizeof tp->err, "unexpected data from server while idle");
      t->broken = 1;
      return DG_EIO;
    }
    char c;
    ssize_t n = recv(t->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      dg__redis_seterr(tp->err, sizeof tp->err, "read: %s", ERRSTR(errno));
      t->broken = 1;
      return DG_EIO;
    }
    if (n < 0 && !SSL_has_pending(t->ssl)) return 0; /* nothing anywhere */
    /* Bytes or EOF on the socket, or a record in OpenSSL's buffer. */
    size_t got = 0;
    ERR_clear_error();
    t->sys_errno = 0;
    if (SSL_peek_ex(t->ssl, &c, 1, &got) == 1) {
      /* Redis says something unasked only before it drops a client. */
      dg__redis_seterr(tp->err, sizeof tp->err, "unexpected data from server while idle");
      t->broken = 1;
      return DG_EIO;
    }
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      if (n < 0) return 0; /* only a partial record was buffered */
      continue;            /* housekeeping consumed; look again */
    }
    if (e == SSL_ERROR_WANT_WRITE) { /* a reply to the server (key update) is queued */
      ERR_clear_error();
      return 0;
    }
    io_failed(t, e, "read");
    if (strcmp(tp->err, "connection closed by server") == 0)
      dg__redis_seterr(tp->err, sizeof tp->err, "connection closed by server while idle");
    return DG_EIO;
  }
  return 0;
}

static void tls_destroy(dg__redis_transport_t *tp) {
  tls_transport_t *t = (tls_transport_t *)tp;
  if (t->ssl != NULL) {
    /* A polite close_notify, without waiting for the server's; not allowed
       after a fatal error, and pointless after a timeout. */
    if (!t->broken && SSL_is_init_finished(t->ssl)) (void)SSL_shutdown(t->ssl);
    SSL_free(t->ssl); /* frees the BIO */
  }
  if (t->fd >= 0) close(t->fd);
  ERR_clear_error();
  dg_free(t);
}

static const dg__redis_transport_ops_t tls_ops = {"tls", tls_read, tls_write, tls_probe,
                                                  tls_destroy};

/* The handshake failed with OpenSSL error class e: one line in err, a code. */
static int handshake_failed(tls_transport_t *t, int e, char *err, size_t errcap) {
  char why[160];
  unsigned long first = ERR_peek_error();
  int rc = DG_EUNAVAIL;
  if (t->rx > 0 && t->first_byte != TLS_CT_HANDSHAKE && t->first_byte != TLS_CT_ALERT) {
    dg__redis_seterr(err, errcap, "server at %s did not answer TLS (is it a plaintext port?)",
                     t->peer);
    rc = DG_EIO;
  } else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && t->sys_errno == 0) ||
             (e == SSL_ERROR_SSL && is_unexpected_eof(first))) {
    dg__redis_seterr(err, errcap, "TLS handshake with %s failed: connection closed by server",
                     t->peer);
  } else if (e == SSL_ERROR_SYSCALL) {
    dg__redis_seterr(err, errcap, "TLS handshake with %s failed: %s", t->peer,
                     ERRSTR(t->sys_errno));
  } else if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
             ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(t->ssl);
    char detail[320];
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      snprintf(detail, sizeof detail, "%s: the certificate is not valid for '%s'",
               X509_verify_cert_error_string(v), t->name);
    } else {
      snprintf(detail, sizeof detail, "%s", X509_verify_cert_error_string(v));
    }
    dg__redis_seterr(err, errcap, "TLS handshake with %s failed: certificate verify failed (%s)",
                     t->peer, detail);
  } else if (is_peer_alert(first)) {
    dg__redis_seterr(err, errcap, "TLS handshake with %s failed: alert from server: %s%s", t->peer,
                     ssl_reason(why, sizeof why, "unknown alert"), alert_hint(first));
  } else {
    dg__redis_seterr(err, errcap, "TLS handshake with %s failed: %s%s", t->peer,
                     ssl_reason(why, sizeof why, "unknown error"), alert_hint(first));
  }
  ERR_clear_error();
  return rc;
}

int dg__redis_tls_open(const dg_redis_url_t *url, dg__redis_tls_ctx_t *ctx,
                       const char *server_name, int64_t deadline_ms,
                       dg__redis_transport_t **out, char *err, size_t errcap) {
  if (url->is_unix || url->host == NULL || ctx == NULL) {
    dg__redis_seterr(err, errcap, "TLS needs a TCP host and a context");
    return DG_EINVAL;
  }
  pthread_once(&g_bio_once, bio_method_init);
  if (g_bio_method == NULL) {
    dg__redis_seterr(err, errcap, "TLS: cannot create the socket BIO method");
    return DG_ENOMEM;
  }
  int fd = -1;
  int rc = dg__redis_sock_connect_fd(url, deadline_ms, &fd, err, errcap);
  if (rc != 0) return rc;

  tls_transport_t *t = dg_calloc(1, sizeof *t);
  t->base.ops = &tls_ops;
  t->fd = fd;
  int v6 = strchr(url->host, ':') != NULL;
  snprintf(t->peer, sizeof t->peer, "%s%s%s:%u", v6 ? "[" : "", url->host, v6 ? "]" : "",
           (unsigned)url->port);

  const char *name = server_name != NULL ? server_name : url->host;
  snprintf(t->name, sizeof t->name, "%s", name);
  char why[160];
  ERR_clear_error();
  BIO *bio = NULL;
  t->ssl = SSL_new(ctx->ssl_ctx);
  if (t->ssl == NULL || (bio = BIO_new(g_bio_method)) == NULL) {
    dg__redis_seterr(err, errcap, "TLS: cannot create a session: %s",
                     ssl_reason(why, sizeof why, "out of memory"));
    rc = DG_ENOMEM;
    goto fail;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio); /* t->ssl owns bio now */
  SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  int ok;
  if (is_ip_literal(name)) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
  } else {
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set_tlsext_host_name(t->ssl, name) == 1 && SSL_set1_host(t->ssl, name) == 1;
  }
  if (!ok) {
    dg__redis_seterr(err, errcap, "TLS: cannot verify against server name '%s': %s", name,
                     ssl_reason(why, sizeof why, "invalid name"));
    rc = DG_EINVAL;
    goto fail;
  }
  SSL_set_connect_state(t->ssl);

  for (;;) {
    ERR_clear_error();
    t->sys_errno = 0;
    int r = SSL_connect(t->ssl);
    if (r == 1) break;
    int e = SSL_get_error(t->ssl, r);
    short ev;
    if (e == SSL_ERROR_WANT_READ) ev = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE) ev = POLLOUT;
    else {
      rc = handshake_failed(t, e, err, errcap);
      goto fail;
    }
    int w = wait_fd(t->fd, ev, deadline_ms);
    if (w == 0) {
      if (t->rx == 0)
        dg__redis_seterr(err, errcap,
                         "server at %s did not answer TLS before the connect timeout (is it a "
                         "plaintext port, or a hung server?)", t->peer);
      else
        dg__redis_seterr(err, errcap, "TLS handshake with %s timed out", t->peer);
      rc = DG_EUNAVAIL;
      goto fail;
    }
    if (w < 0) {
      dg__redis_seterr(err, errcap, "TLS handshake with %s: poll: %s", t->peer, ERRSTR(errno));
      rc = DG_EUNAVAIL;
      goto fail;
    }
  }
  ERR_clear_error();
  *out = &t->base;
  return 0;

fail:
  t->broken = 1;
  tls_destroy(&t->base); /* closes fd, clears the error queue */
  return rc;
}
