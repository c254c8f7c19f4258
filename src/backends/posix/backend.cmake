# POSIX backend: DRAM <-> FILE inside one agent. The pread/pwrite thread
# pool is always built; the io_uring engine only when pkg-config finds
# liburing. Every source of the backend sees the same NXL_HAVE_LIBURING,
# since it changes the engine's layout.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  set(NXL_POSIX_SOURCES backends/posix/posix.c backends/posix/posix_req.c
      backends/posix/posix_pool.c)
  set(NXL_POSIX_LIBS "")
  set(NXL_POSIX_WRAP "")
  pkg_check_modules(LIBURING IMPORTED_TARGET liburing)
  if(LIBURING_FOUND)
    list(APPEND NXL_POSIX_SOURCES backends/posix/posix_uring.c
         backends/posix/posix_fault.c)
    set(NXL_POSIX_WRAP io_uring_submit)
    set_property(SOURCE ${NXL_POSIX_SOURCES} APPEND PROPERTY
                 COMPILE_DEFINITIONS NXL_HAVE_LIBURING=1)
    set(NXL_POSIX_LIBS PkgConfig::LIBURING)
  else()
    message(STATUS "POSIX backend: liburing not found, thread pool only")
  endif()
  nxl_backend(posix SOURCES ${NXL_POSIX_SOURCES} LIBS ${NXL_POSIX_LIBS}
    WRAP ${NXL_POSIX_WRAP})
endif()
