/* connect.c - the tensor connector (nxl_connect.h) for nxl.connect,
 * nxl.embedding and nxl.media: nxl._nxl.Connector (one per agent),
 * nxl._nxl.ConnectOp (a readable, writable, read or write operation),
 * nxl._nxl.MediaImage (the media producer) and the wire-form functions.
 *
 * The policy (Dynamo's classes, texts and exception types, asyncio) is in
 * Python; this file only maps calls. Descriptors come as sequences of
 * (ptr, size, device_kind, device_id) tuples of ints.
 *
 * Lifetimes: a Connector and a MediaImage hold their Agent and count as a
 * call in flight on it (agent->inflight) while open, so Agent.close()
 * refuses instead of destroying the agent under them. Every ConnectOp
 * holds its Connector; Connector.close() releases the open operations and
 * detaches their objects (their calls then raise InvalidParamError). Every
 * call that takes a library lock or may sleep runs without the GIL. */
#include "nxlpy.h"

#include <nxl/nxl_connect.h>

#include <math.h>

typedef struct nxlpy_cop nxlpy_cop_t;

/* nxlpy_conn_t is nxl._nxl.Connector. */
typedef struct nxlpy_conn {
    PyObject_HEAD nxlpy_agent_t *agent;
    nxl_connector_t *conn; /* NULL once closed */
    nxlpy_cop_t *ops;      /* live operation objects */
    long busy;             /* connector calls running without the GIL */
    PyObject *weakrefs;
} nxlpy_conn_t;

/* nxlpy_cop_t is nxl._nxl.ConnectOp. */
struct nxlpy_cop {
    PyObject_HEAD nxlpy_conn_t *conn;
    nxl_connect_op_t *op; /* NULL once released */
    long busy;            /* waits running without the GIL */
    PyObject *keep;       /* what the local memory needs, or NULL */
    PyObject *weakrefs;
    nxlpy_cop_t *prev, *next;
};

/* nxlpy_media_t is nxl._nxl.MediaImage. */
typedef struct nxlpy_media {
    PyObject_HEAD nxlpy_agent_t *agent;
    nxl_media_t *media; /* NULL once closed */
    PyObject *weakrefs;
} nxlpy_media_t;

PyTypeObject nxlpy_conn_type;
PyTypeObject nxlpy_cop_type;
PyTypeObject nxlpy_media_type;

/* CONN_UNLOCKED runs stmt without the GIL, counted in the connector (close
 * refuses meanwhile) and in its agent. */
#define CONN_UNLOCKED(conn, stmt)                                              \
    do {                                                                       \
        (conn)->busy++;                                                        \
        NXLPY_UNLOCKED((conn)->agent, stmt);                                   \
        (conn)->busy--;                                                        \
    } while (0)

/* OP_UNLOCKED runs stmt without the GIL, counted in the operation (release
 * refuses meanwhile) and in its connector. */
#define OP_UNLOCKED(op, stmt)                                                  \
    do {                                                                       \
        (op)->busy++;                                                          \
        CONN_UNLOCKED((op)->conn, stmt);                                       \
        (op)->busy--;                                                          \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

/* parse_descs reads a sequence of (ptr, size, device_kind, device_id)
 * into a PyMem array (*n_p entries; an empty sequence gives NULL, 0). */
static int
parse_descs(PyObject *seq, nxl_connect_desc_t **out_p, size_t *n_p)
{
    PyObject *fast;
    nxl_connect_desc_t *d = NULL;
    Py_ssize_t i, n;

    fast = PySequence_Fast(seq, "descriptors must be a sequence of "
                                "(ptr, size, device_kind, device_id)");
    if (fast == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(fast);
    if (n > 0) {
        d = PyMem_Calloc((size_t)n, sizeof(*d));
        if (d == NULL) {
            Py_DECREF(fast);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, i);
        unsigned long long ptr, size, id;
        int kind;

        if (!PyTuple_Check(t) ||
            !PyArg_ParseTuple(t,
                              "KKiK;a descriptor is (ptr, size, "
                              "device_kind, device_id)",
                              &ptr, &size, &kind, &id)) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError,
                                "a descriptor is a tuple (ptr, size, "
                                "device_kind, device_id)");
            }
            PyMem_Free(d);
            Py_DECREF(fast);
            return -1;
        }
        d[i] = (nxl_connect_desc_t){ptr, size, (nxl_connect_device_t)kind, id};
    }
    Py_DECREF(fast);
    *out_p = d;
    *n_p = (size_t)n;
    return 0;
}

/* desc_tuple makes (ptr, size, device_kind, device_id). */
static PyObject *
desc_tuple(const nxl_connect_desc_t *d)
{
    return Py_BuildValue("(KKiK)", (unsigned long long)d->ptr,
                         (unsigned long long)d->size, (int)d->device,
                         (unsigned long long)d->device_id);
}

/* blob_str turns a NUL-terminated library blob into str and frees it. */
static PyObject *
blob_str(nxl_blob_t *b)
{
    PyObject *s = PyUnicode_DecodeUTF8(b->data, (Py_ssize_t)b->len, "strict");

    nxl_blob_free(b);
    return s;
}

/* conn_check returns 0 when self is open, else raises. */
static int
conn_check(nxlpy_conn_t *self)
{
    if (self->conn != NULL) {
        return 0;
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "the connector is closed");
    return -1;
}

/* ---- ConnectOp ----------------------------------------------------------- */

/* cop_new wraps op (owned from here) and links it into conn's list. */
static PyObject *
cop_new(nxlpy_conn_t *conn, nxl_connect_op_t *op, PyObject *keep)
{
    nxlpy_cop_t *self;

    self = PyObject_GC_New(nxlpy_cop_t, &nxlpy_cop_type);
    if (self == NULL) {
        NXLPY_UNLOCKED(conn->agent, nxl_connect_op_release(op));
        return NULL;
    }
    self->conn = (nxlpy_conn_t *)Py_NewRef(conn);
    self->op = op;
    self->busy = 0;
    self->keep = Py_XNewRef(keep);
    self->weakrefs = NULL;
    self->prev = NULL;
    self->next = conn->ops;
    if (conn->ops != NULL) {
        conn->ops->prev = self;
    }
    conn->ops = self;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* cop_unlink takes self off its connector's list. */
static void
cop_unlink(nxlpy_cop_t *self)
{
    if (self->prev != NULL) {
        self->prev->next = self->next;
    } else if (self->conn->ops == self) {
        self->conn->ops = self->next;
    }
    if (self->next != NULL) {
        self->next->prev = self->prev;
    }
    self->prev = self->next = NULL;
}

/* cop_check returns 0 when the handle is live, else raises. */
static int
cop_check(nxlpy_cop_t *self)
{
    if (self->op != NULL) {
        return 0;
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "the operation was released%s",
                    self->conn->conn ? "" : " (its connector is closed)");
    return -1;
}

/* cop_release_handle releases the library operation (GIL released). */
static void
cop_release_handle(nxlpy_cop_t *self)
{
    nxl_connect_op_t *op = self->op;

    if (op == NULL) {
        return;
    }
    self->op = NULL;
    cop_unlink(self);
    NXLPY_UNLOCKED(self->conn->agent, nxl_connect_op_release(op));
}

/* cop_status is ConnectOp.status() -> state (int): one poll; the first
 * poll of an active operation posts its transfer. Raises an error of the
 * notification poll (a later poll retries). */
static PyObject *
cop_status(nxlpy_cop_t *self, PyObject *unused)
{
    nxl_connect_state_t s;
    nxl_status_t st;

    (void)unused;
    if (cop_check(self) < 0) {
        return NULL;
    }
    OP_UNLOCKED(self, st = nxl_connect_op_status(self->op, &s));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyLong_FromLong((long)s);
}

/* cop_wait is ConnectOp.wait(timeout=None): sleeps (GIL released) until
 * the operation is terminal. Returns None for COMPLETE; raises
 * CanceledError, the operation's error (ERRORED) or TimedOutError. Cut
 * into slices of 200 ms so that signals are handled. */
static PyObject *
cop_wait(nxlpy_cop_t *self, PyObject *const *args, Py_ssize_t nargs)
{
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
    if (cop_check(self) < 0) {
        return NULL;
    }
    left_ms = t * 1000.0;
    for (;;) {
        slice = (t < 0 || left_ms > 200) ? 200 : (int)ceil(left_ms);
        OP_UNLOCKED(self, st = nxl_connect_op_wait(self->op, slice));
        left_ms -= slice;
        if (st != NXL_ERR_TIMEOUT) {
            break;
        }
        if (t >= 0 && left_ms <= 0) {
            return nxlpy_raise_msg(NXL_ERR_TIMEOUT,
                                   "operation not done after %S s", args[0]);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* cop_cancel is ConnectOp.cancel(): NotAllowedError for an ERRORED one. */
static PyObject *
cop_cancel(nxlpy_cop_t *self, PyObject *unused)
{
    nxl_status_t st;

    (void)unused;
    if (cop_check(self) < 0) {
        return NULL;
    }
    OP_UNLOCKED(self, st = nxl_connect_op_cancel(self->op));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* cop_release is ConnectOp.release(): cancels if not terminal, drops the
 * registrations and the peer reference; idempotent. Refused while another
 * thread waits on it. */
static PyObject *
cop_release(nxlpy_cop_t *self, PyObject *unused)
{
    (void)unused;
    if (self->busy > 0) {
        return nxlpy_raise_msg(NXL_ERR_NOT_ALLOWED,
                               "another thread is using the operation");
    }
    cop_release_handle(self);
    Py_CLEAR(self->keep);
    Py_RETURN_NONE;
}

/* cop_metadata is ConnectOp.metadata(hex=False) -> RdmaMetadata JSON
 * (str) of a passive operation. */
static PyObject *
cop_metadata(nxlpy_cop_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"hex", NULL};
    nxl_blob_t b;
    nxl_status_t st;
    int hex = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:metadata", kwlist, &hex)) {
        return NULL;
    }
    if (cop_check(self) < 0) {
        return NULL;
    }
    st = nxl_connect_op_metadata(self->op, hex, &b);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_str(&b);
}

/* cop_info is ConnectOp.info() -> dict (kind, passive, state, error,
 * error_text, notification_key, remote_agent, num_descriptors); no
 * polling. */
static PyObject *
cop_info(nxlpy_cop_t *self, PyObject *unused)
{
    nxl_connect_op_info_t in;
    nxl_status_t st;

    (void)unused;
    if (cop_check(self) < 0) {
        return NULL;
    }
    st = nxl_connect_op_info(self->op, &in);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return Py_BuildValue(
        "{s:i,s:O,s:i,s:i,s:s,s:s,s:s,s:n}", "kind", (int)in.kind, "passive",
        in.passive ? Py_True : Py_False, "state", (int)in.state, "error",
        (int)in.error, "error_text", in.error_text, "notification_key",
        in.notification_key, "remote_agent", in.remote_agent, "num_descriptors",
        (Py_ssize_t)in.num_descriptors);
}

/* cop_get_state is ConnectOp.state: the last known state, no polling. */
static PyObject *
cop_get_state(nxlpy_cop_t *self, void *closure)
{
    nxl_connect_op_info_t in;

    (void)closure;
    if (cop_check(self) < 0) {
        return NULL;
    }
    (void)nxl_connect_op_info(self->op, &in);
    return PyLong_FromLong((long)in.state);
}

/* cop_get_released is ConnectOp.released. */
static PyObject *
cop_get_released(nxlpy_cop_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->op == NULL);
}

/* cop_get_connector is ConnectOp.connector. */
static PyObject *
cop_get_connector(nxlpy_cop_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->conn);
}

static void
cop_dealloc(nxlpy_cop_t *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    cop_release_handle(self);
    Py_CLEAR(self->keep);
    Py_CLEAR(self->conn);
    PyObject_GC_Del(self);
}

static int
cop_traverse(nxlpy_cop_t *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    Py_VISIT(self->keep);
    return 0;
}

static PyObject *
cop_repr(nxlpy_cop_t *self)
{
    nxl_connect_op_info_t in;

    if (self->op == NULL) {
        return PyUnicode_FromString("<nxl.ConnectOp released>");
    }
    (void)nxl_connect_op_info(self->op, &in);
    return PyUnicode_FromFormat(
        "<nxl.ConnectOp %s %s %s key=%s>", in.passive ? "passive" : "active",
        nxl_connect_kind_str(in.kind), nxl_connect_state_str(in.state),
        in.notification_key);
}

static PyMethodDef cop_methods[] = {
    {"status", (PyCFunction)cop_status, METH_NOARGS,
     "status()\n--\n\nPoll once; returns the state (int). The first poll "
     "of an active operation posts its transfer."},
    {"wait", (PyCFunction)(void (*)(void))cop_wait, METH_FASTCALL,
     "wait(timeout=None)\n--\n\nSleep (GIL released) until terminal; "
     "raises CanceledError, the operation's error, or TimedOutError."},
    {"cancel", (PyCFunction)cop_cancel, METH_NOARGS,
     "cancel()\n--\n\nCancel (NotAllowedError when ERRORED)."},
    {"release", (PyCFunction)cop_release, METH_NOARGS,
     "release()\n--\n\nCancel if needed, drop registrations and the peer "
     "reference; idempotent."},
    {"metadata", (PyCFunction)(void (*)(void))cop_metadata,
     METH_VARARGS | METH_KEYWORDS,
     "metadata(hex=False)\n--\n\nRdmaMetadata JSON of a passive operation."},
    {"info", (PyCFunction)cop_info, METH_NOARGS,
     "info()\n--\n\nKind, passive, state, error, key, peer (no polling)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cop_getset[] = {
    {"state", (getter)cop_get_state, NULL, "last known state (no polling)",
     NULL},
    {"released", (getter)cop_get_released, NULL, "True once released", NULL},
    {"connector", (getter)cop_get_connector, NULL, "the Connector", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_cop_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.ConnectOp",
    .tp_basicsize = sizeof(nxlpy_cop_t),
    .tp_dealloc = (destructor)cop_dealloc,
    .tp_repr = (reprfunc)cop_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A connector operation (readable, writable, read, write).",
    .tp_traverse = (traverseproc)cop_traverse,
    .tp_weaklistoffset = offsetof(nxlpy_cop_t, weakrefs),
    .tp_methods = cop_methods,
    .tp_getset = cop_getset,
};

/* ---- Connector ----------------------------------------------------------- */

/* conn_new is Connector(agent): attaches a connector to an open Agent. */
static PyObject *
conn_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"agent", NULL};
    nxlpy_agent_t *agent;
    nxlpy_conn_t *self;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Connector", kwlist,
                                     &nxlpy_agent_type, &agent)) {
        return NULL;
    }
    if (nxlpy_agent_check(agent) < 0) {
        return NULL;
    }
    self = (nxlpy_conn_t *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->agent = (nxlpy_agent_t *)Py_NewRef(agent);
    self->ops = NULL;
    self->busy = 0;
    self->weakrefs = NULL;
    NXLPY_UNLOCKED(agent, st = nxl_connector_create(agent->agent, &self->conn));
    if (st != NXL_OK) {
        self->conn = NULL;
        Py_DECREF(self);
        return nxlpy_raise(st);
    }
    agent->inflight++; /* the agent may not close under the connector */
    return (PyObject *)self;
}

/* conn_destroy releases the open operations (detaching their objects) and
 * the connector. */
static void
conn_destroy(nxlpy_conn_t *self)
{
    nxl_connector_t *c = self->conn;
    nxlpy_cop_t *o, *next;

    if (c == NULL) {
        return;
    }
    for (o = self->ops; o != NULL; o = next) {
        next = o->next;
        if (o->op != NULL) {
            nxl_connect_op_t *op = o->op;

            o->op = NULL;
            NXLPY_UNLOCKED(self->agent, nxl_connect_op_release(op));
        }
        o->prev = o->next = NULL;
    }
    self->ops = NULL;
    self->conn = NULL;
    NXLPY_UNLOCKED(self->agent, nxl_connector_destroy(c));
    self->agent->inflight--;
}

/* conn_close is Connector.close(): releases the open operations and the
 * connector (the agent stays open). Refused while a thread waits on one of
 * its operations. Idempotent. */
static PyObject *
conn_close(nxlpy_conn_t *self, PyObject *unused)
{
    (void)unused;
    if (self->busy > 0) {
        return nxlpy_raise_msg(NXL_ERR_NOT_ALLOWED,
                               "another thread is inside a call on this "
                               "connector or one of its operations");
    }
    conn_destroy(self);
    Py_RETURN_NONE;
}

/* conn_descs_call runs register or deregister on descriptors. */
static PyObject *
conn_descs_call(nxlpy_conn_t *self, PyObject *seq, int reg)
{
    nxl_connect_desc_t *d;
    nxl_status_t st;
    size_t n;

    if (conn_check(self) < 0 || parse_descs(seq, &d, &n) < 0) {
        return NULL;
    }
    if (reg) {
        CONN_UNLOCKED(self, st = nxl_connector_register(self->conn, d, n));
    } else {
        CONN_UNLOCKED(self, st = nxl_connector_deregister(self->conn, d, n));
    }
    PyMem_Free(d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* conn_register is Connector.register(descs): pool memory. */
static PyObject *
conn_register(nxlpy_conn_t *self, PyObject *seq)
{
    return conn_descs_call(self, seq, 1);
}

/* conn_deregister is Connector.deregister(descs): ends pool memory. */
static PyObject *
conn_deregister(nxlpy_conn_t *self, PyObject *seq)
{
    return conn_descs_call(self, seq, 0);
}

/* conn_notifs is Connector.notifs() -> [(sender, bytes)]: what no
 * operation claimed, in arrival order. */
static PyObject *
conn_notifs(nxlpy_conn_t *self, PyObject *unused)
{
    nxl_notif_list_t *list;
    nxl_status_t st;
    PyObject *res;
    size_t i;

    (void)unused;
    if (conn_check(self) < 0) {
        return NULL;
    }
    CONN_UNLOCKED(self, st = nxl_connector_notifs_get(self->conn, &list));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    res = PyList_New((Py_ssize_t)list->count);
    for (i = 0; res != NULL && i < list->count; i++) {
        PyObject *t = Py_BuildValue("(sy#)", list->items[i].agent,
                                    (const char *)list->items[i].msg,
                                    (Py_ssize_t)list->items[i].len);

        if (t == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)i, t);
    }
    nxl_notif_list_free(list);
    return res;
}

/* conn_take is Connector.take(msg) -> bool: removes the oldest unclaimed
 * notification equal to msg (bytes or str). */
static PyObject *
conn_take(nxlpy_conn_t *self, PyObject *msg)
{
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;
    int found = 0;

    if (conn_check(self) < 0 || nxlpy_parse_bytes(msg, &p, &len) < 0) {
        return NULL;
    }
    CONN_UNLOCKED(self, st = nxl_connector_notif_take(self->conn, p,
                                                      (size_t)len, &found));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyBool_FromLong(found);
}

/* conn_info is Connector.info() -> dict of counts. */
static PyObject *
conn_info(nxlpy_conn_t *self, PyObject *unused)
{
    nxl_connector_info_t in;
    nxl_status_t st;

    (void)unused;
    if (conn_check(self) < 0) {
        return NULL;
    }
    CONN_UNLOCKED(self, st = nxl_connector_info(self->conn, &in));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n}", "ops", (Py_ssize_t)in.num_ops, "keys",
        (Py_ssize_t)in.num_keys, "regs", (Py_ssize_t)in.num_regs, "pool",
        (Py_ssize_t)in.num_pool, "remotes", (Py_ssize_t)in.num_remotes,
        "queued", (Py_ssize_t)in.num_queued);
}

/* conn_remote_add is Connector.remote_add(md: bytes) -> name: loads the
 * peer and takes a reference. */
static PyObject *
conn_remote_add(nxlpy_conn_t *self, PyObject *arg)
{
    Py_buffer view;
    nxl_status_t st;
    char name[256];

    if (conn_check(self) < 0 ||
        PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    CONN_UNLOCKED(self, st = nxl_connector_remote_add(self->conn, view.buf,
                                                      (size_t)view.len, name,
                                                      sizeof(name)));
    PyBuffer_Release(&view);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyUnicode_FromString(name);
}

/* conn_remote_remove is Connector.remote_remove(name). */
static PyObject *
conn_remote_remove(nxlpy_conn_t *self, PyObject *arg)
{
    const char *name;
    nxl_status_t st;

    if (conn_check(self) < 0 || (name = PyUnicode_AsUTF8(arg)) == NULL) {
        return NULL;
    }
    CONN_UNLOCKED(self, st = nxl_connector_remote_remove(self->conn, name));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* conn_remote_refs is Connector.remote_refs(name) -> int. */
static PyObject *
conn_remote_refs(nxlpy_conn_t *self, PyObject *arg)
{
    const char *name;
    unsigned refs = 0;
    nxl_status_t st;

    if (conn_check(self) < 0 || (name = PyUnicode_AsUTF8(arg)) == NULL) {
        return NULL;
    }
    CONN_UNLOCKED(self,
                  st = nxl_connector_remote_refs(self->conn, name, &refs));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyLong_FromUnsignedLong(refs);
}

/* conn_passive makes a readable (kind 1) or writable (kind 2). */
static PyObject *
conn_passive(nxlpy_conn_t *self, PyObject *args, int kind)
{
    PyObject *seq, *keep = NULL;
    nxl_connect_desc_t *d;
    nxl_connect_op_t *op;
    nxl_status_t st;
    size_t n;

    if (!PyArg_ParseTuple(
            args, kind == NXL_CONNECT_READ ? "O|O:readable" : "O|O:writable",
            &seq, &keep)) {
        return NULL;
    }
    if (conn_check(self) < 0 || parse_descs(seq, &d, &n) < 0) {
        return NULL;
    }
    if (kind == NXL_CONNECT_READ) {
        CONN_UNLOCKED(self,
                      st = nxl_connect_readable_create(self->conn, d, n, &op));
    } else {
        CONN_UNLOCKED(self,
                      st = nxl_connect_writable_create(self->conn, d, n, &op));
    }
    PyMem_Free(d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return cop_new(self, op, keep == Py_None ? NULL : keep);
}

/* conn_readable is Connector.readable(descs, keep=None) -> ConnectOp. */
static PyObject *
conn_readable(nxlpy_conn_t *self, PyObject *args)
{
    return conn_passive(self, args, NXL_CONNECT_READ);
}

/* conn_writable is Connector.writable(descs, keep=None) -> ConnectOp. */
static PyObject *
conn_writable(nxlpy_conn_t *self, PyObject *args)
{
    return conn_passive(self, args, NXL_CONNECT_WRITE);
}

/* conn_begin is Connector.begin(kind, descs, rdma_json, keep=None) ->
 * ConnectOp: an active READ (1) or WRITE (2) from RdmaMetadata JSON. */
static PyObject *
conn_begin(nxlpy_conn_t *self, PyObject *args)
{
    PyObject *seq, *js, *keep = NULL;
    nxl_connect_desc_t *d;
    nxl_connect_op_t *op;
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;
    size_t n;
    int kind;

    if (!PyArg_ParseTuple(args, "iOO|O:begin", &kind, &seq, &js, &keep)) {
        return NULL;
    }
    if (kind != NXL_CONNECT_READ && kind != NXL_CONNECT_WRITE) {
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                               "Argument `operation_kind` must be either "
                               "`READ` or `WRITE`.");
    }
    if (conn_check(self) < 0 || nxlpy_parse_bytes(js, &p, &len) < 0 ||
        parse_descs(seq, &d, &n) < 0) {
        return NULL;
    }
    if (kind == NXL_CONNECT_READ) {
        CONN_UNLOCKED(self, st = nxl_connect_read_begin(self->conn, d, n, p,
                                                        (size_t)len, &op));
    } else {
        CONN_UNLOCKED(self, st = nxl_connect_write_begin(self->conn, d, n, p,
                                                         (size_t)len, &op));
    }
    PyMem_Free(d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return cop_new(self, op, keep == Py_None ? NULL : keep);
}

/* conn_media_read is Connector.media_read(media_json, descs, keep=None) ->
 * ConnectOp: Dynamo's worker-side read of a decoded image. */
static PyObject *
conn_media_read(nxlpy_conn_t *self, PyObject *args)
{
    PyObject *seq, *js, *keep = NULL;
    nxl_connect_desc_t *d;
    nxl_connect_op_t *op;
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;
    size_t n;

    if (!PyArg_ParseTuple(args, "OO|O:media_read", &js, &seq, &keep)) {
        return NULL;
    }
    if (conn_check(self) < 0 || nxlpy_parse_bytes(js, &p, &len) < 0 ||
        parse_descs(seq, &d, &n) < 0) {
        return NULL;
    }
    CONN_UNLOCKED(
        self, st = nxl_media_read_begin(self->conn, p, (size_t)len, d, n, &op));
    PyMem_Free(d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return cop_new(self, op, keep == Py_None ? NULL : keep);
}

/* conn_get_agent is Connector.agent. */
static PyObject *
conn_get_agent(nxlpy_conn_t *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->agent);
}

/* conn_get_closed is Connector.closed. */
static PyObject *
conn_get_closed(nxlpy_conn_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->conn == NULL);
}

static void
conn_dealloc(nxlpy_conn_t *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    conn_destroy(self);
    Py_CLEAR(self->agent);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
conn_traverse(nxlpy_conn_t *self, visitproc visit, void *arg)
{
    Py_VISIT(self->agent);
    return 0;
}

static int
conn_clear(nxlpy_conn_t *self)
{
    /* The connector must go before the agent it uses. */
    conn_destroy(self);
    Py_CLEAR(self->agent);
    return 0;
}

static PyObject *
conn_repr(nxlpy_conn_t *self)
{
    return PyUnicode_FromFormat("<nxl.Connector of %R%s>", self->agent->name,
                                self->conn ? "" : " closed");
}

static PyMethodDef conn_methods[] = {
    {"close", (PyCFunction)conn_close, METH_NOARGS,
     "close()\n--\n\nRelease the open operations and the connector."},
    {"register", (PyCFunction)conn_register, METH_O,
     "register(descs)\n--\n\nRegister pool memory (never deregistered by an "
     "operation)."},
    {"deregister", (PyCFunction)conn_deregister, METH_O,
     "deregister(descs)\n--\n\nEnd the pool registration of descs."},
    {"notifs", (PyCFunction)conn_notifs, METH_NOARGS,
     "notifs()\n--\n\n[(sender, bytes)] no operation claimed."},
    {"take", (PyCFunction)conn_take, METH_O,
     "take(msg)\n--\n\nRemove the oldest unclaimed notification equal to "
     "msg; True if one was."},
    {"info", (PyCFunction)conn_info, METH_NOARGS,
     "info()\n--\n\nCounts: ops, keys, regs, pool, remotes, queued."},
    {"remote_add", (PyCFunction)conn_remote_add, METH_O,
     "remote_add(md)\n--\n\nLoad a peer from raw agent metadata and take a "
     "reference; returns its name."},
    {"remote_remove", (PyCFunction)conn_remote_remove, METH_O,
     "remote_remove(name)\n--\n\nDrop a reference remote_add took."},
    {"remote_refs", (PyCFunction)conn_remote_refs, METH_O,
     "remote_refs(name)\n--\n\nReferences held on a peer."},
    {"readable", (PyCFunction)conn_readable, METH_VARARGS,
     "readable(descs, keep=None)\n--\n\nA passive READ operation."},
    {"writable", (PyCFunction)conn_writable, METH_VARARGS,
     "writable(descs, keep=None)\n--\n\nA passive WRITE operation."},
    {"begin", (PyCFunction)conn_begin, METH_VARARGS,
     "begin(kind, descs, rdma_json, keep=None)\n--\n\nAn active READ (1) or "
     "WRITE (2) from RdmaMetadata JSON."},
    {"media_read", (PyCFunction)conn_media_read, METH_VARARGS,
     "media_read(media_json, descs, keep=None)\n--\n\nRead a decoded image "
     "from its RdmaMediaDataDescriptor JSON."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef conn_getset[] = {
    {"agent", (getter)conn_get_agent, NULL, "the Agent", NULL},
    {"closed", (getter)conn_get_closed, NULL, "True once closed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_conn_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.Connector",
    .tp_basicsize = sizeof(nxlpy_conn_t),
    .tp_dealloc = (destructor)conn_dealloc,
    .tp_repr = (reprfunc)conn_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Connector(agent): the tensor connector of an Agent.",
    .tp_traverse = (traverseproc)conn_traverse,
    .tp_clear = (inquiry)conn_clear,
    .tp_weaklistoffset = offsetof(nxlpy_conn_t, weakrefs),
    .tp_methods = conn_methods,
    .tp_getset = conn_getset,
    .tp_new = conn_new,
};

/* ---- MediaImage ---------------------------------------------------------- */

/* media_new is MediaImage(agent, pixels, height, width, channels,
 * format=None, max_image_width=0, max_image_height=0,
 * max_alloc=128 MiB): copies and registers a decoded HWC uint8 image. */
static PyObject *
media_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "agent",     "pixels", "height",          "width",
        "channels",  "format", "max_image_width", "max_image_height",
        "max_alloc", NULL};
    nxl_media_limits_t lim;
    nxlpy_agent_t *agent;
    nxlpy_media_t *self;
    unsigned int h, w, c, mw = 0, mh = 0;
    unsigned long long ma = NXL_MEDIA_DEFAULT_MAX_ALLOC;
    const char *fmt = NULL;
    PyObject *px;
    Py_buffer view;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OIII|zIIK:MediaImage", kwlist,
                                     &nxlpy_agent_type, &agent, &px, &h, &w, &c,
                                     &fmt, &mw, &mh, &ma)) {
        return NULL;
    }
    if (nxlpy_agent_check(agent) < 0 ||
        PyObject_GetBuffer(px, &view, PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if ((uint64_t)h * w * c > (uint64_t)view.len && (c >= 1 && c <= 4)) {
        PyBuffer_Release(&view);
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                               "pixels hold %zd bytes, a %ux%ux%u image "
                               "needs %llu",
                               view.len, h, w, c,
                               (unsigned long long)h * w * c);
    }
    self = (nxlpy_media_t *)type->tp_alloc(type, 0);
    if (self == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    lim = (nxl_media_limits_t){mw, mh, ma};
    NXLPY_UNLOCKED(agent,
                   st = nxl_media_image_create(agent->agent, view.buf, h, w, c,
                                               fmt, &lim, &self->media));
    PyBuffer_Release(&view);
    if (st != NXL_OK) {
        self->media = NULL;
        Py_DECREF(self);
        return nxlpy_raise(st);
    }
    self->agent = (nxlpy_agent_t *)Py_NewRef(agent);
    agent->inflight++;
    return (PyObject *)self;
}

/* media_destroy deregisters and frees the image. */
static void
media_destroy(nxlpy_media_t *self)
{
    nxl_media_t *m = self->media;

    if (m == NULL) {
        return;
    }
    self->media = NULL;
    NXLPY_UNLOCKED(self->agent, nxl_media_destroy(m));
    self->agent->inflight--;
}

/* media_check returns 0 when open, else raises. */
static int
media_check(nxlpy_media_t *self)
{
    if (self->media != NULL) {
        return 0;
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "the media image is closed");
    return -1;
}

/* media_json is MediaImage.json() -> RdmaMediaDataDescriptor JSON. */
static PyObject *
media_json(nxlpy_media_t *self, PyObject *unused)
{
    nxl_blob_t b;
    nxl_status_t st;

    (void)unused;
    if (media_check(self) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self->agent, st = nxl_media_json(self->media, &b));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_str(&b);
}

/* media_close is MediaImage.close(): deregisters and frees; idempotent. */
static PyObject *
media_close(nxlpy_media_t *self, PyObject *unused)
{
    (void)unused;
    media_destroy(self);
    Py_RETURN_NONE;
}

/* media_get_hash is MediaImage.hash (int). */
static PyObject *
media_get_hash(nxlpy_media_t *self, void *closure)
{
    (void)closure;
    if (media_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(nxl_media_hash(self->media));
}

/* media_get_ptr is MediaImage.ptr: address of the registered copy. */
static PyObject *
media_get_ptr(nxlpy_media_t *self, void *closure)
{
    (void)closure;
    if (media_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromVoidPtr((void *)nxl_media_data(self->media, NULL));
}

/* media_get_nbytes is MediaImage.nbytes. */
static PyObject *
media_get_nbytes(nxlpy_media_t *self, void *closure)
{
    size_t n = 0;

    (void)closure;
    if (media_check(self) < 0) {
        return NULL;
    }
    (void)nxl_media_data(self->media, &n);
    return PyLong_FromSize_t(n);
}

/* media_tobytes is MediaImage.tobytes(): a copy of the registered pixels. */
static PyObject *
media_tobytes(nxlpy_media_t *self, PyObject *unused)
{
    const void *p;
    size_t n = 0;

    (void)unused;
    if (media_check(self) < 0) {
        return NULL;
    }
    p = nxl_media_data(self->media, &n);
    return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
}

static PyObject *
media_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *
media_exit(nxlpy_media_t *self, PyObject *args)
{
    (void)args;
    media_destroy(self);
    Py_RETURN_NONE;
}

static void
media_dealloc(nxlpy_media_t *self)
{
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->agent != NULL) {
        media_destroy(self);
    }
    Py_CLEAR(self->agent);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef media_methods[] = {
    {"json", (PyCFunction)media_json, METH_NOARGS,
     "json()\n--\n\nRdmaMediaDataDescriptor JSON with the agent's current "
     "metadata."},
    {"tobytes", (PyCFunction)media_tobytes, METH_NOARGS,
     "tobytes()\n--\n\nA copy of the registered pixels."},
    {"close", (PyCFunction)media_close, METH_NOARGS,
     "close()\n--\n\nDeregister and free (readers must be done)."},
    {"__enter__", (PyCFunction)media_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)media_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef media_getset[] = {
    {"hash", (getter)media_get_hash, NULL, "xxh3-64 content hash", NULL},
    {"ptr", (getter)media_get_ptr, NULL, "address of the registered copy",
     NULL},
    {"nbytes", (getter)media_get_nbytes, NULL, "bytes of the image", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_media_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl.MediaImage",
    .tp_basicsize = sizeof(nxlpy_media_t),
    .tp_dealloc = (destructor)media_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A decoded image registered for NIXL reads (the media "
              "producer).",
    .tp_weaklistoffset = offsetof(nxlpy_media_t, weakrefs),
    .tp_methods = media_methods,
    .tp_getset = media_getset,
    .tp_new = media_new,
};

/* ---- module functions: wire forms ---------------------------------------- */

/* fn_md_encode is connect_md_encode(md: bytes, hex=False) -> str. */
static PyObject *
fn_md_encode(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"md", "hex", NULL};
    Py_buffer view;
    nxl_blob_t b;
    nxl_status_t st;
    int hex = 0;

    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|p:connect_md_encode", kwlist,
                                     &view, &hex)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS st =
        nxl_connect_md_encode(view.buf, (size_t)view.len, hex, &b);
    Py_END_ALLOW_THREADS PyBuffer_Release(&view);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_str(&b);
}

/* fn_md_decode is connect_md_decode(s, max_out=0) -> bytes. */
static PyObject *
fn_md_decode(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"s", "max_out", NULL};
    PyObject *s, *res;
    const char *p;
    Py_ssize_t len;
    unsigned long long max_out = 0;
    nxl_blob_t b;
    nxl_status_t st;

    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|K:connect_md_decode", kwlist,
                                     &s, &max_out) ||
        nxlpy_parse_bytes(s, &p, &len) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS st =
        nxl_connect_md_decode(p, (size_t)len, (size_t)max_out, &b);
    Py_END_ALLOW_THREADS if (st != NXL_OK)
    {
        return nxlpy_raise(st);
    }
    res = PyBytes_FromStringAndSize(b.data, (Py_ssize_t)b.len);
    nxl_blob_free(&b);
    return res;
}

/* fn_rdma_decode is rdma_metadata_decode(json) -> (descs, nixl_metadata,
 * notification_key, operation_kind), with the C decoder's checks. */
static PyObject *
fn_rdma_decode(PyObject *mod, PyObject *arg)
{
    nxl_rdma_metadata_t *md;
    PyObject *descs, *res;
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;
    size_t i;

    (void)mod;
    if (nxlpy_parse_bytes(arg, &p, &len) < 0) {
        return NULL;
    }
    st = nxl_rdma_metadata_decode(p, (size_t)len, &md);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    descs = PyList_New((Py_ssize_t)md->num_descriptors);
    for (i = 0; descs != NULL && i < md->num_descriptors; i++) {
        PyObject *t = desc_tuple(&md->descriptors[i]);

        if (t == NULL) {
            Py_CLEAR(descs);
            break;
        }
        PyList_SET_ITEM(descs, (Py_ssize_t)i, t);
    }
    res = descs == NULL
              ? NULL
              : Py_BuildValue("(Nssl)", descs, md->nixl_metadata,
                              md->notification_key, (long)md->operation_kind);
    nxl_rdma_metadata_free(md);
    return res;
}

/* fn_rdma_encode is rdma_metadata_encode(descs, nixl_metadata,
 * notification_key, operation_kind) -> JSON str. */
static PyObject *
fn_rdma_encode(PyObject *mod, PyObject *args)
{
    nxl_rdma_metadata_t md;
    nxl_connect_desc_t *d;
    PyObject *seq;
    const char *nm, *key;
    long long kind;
    nxl_blob_t b;
    nxl_status_t st;
    size_t n;

    (void)mod;
    if (!PyArg_ParseTuple(args, "OssL:rdma_metadata_encode", &seq, &nm, &key,
                          &kind) ||
        parse_descs(seq, &d, &n) < 0) {
        return NULL;
    }
    md = (nxl_rdma_metadata_t){d, n, nm, key, (int64_t)kind};
    st = nxl_rdma_metadata_encode(&md, &b);
    PyMem_Free(d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_str(&b);
}

/* fn_desc_decode is connect_desc_decode(json) -> (ptr, size, kind, id). */
static PyObject *
fn_desc_decode(PyObject *mod, PyObject *arg)
{
    nxl_connect_desc_t d;
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;

    (void)mod;
    if (nxlpy_parse_bytes(arg, &p, &len) < 0) {
        return NULL;
    }
    st = nxl_connect_desc_decode(p, (size_t)len, &d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return desc_tuple(&d);
}

/* fn_desc_encode is connect_desc_encode(ptr, size, kind, id) -> JSON. */
static PyObject *
fn_desc_encode(PyObject *mod, PyObject *args)
{
    unsigned long long ptr, size, id;
    nxl_connect_desc_t d;
    nxl_blob_t b;
    nxl_status_t st;
    int kind;

    (void)mod;
    if (!PyArg_ParseTuple(args, "KKiK:connect_desc_encode", &ptr, &size, &kind,
                          &id)) {
        return NULL;
    }
    d = (nxl_connect_desc_t){ptr, size, (nxl_connect_device_t)kind, id};
    st = nxl_connect_desc_encode(&d, &b);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_str(&b);
}

/* fn_device_parse is connect_device_parse(s) -> (kind, id). */
static PyObject *
fn_device_parse(PyObject *mod, PyObject *arg)
{
    nxl_connect_device_t dev;
    const char *s;
    uint64_t id;
    nxl_status_t st;

    (void)mod;
    s = PyUnicode_AsUTF8(arg);
    if (s == NULL) {
        return NULL;
    }
    st = nxl_connect_device_parse(s, &dev, &id);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return Py_BuildValue("(iK)", (int)dev, (unsigned long long)id);
}

/* fn_device_format is connect_device_format(kind, id) -> str. */
static PyObject *
fn_device_format(PyObject *mod, PyObject *args)
{
    unsigned long long id;
    nxl_status_t st;
    char buf[32];
    int kind;

    (void)mod;
    if (!PyArg_ParseTuple(args, "iK:connect_device_format", &kind, &id)) {
        return NULL;
    }
    st = nxl_connect_device_format((nxl_connect_device_t)kind, id, buf,
                                   sizeof(buf));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyUnicode_FromString(buf);
}

/* fn_uuid4 is connect_uuid4() -> str. */
static PyObject *
fn_uuid4(PyObject *mod, PyObject *unused)
{
    char buf[NXL_CONNECT_UUID_LEN];
    nxl_status_t st;

    (void)mod, (void)unused;
    st = nxl_connect_uuid4(buf);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyUnicode_FromString(buf);
}

/* fn_state_str is connect_state_str(state) -> "INIT"... */
static PyObject *
fn_state_str(PyObject *mod, PyObject *arg)
{
    long v = PyLong_AsLong(arg);

    (void)mod;
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyUnicode_FromString(nxl_connect_state_str((nxl_connect_state_t)v));
}

/* ---- module functions: media --------------------------------------------- */

/* fn_media_hash is media_content_hash(shape, data) -> int. */
static PyObject *
fn_media_hash(PyObject *mod, PyObject *args)
{
    PyObject *shape, *fast;
    uint64_t dims[NXL_MEDIA_MAX_DIMS * 4], h = 0;
    Py_buffer view;
    Py_ssize_t i, n;
    nxl_status_t st;

    (void)mod;
    if (!PyArg_ParseTuple(args, "Oy*:media_content_hash", &shape, &view)) {
        return NULL;
    }
    fast = PySequence_Fast(shape, "shape must be a sequence of ints");
    if (fast == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    n = PySequence_Fast_GET_SIZE(fast);
    if (n > (Py_ssize_t)(sizeof(dims) / sizeof(dims[0]))) {
        Py_DECREF(fast);
        PyBuffer_Release(&view);
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "%zd dimensions", n);
    }
    for (i = 0; i < n; i++) {
        dims[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (PyErr_Occurred()) {
            Py_DECREF(fast);
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    Py_DECREF(fast);
    Py_BEGIN_ALLOW_THREADS st =
        nxl_media_content_hash(dims, (size_t)n, view.buf, (size_t)view.len, &h);
    Py_END_ALLOW_THREADS PyBuffer_Release(&view);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyLong_FromUnsignedLongLong(h);
}

/* fn_media_desc_decode is media_desc_decode(json) -> dict. */
static PyObject *
fn_media_desc_decode(PyObject *mod, PyObject *arg)
{
    static const char *const mems[] = {"Dram", "Vram", "Block", "Object",
                                       "File"};
    nxl_media_desc_t *d;
    PyObject *shape, *res;
    const char *p;
    Py_ssize_t len;
    nxl_status_t st;
    size_t i;

    (void)mod;
    if (nxlpy_parse_bytes(arg, &p, &len) < 0) {
        return NULL;
    }
    st = nxl_media_desc_decode(p, (size_t)len, &d);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    shape = PyList_New((Py_ssize_t)d->ndim);
    for (i = 0; shape != NULL && i < d->ndim; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(d->shape[i]);

        if (v == NULL) {
            Py_CLEAR(shape);
            break;
        }
        PyList_SET_ITEM(shape, (Py_ssize_t)i, v);
    }
    if (shape == NULL) {
        nxl_media_desc_free(d);
        return NULL;
    }
    res = Py_BuildValue(
        "{s:s,s:{s:K,s:K,s:s,s:K},s:N,s:s,s:s,s:O}", "nixl_metadata",
        d->nixl_metadata, "nixl_descriptor", "addr",
        (unsigned long long)d->addr, "size", (unsigned long long)d->size,
        "mem_type", (unsigned)d->mem_type < 5 ? mems[d->mem_type] : "Unknown",
        "device_id", (unsigned long long)d->device_id, "shape", shape, "dtype",
        d->dtype, "metadata_json", d->metadata_json, "content_hash", Py_None);
    if (res != NULL && d->has_content_hash) {
        PyObject *h = PyLong_FromUnsignedLongLong(d->content_hash);

        if (h == NULL || PyDict_SetItemString(res, "content_hash", h) < 0) {
            Py_CLEAR(res);
        }
        Py_XDECREF(h);
    }
    nxl_media_desc_free(d);
    return res;
}

/* fn_media_discard is media_discard_notifs(agent): drops every
 * notification of an agent that serves media alone. */
static PyObject *
fn_media_discard(PyObject *mod, PyObject *arg)
{
    nxlpy_agent_t *a = (nxlpy_agent_t *)arg;
    nxl_status_t st;

    (void)mod;
    if (!PyObject_TypeCheck(arg, &nxlpy_agent_type)) {
        PyErr_SetString(PyExc_TypeError, "expected an nxl.Agent");
        return NULL;
    }
    if (nxlpy_agent_check(a) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(a, st = nxl_media_discard_notifs(a->agent));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* fn_media_delay is media_progress_delay_us() -> int. */
static PyObject *
fn_media_delay(PyObject *mod, PyObject *unused)
{
    (void)mod, (void)unused;
    return PyLong_FromUnsignedLong(nxl_media_progress_delay_us());
}

PyMethodDef nxlpy_connect_methods[] = {
    {"connect_md_encode", (PyCFunction)(void (*)(void))fn_md_encode,
     METH_VARARGS | METH_KEYWORDS,
     "connect_md_encode(md, hex=False)\n--\n\n\"b64:\" + base64(zlib(md)) "
     "(or legacy hex)."},
    {"connect_md_decode", (PyCFunction)(void (*)(void))fn_md_decode,
     METH_VARARGS | METH_KEYWORDS,
     "connect_md_decode(s, max_out=0)\n--\n\nThe agent metadata inside a "
     "metadata string (bytes)."},
    {"rdma_metadata_decode", fn_rdma_decode, METH_O,
     "rdma_metadata_decode(json)\n--\n\n(descs, nixl_metadata, key, kind) "
     "after the C decoder's checks."},
    {"rdma_metadata_encode", fn_rdma_encode, METH_VARARGS,
     "rdma_metadata_encode(descs, nixl_metadata, key, kind)\n--\n\n"
     "RdmaMetadata JSON."},
    {"connect_desc_decode", fn_desc_decode, METH_O,
     "connect_desc_decode(json)\n--\n\n(ptr, size, kind, id)."},
    {"connect_desc_encode", fn_desc_encode, METH_VARARGS,
     "connect_desc_encode(ptr, size, kind, id)\n--\n\nSerializedDescriptor "
     "JSON."},
    {"connect_device_parse", fn_device_parse, METH_O,
     "connect_device_parse(s)\n--\n\n(kind, id) of a device string."},
    {"connect_device_format", fn_device_format, METH_VARARGS,
     "connect_device_format(kind, id)\n--\n\n\"cpu\" or \"cuda:N\"."},
    {"connect_uuid4", fn_uuid4, METH_NOARGS,
     "connect_uuid4()\n--\n\nA fresh uuid4 string."},
    {"connect_state_str", fn_state_str, METH_O,
     "connect_state_str(state)\n--\n\nDynamo's str() of a state."},
    {"media_content_hash", fn_media_hash, METH_VARARGS,
     "media_content_hash(shape, data)\n--\n\nxxh3-64 media hash (int)."},
    {"media_desc_decode", fn_media_desc_decode, METH_O,
     "media_desc_decode(json)\n--\n\nRdmaMediaDataDescriptor as a dict."},
    {"media_discard_notifs", fn_media_discard, METH_O,
     "media_discard_notifs(agent)\n--\n\nDrop every notification."},
    {"media_progress_delay_us", fn_media_delay, METH_NOARGS,
     "media_progress_delay_us()\n--\n\nDYN_MM_NIXL_PROGRESS_DELAY_US as "
     "Dynamo reads it."},
    {NULL, NULL, 0, NULL},
};

/* nxlpy_connect_init adds the types and constants. */
int
nxlpy_connect_init(PyObject *m)
{
    static const struct {
        const char *name;
        PyTypeObject *type;
    } types[] = {
        {"Connector", &nxlpy_conn_type},
        {"ConnectOp", &nxlpy_cop_type},
        {"MediaImage", &nxlpy_media_type},
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (PyType_Ready(types[i].type) < 0 ||
            PyModule_AddObjectRef(m, types[i].name, (PyObject *)types[i].type) <
                0) {
            return -1;
        }
    }
    if (PyModule_AddIntConstant(m, "MEDIA_DEFAULT_MAX_ALLOC",
                                (long)NXL_MEDIA_DEFAULT_MAX_ALLOC) < 0 ||
        PyModule_AddIntConstant(m, "CONNECT_KEY_MAX", NXL_CONNECT_KEY_MAX) <
            0) {
        return -1;
    }
    return 0;
}
