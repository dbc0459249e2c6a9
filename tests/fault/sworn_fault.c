/*
 * A fault-injection shim for the end-to-end tests, loaded with LD_PRELOAD.
 *
 * While the file named by SWORN_FAULT_FLAG exists, every write or sync to a file under
 * the directory SWORN_FAULT_UNDER fails with the errno in SWORN_FAULT_ERRNO (EIO if
 * unset), as a failing disk (EIO), a full one (ENOSPC) or a read-only remount (EROFS)
 * would answer. Remove the flag and the same calls succeed again. Reads, and writes
 * anywhere else (sockets, the terminal), are never touched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int faulty(int fd) {
    const char *flag = getenv("SWORN_FAULT_FLAG");
    const char *under = getenv("SWORN_FAULT_UNDER");
    if (flag == NULL || under == NULL || access(flag, F_OK) != 0) {
        return 0;
    }
    char link[64];
    char target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) {
        return 0;
    }
    target[n] = '\0';
    size_t len = strlen(under);
    if (strncmp(target, under, len) != 0 || (target[len] != '/' && target[len] != '\0')) {
        return 0;
    }
    const char *code = getenv("SWORN_FAULT_ERRNO");
    errno = code != NULL ? atoi(code) : EIO;
    return 1;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);

static void *next(const char *name) {
    return dlsym(RTLD_NEXT, name);
}

ssize_t write(int fd, const void *buf, size_t count) {
    static write_fn real = NULL;
    if (real == NULL) real = (write_fn)next("write");
    return faulty(fd) ? -1 : real(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static pwrite_fn real = NULL;
    if (real == NULL) real = (pwrite_fn)next("pwrite");
    return faulty(fd) ? -1 : real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    static pwrite_fn real = NULL;
    if (real == NULL) real = (pwrite_fn)next("pwrite64");
    return faulty(fd) ? -1 : real(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    static writev_fn real = NULL;
    if (real == NULL) real = (writev_fn)next("writev");
    return faulty(fd) ? -1 : real(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    static pwritev_fn real = NULL;
    if (real == NULL) real = (pwritev_fn)next("pwritev");
    return faulty(fd) ? -1 : real(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    static sync_fn real = NULL;
    if (real == NULL) real = (sync_fn)next("fsync");
    return faulty(fd) ? -1 : real(fd);
}

int fdatasync(int fd) {
    static sync_fn real = NULL;
    if (real == NULL) real = (sync_fn)next("fdatasync");
    return faulty(fd) ? -1 : real(fd);
}
