/* child.c — see child.h. */
#include "eval/child.h"

#include "core/clock.h"
#include "core/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static bool listening(const vg_evalchild_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0;
    close(fd);
    return ok;
}

int vg_evalchild_start(vg_evalchild_t *c, const char *exe, const char *const *extra, size_t n_extra, int timeout_ms,
                       bool keep, const char **why)
{
    memset(c, 0, sizeof *c);
    c->pid = -1;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(c->dir, sizeof c->dir, "%s/vigil-eval-XXXXXX", tmp);
    if (!mkdtemp(c->dir)) {
        c->dir[0] = '\0';
        *why = "cannot create a temporary directory";
        return VG_EIO;
    }
    snprintf(c->data, sizeof c->data, "%s/data", c->dir);
    snprintf(c->log, sizeof c->log, "%s/server.log", c->dir);
    c->port = free_port();
    if (c->port <= 0) {
        *why = "cannot find a free loopback port";
        goto fail;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)&c->addr;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)c->port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->addr_len = sizeof *a;

    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port);
    const char *argv[64];
    size_t k = 0;
    argv[k++] = "vigil";
    argv[k++] = "serve";
    argv[k++] = "--data-dir";
    argv[k++] = c->data;
    argv[k++] = "--listen";
    argv[k++] = listen;
    argv[k++] = "--ws-listen";
    argv[k++] = "off";
    argv[k++] = "--http-listen";
    argv[k++] = "off";
    for (size_t i = 0; i < n_extra && k < 63; i++)
        argv[k++] = extra[i];
    argv[k] = NULL;

    int logfd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) {
        *why = "cannot create the server log";
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        *why = "fork failed";
        goto fail;
    }
    if (pid == 0) {
        /* The server must not outlive eval (a crash or Ctrl-C of ours). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        dup2(logfd, 1);
        dup2(logfd, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(exe, (char *const *)argv);
        fprintf(stderr, "vigil eval: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(logfd);
    c->pid = pid;
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!listening(c)) {
        if (!vg_evalchild_alive(c)) {
            *why = "the server exited during start-up (see its log above)";
            vg_evalchild_tail_log(c, 20);
            goto fail;
        }
        if (vg_clock_mono_ns() > deadline) {
            *why = "the server did not start listening in time";
            vg_evalchild_stop(c, 5000);
            goto fail;
        }
        usleep(20000);
    }
    return VG_OK;
fail:
    vg_evalchild_cleanup(c, keep);
    return VG_EIO;
}

bool vg_evalchild_alive(vg_evalchild_t *c)
{
    if (c->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid) {
        c->pid = -1;
        return false;
    }
    return r == 0;
}

int vg_evalchild_stop(vg_evalchild_t *c, int timeout_ms)
{
    if (c->pid <= 0)
        return -1;
    kill(c->pid, SIGTERM);
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid)
            break;
        if (r < 0) {
            c->pid = -1;
            return -1;
        }
        if (vg_clock_mono_ns() > deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            c->pid = -1;
            return -1;
        }
        usleep(20000);
    }
    c->pid = -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return -1;
}

void vg_evalchild_tail_log(const vg_evalchild_t *c, int lines)
{
    FILE *f = fopen(c->log, "r");
    if (!f)
        return;
    /* Small logs: read the tail by keeping a ring of line offsets. */
    long offs[256];
    int n = 0;
    if (lines > 256)
        lines = 256;
    offs[n++ % 256] = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        if (ch == '\n')
            offs[n++ % 256] = ftell(f);
    int start = n - 1 - lines;
    if (start < 0)
        start = 0;
    if (n - start > 256)
        start = n - 256;
    fseek(f, offs[start % 256], SEEK_SET);
    char buf[1024];
    while (fgets(buf, sizeof buf, f))
        fprintf(stderr, "  server| %s", buf);
    fclose(f);
}

void vg_evalchild_cleanup(vg_evalchild_t *c, bool keep)
{
    if (!c->dir[0])
        return;
    if (keep) {
        fprintf(stderr, "eval: kept the server's data in %s (log: %s)\n", c->data, c->log);
    } else {
        nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    c->dir[0] = '\0';
}
