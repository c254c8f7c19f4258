/* agent.c - nxl._nxl.Agent: the agent, its backends, registration,
 * metadata, prepared lists, transfers and notifications. nxl.Agent (Python)
 * subclasses it for policy (default backends, asyncio). */
#include "nxlpy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NXLPY_MAX_BACKENDS 16

/* nxlpy_agent_check returns 0 when a is open, else raises and returns -1. */
int
nxlpy_agent_check(nxlpy_agent_t *a)
{
    if (a->agent != NULL) {
        return 0;
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "agent %R is closed",
                    a->name ? a->name : Py_None);
    return -1;
}

/* nxlpy_parse_op reads READ/WRITE: nxl.READ, nxl.WRITE (ints) or "READ",
 * "WRITE" (any case). */
int
nxlpy_parse_op(PyObject *obj, int *op_p)
{
    const char *s;
    long v;

    if (PyLong_Check(obj)) {
        v = PyLong_AsLong(obj);
        if (v == NXL_READ || v == NXL_WRITE) {
            *op_p = (int)v;
            return 0;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
    } else if (PyUnicode_Check(obj)) {
        s = PyUnicode_AsUTF8(obj);
        if (s == NULL) {
            return -1;
        }
        if (strcasecmp(s, "READ") == 0) {
            *op_p = NXL_READ;
            return 0;
        }
        if (strcasecmp(s, "WRITE") == 0) {
            *op_p = NXL_WRITE;
            return 0;
        }
    }
    nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "bad operation %R (READ or WRITE)",
                    obj);
    return -1;
}

/* nxlpy_parse_bytes reads a message: bytes, bytearray or str (UTF-8). The
 * pointer lives as long as obj is unchanged. */
int
nxlpy_parse_bytes(PyObject *obj, const char **data_p, Py_ssize_t *len_p)
{
    if (PyBytes_Check(obj)) {
        *data_p = PyBytes_AS_STRING(obj);
        *len_p = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_Check(obj)) {
        *data_p = PyByteArray_AS_STRING(obj);
        *len_p = PyByteArray_GET_SIZE(obj);
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        *data_p = PyUnicode_AsUTF8AndSize(obj, len_p);
        return *data_p ? 0 : -1;
    }
    PyErr_Format(PyExc_TypeError,
                 "expected bytes, bytearray or str, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* nxlpy_opts_backends sets opts->backends from names (None or a sequence
 * of backend type names created on a), using buf[cap]. */
int
nxlpy_opts_backends(nxlpy_agent_t *a, PyObject *names, nxl_opts_t *opts,
                    nxl_backend_t **buf, size_t cap)
{
    PyObject *seq;
    Py_ssize_t i, n;
    const char *s;
    int rc = -1;

    if (names == NULL || names == Py_None) {
        return 0;
    }
    if (PyUnicode_Check(names)) {
        PyErr_SetString(PyExc_TypeError,
                        "backends must be a sequence of names, not a str");
        return -1;
    }
    seq = PySequence_Fast(names, "backends must be a sequence of names");
    if (seq == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n > cap) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "too many backends (%zd)", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);

        if (!PyUnicode_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "backend names must be str");
            goto out;
        }
        s = PyUnicode_AsUTF8(o);
        if (s == NULL) {
            goto out;
        }
        buf[i] = nxl_backend_get(a->agent, s);
        if (buf[i] == NULL) {
            nxlpy_raise_msg(NXL_ERR_NOT_FOUND,
                            "backend %s is not created on agent %U", s,
                            a->name);
            goto out;
        }
    }
    opts->backends = buf;
    opts->num_backends = (size_t)n;
    rc = 0;
out:
    Py_DECREF(seq);
    return rc;
}

/* parse_timeout turns seconds (None = the default) into opts->timeout_ms. */
static int
parse_timeout(PyObject *obj, nxl_opts_t *opts)
{
    double t;

    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(t > 0) || t > 2e6) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "timeout must be a positive number of seconds");
        return -1;
    }
    opts->timeout_ms = (int)ceil(t * 1000.0);
    return 0;
}

/* parse_sidechan fills opts with ip, port and timeout. */
static int
parse_sidechan(const char *ip, int port, PyObject *timeout, nxl_opts_t *opts)
{
    if (port <= 0 || port > 65535) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "bad port %d", port);
        return -1;
    }
    opts->ip_addr = ip;
    opts->port = (uint16_t)port;
    return parse_timeout(timeout, opts);
}

/* agent_new allocates a closed Agent; __init__ creates the library agent. */
static PyObject *
agent_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    nxlpy_agent_t *self;

    (void)args, (void)kw;
    self = (nxlpy_agent_t *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->agent = NULL;
    self->name = NULL;
    self->inflight = 0;
    self->xfers = NULL;
    self->deferred = NULL;
    self->weakrefs = NULL;
    return (PyObject *)self;
}

/* agent_init is Agent.__init__(name, *, progress_thread=False,
 * listen_thread=False, listen_port=8888, listen_addr=None, sync=0,
 * telemetry=False, progress_delay_us=0). */
static int
agent_init(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "name",        "progress_thread",   "listen_thread",
        "listen_port", "listen_addr",       "sync",
        "telemetry",   "progress_delay_us", NULL};
    nxl_agent_config_t cfg;
    PyObject *name;
    const char *cname, *addr = NULL;
    int prog = 0, listen = 0, port = 8888, sync = 0, telem = 0;
    unsigned int delay = 0;
    nxl_agent_t *agent = NULL;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$ppizipI:Agent", kwlist,
                                     &name, &prog, &listen, &port, &addr, &sync,
                                     &telem, &delay)) {
        return -1;
    }
    if (self->agent != NULL || self->name != NULL) {
        nxlpy_raise_msg(NXL_ERR_NOT_ALLOWED, "Agent.__init__ called twice");
        return -1;
    }
    if (port < 0 || port > 65535) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "bad listen_port %d", port);
        return -1;
    }
    cname = PyUnicode_AsUTF8(name);
    if (cname == NULL) {
        return -1;
    }
    nxl_agent_config_init(&cfg);
    cfg.progress_thread = prog;
    cfg.listen_thread = listen;
    cfg.listen_port = (uint16_t)port;
    cfg.listen_addr = addr;
    cfg.sync_mode = (nxl_sync_t)sync;
    cfg.capture_telemetry = telem;
    cfg.progress_delay_us = delay;
    Py_BEGIN_ALLOW_THREADS st = nxl_agent_create(cname, &cfg, &agent);
    Py_END_ALLOW_THREADS if (st != NXL_OK)
    {
        nxlpy_raise(st);
        return -1;
    }
    self->agent = agent;
    self->name = Py_NewRef(name);
    self->progress_thread = prog;
    self->telemetry = telem;
    return 0;
}

/* agent_destroy detaches the live transfers (the library frees them) and
 * destroys the agent without the GIL. */
static void
agent_destroy(nxlpy_agent_t *self)
{
    nxl_agent_t *a = self->agent;

    self->agent = NULL;
    nxlpy_xfer_detach_all(self);
    Py_BEGIN_ALLOW_THREADS nxl_agent_destroy(a);
    Py_END_ALLOW_THREADS Py_CLEAR(
        self->deferred); /* the agent dropped those registrations */
}

/* agent_close is Agent.close(): destroys the agent (cancels its transfers,
 * drops its registrations). Refuses while another thread is inside a call
 * on this agent without the GIL. Idempotent. */
static PyObject *
agent_close(nxlpy_agent_t *self, PyObject *unused)
{
    (void)unused;
    if (self->agent == NULL) {
        Py_RETURN_NONE;
    }
    if (self->inflight > 0) {
        return nxlpy_raise_msg(NXL_ERR_NOT_ALLOWED,
                               "agent %U is in use by %ld call(s) on other "
                               "threads",
                               self->name, self->inflight);
    }
    agent_destroy(self);
    Py_RETURN_NONE;
}

/* agent_dealloc destroys an open agent. No transfer object can be alive
 * here: each holds a reference to its agent. */
static void
agent_dealloc(nxlpy_agent_t *self)
{
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->agent != NULL) {
        agent_destroy(self);
    }
    Py_CLEAR(self->deferred);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* agent_progress is Agent.progress() -> events handled. */
static PyObject *
agent_progress(nxlpy_agent_t *self, PyObject *unused)
{
    (void)unused;
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(nxl_agent_progress(self->agent));
}

/* params_from_dict fills items[] from a dict of str -> str. */
static int
params_from_dict(PyObject *dict, nxl_param_t **items_p, size_t *n_p)
{
    Py_ssize_t pos = 0, n;
    PyObject *k, *v;
    nxl_param_t *items;
    size_t i = 0;

    n = PyDict_Size(dict);
    items = PyMem_Calloc((size_t)n + 1, sizeof(*items));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(dict, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError,
                            "backend params must map str to str");
            goto err;
        }
        items[i].key = PyUnicode_AsUTF8(k);
        items[i].value = PyUnicode_AsUTF8(v);
        if (items[i].key == NULL || items[i].value == NULL) {
            goto err;
        }
        i++;
    }
    *items_p = items;
    *n_p = i;
    return 0;
err:
    PyMem_Free(items);
    return -1;
}

/* agent_create_backend is Agent.create_backend(type, params=None) -> the
 * backend's name. */
static PyObject *
agent_create_backend(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"type", "params", NULL};
    const char *type;
    PyObject *dict = NULL, *res;
    nxl_param_t *items = NULL;
    nxl_params_t params = {NULL, 0};
    nxl_backend_t *be = NULL;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|O:create_backend", kwlist,
                                     &type, &dict)) {
        return NULL;
    }
    if (dict == Py_None) {
        dict = NULL;
    }
    if (dict != NULL && !PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "params must be a dict or None");
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    if (dict != NULL) {
        if (params_from_dict(dict, &items, &params.count) < 0) {
            return NULL;
        }
        params.items = items;
    }
    NXLPY_UNLOCKED(self, st = nxl_backend_create(self->agent, type,
                                                 dict ? &params : NULL, &be));
    PyMem_Free(items);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    res = PyUnicode_FromString(nxl_backend_name(be));
    return res;
}

/* agent_has_backend is Agent.has_backend(type) -> bool. */
static PyObject *
agent_has_backend(nxlpy_agent_t *self, PyObject *arg)
{
    const char *type;

    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    type = PyUnicode_AsUTF8(arg);
    if (type == NULL) {
        return NULL;
    }
    return PyBool_FromLong(nxl_backend_get(self->agent, type) != NULL);
}

/* agent_register is Agent.register(src, mem=None, backends=None) ->
 * Registration. src is anything DescList takes. */
static PyObject *
agent_register(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "mem", "backends", NULL};
    PyObject *src, *mem = Py_None, *backends = Py_None, *res = NULL;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:register", kwlist, &src,
                                     &mem, &backends)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    nxl_opts_init(&opts);
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
        0) {
        return NULL;
    }
    dl = nxlpy_dlist_from(src, mem);
    if (dl == NULL) {
        return NULL;
    }
    cdl = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
    NXLPY_UNLOCKED(self, st = nxl_mem_register(self->agent, &cdl, &opts));
    if (st != NXL_OK) {
        nxlpy_raise(st);
        goto out;
    }
    if (backends != Py_None) {
        backends = PySequence_Tuple(backends);
        if (backends == NULL) {
            goto err_dereg;
        }
    } else {
        Py_INCREF(backends);
    }
    res = nxlpy_reg_new(self, dl, backends == Py_None ? NULL : backends);
    Py_DECREF(backends);
    if (res == NULL) {
        goto err_dereg;
    }
    goto out;

err_dereg:
    (void)nxl_mem_deregister(self->agent, &cdl, &opts);
out:
    Py_DECREF(dl);
    return res;
}

/* mem_raw is Agent.register_raw / Agent.deregister_raw: nxl_mem_register
 * or nxl_mem_deregister on src as they are, with no Registration object. */
static PyObject *
mem_raw(nxlpy_agent_t *self, PyObject *args, PyObject *kw, int reg)
{
    static char *kwlist[] = {"src", "mem", "backends", NULL};
    PyObject *src, *mem = Py_None, *backends = Py_None;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(
            args, kw, reg ? "O|OO:register_raw" : "O|OO:deregister_raw", kwlist,
            &src, &mem, &backends)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    nxl_opts_init(&opts);
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
        0) {
        return NULL;
    }
    dl = nxlpy_dlist_from(src, mem);
    if (dl == NULL) {
        return NULL;
    }
    cdl = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
    if (reg) {
        NXLPY_UNLOCKED(self, st = nxl_mem_register(self->agent, &cdl, &opts));
    } else {
        NXLPY_UNLOCKED(self, st = nxl_mem_deregister(self->agent, &cdl, &opts));
    }
    Py_DECREF(dl);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* agent_register_raw is Agent.register_raw(src, mem=None, backends=None):
 * nxl_mem_register without a Registration: the memory stays registered
 * until deregister_raw or close(), and nothing keeps it alive (NIXL's
 * registerMem, for the nixl package). */
static PyObject *
agent_register_raw(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    return mem_raw(self, args, kw, 1);
}

/* agent_deregister_raw is Agent.deregister_raw(src, mem=None,
 * backends=None): nxl_mem_deregister; each descriptor must match a
 * registration exactly (NIXL's deregisterMem). Not for memory that a
 * Registration object holds. */
static PyObject *
agent_deregister_raw(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    return mem_raw(self, args, kw, 0);
}

/* blob_to_bytes turns a library blob into bytes and frees it. */
static PyObject *
blob_to_bytes(nxl_blob_t *blob)
{
    PyObject *res;

    res = PyBytes_FromStringAndSize(blob->data, (Py_ssize_t)blob->len);
    nxl_blob_free(blob);
    return res;
}

/* agent_metadata is Agent.metadata() -> bytes (all of this agent's
 * metadata). */
static PyObject *
agent_metadata(nxlpy_agent_t *self, PyObject *unused)
{
    nxl_blob_t blob = {NULL, 0};
    nxl_status_t st;

    (void)unused;
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_local(self->agent, &blob));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_to_bytes(&blob);
}

/* opt_dlist converts an optional src (None = NULL) to a DescList. */
static int
opt_dlist(PyObject *src, PyObject *mem, nxlpy_dlist_t **dl_p, nxl_dlist_t *c)
{
    *dl_p = NULL;
    if (src == NULL || src == Py_None) {
        return 0;
    }
    *dl_p = nxlpy_dlist_from(src, mem);
    if (*dl_p == NULL) {
        return -1;
    }
    *c = (nxl_dlist_t){(*dl_p)->mem, (*dl_p)->descs, (*dl_p)->count};
    return 0;
}

/* agent_partial_metadata is Agent.partial_metadata(src=None, mem=None,
 * include_conn_info=False, backends=None) -> bytes: only the registrations
 * of src (conn info only when src is None or empty). */
static PyObject *
agent_partial_metadata(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "mem", "include_conn_info", "backends",
                             NULL};
    PyObject *src = Py_None, *mem = Py_None, *backends = Py_None;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxl_blob_t blob = {NULL, 0};
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;
    int conn = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOpO:partial_metadata", kwlist,
                                     &src, &mem, &conn, &backends)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    nxl_opts_init(&opts);
    opts.include_conn_info = conn;
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
            0 ||
        opt_dlist(src, mem, &dl, &cdl) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_local_partial(
                             self->agent, dl ? &cdl : NULL, &opts, &blob));
    Py_XDECREF(dl);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return blob_to_bytes(&blob);
}

/* agent_load_metadata is Agent.load_metadata(blob) -> the peer's name. */
static PyObject *
agent_load_metadata(nxlpy_agent_t *self, PyObject *arg)
{
    char name[256];
    Py_buffer v;
    nxl_status_t st;

    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_load(self->agent, v.buf, (size_t)v.len,
                                          name, sizeof(name)));
    PyBuffer_Release(&v);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    return PyUnicode_FromString(name);
}

/* agent_invalidate is Agent.invalidate(remote): forget a peer. */
static PyObject *
agent_invalidate(nxlpy_agent_t *self, PyObject *arg)
{
    const char *remote;
    nxl_status_t st;

    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    remote = PyUnicode_AsUTF8(arg);
    if (remote == NULL) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_invalidate(self->agent, remote));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* agent_check is Agent.check(remote, src=None, mem=None) -> bool: is the
 * peer loaded (and does it cover src). */
static PyObject *
agent_check(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"remote", "src", "mem", NULL};
    PyObject *src = Py_None, *mem = Py_None;
    const char *remote;
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|OO:check", kwlist, &remote,
                                     &src, &mem)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0 || opt_dlist(src, mem, &dl, &cdl) < 0) {
        return NULL;
    }
    st = nxl_md_check(self->agent, remote, dl ? &cdl : NULL);
    Py_XDECREF(dl);
    if (st == NXL_OK || st == NXL_ERR_NOT_FOUND) {
        return PyBool_FromLong(st == NXL_OK);
    }
    return nxlpy_raise(st);
}

/* agent_send_metadata is Agent.send_metadata(ip, port=8888, src=None,
 * mem=None, include_conn_info=False, timeout=None, label=None): send
 * (partial, when src is given) metadata to a side channel, which loads it;
 * ip "" publishes it in etcd instead (NXL_ETCD_ENDPOINTS; docs/etcd.md). */
static PyObject *
agent_send_metadata(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "ip",      "port",  "src", "mem", "include_conn_info",
        "timeout", "label", NULL};
    PyObject *src = Py_None, *mem = Py_None, *timeout = Py_None;
    const char *ip, *label = NULL;
    int port = 8888, conn = 0;
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|iOOpOz:send_metadata", kwlist,
                                     &ip, &port, &src, &mem, &conn, &timeout,
                                     &label)) {
        return NULL;
    }
    nxl_opts_init(&opts);
    opts.include_conn_info = conn;
    opts.label = label;
    if (nxlpy_agent_check(self) < 0 ||
        parse_sidechan(ip, port, timeout, &opts) < 0 ||
        opt_dlist(src, mem, &dl, &cdl) < 0) {
        return NULL;
    }
    if (dl != NULL) {
        NXLPY_UNLOCKED(self,
                       st = nxl_md_send_partial(self->agent, &cdl, &opts));
    } else {
        NXLPY_UNLOCKED(self, st = nxl_md_send(self->agent, &opts));
    }
    Py_XDECREF(dl);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* agent_fetch_metadata is Agent.fetch_metadata(ip, port=8888, remote=None,
 * timeout=None, label=None): load the metadata of the side channel's agent
 * (which must be called remote when given); ip "": remote's metadata from
 * etcd, under label (default "metadata"), watched from then on. */
static PyObject *
agent_fetch_metadata(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"ip", "port", "remote", "timeout", "label", NULL};
    PyObject *timeout = Py_None;
    const char *ip, *remote = NULL, *label = NULL;
    int port = 8888;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|izOz:fetch_metadata", kwlist,
                                     &ip, &port, &remote, &timeout, &label)) {
        return NULL;
    }
    nxl_opts_init(&opts);
    opts.label = label;
    if (nxlpy_agent_check(self) < 0 ||
        parse_sidechan(ip, port, timeout, &opts) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_fetch(self->agent, remote, &opts));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* agent_invalidate_local is Agent.invalidate_local(ip, port=8888,
 * timeout=None): tell a side channel to forget this agent; ip "": delete
 * its keys in etcd. */
static PyObject *
agent_invalidate_local(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"ip", "port", "timeout", NULL};
    PyObject *timeout = Py_None;
    const char *ip;
    int port = 8888;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|iO:invalidate_local", kwlist,
                                     &ip, &port, &timeout)) {
        return NULL;
    }
    nxl_opts_init(&opts);
    if (nxlpy_agent_check(self) < 0 ||
        parse_sidechan(ip, port, timeout, &opts) < 0) {
        return NULL;
    }
    NXLPY_UNLOCKED(self, st = nxl_md_invalidate_local(self->agent, &opts));
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* agent_prep is Agent.prep(src, remote=None, mem=None, backends=None) ->
 * Prepped: src resolved once against local registrations (remote None) or
 * a loaded peer's (remote = its name, or this agent's own for loopback). */
static PyObject *
agent_prep(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "remote", "mem", "backends", NULL};
    PyObject *src, *remote = Py_None, *mem = Py_None, *backends = Py_None;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxl_prepped_t *pp = NULL;
    const char *cremote = NULL;
    nxlpy_dlist_t *dl;
    nxl_dlist_t cdl;
    nxl_opts_t opts;
    nxl_status_t st;
    PyObject *res;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOO:prep", kwlist, &src,
                                     &remote, &mem, &backends)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    if (remote != Py_None) {
        cremote = PyUnicode_Check(remote) ? PyUnicode_AsUTF8(remote) : NULL;
        if (cremote == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "remote must be a str");
            }
            return NULL;
        }
    }
    nxl_opts_init(&opts);
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
        0) {
        return NULL;
    }
    dl = nxlpy_dlist_from(src, mem);
    if (dl == NULL) {
        return NULL;
    }
    cdl = (nxl_dlist_t){dl->mem, dl->descs, dl->count};
    NXLPY_UNLOCKED(self,
                   st = nxl_dlist_prep(self->agent, cremote, &cdl, &opts, &pp));
    if (st != NXL_OK) {
        Py_DECREF(dl);
        return nxlpy_raise(st);
    }
    res = nxlpy_prepped_new(self, pp, dl, remote);
    Py_DECREF(dl);
    if (res == NULL) {
        nxl_dlist_release(pp);
    }
    return res;
}

/* An index array for nxl_xfer_make: either borrowed from a buffer or
 * owned. */
typedef struct idx {
    const size_t *p;
    size_t n;
    size_t *owned;
    Py_buffer view;
    int has_view;
} idx_t;

/* idx_release drops the view or the owned copy. */
static void
idx_release(idx_t *x)
{
    if (x->has_view) {
        PyBuffer_Release(&x->view);
    }
    PyMem_Free(x->owned);
}

/* idx_from_buffer reads a 1-D integer array. 8-byte native integers that
 * are contiguous are used in place (the fast path); other integer types
 * are converted. */
static int
idx_from_buffer(PyObject *obj, idx_t *x)
{
    Py_buffer *v = &x->view;
    const char *f;
    Py_ssize_t i;
    char c;

    if (PyObject_GetBuffer(obj, v, PyBUF_RECORDS_RO) < 0) {
        return -1;
    }
    x->has_view = 1;
    f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') {
        f++;
    }
    c = f[0];
    if (v->ndim != 1 || c == '\0' || f[1] != '\0' ||
        strchr("bBhHiIlLqQnN", c) == NULL) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "indices must be a 1-D integer array");
        return -1;
    }
    x->n = (size_t)v->shape[0];
    if (v->itemsize == 8 && v->strides[0] == 8) {
        x->p = v->buf; /* negative int64 values fail as out of range */
        return 0;
    }
    x->owned = PyMem_Malloc((x->n ? x->n : 1) * sizeof(size_t));
    if (x->owned == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < v->shape[0]; i++) {
        const char *e = (const char *)v->buf + i * v->strides[0];
        int64_t sv = 0;
        uint64_t uv = 0;
        int is_signed = (c >= 'a' && c <= 'z');

        switch (v->itemsize) {
        case 1:
            sv = *(const int8_t *)e, uv = *(const uint8_t *)e;
            break;
        case 2:
            sv = *(const int16_t *)e, uv = *(const uint16_t *)e;
            break;
        case 4:
            sv = *(const int32_t *)e, uv = *(const uint32_t *)e;
            break;
        default:
            memcpy(&sv, e, 8), memcpy(&uv, e, 8);
            break;
        }
        if (is_signed && sv < 0) {
            nxlpy_raise_msg(NXL_ERR_INVALID_PARAM, "index %zd is negative", i);
            return -1;
        }
        x->owned[i] = is_signed ? (size_t)sv : (size_t)uv;
    }
    x->p = x->owned;
    return 0;
}

/* idx_from_seq reads a list or tuple (or any iterable) of ints. */
static int
idx_from_seq(PyObject *obj, idx_t *x)
{
    PyObject *seq, **items;
    Py_ssize_t i, n;
    int rc = -1;

    seq = PySequence_Fast(obj, "indices must be a sequence of ints or an "
                               "integer array");
    if (seq == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    items = PySequence_Fast_ITEMS(seq);
    x->owned = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(size_t));
    if (x->owned == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < n; i++) {
        size_t v;

        if (PyLong_Check(items[i])) {
            v = PyLong_AsSize_t(items[i]);
        } else {
            PyObject *ix = PyNumber_Index(items[i]);

            if (ix == NULL) {
                goto out;
            }
            v = PyLong_AsSize_t(ix);
            Py_DECREF(ix);
        }
        if (v == (size_t)-1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                                "index %zd is negative or too large", i);
            }
            goto out;
        }
        x->owned[i] = v;
    }
    x->p = x->owned;
    x->n = (size_t)n;
    rc = 0;
out:
    Py_DECREF(seq);
    return rc;
}

/* idx_get reads indices: None (0..count-1), an integer array or a
 * sequence of ints. */
static int
idx_get(PyObject *obj, size_t count, idx_t *x)
{
    size_t i;

    memset(x, 0, sizeof(*x));
    if (obj == Py_None) {
        x->owned = PyMem_Malloc((count ? count : 1) * sizeof(size_t));
        if (x->owned == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (i = 0; i < count; i++) {
            x->owned[i] = i;
        }
        x->p = x->owned;
        x->n = count;
        return 0;
    }
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        return idx_from_seq(obj, x);
    }
    if (PyObject_CheckBuffer(obj)) {
        return idx_from_buffer(obj, x);
    }
    return idx_from_seq(obj, x);
}

/* agent_make_xfer is Agent.make_xfer(op, local, lidx, remote, ridx,
 * notif=None, backends=None, skip_merge=False) -> Transfer, from prepared
 * lists by index. */
static PyObject *
agent_make_xfer(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"op",       "local",      "lidx",
                             "remote",   "ridx",       "notif",
                             "backends", "skip_merge", NULL};
    PyObject *opobj, *lobj, *lidx, *robj, *ridx;
    PyObject *notif = Py_None, *backends = Py_None, *res = NULL;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxlpy_prepped_t *lp, *rp;
    idx_t li, ri;
    nxl_xfer_t *x = NULL;
    nxl_opts_t opts;
    nxl_status_t st;
    int op, skip = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!OO!O|OOp:make_xfer", kwlist,
                                     &opobj, &nxlpy_prepped_type, &lobj, &lidx,
                                     &nxlpy_prepped_type, &robj, &ridx, &notif,
                                     &backends, &skip)) {
        return NULL;
    }
    lp = (nxlpy_prepped_t *)lobj;
    rp = (nxlpy_prepped_t *)robj;
    if (nxlpy_agent_check(self) < 0 || nxlpy_parse_op(opobj, &op) < 0) {
        return NULL;
    }
    if (lp->prepped == NULL || rp->prepped == NULL) {
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                               "a prepared list was released");
    }
    if (lp->agent != self || rp->agent != self) {
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                               "a prepared list belongs to another agent");
    }
    if (op == NXL_READ && lp->readonly) {
        return nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                               "READ into read-only local memory");
    }
    nxl_opts_init(&opts);
    opts.skip_merge = skip;
    if (notif != Py_None) {
        Py_ssize_t len;

        if (nxlpy_parse_bytes(notif, (const char **)&opts.notif, &len) < 0) {
            return NULL;
        }
        opts.has_notif = 1;
        opts.notif_len = (size_t)len;
    }
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
        0) {
        return NULL;
    }
    if (idx_get(lidx, lp->count, &li) < 0) {
        idx_release(&li);
        return NULL;
    }
    if (idx_get(ridx, rp->count, &ri) < 0) {
        goto out;
    }
    if (li.n != ri.n) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "%zu local and %zu remote indices", li.n, ri.n);
        goto out;
    }
    st = nxl_xfer_make(self->agent, (nxl_op_t)op, lp->prepped, li.p,
                       rp->prepped, ri.p, li.n, &opts, &x);
    if (st != NXL_OK) {
        nxlpy_raise(st);
        goto out;
    }
    res = nxlpy_xfer_new(self, x, op, lobj);
out:
    idx_release(&li);
    idx_release(&ri);
    return res;
}

/* agent_xfer is Agent.xfer(op, local, remote, remote_agent, notif=None,
 * backends=None, mem=None, remote_mem=None, skip_merge=False) -> Transfer:
 * one-shot, from two descriptor lists of equal count. */
static PyObject *
agent_xfer(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"op",         "local",    "remote", "remote_agent",
                             "notif",      "backends", "mem",    "remote_mem",
                             "skip_merge", NULL};
    PyObject *opobj, *lsrc, *rsrc, *notif = Py_None, *backends = Py_None;
    PyObject *mem = Py_None, *rmem = Py_None, *res = NULL;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    nxlpy_dlist_t *ldl = NULL, *rdl = NULL;
    nxl_dlist_t lc, rcd;
    const char *ragent;
    nxl_xfer_t *x = NULL;
    nxl_opts_t opts;
    nxl_status_t st;
    int op, skip = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOs|OOOOp:xfer", kwlist,
                                     &opobj, &lsrc, &rsrc, &ragent, &notif,
                                     &backends, &mem, &rmem, &skip)) {
        return NULL;
    }
    if (nxlpy_agent_check(self) < 0 || nxlpy_parse_op(opobj, &op) < 0) {
        return NULL;
    }
    nxl_opts_init(&opts);
    opts.skip_merge = skip;
    if (notif != Py_None) {
        Py_ssize_t len;

        if (nxlpy_parse_bytes(notif, (const char **)&opts.notif, &len) < 0) {
            return NULL;
        }
        opts.has_notif = 1;
        opts.notif_len = (size_t)len;
    }
    if (nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
        0) {
        return NULL;
    }
    ldl = nxlpy_dlist_from(lsrc, mem);
    if (ldl == NULL) {
        return NULL;
    }
    rdl = nxlpy_dlist_from(rsrc, rmem == Py_None ? mem : rmem);
    if (rdl == NULL) {
        goto out;
    }
    if (op == NXL_READ && ldl->readonly) {
        nxlpy_raise_msg(NXL_ERR_INVALID_PARAM,
                        "READ into read-only local memory");
        goto out;
    }
    lc = (nxl_dlist_t){ldl->mem, ldl->descs, ldl->count};
    rcd = (nxl_dlist_t){rdl->mem, rdl->descs, rdl->count};
    st = nxl_xfer_create(self->agent, (nxl_op_t)op, &lc, &rcd, ragent, &opts,
                         &x);
    if (st != NXL_OK) {
        nxlpy_raise(st);
        goto out;
    }
    res = nxlpy_xfer_new(self, x, op, (PyObject *)ldl);
out:
    Py_XDECREF(ldl);
    Py_XDECREF(rdl);
    return res;
}

/* agent_send_notif is Agent.send_notif(remote, msg, backends=None). */
static PyObject *
agent_send_notif(nxlpy_agent_t *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"remote", "msg", "backends", NULL};
    PyObject *msg, *backends = Py_None;
    nxl_backend_t *bes[NXLPY_MAX_BACKENDS];
    const char *remote, *data;
    Py_ssize_t len;
    nxl_opts_t opts;
    nxl_status_t st;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|O:send_notif", kwlist,
                                     &remote, &msg, &backends)) {
        return NULL;
    }
    nxl_opts_init(&opts);
    if (nxlpy_agent_check(self) < 0 ||
        nxlpy_parse_bytes(msg, &data, &len) < 0 ||
        nxlpy_opts_backends(self, backends, &opts, bes, NXLPY_MAX_BACKENDS) <
            0) {
        return NULL;
    }
    st = nxl_notif_send(self->agent, remote, data, (size_t)len, &opts);
    if (st != NXL_OK) {
        return nxlpy_raise(st);
    }
    Py_RETURN_NONE;
}

/* notifs_fetch returns the batch nxl_notifs_get received, or NULL with an
 * exception. */
static nxl_notif_list_t *
notifs_fetch(nxlpy_agent_t *self)
{
    nxl_notif_list_t *list = NULL;
    nxl_status_t st;

    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    st = nxl_notifs_get(self->agent, &list, NULL);
    if (st != NXL_OK) {
        nxlpy_raise(st);
        return NULL;
    }
    return list;
}

/* agent_get_notifs is Agent.get_notifs() -> {sender: [bytes, ...]}: the
 * notifications received since the last call, in arrival order per
 * sender. */
static PyObject *
agent_get_notifs(nxlpy_agent_t *self, PyObject *unused)
{
    nxl_notif_list_t *list;
    PyObject *res, *key = NULL, *msgs = NULL, *m;
    const char *last = NULL;
    size_t i;

    (void)unused;
    list = notifs_fetch(self);
    if (list == NULL) {
        return NULL;
    }
    res = PyDict_New();
    if (res == NULL) {
        goto err;
    }
    for (i = 0; i < list->count; i++) {
        const nxl_notif_t *n = &list->items[i];

        if (last == NULL || strcmp(last, n->agent) != 0) {
            Py_XDECREF(key);
            key = PyUnicode_FromString(n->agent);
            if (key == NULL) {
                goto err;
            }
            msgs = PyDict_GetItemWithError(res, key); /* borrowed */
            if (msgs == NULL) {
                if (PyErr_Occurred()) {
                    goto err;
                }
                msgs = PyList_New(0);
                if (msgs == NULL || PyDict_SetItem(res, key, msgs) < 0) {
                    Py_XDECREF(msgs);
                    goto err;
                }
                Py_DECREF(msgs); /* the dict holds it */
            }
            last = n->agent;
        }
        m = PyBytes_FromStringAndSize(n->msg, (Py_ssize_t)n->len);
        if (m == NULL || PyList_Append(msgs, m) < 0) {
            Py_XDECREF(m);
            goto err;
        }
        Py_DECREF(m);
    }
    Py_XDECREF(key);
    nxl_notif_list_free(list);
    return res;

err:
    Py_XDECREF(key);
    Py_XDECREF(res);
    nxl_notif_list_free(list);
    return NULL;
}

/* agent_get_notif_pairs is Agent.get_notif_pairs() -> [(sender, bytes)]
 * in arrival order. */
static PyObject *
agent_get_notif_pairs(nxlpy_agent_t *self, PyObject *unused)
{
    nxl_notif_list_t *list;
    PyObject *res, *pair;
    size_t i;

    (void)unused;
    list = notifs_fetch(self);
    if (list == NULL) {
        return NULL;
    }
    res = PyList_New((Py_ssize_t)list->count);
    if (res == NULL) {
        goto out;
    }
    for (i = 0; i < list->count; i++) {
        pair = Py_BuildValue("(sy#)", list->items[i].agent,
                             (const char *)list->items[i].msg,
                             (Py_ssize_t)list->items[i].len);
        if (pair == NULL) {
            Py_CLEAR(res);
            goto out;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)i, pair);
    }
out:
    nxl_notif_list_free(list);
    return res;
}

/* agent_get_name is Agent.name. */
static PyObject *
agent_get_name(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    if (self->name == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(self->name);
}

/* agent_get_fd is Agent.fd: readable when progress or notifications may be
 * pending (see docs/python.md for the progress-thread caveat). */
static PyObject *
agent_get_fd(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(nxl_agent_fd(self->agent));
}

/* agent_get_listen_port is Agent.listen_port (0 without a listener). */
static PyObject *
agent_get_listen_port(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    if (nxlpy_agent_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(nxl_agent_listen_port(self->agent));
}

/* agent_get_closed is Agent.closed. */
static PyObject *
agent_get_closed(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->agent == NULL);
}

/* agent_get_progress_thread is Agent.progress_thread. */
static PyObject *
agent_get_progress_thread(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->progress_thread);
}

/* agent_get_telemetry is Agent.telemetry (captures telemetry). */
static PyObject *
agent_get_telemetry(nxlpy_agent_t *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->telemetry);
}

/* agent_enter is Agent.__enter__. */
static PyObject *
agent_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* agent_exit is Agent.__exit__: close(). */
static PyObject *
agent_exit(nxlpy_agent_t *self, PyObject *args)
{
    (void)args;
    return agent_close(self, NULL);
}

/* agent_repr shows the name and state. */
static PyObject *
agent_repr(nxlpy_agent_t *self)
{
    return PyUnicode_FromFormat("<nxl.Agent %R%s>",
                                self->name ? self->name : Py_None,
                                self->agent ? "" : " closed");
}

static PyMethodDef agent_methods[] = {
    {"close", (PyCFunction)agent_close, METH_NOARGS,
     "close()\n--\n\nDestroy the agent: cancel its transfers, drop its "
     "registrations."},
    {"progress", (PyCFunction)agent_progress, METH_NOARGS,
     "progress()\n--\n\nDrive every backend once; returns events handled."},
    {"create_backend", (PyCFunction)(void (*)(void))agent_create_backend,
     METH_VARARGS | METH_KEYWORDS,
     "create_backend(type, params=None)\n--\n\nCreate a backend (params: "
     "dict of str to str); returns its name."},
    {"has_backend", (PyCFunction)agent_has_backend, METH_O,
     "has_backend(type)\n--\n\nWhether a backend of this type exists."},
    {"register", (PyCFunction)(void (*)(void))agent_register,
     METH_VARARGS | METH_KEYWORDS,
     "register(src, mem=None, backends=None)\n--\n\nRegister memory; "
     "returns a Registration."},
    {"register_raw", (PyCFunction)(void (*)(void))agent_register_raw,
     METH_VARARGS | METH_KEYWORDS,
     "register_raw(src, mem=None, backends=None)\n--\n\nRegister memory "
     "without a Registration object (until deregister_raw or close); "
     "nothing keeps the memory alive."},
    {"deregister_raw", (PyCFunction)(void (*)(void))agent_deregister_raw,
     METH_VARARGS | METH_KEYWORDS,
     "deregister_raw(src, mem=None, backends=None)\n--\n\nDeregister "
     "descriptors that match registrations made by register_raw."},
    {"metadata", (PyCFunction)agent_metadata, METH_NOARGS,
     "metadata()\n--\n\nThis agent's metadata (bytes)."},
    {"partial_metadata", (PyCFunction)(void (*)(void))agent_partial_metadata,
     METH_VARARGS | METH_KEYWORDS,
     "partial_metadata(src=None, mem=None, include_conn_info=False, "
     "backends=None)\n--\n\nMetadata of some registrations (bytes)."},
    {"load_metadata", (PyCFunction)agent_load_metadata, METH_O,
     "load_metadata(blob)\n--\n\nLoad a peer's metadata; returns its name."},
    {"invalidate", (PyCFunction)agent_invalidate, METH_O,
     "invalidate(remote)\n--\n\nForget a peer's metadata."},
    {"check", (PyCFunction)(void (*)(void))agent_check,
     METH_VARARGS | METH_KEYWORDS,
     "check(remote, src=None, mem=None)\n--\n\nWhether the peer is loaded "
     "(and covers src)."},
    {"send_metadata", (PyCFunction)(void (*)(void))agent_send_metadata,
     METH_VARARGS | METH_KEYWORDS,
     "send_metadata(ip, port=8888, src=None, mem=None, "
     "include_conn_info=False, timeout=None)\n--\n\nSend (partial) metadata "
     "to a side channel."},
    {"fetch_metadata", (PyCFunction)(void (*)(void))agent_fetch_metadata,
     METH_VARARGS | METH_KEYWORDS,
     "fetch_metadata(ip, port=8888, remote=None, timeout=None)\n--\n\nLoad "
     "the metadata of a side channel's agent."},
    {"invalidate_local", (PyCFunction)(void (*)(void))agent_invalidate_local,
     METH_VARARGS | METH_KEYWORDS,
     "invalidate_local(ip, port=8888, timeout=None)\n--\n\nTell a side "
     "channel to forget this agent."},
    {"prep", (PyCFunction)(void (*)(void))agent_prep,
     METH_VARARGS | METH_KEYWORDS,
     "prep(src, remote=None, mem=None, backends=None)\n--\n\nA prepared "
     "descriptor list for make_xfer."},
    {"make_xfer", (PyCFunction)(void (*)(void))agent_make_xfer,
     METH_VARARGS | METH_KEYWORDS,
     "make_xfer(op, local, lidx, remote, ridx, notif=None, backends=None, "
     "skip_merge=False)\n--\n\nA transfer of local[lidx[i]] <-> "
     "remote[ridx[i]]; indices are integer arrays, sequences of ints or "
     "None (all, in order)."},
    {"xfer", (PyCFunction)(void (*)(void))agent_xfer,
     METH_VARARGS | METH_KEYWORDS,
     "xfer(op, local, remote, remote_agent, notif=None, backends=None, "
     "mem=None, remote_mem=None, skip_merge=False)\n--\n\nA one-shot "
     "transfer between two descriptor lists."},
    {"send_notif", (PyCFunction)(void (*)(void))agent_send_notif,
     METH_VARARGS | METH_KEYWORDS,
     "send_notif(remote, msg, backends=None)\n--\n\nSend a notification."},
    {"get_notifs", (PyCFunction)agent_get_notifs, METH_NOARGS,
     "get_notifs()\n--\n\nNotifications received since the last call: "
     "{sender: [bytes, ...]}."},
    {"get_notif_pairs", (PyCFunction)agent_get_notif_pairs, METH_NOARGS,
     "get_notif_pairs()\n--\n\nNotifications received since the last call: "
     "[(sender, bytes), ...] in arrival order."},
    {"__enter__", (PyCFunction)agent_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)agent_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef agent_getset[] = {
    {"name", (getter)agent_get_name, NULL, "the agent's name", NULL},
    {"fd", (getter)agent_get_fd, NULL,
     "a file descriptor readable when progress may be pending", NULL},
    {"listen_port", (getter)agent_get_listen_port, NULL,
     "the side-channel port (0 without a listener)", NULL},
    {"closed", (getter)agent_get_closed, NULL, "True once closed", NULL},
    {"progress_thread", (getter)agent_get_progress_thread, NULL,
     "True when the agent runs a progress thread", NULL},
    {"telemetry", (getter)agent_get_telemetry, NULL,
     "True when the agent captures telemetry", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject nxlpy_agent_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nxl._nxl.Agent",
    .tp_basicsize = sizeof(nxlpy_agent_t),
    .tp_dealloc = (destructor)agent_dealloc,
    .tp_repr = (reprfunc)agent_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The native agent; use nxl.Agent.",
    .tp_weaklistoffset = offsetof(nxlpy_agent_t, weakrefs),
    .tp_methods = agent_methods,
    .tp_getset = agent_getset,
    .tp_init = (initproc)agent_init,
    .tp_new = agent_new,
};
