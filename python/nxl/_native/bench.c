/* bench.c - hidden helpers for `python3 -m nxl.bench`: the same C calls the
 * Python API makes, in a C loop, so that one run compares the Python call
 * with the C call on the same handles. Not part of the API. */
#include "nxlpy.h"

#include <time.h>

/* now_s returns CLOCK_MONOTONIC in seconds. */
static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* get_xfer returns the live handle of a Transfer argument, or NULL. */
static nxl_xfer_t *
get_xfer(PyObject *obj)
{
    nxlpy_xfer_t *t = (nxlpy_xfer_t *)obj;

    if (!Py_IS_TYPE(obj, &nxlpy_xfer_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a Transfer");
        return NULL;
    }
    if (t->xfer == NULL) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "the transfer was released");
    }
    return t->xfer;
}

/* bench_status is _bench_c_status(xfer, n) -> seconds for n
 * nxl_xfer_status calls. */
static PyObject *
bench_status(PyObject *mod, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t n, i;
    nxl_xfer_t *x;
    double t0;
    volatile int sink = 0;

    (void)mod;
    if (!PyArg_ParseTuple(args, "On", &obj, &n) ||
        (x = get_xfer(obj)) == NULL) {
        return NULL;
    }
    t0 = now_s();
    for (i = 0; i < n; i++) {
        sink += nxl_xfer_status(x);
    }
    (void)sink;
    return PyFloat_FromDouble(now_s() - t0);
}

/* bench_post_wait is _bench_c_post_wait(xfer, n) -> seconds for n
 * post-to-completion rounds (post, then nxl_xfer_wait if in progress). */
static PyObject *
bench_post_wait(PyObject *mod, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t n, i;
    nxl_xfer_t *x;
    nxl_status_t st = NXL_OK;
    double t0, t;

    (void)mod;
    if (!PyArg_ParseTuple(args, "On", &obj, &n) ||
        (x = get_xfer(obj)) == NULL) {
        return NULL;
    }
    t0 = now_s();
    for (i = 0; i < n && st >= 0; i++) {
        st = nxl_xfer_post(x, NULL);
        if (st == NXL_IN_PROG) {
            st = nxl_xfer_wait(x, -1);
        }
    }
    t = now_s() - t0;
    if (st < 0) {
        return nxlpy_raise(st);
    }
    return PyFloat_FromDouble(t);
}

/* bench_make is _bench_c_make(agent, op, local, lidx, remote, ridx) ->
 * seconds inside one nxl_xfer_make (the transfer is released after);
 * lidx/ridx are contiguous int64 arrays. */
static PyObject *
bench_make(PyObject *mod, PyObject *args)
{
    PyObject *aobj, *lobj, *robj, *lidx, *ridx;
    Py_buffer lv, rv;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    double t0, t;
    int op;

    (void)mod;
    if (!PyArg_ParseTuple(args, "O!iO!OO!O", &nxlpy_agent_type, &aobj, &op,
                          &nxlpy_prepped_type, &lobj, &lidx,
                          &nxlpy_prepped_type, &robj, &ridx)) {
        return NULL;
    }
    if (nxlpy_agent_check((nxlpy_agent_t *)aobj) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(lidx, &lv, PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(ridx, &rv, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&lv);
        return NULL;
    }
    t0 = now_s();
    st = nxl_xfer_make(((nxlpy_agent_t *)aobj)->agent, (nxl_op_t)op,
                       ((nxlpy_prepped_t *)lobj)->prepped, lv.buf,
                       ((nxlpy_prepped_t *)robj)->prepped, rv.buf,
                       (size_t)lv.len / sizeof(size_t), NULL, &x);
    t = now_s() - t0;
    nxl_xfer_release(x);
    PyBuffer_Release(&lv);
    PyBuffer_Release(&rv);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyFloat_FromDouble(t);
}

/* bench_register is _bench_c_register(agent, dlist) -> seconds for one
 * nxl_mem_register + nxl_mem_deregister of the DescList's descriptors. */
static PyObject *
bench_register(PyObject *mod, PyObject *args)
{
    PyObject *aobj, *dobj;
    nxlpy_dlist_t *dl;
    nxl_agent_t *a;
    nxl_dlist_t c;
    nxl_status_t st;
    double t0, t;

    (void)mod;
    if (!PyArg_ParseTuple(args, "O!O!", &nxlpy_agent_type, &aobj,
                          &nxlpy_dlist_type, &dobj)) {
        return NULL;
    }
    if (nxlpy_agent_check((nxlpy_agent_t *)aobj) < 0) {
        return NULL;
    }
    a = ((nxlpy_agent_t *)aobj)->agent;
    dl = (nxlpy_dlist_t *)dobj;
    c = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
    t0 = now_s();
    st = nxl_mem_register(a, &c, NULL);
    if (st == NXL_OK) {
        st = nxl_mem_deregister(a, &c, NULL);
    }
    t = now_s() - t0;
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyFloat_FromDouble(t);
}

PyMethodDef nxlpy_bench_methods[] = {
    {"_bench_c_register", bench_register, METH_VARARGS, NULL},
    {"_bench_c_status", bench_status, METH_VARARGS, NULL},
    {"_bench_c_post_wait", bench_post_wait, METH_VARARGS, NULL},
    {"_bench_c_make", bench_make, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
