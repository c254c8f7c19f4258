# SHM backend: same-host DRAM transfers (CMA, shared memfd mappings,
# loopback copies) with unix-socket notifications. Linux only.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  nxl_backend(shm SOURCES
    backends/shm/shm.c backends/shm/shm_copy.c
    backends/shm/shm_peer.c backends/shm/shm_remote.c backends/shm/shm_xfer.c
    backends/shm/shm_notif.c backends/shm/shm_pool.c)
endif()
