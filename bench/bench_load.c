/*
 * bench_load.c -- duckgrid's HTTP load generator: one thread, epoll,
 * keep-alive HTTP/1.1, one request in flight per connection (no pipelining,
 * as browsers and most clients behave).
 *
 * Two ways to send:
 *   closed loop (--rate 0): every connection sends its next request as soon
 *     as the previous answer is in: the maximum rate the server sustains at
 *     that concurrency. Latency = answer - send.
 *   open loop (--rate R): request k is *scheduled* at t0 + k/R whatever the
 *     server does; if no connection is free it waits in a queue. Latency =
 *     answer - scheduled time, so queueing inside the client (= the server
 *     falling behind) is never hidden (no coordinated omission).
 *
 * Targets: health (GET /health), update (POST /update_cell, sync) and async
 * (POST /update_cell?async=true). Write mix: --mid-pct percent of writes go
 * to a random mid-level parent (--mid FIRST:COUNT), the rest to a random
 * leaf (--leaf FIRST:COUNT).
 *
 * Watchers (--pollers N, --sse N): N long-poll clients of GET /get_updates
 * (and/or N Server-Sent-Events clients of GET /events). Each first resolves
 * the cursor `$` (wait_ms=0), and only when every watcher holds a cursor do
 * the writes start, so every watcher must see every write. For each
 * (watcher, write) pair the time the watcher saw the update is joined with
 * the time the write's HTTP answer arrived (update_id == stream_id):
 *   visible = seen - write answered    (can be < 0: the poller may win)
 *   e2e     = seen - write scheduled/sent
 *
 * Async applied rate (--redis URL --res-stream KEY): after the last 202,
 * polls the response stream until its newest id >= the highest stream_id
 * the server returned (the manager applies in stream order), and checks
 * XLEN grew by the number of accepted requests.
 *
 * Everything is bounded: --duration/--count, a drain limit (--drain), and an
 * error limit. Output: one JSON object on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dg/redis.h"

/* ---- options ------------------------------------------------------------------ */

enum { T_HEALTH, T_UPDATE, T_ASYNC, T_ROW, T_PAGE };

static struct {
  int port;
  const char *key;
  int target;
  int conns;
  double rate;       /* 0: closed loop */
  double duration;   /* measured seconds */
  double warmup;     /* seconds before measuring */
  long count;        /* closed loop: stop after this many requests (0: by time) */
  const char *table;
  int64_t leaf_first, leaf_count, mid_first, mid_count;
  int mid_pct;
  int pollers, sse;
  const char *redis_url, *res_stream;
  double drain;      /* seconds to wait for stragglers */
  uint64_t seed;
  const char *label;
  int rss_pid;       /* the server: its RSS before and after the watchers connect */
  int idle;          /* connections that send half a request header and stay */
} O = {.port = 0, .key = "", .target = T_UPDATE, .conns = 64, .duration = 10, .warmup = 1,
       .table = "bench", .mid_pct = 10, .drain = 60, .seed = 42, .label = ""};

/* ---- small things ---------------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench_load: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory");
  return p;
}
static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die("out of memory");
  return p;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

typedef struct {
  char *d;
  size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t c = b->cap ? b->cap : 4096;
  while (c < b->len + extra + 1) c *= 2;
  b->d = xrealloc(b->d, c);
  b->cap = c;
}
static void buf_add(buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->d + b->len, p, n);
  b->len += n;
  b->d[b->len] = 0;
}
static void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->d, b->d + n, b->len - n);
    b->len -= n;
  }
  if (b->d) b->d[b->len] = 0;
}

/* ---- stream ids and the write table ------------------------------------------ */

typedef struct {
  uint64_t ms, seq;
} xid_t;

static int xid_parse(const char *s, size_t n, xid_t *x) {
  uint64_t a = 0, b = 0;
  size_t i = 0;
  if (n == 0 || s[0] < '0' || s[0] > '9') return -1;
  while (i < n && s[i] >= '0' && s[i] <= '9') a = a * 10 + (uint64_t)(s[i++] - '0');
  if (i >= n || s[i] != '-') return -1;
  i++;
  if (i >= n) return -1;
  while (i < n && s[i] >= '0' && s[i] <= '9') b = b * 10 + (uint64_t)(s[i++] - '0');
  if (i != n) return -1;
  x->ms = a;
  x->seq = b;
  return 0;
}
static int xid_cmp(xid_t a, xid_t b) {
  return a.ms < b.ms ? -1 : a.ms > b.ms ? 1 : a.seq < b.seq ? -1 : a.seq > b.seq;
}

/* One write whose id we know: when it was scheduled/sent and answered. */
typedef struct {
  xid_t id;
  uint64_t t_sched, t_resp;
  int measured;
} wrec_t;

/* Open-addressing map xid -> index into writes[]. */
static wrec_t *writes;
static size_t nwrites, wcap;
static int64_t *wmap;
static size_t wmap_cap;

static size_t xid_hash(xid_t x) {
  uint64_t h = x.ms * 0x9E3779B97F4A7C15ull ^ (x.seq + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
  return (size_t)(h ^ (h >> 29));
}
static void wmap_put(size_t idx);
static void wmap_grow(void) {
  size_t old = wmap_cap;
  int64_t *om = wmap;
  wmap_cap = old ? old * 2 : 1 << 16;
  wmap = xmalloc(wmap_cap * sizeof *wmap);
  for (size_t i = 0; i < wmap_cap; i++) wmap[i] = -1;
  for (size_t i = 0; i < old; i++)
    if (om[i] >= 0) wmap_put((size_t)om[i]);
  free(om);
}
static void wmap_put(size_t idx) {
  size_t m = wmap_cap - 1, h = xid_hash(writes[idx].id) & m;
  while (wmap[h] >= 0) h = (h + 1) & m;
  wmap[h] = (int64_t)idx;
}
static int64_t wmap_get(xid_t x) {
  if (!wmap_cap) return -1;
  size_t m = wmap_cap - 1, h = xid_hash(x) & m;
  while (wmap[h] >= 0) {
    if (xid_cmp(writes[wmap[h]].id, x) == 0) return wmap[h];
    h = (h + 1) & m;
  }
  return -1;
}
static void write_add(xid_t id, uint64_t t_sched, uint64_t t_resp, int measured) {
  if (nwrites == wcap) {
    wcap = wcap ? wcap * 2 : 4096;
    writes = xrealloc(writes, wcap * sizeof *writes);
  }
  writes[nwrites] = (wrec_t){id, t_sched, t_resp, measured};
  if ((nwrites + 1) * 2 > wmap_cap) wmap_grow();
  wmap_put(nwrites);
  nwrites++;
}

/* A watcher saw update `id` at time t. */
typedef struct {
  xid_t id;
  uint64_t t;
  uint32_t watcher;
} seen_t;
static seen_t *seen;
static size_t nseen, seencap;

static void seen_add(xid_t id, uint64_t t, uint32_t w) {
  if (nseen == seencap) {
    seencap = seencap ? seencap * 2 : 65536;
    seen = xrealloc(seen, seencap * sizeof *seen);
  }
  seen[nseen++] = (seen_t){id, t, w};
}

/* ---- latency samples ------------------------------------------------------------ */

typedef struct {
  int64_t *v;
  size_t n, cap;
} samples_t;

static void samp_add(samples_t *s, int64_t x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 65536;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = x;
}
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}
static double pct_ms(samples_t *s, double p) {
  if (s->n == 0) return -1;
  size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
  return (double)s->v[i] / 1e6;
}
static void samp_json(FILE *f, const char *name, samples_t *s) {
  qsort(s->v, s->n, sizeof *s->v, cmp_i64);
  double sum = 0;
  for (size_t i = 0; i < s->n; i++) sum += (double)s->v[i];
  fprintf(f,
          ",\"%s\":{\"n\":%zu,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
          "\"p999_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f}",
          name, s->n, s->n ? sum / (double)s->n / 1e6 : -1, pct_ms(s, 50), pct_ms(s, 90), pct_ms(s, 99),
          pct_ms(s, 99.9), s->n ? (double)s->v[0] / 1e6 : -1, s->n ? (double)s->v[s->n - 1] / 1e6 : -1);
}

/* ---- connections ------------------------------------------------------------------ */

enum { K_WRITER, K_POLLER, K_SSE };

typedef struct {
  int fd, kind;
  uint32_t idx;
  int busy;          /* a request is in flight */
  int want_out;      /* EPOLLOUT registered */
  buf_t out;
  size_t outoff;
  buf_t in;          /* raw bytes of the current response */
  buf_t body;        /* decoded body (chunked) */
  int have_hdr, status, chunked, close_after;
  long clen;
  size_t hdr_len, raw_pos;
  long chunk_left;   /* -1: expecting a size line */
  int chunk_crlf;    /* expecting the CRLF after a chunk's data */
  uint64_t t_sched, t_sent;
  /* watcher state */
  int resolved;      /* holds a cursor */
  char since[48];
  xid_t last;        /* newest id seen */
  uint64_t nupd, order_errors;
  uint64_t retry_at;
  int redo, fails;
} conn_t;

static int ep;
static conn_t *conns;
static int nconns;
static char auth_hdr[512];

/* counters */
static uint64_t sent_total, done_total, measured_ok, measured_err;
static uint64_t status_count[600];
static uint64_t io_errors, reconnects;
static uint64_t bytes_in;
static uint64_t poll_errors, poll_status[600];
static samples_t lat;

static void conn_open(conn_t *c) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket: %s", strerror(errno));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  int tries = 0;
  while (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (++tries > 50) die("connect to 127.0.0.1:%d: %s", O.port, strerror(errno));
    usleep(20000);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  c->fd = fd;
  c->want_out = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
}

/* ---- idle connections (slowloris) ------------------------------------------------ */

static int *idle_fds;
static int nidle_fds;

/* Opens n connections that each send half a request header, then nothing:
 * what a slowloris client does. They come from 200 a source address
 * (127.1.x.y: the whole 127/8 is loopback), below the server's per-IP cap
 * (DUCKGRID_IP_CONNECTIONS, 256), as from many clients; the measured load
 * comes from 127.0.0.1. Returns how many connected. */
static int idle_open(int n) {
  static const char half[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ";
  idle_fds = xmalloc(((size_t)n + 1) * sizeof *idle_fds);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      fprintf(stderr, "bench_load: idle connection %d: socket: %s\n", i, strerror(errno));
      break;
    }
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f010000u | (uint32_t)(i / 200 / 250) << 8 | (uint32_t)(i / 200 % 250 + 1));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, half, sizeof half - 1, MSG_NOSIGNAL) < 0) {
      fprintf(stderr, "bench_load: idle connection %d: %s\n", i, strerror(errno));
      close(fd);
      break;
    }
    idle_fds[nidle_fds++] = fd;
  }
  return nidle_fds;
}

/* How many of them the server has closed (a read sees the end, or an error). */
static int idle_closed(void) {
  int k = 0;
  for (int i = 0; i < nidle_fds; i++) {
    char b[64];
    ssize_t r = recv(idle_fds[i], b, sizeof b, MSG_DONTWAIT | MSG_PEEK);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) k++;
    else if (r > 0) k++; /* it answered (an error status): no longer waiting */
  }
  return k;
}

static void conn_reset_parse(conn_t *c) {
  c->in.len = 0;
  c->body.len = 0;
  c->have_hdr = 0;
  c->status = 0;
  c->chunked = 0;
  c->close_after = 0;
  c->clen = -1;
  c->hdr_len = 0;
  c->raw_pos = 0;
  c->chunk_left = -1;
  c->chunk_crlf = 0;
}

static void set_out(conn_t *c, int on) {
  if (c->want_out == on) return;
  c->want_out = on;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(conn_t *c) {
  while (c->outoff < c->out.len) {
    ssize_t w = write(c->fd, c->out.d + c->outoff, c->out.len - c->outoff);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return; /* the read side sees the error */
    }
    c->outoff += (size_t)w;
  }
  set_out(c, c->outoff < c->out.len);
}

static void send_request(conn_t *c, const char *method, const char *path, const char *body, size_t blen) {
  c->out.len = 0;
  c->outoff = 0;
  char head[1024];
  int n;
  if (body)
    n = snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 method, path, auth_hdr, blen);
  else
    n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s\r\n", method, path,
                 auth_hdr, c->kind == K_SSE ? "Accept: text/event-stream\r\n" : "");
  buf_add(&c->out, head, (size_t)n);
  if (body) buf_add(&c->out, body, blen);
  conn_reset_parse(c);
  c->busy = 1;
  conn_flush(c);
}

/* ---- writers ------------------------------------------------------------------------ */

static void send_write(conn_t *c, uint64_t t_sched) {
  c->t_sched = t_sched;
  c->t_sent = now_ns();
  if (c->t_sched == 0) c->t_sched = c->t_sent;
  sent_total++;
  if (O.target == T_HEALTH) {
    send_request(c, "GET", "/health", NULL, 0);
    return;
  }
  if (O.target == T_ROW) { /* an authenticated read of a random leaf */
    char path[160];
    snprintf(path, sizeof path, "/tables/%s/rows/%" PRId64, O.table,
             O.leaf_first + (int64_t)(rnd() % (uint64_t)O.leaf_count));
    send_request(c, "GET", path, NULL, 0);
    return;
  }
  if (O.target == T_PAGE) { /* a tree grid opening a node: a mid's leaves with their child counts */
    char path[200];
    snprintf(path, sizeof path, "/tables/%s/rows?parent_id=%" PRId64 "&limit=100&children=true", O.table,
             O.mid_first + (int64_t)(rnd() % (uint64_t)O.mid_count));
    send_request(c, "GET", path, NULL, 0);
    return;
  }
  int64_t row;
  char val[32];
  if (O.mid_count > 0 && (int)(rnd() % 100) < O.mid_pct) {
    row = O.mid_first + (int64_t)(rnd() % (uint64_t)O.mid_count);
    uint64_t cents = 10000 + rnd() % 1000000; /* 100.00 .. 10,099.99 over 100 leaves */
    snprintf(val, sizeof val, "%" PRIu64 ".%02" PRIu64, cents / 100, cents % 100);
  } else {
    row = O.leaf_first + (int64_t)(rnd() % (uint64_t)O.leaf_count);
    uint64_t cents = 1 + rnd() % 100000; /* 0.01 .. 1,000.00 */
    snprintf(val, sizeof val, "%" PRIu64 ".%02" PRIu64, cents / 100, cents % 100);
  }
  char body[256];
  int n = snprintf(body, sizeof body, "{\"table\":\"%s\",\"row_id\":%" PRId64 ",\"column\":\"v\",\"value\":\"%s\"}",
                   O.table, row, val);
  send_request(c, "POST", O.target == T_ASYNC ? "/update_cell?async=true" : "/update_cell", body, (size_t)n);
}

static const char *find_str(const char *hay, size_t n, const char *needle) {
  return memmem(hay, n, needle, strlen(needle));
}

/* Open loop: scheduled times waiting for a free connection. */
static uint64_t *backlog;
static size_t bl_head, bl_tail, bl_cap;
static conn_t **idle_writers;
static int nidle;
static int writing_on;       /* writes may be sent */
static uint64_t t_start, t_meas_from, t_meas_to;
static int track_ids;
static xid_t max_xid;
static int have_max_xid;
static uint64_t t_first_send, t_last_resp;

static void writer_done(conn_t *c, uint64_t t) {
  done_total++;
  int st = c->status;
  if (st >= 0 && st < 600) status_count[st]++;
  int measured = c->t_sched >= t_meas_from && t <= t_meas_to;
  int ok = st >= 200 && st < 300;
  if (measured) {
    if (ok) {
      measured_ok++;
      samp_add(&lat, (int64_t)(t - c->t_sched));
    } else {
      measured_err++;
    }
  }
  if (ok) t_last_resp = t;
  if (ok && track_ids) {
    const char *b = c->body.len ? c->body.d : c->in.d + c->hdr_len;
    size_t bn = c->body.len ? c->body.len : c->in.len - c->hdr_len;
    const char *p = find_str(b, bn, "\"stream_id\":\"");
    if (p) {
      p += 13;
      const char *q = memchr(p, '"', (size_t)(b + bn - p));
      xid_t x;
      if (q && xid_parse(p, (size_t)(q - p), &x) == 0) {
        write_add(x, c->t_sched, t, measured);
        if (!have_max_xid || xid_cmp(x, max_xid) > 0) max_xid = x, have_max_xid = 1;
      }
    }
  }
}

/* ---- watchers ----------------------------------------------------------------------- */

static int nresolved;

static void poll_send(conn_t *c) {
  char path[160];
  if (!c->resolved)
    snprintf(path, sizeof path, "/get_updates?since=%%24&limit=1&wait_ms=0");
  else
    snprintf(path, sizeof path, "/get_updates?since=%s&limit=1000&wait_ms=30000", c->since);
  send_request(c, "GET", path, NULL, 0);
}

static void watcher_saw(conn_t *c, const char *s, size_t n, uint64_t t) {
  xid_t x;
  if (xid_parse(s, n, &x) != 0) return;
  if (c->nupd && xid_cmp(x, c->last) <= 0) c->order_errors++;
  c->last = x;
  c->nupd++;
  seen_add(x, t, c->idx);
}

static void poller_done(conn_t *c, uint64_t t) {
  const char *b = c->body.len ? c->body.d : c->in.d + c->hdr_len;
  size_t bn = c->body.len ? c->body.len : c->in.len - c->hdr_len;
  if (c->status != 200) {
    if (c->status >= 0 && c->status < 600) poll_status[c->status]++;
    poll_errors++;
    if (poll_errors <= 3)
      fprintf(stderr, "bench_load: a watcher got %d: %.200s\n", c->status, b);
    if (poll_errors > 100000) die("too many watcher errors");
    return;
  }
  const char *p = b, *end = b + bn;
  while ((p = find_str(p, (size_t)(end - p), "\"update_id\":\"")) != NULL) {
    p += 13;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q) break;
    watcher_saw(c, p, (size_t)(q - p), t);
    p = q;
  }
  /* "next" is the last key of the top-level object. */
  const char *nx = NULL;
  for (const char *r = b; (r = find_str(r, (size_t)(end - r), "\"next\":\"")) != NULL; r += 8) nx = r;
  if (nx) {
    nx += 8;
    const char *q = memchr(nx, '"', (size_t)(end - nx));
    if (q && (size_t)(q - nx) < sizeof c->since) {
      memcpy(c->since, nx, (size_t)(q - nx));
      c->since[q - nx] = 0;
      if (!c->resolved) {
        c->resolved = 1;
        nresolved++;
      }
    }
  }
}

/* SSE: events are separated by a blank line; take each "id:" line. What
 * was parsed is dropped once at the end (a read holding many events costs
 * one move of the rest, not one per event). */
static void sse_events(conn_t *c, uint64_t t) {
  size_t off = 0;
  for (;;) {
    char *e = memmem(c->body.d + off, c->body.len - off, "\n\n", 2);
    if (!e) break;
    const char *p = c->body.d + off, *end = e + 2;
    while (p < end) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl) break;
      if (nl - p > 3 && memcmp(p, "id:", 3) == 0) {
        const char *v = p + 3;
        while (v < nl && *v == ' ') v++;
        size_t vn = (size_t)(nl - v);
        if (vn && v[vn - 1] == '\r') vn--;
        watcher_saw(c, v, vn, t);
      }
      p = nl + 1;
    }
    off = (size_t)(end - c->body.d);
  }
  if (off) buf_consume(&c->body, off);
}

/* ---- response parsing -------------------------------------------------------------- */

/* Returns 1 when a complete response is in, 0 when more bytes are needed,
 * -1 on a malformed response. SSE responses never complete while open. */
static int parse(conn_t *c) {
  if (!c->have_hdr) {
    char *e = memmem(c->in.d, c->in.len, "\r\n\r\n", 4);
    if (!e) return c->in.len > 65536 ? -1 : 0;
    c->hdr_len = (size_t)(e - c->in.d) + 4;
    c->have_hdr = 1;
    if (c->in.len < 12 || memcmp(c->in.d, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(c->in.d + 9);
    for (char *l = memchr(c->in.d, '\n', c->hdr_len); l && l < e; l = memchr(l + 1, '\n', (size_t)(e - l))) {
      char *h = l + 1;
      if (strncasecmp(h, "content-length:", 15) == 0) c->clen = atol(h + 15);
      else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strncasecmp(h + 18, " chunked", 8) == 0) c->chunked = 1;
      else if (strncasecmp(h, "connection:", 11) == 0 && strncasecmp(h + 11, " close", 6) == 0) c->close_after = 1;
    }
    c->raw_pos = c->hdr_len;
  }
  if (!c->chunked) {
    if (c->clen < 0) return c->status == 204 || c->status == 304 ? 1 : 0; /* read to close */
    return c->in.len >= c->hdr_len + (size_t)c->clen ? 1 : 0;
  }
  for (;;) {
    if (c->chunk_crlf) {
      if (c->in.len - c->raw_pos < 2) return 0;
      c->raw_pos += 2;
      c->chunk_crlf = 0;
    }
    if (c->chunk_left < 0) {
      char *nl = memmem(c->in.d + c->raw_pos, c->in.len - c->raw_pos, "\r\n", 2);
      if (!nl) return 0;
      long sz = strtol(c->in.d + c->raw_pos, NULL, 16);
      c->raw_pos = (size_t)(nl - c->in.d) + 2;
      if (sz == 0) return 1; /* trailers ignored */
      c->chunk_left = sz;
    }
    size_t avail = c->in.len - c->raw_pos;
    if (avail == 0) break;
    size_t take = avail < (size_t)c->chunk_left ? avail : (size_t)c->chunk_left;
    buf_add(&c->body, c->in.d + c->raw_pos, take);
    c->raw_pos += take;
    c->chunk_left -= (long)take;
    if (c->chunk_left == 0) {
      c->chunk_left = -1;
      c->chunk_crlf = 1;
    }
  }
  /* Keep raw small for endless streams. */
  if (c->kind == K_SSE && c->raw_pos > 65536) {
    buf_consume(&c->in, c->raw_pos);
    c->hdr_len = 0;
    c->raw_pos = 0;
  }
  return 0;
}

static void conn_next(conn_t *c, uint64_t t);

/* A connection the server closed or reset. A request in flight on it counts
 * as an error (never silently retried). It is reopened after a pause, so a
 * server that refuses connections is not hammered in a tight loop. */
static int ndown;

static void conn_broken(conn_t *c, uint64_t t) {
  int was_busy = c->busy;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  c->busy = 0;
  reconnects++;
  if (was_busy) {
    io_errors++;
    if (c->kind == K_WRITER) {
      c->status = 0;
      writer_done(c, t);
    }
  }
  /* An idle writer is already in the idle list: reopen it quietly. */
  c->redo = was_busy || c->kind != K_WRITER;
  /* 20 ms, doubling per consecutive failure, at most 1 s. */
  uint64_t delay = 20000000ull << (c->fails < 6 ? c->fails : 6);
  if (delay > 1000000000ull) delay = 1000000000ull;
  c->fails++;
  c->retry_at = t + delay;
  ndown++;
}

static void conn_next(conn_t *c, uint64_t t);

static void reopen_due(uint64_t t) {
  if (!ndown) return;
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    if (c->fd >= 0 || t < c->retry_at) continue;
    ndown--;
    conn_open(c);
    if (c->redo) conn_next(c, t);
  }
}

static void on_readable(conn_t *c) {
  for (;;) {
    buf_reserve(&c->in, 65536);
    ssize_t r = read(c->fd, c->in.d + c->in.len, c->in.cap - c->in.len - 1);
    uint64_t t = now_ns();
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      conn_broken(c, t);
      return;
    }
    if (r < 0) return;
    c->in.len += (size_t)r;
    c->in.d[c->in.len] = 0;
    bytes_in += (uint64_t)r;
    int done = parse(c);
    if (c->kind == K_SSE && c->have_hdr) {
      if (c->status == 200 && !c->resolved) {
        c->resolved = 1;
        nresolved++;
      }
      sse_events(c, t);
    }
    if (done < 0) {
      conn_broken(c, t);
      return;
    }
    if (done == 1) {
      c->busy = 0;
      c->fails = 0;
      if (c->kind == K_WRITER) writer_done(c, t);
      else if (c->kind == K_POLLER) poller_done(c, t);
      else die("GET /events answered %d and closed", c->status);
      if (c->close_after) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        reconnects++;
        conn_open(c);
      }
      conn_next(c, t);
      return;
    }
  }
}

/* What a connection does after an answer (or a reconnect). */
static void conn_next(conn_t *c, uint64_t t) {
  (void)t;
  if (c->busy) return;
  if (c->kind == K_POLLER) {
    poll_send(c);
    return;
  }
  if (c->kind == K_SSE) {
    send_request(c, "GET", "/events", NULL, 0);
    return;
  }
  if (!writing_on) {
    idle_writers[nidle++] = c;
    return;
  }
  if (O.rate > 0) {
    if (bl_head != bl_tail) {
      send_write(c, backlog[bl_head++]);
    } else {
      idle_writers[nidle++] = c;
    }
    return;
  }
  if (O.count > 0 ? (long)sent_total < O.count : now_ns() < t_meas_to) {
    send_write(c, 0);
  } else {
    idle_writers[nidle++] = c;
  }
}

static void run_loop(uint64_t until, int (*stop)(void), uint64_t (*next_due)(void)) {
  struct epoll_event evs[512];
  for (;;) {
    uint64_t t = now_ns();
    reopen_due(t);
    if (t >= until || (stop && stop())) return;
    uint64_t wake = until;
    if (ndown && wake > t + 5000000ull) wake = t + 5000000ull;
    if (next_due) {
      uint64_t d = next_due();
      if (d < wake) wake = d;
    }
    t = now_ns();
    struct timespec ts = {0, 0};
    if (wake > t) {
      uint64_t dt = wake - t;
      if (dt > 100000000ull) dt = 100000000ull;
      ts.tv_sec = (time_t)(dt / 1000000000ull);
      ts.tv_nsec = (long)(dt % 1000000000ull);
    }
    int n = epoll_pwait2(ep, evs, 512, &ts, NULL);
    if (n < 0 && errno != EINTR) die("epoll_pwait2: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      if (evs[i].events & EPOLLOUT) conn_flush(c);
      if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
    }
  }
}

/* Open-loop schedule. */
static uint64_t sched_k, sched_total;
static double period_ns;

static uint64_t open_dispatch(void) {
  uint64_t t = now_ns();
  while (sched_k < sched_total) {
    uint64_t due = t_start + (uint64_t)((double)sched_k * period_ns);
    if (due > t) return due;
    sched_k++;
    if (nidle > 0) {
      send_write(idle_writers[--nidle], due);
    } else {
      backlog[bl_tail++] = due;
    }
  }
  return UINT64_MAX;
}

static int all_resolved(void) { return nresolved >= O.pollers + O.sse; }
static int writers_idle(void) {
  for (int i = 0; i < nconns; i++)
    if (conns[i].kind == K_WRITER && conns[i].busy) return 0;
  return bl_head == bl_tail;
}
static int schedule_over(void) { return sched_k >= sched_total && writers_idle(); }
static int count_over(void) { return (long)sent_total >= O.count && writers_idle(); }
static int watchers_caught_up(void) {
  if (!have_max_xid) return 1;
  for (int i = 0; i < nconns; i++)
    if (conns[i].kind != K_WRITER && (conns[i].nupd == 0 || xid_cmp(conns[i].last, max_xid) < 0)) return 0;
  return 1;
}

/* ---- async: wait until every outcome is published ------------------------------- */

static dg_redis_t *redis;

static long long xlen(void) {
  const char *argv[] = {"XLEN", O.res_stream};
  redisReply *rep;
  if (dg_redis_command(redis, 2, argv, NULL, &rep) != 0) die("XLEN: %s", dg_redis_last_error(redis));
  long long n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  freeReplyObject(rep);
  return n;
}

static int top_reached(void) {
  const char *argv[] = {"XREVRANGE", O.res_stream, "+", "-", "COUNT", "1"};
  redisReply *rep;
  if (dg_redis_command(redis, 6, argv, NULL, &rep) != 0) die("XREVRANGE: %s", dg_redis_last_error(redis));
  int ok = 0;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
      rep->element[0]->elements >= 1) {
    redisReply *id = rep->element[0]->element[0];
    xid_t x;
    if (id->type == REDIS_REPLY_STRING && xid_parse(id->str, id->len, &x) == 0) ok = xid_cmp(x, max_xid) >= 0;
  }
  freeReplyObject(rep);
  return ok;
}

/* ---- join watchers with writes ---------------------------------------------------- */

/* visible_after_response of the long polls and of the SSE clients apart */
static samples_t vis_poll, vis_sse;

static void report_watchers(FILE *f, samples_t *vis, samples_t *e2e) {
  /* Per watcher: how many of the measured writes it saw. */
  size_t nw = 0;
  for (size_t i = 0; i < nwrites; i++) nw += writes[i].measured;
  uint64_t *per = calloc((size_t)nconns, sizeof *per);
  uint64_t matched = 0, foreign = 0;
  for (size_t i = 0; i < nseen; i++) {
    int64_t w = wmap_get(seen[i].id);
    if (w < 0) {
      foreign++;
      continue;
    }
    if (!writes[w].measured) continue;
    matched++;
    per[seen[i].watcher]++;
    samp_add(vis, (int64_t)seen[i].t - (int64_t)writes[w].t_resp);
    samp_add(conns[seen[i].watcher].kind == K_SSE ? &vis_sse : &vis_poll,
             (int64_t)seen[i].t - (int64_t)writes[w].t_resp);
    samp_add(e2e, (int64_t)(seen[i].t - writes[w].t_sched));
  }
  int nwatch = 0, complete = 0;
  uint64_t min_per = UINT64_MAX, order_errors = 0;
  for (int i = 0; i < nconns; i++) {
    if (conns[i].kind == K_WRITER) continue;
    nwatch++;
    if (per[i] >= nw) complete++;
    if (per[i] < min_per) min_per = per[i];
    order_errors += conns[i].order_errors;
  }
  double expected = (double)nw * nwatch;
  fprintf(f,
          ",\"watchers\":%d,\"watched_writes\":%zu,\"deliveries\":%" PRIu64 ",\"expected_deliveries\":%.0f,"
          "\"delivered_pct\":%.4f,\"watchers_complete\":%d,\"min_per_watcher\":%" PRIu64
          ",\"foreign_updates\":%" PRIu64 ",\"order_errors\":%" PRIu64 ",\"watchers_with_cursor\":%d",
          nwatch, nw, matched, expected, expected > 0 ? 100.0 * (double)matched / expected : 100.0, complete,
          min_per == UINT64_MAX ? 0 : min_per, foreign, order_errors, nresolved);
  free(per);
}

/* ---- main ------------------------------------------------------------------------------ */

/* VmRSS of a process, in KiB, or -1. */
static long rss_kb(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
  fclose(f);
  return kb;
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_load --port N --key KEY [--target health|update|async|row|page] [--conns N]\n"
          "                  [--rate R (0=closed loop)] [--duration S] [--warmup S] [--count N]\n"
          "                  [--table T] [--leaf FIRST:COUNT] [--mid FIRST:COUNT] [--mid-pct P]\n"
          "                  [--pollers N] [--sse N] [--redis URL --res-stream KEY] [--drain S]\n"
          "                  [--seed N] [--label S] [--rss-pid PID] [--idle N]\n");
  exit(2);
}

static void range_arg(const char *s, int64_t *first, int64_t *count) {
  if (sscanf(s, "%" SCNd64 ":%" SCNd64, first, count) != 2 || *count < 0) usage();
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (ARG("--port")) O.port = atoi(v);
    else if (ARG("--key")) O.key = v;
    else if (ARG("--target"))
      O.target = strcmp(v, "health") == 0 ? T_HEALTH : strcmp(v, "async") == 0 ? T_ASYNC : strcmp(v, "row") == 0 ? T_ROW : strcmp(v, "page") == 0 ? T_PAGE : T_UPDATE;
    else if (ARG("--conns")) O.conns = atoi(v);
    else if (ARG("--rate")) O.rate = atof(v);
    else if (ARG("--duration")) O.duration = atof(v);
    else if (ARG("--warmup")) O.warmup = atof(v);
    else if (ARG("--count")) O.count = atol(v);
    else if (ARG("--table")) O.table = v;
    else if (ARG("--leaf")) range_arg(v, &O.leaf_first, &O.leaf_count);
    else if (ARG("--mid")) range_arg(v, &O.mid_first, &O.mid_count);
    else if (ARG("--mid-pct")) O.mid_pct = atoi(v);
    else if (ARG("--pollers")) O.pollers = atoi(v);
    else if (ARG("--sse")) O.sse = atoi(v);
    else if (ARG("--redis")) O.redis_url = v;
    else if (ARG("--res-stream")) O.res_stream = v;
    else if (ARG("--drain")) O.drain = atof(v);
    else if (ARG("--seed")) O.seed = strtoull(v, NULL, 10);
    else if (ARG("--label")) O.label = v;
    else if (ARG("--rss-pid")) O.rss_pid = atoi(v);
    else if (ARG("--idle")) O.idle = atoi(v);
    else usage();
#undef ARG
  }
  if (O.port <= 0 || O.conns < 0 || (O.target != T_HEALTH && O.leaf_count <= 0 && O.mid_count <= 0) ||
      (O.target == T_PAGE && O.mid_count <= 0)) usage();
  if (O.leaf_count <= 0) O.mid_pct = 100;
  rng ^= O.seed * 0x2545F4914F6CDD1Dull;
  if (!rng) rng = 1;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  snprintf(auth_hdr, sizeof auth_hdr, "Authorization: Bearer %s\r\n", O.key);
  track_ids = O.pollers > 0 || O.sse > 0 || O.target == T_ASYNC;

  long long xlen_before = -1;
  if (O.redis_url) {
    dg_redis_url_t url;
    char err[256];
    if (!O.res_stream) usage();
    if (dg_redis_url_parse(O.redis_url, &url, err, sizeof err) != 0) die("redis url: %s", err);
    if (dg_redis_connect(&url, NULL, &redis, err, sizeof err) != 0) die("redis: %s", err);
    dg_redis_url_dispose(&url);
    xlen_before = xlen();
  }

  long rss_before = O.rss_pid > 0 ? rss_kb(O.rss_pid) : -1, rss_watching = -1;
  /* 0. The idle connections first: the load is measured while they hang. */
  uint64_t t_idle = now_ns();
  int idle_opened = O.idle > 0 ? idle_open(O.idle) : 0;
  double idle_open_s = (double)(now_ns() - t_idle) / 1e9;
  ep = epoll_create1(0);
  nconns = O.conns + O.pollers + O.sse;
  conns = calloc((size_t)nconns, sizeof *conns);
  idle_writers = xmalloc(((size_t)O.conns + 1) * sizeof *idle_writers);
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    c->idx = (uint32_t)i;
    c->kind = i < O.conns ? K_WRITER : i < O.conns + O.pollers ? K_POLLER : K_SSE;
    conn_open(c);
  }

  /* 1. Watchers get their cursors before any write. */
  uint64_t t = now_ns();
  for (int i = 0; i < nconns; i++)
    if (conns[i].kind != K_WRITER) conn_next(&conns[i], t);
  if (O.pollers + O.sse > 0) {
    run_loop(now_ns() + 20ull * 1000000000ull, all_resolved, NULL);
    if (!all_resolved())
      fprintf(stderr, "bench_load: only %d of %d watchers got a cursor within 20 s; writing anyway\n", nresolved,
              O.pollers + O.sse);
    /* Let every long poll reach its blocking read before the first write. */
    run_loop(now_ns() + 300000000ull, NULL, NULL);
    if (O.rss_pid > 0) rss_watching = rss_kb(O.rss_pid); /* every watcher connected and idle */
  }

  /* 2. Writes. */
  for (int i = 0; i < nconns; i++)
    if (conns[i].kind == K_WRITER) idle_writers[nidle++] = &conns[i];
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  t_start = now_ns();
  t_first_send = t_start;
  t_meas_from = t_start + (uint64_t)(O.warmup * 1e9);
  uint64_t t_end_sched;
  writing_on = 1;
  if (O.rate > 0) {
    period_ns = 1e9 / O.rate;
    sched_total = (uint64_t)(O.rate * (O.warmup + O.duration));
    backlog = xmalloc((sched_total + 1) * sizeof *backlog);
    bl_cap = sched_total + 1;
    t_meas_to = UINT64_MAX; /* every scheduled request counts, however late */
    t_end_sched = t_start + (uint64_t)((O.warmup + O.duration) * 1e9);
    run_loop(t_end_sched + (uint64_t)(O.drain * 1e9), schedule_over, open_dispatch);
  } else if (O.count > 0) {
    t_meas_from = t_start;
    t_meas_to = UINT64_MAX;
    while (nidle > 0 && (long)sent_total < O.count) send_write(idle_writers[--nidle], 0);
    run_loop(t_start + (uint64_t)((O.duration + O.drain) * 1e9), count_over, NULL);
    t_end_sched = now_ns();
  } else {
    t_meas_to = t_meas_from + (uint64_t)(O.duration * 1e9);
    while (nidle > 0) send_write(idle_writers[--nidle], 0);
    run_loop(t_meas_to, NULL, NULL);
    t_end_sched = t_meas_to;
    run_loop(t_meas_to + (uint64_t)(O.drain * 1e9), writers_idle, NULL);
  }
  uint64_t t_writes_done = now_ns();
  writing_on = 0;
  getrusage(RUSAGE_SELF, &ru1);
  int in_flight = 0;
  for (int i = 0; i < nconns; i++)
    if (conns[i].kind == K_WRITER && conns[i].busy) in_flight++;
  uint64_t unsent = sched_total > sched_k ? sched_total - sched_k : 0;
  unsent += bl_tail - bl_head;

  /* 3. Watchers catch up. */
  uint64_t t_caught = 0;
  if (O.pollers + O.sse > 0) {
    run_loop(now_ns() + (uint64_t)(O.drain * 1e9), watchers_caught_up, NULL);
    t_caught = now_ns();
  }

  /* 4. Async: until every outcome is in the response stream. */
  uint64_t t_applied = 0;
  long long xlen_after = -1;
  int applied_all = 0;
  if (redis && have_max_xid) {
    uint64_t deadline = now_ns() + (uint64_t)(O.drain * 1e9) + 120ull * 1000000000ull;
    while (now_ns() < deadline) {
      if (top_reached()) {
        applied_all = 1;
        break;
      }
      usleep(1000);
    }
    t_applied = now_ns();
    xlen_after = xlen();
  }

  /* ---- report ---- */
  FILE *f = stdout;
  double meas_s;
  if (O.rate > 0) meas_s = O.duration;
  else if (O.count > 0) meas_s = (double)(t_last_resp - t_start) / 1e9;
  else meas_s = O.duration;
  const char *tn = O.target == T_HEALTH ? "health" : O.target == T_ASYNC ? "async" : O.target == T_ROW ? "row" : O.target == T_PAGE ? "page" : "update";
  fprintf(f, "{\"label\":\"%s\",\"target\":\"%s\",\"mode\":\"%s\",\"conns\":%d,\"rate\":%.1f,"
             "\"duration_s\":%.3f,\"warmup_s\":%.3f",
          O.label, tn, O.rate > 0 ? "open" : "closed", O.conns, O.rate, meas_s, O.warmup);
  fprintf(f, ",\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"measured_ok\":%" PRIu64 ",\"measured_err\":%" PRIu64
             ",\"throughput_rps\":%.1f,\"in_flight_at_end\":%d,\"unsent\":%" PRIu64 ",\"io_errors\":%" PRIu64
             ",\"reconnects\":%" PRIu64 ",\"bytes_in\":%" PRIu64,
          sent_total, done_total, measured_ok, measured_err,
          O.count > 0 ? (double)done_total / meas_s
          : O.rate > 0 ? (double)measured_ok / ((double)(t_writes_done - t_meas_from) / 1e9)
                       : (double)measured_ok / meas_s,
          in_flight, unsent, io_errors, reconnects, bytes_in);
  fprintf(f, ",\"status\":{");
  int first = 1;
  for (int s = 0; s < 600; s++)
    if (status_count[s]) {
      fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", s, status_count[s]);
      first = 0;
    }
  fprintf(f, "}");
  samp_json(f, "latency", &lat);
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  fprintf(f, ",\"loadgen_cpu_s\":%.3f,\"write_phase_s\":%.3f", cpu, (double)(t_writes_done - t_start) / 1e9);
  if (O.idle > 0)
    fprintf(f, ",\"idle\":{\"asked\":%d,\"opened\":%d,\"open_s\":%.2f,\"closed_by_server_at_end\":%d}", O.idle,
            idle_opened, idle_open_s, idle_closed());
  (void)t_end_sched;
  if (O.pollers + O.sse > 0) {
    samples_t vis = {0}, e2e = {0};
    report_watchers(f, &vis, &e2e);
    samp_json(f, "visible_after_response", &vis);
    samp_json(f, "visible_after_send", &e2e);
    if (O.pollers > 0 && O.sse > 0) {
      samp_json(f, "visible_after_response_poll", &vis_poll);
      samp_json(f, "visible_after_response_sse", &vis_sse);
    }
    if (rss_before >= 0 && rss_watching >= 0)
      fprintf(f, ",\"server_rss_kb_before_watchers\":%ld,\"server_rss_kb_watchers_idle\":%ld", rss_before,
              rss_watching);
    fprintf(f, ",\"catch_up_s\":%.3f,\"watcher_errors\":%" PRIu64 ",\"watcher_status\":{", (double)(t_caught - t_writes_done) / 1e9,
            poll_errors);
    int pf = 1;
    for (int s = 0; s < 600; s++)
      if (poll_status[s]) {
        fprintf(f, "%s\"%d\":%" PRIu64, pf ? "" : ",", s, poll_status[s]);
        pf = 0;
      }
    fprintf(f, "}");
  }
  if (redis && have_max_xid) {
    double applied_s = (double)(t_applied - t_first_send) / 1e9;
    double submit_s = (double)(t_last_resp - t_first_send) / 1e9;
    fprintf(f, ",\"accepted\":%zu,\"submit_s\":%.3f,\"submit_rps\":%.1f,\"applied_all\":%s,\"applied_s\":%.3f,"
               "\"applied_rps\":%.1f,\"xlen_delta\":%lld",
            nwrites, submit_s, (double)nwrites / submit_s, applied_all ? "true" : "false", applied_s,
            (double)nwrites / applied_s, xlen_after - xlen_before);
  }
  fprintf(f, "}\n");
  fflush(f);
  for (int i = 0; i < nconns; i++)
    if (conns[i].fd >= 0) close(conns[i].fd);
  if (redis) dg_redis_destroy(redis);
  return 0;
}
