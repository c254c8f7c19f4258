/* prepped.c - nxl._nxl.Prepped: a descriptor list resolved once
 * (nxl_dlist_prep) for repeated Agent.make_xfer calls. */
#include "nxlpy.h"

/* nxlpy_prepped_new wraps prepped (owned from here) made from dlist for
 * remote (None = local memory). */
PyObject *
nxlpy_prepped_new(nxlpy_agent_t *agent, nxl_prepped_t *prepped,
                  nxlpy_dlist_t *dlist, PyObject *remote)
{
    nxlpy_prepped_t *self;

    self = PyObject_GC_New(nxlpy_prepped_t, &nxlpy_prepped_type);
    if (self == NULL) {
        return NULL;
    }
    self->agent = (nxlpy_agent_t *)Py_NewRef(agent);
    self->prepped = prepped;
    self->count = dlist->count;
    self->readonly = dlist->readonly;
    self->remote = Py_NewRef(remote);
    /* Only a list that holds exporters needs to stay: it keeps the local
     * memory alive as long as transfers can be made from it. */
    self->dlist = dlist->nkeeps ? Py_NewRef(dlist) : NULL;
    self->weakrefs = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* prepped_release is Prepped.release() (also close()): idempotent;
 * transfers made from the list stay valid. */
static PyObject *
prepped_release(nxlpy_prepped_t *self, PyObject *unused)
{
    (void)unused;
    nxl_dlist_release(self->prepped);
    self->prepped = NULL;
    Py_RETURN_NONE;
}

/* prepped_dealloc releases the list. */
static void
prepped_dealloc(nxlpy_prepped_t *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    nxl_dlist_release(self->prepped);
    Py_CLEAR(self->dlist);
    Py_CLEAR(self->remote);
    Py_CLEAR(self->agent);
    PyObject_GC_Del(self);
}

/* prepped_traverse visits the references. */
static int
prepped_traverse(nxlpy_prepped_t *self, visitproc visit, void *arg)
{
    Py_VISIT(self->agent);
    Py_VISIT(self->dlist);
    return 0;
}

/* prepped_len is len(Prepped): the number of descriptors. */
static Py_ssize_t
prepped_len(nxlpy_prepped_t *self)
{
    return (Py_ssize_t)self->count;
}

/* prepped_enter is Prepped.__enter__. */
static PyObject *
prepped_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* prepped_exit is Prepped.__exit__: release(). */
static PyObject *
prepped_exit(nxlpy_prepped_t *self, PyObject *args)
{
    (void)args;
    return prepped_release(self, NULL);
}

/* prepped_get_remote is Prepped.remote (None for local memory). */
static PyObject *
prepped_get_remote(nxlpy_prepped_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->remote);
}

/* prepped_get_agent is Prepped.agent. */
static PyObject *
prepped_get_agent(nxlpy_prepped_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->agent);
}

/* prepped_get_released is Prepped.released. */
static PyObject *
prepped_get_released(nxlpy_prepped_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->prepped == NULL);
}

/* prepped_repr shows the side and size. */
static PyObject *
prepped_repr(nxlpy_prepped_t *self)
{
    return PyUnicode_FromFormat("<nxl.Prepped %zu descriptors, remote=%R%s>",
                                self->count, self->remote,
                                self->prepped ? "" : " released");
}

static PySequenceMethods prepped_as_sequence = {
    .sq_length = (lenfunc)prepped_len,
};

static PyMethodDef prepped_methods[] = {
    {"release", (PyCFunction)prepped_release, METH_NOARGS,
     "release()\n--\n\nFree the prepared list (idempotent)."},
    {"close", (PyCFunction)prepped_release, METH_NOARGS,
     "close()\n--\n\nSame as release()."},
    {"__enter__", (PyCFunction)prepped_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)prepped_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef prepped_getset[] = {
    {"remote", (getter)prepped_get_remote, NULL,
     "the peer's name, or None for local memory", NULL},
    {"agent", (getter)prepped_get_agent, NULL, "the agent", NULL},
    {"released", (getter)prepped_get_released, NULL, "True once released",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_prepped_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.Prepped",
    .tp_basicsize = sizeof(nxlpy_prepped_t),
    .tp_dealloc = (destructor)prepped_dealloc,
    .tp_repr = (reprfunc)prepped_repr,
    .tp_as_sequence = &prepped_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A prepared descriptor list (Agent.prep) for make_xfer.",
    .tp_traverse = (traverseproc)prepped_traverse,
    .tp_weaklistoffset = offsetof(nxlpy_prepped_t, weakrefs),
    .tp_methods = prepped_methods,
    .tp_getset = prepped_getset,
};
