/*
 * redis_transport.h -- private: the byte transport under dg_redis_t.
 *
 * dg_redis_t never touches a socket itself. It opens a transport with the
 * factory that matches the URL and then only calls the four operations below,
 * each bounded by an absolute deadline on the monotonic clock. The socket
 * transport (TCP with TCP_NODELAY, unix sockets) lives in
 * redis_transport_sock.c; the TLS transport (rediss://, OpenSSL) lives in
 * redis_transport_tls.c, reuses dg__redis_sock_connect_fd() for the TCP part
 * and fills in the same table, so only the factory call differs.
 *
 * Contract for implementations:
 * - Operations never block past the deadline and never raise SIGPIPE.
 * - read/write return the byte count (> 0) or a negative DG_E* code:
 *   DG_ETIMEOUT when the deadline passed, DG_EIO for anything else (EOF
 *   included). After a failure the caller only calls destroy.
 * - On failure an operation leaves a one-line reason in t->err.
 */
#ifndef DG_STREAM_REDIS_TRANSPORT_H
#define DG_STREAM_REDIS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dg/redis.h"

typedef struct dg__redis_transport_s dg__redis_transport_t;

typedef struct dg__redis_transport_ops_s {
  const char *name; /* "tcp", "unix" or "tls" */
  /* Reads at most cap bytes; waits until at least one byte or the deadline. */
  ssize_t (*read)(dg__redis_transport_t *t, char *buf, size_t cap, int64_t deadline_ms);
  /* Writes at most len bytes; waits until at least one byte or the deadline. */
  ssize_t (*write)(dg__redis_transport_t *t, const char *buf, size_t len, int64_t deadline_ms);
  /* Without blocking: 0 if the idle connection looks usable, DG_EIO if the
     peer closed it or sent bytes nobody asked for (bytes a TLS library has
     already buffered count as sent). */
  int (*probe)(dg__redis_transport_t *t);
  /* Closes and frees t. */
  void (*destroy)(dg__redis_transport_t *t);
} dg__redis_transport_ops_t;

/* The common head of every transport; implementations embed it first. */
struct dg__redis_transport_s {
  const dg__redis_transport_ops_t *ops;
  char err[256]; /* reason for the last failed operation */
};

/** Monotonic clock in milliseconds. */
int64_t dg__redis_now_ms(void);

/**
 * Opens the plain transport the URL asks for (TCP or unix socket), connected
 * by deadline_ms. Fails with DG_EINVAL for a TLS URL (open those with
 * dg__redis_tls_open), DG_EUNAVAIL (resolve/connect failed or timed out); the
 * reason goes to err.
 */
int dg__redis_transport_open(const dg_redis_url_t *url, int64_t deadline_ms,
                             dg__redis_transport_t **out, char *err, size_t errcap);

/**
 * Connects a non-blocking, close-on-exec socket to the URL's host:port (each
 * resolved address in turn) or unix path by deadline_ms, sets TCP_NODELAY and
 * SO_KEEPALIVE on TCP. For the TLS transport to build on. Fails with
 * DG_EUNAVAIL; the reason goes to err. Name resolution uses getaddrinfo(),
 * which cannot be bounded by the deadline: use IP literals where DNS may hang.
 */
int dg__redis_sock_connect_fd(const dg_redis_url_t *url, int64_t deadline_ms, int *fd_out,
                              char *err, size_t errcap);

/* ---- TLS (redis_transport_tls.c) ------------------------------------------ */

/** What a TLS connection trusts and presents. Strings are borrowed. */
typedef struct dg__redis_tls_opts_s {
  const char *ca_file;     /* PEM bundle (or a hashed directory) of trusted CAs;
                              NULL: the system store */
  const char *cert_file;   /* client certificate chain (PEM) or NULL */
  const char *key_file;    /* its private key (PEM, unencrypted); set iff cert_file */
} dg__redis_tls_opts_t;

/**
 * A loaded client configuration (an SSL_CTX: trusted CAs, client
 * certificate). Loading reads files, so a connection keeps one across
 * reconnects; one context serves one thread at a time, like dg_redis_t.
 */
typedef struct dg__redis_tls_ctx_s dg__redis_tls_ctx_t;

/**
 * Loads o into a new context; free it with dg__redis_tls_ctx_destroy().
 * Certificate verification is always on: o->ca_file, or the system store.
 * Fails with DG_EINVAL (a file is unreadable or holds no usable certificate
 * or key, the key does not match the certificate), DG_ENOMEM; the one-line
 * reason (naming the file) goes to err. *out untouched on failure.
 */
int dg__redis_tls_ctx_create(const dg__redis_tls_opts_t *o, dg__redis_tls_ctx_t **out, char *err,
                             size_t errcap);

/** Frees a context. NULL is fine. Open transports keep what they need. */
void dg__redis_tls_ctx_destroy(dg__redis_tls_ctx_t *c);

/**
 * Connects to the URL's host:port over TCP and completes a TLS handshake by
 * deadline_ms. The server certificate must chain to the context's CAs and
 * match server_name (or the URL host when server_name is NULL): DNS names
 * are checked against the certificate's names and sent as SNI; IP literals
 * are checked against its IP addresses and not sent as SNI.
 * Fails with DG_EUNAVAIL (connect failed, handshake refused or timed out,
 * certificate not trusted or not for this host), DG_EIO (the server does
 * not speak TLS), DG_EINVAL (a unix:// URL), DG_ENOMEM; the one-line reason
 * goes to err.
 */
int dg__redis_tls_open(const dg_redis_url_t *url, dg__redis_tls_ctx_t *ctx,
                       const char *server_name, int64_t deadline_ms,
                       dg__redis_transport_t **out, char *err, size_t errcap);

#endif
