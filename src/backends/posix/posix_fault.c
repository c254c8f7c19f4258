/* posix_fault.c - fault injection (src/util/fault.h) for io_uring
 * submission: the --wrap wrapper fails io_uring_submit with -ENOMEM at the
 * "uring" site's rate, leaving the queued entries queued, as the kernel
 * does when it cannot take them. */
#include "posix.h"

#include <errno.h>
#include <liburing.h>

int __real_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring);

int
__wrap_io_uring_submit(struct io_uring *ring)
{
    if (nxl__fault_hit(NXL__FI_URING)) {
        return -ENOMEM;
    }
    return __real_io_uring_submit(ring);
}
