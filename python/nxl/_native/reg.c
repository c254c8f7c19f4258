/* reg.c - nxl._nxl.Registration: memory registered with an agent, until
 * deregister()/close(), the end of a with block, or garbage collection. It
 * holds the DescList (and so the memory's exporters) and the agent. */
#include "nxlpy.h"

/* nxlpy_reg_new wraps a registration of dlist (made with the backends
 * tuple, or NULL for all); takes new references. */
PyObject *
nxlpy_reg_new(nxlpy_agent_t *agent, nxlpy_dlist_t *dlist, PyObject *backends)
{
    nxlpy_reg_t *self;

    self = PyObject_GC_New(nxlpy_reg_t, &nxlpy_reg_type);
    if (self == NULL) {
        return NULL;
    }
    self->agent = (nxlpy_agent_t *)Py_NewRef(agent);
    self->dlist = (nxlpy_dlist_t *)Py_NewRef(dlist);
    self->backends = Py_XNewRef(backends);
    self->weakrefs = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* reg_drop deregisters (when the agent is still open) and drops the
 * DescList. Returns 0, or -1 with an exception (the library's status in
 * *st_p), the registration kept. */
static int
reg_drop(nxlpy_reg_t *self, nxl_status_t *st_p)
{
    nxl_backend_t *bes[16];
    nxlpy_dlist_t *dl = self->dlist;
    nxlpy_agent_t *a = self->agent;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st = NXL_OK;

    if (dl == NULL) {
        return 0;
    }
    if (a->agent != NULL) {
        nxl_opts_init(&opts);
        if (nxlpy_opts_backends(a, self->backends, &opts, bes, 16) < 0) {
            return -1;
        }
        /* Taken before the GIL is released: a second deregister on another
         * thread sees none. */
        self->dlist = NULL;
        cdl = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
        NXLPY_UNLOCKED(a, st = nxl_mem_deregister(a->agent, &cdl, &opts));
        if (st != NXL_OK) {
            self->dlist = dl;
            *st_p = st;
            nxlpy_raise(st);
            return -1;
        }
    }
    self->dlist = NULL;
    Py_DECREF(dl);
    return 0;
}

/* reg_deregister is Registration.deregister() (also close()):
 * idempotent. */
static PyObject *
reg_deregister(nxlpy_reg_t *self, PyObject *unused)
{
    nxl_status_t st;

    (void)unused;
    if (reg_drop(self, &st) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* reg_defer hands the registration to its agent, which deregisters it
 * once no transfer in flight uses it (nxlpy_agent_retry_deferred); the
 * DescList keeps the memory alive until then. Returns -1 with an
 * exception when it cannot. */
static int
reg_defer(nxlpy_reg_t *self)
{
    nxlpy_agent_t *a = self->agent;
    PyObject *item;
    int rc;

    if (a->deferred == NULL && (a->deferred = PyList_New(0)) == NULL) {
        return -1;
    }
    item = PyTuple_Pack(2, (PyObject *)self->dlist,
                        self->backends ? self->backends : Py_None);
    if (item == NULL) {
        return -1;
    }
    rc = PyList_Append(a->deferred, item);
    Py_DECREF(item);
    if (rc == 0) {
        Py_CLEAR(self->dlist);
    }
    return rc;
}

void
nxlpy_agent_retry_deferred(nxlpy_agent_t *a)
{
    nxl_backend_t *bes[16];
    PyObject *et, *ev, *tb, *item;
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;
    Py_ssize_t i;

    if (a->deferred == NULL || a->agent == NULL) {
        return;
    }
    PyErr_Fetch(&et, &ev, &tb);
    for (i = PyList_GET_SIZE(a->deferred) - 1; i >= 0; i--) {
        item = PyList_GET_ITEM(a->deferred, i);
        dl = (nxlpy_dlist_t *)PyTuple_GET_ITEM(item, 0);
        nxl_opts_init(&opts);
        if (nxlpy_opts_backends(a, PyTuple_GET_ITEM(item, 1), &opts, bes, 16) <
            0) {
            PyErr_Clear();
            continue;
        }
        cdl = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
        /* With the GIL: short, and no library thread waits for it. */
        st = nxl_mem_deregister(a->agent, &cdl, &opts);
        if (st != NXL_ERR_NOT_ALLOWED) {
            (void)PyList_SetSlice(a->deferred, i, i + 1, NULL);
        }
    }
    PyErr_Restore(et, ev, tb);
}

/* reg_dealloc deregisters; memory a transfer in flight still uses is left
 * to the agent (reg_defer); another failure is reported as unraisable. */
static void
reg_dealloc(nxlpy_reg_t *self)
{
    PyObject *et, *ev, *tb;
    nxl_status_t st = NXL_OK;

    PyObject_GC_UnTrack(self);
    PyErr_Fetch(&et, &ev, &tb);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (reg_drop(self, &st) < 0) {
        if (st == NXL_ERR_NOT_ALLOWED && self->agent->agent != NULL) {
            PyErr_Clear();
            if (reg_defer(self) == 0) {
                goto out;
            }
        }
        PyErr_WriteUnraisable((PyObject *)self);
        Py_CLEAR(self->dlist);
    }
out:
    Py_CLEAR(self->backends);
    Py_CLEAR(self->agent);
    PyObject_GC_Del(self);
    PyErr_Restore(et, ev, tb);
}

/* reg_traverse visits the references (cycles through nxl.Agent's
 * __dict__ are broken by clearing the agent's dict). */
static int
reg_traverse(nxlpy_reg_t *self, visitproc visit, void *arg)
{
    Py_VISIT(self->agent);
    Py_VISIT(self->dlist);
    Py_VISIT(self->backends);
    return 0;
}

/* reg_enter is Registration.__enter__. */
static PyObject *
reg_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* reg_exit is Registration.__exit__: deregister(). */
static PyObject *
reg_exit(nxlpy_reg_t *self, PyObject *args)
{
    (void)args;
    return reg_deregister(self, NULL);
}

/* reg_get_descs is Registration.descs (None once deregistered). */
static PyObject *
reg_get_descs(nxlpy_reg_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->dlist ? (PyObject *)self->dlist : Py_None);
}

/* reg_get_registered is Registration.registered. */
static PyObject *
reg_get_registered(nxlpy_reg_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->dlist != NULL && self->agent->agent != NULL);
}

/* reg_get_agent is Registration.agent. */
static PyObject *
reg_get_agent(nxlpy_reg_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->agent);
}

/* reg_repr shows the size and state. */
static PyObject *
reg_repr(nxlpy_reg_t *self)
{
    if (self->dlist == NULL) {
        return PyUnicode_FromString("<nxl.Registration deregistered>");
    }
    return PyUnicode_FromFormat("<nxl.Registration %zu descriptors on %R>",
                                self->dlist->count, self->agent->name);
}

static PyMethodDef reg_methods[] = {
    {"deregister", (PyCFunction)reg_deregister, METH_NOARGS,
     "deregister()\n--\n\nDeregister the memory (idempotent)."},
    {"close", (PyCFunction)reg_deregister, METH_NOARGS,
     "close()\n--\n\nSame as deregister()."},
    {"__enter__", (PyCFunction)reg_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)reg_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reg_getset[] = {
    {"descs", (getter)reg_get_descs, NULL, "the registered DescList", NULL},
    {"registered", (getter)reg_get_registered, NULL,
     "True until deregistered (or the agent closed)", NULL},
    {"agent", (getter)reg_get_agent, NULL, "the agent", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_reg_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.Registration",
    .tp_basicsize = sizeof(nxlpy_reg_t),
    .tp_dealloc = (destructor)reg_dealloc,
    .tp_repr = (reprfunc)reg_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Registered memory (Agent.register); deregistered by "
              "deregister(), close(), a with block or garbage collection.",
    .tp_traverse = (traverseproc)reg_traverse,
    .tp_weaklistoffset = offsetof(nxlpy_reg_t, weakrefs),
    .tp_methods = reg_methods,
    .tp_getset = reg_getset,
};
