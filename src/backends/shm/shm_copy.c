/*
 * shm_copy.c - the two ways SHM moves bytes: user-space copies (loopback and
 * shared mappings, non-temporal for large requests) and cross-memory attach
 * over windows of at most IOV_MAX iovecs per side.
 */
#include "shm.h"

#include <emmintrin.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

/* be_shm_copy_nt copies n bytes with 16-byte non-temporal stores (the
 * destination is not read into the cache), then fences so the data is
 * globally visible before anything the caller does next (a notification). */
static void
be_shm_copy_nt(uint8_t *d, const uint8_t *s, size_t n)
{
    size_t head = (16u - ((uintptr_t)d & 15u)) & 15u;

    if (head > n) {
        head = n;
    }
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    while (n >= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));

        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
        d += 64;
        s += 64;
        n -= 64;
    }
    memcpy(d, s, n);
    _mm_sfence();
}

/* be_shm_copy copies n bytes: non-temporal stores when use_nt is set and
 * the piece is big enough to be worth the alignment work, memcpy else. */
void
be_shm_copy(void *dst, const void *src, size_t n, int use_nt)
{
    if (use_nt && n >= 1024) {
        be_shm_copy_nt(dst, src, n);
    } else {
        memcpy(dst, src, n);
    }
}

/* be_shm_copy_range copies nbytes of the pair lists starting at entry
 * at.li, offset at.loff; the pairs have equal lengths, so one index walks
 * both. Checks *cancel between pieces. */
nxl_status_t
be_shm_copy_range(const struct iovec *dst, const struct iovec *src, size_t n,
                  be_shm_cursor_t at, uint64_t nbytes, int use_nt,
                  const atomic_int *cancel)
{
    size_t i = at.li, off = at.loff, piece;

    while (nbytes > 0 && i < n) {
        if (cancel != NULL &&
            atomic_load_explicit(cancel, memory_order_relaxed)) {
            return nxl__fail(NXL_ERR_CANCELED, "shm: transfer canceled");
        }
        piece = dst[i].iov_len - off;
        if (piece > nbytes) {
            piece = (size_t)nbytes;
        }
        be_shm_copy((uint8_t *)dst[i].iov_base + off,
                    (const uint8_t *)src[i].iov_base + off, piece, use_nt);
        nbytes -= piece;
        off = 0;
        i++;
    }
    return NXL_OK;
}

/* be_shm_cursor_advance moves one side of a cursor forward by bytes. */
void
be_shm_cursor_advance(be_shm_cursor_t *c, int side, const struct iovec *list,
                      size_t n, uint64_t bytes)
{
    size_t *ip = side ? &c->ri : &c->li;
    size_t *op = side ? &c->roff : &c->loff;
    size_t i = *ip, off = *op, left;

    while (bytes > 0 && i < n) {
        left = list[i].iov_len - off;
        if (bytes < left) {
            off += (size_t)bytes;
            bytes = 0;
            break;
        }
        bytes -= left;
        off = 0;
        i++;
    }
    *ip = i;
    *op = off;
}

/* be_shm_window fills w with up to BE_SHM_IOV_MAX entries of list starting
 * at entry i, offset off, covering at most max bytes. Returns the count. */
static size_t
be_shm_window(struct iovec *w, const struct iovec *list, size_t n, size_t i,
              size_t off, uint64_t max)
{
    size_t k = 0, len;

    while (k < BE_SHM_IOV_MAX && i < n && max > 0) {
        len = list[i].iov_len - off;
        if (len > max) {
            len = (size_t)max;
        }
        w[k].iov_base = (uint8_t *)list[i].iov_base + off;
        w[k].iov_len = len;
        max -= len;
        off = 0;
        i++;
        k++;
    }
    return k;
}

/* be_shm_cma_range moves nbytes through process_vm_readv/writev, window by
 * window, resuming after partial transfers where the kernel stopped. */
nxl_status_t
be_shm_cma_range(pid_t pid, int write, const struct iovec *l, size_t nl,
                 const struct iovec *r, size_t nr, be_shm_cursor_t at,
                 uint64_t nbytes, be_shm_peer_t *peer, const atomic_int *cancel)
{
    struct iovec wl[BE_SHM_IOV_MAX], wr[BE_SHM_IOV_MAX];
    size_t kl, kr;
    ssize_t n;
    int err;

    while (nbytes > 0) {
        if (cancel != NULL &&
            atomic_load_explicit(cancel, memory_order_relaxed)) {
            return nxl__fail(NXL_ERR_CANCELED, "shm: transfer canceled");
        }
        if (peer != NULL &&
            atomic_load_explicit(&peer->dead, memory_order_relaxed)) {
            return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                             "shm: peer %s (pid %d) is gone", peer->name,
                             (int)peer->pid);
        }
        kl = be_shm_window(wl, l, nl, at.li, at.loff, nbytes);
        kr = be_shm_window(wr, r, nr, at.ri, at.roff, nbytes);
        if (kl == 0 || kr == 0) {
            return nxl__fail(NXL_ERR_BACKEND,
                             "shm: iovec lists shorter than the transfer");
        }
        if (write) {
            n = process_vm_writev(pid, wl, kl, wr, kr, 0);
        } else {
            n = process_vm_readv(pid, wl, kl, wr, kr, 0);
        }
        if (n < 0) {
            err = errno;
            if (err == EINTR) {
                continue;
            }
            if (err == ESRCH && peer != NULL) {
                be_shm_peer_mark_dead(peer, "process_vm_* found no process");
            }
            return nxl__fail_errno(
                err, "shm: %s(pid %d)",
                write ? "process_vm_writev" : "process_vm_readv", (int)pid);
        }
        if (n == 0) {
            return nxl__fail(NXL_ERR_BACKEND, "shm: %s(pid %d) moved no bytes",
                             write ? "process_vm_writev" : "process_vm_readv",
                             (int)pid);
        }
        be_shm_cursor_advance(&at, 0, l, nl, (uint64_t)n);
        be_shm_cursor_advance(&at, 1, r, nr, (uint64_t)n);
        nbytes -= (uint64_t)n;
    }
    return NXL_OK;
}
