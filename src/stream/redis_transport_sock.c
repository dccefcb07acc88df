/*
 * redis_transport_sock.c -- the plain socket transport for dg_redis_t: TCP
 * (TCP_NODELAY, keepalive) and unix domain sockets.
 *
 * Why our own and not hiredis's redisContext: hiredis 0.14 has no TLS and no
 * way to plug a transport in, and its timeouts are socket options that do not
 * bound a whole round trip. Here every socket is non-blocking and every wait
 * is a poll() against an absolute monotonic deadline, so no call can block
 * longer than its caller allowed. Writes use send(MSG_NOSIGNAL), so a peer
 * that went away yields EPIPE rather than killing the process with SIGPIPE.
 */
#include "stream/redis_transport.h"
#include "stream/redis_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* strerror() is not thread-safe; the GNU strerror_r returns the message,
   using the compound-literal buffer (alive for the enclosing block) if needed. */
#define ERRSTR(e) strerror_r((e), (char[96]){0}, 96)

int64_t dg__redis_now_ms(void) { return dg_mono_us() / 1000; }

/*
 * Waits for events on fd until deadline_ms. Returns 1 when ready, 0 when the
 * deadline passed, -1 on a poll error (errno set). EINTR restarts the wait
 * with the remaining time.
 */
static int wait_fd(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - dg__redis_now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (n > 0) return 1;
    if (n == 0) continue; /* loop re-checks the deadline (and slices long waits) */
    if (errno == EINTR) continue;
    return -1;
  }
}

/* ---- connecting ----------------------------------------------------------- */

/* Connects fd to addr by deadline. 0 or -1 with errno set (ETIMEDOUT on time). */
static int connect_by(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline_ms) {
  if (connect(fd, addr, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) return -1;
  int w = wait_fd(fd, POLLOUT, deadline_ms);
  if (w == 0) {
    errno = ETIMEDOUT;
    return -1;
  }
  if (w < 0) return -1;
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -1;
  if (soerr != 0) {
    errno = soerr;
    return -1;
  }
  return 0;
}

static int connect_unix(const dg_redis_url_t *url, int64_t deadline_ms, int *fd_out, char *err,
                        size_t errcap) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t plen = strlen(url->path);
  if (plen >= sizeof sa.sun_path) { /* the URL parser checks this too */
    dg__redis_seterr(err, errcap, "unix socket path too long");
    return DG_EUNAVAIL;
  }
  memcpy(sa.sun_path, url->path, plen + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    dg__redis_seterr(err, errcap, "socket: %s", ERRSTR(errno));
    return DG_EUNAVAIL;
  }
  if (connect_by(fd, (struct sockaddr *)&sa, sizeof sa, deadline_ms) < 0) {
    dg__redis_seterr(err, errcap, "connect to unix socket %s: %s", url->path, ERRSTR(errno));
    close(fd);
    return DG_EUNAVAIL;
  }
  *fd_out = fd;
  return 0;
}

static int connect_tcp(const dg_redis_url_t *url, int64_t deadline_ms, int *fd_out, char *err,
                       size_t errcap) {
  char port[8];
  snprintf(port, sizeof port, "%u", (unsigned)url->port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  int gai = getaddrinfo(url->host, port, &hints, &res);
  if (gai == EAI_ADDRFAMILY || gai == EAI_NONAME || gai == EAI_FAMILY) {
    /* AI_ADDRCONFIG hides ::1 on hosts with only loopback IPv6; retry without it. */
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(url->host, port, &hints, &res);
  }
  if (gai != 0) {
    dg__redis_seterr(err, errcap, "resolve %s: %s", url->host, gai_strerror(gai));
    return DG_EUNAVAIL;
  }
  int last_errno = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (dg__redis_now_ms() >= deadline_ms) {
      last_errno = ETIMEDOUT;
      break;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    if (connect_by(fd, ai->ai_addr, ai->ai_addrlen, deadline_ms) < 0) {
      last_errno = errno;
      close(fd);
      continue;
    }
    int one = 1;
    /* Commands are small and latency-bound; Nagle would delay each by up to
       an RTT waiting for the previous ACK. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    freeaddrinfo(res);
    *fd_out = fd;
    return 0;
  }
  freeaddrinfo(res);
  dg__redis_seterr(err, errcap, "connect to %s port %u: %s", url->host, (unsigned)url->port,
         ERRSTR(last_errno ? last_errno : ECONNREFUSED));
  return DG_EUNAVAIL;
}

int dg__redis_sock_connect_fd(const dg_redis_url_t *url, int64_t deadline_ms, int *fd_out,
                              char *err, size_t errcap) {
  if (url->is_unix) return connect_unix(url, deadline_ms, fd_out, err, errcap);
  return connect_tcp(url, deadline_ms, fd_out, err, errcap);
}

/* ---- the transport ---------------------------------------------------------- */

typedef struct sock_transport_s {
  dg__redis_transport_t base; /* must be first */
  int fd;
} sock_transport_t;

static ssize_t sock_read(dg__redis_transport_t *t, char *buf, size_t cap, int64_t deadline_ms) {
  sock_transport_t *s = (sock_transport_t *)t;
  for (;;) {
    ssize_t n = recv(s->fd, buf, cap, 0);
    if (n > 0) return n;
    if (n == 0) {
      dg__redis_seterr(t->err, sizeof t->err, "connection closed by server");
      return DG_EIO;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      dg__redis_seterr(t->err, sizeof t->err, "read: %s", ERRSTR(errno));
      return DG_EIO;
    }
    int w = wait_fd(s->fd, POLLIN, deadline_ms);
    if (w == 0) {
      dg__redis_seterr(t->err, sizeof t->err, "timed out waiting for a reply");
      return DG_ETIMEOUT;
    }
    if (w < 0) {
      dg__redis_seterr(t->err, sizeof t->err, "poll: %s", ERRSTR(errno));
      return DG_EIO;
    }
  }
}

static ssize_t sock_write(dg__redis_transport_t *t, const char *buf, size_t len,
                          int64_t deadline_ms) {
  sock_transport_t *s = (sock_transport_t *)t;
  for (;;) {
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) return n;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      dg__redis_seterr(t->err, sizeof t->err, "write: %s", ERRSTR(errno));
      return DG_EIO;
    }
    int w = wait_fd(s->fd, POLLOUT, deadline_ms);
    if (w == 0) {
      dg__redis_seterr(t->err, sizeof t->err, "timed out sending a command");
      return DG_ETIMEOUT;
    }
    if (w < 0) {
      dg__redis_seterr(t->err, sizeof t->err, "poll: %s", ERRSTR(errno));
      return DG_EIO;
    }
  }
}

static int sock_probe(dg__redis_transport_t *t) {
  sock_transport_t *s = (sock_transport_t *)t;
  char c;
  for (;;) {
    ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      dg__redis_seterr(t->err, sizeof t->err, "connection closed by server while idle");
      return DG_EIO;
    }
    if (n > 0) {
      /* Redis says something unasked only before it drops a client
         ("-ERR max number of clients reached", a kill): the stream is no
         longer in step with our requests. */
      dg__redis_seterr(t->err, sizeof t->err, "unexpected data from server while idle");
      return DG_EIO;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    dg__redis_seterr(t->err, sizeof t->err, "read: %s", ERRSTR(errno));
    return DG_EIO;
  }
}

static void sock_destroy(dg__redis_transport_t *t) {
  sock_transport_t *s = (sock_transport_t *)t;
  if (s->fd >= 0) close(s->fd);
  dg_free(s);
}

static const dg__redis_transport_ops_t tcp_ops = {"tcp", sock_read, sock_write, sock_probe,
                                                  sock_destroy};
static const dg__redis_transport_ops_t unix_ops = {"unix", sock_read, sock_write, sock_probe,
                                                   sock_destroy};

int dg__redis_transport_open(const dg_redis_url_t *url, int64_t deadline_ms,
                             dg__redis_transport_t **out, char *err, size_t errcap) {
  if (url->tls) {
    dg__redis_seterr(err, errcap, "rediss:// (TLS) is not supported yet");
    return DG_EINVAL;
  }
  int fd = -1;
  int rc = dg__redis_sock_connect_fd(url, deadline_ms, &fd, err, errcap);
  if (rc != 0) return rc;
  sock_transport_t *s = dg_calloc(1, sizeof *s);
  s->base.ops = url->is_unix ? &unix_ops : &tcp_ops;
  s->fd = fd;
  *out = &s->base;
  return 0;
}
