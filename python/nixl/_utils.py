"""nixl._utils: the helpers NIXL's tests and examples use to get raw
memory: malloc_passthru(size) -> address (4096-aligned, from libc),
free_passthru(address), ba_buf(address, size) (fills with 0xba),
verify_transfer(a, b, size) (AssertionError when the bytes differ).

Raw pointers, as in NIXL: freeing twice or touching freed memory crashes.
"""

import ctypes as _ctypes

_libc = _ctypes.CDLL(None, use_errno=True)
_libc.aligned_alloc.restype = _ctypes.c_void_p
_libc.aligned_alloc.argtypes = (_ctypes.c_size_t, _ctypes.c_size_t)
_libc.free.restype = None
_libc.free.argtypes = (_ctypes.c_void_p,)

_ALIGN = 4096


def malloc_passthru(size: int) -> int:
    """size bytes from aligned_alloc(4096, ...) (uninitialized); the
    address as an int."""
    size = int(size)
    if size <= 0:
        raise ValueError("size must be > 0")
    addr = _libc.aligned_alloc(_ALIGN, (size + _ALIGN - 1) // _ALIGN * _ALIGN)
    if not addr:
        raise MemoryError(f"aligned_alloc({size}) failed")
    return addr


def free_passthru(addr: int) -> None:
    """Frees an address from malloc_passthru."""
    _libc.free(int(addr))


def ba_buf(addr: int, size: int) -> None:
    """Fills size bytes at addr with 0xba."""
    _ctypes.memset(int(addr), 0xBA, int(size))


def verify_transfer(addr1: int, addr2: int, size: int) -> None:
    """Raises AssertionError unless the size bytes at addr1 and addr2 are
    equal."""
    a = _ctypes.string_at(int(addr1), int(size))
    b = _ctypes.string_at(int(addr2), int(size))
    if a != b:
        i = next(i for i in range(len(a)) if a[i] != b[i])
        raise AssertionError(f"transfer mismatch at byte {i}: "
                             f"{a[i]:#x} != {b[i]:#x}")
