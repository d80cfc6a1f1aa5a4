/*
 * wrenn-memwatch: tells the agent, the moment it happens, that a sandbox's memory cgroup crossed a
 * threshold. cgroup v1 memory thresholds (cgroup.event_control on memory.usage_in_bytes) signal an
 * eventfd from inside the kernel's charge path; Node.js has no eventfd, hence this small program.
 * One runs per agent and watches every running sandbox; an idle watch costs nothing.
 *
 * Commands (our stdin; text lines; KEY is [A-Za-z0-9_-], DIR a path without spaces):
 *   "W KEY DIR BYTES"   watch the memory cgroup DIR: signal when its usage crosses BYTES (either way)
 *   "U KEY"             stop watching KEY (closing the eventfd removes the kernel's registration)
 * Answers and events (our stdout; text lines):
 *   "OK KEY"            the command on KEY took effect
 *   "ERR KEY errno"     it did not (the watch does not exist afterwards)
 *   "X KEY"             KEY's usage crossed its threshold, or its cgroup was removed
 * EOF on stdin (the agent gone) ends the program; the parent's death kills it too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_KEY 64
#define MAX_LINE 4096

struct watch {
	char key[MAX_KEY + 1];
	int efd; /* -1: a free slot */
};

static struct watch *watches;
static size_t nwatches;
static int epfd;

static void reply(const char *what, const char *key, int err)
{
	if (err)
		printf("%s %s %d\n", what, key, err);
	else
		printf("%s %s\n", what, key);
	fflush(stdout);
}

static struct watch *find(const char *key)
{
	for (size_t i = 0; i < nwatches; i++)
		if (watches[i].efd >= 0 && strcmp(watches[i].key, key) == 0)
			return &watches[i];
	return NULL;
}

static struct watch *free_slot(void)
{
	for (size_t i = 0; i < nwatches; i++)
		if (watches[i].efd < 0)
			return &watches[i];
	struct watch *grown = realloc(watches, (nwatches + 64) * sizeof *watches);
	if (!grown)
		return NULL;
	watches = grown;
	for (size_t i = nwatches; i < nwatches + 64; i++)
		watches[i].efd = -1;
	nwatches += 64;
	return &watches[nwatches - 64];
}

static void unwatch(struct watch *w)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, w->efd, NULL);
	close(w->efd);
	w->efd = -1;
}

/* Registers the threshold; 0 or an errno. */
static int watch(const char *key, const char *dir, unsigned long long bytes)
{
	struct watch *old = find(key);
	if (old)
		unwatch(old);
	struct watch *w = free_slot();
	if (!w)
		return ENOMEM;
	char path[MAX_LINE + 64];
	snprintf(path, sizeof path, "%s/memory.usage_in_bytes", dir);
	int ufd = open(path, O_RDONLY | O_CLOEXEC);
	if (ufd < 0)
		return errno;
	snprintf(path, sizeof path, "%s/cgroup.event_control", dir);
	int cfd = open(path, O_WRONLY | O_CLOEXEC);
	if (cfd < 0) {
		int err = errno;
		close(ufd);
		return err;
	}
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int err = efd < 0 ? errno : 0;
	if (!err) {
		char line[96];
		int n = snprintf(line, sizeof line, "%d %d %llu", efd, ufd, bytes);
		if (write(cfd, line, n) != n)
			err = errno ? errno : EIO;
	}
	/* The kernel holds what it needs of the usage file; only the eventfd stays open. */
	close(cfd);
	close(ufd);
	if (!err) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(w - watches)};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) < 0)
			err = errno;
	}
	if (err) {
		if (efd >= 0)
			close(efd);
		return err;
	}
	snprintf(w->key, sizeof w->key, "%s", key);
	w->efd = efd;
	return 0;
}

static int valid_key(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > MAX_KEY)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static void command(char *line)
{
	char *save = NULL;
	char *op = strtok_r(line, " ", &save);
	char *key = strtok_r(NULL, " ", &save);
	if (!op || !key || !valid_key(key)) {
		reply("ERR", "-", EINVAL);
		return;
	}
	if (strcmp(op, "W") == 0) {
		char *dir = strtok_r(NULL, " ", &save);
		char *bytes = strtok_r(NULL, " ", &save);
		char *end = NULL;
		unsigned long long n = bytes ? strtoull(bytes, &end, 10) : 0;
		if (!dir || !bytes || *end || n == 0) {
			reply("ERR", key, EINVAL);
			return;
		}
		int err = watch(key, dir, n);
		if (err)
			reply("ERR", key, err);
		else
			reply("OK", key, 0);
	} else if (strcmp(op, "U") == 0) {
		struct watch *w = find(key);
		if (w)
			unwatch(w);
		reply("OK", key, 0);
	} else {
		reply("ERR", key, EINVAL);
	}
}

int main(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 0; /* the agent died before we could ask to die with it */
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event in = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in) < 0) {
		perror("wrenn-memwatch: epoll");
		return 1;
	}
	static char buf[MAX_LINE];
	size_t have = 0;
	for (;;) {
		struct epoll_event evs[32];
		int n = epoll_wait(epfd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("wrenn-memwatch: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 != UINT64_MAX) {
				struct watch *w = &watches[evs[i].data.u64];
				uint64_t count;
				if (w->efd >= 0 && read(w->efd, &count, sizeof count) == sizeof count)
					reply("X", w->key, 0);
				continue;
			}
			ssize_t got = read(0, buf + have, sizeof buf - have);
			if (got == 0)
				return 0;
			if (got < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				return 1;
			}
			have += (size_t)got;
			char *start = buf, *nl;
			while ((nl = memchr(start, '\n', have - (size_t)(start - buf)))) {
				*nl = '\0';
				command(start);
				start = nl + 1;
			}
			have -= (size_t)(start - buf);
			memmove(buf, start, have);
			if (have == sizeof buf) { /* a line longer than any command: drop it */
				reply("ERR", "-", E2BIG);
				have = 0;
			}
		}
	}
}
