/* ringbuf._ringcore: the ring's single-record lane in C (optional; ringbuf.ring is the reference).
 *
 * Owns: RingCore, the C base of ringbuf.ring.CRing: the producer's and consumer's private
 * positions (_tail, _limit, _cursor) and the buffer of the segment, held once per ring, and
 * the lane's methods write, read_one, commit and _recv_spin (ringbuf.doorbell.Consumer.recv's
 * spin loop); Sender, the callable behind ringbuf.doorbell.Producer.send for such a ring
 * (write, then ring the doorbell only if the consumer sleeps); full_fence, the store-load fence of the
 * doorbell's handshake for the producers and consumers written in Python.
 * Never: changes the layout or framing of ringbuf.ring (its docstring is the specification,
 * and this file writes and reads exactly those bytes), sleeps, takes a lock, or raises a ring
 * error itself: wrong framing and records too large go to the Python methods that raise them.
 *
 * Ordering: the tail and the head are published with one 8-byte store-release
 * (__atomic_store_n(..., __ATOMIC_RELEASE)) and the other side's position is read with
 * load-acquire; on x86-64 both are plain aligned moves, the same instructions as the Python
 * path's memoryview stores, so the two mix on one ring in either direction. Sender puts a full
 * fence between the tail store and the load of sleeping (the doorbell's steps p1 and p2: a store
 * followed by a load of another address is the one reordering x86 does); see ringbuf.doorbell.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEADER_BYTES 512
#define CAPACITY_OFFSET 16
#define TAIL_OFFSET 128
#define HEAD_OFFSET 256
#define SLEEPING_OFFSET 384
#define WRAP 0xFFFFFFFFu

typedef struct {
    PyObject_HEAD
    /* The private positions, as Python ints: the Python code of Ring reads and writes them as
     * plain slots (T_OBJECT_EX members, which the interpreter's attribute specialisation
     * handles like __slots__, so the batch and numpy paths pay nothing for living here). */
    PyObject *tail;   /* _tail: end of the last record this producer published */
    PyObject *limit;  /* _limit: the producer's cached head + capacity */
    PyObject *cursor; /* _cursor: the consumer's read cursor */
    Py_buffer view;            /* the whole segment; held from _open_lane to _close_lane */
    int open;
    uint64_t *tail_p;
    uint64_t *head_p;
    uint64_t *sleeping_p;
    unsigned char *data;
    uint64_t capacity;
    uint64_t mask;
    uint64_t max_slot;
    uint64_t max_record;
} RingCore;

static PyTypeObject RingCoreType;

static int
closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "operation on a closed ring");
    return -1;
}

/* A position member as a number: 0, or -1 with an error set. */
static inline int
get_pos(PyObject *value, const char *name, uint64_t *out)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "ring position %s is not set", name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* Store a position member: 0, or -1 with an error set (then the member is unchanged). */
static inline int
set_pos(PyObject **slot, uint64_t value)
{
    PyObject *obj = PyLong_FromUnsignedLongLong(value);
    if (obj == NULL)
        return -1;
    Py_XSETREF(*slot, obj);
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */

static PyObject *
core_open_lane(RingCore *self, PyObject *buffer)
{
    if (self->open) {
        PyErr_SetString(PyExc_ValueError, "ring lane is open already");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0)
        return NULL;
    unsigned char *base = (unsigned char *)self->view.buf;
    uint64_t capacity = 0;
    if (self->view.len >= HEADER_BYTES)
        memcpy(&capacity, base + CAPACITY_OFFSET, 8);
    if (self->view.len < HEADER_BYTES || ((uintptr_t)base & 7) != 0 || capacity < 64 ||
        (capacity & (capacity - 1)) != 0 || (uint64_t)self->view.len - HEADER_BYTES < capacity) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes does not hold a ring (capacity word %llu)",
                     self->view.len, (unsigned long long)capacity);
        PyBuffer_Release(&self->view);
        return NULL;
    }
    self->tail_p = (uint64_t *)(base + TAIL_OFFSET);
    self->head_p = (uint64_t *)(base + HEAD_OFFSET);
    self->sleeping_p = (uint64_t *)(base + SLEEPING_OFFSET);
    self->data = base + HEADER_BYTES;
    self->capacity = capacity;
    self->mask = capacity - 1;
    self->max_slot = capacity / 2;
    self->max_record = capacity / 2 - 4;
    self->open = 1;
    Py_RETURN_NONE;
}

static PyObject *
core_close_lane(RingCore *self, PyObject *Py_UNUSED(ignored))
{
    if (self->open) {
        self->open = 0;
        self->tail_p = self->head_p = self->sleeping_p = NULL;
        self->data = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_RETURN_NONE;
}

static void
core_dealloc(RingCore *self)
{
    if (self->open) {
        self->open = 0;
        PyBuffer_Release(&self->view);
    }
    Py_CLEAR(self->tail);
    Py_CLEAR(self->limit);
    Py_CLEAR(self->cursor);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------- producer side */

/* Ring.write: 1 written and published, 0 no room, -1 error set. */
static int
core_write_impl(RingCore *self, PyObject *record)
{
    const char *src;
    Py_ssize_t n;
    Py_buffer rv;
    rv.obj = NULL;
    int result = -1;
    if (PyBytes_CheckExact(record)) {
        src = PyBytes_AS_STRING(record);
        n = PyBytes_GET_SIZE(record);
    }
    else if (PyByteArray_CheckExact(record)) {
        src = PyByteArray_AS_STRING(record);
        n = PyByteArray_GET_SIZE(record);
    }
    else {
        if (PyObject_GetBuffer(record, &rv, PyBUF_SIMPLE) < 0)
            return -1;
        src = (const char *)rv.buf;
        n = rv.len;
    }
    if (!self->open) {
        closed_error();
        goto done;
    }
    uint64_t size = ((uint64_t)n + 11) & ~(uint64_t)7;
    if (size > self->max_slot) {
        /* Ring._write_slow raises RecordTooLarge with the ring's own message */
        PyObject *res = PyObject_CallMethod((PyObject *)self, "_write_slow", "O", record);
        if (res != NULL) {
            result = PyObject_IsTrue(res);
            Py_DECREF(res);
        }
        goto done;
    }
    uint64_t tail, limit;
    if (get_pos(self->tail, "_tail", &tail) < 0 || get_pos(self->limit, "_limit", &limit) < 0)
        goto done;
    uint64_t pos = tail & self->mask;
    uint64_t skip = pos + size > self->capacity ? self->capacity - pos : 0;
    uint64_t end = tail + skip + size;
    if (end > limit) {
        /* acquire: the consumer copied these bytes out before its head store freed them */
        limit = __atomic_load_n(self->head_p, __ATOMIC_ACQUIRE) + self->capacity;
        if (set_pos(&self->limit, limit) < 0)
            goto done;
        if (end > limit) {
            result = 0;
            goto done;
        }
    }
    PyObject *new_tail = PyLong_FromUnsignedLongLong(end); /* before the publish: nothing can fail after it */
    if (new_tail == NULL)
        goto done;
    unsigned char *data = self->data;
    if (skip) {
        *(uint32_t *)(data + pos) = WRAP;
        pos = 0;
    }
    *(uint32_t *)(data + pos) = (uint32_t)n;
    memcpy(data + pos + 4, src, (size_t)n);
    /* publish: one 8-byte store-release, after the length and the payload */
    __atomic_store_n(self->tail_p, end, __ATOMIC_RELEASE);
    Py_XSETREF(self->tail, new_tail);
    result = 1;
done:
    if (rv.obj != NULL)
        PyBuffer_Release(&rv);
    return result;
}

static PyObject *
core_write(RingCore *self, PyObject *record)
{
    int ok = core_write_impl(self, record);
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok);
}

/* ------------------------------------------------------------- consumer side */

/* The record at the cursor, whose publication the tail (already loaded with acquire) covers. */
static PyObject *
core_take(RingCore *self, uint64_t cursor, uint64_t tail)
{
    unsigned char *data = self->data;
    uint64_t pos = cursor & self->mask;
    uint64_t start = cursor;
    uint32_t n = *(const uint32_t *)(data + pos);
    if (n == WRAP) {
        start = (cursor | self->mask) + 1;
        pos = 0;
        n = *(const uint32_t *)data;
    }
    uint64_t end = start + (((uint64_t)n + 11) & ~(uint64_t)7);
    if (n > self->max_record || end > tail) /* framing that cannot be right: Ring._read_one_slow says why */
        return PyObject_CallMethod((PyObject *)self, "_read_one_slow", "KK", (unsigned long long)cursor,
                                   (unsigned long long)tail);
    PyObject *out = PyBytes_FromStringAndSize((const char *)data + pos + 4, (Py_ssize_t)n);
    if (out != NULL && set_pos(&self->cursor, end) < 0)
        Py_CLEAR(out);
    return out;
}

/* The one optional argument of read_one(spin=0) and _recv_spin(timeout=None): NULL if absent. */
static int
one_optional_arg(const char *fname, const char *kw, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **value)
{
    *value = NULL;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 positional argument (%zd given)", fname, nargs);
        return -1;
    }
    if (nargs == 1)
        *value = args[0];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (*value != NULL || PyUnicode_CompareWithASCIIString(key, kw) != 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fname, key);
                return -1;
            }
            *value = args[nargs + i];
        }
    }
    return 0;
}

static PyObject *
core_read_one(RingCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *spin_obj;
    long long spin = 0;
    if (one_optional_arg("read_one", "spin", args, nargs, kwnames, &spin_obj) < 0)
        return NULL;
    if (spin_obj != NULL) {
        spin = PyLong_AsLongLong(spin_obj);
        if (spin == -1 && PyErr_Occurred())
            return NULL;
    }
    if (!self->open) {
        closed_error();
        return NULL;
    }
    uint64_t cursor;
    if (get_pos(self->cursor, "_cursor", &cursor) < 0)
        return NULL;
    uint64_t tail = __atomic_load_n(self->tail_p, __ATOMIC_ACQUIRE);
    while (tail == cursor) { /* empty: poll the tail up to spin times, one 8-byte load-acquire each */
        if (spin-- <= 0)
            Py_RETURN_NONE;
        tail = __atomic_load_n(self->tail_p, __ATOMIC_ACQUIRE);
    }
    return core_take(self, cursor, tail);
}

#define SPIN_ROUND 256    /* polls between clock reads (with a timeout) */
#define YIELD_ROUNDS 1024 /* rounds between signal checks and GIL hand-overs: a few hundred us */

static double
monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic's clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Consumer.recv for one CRing with the spin strategy: poll until a record comes, or until
 * ``timeout`` seconds have passed (None: no end). Every YIELD_ROUNDS rounds it looks at the
 * signals (Ctrl-C works) and lets go of the GIL for a moment, so the process's other threads
 * run as they do beside the Python loop (which returns to the interpreter every few us). */
static PyObject *
core_recv_spin(RingCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *timeout_obj;
    double deadline = 0.0;
    int bounded = 0;
    if (one_optional_arg("recv", "timeout", args, nargs, kwnames, &timeout_obj) < 0)
        return NULL;
    if (timeout_obj != NULL && timeout_obj != Py_None) {
        double timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        deadline = monotonic_s() + timeout;
        bounded = 1;
    }
    if (!self->open) {
        closed_error();
        return NULL;
    }
    uint64_t cursor;
    if (get_pos(self->cursor, "_cursor", &cursor) < 0)
        return NULL;
    const uint64_t *tail_p = self->tail_p;
    uint64_t tail;
    for (unsigned long rounds = 1;; rounds++) {
        for (int i = 0; i < SPIN_ROUND; i++) {
            tail = __atomic_load_n(tail_p, __ATOMIC_ACQUIRE);
            if (tail != cursor)
                return core_take(self, cursor, tail);
        }
        if (bounded && monotonic_s() >= deadline)
            Py_RETURN_NONE;
        if (rounds % YIELD_ROUNDS == 0) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
            Py_BEGIN_ALLOW_THREADS
            Py_END_ALLOW_THREADS
            if (!self->open) { /* another thread closed the ring meanwhile */
                closed_error();
                return NULL;
            }
            if (get_pos(self->cursor, "_cursor", &cursor) < 0)
                return NULL;
            tail_p = self->tail_p;
        }
    }
}

static PyObject *
core_commit(RingCore *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->open) {
        closed_error();
        return NULL;
    }
    uint64_t cursor;
    if (get_pos(self->cursor, "_cursor", &cursor) < 0)
        return NULL;
    /* release: the records before the cursor were copied out before the space is freed */
    __atomic_store_n(self->head_p, cursor, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"_open_lane", (PyCFunction)core_open_lane, METH_O, "Hold the segment's buffer (once, from Ring.__init__)."},
    {"_close_lane", (PyCFunction)core_close_lane, METH_NOARGS, "Release the segment's buffer (idempotent)."},
    {"write", (PyCFunction)core_write, METH_O,
     "Append one record and publish it; False (nothing written) when there is no room."},
    {"read_one", (PyCFunction)(void (*)(void))core_read_one, METH_FASTCALL | METH_KEYWORDS,
     "The record after the read cursor (a copy), or None when none is pending; frees nothing."},
    {"_recv_spin", (PyCFunction)(void (*)(void))core_recv_spin, METH_FASTCALL | METH_KEYWORDS,
     "Consumer.recv(timeout=None) for one ring and the spin strategy: the next record, or None at the timeout."},
    {"commit", (PyCFunction)core_commit, METH_NOARGS,
     "Free everything returned by read so far; a restarted consumer starts here."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_tail", T_OBJECT_EX, offsetof(RingCore, tail), 0, NULL},
    {"_limit", T_OBJECT_EX, offsetof(RingCore, limit), 0, NULL},
    {"_cursor", T_OBJECT_EX, offsetof(RingCore, cursor), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RingCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringbuf._ringcore.RingCore",
    .tp_basicsize = sizeof(RingCore),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C base of ringbuf.ring.CRing: positions, the segment's buffer, the single-record lane.",
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------- fence */

/* A full fence: no later load runs before an earlier store is visible to every CPU. On x86-64 a
 * locked add to the stack (what the Linux kernel's smp_mb uses: cheaper than mfence, the same
 * order for ordinary memory); elsewhere the compiler's sequentially consistent fence. */
static inline void
store_load_fence(void)
{
#if defined(__x86_64__)
    __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static PyObject *
full_fence(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    store_load_fence();
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------- Sender */

typedef struct {
    PyObject_HEAD
    RingCore *ring;
    PyObject *doorbell;
    vectorcallfunc vectorcall;
} Sender;

static int
ring_doorbell(PyObject *doorbell)
{
    /* os.eventfd_write(doorbell.fd, 1), the fd read at the moment of ringing as Python does */
    PyObject *fd_obj = PyObject_GetAttrString(doorbell, "fd");
    if (fd_obj == NULL)
        return -1;
    long fd = PyLong_AsLong(fd_obj);
    Py_DECREF(fd_obj);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    uint64_t one = 1;
    for (;;) {
        ssize_t done = write((int)fd, &one, sizeof one);
        if (done == (ssize_t)sizeof one)
            return 0;
        if (done < 0 && errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        if (done >= 0)
            errno = EIO;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

static PyObject *
sender_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Sender *self = (Sender *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "send() takes exactly one positional argument, the record");
        return NULL;
    }
    int ok = core_write_impl(self->ring, args[0]);
    if (ok < 0)
        return NULL;
    /* The doorbell's handshake, steps p1 then p2: the tail store is visible before sleeping is loaded. */
    store_load_fence();
    if (__atomic_load_n(self->ring->sleeping_p, __ATOMIC_RELAXED) != 0 && ring_doorbell(self->doorbell) < 0)
        return NULL;
    return PyBool_FromLong(ok);
}

static PyObject *
sender_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ring, *doorbell;
    static char *kwlist[] = {"ring", "doorbell", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O:Sender", kwlist, &RingCoreType, &ring, &doorbell))
        return NULL;
    if (!((RingCore *)ring)->open) {
        closed_error();
        return NULL;
    }
    Sender *self = (Sender *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(ring);
    self->ring = (RingCore *)ring;
    Py_INCREF(doorbell);
    self->doorbell = doorbell;
    self->vectorcall = sender_vectorcall;
    return (PyObject *)self;
}

static int
sender_traverse(Sender *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ring);
    Py_VISIT(self->doorbell);
    return 0;
}

static int
sender_clear(Sender *self)
{
    Py_CLEAR(self->ring);
    Py_CLEAR(self->doorbell);
    return 0;
}

static void
sender_dealloc(Sender *self)
{
    PyObject_GC_UnTrack(self);
    sender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringbuf._ringcore.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_dealloc = (destructor)sender_dealloc,
    .tp_vectorcall_offset = offsetof(Sender, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Sender(ring, doorbell)(record) -> bool: ring.write(record), a full fence, then os.eventfd_write(doorbell.fd, 1)\n"
              "if the ring's consumer sleeps (the doorbell's step p3). Producer.send of a CRing.",
    .tp_traverse = (traverseproc)sender_traverse,
    .tp_clear = (inquiry)sender_clear,
    .tp_new = sender_new,
};

/* ------------------------------------------------------------------- module */

static PyMethodDef module_methods[] = {
    {"full_fence", full_fence, METH_NOARGS,
     "full_fence() -> None: a full memory fence (store-load included), the doorbell handshake's p1-p2 and c3."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ringcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ringcore",
    .m_doc = "The ring's single-record lane in C; see ringbuf.ring for the layout and ordering it follows.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__ringcore(void)
{
    if (PyType_Ready(&RingCoreType) < 0 || PyType_Ready(&SenderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ringcore_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RingCore", (PyObject *)&RingCoreType) < 0 ||
        PyModule_AddObjectRef(m, "Sender", (PyObject *)&SenderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
