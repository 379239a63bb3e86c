/* LD_PRELOAD shim for disk-fault tests: while the file named by $ESAD_FAULT_FSYNC exists,
 * fsync() and fdatasync() fail with EIO (the data is not synced). Deleting the file ends the
 * fault, so a test can switch it on and off while the daemon runs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int fault_active(void) {
    const char* flag = getenv("ESAD_FAULT_FSYNC");
    return flag && access(flag, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) *(void**)(&real) = dlsym(RTLD_NEXT, "fsync");
    if (fault_active()) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) *(void**)(&real) = dlsym(RTLD_NEXT, "fdatasync");
    if (fault_active()) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
