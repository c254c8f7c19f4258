# UCX backend: DRAM (and VRAM where UCX has CUDA support) to any host over
# libucp. Built when pkg-config finds UCX, unless NXL_WITH_UCX is OFF; with
# NXL_WITH_UCX=ON a missing UCX stops the configure step.
if(NOT NXL_WITH_UCX STREQUAL "OFF")
  pkg_check_modules(UCX IMPORTED_TARGET ucx)
  if(NOT UCX_FOUND)
    if(NXL_WITH_UCX STREQUAL "ON")
      message(FATAL_ERROR "NXL_WITH_UCX=ON but pkg-config cannot find ucx "
                          "(install libucx-dev)")
    endif()
    message(STATUS "UCX backend: skipped (pkg-config cannot find ucx)")
  else()
    message(STATUS "UCX backend: UCX ${UCX_VERSION}")
    nxl_backend(ucx SOURCES
      backends/ucx/ucx_engine.c backends/ucx/ucx_conninfo.c
      backends/ucx/ucx_peer.c backends/ucx/ucx_rkey.c
      backends/ucx/ucx_xfer.c backends/ucx/ucx_fault.c
      LIBS PkgConfig::UCX
      WRAP ucp_put_nbx ucp_get_nbx ucp_am_send_nbx ucp_ep_flush_nbx
           ucp_mem_map)
  endif()
endif()
