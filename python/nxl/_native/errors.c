/* errors.c - one exception class per NXL status, all under nxl.Error. */
#include "nxlpy.h"

#include <stdarg.h>
#include <stdio.h>

/* The classes, indexed by -status (1..16); [0] is nxl.Error. */
#define NXLPY_NSTATUS 17
static PyObject *error_classes[NXLPY_NSTATUS];

/* One row per error status: its class name and an extra builtin base that
 * lets ordinary Python code catch it (NULL for none). The names are the
 * status names in CamelCase, except where that would shadow a builtin:
 * TIMEOUT -> TimedOutError, IO -> IOFailureError, NOMEM -> NoMemoryError. */
typedef struct error_row {
    nxl_status_t status;
    const char *name;
    const char *doc;
} error_row_t;

static const error_row_t error_rows[] = {
    {NXL_ERR_NOT_POSTED, "NotPostedError", "The transfer was not posted."},
    {NXL_ERR_INVALID_PARAM, "InvalidParamError",
     "An argument is invalid (also a ValueError)."},
    {NXL_ERR_BACKEND, "BackendError", "A backend failed."},
    {NXL_ERR_NOT_FOUND, "NotFoundError",
     "A peer, backend, registration or descriptor was not found (also a "
     "LookupError)."},
    {NXL_ERR_MISMATCH, "MismatchError",
     "Data does not match (not NXL "
     "metadata, wrong peer name)."},
    {NXL_ERR_NOT_ALLOWED, "NotAllowedError",
     "Not allowed in this state (already registered, conflicting "
     "metadata)."},
    {NXL_ERR_REPOST_ACTIVE, "RepostActiveError",
     "The transfer is still in progress."},
    {NXL_ERR_UNKNOWN, "UnknownError", "An unknown error."},
    {NXL_ERR_NOT_SUPPORTED, "NotSupportedError", "No backend supports this."},
    {NXL_ERR_REMOTE_DISCONNECT, "RemoteDisconnectError",
     "The remote agent disconnected."},
    {NXL_ERR_CANCELED, "CanceledError", "The transfer was canceled."},
    {NXL_ERR_NO_TELEMETRY, "NoTelemetryError",
     "The agent does not capture telemetry."},
    {NXL_ERR_TIMEOUT, "TimedOutError",
     "A wait or a side-channel call timed out (also a TimeoutError)."},
    {NXL_ERR_NOMEM, "NoMemoryError", "Out of memory (also a MemoryError)."},
    {NXL_ERR_IO, "IOFailureError", "An I/O error (sockets, files)."},
    {NXL_ERR_PROTO, "ProtocolError", "Malformed input from a peer."},
};

/* builtin_base returns the extra builtin base of status, or NULL. */
static PyObject *
builtin_base(nxl_status_t status)
{
    switch (status) {
    case NXL_ERR_INVALID_PARAM:
        return PyExc_ValueError;
    case NXL_ERR_NOT_FOUND:
        return PyExc_LookupError;
    case NXL_ERR_TIMEOUT:
        return PyExc_TimeoutError;
    case NXL_ERR_NOMEM:
        return PyExc_MemoryError;
    default:
        return NULL;
    }
}

/* new_class makes class "nxl.<name>" with bases and status/name class
 * attributes; returns a new reference or NULL. */
static PyObject *
new_class(const char *name, const char *doc, PyObject *bases, PyObject *status,
          PyObject *sname)
{
    PyObject *dict, *cls = NULL;
    char qual[64];

    dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    if (PyDict_SetItemString(dict, "status", status) < 0 ||
        PyDict_SetItemString(dict, "name", sname) < 0) {
        goto out;
    }
    snprintf(qual, sizeof(qual), "nxl.%s", name);
    cls = PyErr_NewExceptionWithDoc(qual, doc, bases, dict);
out:
    Py_DECREF(dict);
    return cls;
}

/* nxlpy_errors_init creates nxl.Error and its subclasses and adds them, and
 * the dict `errors` {status: class}, to module. */
int
nxlpy_errors_init(PyObject *module)
{
    PyObject *bases = NULL, *status = NULL, *sname = NULL, *cls;
    PyObject *by_status;
    size_t i;
    int rc = -1;

    by_status = PyDict_New();
    if (by_status == NULL) {
        return -1;
    }
    cls = new_class("Error",
                    "Base class of NXL's errors; .status is the NXL status "
                    "(int), .name its name (\"NXL_ERR_NOT_FOUND\"), the "
                    "message nxl_last_error().",
                    PyExc_Exception, Py_None, Py_None);
    if (cls == NULL || PyModule_AddObjectRef(module, "Error", cls) < 0) {
        Py_XDECREF(cls);
        goto out;
    }
    error_classes[0] = cls;
    for (i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
        const error_row_t *row = &error_rows[i];
        PyObject *extra = builtin_base(row->status);

        bases = extra ? PyTuple_Pack(2, error_classes[0], extra)
                      : PyTuple_Pack(1, error_classes[0]);
        status = PyLong_FromLong(row->status);
        sname = PyUnicode_FromString(nxl_status_name(row->status));
        if (bases == NULL || status == NULL || sname == NULL) {
            goto out;
        }
        cls = new_class(row->name, row->doc, bases, status, sname);
        if (cls == NULL) {
            goto out;
        }
        error_classes[-row->status] = cls;
        if (PyModule_AddObjectRef(module, row->name, cls) < 0 ||
            PyDict_SetItem(by_status, status, cls) < 0) {
            goto out;
        }
        Py_CLEAR(bases);
        Py_CLEAR(status);
        Py_CLEAR(sname);
    }
    if (PyModule_AddObjectRef(module, "errors", by_status) < 0) {
        goto out;
    }
    rc = 0;
out:
    Py_XDECREF(bases);
    Py_XDECREF(status);
    Py_XDECREF(sname);
    Py_DECREF(by_status);
    return rc;
}

/* nxlpy_error_class returns the class of status (borrowed), nxl.Error for
 * a status without its own class. */
PyObject *
nxlpy_error_class(nxl_status_t status)
{
    if (status < 0 && -status < NXLPY_NSTATUS && error_classes[-status]) {
        return error_classes[-status];
    }
    return error_classes[0];
}

/* nxlpy_raise raises the class of status with this thread's
 * nxl_last_error() (or the status's description when that is empty) and
 * returns NULL. */
PyObject *
nxlpy_raise(nxl_status_t status)
{
    const char *msg = nxl_last_error();

    if (msg == NULL || msg[0] == '\0') {
        msg = nxl_strerror(status);
    }
    PyErr_SetString(nxlpy_error_class(status), msg);
    return NULL;
}

/* nxlpy_raise_msg raises the class of status with a formatted message and
 * returns NULL (for errors the binding itself detects). */
PyObject *
nxlpy_raise_msg(nxl_status_t status, const char *fmt, ...)
{
    va_list ap;
    PyObject *msg;

    va_start(ap, fmt);
    msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg == NULL) {
        return NULL;
    }
    PyErr_SetObject(nxlpy_error_class(status), msg);
    Py_DECREF(msg);
    return NULL;
}
