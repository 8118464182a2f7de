/* Run one command and print what it cost: wall nanoseconds, peak RSS in KiB, exit status.
 *
 *     measure STDIN_FILE STDOUT_FILE STDERR_FILE COMMAND [ARG...]
 *
 * This parent is a few hundred KiB, so the child's ru_maxrss (from wait4) is the command's
 * own peak: Linux keeps the peak of the process image before exec, and a child forked from a
 * Python benchmark would start from the benchmark's memory. Prints "<wall ns> <peak KiB>
 * <exit status> <user+system CPU us>".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void redirect(const char *path, int target, int flags) {
    int fd = open(path, flags, 0600);
    if (fd < 0 || dup2(fd, target) < 0) {
        perror(path);
        _exit(126);
    }
    close(fd);
}

int main(int argc, char **argv) {
    struct timespec started, ended;
    struct rusage usage;
    int status;
    pid_t child;

    if (argc < 5) {
        fprintf(stderr, "usage: measure STDIN STDOUT STDERR COMMAND [ARG...]\n");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &started);
    child = fork();
    if (child < 0) {
        perror("fork");
        return 2;
    }
    if (child == 0) {
        redirect(argv[1], 0, O_RDONLY);
        redirect(argv[2], 1, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(argv[3], 2, O_WRONLY | O_CREAT | O_TRUNC);
        execv(argv[4], argv + 4);
        perror(argv[4]);
        _exit(127);
    }
    if (wait4(child, &status, 0, &usage) < 0) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &ended);
    printf("%lld %ld %d %lld\n",
           (long long)(ended.tv_sec - started.tv_sec) * 1000000000LL +
               (ended.tv_nsec - started.tv_nsec),
           usage.ru_maxrss, status,
           (long long)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000LL +
               usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
    return 0;
}
