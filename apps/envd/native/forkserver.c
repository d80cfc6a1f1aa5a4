/*
 * wrenn-forkserver: does every fork/exec of envd's pipe processes. Under gVisor, forking a Node.js
 * process of ~128 MB costs ~100 ms; forking this static program costs a few. envd starts it once
 * and talks to it over three channels:
 *
 *   wrenn-forkserver SOCKET    SOCKET is the path of envd's unix socket (in a 0700 directory).
 *   WRENN_FORKSERVER_TOKEN     32 hex digits, repeated on every stream so that no other process
 *                              in the sandbox can pass itself off as a child's stdio.
 *
 * Requests (our stdin; little-endian u32s): u32 length of what follows, then
 *   u32 id, u32 flags (1 = wants stdin, 2 = switch identity), u32 uid, u32 gid, u32 ngroups,
 *   u32 argc, u32 envc, u32 groups[ngroups], then NUL-terminated: file, cwd, argv[argc], env[envc].
 *   `file` is absolute: envd already did the PATH lookup.
 * Streams: per request, one connection to SOCKET per stdio stream (stdin if wanted, stdout,
 *   stderr), each opening with 24 bytes: token[16], u32 id, u32 stream (0, 1, 2). Connected
 *   before the fork, so the child inherits them as fds 0/1/2 (/dev/null for an unwanted stdin).
 * Events (our stdout; text lines):
 *   "R"                  ready, once
 *   "S <id> <pid>"       the child exec'd
 *   "F <id> <errno>"     the child could not start (setuid, chdir, exec): the request's fault
 *   "E <id> <errno>"     we could not set it up (connect, pipe, fork): envd should spawn it itself
 *   "X <pid> <status>"   a child exited; status is waitpid's raw status. Always after its "S".
 * EOF on stdin (envd gone) ends the fork-server; the children keep running.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the request framing assumes a little-endian host"
#endif

#define WANT_STDIN 1u
#define SWITCH_IDENTITY 2u
#define MAX_FRAME (64u << 20)

struct request {
	uint32_t id, flags, uid, gid, ngroups, argc, envc;
	gid_t *groups;
	const char *file, *cwd;
	char **argv, **envp;
};

static struct sockaddr_un sock_addr;
static socklen_t sock_addr_len;
static unsigned char token[16];
static int sigchld_pipe[2];

static void die(const char *what)
{
	fprintf(stderr, "wrenn-forkserver: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void emit(const char *fmt, ...)
{
	char line[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* envd stopped reading our events: nothing left to serve. */
	if (write_all(1, line, (size_t)n) < 0)
		exit(0);
}

static void on_sigchld(int sig)
{
	(void)sig;
	int saved = errno;
	/* The pipe is non-blocking: a full one already says "reap". */
	ssize_t ignored = write(sigchld_pipe[1], "", 1);
	(void)ignored;
	errno = saved;
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		emit("X %d %d\n", (int)pid, status);
}

static int connect_stream(uint32_t id, uint32_t stream)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unsigned char header[24];
	memcpy(header, token, 16);
	memcpy(header + 16, &id, 4);
	memcpy(header + 20, &stream, 4);
	if (connect(fd, (struct sockaddr *)&sock_addr, sock_addr_len) < 0 ||
	    write_all(fd, header, sizeof header) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

static _Noreturn void child_fail(int errfd)
{
	int err = errno;
	ssize_t ignored = write(errfd, &err, sizeof err);
	(void)ignored;
	_exit(127);
}

static _Noreturn void run_child(const struct request *r, const int fds[3], int errfd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* An ignored signal stays ignored across exec; the command must get SIGPIPE like anywhere. */
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);

	/* Session leader: envd signals the whole group, and envd's own signals never reach it. */
	if (setsid() < 0)
		child_fail(errfd);
	if (r->flags & SWITCH_IDENTITY) {
		if (setgroups(r->ngroups, r->groups) < 0 || setgid(r->gid) < 0 || setuid(r->uid) < 0)
			child_fail(errfd);
	}
	if (chdir(r->cwd) < 0)
		child_fail(errfd);
	int in = fds[0];
	if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		child_fail(errfd);
	/* Every fd of ours is CLOEXEC, so after these three dups exec leaves the child only 0/1/2. */
	if (dup2(in, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0)
		child_fail(errfd);
	execve(r->file, r->argv, r->envp);
	if (errno == ENOEXEC) {
		/* Like execvp (and so Node's spawn): a script without #! runs under /bin/sh. */
		char **argv = calloc(r->argc + 2, sizeof *argv);
		if (argv) {
			argv[0] = "/bin/sh";
			argv[1] = (char *)r->file;
			for (uint32_t i = 1; i < r->argc; i++)
				argv[i + 1] = r->argv[i];
			execve("/bin/sh", argv, r->envp);
			errno = ENOEXEC;
		}
	}
	child_fail(errfd);
}

static void spawn_request(const struct request *r)
{
	int fds[3] = { -1, -1, -1 }, errpipe[2] = { -1, -1 };
	int err = 0;
	for (uint32_t s = (r->flags & WANT_STDIN) ? 0 : 1; s < 3; s++) {
		if ((fds[s] = connect_stream(r->id, s)) < 0) {
			err = errno;
			goto out;
		}
	}
	if (pipe2(errpipe, O_CLOEXEC) < 0) {
		err = errno;
		goto out;
	}
	pid_t pid = fork();
	if (pid < 0) {
		err = errno;
		goto out;
	}
	if (pid == 0)
		run_child(r, fds, errpipe[1]);
	close(errpipe[1]);
	errpipe[1] = -1;
	/* Blocks only until the child's exec (EOF) or its failure (an errno), never on its run. */
	int child_err;
	ssize_t n;
	do
		n = read(errpipe[0], &child_err, sizeof child_err);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof child_err)
		emit("F %u %d\n", r->id, child_err);
	else
		emit("S %u %d\n", r->id, (int)pid);
out:
	if (err)
		emit("E %u %d\n", r->id, err);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (int i = 0; i < 2; i++)
		if (errpipe[i] >= 0)
			close(errpipe[i]);
}

static uint32_t take_u32(const char **p)
{
	uint32_t v;
	memcpy(&v, *p, 4);
	*p += 4;
	return v;
}

static const char *take_string(const char **p, const char *end)
{
	const char *s = *p;
	const char *nul = memchr(s, '\0', (size_t)(end - s));
	if (!nul) {
		fprintf(stderr, "wrenn-forkserver: malformed request\n");
		exit(2);
	}
	*p = nul + 1;
	return s;
}

static void handle_frame(const char *p, uint32_t len)
{
	const char *end = p + len;
	struct request r = { 0 };
	if (len < 28)
		goto malformed;
	r.id = take_u32(&p);
	r.flags = take_u32(&p);
	r.uid = take_u32(&p);
	r.gid = take_u32(&p);
	r.ngroups = take_u32(&p);
	r.argc = take_u32(&p);
	r.envc = take_u32(&p);
	if (r.ngroups > (uint32_t)(end - p) / 4 || r.argc == 0 || r.argc > len || r.envc > len)
		goto malformed;
	r.groups = calloc(r.ngroups + 1, sizeof *r.groups);
	r.argv = calloc(r.argc + 1, sizeof *r.argv);
	r.envp = calloc(r.envc + 1, sizeof *r.envp);
	if (!r.groups || !r.argv || !r.envp)
		die("calloc");
	for (uint32_t i = 0; i < r.ngroups; i++)
		r.groups[i] = take_u32(&p);
	r.file = take_string(&p, end);
	r.cwd = take_string(&p, end);
	for (uint32_t i = 0; i < r.argc; i++)
		r.argv[i] = (char *)take_string(&p, end);
	for (uint32_t i = 0; i < r.envc; i++)
		r.envp[i] = (char *)take_string(&p, end);
	spawn_request(&r);
	free(r.groups);
	free(r.argv);
	free(r.envp);
	return;
malformed:
	fprintf(stderr, "wrenn-forkserver: malformed request\n");
	exit(2);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int main(int argc, char **argv)
{
	const char *hex = getenv("WRENN_FORKSERVER_TOKEN");
	if (argc != 2 || !hex || strlen(hex) != 32) {
		fprintf(stderr, "usage: WRENN_FORKSERVER_TOKEN=<32 hex> wrenn-forkserver SOCKET\n");
		return 2;
	}
	for (int i = 0; i < 16; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			fprintf(stderr, "wrenn-forkserver: bad token\n");
			return 2;
		}
		token[i] = (unsigned char)(hi << 4 | lo);
	}

	const char *name = argv[1];
	size_t name_len = strlen(name);
	if (name_len == 0 || name_len >= sizeof sock_addr.sun_path) {
		fprintf(stderr, "wrenn-forkserver: bad socket name\n");
		return 2;
	}
	sock_addr.sun_family = AF_UNIX;
	memcpy(sock_addr.sun_path, name, name_len);
	sock_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len + 1);

	if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		die("pipe2");
	struct sigaction sa = { 0 };
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		die("sigaction");
	/* envd going away shows as EOF on stdin or EPIPE on stdout, not as a fatal signal. */
	signal(SIGPIPE, SIG_IGN);

	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		die("malloc");
	emit("R\n");
	for (;;) {
		struct pollfd pfd[2] = { { .fd = 0, .events = POLLIN }, { .fd = sigchld_pipe[0], .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (pfd[1].revents) {
			char drain[64];
			while (read(sigchld_pipe[0], drain, sizeof drain) > 0)
				;
			reap();
		}
		if (!pfd[0].revents)
			continue;
		if (len == cap) {
			cap *= 2;
			if (!(buf = realloc(buf, cap)))
				die("realloc");
		}
		ssize_t n = read(0, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			return 0;
		len += (size_t)n;
		size_t off = 0, want = cap;
		while (len - off >= 4) {
			uint32_t frame;
			memcpy(&frame, buf + off, 4);
			if (frame > MAX_FRAME) {
				fprintf(stderr, "wrenn-forkserver: request too large\n");
				return 2;
			}
			if (len - off - 4 < frame) {
				while (want < (size_t)frame + 4)
					want *= 2;
				break;
			}
			handle_frame(buf + off + 4, frame);
			off += 4 + frame;
		}
		memmove(buf, buf + off, len - off);
		len -= off;
		if (want > cap) {
			cap = want;
			if (!(buf = realloc(buf, cap)))
				die("realloc");
		}
	}
}
