/* module.c - the nxl._nxl extension module: types, constants and the
 * module-level functions (plugin queries, status names). */
#include "nxlpy.h"

#include <nxl/nxl_backend.h>

/* mod_plugin_names is plugin_names() -> [str]: built-in backends first,
 * then those found in NXL_PLUGIN_DIR. */
static PyObject *
mod_plugin_names(PyObject *mod, PyObject *unused)
{
    const char **names = NULL;
    size_t cap = 0, count = 0, i;
    nxl_status_t st;
    PyObject *res;

    (void)mod, (void)unused;
    for (;;) {
        st = nxl_plugin_names(names, cap, &count);
        if (st != NXL_OK) {
            PyMem_Free(names);
            return nxlpy_raise(st);
        }
        if (count <= cap) {
            break;
        }
        PyMem_Free(names);
        cap = count + 4;
        names = PyMem_Malloc(cap * sizeof(*names));
        if (names == NULL) {
            return PyErr_NoMemory();
        }
    }
    res = PyList_New((Py_ssize_t)count);
    for (i = 0; res != NULL && i < count; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);

        if (s == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)i, s);
    }
    PyMem_Free(names);
    return res;
}

/* mod_plugin_info is plugin_info(name) -> {"name", "caps", "mem_kinds",
 * "defaults"}: caps are NXL_CAP_* bits, mem_kinds a bitmask of
 * 1 << nxl.DRAM..., defaults the default parameters. */
static PyObject *
mod_plugin_info(PyObject *mod, PyObject *arg)
{
    nxl_plugin_info_t info;
    PyObject *defaults, *res;
    const char *name;
    nxl_status_t st;
    size_t i;

    (void)mod;
    name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
    st = nxl_plugin_info(name, &info);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    defaults = PyDict_New();
    if (defaults == NULL) {
        return NULL;
    }
    for (i = 0; i < info.num_defaults; i++) {
        PyObject *v = PyUnicode_FromString(info.defaults[i].value);

        if (v == NULL ||
            PyDict_SetItemString(defaults, info.defaults[i].key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(defaults);
            return NULL;
        }
        Py_DECREF(v);
    }
    res = Py_BuildValue("{s:s,s:I,s:I,s:N}", "name", info.name, "caps",
                        (unsigned)info.caps, "mem_kinds",
                        (unsigned)info.mem_kinds, "defaults", defaults);
    return res;
}

/* mod_status_name is status_name(status) -> "NXL_ERR_NOT_FOUND". */
static PyObject *
mod_status_name(PyObject *mod, PyObject *arg)
{
    long v = PyLong_AsLong(arg);

    (void)mod;
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyUnicode_FromString(nxl_status_name((nxl_status_t)v));
}

/* mod_strerror is strerror(status) -> its description. */
static PyObject *
mod_strerror(PyObject *mod, PyObject *arg)
{
    long v = PyLong_AsLong(arg);

    (void)mod;
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyUnicode_FromString(nxl_strerror((nxl_status_t)v));
}

/* mod_set_await_hook is _set_await_hook(fn): Transfer.__await__ returns
 * fn(transfer). */
static PyObject *
mod_set_await_hook(PyObject *mod, PyObject *fn)
{
    (void)mod;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "the hook must be callable");
        return NULL;
    }
    Py_XSETREF(nxlpy_await_hook, Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* mod_raise_status is _raise_status(status, msg=None): raises the class of
 * status the way a failing call does (msg None = the status's
 * description); for the tests of the error mapping. */
static PyObject *
mod_raise_status(PyObject *mod, PyObject *args)
{
    const char *msg = NULL;
    int st;

    (void)mod;
    if (!PyArg_ParseTuple(args, "i|z:_raise_status", &st, &msg)) {
        return NULL;
    }
    if (msg == NULL) {
        msg = nxl_strerror((nxl_status_t)st);
    }
    return nxlpy_raise_msg((nxl_status_t)st, "%s", msg);
}

static PyMethodDef mod_methods[] = {
    {"plugin_names", mod_plugin_names, METH_NOARGS,
     "plugin_names()\n--\n\nThe backend types: built-in, then plugins."},
    {"plugin_info", mod_plugin_info, METH_O,
     "plugin_info(name)\n--\n\nA backend type's caps, memory kinds and "
     "default params (dict)."},
    {"status_name", mod_status_name, METH_O,
     "status_name(status)\n--\n\nThe name of a status."},
    {"strerror", mod_strerror, METH_O,
     "strerror(status)\n--\n\nThe description of a status."},
    {"_set_await_hook", mod_set_await_hook, METH_O, NULL},
    {"_raise_status", mod_raise_status, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef nxl_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "nxl._nxl",
    .m_doc = "Native binding of libnxl (CPython C API); use the nxl package.",
    .m_size = -1,
    .m_methods = mod_methods,
};

/* add_type readies type and adds it to module under name. */
static int
add_type(PyObject *module, const char *name, PyTypeObject *type)
{
    if (PyType_Ready(type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, name, (PyObject *)type);
}

/* add_constants adds statuses, operations, memory kinds, sync modes,
 * capability bits and the version. */
static int
add_constants(PyObject *m)
{
    PyObject *v;
    int rc;

#define NXLPY_STATUS_CONST(name, val, msg)                                     \
    if (PyModule_AddIntConstant(m, #name, val) < 0)                            \
        return -1;
    NXL_STATUS_MAP(NXLPY_STATUS_CONST)
#undef NXLPY_STATUS_CONST
    if (PyModule_AddIntConstant(m, "READ", NXL_READ) < 0 ||
        PyModule_AddIntConstant(m, "WRITE", NXL_WRITE) < 0 ||
        PyModule_AddIntConstant(m, "DRAM", NXL_DRAM) < 0 ||
        PyModule_AddIntConstant(m, "VRAM", NXL_VRAM) < 0 ||
        PyModule_AddIntConstant(m, "BLK", NXL_BLK) < 0 ||
        PyModule_AddIntConstant(m, "OBJ", NXL_OBJ) < 0 ||
        PyModule_AddIntConstant(m, "FILE", NXL_FILE) < 0 ||
        PyModule_AddIntConstant(m, "SYNC_NONE", NXL_SYNC_NONE) < 0 ||
        PyModule_AddIntConstant(m, "SYNC_STRICT", NXL_SYNC_STRICT) < 0 ||
        PyModule_AddIntConstant(m, "SYNC_RW", NXL_SYNC_RW) < 0 ||
        PyModule_AddIntConstant(m, "CAP_LOCAL", NXL_CAP_LOCAL) < 0 ||
        PyModule_AddIntConstant(m, "CAP_REMOTE", NXL_CAP_REMOTE) < 0 ||
        PyModule_AddIntConstant(m, "CAP_NOTIF", NXL_CAP_NOTIF) < 0 ||
        PyModule_AddIntConstant(m, "CAP_THREAD_SAFE", NXL_CAP_THREAD_SAFE) <
            0) {
        return -1;
    }
    v = PyUnicode_FromFormat("%d.%d.%d", NXL_VERSION_MAJOR, NXL_VERSION_MINOR,
                             NXL_VERSION_PATCH);
    rc = v ? PyModule_AddObjectRef(m, "version", v) : -1;
    Py_XDECREF(v);
    return rc;
}

/* PyInit__nxl creates the module. */
PyMODINIT_FUNC
PyInit__nxl(void)
{
    PyObject *m;

    m = PyModule_Create(&nxl_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddFunctions(m, nxlpy_bench_methods) < 0 ||
        PyModule_AddFunctions(m, nxlpy_connect_methods) < 0 ||
        nxlpy_errors_init(m) < 0 || add_constants(m) < 0 ||
        add_type(m, "Agent", &nxlpy_agent_type) < 0 ||
        add_type(m, "DescList", &nxlpy_dlist_type) < 0 ||
        add_type(m, "Registration", &nxlpy_reg_type) < 0 ||
        add_type(m, "Prepped", &nxlpy_prepped_type) < 0 ||
        add_type(m, "Transfer", &nxlpy_xfer_type) < 0 ||
        add_type(m, "SharedBuffer", &nxlpy_shared_type) < 0 ||
        nxlpy_xfer_init_types(m) < 0 || nxlpy_connect_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
