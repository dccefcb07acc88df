/*
 * test_redis.c -- the Redis layer: URL parsing, stream reply helpers, and the
 * connection against real redis-server processes this test starts itself.
 *
 * Servers: one TCP server (loopback, free port, requirepass "secret", plus an
 * ACL user "alice" whose password needs percent-encoding) and one unix-socket
 * server, both in a temp dir, started in the group setup. They run with
 * PR_SET_PDEATHSIG so they die with this process even if it is SIGKILLed
 * (a ctest timeout); the group teardown, an atexit handler and a SIGALRM
 * watchdog kill them by PID otherwise. Only PIDs this process forked are ever
 * signalled. The reconnect test kills the TCP server and starts it again on
 * the same port, so it runs last.
 *
 * TLS: the group setup also makes a throw-away PKI with the openssl command
 * (a CA, a server certificate for localhost and 127.0.0.1, a client
 * certificate, and a second CA with its own client certificate that nobody
 * trusts) and starts a TLS-only server (--port 0 --tls-port N, password,
 * client certificates optional). The client-certificate test starts a second
 * one that requires them. A small in-process TLS server (mini_*) exercises
 * the transport itself: SNI, the idle probe, deadlines, SIGPIPE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/ssl.h>

#include "dg/redis.h"
#include "stream/redis_transport.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define PW "secret"
#define ALICE_PW "p@ss:w/rd %x"
#define ALICE_PW_ENC "p%40ss%3Aw%2Frd%20%25x"
#define WATCHDOG_S 240 /* below ctest's TIMEOUT of 300 s */

/* ======================================================================= */
/* Harness: servers we own                                                   */
/* ======================================================================= */

typedef struct srv_s {
  volatile pid_t pid; /* 0 when not running; read by the signal handler */
  int tls;            /* 0 plain; 1 TLS-only, client certs optional; 2 required */
  int port;           /* TCP port (the TLS port when tls), 0 for the unix server */
  char sock[200];     /* unix socket path, "" for the TCP server */
  char log[300];      /* server stdout/stderr */
} srv_t;

static char g_dir[128];
static srv_t g_tcp, g_unix, g_tls, g_tls2;

/* The throw-away PKI, files in g_dir/pki (see make_pki). */
static char g_ca[200];        /* the CA the servers' certificates chain to */
static char g_ca_other[200];  /* an unrelated CA */
static char g_srv_crt[200];   /* server: DNS:localhost, IP:127.0.0.1 */
static char g_srv_key[200];
static char g_cli_crt[200];   /* client, signed by g_ca */
static char g_cli_key[200];
static char g_rogue_crt[200]; /* client, signed by g_ca_other */
static char g_rogue_key[200];
static char g_enc_key[200];   /* g_cli_key encrypted with a passphrase */
static char g_not_pem[200];   /* a file that is no PEM at all */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
    perror("free_port");
    exit(1);
  }
  close(fd);
  return ntohs(sa.sin_port);
}

static void srv_kill(srv_t *s) {
  pid_t pid = s->pid;
  if (pid <= 0) return;
  kill(pid, SIGKILL); /* works on a SIGSTOPped server too */
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  s->pid = 0;
}

static void dump_log(const srv_t *s) {
  FILE *f = fopen(s->log, "r");
  if (f == NULL) return;
  char line[512];
  fprintf(stderr, "---- %s ----\n", s->log);
  while (fgets(line, sizeof line, f)) fputs(line, stderr);
  fclose(f);
}

/* Waits until the server accepts connections; 0 or -1 (it died / too slow). */
static int srv_wait(srv_t *s) {
  int64_t deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
      s->pid = 0;
      return -1;
    }
    int fd, ok;
    if (s->sock[0]) {
      struct sockaddr_un sa = {.sun_family = AF_UNIX};
      memcpy(sa.sun_path, s->sock, strnlen(s->sock, sizeof sa.sun_path - 1));
      fd = socket(AF_UNIX, SOCK_STREAM, 0);
      ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    } else {
      struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      fd = socket(AF_INET, SOCK_STREAM, 0);
      ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    }
    close(fd);
    if (ok) return 0;
    sleep_ms(10);
  }
  return -1;
}

static int srv_start(srv_t *s) {
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  const char *tcp_argv[] = {REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--requirepass", PW, "--user", "alice", "on",
                            ">" ALICE_PW, "~*", "&*", "+@all", "--daemonize", "no", "--dir", g_dir,
                            NULL};
  const char *unix_argv[] = {REDIS_SERVER, "--port", "0", "--unixsocket", s->sock,
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--dir", g_dir, NULL};
  const char *tls_argv[] = {REDIS_SERVER, "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
                            "--tls-cert-file", g_srv_crt, "--tls-key-file", g_srv_key,
                            "--tls-ca-cert-file", g_ca, "--tls-auth-clients",
                            s->tls == 2 ? "yes" : "optional", "--save", "", "--appendonly", "no",
                            "--requirepass", PW, "--user", "alice", "on", ">" ALICE_PW, "~*", "&*",
                            "+@all", "--daemonize", "no", "--dir", g_dir, NULL};
  const char **argv = s->tls ? tls_argv : s->sock[0] ? unix_argv : tcp_argv;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* Die with the test process, whatever kills it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(REDIS_SERVER, (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  if (srv_wait(s) != 0) {
    dump_log(s);
    srv_kill(s);
    return -1;
  }
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void cleanup_all(void) {
  srv_kill(&g_tcp);
  srv_kill(&g_unix);
  srv_kill(&g_tls);
  srv_kill(&g_tls2);
  if (g_dir[0]) {
    /* Only our own temp dir: logs, the unix socket, the PKI. */
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = '\0';
  }
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_redis: watchdog fired, killing servers\n";
  if (g_tcp.pid > 0) kill(g_tcp.pid, SIGKILL);
  if (g_unix.pid > 0) kill(g_unix.pid, SIGKILL);
  if (g_tls.pid > 0) kill(g_tls.pid, SIGKILL);
  if (g_tls2.pid > 0) kill(g_tls2.pid, SIGKILL);
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

/* Runs argv (openssl) with its output in g_dir/openssl.log; 0 on exit status 0. */
static int run_quiet(const char *const *argv) {
  char log[300];
  snprintf(log, sizeof log, "%s/openssl.log", g_dir);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (nul >= 0) dup2(nul, 0);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  fprintf(stderr, "failed: %s %s %s ... (see %s)\n", argv[0], argv[1], argv[2], log);
  return -1;
}

/*
 * The PKI for the TLS tests, made fresh for every run so no key is ever
 * checked in: P-256 keys (fast to make), certificates valid for two days.
 */
static int make_pki(void) {
  char pki[160], cnf[200], ca_key[200], other_key[200], csr[200];
  snprintf(pki, sizeof pki, "%s/pki", g_dir);
  if (mkdir(pki, 0700) != 0) return -1;
#define PKI(var, name) snprintf(var, sizeof var, "%s/" name, pki)
  PKI(cnf, "openssl.cnf");
  PKI(ca_key, "ca.key");
  PKI(other_key, "other-ca.key");
  PKI(csr, "req.csr");
  PKI(g_ca, "ca.crt");
  PKI(g_ca_other, "other-ca.crt");
  PKI(g_srv_crt, "server.crt");
  PKI(g_srv_key, "server.key");
  PKI(g_cli_crt, "client.crt");
  PKI(g_cli_key, "client.key");
  PKI(g_rogue_crt, "rogue.crt");
  PKI(g_rogue_key, "rogue.key");
  PKI(g_enc_key, "client-enc.key");
  PKI(g_not_pem, "not-pem.crt");
#undef PKI
  FILE *f = fopen(cnf, "w");
  if (f == NULL) return -1;
  fputs("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n"
        "[client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = clientAuth\n", f);
  fclose(f);
  f = fopen(g_not_pem, "w");
  if (f == NULL) return -1;
  fputs("this is not a certificate\n", f);
  fclose(f);

  static const char *const ec[] = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                   "-nodes"};
  const struct {
    const char *crt, *key, *cn, *ext, *signer_crt, *signer_key;
  } certs[] = {
      {g_ca, ca_key, "/CN=dg-test-ca", "ca", NULL, NULL},
      {g_ca_other, other_key, "/CN=dg-other-ca", "ca", NULL, NULL},
      {g_srv_crt, g_srv_key, "/CN=localhost", "server", g_ca, ca_key},
      {g_cli_crt, g_cli_key, "/CN=dg-client", "client", g_ca, ca_key},
      {g_rogue_crt, g_rogue_key, "/CN=dg-rogue", "client", g_ca_other, other_key},
  };
  for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
    if (certs[i].signer_crt == NULL) { /* self-signed CA */
      const char *argv[] = {"openssl", "req", "-x509", "-config", cnf, "-extensions",
                            certs[i].ext, ec[0], ec[1], ec[2], ec[3], ec[4], "-keyout",
                            certs[i].key, "-out", certs[i].crt, "-days", "2", "-subj",
                            certs[i].cn, NULL};
      if (run_quiet(argv) != 0) return -1;
      continue;
    }
    const char *req[] = {"openssl", "req", "-new", "-config", cnf, ec[0], ec[1], ec[2], ec[3],
                         ec[4], "-keyout", certs[i].key, "-out", csr, "-subj", certs[i].cn, NULL};
    char serial[8];
    snprintf(serial, sizeof serial, "%zu", i + 1);
    const char *sign[] = {"openssl", "x509", "-req", "-in", csr, "-CA", certs[i].signer_crt,
                          "-CAkey", certs[i].signer_key, "-set_serial", serial, "-days", "2",
                          "-extfile", cnf, "-extensions", certs[i].ext, "-out", certs[i].crt,
                          NULL};
    if (run_quiet(req) != 0 || run_quiet(sign) != 0) return -1;
  }
  const char *enc[] = {"openssl", "pkey", "-in", g_cli_key, "-aes256", "-passout", "pass:dg-pass",
                       "-out", g_enc_key, NULL};
  return run_quiet(enc);
}

static int group_setup(void **state) {
  (void)state;
  if (access(REDIS_SERVER, X_OK) != 0) {
    fprintf(stderr, "%s not found\n", REDIS_SERVER);
    return -1;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/dg-test-redis-XXXXXX");
  if (mkdtemp(g_dir) == NULL) return -1;
  atexit(cleanup_all);
  signal(SIGALRM, on_alarm);
  alarm(WATCHDOG_S);
  g_tcp.port = free_port();
  snprintf(g_tcp.log, sizeof g_tcp.log, "%s/tcp.log", g_dir);
  snprintf(g_unix.sock, sizeof g_unix.sock, "%s/redis.sock", g_dir);
  snprintf(g_unix.log, sizeof g_unix.log, "%s/unix.log", g_dir);
  g_tls.tls = 1;
  g_tls.port = free_port();
  snprintf(g_tls.log, sizeof g_tls.log, "%s/tls.log", g_dir);
  if (make_pki() != 0 || srv_start(&g_tcp) != 0 || srv_start(&g_unix) != 0 ||
      srv_start(&g_tls) != 0) {
    cleanup_all();
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  cleanup_all();
  return 0;
}

/* ---- client helpers ------------------------------------------------------ */

static void url_tcp(char *buf, size_t cap, const char *userinfo, int db) {
  snprintf(buf, cap, "redis://%s127.0.0.1:%d/%d", userinfo, g_tcp.port, db);
}

/* Connects to the TCP server as the default user, asserting success. */
static dg_redis_t *connect_ok(const char *url_s, const dg_redis_opts_t *opts) {
  dg_redis_url_t url;
  char err[256] = "";
  int rc = dg_redis_url_parse(url_s, &url, err, sizeof err);
  if (rc != 0) fail_msg("parse %s: %s", url_s, err);
  dg_redis_t *r = NULL;
  rc = dg_redis_connect(&url, opts, &r, err, sizeof err);
  dg_redis_url_dispose(&url);
  if (rc != 0) fail_msg("connect: %s (%s)", err, dg_strerror(rc));
  return r;
}

static dg_redis_t *connect_default(void) {
  char u[128];
  url_tcp(u, sizeof u, ":" PW "@", 0);
  return connect_ok(u, NULL);
}

/* Runs a command of NUL-terminated args and returns the reply (asserting 0). */
static redisReply *cmd(dg_redis_t *r, int argc, const char **argv) {
  redisReply *rep = NULL;
  int rc = dg_redis_command(r, argc, argv, NULL, &rep);
  if (rc != 0) fail_msg("%s: %s (%s)", argv[0], dg_redis_last_error(r), dg_strerror(rc));
  return rep;
}

#define CMD(r, ...)                                                                  \
  cmd((r), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),      \
      (const char *[]){__VA_ARGS__})

static void expect_status(redisReply *rep, const char *want) {
  assert_non_null(rep);
  if (rep->type != REDIS_REPLY_STATUS)
    fail_msg("type %d: %.*s", rep->type, (int)rep->len, rep->str);
  assert_string_equal(rep->str, want);
  freeReplyObject(rep);
}

/* ======================================================================= */
/* URL parsing                                                               */
/* ======================================================================= */

static void test_url_good(void **state) {
  (void)state;
  dg_redis_url_t u;
  char err[200];

  assert_int_equal(dg_redis_url_parse("redis://localhost", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "localhost");
  assert_int_equal(u.port, 6379);
  assert_int_equal(u.db, 0);
  assert_null(u.user);
  assert_null(u.password);
  assert_int_equal(u.tls, 0);
  assert_int_equal(u.is_unix, 0);
  dg_redis_url_dispose(&u);
  assert_null(u.host);

  assert_int_equal(dg_redis_url_parse("REDIS://10.0.0.1:6380/15", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "10.0.0.1");
  assert_int_equal(u.port, 6380);
  assert_int_equal(u.db, 15);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://host/", &u, err, sizeof err), 0);
  assert_int_equal(u.db, 0);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://:pw@h:1/0", &u, err, sizeof err), 0);
  assert_null(u.user);
  assert_string_equal(u.password, "pw");
  assert_int_equal(u.port, 1);
  dg_redis_url_dispose(&u);

  /* Every delimiter percent-encoded in the password, plus a raw '%'-free mix. */
  assert_int_equal(dg_redis_url_parse("redis://al%69ce:" ALICE_PW_ENC
                                      "%23%3F%2f@h:65535/2147483647",
                                      &u, err, sizeof err),
                   0);
  assert_string_equal(u.user, "alice");
  assert_string_equal(u.password, ALICE_PW "#?/");
  assert_int_equal(u.port, 65535);
  assert_int_equal(u.db, 2147483647);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://u:a:b@h", &u, err, sizeof err), 0);
  assert_string_equal(u.user, "u");
  assert_string_equal(u.password, "a:b");
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://u:p!$&'()*+,;=~@h", &u, err, sizeof err), 0);
  assert_string_equal(u.password, "p!$&'()*+,;=~");
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("rediss://[::1]:6390/3", &u, err, sizeof err), 0);
  assert_int_equal(u.tls, 1);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 6390);
  assert_int_equal(u.db, 3);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://[2001:db8::7]", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "2001:db8::7");
  assert_int_equal(u.port, 6379);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("unix:///run/redis/redis.sock", &u, err, sizeof err), 0);
  assert_int_equal(u.is_unix, 1);
  assert_null(u.host);
  assert_string_equal(u.path, "/run/redis/redis.sock");
  assert_int_equal(u.db, 0);
  dg_redis_url_dispose(&u);

  assert_int_equal(
      dg_redis_url_parse("unix://:pw@/tmp/my%20dir/r.sock?db=4", &u, err, sizeof err), 0);
  assert_string_equal(u.path, "/tmp/my dir/r.sock");
  assert_string_equal(u.password, "pw");
  assert_int_equal(u.db, 4);
  dg_redis_url_dispose(&u);

  /* Exactly the cap is fine. */
  char *big = malloc(DG_REDIS_URL_MAX + 2);
  strcpy(big, "redis://:");
  size_t n = strlen(big);
  memset(big + n, 'p', DG_REDIS_URL_MAX - n - 2);
  strcpy(big + DG_REDIS_URL_MAX - 2, "@h");
  assert_int_equal(strlen(big), DG_REDIS_URL_MAX);
  assert_int_equal(dg_redis_url_parse(big, &u, err, sizeof err), 0);
  assert_int_equal(strlen(u.password), DG_REDIS_URL_MAX - 11);
  dg_redis_url_dispose(&u);
  /* One byte over is not. */
  memset(big + n, 'p', DG_REDIS_URL_MAX - n - 1);
  strcpy(big + DG_REDIS_URL_MAX - 1, "@h");
  assert_int_equal(dg_redis_url_parse(big, &u, err, sizeof err), DG_ETOOBIG);
  free(big);
}

static void test_url_bad(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "localhost:6379",
      "http://h",
      "redis:/h",
      "redis://",
      "redis://:6379",
      "redis://h:",
      "redis://h:0",
      "redis://h:65536",
      "redis://h:99999999999999999999999",
      "redis://h:-1",
      "redis://h:+80",
      "redis://h:80x",
      "redis://h:0x50",
      "redis://h/x",
      "redis://h/-1",
      "redis://h/01",
      "redis://h/2147483648",
      "redis://h/99999999999999999999999999",
      "redis://h/1/2",
      "redis://h/1?x=1",
      "redis://h?db=1",
      "redis://h#frag",
      "redis://h/ 1",
      "redis://h o",
      "redis://h\tx",
      "redis://h\x80",
      "redis://ho%73t",
      "redis://[::1",
      "redis://[::zz]",
      "redis://[]",
      "redis://[fe80::1%25eth0]",
      "redis://[::1]x",
      "redis://user@h",
      "redis://user:@h",
      "redis://:@h",
      "redis://:pa@ss@h",
      "redis://:p%zzw@h",
      "redis://:p%4@h",
      "redis://:p%@h",
      "redis://:p%00w@h",
      "redis://u%20x:pw@h",
      "unix://",
      "unix://relative.sock",
      "unix://host/x.sock",
      "unix:///",
      "unix:///tmp/dir/",
      "unix:///tmp/x.sock?db=",
      "unix:///tmp/x.sock?db=1&x=2",
      "unix:///tmp/x.sock?password=x",
      "unix:///tmp/x.sock?db=-3",
      "unix:///tmp/%00.sock",
  };
  char err[200];
  for (size_t i = 0; i < DG_ARRAY_SIZE(bad); i++) {
    dg_redis_url_t u;
    memset(&u, 0xA5, sizeof u); /* must stay untouched */
    dg_redis_url_t before = u;
    err[0] = '\0';
    int rc = dg_redis_url_parse(bad[i], &u, err, sizeof err);
    if (rc != DG_EINVAL) fail_msg("'%s' gave %d, want DG_EINVAL", bad[i], rc);
    if (err[0] == '\0') fail_msg("'%s': no reason given", bad[i]);
    assert_memory_equal(&u, &before, sizeof u);
  }
  /* Reasons never quote the password. */
  dg_redis_url_t u;
  assert_int_equal(dg_redis_url_parse("redis://:hunter2@h:80x", &u, err, sizeof err), DG_EINVAL);
  assert_null(strstr(err, "hunter2"));
  assert_int_equal(dg_redis_url_parse("redis://:hunter2%zz@h", &u, err, sizeof err), DG_EINVAL);
  assert_null(strstr(err, "hunter2"));
  assert_int_equal(dg_redis_url_parse("redis://:hun/ter2@h", &u, err, sizeof err), DG_EINVAL);
  assert_null(strstr(err, "ter2"));

  /* A socket path longer than sun_path. */
  char longp[300];
  snprintf(longp, sizeof longp, "unix:///%0200d.sock", 0);
  assert_int_equal(dg_redis_url_parse(longp, &u, err, sizeof err), DG_EINVAL);
  /* NULL URL, NULL err buffer. */
  assert_int_equal(dg_redis_url_parse(NULL, &u, NULL, 0), DG_EINVAL);
  assert_int_equal(dg_redis_url_parse("nope", &u, NULL, 0), DG_EINVAL);
  /* A tiny err buffer is still NUL-terminated. */
  char tiny[8];
  assert_int_equal(dg_redis_url_parse("nope", &u, tiny, sizeof tiny), DG_EINVAL);
  assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

static void test_url_describe(void **state) {
  (void)state;
  dg_redis_url_t u;
  char buf[128];
  assert_int_equal(dg_redis_url_parse("redis://alice:topsecret@[::1]:7000/5", &u, NULL, 0), 0);
  assert_int_equal(dg_redis_url_describe(&u, buf, sizeof buf), 0);
  assert_string_equal(buf, "redis://alice@[::1]:7000/5");
  assert_int_equal(dg_redis_url_describe(&u, buf, 10), DG_ETOOBIG);
  assert_int_equal(strlen(buf), 9);
  dg_redis_url_dispose(&u);
  assert_int_equal(dg_redis_url_parse("unix://:topsecret@/tmp/r.sock?db=2", &u, NULL, 0), 0);
  assert_int_equal(dg_redis_url_describe(&u, buf, sizeof buf), 0);
  assert_string_equal(buf, "unix:///tmp/r.sock?db=2");
  dg_redis_url_dispose(&u);
  dg_redis_url_dispose(NULL);
}

/* ======================================================================= */
/* Stream ids and reply helpers (no server)                                  */
/* ======================================================================= */

static void test_xid(void **state) {
  (void)state;
  dg_redis_xid_t a, b;
  assert_int_equal(dg_redis_xid_parse("1700000000000-5", 15, &a), 0);
  assert_true(a.ms == 1700000000000ull && a.seq == 5);
  assert_int_equal(dg_redis_xid_parse("18446744073709551615-18446744073709551615", 41, &b), 0);
  assert_true(b.ms == UINT64_MAX && b.seq == UINT64_MAX);
  assert_true(dg_redis_xid_cmp(a, b) < 0);
  assert_true(dg_redis_xid_cmp(b, a) > 0);
  assert_int_equal(dg_redis_xid_cmp(a, a), 0);
  dg_redis_xid_t c = {a.ms, a.seq + 1};
  assert_true(dg_redis_xid_cmp(a, c) < 0);

  char buf[DG_REDIS_XID_BUFSZ];
  assert_int_equal(dg_redis_xid_format(b, buf, sizeof buf), 0);
  assert_string_equal(buf, "18446744073709551615-18446744073709551615");
  assert_int_equal(dg_redis_xid_format(b, buf, 41), DG_ETOOBIG);
  assert_int_equal(dg_redis_xid_format((dg_redis_xid_t){0, 0}, buf, sizeof buf), 0);
  assert_string_equal(buf, "0-0");

  static const char *bad[] = {"", "-", "1", "1-", "-1", "01-1", "1-01", "1--1", "1-1-1",
                              "+1-1", "1- 1", "a-1", "18446744073709551616-0",
                              "0-18446744073709551616", "1-1x", "*"};
  dg_redis_xid_t keep = {42, 42};
  for (size_t i = 0; i < DG_ARRAY_SIZE(bad); i++) {
    dg_redis_xid_t x = keep;
    if (dg_redis_xid_parse(bad[i], strlen(bad[i]), &x) != DG_EINVAL)
      fail_msg("accepted '%s'", bad[i]);
    assert_true(x.ms == 42 && x.seq == 42);
  }
  /* Length is honoured: "12-3" inside a longer buffer. */
  assert_int_equal(dg_redis_xid_parse("12-34", 4, &a), 0);
  assert_true(a.ms == 12 && a.seq == 3);
}

/* Parses RESP text with hiredis's reader, as the connection would. */
static redisReply *resp(const char *s, size_t len) {
  redisReader *rd = redisReaderCreate();
  assert_int_equal(redisReaderFeed(rd, s, len), REDIS_OK);
  void *rep = NULL;
  assert_int_equal(redisReaderGetReply(rd, &rep), REDIS_OK);
  assert_non_null(rep);
  redisReaderFree(rd);
  return rep;
}
#define RESP(lit) resp(lit, sizeof(lit) - 1)

static void test_xiter_synthetic(void **state) {
  (void)state;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  dg_redis_str_t f, v;

  /* Two streams, the first with two entries, one deleted entry, one empty. */
  redisReply *rep = RESP("*3\r\n"
                         "*2\r\n$1\r\na\r\n*2\r\n"
                         "*2\r\n$3\r\n1-0\r\n"
                         "*4\r\n$1\r\nx\r\n$2\r\n\r\n\r\n$1\r\ny\r\n$3\r\na\0b\r\n"
                         "*2\r\n$3\r\n2-0\r\n*-1\r\n"
                         "*2\r\n$1\r\nb\r\n*0\r\n"
                         "*2\r\n$1\r\nc\r\n*1\r\n*2\r\n$3\r\n3-7\r\n*0\r\n");
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
  assert_int_equal(e.stream.len, 1);
  assert_memory_equal(e.stream.ptr, "a", 1);
  assert_int_equal(e.id.len, 3);
  assert_memory_equal(e.id.ptr, "1-0", 3);
  assert_int_equal(e.nfields, 2);
  assert_int_equal(e.deleted, 0);
  assert_int_equal(dg_redis_xentry_field(&e, 0, &f, &v), 0);
  assert_int_equal(f.len, 1);
  assert_int_equal(v.len, 2);
  assert_memory_equal(v.ptr, "\r\n", 2);
  assert_int_equal(dg_redis_xentry_get(&e, "y", 1, &v), 0);
  assert_int_equal(v.len, 3);
  assert_memory_equal(v.ptr, "a\0b", 3);
  dg_redis_str_t keep = {"k", 1};
  v = keep;
  assert_int_equal(dg_redis_xentry_get(&e, "z", 1, &v), DG_ENOTFOUND);
  assert_ptr_equal(v.ptr, keep.ptr);
  assert_int_equal(dg_redis_xentry_field(&e, 2, &f, &v), DG_EINVAL);

  assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
  assert_memory_equal(e.id.ptr, "2-0", 3);
  assert_int_equal(e.deleted, 1);
  assert_int_equal(e.nfields, 0);
  assert_int_equal(dg_redis_xentry_get(&e, "x", 1, &v), DG_ENOTFOUND);

  assert_int_equal(dg_redis_xiter_next(&it, &e), 1); /* stream b is empty: skipped */
  assert_memory_equal(e.stream.ptr, "c", 1);
  assert_memory_equal(e.id.ptr, "3-7", 3);
  assert_int_equal(e.nfields, 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  freeReplyObject(rep);

  /* nil (BLOCK timed out) iterates nothing. */
  rep = RESP("*-1\r\n");
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  freeReplyObject(rep);

  /* XRANGE shape. */
  rep = RESP("*2\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\n5-2\r\n*0\r\n");
  assert_int_equal(dg_redis_xiter_init_xrange(&it, rep), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
  assert_int_equal(e.stream.len, 0);
  assert_int_equal(e.nfields, 1);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
  assert_memory_equal(e.id.ptr, "5-2", 3);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  /* ... which is not an XREAD reply. */
  dg_redis_xiter_t untouched;
  memset(&untouched, 0x5A, sizeof untouched);
  dg_redis_xiter_t it2 = untouched;
  assert_int_equal(dg_redis_xiter_init_xread(&it2, rep), DG_EIO);
  assert_memory_equal(&it2, &untouched, sizeof it2);
  freeReplyObject(rep);

  /* Malformed shapes. */
  static const struct {
    const char *s;
    size_t len;
  } bad[] = {
#define B(lit) {lit, sizeof(lit) - 1}
      B("-ERR boom\r\n"),
      B(":1\r\n"),
      B("$1\r\nx\r\n"),
      B("*1\r\n$1\r\na\r\n"),                                        /* stream not array */
      B("*1\r\n*1\r\n$1\r\na\r\n"),                                  /* stream of 1 */
      B("*1\r\n*2\r\n:1\r\n*0\r\n"),                                 /* key not string */
      B("*1\r\n*2\r\n$1\r\na\r\n$1\r\nx\r\n"),                       /* entries not array */
      B("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*1\r\n$3\r\n1-0\r\n"),         /* entry of 1 */
      B("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n:1\r\n*0\r\n"),          /* id not string */
      B("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nx\r\n"), /* odd fields */
      B("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nx\r\n:1\r\n"), /* int */
      B("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n$1\r\nx\r\n"),     /* fv string */
#undef B
  };
  for (size_t i = 0; i < DG_ARRAY_SIZE(bad); i++) {
    rep = resp(bad[i].s, bad[i].len);
    if (dg_redis_xiter_init_xread(&it, rep) != DG_EIO) fail_msg("bad shape %zu accepted", i);
    freeReplyObject(rep);
  }
  rep = RESP("*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nx\r\n");
  assert_int_equal(dg_redis_xiter_init_xrange(&it, rep), DG_EIO);
  freeReplyObject(rep);
  rep = RESP("*-1\r\n");
  assert_int_equal(dg_redis_xiter_init_xrange(&it, rep), DG_EIO);
  freeReplyObject(rep);
}

/* ======================================================================= */
/* Connections without a Redis server                                        */
/* ======================================================================= */

static void test_create_rejects(void **state) {
  (void)state;
  dg_redis_url_t u;
  char err[200];
  dg_redis_t *r = (dg_redis_t *)&u; /* must stay untouched */

  /* TLS options: only with rediss://, a certificate with its key, sane names. */
  assert_int_equal(dg_redis_url_parse("rediss://:pw@127.0.0.1:1", &u, NULL, 0), 0);
  dg_redis_opts_t t = {.tls_cert_file = "/x.crt"};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  assert_non_null(strstr(err, "key"));
  t = (dg_redis_opts_t){.tls_key_file = "/x.key"};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  t = (dg_redis_opts_t){.tls_ca_file = ""};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  t = (dg_redis_opts_t){.tls_server_name = "bad name"};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  t = (dg_redis_opts_t){.tls_server_name = ""};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  assert_ptr_equal(r, (dg_redis_t *)&u);
  /* Files are not read by create: a missing one is a connect-time error. */
  t = (dg_redis_opts_t){.tls_ca_file = "/nonexistent/ca.crt", .tls_server_name = "::1"};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), 0);
  dg_redis_destroy(r);
  r = (dg_redis_t *)&u;
  dg_redis_url_dispose(&u);
  assert_int_equal(dg_redis_url_parse("redis://127.0.0.1:1", &u, NULL, 0), 0);
  t = (dg_redis_opts_t){.tls_ca_file = "/x.crt"};
  assert_int_equal(dg_redis_create(&u, &t, &r, err, sizeof err), DG_EINVAL);
  assert_non_null(strstr(err, "rediss://"));
  assert_ptr_equal(r, (dg_redis_t *)&u);
  dg_redis_url_dispose(&u);

  assert_int_equal(dg_redis_url_parse("redis://127.0.0.1:1", &u, NULL, 0), 0);
  dg_redis_opts_t o = {.backoff_min_ms = 500, .backoff_max_ms = 100};
  assert_int_equal(dg_redis_create(&u, &o, &r, err, sizeof err), DG_EINVAL);
  o = (dg_redis_opts_t){.command_timeout_ms = -1};
  assert_int_equal(dg_redis_create(&u, &o, &r, err, sizeof err), DG_EINVAL);
  o = (dg_redis_opts_t){.client_name = "has space"};
  assert_int_equal(dg_redis_create(&u, &o, &r, err, sizeof err), DG_EINVAL);
  dg_redis_url_dispose(&u);
  assert_ptr_equal(r, (dg_redis_t *)&u);
}

static void test_refused_and_backoff(void **state) {
  (void)state;
  char u_s[64], err[256];
  snprintf(u_s, sizeof u_s, "redis://127.0.0.1:%d", free_port()); /* nobody listens */
  dg_redis_url_t u;
  assert_int_equal(dg_redis_url_parse(u_s, &u, NULL, 0), 0);

  dg_redis_t *r = NULL;
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_connect(&u, NULL, &r, err, sizeof err), DG_EUNAVAIL);
  assert_true(now_ms() - t0 < 1000);
  assert_null(r);
  assert_non_null(strstr(err, "refused"));

  dg_redis_opts_t o = {.backoff_min_ms = 20, .backoff_max_ms = 160, .connect_timeout_ms = 500};
  assert_int_equal(dg_redis_create(&u, &o, &r, err, sizeof err), 0);
  dg_redis_url_dispose(&u);
  assert_int_equal(dg_redis_is_connected(r), 0);
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 0);
  assert_int_equal(st.retry_in_ms, 0);

  /* First command: one attempt, refused. */
  assert_int_equal(dg_redis_ping(r), DG_EUNAVAIL);
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 1);
  assert_true(st.retry_in_ms >= 0 && st.retry_in_ms <= 20);
  /* Inside the delay: fails at once without an attempt. */
  if (st.retry_in_ms > 2) {
    assert_int_equal(dg_redis_ping(r), DG_EUNAVAIL);
    assert_non_null(strstr(dg_redis_last_error(r), "next attempt in"));
    dg_redis_status(r, &st);
    assert_int_equal(st.failures, 1);
  }
  /* dg_redis_reconnect waits the delay out; delays double up to the cap. */
  int64_t max_seen = 0;
  for (int i = 0; i < 7; i++) {
    t0 = now_ms();
    assert_int_equal(dg_redis_reconnect(r), DG_EUNAVAIL);
    assert_true(now_ms() - t0 <= 160 + 500);
    dg_redis_status(r, &st);
    assert_true(st.retry_in_ms <= 160);
    if (st.retry_in_ms > max_seen) max_seen = st.retry_in_ms;
  }
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 8);
  assert_true(max_seen >= 80); /* equal jitter: at least half the cap once capped */
  assert_int_equal(st.connects, 0);
  dg_redis_destroy(r);

  /* With auto-reconnect off, commands do not even try. */
  assert_int_equal(dg_redis_url_parse(u_s, &u, NULL, 0), 0);
  o = (dg_redis_opts_t){.no_auto_reconnect = 1};
  assert_int_equal(dg_redis_create(&u, &o, &r, err, sizeof err), 0);
  dg_redis_url_dispose(&u);
  assert_int_equal(dg_redis_ping(r), DG_EUNAVAIL);
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 0);
  assert_non_null(strstr(dg_redis_last_error(r), "auto-reconnect off"));
  redisReply *rep = NULL;
  const char *a[] = {"PING"};
  assert_int_equal(dg_redis_append(r, 1, a, NULL), DG_EUNAVAIL);
  assert_int_equal(dg_redis_get_reply(r, &rep), DG_EINVAL);
  assert_null(rep);
  dg_redis_destroy(r);
  dg_redis_destroy(NULL);
}

/* A peer that accepts TCP but never answers: connect must give up in time. */
static void test_silent_peer(void **state) {
  (void)state;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(lfd, 16), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
  char u_s[64], err[256];
  snprintf(u_s, sizeof u_s, "redis://:secretpw@127.0.0.1:%d", ntohs(sa.sin_port));
  dg_redis_url_t u;
  assert_int_equal(dg_redis_url_parse(u_s, &u, NULL, 0), 0);
  dg_redis_opts_t o = {.connect_timeout_ms = 300};
  dg_redis_t *r = NULL;
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_connect(&u, &o, &r, err, sizeof err), DG_EUNAVAIL);
  int64_t took = now_ms() - t0;
  assert_true(took >= 250 && took < 2000);
  assert_non_null(strstr(err, "timed out"));
  assert_null(strstr(err, "secretpw"));
  dg_redis_url_dispose(&u);
  close(lfd);
}

/* A peer that answers garbage is a protocol error: DG_EIO. */
static void *garbage_server(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd >= 0) {
    char buf[256];
    (void)!read(fd, buf, sizeof buf);
    static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    (void)!write(fd, junk, sizeof junk - 1);
    sleep_ms(200);
    close(fd);
  }
  return NULL;
}

static void test_protocol_error(void **state) {
  (void)state;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(lfd, 16), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, garbage_server, &lfd), 0);
  char u_s[64], err[256];
  snprintf(u_s, sizeof u_s, "redis://127.0.0.1:%d", ntohs(sa.sin_port));
  dg_redis_url_t u;
  assert_int_equal(dg_redis_url_parse(u_s, &u, NULL, 0), 0);
  dg_redis_t *r = NULL;
  assert_int_equal(dg_redis_connect(&u, NULL, &r, err, sizeof err), DG_EIO);
  assert_non_null(strstr(err, "protocol error"));
  dg_redis_url_dispose(&u);
  pthread_join(th, NULL);
  close(lfd);
}

/* ======================================================================= */
/* Against the real server                                                   */
/* ======================================================================= */

static void test_auth_ok(void **state) {
  (void)state;
  dg_redis_t *r = connect_default();
  assert_int_equal(dg_redis_is_connected(r), 1);
  assert_int_equal(dg_redis_ping(r), 0);
  char ver[32];
  assert_int_equal(dg_redis_server_version(r, ver, sizeof ver), 0);
  assert_true(ver[0] >= '6' && ver[0] <= '9' && ver[1] == '.');
  char tiny[3] = "zz";
  assert_int_equal(dg_redis_server_version(r, tiny, sizeof tiny), DG_ETOOBIG);
  assert_string_equal(tiny, "zz");
  redisReply *rep = CMD(r, "ACL", "WHOAMI");
  assert_string_equal(rep->str, "default");
  freeReplyObject(rep);
  dg_redis_destroy(r);

  /* ACL user whose password needs percent-encoding, and a client name. */
  char u[200];
  url_tcp(u, sizeof u, "alice:" ALICE_PW_ENC "@", 0);
  dg_redis_opts_t o = {.client_name = "dg-test"};
  r = connect_ok(u, &o);
  rep = CMD(r, "ACL", "WHOAMI");
  assert_string_equal(rep->str, "alice");
  freeReplyObject(rep);
  rep = CMD(r, "CLIENT", "GETNAME");
  assert_string_equal(rep->str, "dg-test");
  freeReplyObject(rep);
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_int_equal(st.connected, 1);
  assert_int_equal(st.connects, 1);
  dg_redis_destroy(r);
}

static void expect_auth_fail(const char *userinfo, const char *secret_bit) {
  char u[200], err[256] = "";
  url_tcp(u, sizeof u, userinfo, 0);
  dg_redis_url_t url;
  assert_int_equal(dg_redis_url_parse(u, &url, NULL, 0), 0);
  dg_redis_t *r = NULL;
  int rc = dg_redis_connect(&url, NULL, &r, err, sizeof err);
  dg_redis_url_dispose(&url);
  if (rc != DG_EAUTH) fail_msg("%s: got %d (%s)", userinfo, rc, err);
  assert_null(r);
  assert_true(err[0] != '\0');
  assert_null(strchr(err, '\n'));
  if (secret_bit) assert_null(strstr(err, secret_bit));
}

static void test_auth_fail(void **state) {
  (void)state;
  expect_auth_fail(":wrongpass-hunter2@", "hunter2");
  expect_auth_fail("alice:" PW "@", PW); /* right password, wrong user */
  expect_auth_fail("nobody:hunter2-x@", "hunter2");
  expect_auth_fail("", NULL); /* no password: NOAUTH on PING */
  /* A password the server's message happens to contain is redacted too. */
  expect_auth_fail(":WRONGPASS@", "WRONGPASS");

  /* The error from a live object also stays clean. */
  char u[200], err[256];
  url_tcp(u, sizeof u, ":wrongpass-hunter2@", 0);
  dg_redis_url_t url;
  assert_int_equal(dg_redis_url_parse(u, &url, NULL, 0), 0);
  dg_redis_t *r = NULL;
  assert_int_equal(dg_redis_create(&url, NULL, &r, err, sizeof err), 0);
  dg_redis_url_dispose(&url);
  assert_int_equal(dg_redis_ping(r), DG_EAUTH);
  assert_null(strstr(dg_redis_last_error(r), "hunter2"));
  assert_non_null(strstr(dg_redis_last_error(r), "AUTH"));
  assert_int_equal(dg_redis_is_connected(r), 0);
  dg_redis_destroy(r);
}

static void test_select_db(void **state) {
  (void)state;
  char u[128];
  url_tcp(u, sizeof u, ":" PW "@", 3);
  dg_redis_t *r3 = connect_ok(u, NULL);
  dg_redis_t *r0 = connect_default();
  expect_status(CMD(r3, "SET", "dbkey", "three"), "OK");
  redisReply *rep = CMD(r0, "GET", "dbkey");
  assert_int_equal(rep->type, REDIS_REPLY_NIL);
  freeReplyObject(rep);
  rep = CMD(r3, "GET", "dbkey");
  assert_int_equal(rep->type, REDIS_REPLY_STRING);
  assert_string_equal(rep->str, "three");
  freeReplyObject(rep);
  dg_redis_destroy(r3);
  dg_redis_destroy(r0);

  /* A db the server does not have: SELECT refused, DG_EINVAL. */
  url_tcp(u, sizeof u, ":" PW "@", 99);
  dg_redis_url_t url;
  char err[256];
  assert_int_equal(dg_redis_url_parse(u, &url, NULL, 0), 0);
  dg_redis_t *r = NULL;
  assert_int_equal(dg_redis_connect(&url, NULL, &r, err, sizeof err), DG_EINVAL);
  assert_non_null(strstr(err, "SELECT"));
  dg_redis_url_dispose(&url);
}

static void test_binary_safe(void **state) {
  (void)state;
  dg_redis_t *r = connect_default();
  char key[] = "key with spaces\r\n\0and NUL";
  char val[300];
  for (int i = 0; i < 256; i++) val[i] = (char)i;
  memcpy(val + 256, "\r\n*3\r\n$3\r\nSET\r\n -ERR \0", 23);
  size_t vlen = 256 + 23;
  const char *argv[3] = {"SET", key, val};
  size_t lens[3] = {3, sizeof key - 1, vlen};
  redisReply *rep = NULL;
  assert_int_equal(dg_redis_command(r, 3, argv, lens, &rep), 0);
  expect_status(rep, "OK");
  argv[0] = "GET";
  assert_int_equal(dg_redis_command(r, 2, argv, lens, &rep), 0);
  assert_int_equal(rep->type, REDIS_REPLY_STRING);
  assert_int_equal(rep->len, vlen);
  assert_memory_equal(rep->str, val, vlen);
  freeReplyObject(rep);
  /* The key really has 26 bytes: a truncated key is absent. */
  argv[0] = "EXISTS";
  size_t shortl[2] = {6, 19};
  assert_int_equal(dg_redis_command(r, 2, argv, shortl, &rep), 0);
  assert_int_equal(rep->integer, 0);
  freeReplyObject(rep);

  /* An empty argument, and one larger than the output buffer kept between
   * commands (written in place, the buffer grown and released after). */
  const char *ev[3] = {"SET", "empty", ""};
  assert_int_equal(dg_redis_command(r, 3, ev, NULL, &rep), 0);
  expect_status(rep, "OK");
  ev[0] = "STRLEN";
  assert_int_equal(dg_redis_command(r, 2, ev, NULL, &rep), 0);
  assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
  assert_int_equal(rep->integer, 0);
  freeReplyObject(rep);
  size_t blen = 3 * 1024 * 1024 + 7;
  char *big = malloc(blen);
  assert_non_null(big);
  for (size_t i = 0; i < blen; i++) big[i] = (char)(i * 31 + 7);
  const char *bv[3] = {"SET", "big", big};
  size_t bl[3] = {3, 3, blen};
  for (int round = 0; round < 2; round++) {
    assert_int_equal(dg_redis_command(r, 3, bv, bl, &rep), 0);
    expect_status(rep, "OK");
    bv[0] = "GET";
    assert_int_equal(dg_redis_command(r, 2, bv, bl, &rep), 0);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_int_equal(rep->len, blen);
    assert_memory_equal(rep->str, big, blen);
    freeReplyObject(rep);
    bv[0] = "SET";
    big[round] ^= 0x5a;
  }
  free(big);

  /* Error replies are data: rc 0, connection stays up. */
  rep = CMD(r, "SET", "notnum", "abc");
  freeReplyObject(rep);
  rep = CMD(r, "INCR", "notnum");
  assert_int_equal(rep->type, REDIS_REPLY_ERROR);
  freeReplyObject(rep);
  rep = CMD(r, "NO-SUCH-COMMAND", "x");
  assert_int_equal(rep->type, REDIS_REPLY_ERROR);
  freeReplyObject(rep);
  assert_int_equal(dg_redis_is_connected(r), 1);
  assert_int_equal(dg_redis_ping(r), 0);

  /* Bad calls. */
  redisReply *keep = (redisReply *)&rep;
  rep = keep;
  assert_int_equal(dg_redis_command(r, 0, argv, NULL, &rep), DG_EINVAL);
  const char *nullarg[2] = {"GET", NULL};
  assert_int_equal(dg_redis_command(r, 2, nullarg, NULL, &rep), DG_EINVAL);
  assert_int_equal(dg_redis_command(r, 1, argv, NULL, NULL), DG_EINVAL);
  assert_int_equal(dg_redis_command_timeout(r, 0, 1, argv, NULL, &rep), DG_EINVAL);
  /* Over the size cap: refused before anything is read or sent. */
  size_t huge[2] = {3, (size_t)DG_REDIS_MAX_COMMAND_BYTES};
  assert_int_equal(dg_redis_command(r, 2, argv, huge, &rep), DG_ETOOBIG);
  assert_int_equal(dg_redis_append(r, 2, argv, huge), DG_ETOOBIG);
  assert_int_equal(dg_redis_pending(r), 0);
  assert_ptr_equal(rep, keep);
  assert_int_equal(dg_redis_is_connected(r), 1);
  dg_redis_destroy(r);
}

static void test_pipeline(void **state) {
  (void)state;
  enum { N = 10000 };
  dg_redis_t *r = connect_default();
  char k[32], v[32];

  int64_t t0 = now_ms();
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "pk:%d", i);
    snprintf(v, sizeof v, "val-%d", i * 7);
    const char *a[3] = {"SET", k, v};
    assert_int_equal(dg_redis_append(r, 3, a, NULL), 0);
  }
  assert_int_equal(dg_redis_pending(r), N);
  /* A single command while replies are pending is refused. */
  redisReply *rep = NULL;
  const char *ping[1] = {"PING"};
  assert_int_equal(dg_redis_command(r, 1, ping, NULL, &rep), DG_EINVAL);
  assert_int_equal(dg_redis_flush(r), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(dg_redis_get_reply(r, &rep), 0);
    if (rep->type != REDIS_REPLY_STATUS) fail_msg("reply %d type %d", i, rep->type);
    freeReplyObject(rep);
  }
  int64_t t_set = now_ms() - t0;
  assert_int_equal(dg_redis_pending(r), 0);
  assert_int_equal(dg_redis_get_reply(r, &rep), DG_EINVAL);

  /* The batch helper, reading everything back. */
  static char keys[N][16];
  static const char *argvs[N][2];
  static dg_redis_cmd_t cmds[N];
  static redisReply *reps[N];
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "pk:%d", i);
    argvs[i][0] = "GET";
    argvs[i][1] = keys[i];
    cmds[i] = (dg_redis_cmd_t){2, argvs[i], NULL};
  }
  t0 = now_ms();
  assert_int_equal(dg_redis_pipeline(r, N, cmds, reps), 0);
  int64_t t_get = now_ms() - t0;
  for (int i = 0; i < N; i++) {
    snprintf(v, sizeof v, "val-%d", i * 7);
    assert_int_equal(reps[i]->type, REDIS_REPLY_STRING);
    assert_string_equal(reps[i]->str, v);
    freeReplyObject(reps[i]);
  }
  /* Error replies inside a batch are replies. */
  const char *bad[2] = {"INCR", "pk:1"};
  cmds[1] = (dg_redis_cmd_t){2, bad, NULL};
  assert_int_equal(dg_redis_pipeline(r, 3, cmds, reps), 0);
  assert_int_equal(reps[1]->type, REDIS_REPLY_ERROR);
  for (int i = 0; i < 3; i++) freeReplyObject(reps[i]);
  /* A malformed command anywhere rejects the batch before sending anything. */
  cmds[2] = (dg_redis_cmd_t){0, argvs[2], NULL};
  reps[0] = NULL;
  assert_int_equal(dg_redis_pipeline(r, 3, cmds, reps), DG_EINVAL);
  assert_null(reps[0]);
  assert_int_equal(dg_redis_pending(r), 0);

  /* Unpipelined, for comparison. */
  t0 = now_ms();
  for (int i = 0; i < 2000; i++) {
    const char *a[2] = {"GET", keys[i]};
    assert_int_equal(dg_redis_command(r, 2, a, NULL, &rep), 0);
    freeReplyObject(rep);
  }
  int64_t t_one = now_ms() - t0;
  print_message("pipelined SET: %d in %lld ms (%.0f/s); pipelined GET (batch helper): %d in %lld "
                "ms (%.0f/s); unpipelined GET: 2000 in %lld ms (%.1f us/round trip)\n",
                N, (long long)t_set, N * 1000.0 / (double)(t_set ? t_set : 1), N,
                (long long)t_get, N * 1000.0 / (double)(t_get ? t_get : 1), (long long)t_one,
                t_one * 1000.0 / 2000);

  /* Big pipeline (more than DG_REDIS_AUTOFLUSH_BYTES queued) stays correct. */
  static char big[64 * 1024];
  memset(big, 'b', sizeof big);
  const char *a[3] = {"SET", "bigkey", big};
  size_t l[3] = {3, 6, sizeof big};
  for (int i = 0; i < 40; i++) assert_int_equal(dg_redis_append(r, 3, a, l), 0);
  for (int i = 0; i < 40; i++) {
    assert_int_equal(dg_redis_get_reply(r, &rep), 0);
    freeReplyObject(rep);
  }
  rep = CMD(r, "STRLEN", "bigkey");
  assert_int_equal(rep->integer, (long long)sizeof big);
  freeReplyObject(rep);
  dg_redis_destroy(r);
}

static void test_stream_roundtrip(void **state) {
  (void)state;
  dg_redis_t *r = connect_default();
  freeReplyObject(CMD(r, "DEL", "t:req", "t:other"));
  expect_status(CMD(r, "XGROUP", "CREATE", "t:req", "mgr", "$", "MKSTREAM"), "OK");

  /* Three requests, pipelined, with binary values. */
  static const char v0[] = "{\"cell\":\"A1\", \"v\":\"1.50\"}";
  static const char v1[] = "line1\r\nline2\0tail";
  const char *a0[5] = {"XADD", "t:req", "*", "payload", v0};
  size_t l0[5] = {4, 5, 1, 7, sizeof v0 - 1};
  const char *a1[7] = {"XADD", "t:req", "*", "payload", v1, "k\0ey", ""};
  size_t l1[7] = {4, 5, 1, 7, sizeof v1 - 1, 4, 0};
  dg_redis_cmd_t cmds[3] = {{5, a0, l0}, {7, a1, l1}, {5, a0, l0}};
  redisReply *reps[3];
  assert_int_equal(dg_redis_pipeline(r, 3, cmds, reps), 0);
  dg_redis_xid_t ids[3];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(reps[i]->type, REDIS_REPLY_STRING);
    assert_int_equal(dg_redis_xid_parse(reps[i]->str, reps[i]->len, &ids[i]), 0);
    if (i > 0) assert_true(dg_redis_xid_cmp(ids[i - 1], ids[i]) < 0);
    freeReplyObject(reps[i]);
  }

  const char *rg[] = {"XREADGROUP", "GROUP", "mgr", "c1", "COUNT", "10", "BLOCK", "1000",
                      "STREAMS", "t:req", ">"};
  redisReply *rep = NULL;
  assert_int_equal(dg_redis_command_timeout(r, 3000, 11, rg, NULL, &rep), 0);
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  dg_redis_str_t val;
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  int n = 0;
  while (dg_redis_xiter_next(&it, &e)) {
    dg_redis_xid_t id;
    assert_int_equal(e.stream.len, 5);
    assert_memory_equal(e.stream.ptr, "t:req", 5);
    assert_int_equal(dg_redis_xid_parse(e.id.ptr, e.id.len, &id), 0);
    assert_int_equal(dg_redis_xid_cmp(id, ids[n]), 0);
    assert_int_equal(dg_redis_xentry_get(&e, "payload", 7, &val), 0);
    if (n == 1) {
      assert_int_equal(e.nfields, 2);
      assert_int_equal(val.len, sizeof v1 - 1);
      assert_memory_equal(val.ptr, v1, sizeof v1 - 1);
      assert_int_equal(dg_redis_xentry_get(&e, "k\0ey", 4, &val), 0);
      assert_int_equal(val.len, 0);
    } else {
      assert_int_equal(val.len, sizeof v0 - 1);
      assert_memory_equal(val.ptr, v0, sizeof v0 - 1);
    }
    n++;
  }
  assert_int_equal(n, 3);
  /* XACK the first two, using the ids from the reply. */
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  const char *ack[5] = {"XACK", "t:req", "mgr"};
  size_t ackl[5] = {4, 5, 3};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
    ack[3 + i] = e.id.ptr;
    ackl[3 + i] = e.id.len;
  }
  redisReply *ackrep = NULL;
  assert_int_equal(dg_redis_command(r, 5, ack, ackl, &ackrep), 0);
  assert_int_equal(ackrep->integer, 2);
  freeReplyObject(ackrep);
  freeReplyObject(rep);

  /* The third stays pending; delete it and read the history: [id, nil]. */
  char id2[DG_REDIS_XID_BUFSZ];
  assert_int_equal(dg_redis_xid_format(ids[2], id2, sizeof id2), 0);
  rep = CMD(r, "XDEL", "t:req", id2);
  assert_int_equal(rep->integer, 1);
  freeReplyObject(rep);
  rep = CMD(r, "XREADGROUP", "GROUP", "mgr", "c1", "STREAMS", "t:req", "0");
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 1);
  assert_int_equal(e.deleted, 1);
  assert_int_equal(e.nfields, 0);
  assert_int_equal(e.id.len, strlen(id2));
  assert_memory_equal(e.id.ptr, id2, e.id.len);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  freeReplyObject(rep);

  /* XREAD over two streams, and XRANGE. */
  freeReplyObject(CMD(r, "XADD", "t:other", "5-1", "f", "x"));
  rep = CMD(r, "XREAD", "COUNT", "10", "STREAMS", "t:req", "t:other", "0", "0");
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  n = 0;
  int other = 0;
  while (dg_redis_xiter_next(&it, &e)) {
    n++;
    if (e.stream.len == 7) other++;
  }
  assert_int_equal(n, 3);
  assert_int_equal(other, 1);
  freeReplyObject(rep);
  rep = CMD(r, "XRANGE", "t:req", "-", "+");
  assert_int_equal(dg_redis_xiter_init_xrange(&it, rep), 0);
  n = 0;
  while (dg_redis_xiter_next(&it, &e)) n++;
  assert_int_equal(n, 2);
  freeReplyObject(rep);
  dg_redis_destroy(r);
}

static void test_blocking_timeout(void **state) {
  (void)state;
  dg_redis_t *r = connect_default();
  /* Server-side BLOCK expiring is a nil reply, not a failure. */
  redisReply *rep = NULL;
  const char *x100[] = {"XREAD", "BLOCK", "100", "STREAMS", "t:empty", "$"};
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_command_timeout(r, 2000, 6, x100, NULL, &rep), 0);
  assert_int_equal(rep->type, REDIS_REPLY_NIL);
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  assert_int_equal(dg_redis_xiter_init_xread(&it, rep), 0);
  assert_int_equal(dg_redis_xiter_next(&it, &e), 0);
  freeReplyObject(rep);
  assert_true(now_ms() - t0 >= 90);

  /* Our timeout shorter than the BLOCK: DG_ETIMEOUT, connection dropped. */
  const char *x5s[] = {"XREAD", "BLOCK", "5000", "STREAMS", "t:empty", "$"};
  rep = (redisReply *)&t0;
  t0 = now_ms();
  assert_int_equal(dg_redis_command_timeout(r, 200, 6, x5s, NULL, &rep), DG_ETIMEOUT);
  int64_t took = now_ms() - t0;
  assert_ptr_equal(rep, (redisReply *)&t0);
  assert_true(took >= 190 && took < 1500);
  assert_int_equal(dg_redis_is_connected(r), 0);
  assert_non_null(strstr(dg_redis_last_error(r), "timed out"));
  /* The next command reconnects; the late reply does not leak into it. */
  rep = CMD(r, "ECHO", "after-timeout");
  assert_string_equal(rep->str, "after-timeout");
  freeReplyObject(rep);
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_int_equal(st.connects, 2);
  dg_redis_destroy(r);
}

/* The server closes an idle connection: the next command reconnects silently. */
static void test_idle_close(void **state) {
  (void)state;
  dg_redis_t *a = connect_default();
  dg_redis_t *b = connect_default();
  redisReply *rep = CMD(a, "CLIENT", "ID");
  char id[32];
  snprintf(id, sizeof id, "%lld", rep->integer);
  freeReplyObject(rep);
  rep = CMD(b, "CLIENT", "KILL", "ID", id);
  assert_int_equal(rep->integer, 1);
  freeReplyObject(rep);
  sleep_ms(50); /* let the FIN arrive */
  assert_int_equal(dg_redis_ping(a), 0);
  dg_redis_status_t st;
  dg_redis_status(a, &st);
  assert_int_equal(st.connects, 2);

  /* Killed with replies outstanding: each owed reply fails, nothing hangs. */
  rep = CMD(a, "CLIENT", "ID");
  snprintf(id, sizeof id, "%lld", rep->integer);
  freeReplyObject(rep);
  const char *blk[] = {"BLPOP", "t:nolist", "5"};
  const char *ping[] = {"PING"};
  assert_int_equal(dg_redis_append(a, 3, blk, NULL), 0);
  assert_int_equal(dg_redis_append(a, 1, ping, NULL), 0);
  assert_int_equal(dg_redis_append(a, 1, ping, NULL), 0);
  assert_int_equal(dg_redis_flush(a), 0);
  sleep_ms(50);
  rep = CMD(b, "CLIENT", "KILL", "ID", id);
  freeReplyObject(rep);
  int64_t t0 = now_ms();
  for (int i = 0; i < 3; i++) {
    assert_int_equal(dg_redis_get_reply(a, &rep), DG_EIO);
    assert_int_equal(dg_redis_pending(a), (size_t)(2 - i));
  }
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(dg_redis_get_reply(a, &rep), DG_EINVAL);
  assert_int_equal(dg_redis_ping(a), 0);
  dg_redis_destroy(a);
  dg_redis_destroy(b);
}

/* A hung server (SIGSTOP): commands and connects time out, then recover. */
static void test_hung_server(void **state) {
  (void)state;
  dg_redis_opts_t o = {.command_timeout_ms = 300, .connect_timeout_ms = 300,
                       .backoff_min_ms = 10, .backoff_max_ms = 40};
  char u[128];
  url_tcp(u, sizeof u, ":" PW "@", 0);
  dg_redis_t *r = connect_ok(u, &o);
  assert_int_equal(kill(g_tcp.pid, SIGSTOP), 0);
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_ping(r), DG_ETIMEOUT);
  assert_true(now_ms() - t0 < 1500);
  t0 = now_ms();
  int rc = dg_redis_ping(r); /* reconnect: TCP accepted by the kernel, no handshake */
  assert_int_equal(rc, DG_EUNAVAIL);
  assert_true(now_ms() - t0 < 1500);
  assert_int_equal(kill(g_tcp.pid, SIGCONT), 0);
  int64_t deadline = now_ms() + 5000;
  while ((rc = dg_redis_ping(r)) != 0 && now_ms() < deadline) sleep_ms(20);
  assert_int_equal(rc, 0);
  dg_redis_destroy(r);
}

static void test_unix_socket(void **state) {
  (void)state;
  char u[300];
  snprintf(u, sizeof u, "unix://%s?db=2", g_unix.sock);
  dg_redis_t *r = connect_ok(u, NULL);
  assert_int_equal(dg_redis_ping(r), 0);
  expect_status(CMD(r, "SET", "ukey", "uval"), "OK");
  redisReply *rep = CMD(r, "CLIENT", "INFO");
  assert_non_null(strstr(rep->str, " db=2 "));
  freeReplyObject(rep);
  /* Reconnect over the unix socket too. */
  assert_int_equal(dg_redis_reconnect(r), 0);
  rep = CMD(r, "GET", "ukey");
  assert_string_equal(rep->str, "uval");
  freeReplyObject(rep);
  dg_redis_destroy(r);

  /* A socket path nobody listens on. */
  snprintf(u, sizeof u, "unix://%s/none.sock", g_dir);
  dg_redis_url_t url;
  char err[256];
  assert_int_equal(dg_redis_url_parse(u, &url, NULL, 0), 0);
  assert_int_equal(dg_redis_connect(&url, NULL, &r, err, sizeof err), DG_EUNAVAIL);
  dg_redis_url_dispose(&url);
}

/* Kill the server, see quick failures, restart it, see recovery. Runs last. */
static void test_reconnect_after_restart(void **state) {
  (void)state;
  dg_redis_opts_t o = {.command_timeout_ms = 1000, .connect_timeout_ms = 500,
                       .backoff_min_ms = 20, .backoff_max_ms = 200};
  char u[128];
  url_tcp(u, sizeof u, ":" PW "@", 0);
  dg_redis_t *r = connect_ok(u, &o);
  dg_redis_t *p = connect_ok(u, &o); /* with a pipeline in flight */
  expect_status(CMD(r, "SET", "survives", "no"), "OK");
  const char *ping[] = {"PING"};
  assert_int_equal(dg_redis_append(p, 1, ping, NULL), 0);
  assert_int_equal(dg_redis_append(p, 1, ping, NULL), 0);

  srv_kill(&g_tcp);

  /* The queued pipeline: both replies are reported lost. */
  redisReply *rep = NULL;
  int64_t t0 = now_ms();
  int rc = dg_redis_get_reply(p, &rep);
  assert_true(rc == DG_EIO);
  assert_int_equal(dg_redis_get_reply(p, &rep), DG_EIO);
  assert_int_equal(dg_redis_get_reply(p, &rep), DG_EINVAL);
  assert_true(now_ms() - t0 < 1000);

  /* Commands fail fast while the server is down. */
  int saw_unavail = 0;
  for (int i = 0; i < 20; i++) {
    t0 = now_ms();
    rc = dg_redis_ping(r);
    int64_t took = now_ms() - t0;
    if (rc != DG_EIO && rc != DG_EUNAVAIL) fail_msg("ping while down: %d", rc);
    if (took >= 700) fail_msg("ping while down took %lld ms", (long long)took);
    if (rc == DG_EUNAVAIL) saw_unavail++;
    assert_int_equal(dg_redis_is_connected(r), 0);
    sleep_ms(10);
  }
  assert_true(saw_unavail > 0);
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_true(st.failures >= 1);
  assert_true(st.retry_in_ms <= 200);
  assert_int_equal(dg_redis_append(p, 1, ping, NULL), DG_EUNAVAIL);

  /* Same port, new process. */
  assert_int_equal(srv_start(&g_tcp), 0);
  int64_t deadline = now_ms() + 5000;
  while ((rc = dg_redis_ping(r)) != 0 && now_ms() < deadline) sleep_ms(10);
  assert_int_equal(rc, 0);
  assert_int_equal(dg_redis_is_connected(r), 1);
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 0);
  assert_int_equal(st.connects, 2);
  rep = CMD(r, "GET", "survives");
  assert_int_equal(rep->type, REDIS_REPLY_NIL); /* --save '': a fresh dataset */
  freeReplyObject(rep);

  /* dg_redis_reconnect recovers the other one (it waits out the backoff). */
  deadline = now_ms() + 5000;
  while ((rc = dg_redis_reconnect(p)) != 0 && now_ms() < deadline) {
  }
  assert_int_equal(rc, 0);
  assert_int_equal(dg_redis_ping(p), 0);
  dg_redis_destroy(r);
  dg_redis_destroy(p);
}

/* ======================================================================= */
/* TLS against redis-server                                                  */
/* ======================================================================= */

static void url_tls(char *buf, size_t cap, const char *userinfo, const char *host, int port,
                    int db) {
  snprintf(buf, cap, "rediss://%s%s:%d/%d", userinfo, host, port, db);
}

/* One connect attempt; returns its code, err holds the reason. */
static int try_connect(const char *url_s, const dg_redis_opts_t *o, dg_redis_t **out, char *err,
                       size_t cap) {
  dg_redis_url_t url;
  int rc = dg_redis_url_parse(url_s, &url, err, cap);
  if (rc != 0) fail_msg("parse %s: %s", url_s, err);
  rc = dg_redis_connect(&url, o, out, err, cap);
  dg_redis_url_dispose(&url);
  return rc;
}

/* Expects a failed connect with code want whose message holds each needle. */
static void expect_connect_fail(const char *url_s, const dg_redis_opts_t *o, int want,
                                int max_ms, const char *needle1, const char *needle2) {
  char err[512] = "";
  dg_redis_t *r = NULL;
  int64_t t0 = now_ms();
  int rc = try_connect(url_s, o, &r, err, sizeof err);
  int64_t took = now_ms() - t0;
  if (rc != want) fail_msg("%s: got %d (%s), want %d", url_s, rc, err, want);
  assert_null(r);
  if (took > max_ms) fail_msg("%s: took %lld ms (%s)", url_s, (long long)took, err);
  if (needle1 && !strstr(err, needle1)) fail_msg("'%s' not in: %s", needle1, err);
  if (needle2 && !strstr(err, needle2)) fail_msg("'%s' not in: %s", needle2, err);
  assert_null(strchr(err, '\n'));
  assert_null(strstr(err, PW));
}

static void test_tls_roundtrip(void **state) {
  (void)state;
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  dg_redis_opts_t o = {.tls_ca_file = g_ca};
  dg_redis_t *r = connect_ok(u, &o);
  assert_int_equal(dg_redis_ping(r), 0);
  char ver[32];
  assert_int_equal(dg_redis_server_version(r, ver, sizeof ver), 0);
  redisReply *rep = CMD(r, "ACL", "WHOAMI");
  assert_string_equal(rep->str, "default");
  freeReplyObject(rep);

  /* Binary-safe values, one of 1 MiB: many TLS records each way. */
  static const char bin[] = "a\r\nb\0c $3\r\n";
  const char *set_argv[] = {"SET", "tls:bin", bin};
  size_t set_len[] = {3, 7, sizeof bin - 1};
  assert_int_equal(dg_redis_command(r, 3, set_argv, set_len, &rep), 0);
  expect_status(rep, "OK");
  rep = CMD(r, "GET", "tls:bin");
  assert_int_equal(rep->len, sizeof bin - 1);
  assert_memory_equal(rep->str, bin, sizeof bin - 1);
  freeReplyObject(rep);
  size_t big_n = 1 << 20;
  char *big = malloc(big_n);
  for (size_t i = 0; i < big_n; i++) big[i] = (char)('a' + i % 26);
  const char *big_argv[] = {"SET", "tls:big", big};
  size_t big_len[] = {3, 7, big_n};
  assert_int_equal(dg_redis_command(r, 3, big_argv, big_len, &rep), 0);
  expect_status(rep, "OK");
  rep = CMD(r, "GET", "tls:big");
  assert_int_equal(rep->len, big_n);
  assert_memory_equal(rep->str, big, big_n);
  freeReplyObject(rep);
  free(big);

  /* Pipelining: 5000 INCRs in one flush, replies in order. */
  enum { N = 5000 };
  const char *incr[] = {"INCR", "tls:ctr"};
  rep = CMD(r, "DEL", "tls:ctr");
  freeReplyObject(rep);
  for (int i = 0; i < N; i++) assert_int_equal(dg_redis_append(r, 2, incr, NULL), 0);
  assert_int_equal(dg_redis_flush(r), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(dg_redis_get_reply(r, &rep), 0);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, i + 1);
    freeReplyObject(rep);
  }
  /* The batch form too. */
  const char *a1[] = {"SET", "tls:p", "1"}, *a2[] = {"GET", "tls:p"};
  dg_redis_cmd_t cmds[2] = {{3, a1, NULL}, {2, a2, NULL}};
  redisReply *reps[2];
  assert_int_equal(dg_redis_pipeline(r, 2, cmds, reps), 0);
  expect_status(reps[0], "OK");
  assert_string_equal(reps[1]->str, "1");
  freeReplyObject(reps[1]);
  dg_redis_destroy(r);

  /* By name (SNI + DNS name check), an ACL user from the URL, db and name. */
  url_tls(u, sizeof u, "alice:" ALICE_PW_ENC "@", "localhost", g_tls.port, 3);
  o.client_name = "dg-tls";
  r = connect_ok(u, &o);
  rep = CMD(r, "ACL", "WHOAMI");
  assert_string_equal(rep->str, "alice");
  freeReplyObject(rep);
  rep = CMD(r, "CLIENT", "INFO");
  assert_non_null(strstr(rep->str, " db=3 "));
  assert_non_null(strstr(rep->str, " name=dg-tls "));
  freeReplyObject(rep);
  /* Reconnect reuses the loaded context. */
  assert_int_equal(dg_redis_reconnect(r), 0);
  assert_int_equal(dg_redis_ping(r), 0);
  dg_redis_destroy(r);

  /* A wrong password over TLS is still an AUTH failure, without the password. */
  url_tls(u, sizeof u, ":wrongpass-hunter2@", "127.0.0.1", g_tls.port, 0);
  o.client_name = NULL;
  expect_connect_fail(u, &o, DG_EAUTH, 2000, "AUTH", NULL);
  char err[512];
  assert_int_equal(try_connect(u, &o, &r, err, sizeof err), DG_EAUTH);
  assert_null(strstr(err, "hunter2"));
}

static void test_tls_verify(void **state) {
  (void)state;
  char u[200], want[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  snprintf(want, sizeof want, "TLS handshake with 127.0.0.1:%d failed: certificate verify failed (",
           g_tls.port);

  /* A CA that did not sign the server certificate. redis-server sends its
     CA along, so OpenSSL names the untrusted root it saw ("self-signed
     certificate in certificate chain"); a server sending only its own
     certificate gets "unable to get local issuer certificate". */
  dg_redis_opts_t o = {.tls_ca_file = g_ca_other};
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, want, "certificate chain)");
  /* No CA given: the system store does not know the test CA either. */
  o = (dg_redis_opts_t){0};
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, want, "certificate chain)");

  /* The right CA, but a name or IP the certificate is not for. */
  o = (dg_redis_opts_t){.tls_ca_file = g_ca, .tls_server_name = "wrong.example"};
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, "certificate verify failed (hostname mismatch",
                      "'wrong.example'");
  o.tls_server_name = "127.0.0.2";
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, "certificate verify failed (IP address mismatch",
                      "'127.0.0.2'");
  /* A name override the certificate does have, on an IP URL. */
  o.tls_server_name = "localhost";
  dg_redis_t *r = connect_ok(u, &o);
  dg_redis_destroy(r);

  /* On a live object: unavailable, with backoff, and the reason kept. */
  o = (dg_redis_opts_t){.tls_ca_file = g_ca_other, .backoff_min_ms = 10, .backoff_max_ms = 20};
  dg_redis_url_t url;
  char err[256];
  assert_int_equal(dg_redis_url_parse(u, &url, NULL, 0), 0);
  assert_int_equal(dg_redis_create(&url, &o, &r, err, sizeof err), 0);
  dg_redis_url_dispose(&url);
  assert_int_equal(dg_redis_ping(r), DG_EUNAVAIL);
  assert_non_null(strstr(dg_redis_last_error(r), "certificate verify failed"));
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_int_equal(st.failures, 1);
  assert_int_equal(st.connected, 0);
  sleep_ms(30);
  assert_int_equal(dg_redis_reconnect(r), DG_EUNAVAIL); /* reloads the CA: still wrong */
  assert_non_null(strstr(dg_redis_last_error(r), "certificate verify failed"));
  dg_redis_destroy(r);
}

/* TLS spoken to a plaintext port, and plaintext to a TLS port. */
static void test_tls_wrong_port_kind(void **state) {
  (void)state;
  char u[200];
  /* redis-server's plaintext port waits for a line the ClientHello never
     ends (it stops at the first NUL), so this ends at the connect timeout. */
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tcp.port, 0);
  dg_redis_opts_t o = {.tls_ca_file = g_ca, .connect_timeout_ms = 400};
  char want[160];
  snprintf(want, sizeof want, "server at 127.0.0.1:%d did not answer TLS", g_tcp.port);
  int64_t t0 = now_ms();
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1500, want, "plaintext port");
  assert_true(now_ms() - t0 >= 350);

  /* A plaintext peer that does answer: recognised at once. */
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(lfd, 16), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, garbage_server, &lfd), 0);
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", ntohs(sa.sin_port), 0);
  snprintf(want, sizeof want, "server at 127.0.0.1:%d did not answer TLS (is it a plaintext port?)",
           ntohs(sa.sin_port));
  o.connect_timeout_ms = 2000;
  expect_connect_fail(u, &o, DG_EIO, 1000, want, NULL);
  pthread_join(th, NULL);
  close(lfd);

  /* Plaintext to the TLS port: the server hangs up (or alerts) at once. */
  snprintf(u, sizeof u, "redis://:" PW "@127.0.0.1:%d/0", g_tls.port);
  char err[512];
  dg_redis_t *r = NULL;
  t0 = now_ms();
  int rc = try_connect(u, NULL, &r, err, sizeof err);
  assert_true(rc == DG_EUNAVAIL || rc == DG_EIO);
  assert_true(now_ms() - t0 < 1000);
  if (!strstr(err, "use a rediss:// URL") && !strstr(err, "is it a TLS port? use rediss://"))
    fail_msg("unclear: %s", err);
  assert_null(strstr(err, PW));
}

static void test_tls_client_cert(void **state) {
  (void)state;
  g_tls2.tls = 2;
  g_tls2.port = free_port();
  snprintf(g_tls2.log, sizeof g_tls2.log, "%s/tls2.log", g_dir);
  assert_int_equal(srv_start(&g_tls2), 0);
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls2.port, 0);

  dg_redis_opts_t o = {.tls_ca_file = g_ca, .tls_cert_file = g_cli_crt, .tls_key_file = g_cli_key};
  dg_redis_t *r = connect_ok(u, &o);
  assert_int_equal(dg_redis_ping(r), 0);
  dg_redis_destroy(r);

  /* Without one: with TLS 1.3 the refusal is an alert after the handshake,
     so it surfaces while reading the AUTH reply -- still a clear line. */
  o = (dg_redis_opts_t){.tls_ca_file = g_ca};
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, "the server requires a client certificate", NULL);
  /* One the server does not trust. */
  o = (dg_redis_opts_t){.tls_ca_file = g_ca, .tls_cert_file = g_rogue_crt,
                        .tls_key_file = g_rogue_key};
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, "the server rejected our client certificate",
                      NULL);
  /* The optional server takes a client certificate too. */
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  o = (dg_redis_opts_t){.tls_ca_file = g_ca, .tls_cert_file = g_cli_crt, .tls_key_file = g_cli_key};
  r = connect_ok(u, &o);
  dg_redis_destroy(r);
  srv_kill(&g_tls2);
}

/* Unusable TLS files fail the attempt with DG_EINVAL naming the file. */
static void test_tls_bad_files(void **state) {
  (void)state;
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  dg_redis_opts_t o = {.tls_ca_file = "/nonexistent/ca.crt"};
  expect_connect_fail(u, &o, DG_EINVAL, 1000, "/nonexistent/ca.crt", "No such file");
  o.tls_ca_file = g_not_pem;
  expect_connect_fail(u, &o, DG_EINVAL, 1000, "TLS CA file", g_not_pem);
  o.tls_ca_file = g_dir; /* a directory of hashed CAs: loads, but trusts nothing here */
  expect_connect_fail(u, &o, DG_EUNAVAIL, 1000, "certificate verify failed", NULL);
  /* An encrypted key fails instead of prompting on the terminal. */
  o = (dg_redis_opts_t){.tls_ca_file = g_ca, .tls_cert_file = g_cli_crt, .tls_key_file = g_enc_key};
  expect_connect_fail(u, &o, DG_EINVAL, 1000, "TLS client key", "unencrypted");
  /* A key of another certificate. */
  o.tls_key_file = g_srv_key;
  expect_connect_fail(u, &o, DG_EINVAL, 1000, "TLS client key", g_srv_key);
  o.tls_key_file = g_cli_key;
  o.tls_cert_file = g_not_pem;
  expect_connect_fail(u, &o, DG_EINVAL, 1000, "TLS client certificate", g_not_pem);
}

/* The server closes an idle TLS connection: the probe notices, no resend. */
static void test_tls_idle_close(void **state) {
  (void)state;
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  dg_redis_opts_t o = {.tls_ca_file = g_ca};
  dg_redis_t *a = connect_ok(u, &o);
  dg_redis_t *b = connect_ok(u, &o);
  redisReply *rep = CMD(a, "CLIENT", "ID");
  char id[32];
  snprintf(id, sizeof id, "%lld", rep->integer);
  freeReplyObject(rep);
  rep = CMD(b, "CLIENT", "KILL", "ID", id);
  assert_int_equal(rep->integer, 1);
  freeReplyObject(rep);
  sleep_ms(50);
  assert_int_equal(dg_redis_ping(a), 0);
  dg_redis_status_t st;
  dg_redis_status(a, &st);
  assert_int_equal(st.connects, 2);

  /* Killed with replies outstanding: each owed reply fails, nothing hangs. */
  rep = CMD(a, "CLIENT", "ID");
  snprintf(id, sizeof id, "%lld", rep->integer);
  freeReplyObject(rep);
  const char *blk[] = {"BLPOP", "t:nolist", "5"};
  const char *ping[] = {"PING"};
  assert_int_equal(dg_redis_append(a, 3, blk, NULL), 0);
  assert_int_equal(dg_redis_append(a, 1, ping, NULL), 0);
  assert_int_equal(dg_redis_flush(a), 0);
  sleep_ms(50);
  rep = CMD(b, "CLIENT", "KILL", "ID", id);
  freeReplyObject(rep);
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_get_reply(a, &rep), DG_EIO);
  assert_int_equal(dg_redis_get_reply(a, &rep), DG_EIO);
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(dg_redis_ping(a), 0);
  dg_redis_destroy(a);
  dg_redis_destroy(b);
}

/* A hung TLS server: command and handshake time out on schedule, then recover. */
static void test_tls_hung_server(void **state) {
  (void)state;
  dg_redis_opts_t o = {.tls_ca_file = g_ca, .command_timeout_ms = 300, .connect_timeout_ms = 300,
                       .backoff_min_ms = 10, .backoff_max_ms = 40};
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "127.0.0.1", g_tls.port, 0);
  dg_redis_t *r = connect_ok(u, &o);
  assert_int_equal(kill(g_tls.pid, SIGSTOP), 0);
  int64_t t0 = now_ms();
  assert_int_equal(dg_redis_ping(r), DG_ETIMEOUT);
  int64_t took = now_ms() - t0;
  assert_true(took >= 250 && took < 1500);
  t0 = now_ms();
  assert_int_equal(dg_redis_ping(r), DG_EUNAVAIL); /* TCP accepted, no handshake */
  took = now_ms() - t0;
  assert_true(took >= 250 && took < 1500);
  assert_non_null(strstr(dg_redis_last_error(r), "did not answer TLS before the connect timeout"));
  assert_int_equal(kill(g_tls.pid, SIGCONT), 0);
  int64_t deadline = now_ms() + 5000;
  int rc;
  while ((rc = dg_redis_ping(r)) != 0 && now_ms() < deadline) sleep_ms(20);
  assert_int_equal(rc, 0);
  dg_redis_destroy(r);
}

/* Kill the TLS server, fail fast, restart it on the same port, recover. */
static void test_tls_reconnect_after_restart(void **state) {
  (void)state;
  dg_redis_opts_t o = {.tls_ca_file = g_ca, .command_timeout_ms = 1000, .connect_timeout_ms = 500,
                       .backoff_min_ms = 20, .backoff_max_ms = 200};
  char u[200];
  url_tls(u, sizeof u, ":" PW "@", "localhost", g_tls.port, 0);
  dg_redis_t *r = connect_ok(u, &o);
  expect_status(CMD(r, "SET", "tls:survives", "no"), "OK");
  srv_kill(&g_tls);
  for (int i = 0; i < 10; i++) {
    int64_t t0 = now_ms();
    int rc = dg_redis_ping(r);
    if (rc != DG_EIO && rc != DG_EUNAVAIL) fail_msg("ping while down: %d", rc);
    assert_true(now_ms() - t0 < 700);
    sleep_ms(10);
  }
  assert_int_equal(srv_start(&g_tls), 0);
  int64_t deadline = now_ms() + 5000;
  int rc;
  while ((rc = dg_redis_ping(r)) != 0 && now_ms() < deadline) sleep_ms(10);
  if (rc != 0) fail_msg("no recovery: %s", dg_redis_last_error(r));
  dg_redis_status_t st;
  dg_redis_status(r, &st);
  assert_int_equal(st.connects, 2);
  assert_int_equal(st.failures, 0);
  redisReply *rep = CMD(r, "GET", "tls:survives");
  assert_int_equal(rep->type, REDIS_REPLY_NIL);
  freeReplyObject(rep);
  dg_redis_destroy(r);
}

/* ======================================================================= */
/* The TLS transport against an in-process server                            */
/* ======================================================================= */

/*
 * mini: one TLS connection served by a thread with OpenSSL on a blocking
 * socket. The test drives it over a socketpair, one command byte at a time,
 * and waits for the echo: 'p' send "+PONG\r\n", 'n' send close_notify,
 * 'c' close the socket without one, 'q' quit. After the handshake the
 * thread sends 'k' (or 'f' if it failed) and records the SNI it saw.
 */
typedef struct mini_s {
  int lfd;             /* listening socket */
  int port;            /* its port */
  int ctl[2];          /* [0] test side, [1] thread side */
  SSL_CTX *ctx;        /* server context: g_srv_crt */
  pthread_t th;
  char sni[256];       /* server name the client sent, "" if none */
} mini_t;

static void *mini_run(void *arg) {
  mini_t *m = arg;
  int fd = accept(m->lfd, NULL, NULL);
  SSL *ssl = NULL;
  char c = 'f';
  if (fd >= 0) {
    /* As redis-server does: without it, Nagle holds a small reply back
       until the client's delayed ACK of the session tickets (~40 ms). */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ssl = SSL_new(m->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      snprintf(m->sni, sizeof m->sni, "%s", sni ? sni : "");
      c = 'k';
    }
  }
  (void)!write(m->ctl[1], &c, 1);
  while (read(m->ctl[1], &c, 1) == 1 && c != 'q') {
    if (c == 'p' && ssl) (void)SSL_write(ssl, "+PONG\r\n", 7);
    if (c == 'n' && ssl) (void)SSL_shutdown(ssl);
    if (c == 'c') {
      SSL_free(ssl);
      ssl = NULL;
      close(fd);
      fd = -1;
    }
    (void)!write(m->ctl[1], &c, 1);
  }
  SSL_free(ssl);
  if (fd >= 0) close(fd);
  return NULL;
}

static void mini_start(mini_t *m) {
  memset(m, 0, sizeof *m);
  m->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(m->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(m->lfd, 4), 0);
  assert_int_equal(getsockname(m->lfd, (struct sockaddr *)&sa, &sl), 0);
  m->port = ntohs(sa.sin_port);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, m->ctl), 0);
  m->ctx = SSL_CTX_new(TLS_server_method());
  assert_non_null(m->ctx);
  assert_int_equal(SSL_CTX_use_certificate_chain_file(m->ctx, g_srv_crt), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey_file(m->ctx, g_srv_key, SSL_FILETYPE_PEM), 1);
  assert_int_equal(pthread_create(&m->th, NULL, mini_run, m), 0);
}

/* Sends command c to the thread and waits for its echo. */
static void mini_cmd(mini_t *m, char c) {
  char e = 0;
  assert_int_equal(write(m->ctl[0], &c, 1), 1);
  assert_int_equal(read(m->ctl[0], &e, 1), 1);
  assert_int_equal(e, c);
  sleep_ms(30); /* let the bytes cross loopback */
}

static void mini_stop(mini_t *m) {
  char q = 'q';
  (void)!write(m->ctl[0], &q, 1);
  pthread_join(m->th, NULL);
  close(m->ctl[0]);
  close(m->ctl[1]);
  close(m->lfd);
  SSL_CTX_free(m->ctx);
}

/* Opens the TLS transport to the mini server by host (and server_name). */
static dg__redis_transport_t *mini_open(mini_t *m, dg__redis_tls_ctx_t *ctx, const char *host,
                                        const char *server_name) {
  char u_s[128], err[256] = "";
  snprintf(u_s, sizeof u_s, "rediss://%s:%d", host, m->port);
  dg_redis_url_t url;
  assert_int_equal(dg_redis_url_parse(u_s, &url, NULL, 0), 0);
  dg__redis_transport_t *tp = NULL;
  int rc = dg__redis_tls_open(&url, ctx, server_name, now_ms() + 2000, &tp, err, sizeof err);
  dg_redis_url_dispose(&url);
  if (rc != 0) fail_msg("tls open %s: %s", u_s, err);
  char ok = 0;
  assert_int_equal(read(m->ctl[0], &ok, 1), 1);
  assert_int_equal(ok, 'k');
  assert_string_equal(tp->ops->name, "tls");
  return tp;
}

static void test_tls_transport(void **state) {
  (void)state;
  /* Nothing here may raise SIGPIPE: with the default action it would kill us. */
  void (*old_pipe)(int) = signal(SIGPIPE, SIG_DFL);
  dg__redis_tls_ctx_t *ctx = NULL;
  char err[256];
  dg__redis_tls_opts_t to = {g_ca, NULL, NULL};
  assert_int_equal(dg__redis_tls_ctx_create(&to, &ctx, err, sizeof err), 0);
  mini_t m;
  char buf[64];

  /* SNI for a name. TLS 1.3 session tickets arrive after the handshake:
     the idle probe consumes them and says the connection is fine. */
  mini_start(&m);
  dg__redis_transport_t *tp = mini_open(&m, ctx, "localhost", NULL);
  assert_string_equal(m.sni, "localhost");
  sleep_ms(30);
  assert_int_equal(tp->ops->probe(tp), 0);
  assert_int_equal(tp->ops->probe(tp), 0);
  /* A reply read only in part: the rest waits inside OpenSSL (SSL_pending),
     invisible to the socket, and the probe must count it. */
  mini_cmd(&m, 'p');
  assert_int_equal(tp->ops->read(tp, buf, 2, now_ms() + 1000), 2);
  assert_memory_equal(buf, "+P", 2);
  assert_int_equal(tp->ops->probe(tp), DG_EIO);
  assert_non_null(strstr(tp->err, "unexpected data"));
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* No SNI for an IP literal; the override name is sent instead. */
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  assert_string_equal(m.sni, "");
  /* Write and read round trip. */
  assert_int_equal(tp->ops->write(tp, "PING\r\n", 6, now_ms() + 1000), 6);
  mini_cmd(&m, 'p');
  ssize_t n = tp->ops->read(tp, buf, sizeof buf, now_ms() + 1000);
  assert_int_equal(n, 7);
  assert_memory_equal(buf, "+PONG\r\n", 7);
  assert_int_equal(tp->ops->probe(tp), 0);
  tp->ops->destroy(tp);
  mini_stop(&m);
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", "localhost");
  assert_string_equal(m.sni, "localhost");
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* A silent server: read returns DG_ETIMEOUT at its deadline. */
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  int64_t t0 = now_ms();
  assert_int_equal(tp->ops->read(tp, buf, sizeof buf, t0 + 200), DG_ETIMEOUT);
  int64_t took = now_ms() - t0;
  assert_true(took >= 190 && took < 1000);
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* Data the client did not ask for, still on the socket. */
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  mini_cmd(&m, 'p');
  assert_int_equal(tp->ops->probe(tp), DG_EIO);
  assert_non_null(strstr(tp->err, "unexpected data"));
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* close_notify, then a plain close: both read as closed while idle. */
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  mini_cmd(&m, 'n');
  assert_int_equal(tp->ops->probe(tp), DG_EIO);
  assert_non_null(strstr(tp->err, "closed by server while idle"));
  tp->ops->destroy(tp);
  mini_stop(&m);
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  mini_cmd(&m, 'c');
  assert_int_equal(tp->ops->probe(tp), DG_EIO);
  assert_non_null(strstr(tp->err, "closed by server while idle"));
  /* Writing on: the peer's RST turns into DG_EIO, not SIGPIPE. */
  n = 0;
  for (int i = 0; i < 50 && n >= 0; i++) {
    n = tp->ops->write(tp, "PING\r\n", 6, now_ms() + 1000);
    sleep_ms(5);
  }
  assert_int_equal(n, DG_EIO);
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* A server that does not read: writes stop at the deadline. */
  mini_start(&m);
  tp = mini_open(&m, ctx, "127.0.0.1", NULL);
  size_t chunk = 256 * 1024, total = 0;
  char *big = calloc(1, chunk);
  t0 = now_ms();
  int64_t deadline = t0 + 300;
  while ((n = tp->ops->write(tp, big, chunk, deadline)) > 0) total += (size_t)n;
  took = now_ms() - t0;
  assert_int_equal(n, DG_ETIMEOUT);
  assert_true(total > 0);
  assert_true(took >= 290 && took < 2000);
  assert_non_null(strstr(tp->err, "timed out"));
  free(big);
  tp->ops->destroy(tp);
  mini_stop(&m);

  /* A server that sends only its own certificate, checked against the
     wrong CA: the issuer is simply unknown. */
  dg__redis_tls_ctx_t *other = NULL;
  to.ca_file = g_ca_other;
  assert_int_equal(dg__redis_tls_ctx_create(&to, &other, err, sizeof err), 0);
  mini_start(&m);
  char u_s[64], want[160];
  snprintf(u_s, sizeof u_s, "rediss://127.0.0.1:%d", m.port);
  dg_redis_url_t url;
  assert_int_equal(dg_redis_url_parse(u_s, &url, NULL, 0), 0);
  tp = NULL;
  assert_int_equal(dg__redis_tls_open(&url, other, NULL, now_ms() + 2000, &tp, err, sizeof err),
                   DG_EUNAVAIL);
  assert_null(tp);
  snprintf(want, sizeof want,
           "TLS handshake with 127.0.0.1:%d failed: certificate verify failed (unable to get "
           "local issuer certificate)", m.port);
  assert_string_equal(err, want);
  char c = 0;
  assert_int_equal(read(m.ctl[0], &c, 1), 1);
  assert_int_equal(c, 'f'); /* the server saw the handshake fail too */
  dg_redis_url_dispose(&url);
  mini_stop(&m);
  dg__redis_tls_ctx_destroy(other);

  /* Context errors name the file. */
  to = (dg__redis_tls_opts_t){g_ca, g_cli_crt, NULL};
  assert_int_equal(dg__redis_tls_ctx_create(&to, &other, err, sizeof err), DG_EINVAL);
  to = (dg__redis_tls_opts_t){g_dir, g_cli_crt, g_cli_crt}; /* the cert is no key */
  assert_int_equal(dg__redis_tls_ctx_create(&to, &other, err, sizeof err), DG_EINVAL);
  assert_non_null(strstr(err, "TLS client key"));

  dg__redis_tls_ctx_destroy(ctx);
  signal(SIGPIPE, old_pipe);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_good),
      cmocka_unit_test(test_url_bad),
      cmocka_unit_test(test_url_describe),
      cmocka_unit_test(test_xid),
      cmocka_unit_test(test_xiter_synthetic),
      cmocka_unit_test(test_create_rejects),
      cmocka_unit_test(test_refused_and_backoff),
      cmocka_unit_test(test_silent_peer),
      cmocka_unit_test(test_protocol_error),
      cmocka_unit_test(test_auth_ok),
      cmocka_unit_test(test_auth_fail),
      cmocka_unit_test(test_select_db),
      cmocka_unit_test(test_binary_safe),
      cmocka_unit_test(test_pipeline),
      cmocka_unit_test(test_stream_roundtrip),
      cmocka_unit_test(test_blocking_timeout),
      cmocka_unit_test(test_idle_close),
      cmocka_unit_test(test_hung_server),
      cmocka_unit_test(test_unix_socket),
      cmocka_unit_test(test_tls_transport),
      cmocka_unit_test(test_tls_roundtrip),
      cmocka_unit_test(test_tls_verify),
      cmocka_unit_test(test_tls_wrong_port_kind),
      cmocka_unit_test(test_tls_client_cert),
      cmocka_unit_test(test_tls_bad_files),
      cmocka_unit_test(test_tls_idle_close),
      cmocka_unit_test(test_tls_hung_server),
      cmocka_unit_test(test_tls_reconnect_after_restart),
      cmocka_unit_test(test_reconnect_after_restart),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
