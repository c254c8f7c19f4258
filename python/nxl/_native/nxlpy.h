/*
 * nxlpy.h - shared declarations of the nxl._nxl extension module.
 *
 * One C file per Python type (agent.c, dlist.c, reg.c, prepped.c, xfer.c,
 * shared.c), plus module.c (the module and its functions), errors.c
 * (status -> exception) and memory.c (memory from the buffer protocol,
 * __array_interface__, __cuda_array_interface__ and DLPack).
 *
 * Rules every file follows:
 *   - Every error path sets a Python exception and returns NULL or -1.
 *   - A C call that can block runs with the GIL released, inside
 *     NXLPY_UNLOCKED(agent, ...), which counts it in agent->inflight so that
 *     Agent.close() on another thread refuses instead of freeing the agent
 *     under it. No library thread ever calls into Python.
 *   - Every object that holds a library handle holds a strong reference to
 *     its Agent, so garbage collection never destroys an agent before its
 *     transfers; Agent.close() detaches the live transfers first (the
 *     library frees them).
 */
#ifndef NXLPY_H
#define NXLPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>

#include <nxl/nxl.h>

struct nxlpy_xfer;

/* nxlpy_agent_t is nxl._nxl.Agent (subclassed by nxl.Agent in Python). */
typedef struct nxlpy_agent {
    PyObject_HEAD nxl_agent_t *agent; /* NULL once closed */
    PyObject *name;                   /* str */
    int progress_thread;
    int telemetry;
    long inflight;            /* calls running without the GIL */
    struct nxlpy_xfer *xfers; /* live transfers (intrusive list) */
    PyObject *deferred;       /* list of (DescList, backends) that GC
                                 could not deregister: in flight (reg.c) */
    PyObject *weakrefs;
} nxlpy_agent_t;

/* nxlpy_keep_t keeps one memory exporter alive: a buffer view, or a
 * reference (array interface owner, DLPack capsule). */
typedef struct nxlpy_keep {
    Py_buffer view;
    int has_view;
    PyObject *obj;
} nxlpy_keep_t;

/* nxlpy_dlist_t is nxl._nxl.DescList: a descriptor array of one memory
 * kind and the exporters of the memory it describes. */
typedef struct nxlpy_dlist {
    PyObject_HEAD nxl_mem_t mem;
    int readonly; /* some memory is read-only */
    size_t count;
    nxl_desc_t *descs;
    nxlpy_keep_t *keeps;
    size_t nkeeps;
    Py_ssize_t exports;  /* buffer views of descs */
    Py_ssize_t shape[2]; /* for the buffer protocol */
    Py_ssize_t strides[2];
} nxlpy_dlist_t;

/* nxlpy_reg_t is nxl._nxl.Registration. */
typedef struct nxlpy_reg {
    PyObject_HEAD nxlpy_agent_t *agent;
    nxlpy_dlist_t *dlist; /* NULL once deregistered */
    PyObject *backends;   /* tuple of names or NULL */
    PyObject *weakrefs;
} nxlpy_reg_t;

/* nxlpy_prepped_t is nxl._nxl.Prepped. */
typedef struct nxlpy_prepped {
    PyObject_HEAD nxlpy_agent_t *agent;
    nxl_prepped_t *prepped; /* NULL once released */
    size_t count;
    int readonly;
    PyObject *remote; /* str or None */
    PyObject *dlist;  /* keeps local memory alive */
    PyObject *weakrefs;
} nxlpy_prepped_t;

/* nxlpy_xfer_t is nxl._nxl.Transfer. */
typedef struct nxlpy_xfer {
    PyObject_HEAD nxlpy_agent_t *agent;
    nxl_xfer_t *xfer; /* NULL once released or agent closed */
    int op;
    long busy;      /* waits running without the GIL */
    PyObject *keep; /* what the local side's memory needs */
    PyObject *weakrefs;
    struct nxlpy_xfer *prev, *next;
} nxlpy_xfer_t;

/* nxlpy_shared_t is nxl._nxl.SharedBuffer (nxl_mem_alloc_shared). */
typedef struct nxlpy_shared {
    PyObject_HEAD void *addr;
    size_t size;
    Py_ssize_t exports;
} nxlpy_shared_t;

extern PyTypeObject nxlpy_agent_type;
extern PyTypeObject nxlpy_dlist_type;
extern PyTypeObject nxlpy_reg_type;
extern PyTypeObject nxlpy_prepped_type;
extern PyTypeObject nxlpy_xfer_type;
extern PyTypeObject nxlpy_shared_type;

/* The asyncio hook: nxl._aio sets it; Transfer.__await__ calls it. */
extern PyObject *nxlpy_await_hook;

/* NXLPY_UNLOCKED runs stmt with the GIL released, counted in the agent. */
#define NXLPY_UNLOCKED(pyagent, stmt)                                          \
    do {                                                                       \
        (pyagent)->inflight++;                                                 \
        Py_BEGIN_ALLOW_THREADS stmt;                                           \
        Py_END_ALLOW_THREADS(pyagent)->inflight--;                             \
    } while (0)

/* errors.c */
int nxlpy_errors_init(PyObject *module);
PyObject *nxlpy_raise(nxl_status_t status);
PyObject *nxlpy_raise_msg(nxl_status_t status, const char *fmt, ...);
PyObject *nxlpy_error_class(nxl_status_t status);

/* memory.c */
int nxlpy_mem_get(PyObject *obj, nxl_desc_t *desc_p, nxl_mem_t *mem_p,
                  int *readonly_p, nxlpy_keep_t *keep_p);
void nxlpy_keep_release(nxlpy_keep_t *keep);

/* dlist.c */
nxlpy_dlist_t *nxlpy_dlist_from(PyObject *src, PyObject *mem);
int nxlpy_parse_mem(PyObject *obj, nxl_mem_t *mem_p);

/* nxlpy_agent_retry_deferred deregisters what garbage collection left to
 * the agent because a transfer in flight used it (reg.c): each entry whose
 * deregistration no longer returns NXL_ERR_NOT_ALLOWED goes. GIL held;
 * called when a transfer is released. */
void nxlpy_agent_retry_deferred(nxlpy_agent_t *a);

/* agent.c */
int nxlpy_agent_check(nxlpy_agent_t *a);
int nxlpy_opts_backends(nxlpy_agent_t *a, PyObject *names, nxl_opts_t *opts,
                        nxl_backend_t **buf, size_t cap);
int nxlpy_parse_op(PyObject *obj, int *op_p);
int nxlpy_parse_bytes(PyObject *obj, const char **data_p, Py_ssize_t *len_p);

/* xfer.c */
PyObject *nxlpy_xfer_new(nxlpy_agent_t *agent, nxl_xfer_t *xfer, int op,
                         PyObject *keep);
void nxlpy_xfer_detach_all(nxlpy_agent_t *agent);
int nxlpy_xfer_init_types(PyObject *module);

/* reg.c, prepped.c */
PyObject *nxlpy_reg_new(nxlpy_agent_t *agent, nxlpy_dlist_t *dlist,
                        PyObject *backends);
PyObject *nxlpy_prepped_new(nxlpy_agent_t *agent, nxl_prepped_t *prepped,
                            nxlpy_dlist_t *dlist, PyObject *remote);

/* bench.c */
extern PyMethodDef nxlpy_bench_methods[];

/* connect.c: Connector, ConnectOp, MediaImage and the wire-form and media
 * functions of nxl_connect.h (for nxl.connect, nxl.embedding, nxl.media) */
extern PyMethodDef nxlpy_connect_methods[];
int nxlpy_connect_init(PyObject *module);

#endif /* NXLPY_H */
