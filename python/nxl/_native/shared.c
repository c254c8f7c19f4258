/* shared.c - nxl._nxl.SharedBuffer: memory from nxl_mem_alloc_shared (a
 * memfd that same-host peers map once, so SHM transfers on it are plain
 * copies), exported through the buffer protocol. */
#include "nxlpy.h"

/* shared_new is SharedBuffer(size): size bytes (rounded up to a page),
 * zeroed. */
static PyObject *
shared_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", NULL};
    nxlpy_shared_t *self;
    Py_ssize_t size;
    void *addr = NULL;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "n:SharedBuffer", kwlist,
                                     &size)) {
        return NULL;
    }
    if (size <= 0) {
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "size must be positive");
    }
    Py_BEGIN_ALLOW_THREADS st = nxl_mem_alloc_shared((size_t)size, &addr);
    Py_END_ALLOW_THREADS if (st != NXL_OK)
    {
        return nxlpy_raise(st);
    }
    self = (nxlpy_shared_t *)type->tp_alloc(type, 0);
    if (self == NULL) {
        nxl_mem_free_shared(addr);
        return NULL;
    }
    self->addr = addr;
    self->size = (size_t)size;
    self->exports = 0;
    return (PyObject *)self;
}

/* shared_dealloc frees the memory; no view can be alive (each holds a
 * reference). Deregister it first: a registration holds a view. */
static void
shared_dealloc(nxlpy_shared_t *self)
{
    nxl_mem_free_shared(self->addr);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* shared_getbuffer exports the bytes (writable). */
static int
shared_getbuffer(nxlpy_shared_t *self, Py_buffer *view, int flags)
{
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->addr,
                          (Py_ssize_t)self->size, 0, flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

/* shared_releasebuffer ends one export. */
static void
shared_releasebuffer(nxlpy_shared_t *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

/* shared_len is len(SharedBuffer). */
static Py_ssize_t
shared_len(nxlpy_shared_t *self)
{
    return (Py_ssize_t)self->size;
}

/* shared_get_address is SharedBuffer.address. */
static PyObject *
shared_get_address(nxlpy_shared_t *self, void *closure)
{
    (void)closure;
    return PyLong_FromVoidPtr(self->addr);
}

static PyBufferProcs shared_as_buffer = {
    .bf_getbuffer = (getbufferproc)shared_getbuffer,
    .bf_releasebuffer = (releasebufferproc)shared_releasebuffer,
};

static PySequenceMethods shared_as_sequence = {
    .sq_length = (lenfunc)shared_len,
};

static PyGetSetDef shared_getset[] = {
    {"address", (getter)shared_get_address, NULL, "the start address", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_shared_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.SharedBuffer",
    .tp_basicsize = sizeof(nxlpy_shared_t),
    .tp_dealloc = (destructor)shared_dealloc,
    .tp_as_sequence = &shared_as_sequence,
    .tp_as_buffer = &shared_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SharedBuffer(size)\n--\n\nZeroed memory in a memfd "
              "(nxl_mem_alloc_shared): same-host peers map it once, so SHM "
              "READ/WRITE on it are plain copies. Writable buffer protocol "
              "(numpy.frombuffer).",
    .tp_getset = shared_getset,
    .tp_new = shared_new,
};
