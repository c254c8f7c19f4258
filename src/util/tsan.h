/*
 * tsan.h - ThreadSanitizer annotations for the hand-offs TSan cannot see.
 *
 * TSan orders two threads' accesses only through what it observes in one
 * process: mutexes, atomics, thread start/join, and some file descriptor
 * traffic. The one-sided data path hands registered memory over across
 * processes: an application fills a region and tells its peer through any
 * channel; the peer posts a READ; this process's service thread (TCP's I/O
 * thread) reads the region for the reply. Every step is ordered, but TSan
 * sees only "the app thread wrote, the service thread read" and reports a
 * race. The contract that makes such a hand-off visible (docs/design.md,
 * "Threads and locks"): the sync key of a registered region is its start
 * address, as registered. A service thread acquires the key before it
 * touches the region for a peer, and releases it after; an application
 * releases the key after touching a region that a peer will access, and
 * acquires it before touching a region a peer accessed.
 *
 * Everything here compiles to nothing unless the build has
 * -fsanitize=thread (NXL__TSAN is then 1).
 */
#ifndef NXL_UTIL_TSAN_H
#define NXL_UTIL_TSAN_H

#include <errno.h>
#include <stddef.h>

#if defined(__SANITIZE_THREAD__)
#define NXL__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NXL__TSAN 1
#endif
#endif
#ifndef NXL__TSAN
#define NXL__TSAN 0
#endif

#if NXL__TSAN
/* The TSan runtime's interface (sanitizer/tsan_interface.h declares the
 * first two; the others are exported by the same runtime). */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void __tsan_read_range(void *addr, unsigned long size);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);

/* nxl__tsan_acquire: this thread now sees everything done before the last
 * nxl__tsan_release(key) of any thread. */
static inline void
nxl__tsan_acquire(const void *key)
{
    __tsan_acquire((void *)key);
}

/* nxl__tsan_release: publish this thread's accesses so far to the next
 * nxl__tsan_acquire(key). */
static inline void
nxl__tsan_release(const void *key)
{
    __tsan_release((void *)key);
}

/* nxl__tsan_read records a read of [p, p + len) now, for a read that a
 * system call will do later (after a release that must cover it). */
static inline void
nxl__tsan_read(const void *p, size_t len)
{
    if (len > 0) {
        __tsan_read_range((void *)p, len);
    }
}

/* nxl__tsan_ignore_begin/end: memory accesses (and those of the
 * interceptors called) in between are not recorded; synchronization still
 * is. They keep errno, so they may wrap a system call. */
static inline void
nxl__tsan_ignore_begin(void)
{
    int e = errno;

    __tsan_ignore_thread_begin();
    errno = e;
}

static inline void
nxl__tsan_ignore_end(void)
{
    int e = errno;

    __tsan_ignore_thread_end();
    errno = e;
}
#else
static inline void
nxl__tsan_acquire(const void *key)
{
    (void)key;
}

static inline void
nxl__tsan_release(const void *key)
{
    (void)key;
}

static inline void
nxl__tsan_read(const void *p, size_t len)
{
    (void)p;
    (void)len;
}

static inline void
nxl__tsan_ignore_begin(void)
{
}

static inline void
nxl__tsan_ignore_end(void)
{
}
#endif

#endif /* NXL_UTIL_TSAN_H */
