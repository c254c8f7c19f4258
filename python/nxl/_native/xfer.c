/* xfer.c - nxl._nxl.Transfer: a transfer request (post, status, wait,
 * telemetry, release). Released by release()/close(), a with block or
 * garbage collection; nxl_xfer_release cancels one still in flight and
 * returns once no backend touches its buffers. `await transfer` goes
 * through the hook nxl._aio installs. */
#include "nxlpy.h"

#include <math.h>

PyObject *nxlpy_await_hook;

static PyTypeObject telemetry_type;

static PyStructSequence_Field telemetry_fields[] = {
    {"start_us", "wall clock (CLOCK_REALTIME, us) of the post"},
    {"post_us", "time inside post (us)"},
    {"xfer_us", "post to completion (us)"},
    {"total_bytes", "bytes moved"},
    {"desc_count", "descriptors after merging"},
    {NULL, NULL},
};

static PyStructSequence_Desc telemetry_desc = {
    "nxl.Telemetry",
    "Telemetry of a transfer's last completed post.",
    telemetry_fields,
    5,
};

/* nxlpy_xfer_new wraps x (owned from here) and links it into the agent's
 * list of live transfers; keep holds the local memory's owner. */
PyObject *
nxlpy_xfer_new(nxlpy_agent_t *agent, nxl_xfer_t *x, int op, PyObject *keep)
{
    nxlpy_xfer_t *self;

    self = PyObject_GC_New(nxlpy_xfer_t, &nxlpy_xfer_type);
    if (self == NULL) {
        nxl_xfer_release(x);
        return NULL;
    }
    self->agent = (nxlpy_agent_t *)Py_NewRef(agent);
    self->xfer = x;
    self->op = op;
    self->busy = 0;
    self->keep = Py_XNewRef(keep);
    self->weakrefs = NULL;
    self->prev = NULL;
    self->next = agent->xfers;
    if (agent->xfers != NULL) {
        agent->xfers->prev = self;
    }
    agent->xfers = self;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* xfer_unlink takes self off its agent's list. */
static void
xfer_unlink(nxlpy_xfer_t *self)
{
    if (self->prev != NULL) {
        self->prev->next = self->next;
    } else if (self->agent->xfers == self) {
        self->agent->xfers = self->next;
    }
    if (self->next != NULL) {
        self->next->prev = self->prev;
    }
    self->prev = self->next = NULL;
}

/* nxlpy_xfer_detach_all forgets the handles of agent's live transfers
 * (nxl_agent_destroy frees them). */
void
nxlpy_xfer_detach_all(nxlpy_agent_t *agent)
{
    nxlpy_xfer_t *t = agent->xfers, *next;

    for (; t != NULL; t = next) {
        next = t->next;
        t->xfer = NULL;
        t->prev = t->next = NULL;
    }
    agent->xfers = NULL;
}

/* xfer_check returns 0 when the handle is live, else raises. */
static int
xfer_check(nxlpy_xfer_t *self)
{
    if (self->xfer != NULL) {
        return 0;
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "the transfer was released%s",
                    self->agent->agent ? "" : " (its agent is closed)");
    return -1;
}

/* xfer_post is Transfer.post(notif=None) -> nxl.OK (done) or nxl.IN_PROG.
 * A notif replaces the attached notification; None keeps it. */
static PyObject *
xfer_post(nxlpy_xfer_t *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *notif = Py_None;
    nxl_opts_t opts;
    nxl_status_t st;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, len;

    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "post() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1) {
        notif = args[0];
    } else if (nkw == 1) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                             "notif") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "post() got an unexpected keyword argument %R",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
        notif = args[0];
    }
    if (self->xfer == NULL) {
        xfer_check(self);
        return NULL;
    }
    if (notif == Py_None) {
        st = nxl_xfer_post(self->xfer, NULL);
    } else {
        nxl_opts_init(&opts);
        if (nxlpy_parse_bytes(notif, (const char **)&opts.notif, &len) < 0) {
            return NULL;
        }
        opts.has_notif = 1;
        opts.notif_len = (size_t)len;
        st = nxl_xfer_post(self->xfer, &opts);
    }
    if (st < 0) {
        return nxlpy_raise(st);
    }
    return PyLong_FromLong(st);
}

/* xfer_get_status is Transfer.status: nxl.OK or nxl.IN_PROG (driving
 * progress); the transfer's error is raised. */
static PyObject *
xfer_get_status(nxlpy_xfer_t *self, void *closure)
{
    nxl_status_t st;

    (void)closure;
    if (self->xfer == NULL) {
        xfer_check(self);
        return NULL;
    }
    st = nxl_xfer_status(self->xfer);
    if (st < 0) {
        return nxlpy_raise(st);
    }
    return PyLong_FromLong(st);
}

/* xfer_get_raw_status is Transfer.raw_status: the status as an int,
 * errors included (no exception). */
static PyObject *
xfer_get_raw_status(nxlpy_xfer_t *self, void *closure)
{
    (void)closure;
    if (self->xfer == NULL) {
        xfer_check(self);
        return NULL;
    }
    return PyLong_FromLong(nxl_xfer_status(self->xfer));
}

/* xfer_wait is Transfer.wait(timeout=None) -> nxl.OK: blocks (GIL
 * released, sleeping on the backends' fds) until done; raises the
 * transfer's error, or TimedOutError after timeout seconds. Waits are cut
 * into slices so that signals (Ctrl-C) are handled. */
static PyObject *
xfer_wait(nxlpy_xfer_t *self, PyObject *const *args, Py_ssize_t nargs)
{
    nxlpy_agent_t *a = self->agent;
    double t = -1.0, left_ms;
    nxl_status_t st;
    int slice;

    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        t = PyFloat_AsDouble(args[0]);
        if (t == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (t < 0 || isnan(t)) {
            return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                                   "timeout must be >= 0 seconds or None");
        }
    }
    if (self->xfer == NULL) {
        xfer_check(self);
        return NULL;
    }
    st = nxl_xfer_status(self->xfer);
    left_ms = t * 1000.0;
    while (st == NXL_IN_PROG) {
        if (t >= 0 && left_ms <= 0) {
            return nxlpy_raise_msg(NXL_ERR_TIMEOUT,
                                   "transfer still in progress after %S s",
                                   args[0]);
        }
        slice = (t < 0 || left_ms > 200) ? 200 : (int)ceil(left_ms);
        self->busy++;
        NXLPY_UNLOCKED(a, st = nxl_xfer_wait(self->xfer, slice));
        self->busy--;
        left_ms -= slice;
        if (st == NXL_ERR_TIMEOUT) {
            st = NXL_IN_PROG;
            if (PyErr_CheckSignals() < 0) {
                return NULL;
            }
        }
    }
    if (st < 0) {
        return nxlpy_raise(st);
    }
    return PyLong_FromLong(st);
}

/* xfer_get_telemetry is Transfer.telemetry -> nxl.Telemetry of the last
 * completed post (NoTelemetryError unless the agent captures it). */
static PyObject *
xfer_get_telemetry(nxlpy_xfer_t *self, void *closure)
{
    nxl_xfer_telemetry_t tm;
    nxl_status_t st;
    PyObject *res;

    (void)closure;
    if (xfer_check(self) < 0) {
        return NULL;
    }
    st = nxl_xfer_telemetry(self->xfer, &tm);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    res = PyStructSequence_New(&telemetry_type);
    if (res == NULL) {
        return NULL;
    }
    PyStructSequence_SET_ITEM(res, 0, PyLong_FromUnsignedLongLong(tm.start_us));
    PyStructSequence_SET_ITEM(res, 1, PyLong_FromUnsignedLongLong(tm.post_us));
    PyStructSequence_SET_ITEM(res, 2, PyLong_FromUnsignedLongLong(tm.xfer_us));
    PyStructSequence_SET_ITEM(res, 3,
                              PyLong_FromUnsignedLongLong(tm.total_bytes));
    PyStructSequence_SET_ITEM(res, 4,
                              PyLong_FromUnsignedLongLong(tm.desc_count));
    if (PyErr_Occurred()) {
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

/* xfer_get_backend is Transfer.backend: the name of the backend running
 * it. */
static PyObject *
xfer_get_backend(nxlpy_xfer_t *self, void *closure)
{
    nxl_backend_t *be;
    nxl_status_t st;

    (void)closure;
    if (xfer_check(self) < 0) {
        return NULL;
    }
    st = nxl_xfer_backend(self->xfer, &be);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyUnicode_FromString(nxl_backend_name(be));
}

/* xfer_drop releases the handle without the GIL. */
static void
xfer_drop(nxlpy_xfer_t *self)
{
    nxl_xfer_t *x = self->xfer;

    self->xfer = NULL;
    xfer_unlink(self);
    NXLPY_UNLOCKED(self->agent, nxl_xfer_release(x));
    nxlpy_agent_retry_deferred(self->agent);
}

/* xfer_release is Transfer.release() (also close()): cancels a transfer in
 * flight; idempotent. Refused while another thread waits on it. */
static PyObject *
xfer_release(nxlpy_xfer_t *self, PyObject *unused)
{
    (void)unused;
    if (self->busy > 0) {
        return nxlpy_raise_msg(NXL_ERR_NOT_ALLOWED,
                               "another thread is waiting on the transfer");
    }
    if (self->xfer != NULL) {
        xfer_drop(self);
    }
    Py_RETURN_NONE;
}

/* xfer_dealloc releases (cancelling if in flight). */
static void
xfer_dealloc(nxlpy_xfer_t *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->xfer != NULL) {
        xfer_drop(self);
    }
    Py_CLEAR(self->keep);
    Py_CLEAR(self->agent);
    PyObject_GC_Del(self);
}

/* xfer_traverse visits the references. */
static int
xfer_traverse(nxlpy_xfer_t *self, visitproc visit, void *arg)
{
    Py_VISIT(self->agent);
    Py_VISIT(self->keep);
    return 0;
}

/* xfer_await is Transfer.__await__: the iterator the asyncio hook
 * returns. */
static PyObject *
xfer_await(nxlpy_xfer_t *self)
{
    if (nxlpy_await_hook == NULL) {
        PyErr_SetString(PyExc_TypeError, "import nxl to await transfers");
        return NULL;
    }
    return PyObject_CallOneArg(nxlpy_await_hook, (PyObject *)self);
}

/* xfer_enter is Transfer.__enter__. */
static PyObject *
xfer_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* xfer_exit is Transfer.__exit__: release(). */
static PyObject *
xfer_exit(nxlpy_xfer_t *self, PyObject *args)
{
    (void)args;
    return xfer_release(self, NULL);
}

/* xfer_get_agent is Transfer.agent. */
static PyObject *
xfer_get_agent(nxlpy_xfer_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->agent);
}

/* xfer_get_op is Transfer.op (nxl.READ or nxl.WRITE). */
static PyObject *
xfer_get_op(nxlpy_xfer_t *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(self->op);
}

/* xfer_get_released is Transfer.released. */
static PyObject *
xfer_get_released(nxlpy_xfer_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->xfer == NULL);
}

/* xfer_repr shows the operation and state. */
static PyObject *
xfer_repr(nxlpy_xfer_t *self)
{
    return PyUnicode_FromFormat(
        "<nxl.Transfer %s on %R%s>", self->op == NXL_READ ? "READ" : "WRITE",
        self->agent->name, self->xfer ? "" : " released");
}

static PyAsyncMethods xfer_as_async = {
    .am_await = (unaryfunc)xfer_await,
};

static PyMethodDef xfer_methods[] = {
    {"post", (PyCFunction)(void (*)(void))xfer_post,
     METH_FASTCALL | METH_KEYWORDS,
     "post(notif=None)\n--\n\nStart the transfer: nxl.OK when done at once, "
     "else nxl.IN_PROG."},
    {"wait", (PyCFunction)(void (*)(void))xfer_wait, METH_FASTCALL,
     "wait(timeout=None)\n--\n\nBlock (GIL released) until done; returns "
     "nxl.OK, raises the transfer's error or TimedOutError."},
    {"release", (PyCFunction)xfer_release, METH_NOARGS,
     "release()\n--\n\nCancel if in flight and free (idempotent)."},
    {"close", (PyCFunction)xfer_release, METH_NOARGS,
     "close()\n--\n\nSame as release()."},
    {"__enter__", (PyCFunction)xfer_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)xfer_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef xfer_getset[] = {
    {"status", (getter)xfer_get_status, NULL,
     "nxl.OK or nxl.IN_PROG (drives progress); raises the transfer's error",
     NULL},
    {"raw_status", (getter)xfer_get_raw_status, NULL,
     "the status as an int, errors included", NULL},
    {"telemetry", (getter)xfer_get_telemetry, NULL,
     "nxl.Telemetry of the last completed post", NULL},
    {"backend", (getter)xfer_get_backend, NULL, "the backend's name", NULL},
    {"agent", (getter)xfer_get_agent, NULL, "the agent", NULL},
    {"op", (getter)xfer_get_op, NULL, "nxl.READ or nxl.WRITE", NULL},
    {"released", (getter)xfer_get_released, NULL,
     "True once released (or its agent closed)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_xfer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.Transfer",
    .tp_basicsize = sizeof(nxlpy_xfer_t),
    .tp_dealloc = (destructor)xfer_dealloc,
    .tp_as_async = &xfer_as_async,
    .tp_repr = (reprfunc)xfer_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A transfer request (Agent.make_xfer, Agent.xfer).",
    .tp_traverse = (traverseproc)xfer_traverse,
    .tp_weaklistoffset = offsetof(nxlpy_xfer_t, weakrefs),
    .tp_methods = xfer_methods,
    .tp_getset = xfer_getset,
};

/* nxlpy_xfer_init_types readies nxl.Telemetry and adds it to module. */
int
nxlpy_xfer_init_types(PyObject *module)
{
    if (PyStructSequence_InitType2(&telemetry_type, &telemetry_desc) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "Telemetry",
                                 (PyObject *)&telemetry_type);
}
