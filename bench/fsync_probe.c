/* fsync_probe.c — the disk's own floor: how long `pwrite` of one small
 * batch plus `fdatasync` takes on the file system that holds the data dir.
 * A durable PUBACK can never be faster than this, so benchmarks print it
 * beside vigil's latencies.
 *
 *   cc -O2 -o build/fsync_probe bench/fsync_probe.c
 *   build/fsync_probe DIR [SAMPLES] [BYTES]   -> one JSON line with ms percentiles
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fsync_probe DIR [SAMPLES] [BYTES]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 500;
    size_t bytes = argc > 3 ? (size_t)atol(argv[3]) : 2048;
    if (n < 10 || bytes < 1 || bytes > (1u << 20))
        return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-probe.%d", argv[1], (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    char *buf = malloc(bytes);
    double *t = malloc(sizeof *t * (size_t)n);
    if (!buf || !t)
        return 1;
    memset(buf, 'v', bytes);
    off_t off = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        double a = now_ms();
        if (pwrite(fd, buf, bytes, off) != (ssize_t)bytes || fdatasync(fd) != 0) {
            perror("pwrite/fdatasync");
            rc = 1;
            break;
        }
        t[i] = now_ms() - a;
        off += (off_t)bytes;
        usleep(1000); /* like a paced workload, not a tight loop */
    }
    close(fd);
    unlink(path);
    if (rc)
        return rc;
    qsort(t, (size_t)n, sizeof *t, cmp);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i];
    printf("{\"samples\":%d,\"bytes\":%zu,\"avg\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f}\n", n, bytes,
           sum / n, t[n / 2], t[(int)(n * 0.95)], t[(int)(n * 0.99)], t[n - 1]);
    free(buf);
    free(t);
    return 0;
}
