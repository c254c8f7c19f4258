# The TCP backend: DRAM over plain TCP sockets, no dependencies beyond
# libc and pthreads. See docs/backends/tcp.md.
nxl_backend(tcp SOURCES
  backends/tcp/frame.c
  backends/tcp/engine.c
  backends/tcp/io.c
  backends/tcp/rx.c
  backends/tcp/srv.c
  backends/tcp/tx.c
  backends/tcp/xfer.c)
