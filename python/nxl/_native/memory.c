/* memory.c - one descriptor from anything that describes memory: the buffer
 * protocol, DLPack (torch.to_dlpack for torch tensors, else __dlpack__),
 * __cuda_array_interface__ and __array_interface__, in that order. The
 * exporter is kept alive (a buffer view, or a reference) in an
 * nxlpy_keep_t for as long as the memory is used. */
#include "nxlpy.h"

#include "dlpack.h"

#include <stdlib.h>
#include <string.h>

/* nxlpy_keep_release drops what keep holds. */
void
nxlpy_keep_release(nxlpy_keep_t *keep)
{
    if (keep->has_view) {
        PyBuffer_Release(&keep->view);
        keep->has_view = 0;
    }
    Py_CLEAR(keep->obj);
}

/* get_attr returns a new reference to obj.name, or NULL without an
 * exception when obj has no such attribute (other errors set one). */
static PyObject *
get_attr(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);

    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
    }
    return v;
}

/* mem_from_buffer takes memory through the buffer protocol. */
static int
mem_from_buffer(PyObject *obj, nxl_desc_t *d, nxl_mem_t *mem_p, int *readonly_p,
                nxlpy_keep_t *keep)
{
    if (PyObject_GetBuffer(obj, &keep->view, PyBUF_ANY_CONTIGUOUS) < 0) {
        /* A non-contiguous view raises BufferError (or ValueError in
         * numpy); say what NXL needs. */
        if (PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                            "%.100s: memory must be contiguous",
                            Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    keep->has_view = 1;
    d->addr = (uint64_t)(uintptr_t)keep->view.buf;
    d->len = (uint64_t)keep->view.len;
    d->dev_id = 0;
    *mem_p = NXL_DRAM;
    *readonly_p = keep->view.readonly;
    return 0;
}

/* dl_contiguous reports whether a DLPack tensor is compact row-major. */
static int
dl_contiguous(const nxlpy_dl_tensor_t *t)
{
    int64_t expect = 1;
    int32_t i;

    if (t->strides == NULL) {
        return 1;
    }
    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != expect) {
            return 0;
        }
        expect *= t->shape[i];
    }
    return 1;
}

/* mem_from_dlpack takes memory from a DLPack capsule (a new reference,
 * consumed here): it is kept unconsumed, so releasing it runs the
 * producer's deleter. */
static int
mem_from_dlpack(PyObject *obj, PyObject *cap, nxl_desc_t *d, nxl_mem_t *mem_p,
                int *readonly_p, nxlpy_keep_t *keep)
{
    nxlpy_dl_managed_t *mt;
    nxlpy_dl_tensor_t *t;
    uint64_t n = 1;
    int32_t i;

    if (cap == NULL) {
        return -1;
    }
    mt = PyCapsule_GetPointer(cap, "dltensor");
    if (mt == NULL) {
        goto err;
    }
    t = &mt->dl_tensor;
    if (t->ndim < 0 || (t->ndim > 0 && t->shape == NULL)) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "%.100s: malformed DLPack tensor",
                        Py_TYPE(obj)->tp_name);
        goto err;
    }
    if (!dl_contiguous(t)) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "%.100s: memory must be contiguous",
                        Py_TYPE(obj)->tp_name);
        goto err;
    }
    for (i = 0; i < t->ndim; i++) {
        n *= (uint64_t)t->shape[i];
    }
    switch (t->device.device_type) {
    case NXLPY_DL_CPU:
    case NXLPY_DL_CUDA_HOST:
        *mem_p = NXL_DRAM;
        d->dev_id = 0;
        break;
    case NXLPY_DL_CUDA:
    case NXLPY_DL_CUDA_MANAGED:
        *mem_p = NXL_VRAM;
        d->dev_id = (uint64_t)t->device.device_id;
        break;
    default:
        nxlpy_raise_msg(NXL_ERR_NOT_SUPPORTED,
                        "%.100s: DLPack device type %d is not supported",
                        Py_TYPE(obj)->tp_name, (int)t->device.device_type);
        goto err;
    }
    d->addr = (uint64_t)(uintptr_t)t->data + t->byte_offset;
    d->len = n * (((uint64_t)t->dtype.bits * t->dtype.lanes + 7) / 8);
    *readonly_p = 0;
    keep->obj = cap;
    return 0;

err:
    Py_DECREF(cap);
    return -1;
}

/* torch_dlpack returns a new reference to torch.to_dlpack(obj) when obj is
 * a torch.Tensor of an already imported torch (the module never imports
 * it), else NULL, without an exception unless the call failed. The same
 * capsule as obj.__dlpack__(), without Tensor.__dlpack__'s Python code
 * (about 0.5 us a tensor with torch 1.13) and its refusal of tensors that
 * require grad. */
static PyObject *
torch_dlpack(PyObject *obj)
{
    static PyObject *tensor_type, *to_dlpack;
    PyObject *name, *torch;

    if (tensor_type == NULL) {
        name = PyUnicode_FromString("torch");
        if (name == NULL) {
            return NULL;
        }
        torch = PyImport_GetModule(name);
        Py_DECREF(name);
        if (torch == NULL) {
            PyErr_Clear();
            return NULL;
        }
        tensor_type = PyObject_GetAttrString(torch, "Tensor");
        to_dlpack = PyObject_GetAttrString(torch, "to_dlpack");
        Py_DECREF(torch);
        if (tensor_type == NULL || to_dlpack == NULL ||
            !PyType_Check(tensor_type) || !PyCallable_Check(to_dlpack)) {
            PyErr_Clear();
            Py_CLEAR(tensor_type);
            Py_CLEAR(to_dlpack);
            return NULL;
        }
    }
    if (!PyObject_TypeCheck(obj, (PyTypeObject *)tensor_type)) {
        return NULL;
    }
    return PyObject_CallOneArg(to_dlpack, obj);
}

/* mem_from_interface reads an __array_interface__ or
 * __cuda_array_interface__ dict (data pointer, shape, typestr, strides). */
static int
mem_from_interface(PyObject *obj, PyObject *iface, int cuda, nxl_desc_t *d,
                   nxl_mem_t *mem_p, int *readonly_p, nxlpy_keep_t *keep)
{
    PyObject *data, *shape, *typestr, *strides;
    const char *ts;
    uint64_t n = 1, item, expect;
    Py_ssize_t i, nd;
    void *ptr;
    int ro;

    if (!PyDict_Check(iface)) {
        goto bad;
    }
    data = PyDict_GetItemString(iface, "data");
    shape = PyDict_GetItemString(iface, "shape");
    typestr = PyDict_GetItemString(iface, "typestr");
    strides = PyDict_GetItemString(iface, "strides");
    if (data == NULL || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2 ||
        shape == NULL || !PyTuple_Check(shape) || typestr == NULL ||
        !PyUnicode_Check(typestr)) {
        goto bad;
    }
    ptr = PyLong_AsVoidPtr(PyTuple_GET_ITEM(data, 0));
    ro = PyObject_IsTrue(PyTuple_GET_ITEM(data, 1));
    ts = PyUnicode_AsUTF8(typestr);
    if ((ptr == NULL && PyErr_Occurred()) || ro < 0 || ts == NULL) {
        return -1;
    }
    if (strlen(ts) < 3) {
        goto bad;
    }
    item = strtoull(ts + 2, NULL, 10);
    nd = PyTuple_GET_SIZE(shape);
    for (i = 0; i < nd; i++) {
        unsigned long long v =
            PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape, i));
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        n *= v;
    }
    if (strides != NULL && strides != Py_None) {
        if (!PyTuple_Check(strides) || PyTuple_GET_SIZE(strides) != nd) {
            goto bad;
        }
        expect = item;
        for (i = nd - 1; i >= 0; i--) {
            long long s = PyLong_AsLongLong(PyTuple_GET_ITEM(strides, i));
            unsigned long long dim =
                PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape, i));
            if (PyErr_Occurred()) {
                return -1;
            }
            if (dim != 1 && (s < 0 || (uint64_t)s != expect)) {
                nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                                "%.100s: memory must be contiguous",
                                Py_TYPE(obj)->tp_name);
                return -1;
            }
            expect *= dim;
        }
    }
    d->addr = (uint64_t)(uintptr_t)ptr;
    d->len = n * item;
    d->dev_id = 0;
    *mem_p = cuda ? NXL_VRAM : NXL_DRAM;
    *readonly_p = ro;
    Py_INCREF(obj);
    keep->obj = obj;
    return 0;

bad:
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "%.100s: unsupported %s",
                    Py_TYPE(obj)->tp_name,
                    cuda ? "__cuda_array_interface__" : "__array_interface__");
    return -1;
}

/* nxlpy_mem_get fills *desc_p, *mem_p and *readonly_p with the memory obj
 * describes and keeps its exporter in *keep_p (zeroed by the caller).
 * Returns 0, or -1 with an exception (nothing kept). */
int
nxlpy_mem_get(PyObject *obj, nxl_desc_t *desc_p, nxl_mem_t *mem_p,
              int *readonly_p, nxlpy_keep_t *keep_p)
{
    static PyObject *s_dlpack, *s_cai, *s_ai;
    PyObject *v;
    int rc;

    if (PyObject_CheckBuffer(obj)) {
        return mem_from_buffer(obj, desc_p, mem_p, readonly_p, keep_p);
    }
    if (s_dlpack == NULL) {
        s_dlpack = PyUnicode_InternFromString("__dlpack__");
        s_cai = PyUnicode_InternFromString("__cuda_array_interface__");
        s_ai = PyUnicode_InternFromString("__array_interface__");
        if (s_dlpack == NULL || s_cai == NULL || s_ai == NULL) {
            return -1;
        }
    }
    if ((v = torch_dlpack(obj)) != NULL || PyErr_Occurred()) {
        return mem_from_dlpack(obj, v, desc_p, mem_p, readonly_p, keep_p);
    }
    if ((v = get_attr(obj, s_dlpack)) != NULL) {
        rc = mem_from_dlpack(obj, PyObject_CallNoArgs(v), desc_p, mem_p,
                             readonly_p, keep_p);
        Py_DECREF(v);
        return rc;
    }
    if (!PyErr_Occurred() && (v = get_attr(obj, s_cai)) != NULL) {
        rc = mem_from_interface(obj, v, 1, desc_p, mem_p, readonly_p, keep_p);
        Py_DECREF(v);
        return rc;
    }
    if (!PyErr_Occurred() && (v = get_attr(obj, s_ai)) != NULL) {
        rc = mem_from_interface(obj, v, 0, desc_p, mem_p, readonly_p, keep_p);
        Py_DECREF(v);
        return rc;
    }
    if (!PyErr_Occurred()) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "%.100s does not describe memory (buffer protocol, "
                        "__dlpack__, __cuda_array_interface__ or "
                        "__array_interface__) nor is it an (addr, len, dev) "
                        "tuple",
                        Py_TYPE(obj)->tp_name);
    }
    return -1;
}
