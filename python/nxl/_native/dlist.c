/* dlist.c - nxl._nxl.DescList: a descriptor list of one memory kind, built
 * in C from an Nx3 integer array, a sequence of (addr, len, dev) tuples, or
 * objects that describe memory (kept alive by the list). */
#include "nxlpy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof(unsigned long) == sizeof(uint64_t), "LP64 expected");
_Static_assert(sizeof(nxl_desc_t) == 24, "descriptor layout");

/* nxlpy_parse_mem reads a memory kind: an int (nxl.Mem), a name ("DRAM",
 * "VRAM", "BLK"/"BLOCK", "OBJ", "FILE", NIXL's legacy "cpu"/"cuda").
 * Returns 1 when set, 0 for None, -1 with an exception. */
int
nxlpy_parse_mem(PyObject *obj, nxl_mem_t *mem_p)
{
    static const struct {
        const char *name;
        nxl_mem_t mem;
    } names[] = {{"DRAM", NXL_DRAM}, {"VRAM", NXL_VRAM}, {"BLK", NXL_BLK},
                 {"BLOCK", NXL_BLK}, {"OBJ", NXL_OBJ},   {"FILE", NXL_FILE},
                 {"CPU", NXL_DRAM},  {"CUDA", NXL_VRAM}};
    const char *s;
    size_t i;
    long v;

    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (PyLong_Check(obj)) {
        v = PyLong_AsLong(obj);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (v < 0 || v >= NXL_MEM_KINDS) {
            nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "bad memory kind %ld", v);
            return -1;
        }
        *mem_p = (nxl_mem_t)v;
        return 1;
    }
    if (PyUnicode_Check(obj)) {
        s = PyUnicode_AsUTF8(obj);
        if (s == NULL) {
            return -1;
        }
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strcasecmp(s, names[i].name) == 0) {
                *mem_p = names[i].mem;
                return 1;
            }
        }
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                    "bad memory kind %R (DRAM, VRAM, BLK, OBJ, FILE)", obj);
    return -1;
}

/* dlist_alloc makes an empty DescList of n descriptors. */
static nxlpy_dlist_t *
dlist_alloc(size_t n)
{
    nxlpy_dlist_t *dl;

    dl = PyObject_New(nxlpy_dlist_t, &nxlpy_dlist_type);
    if (dl == NULL) {
        return NULL;
    }
    dl->mem = NXL_DRAM;
    dl->readonly = 0;
    dl->count = 0;
    dl->descs = NULL;
    dl->keeps = NULL;
    dl->nkeeps = 0;
    dl->exports = 0;
    if (n > 0) {
        dl->descs = PyMem_RawMalloc(n * sizeof(nxl_desc_t));
        if (dl->descs == NULL) {
            Py_DECREF(dl);
            PyErr_NoMemory();
            return NULL;
        }
    }
    dl->count = n;
    return dl;
}

/* to_u64 converts an int (or an object with __index__) to uint64. */
static int
to_u64(PyObject *o, uint64_t *v_p)
{
    unsigned long v;
    PyObject *idx;

    if (PyLong_Check(o)) {
        v = PyLong_AsUnsignedLong(o);
    } else {
        idx = PyNumber_Index(o);
        if (idx == NULL) {
            return -1;
        }
        v = PyLong_AsUnsignedLong(idx);
        Py_DECREF(idx);
    }
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *v_p = v;
    return 0;
}

/* parse_row reads an (addr, len, dev[, meta]) tuple or list into d.
 * Returns 1 when item is such a row, 0 when it is not, -1 on error. */
static int
parse_row(PyObject *item, size_t i, nxl_desc_t *d)
{
    PyObject **f;
    Py_ssize_t n;

    if (PyTuple_Check(item)) {
        n = PyTuple_GET_SIZE(item);
        f = &PyTuple_GET_ITEM(item, 0);
    } else if (PyList_Check(item)) {
        n = PyList_GET_SIZE(item);
        f = &PyList_GET_ITEM(item, 0);
    } else {
        return 0;
    }
    if (n != 3 && n != 4) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "descriptor %zu: expected (addr, len, dev), got %zd "
                        "fields",
                        i, n);
        return -1;
    }
    if (to_u64(f[0], &d->addr) < 0 || to_u64(f[1], &d->len) < 0 ||
        to_u64(f[2], &d->dev_id) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                            "descriptor %zu: addr, len and dev must be "
                            "non-negative integers below 2**64",
                            i);
        }
        return -1;
    }
    return 1;
}

/* set_kind merges a memory object's kind into the list's. */
static int
set_kind(nxlpy_dlist_t *dl, int *have_kind, nxl_mem_t kind, size_t i)
{
    if (*have_kind && dl->mem != kind) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "descriptor %zu: memory kind %d differs from the "
                        "list's %d",
                        i, (int)kind, (int)dl->mem);
        return -1;
    }
    dl->mem = kind;
    *have_kind = 1;
    return 0;
}

/* from_sequence builds a list from a list or tuple of rows or memory
 * objects. */
static nxlpy_dlist_t *
from_sequence(PyObject *src, nxl_mem_t mem, int have_mem)
{
    PyObject **items = PySequence_Fast_ITEMS(src);
    size_t n = (size_t)PySequence_Fast_GET_SIZE(src), i;
    nxlpy_dlist_t *dl;
    int have_kind = have_mem, rc, ro;
    nxl_mem_t kind;

    dl = dlist_alloc(n);
    if (dl == NULL) {
        return NULL;
    }
    dl->mem = mem;
    for (i = 0; i < n; i++) {
        rc = parse_row(items[i], i, &dl->descs[i]);
        if (rc < 0) {
            goto err;
        }
        if (rc > 0) {
            continue;
        }
        if (dl->keeps == NULL) {
            dl->keeps = PyMem_Calloc(n, sizeof(nxlpy_keep_t));
            if (dl->keeps == NULL) {
                PyErr_NoMemory();
                goto err;
            }
        }
        if (nxlpy_mem_get(items[i], &dl->descs[i], &kind, &ro,
                          &dl->keeps[dl->nkeeps]) < 0) {
            goto err;
        }
        dl->nkeeps++;
        dl->readonly |= ro;
        if (set_kind(dl, &have_kind, kind, i) < 0) {
            goto err;
        }
    }
    return dl;

err:
    Py_DECREF(dl);
    return NULL;
}

/* is_u64_format reports whether a struct-module format is an 8-byte
 * native integer. */
static int
is_u64_format(const char *fmt)
{
    if (fmt == NULL) {
        return 0;
    }
    if (fmt[0] == '@' || fmt[0] == '=' || fmt[0] == '<') {
        fmt++;
    }
    return fmt[0] != '\0' && fmt[1] == '\0' && strchr("qQlLnN", fmt[0]);
}

/* from_table copies an Nx3 integer buffer (any strides) into a list. */
static nxlpy_dlist_t *
from_table(const Py_buffer *v, nxl_mem_t mem)
{
    size_t n = (size_t)v->shape[0], i;
    const char *base = v->buf;
    nxlpy_dlist_t *dl;

    dl = dlist_alloc(n);
    if (dl == NULL) {
        return NULL;
    }
    dl->mem = mem;
    if (n > 0 && PyBuffer_IsContiguous(v, 'C')) {
        memcpy(dl->descs, v->buf, n * sizeof(nxl_desc_t));
        return dl;
    }
    for (i = 0; i < n; i++) {
        const char *row = base + (Py_ssize_t)i * v->strides[0];
        memcpy(&dl->descs[i].addr, row, 8);
        memcpy(&dl->descs[i].len, row + v->strides[1], 8);
        memcpy(&dl->descs[i].dev_id, row + 2 * v->strides[1], 8);
    }
    return dl;
}

/* from_buffer: an Nx3 8-byte integer array is a descriptor table; any
 * other buffer is one piece of memory. */
static nxlpy_dlist_t *
from_buffer(PyObject *src, nxl_mem_t mem, int have_mem)
{
    nxlpy_dlist_t *dl;
    Py_buffer v;

    if (PyObject_GetBuffer(src, &v, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear(); /* e.g. a non-strided exporter: take it as memory */
        return NULL;
    }
    if (v.ndim == 2 && v.shape[1] == 3 && v.itemsize == 8 &&
        is_u64_format(v.format)) {
        dl = from_table(&v, mem);
        PyBuffer_Release(&v);
        return dl;
    }
    if (!PyBuffer_IsContiguous(&v, 'A')) {
        PyBuffer_Release(&v);
        return (nxlpy_dlist_t *)nxlpy_raise_msg(
            NXL_ERR_INVALID_PARAM, "%.100s: memory must be contiguous",
            Py_TYPE(src)->tp_name);
    }
    if (have_mem && mem != NXL_DRAM) {
        PyBuffer_Release(&v);
        return (nxlpy_dlist_t *)nxlpy_raise_msg(
            NXL_ERR_INVALID_PARAM, "a buffer-protocol object is DRAM");
    }
    dl = dlist_alloc(1);
    if (dl == NULL) {
        PyBuffer_Release(&v);
        return NULL;
    }
    dl->keeps = PyMem_Calloc(1, sizeof(nxlpy_keep_t));
    if (dl->keeps == NULL) {
        PyBuffer_Release(&v);
        Py_DECREF(dl);
        return (nxlpy_dlist_t *)PyErr_NoMemory();
    }
    dl->descs[0] = (nxl_desc_t){(uint64_t)(uintptr_t)v.buf, (uint64_t)v.len, 0};
    dl->readonly = v.readonly;
    dl->keeps[0].view = v;
    dl->keeps[0].has_view = 1;
    dl->nkeeps = 1;
    return dl;
}

/* nxlpy_dlist_from returns a new reference to a DescList for src: a
 * DescList (itself), an Nx3 int64/uint64 array, an (addr, len, dev) tuple,
 * a list or tuple of such tuples and/or memory objects, or one memory
 * object. mem (None or a kind) is the kind of raw tuples; memory objects
 * bring their own (a conflicting mem is InvalidParamError). */
nxlpy_dlist_t *
nxlpy_dlist_from(PyObject *src, PyObject *memobj)
{
    nxl_mem_t mem = NXL_DRAM, kind;
    nxlpy_dlist_t *dl;
    int have_mem, ro;

    have_mem = nxlpy_parse_mem(memobj, &mem);
    if (have_mem < 0) {
        return NULL;
    }
    if (Py_IS_TYPE(src, &nxlpy_dlist_type)) {
        dl = (nxlpy_dlist_t *)src;
        if (have_mem && dl->mem != mem) {
            return (nxlpy_dlist_t *)nxlpy_raise_msg(
                NXL_ERR_INVALID_PARAM,
                "the DescList is of memory kind %d, not %d", (int)dl->mem,
                (int)mem);
        }
        Py_INCREF(dl);
        return dl;
    }
    if (PyTuple_Check(src) && (PyTuple_GET_SIZE(src) == 3) &&
        PyLong_Check(PyTuple_GET_ITEM(src, 0))) {
        dl = dlist_alloc(1);
        if (dl != NULL) {
            dl->mem = mem;
            if (parse_row(src, 0, &dl->descs[0]) < 0) {
                Py_CLEAR(dl);
            }
        }
        return dl;
    }
    if (PyList_Check(src) || PyTuple_Check(src)) {
        return from_sequence(src, mem, have_mem);
    }
    if (PyObject_CheckBuffer(src)) {
        dl = from_buffer(src, mem, have_mem);
        if (dl != NULL || PyErr_Occurred()) {
            return dl;
        }
    }
    dl = dlist_alloc(1);
    if (dl == NULL) {
        return NULL;
    }
    dl->keeps = PyMem_Calloc(1, sizeof(nxlpy_keep_t));
    if (dl->keeps == NULL) {
        Py_DECREF(dl);
        return (nxlpy_dlist_t *)PyErr_NoMemory();
    }
    if (nxlpy_mem_get(src, &dl->descs[0], &kind, &ro, &dl->keeps[0]) < 0) {
        Py_DECREF(dl);
        return NULL;
    }
    dl->nkeeps = 1;
    dl->readonly = ro;
    dl->mem = kind;
    if (have_mem && mem != kind) {
        Py_DECREF(dl);
        return (nxlpy_dlist_t *)nxlpy_raise_msg(
            NXL_ERR_INVALID_PARAM, "%.100s is memory kind %d, not %d",
            Py_TYPE(src)->tp_name, (int)kind, (int)mem);
    }
    return dl;
}

/* dlist_new is DescList(src=(), mem=None). */
static PyObject *
dlist_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "mem", NULL};
    PyObject *src = NULL, *mem = Py_None, *empty = NULL, *res;

    (void)type;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:DescList", kwlist, &src,
                                     &mem)) {
        return NULL;
    }
    if (src == NULL) {
        src = empty = PyTuple_New(0);
        if (empty == NULL) {
            return NULL;
        }
    }
    res = (PyObject *)nxlpy_dlist_from(src, mem);
    Py_XDECREF(empty);
    /* DescList(dl) returns dl itself: lists are immutable. */
    return res;
}

/* dlist_dealloc releases the descriptors and the kept exporters. */
static void
dlist_dealloc(nxlpy_dlist_t *self)
{
    size_t i;

    for (i = 0; i < self->nkeeps; i++) {
        nxlpy_keep_release(&self->keeps[i]);
    }
    PyMem_Free(self->keeps);
    PyMem_RawFree(self->descs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* dlist_len is len(DescList). */
static Py_ssize_t
dlist_len(nxlpy_dlist_t *self)
{
    return (Py_ssize_t)self->count;
}

/* dlist_item is DescList[i] -> (addr, len, dev). */
static PyObject *
dlist_item(nxlpy_dlist_t *self, Py_ssize_t i)
{
    const nxl_desc_t *d;

    if (i < 0 || (size_t)i >= self->count) {
        PyErr_SetString(PyExc_IndexError, "DescList index out of range");
        return NULL;
    }
    d = &self->descs[i];
    return Py_BuildValue("(KKK)", (unsigned long long)d->addr,
                         (unsigned long long)d->len,
                         (unsigned long long)d->dev_id);
}

/* dlist_getbuffer exports the descriptors as a read-only Nx3 uint64 array
 * (numpy.asarray(dlist)). */
static int
dlist_getbuffer(nxlpy_dlist_t *self, Py_buffer *view, int flags)
{
    static uint64_t empty[3];

    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "DescList is read-only");
        return -1;
    }
    self->shape[0] = (Py_ssize_t)self->count;
    self->shape[1] = 3;
    self->strides[0] = (Py_ssize_t)sizeof(nxl_desc_t);
    self->strides[1] = 8;
    view->obj = Py_NewRef(self);
    view->buf = self->descs ? (void *)self->descs : (void *)empty;
    view->len = (Py_ssize_t)(self->count * sizeof(nxl_desc_t));
    view->readonly = 1;
    view->itemsize = 8;
    view->format = (flags & PyBUF_FORMAT) ? "Q" : NULL;
    view->ndim = 2;
    view->shape = (flags & PyBUF_ND) ? self->shape : NULL;
    view->strides =
        (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    self->exports++;
    return 0;
}

/* dlist_releasebuffer ends one export. */
static void
dlist_releasebuffer(nxlpy_dlist_t *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

/* dlist_get_mem is DescList.mem (int). */
static PyObject *
dlist_get_mem(nxlpy_dlist_t *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(self->mem);
}

/* dlist_get_readonly is DescList.readonly. */
static PyObject *
dlist_get_readonly(nxlpy_dlist_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->readonly);
}

/* dlist_get_nbytes is DescList.nbytes: the sum of the lengths. */
static PyObject *
dlist_get_nbytes(nxlpy_dlist_t *self, void *closure)
{
    unsigned long long sum = 0;
    size_t i;

    (void)closure;
    for (i = 0; i < self->count; i++) {
        sum += self->descs[i].len;
    }
    return PyLong_FromUnsignedLongLong(sum);
}

/* dlist_reduce is DescList.__reduce__: pickles the descriptors (as a
 * list of tuples) and the kind, not the memory exporters. */
static PyObject *
dlist_reduce(nxlpy_dlist_t *self, PyObject *unused)
{
    PyObject *rows;
    size_t i;

    (void)unused;
    rows = PyList_New((Py_ssize_t)self->count);
    if (rows == NULL) {
        return NULL;
    }
    for (i = 0; i < self->count; i++) {
        PyObject *row = dlist_item(self, (Py_ssize_t)i);

        if (row == NULL) {
            Py_DECREF(rows);
            return NULL;
        }
        PyList_SET_ITEM(rows, (Py_ssize_t)i, row);
    }
    return Py_BuildValue("(O(Ni))", (PyObject *)Py_TYPE(self), rows,
                         (int)self->mem);
}

/* dlist_repr shows the kind and count. */
static PyObject *
dlist_repr(nxlpy_dlist_t *self)
{
    static const char *kinds[] = {"DRAM", "VRAM", "BLK", "OBJ", "FILE"};

    return PyUnicode_FromFormat("<nxl.DescList %s, %zu descriptors>",
                                kinds[self->mem % NXL_MEM_KINDS], self->count);
}

static PyMethodDef dlist_methods[] = {
    {"__reduce__", (PyCFunction)dlist_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods dlist_as_sequence = {
    .sq_length = (lenfunc)dlist_len,
    .sq_item = (ssizeargfunc)dlist_item,
};

static PyBufferProcs dlist_as_buffer = {
    .bf_getbuffer = (getbufferproc)dlist_getbuffer,
    .bf_releasebuffer = (releasebufferproc)dlist_releasebuffer,
};

static PyGetSetDef dlist_getset[] = {
    {"mem", (getter)dlist_get_mem, NULL, "memory kind (int, nxl.Mem)", NULL},
    {"readonly", (getter)dlist_get_readonly, NULL,
     "True when some of the memory is read-only (usable as a source only)",
     NULL},
    {"nbytes", (getter)dlist_get_nbytes, NULL, "total length in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_dlist_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.DescList",
    .tp_basicsize = sizeof(nxlpy_dlist_t),
    .tp_dealloc = (destructor)dlist_dealloc,
    .tp_repr = (reprfunc)dlist_repr,
    .tp_as_sequence = &dlist_as_sequence,
    .tp_as_buffer = &dlist_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "DescList(src=(), mem=None)\n--\n\n"
              "An immutable descriptor list of one memory kind. src is an "
              "Nx3 int64/uint64 array, an (addr, len, dev) tuple, a list of "
              "such tuples and/or objects that describe memory (buffer "
              "protocol, DLPack, __cuda_array_interface__, "
              "__array_interface__), or one such object. The list keeps the "
              "memory's exporters alive. numpy.asarray(dl) is an Nx3 uint64 "
              "view of the descriptors.",
    .tp_methods = dlist_methods,
    .tp_getset = dlist_getset,
    .tp_new = dlist_new,
};
