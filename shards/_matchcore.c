/* The matching engine's hot commands in C: new orders that rest or match, and cancels.
 *
 * shards/engine.py is the specification and stays the reference: this module
 * runs the same steps over the same Python structures (the books, orders,
 * levels and indexes of shards/book.py, the journal list of the engine) and
 * writes the same journal bytes (shards/events.py) and the same result
 * objects, so everything else (queries, snapshots, replay, recovery) reads
 * what the pure-Python engine would have left. It saves the interpreter's
 * work, not any step: the tests run every engine scenario through both and
 * compare them byte for byte.
 *
 bind() returns the C Engine.apply. It takes NewOrder and CancelOrder to
 * new_order() and cancel(), which return the command's result or None to
 * decline: anything but the common cases (a rejection, a type it does not
 * expect, a value out of the journal's integer ranges) is declined before the
 * first change of state, and apply then runs the engine's Python method, which
 * gives the rejection its code and message. Every other command goes to the
 * Python apply. Never does I/O, never reads a clock.
 *
 * Records in, answers out (the shard loop's hot path, shards/process.py): new_orders() takes a
 * NewOrders ring record and returns its Results answer record, command() a NewOrder or CancelOrder
 * record and its answer, with no command or result objects in between. The record and answer
 * layouts are shards/wire.py's: bind_wire() receives wire's struct formats and constants and refuses
 * (the loop then stays in Python) unless they are the ones written here. Orders they decline go to
 * Engine._new_order, and the loop's ``part`` callback encodes those results with wire's own encoder,
 * so the Rejected layout lives only in wire. tests/shards/test_batch_core.py and test_record_core.py
 * compare answers, journal bytes and state with the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the journal is little-endian and this core writes it with native stores"
#endif

/* --- constants shared with shards/rules.py, shards/book.py, shards/events.py ------------------------ */
enum { BUY = 1, SELL = 2 };
enum { LIMIT = 1, MARKET = 2, LIMIT_MAKER = 3 };
enum { GTC = 1, IOC = 2, FOK = 3 };
enum { STP_NONE = 0, EXPIRE_TAKER = 1, EXPIRE_MAKER = 2, EXPIRE_BOTH = 3 };
enum { NEW = 1, PARTIALLY_FILLED = 2, FILLED = 3, CANCELED = 4, EXPIRED = 6, EXPIRED_IN_MATCH = 7 };
enum { R_IOC = 1, R_MARKET = 3, R_STP_TAKER = 4, R_STP_MAKER = 5 };
enum { T_ACCEPTED = 1, T_TRADE = 2, T_CANCELED = 3, T_EXPIRED = 5, T_DEPTH = 7 };
enum { MAX_CLIENT_ORDER_ID = 64, COMPACT_MIN_DEAD = 32, HEAP_SLACK = 64 };
#define NO_ASK (INT64_C(1) << 62)
/* resting order list fields (book.O_*) and price level list fields (book.L_*) */
enum { O_ID, O_USER, O_SIDE, O_PRICE, O_OPEN, O_ORIG, O_EXEC, O_QUOTE, O_COID, O_TYPE, O_TIF, O_STP, O_TIME,
       O_UPDATE, O_FIELDS };
enum { L_QTY, L_DEAD, L_QUEUE };
#define MARKET_BUY_LIMIT ((INT64_C(1) << 62) - 1)
#define MARKET_SELL_LIMIT 1
#define HEAD_SIZE 21 /* type:u8 seq:i64 ts:i64 symbol_id:u32 */

/* --- what bind() hands over ------------------------------------------------------------------------ */
static PyTypeObject *engine_type, *book_type, *view_type, *result_type, *fill_type;
static PyObject *deque_append, *deque_popleft, *deque_clear, *deque_extend;
static PyObject *book_rebuild_heaps, *book_rest, *fok_fillable, *heappush, *heappop, *deque_type;
static PyObject *new_order_type, *cancel_type, *python_apply, *python_new_order, *python_cancel;
static PyObject *empty_tuple;

/* Byte offsets of __slots__ attributes, read from their member descriptors once. */
static Py_ssize_t E_BOOKS, E_JOURNAL, E_LAST_SEQ;
static Py_ssize_t B_MIN_PRICE, B_MAX_PRICE, B_MIN_QTY, B_MAX_QTY, B_BIDS, B_ASKS, B_BEST_BID, B_BEST_ASK, B_ORDERS,
    B_USERS, B_NEXT_ORDER_ID, B_NEXT_TRADE_ID, B_DEPTH_SEQ, B_BID_HEAP, B_ASK_HEAP;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline void set_slot(PyObject *obj, Py_ssize_t off, PyObject *value /* stolen */)
{
    PyObject *old = SLOT(obj, off);
    SLOT(obj, off) = value;
    Py_XDECREF(old);
}

static inline int set_slot_i64(PyObject *obj, Py_ssize_t off, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    set_slot(obj, off, v);
    return 0;
}

static inline int set_item_i64(PyObject *list, Py_ssize_t i, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    return PyList_SetItem(list, i, v);
}

static inline void set_item(PyObject *list, Py_ssize_t i, PyObject *value /* borrowed */)
{
    Py_INCREF(value);
    PyList_SetItem(list, i, value);
}

/* The value of an int of at most one machine word's digits without a call (the common case: prices, ids, counts);
 * 0 when ``obj`` is not such an int. */
static inline int compact_value(PyObject *obj, long long *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyLong_CheckExact(obj) && PyUnstable_Long_IsCompact((PyLongObject *)obj)) {
        *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)obj);
        return 1;
    }
#else
    if (PyLong_CheckExact(obj)) {
        const Py_ssize_t size = Py_SIZE(obj);
        if (size >= -1 && size <= 1) {
            *out = size * (long long)((PyLongObject *)obj)->ob_digit[0];
            return 1;
        }
    }
#endif
    return 0;
}

/* An int that fits in int64; 0 with no error set when ``obj`` is not one (the caller declines). */
static inline int as_i64(PyObject *obj, long long *out)
{
    int overflow;
    if (obj == NULL)
        return 0;
    if (compact_value(obj, out))
        return 1;
    if (!PyLong_Check(obj))
        return 0;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* A value this core wrote or the book keeps (always an int64). */
static inline long long i64(PyObject *obj)
{
    long long value;
    return compact_value(obj, &value) ? value : PyLong_AsLongLong(obj);
}

/* --- journal bytes (shards/events.py layouts) ------------------------------------------------------- */

static inline char *put8(char *p, long long v)
{
    memcpy(p, &v, 8);
    return p + 8;
}

static inline char *put4(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

/* One command's events, written back to back; the journal gets them as one bytes object (take_encoded joins the
 * journal, so the bytes are the same as one object per event). Most commands fit in ``stack``. */
typedef struct {
    char *data;
    size_t len, cap;
    char stack[1024];
} Events;

static inline void events_init(Events *ev)
{
    ev->data = ev->stack;
    ev->len = 0;
    ev->cap = sizeof ev->stack;
}

static inline void events_free(Events *ev)
{
    if (ev->data != ev->stack)
        PyMem_Free(ev->data);
}

/* Append the command's events to the journal list and release the buffer. */
static int events_flush(Events *ev, PyObject *journal)
{
    int rc = 0;
    if (ev->len) {
        PyObject *chunk = PyBytes_FromStringAndSize(ev->data, (Py_ssize_t)ev->len);
        rc = chunk == NULL ? -1 : PyList_Append(journal, chunk);
        Py_XDECREF(chunk);
    }
    events_free(ev);
    return rc;
}

/* Room for an event of ``size`` bytes with its head written; *body points past the head. */
static int new_event(Events *ev, int type, long long seq, long long ts, uint32_t symbol_id, size_t size, char **body)
{
    if (ev->len + size > ev->cap) {
        size_t cap = 2 * (ev->len + size);
        char *data = ev->data == ev->stack ? PyMem_Malloc(cap) : PyMem_Realloc(ev->data, cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (ev->data == ev->stack)
            memcpy(data, ev->stack, ev->len);
        ev->data = data;
        ev->cap = cap;
    }
    char *p = ev->data + ev->len;
    ev->len += size;
    *p++ = (char)type;
    p = put8(p, seq);
    p = put8(p, ts);
    *body = put4(p, symbol_id);
    return 0;
}

/* OrderCanceled (3) and OrderExpired (5, with a reason byte) share their layout up to the reason. */
static int add_order_event(Events *ev, int type, long long seq, long long ts, uint32_t symbol_id,
                           long long order_id, long long user_id, long long qty, int reason)
{
    char *p;
    if (new_event(ev, type, seq, ts, symbol_id, HEAD_SIZE + 24 + (type == T_EXPIRED), &p) < 0)
        return -1;
    p = put8(put8(put8(p, order_id), user_id), qty);
    if (type == T_EXPIRED)
        *p = (char)reason;
    return 0;
}

typedef struct {
    long long price, qty;
} Level;

/* DepthUpdate: levels[0:n_bids] are bids, levels[n_bids:n_bids+n_asks] asks. */
static int add_depth(Events *ev, long long seq, long long ts, uint32_t symbol_id, long long depth_seq,
                     const Level *bids, uint32_t n_bids, const Level *asks, uint32_t n_asks)
{
    char *p;
    if (new_event(ev, T_DEPTH, seq, ts, symbol_id, HEAD_SIZE + 16 + 16 * (size_t)(n_bids + n_asks), &p) < 0)
        return -1;
    p = put4(put4(put8(p, depth_seq), n_bids), n_asks);
    for (uint32_t i = 0; i < n_bids; i++)
        p = put8(put8(p, bids[i].price), bids[i].qty);
    for (uint32_t i = 0; i < n_asks; i++)
        p = put8(put8(p, asks[i].price), asks[i].qty);
    return 0;
}

static int add_depth_one(Events *ev, long long seq, long long ts, uint32_t symbol_id, long long depth_seq,
                         int side, long long price, long long qty)
{
    Level level = {price, qty};
    return side == BUY ? add_depth(ev, seq, ts, symbol_id, depth_seq, &level, 1, NULL, 0)
                       : add_depth(ev, seq, ts, symbol_id, depth_seq, NULL, 0, &level, 1);
}

/* --- results ---------------------------------------------------------------------------------------- */

/* A NamedTuple instance of ``type`` holding ``items`` (references stolen; NULL items fail the whole). */
static PyObject *named_tuple(PyTypeObject *type, PyObject **items, Py_ssize_t n)
{
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    t = type->tp_alloc(type, n);
    if (t == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static inline PyObject *ref(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}

static PyObject *order_result(PyObject *view, PyObject *fills /* both stolen */)
{
    PyObject *items[2] = {view, fills};
    return named_tuple(result_type, items, 2);
}

/* book.view(): the API view of a resting (or just removed) order with ``status``. */
static PyObject *view_of(PyObject *symbol_id, PyObject *order, int status)
{
    PyObject **o = ((PyListObject *)order)->ob_item;
    PyObject *items[17] = {
        ref(symbol_id), ref(o[O_ID]),    ref(o[O_COID]),  ref(o[O_USER]), ref(o[O_SIDE]),
        ref(o[O_TYPE]), ref(o[O_TIF]),   ref(o[O_STP]),   ref(o[O_PRICE]), ref(o[O_ORIG]),
        ref(o[O_EXEC]), ref(o[O_QUOTE]), PyLong_FromLong(0), PyLong_FromLong(status), ref(o[O_TIME]),
        ref(o[O_UPDATE]), ref(o[O_TIME]),
    };
    return named_tuple(view_type, items, 17);
}

/* --- book primitives (shards/book.py) --------------------------------------------------------------- */

static inline PyObject *call2(PyObject *func, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(func, args, 2, NULL);
}

/* deque.append / deque.popleft / ...: through the method's C function directly when ``queue`` is a deque (the
 * vectorcall of the method descriptor costs ten times the work itself). */
static PyCFunction deque_append_fn, deque_popleft_fn;

static inline int deque_call(PyObject *method, PyObject *queue, PyObject *arg)
{
    PyObject *r;
    if (Py_IS_TYPE(queue, (PyTypeObject *)deque_type) && method == deque_append)
        r = deque_append_fn(queue, arg);
    else if (Py_IS_TYPE(queue, (PyTypeObject *)deque_type) && method == deque_popleft)
        r = deque_popleft_fn(queue, NULL);
    else {
        PyObject *args[2] = {queue, arg};
        r = PyObject_Vectorcall(method, args, arg ? 2 : 1, NULL);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The C function of a builtin method descriptor taking ``flags`` (METH_O, METH_NOARGS). */
static PyCFunction c_function_of(PyObject *descr, int flags)
{
    if (!Py_IS_TYPE(descr, &PyMethodDescr_Type) ||
        (((PyMethodDescrObject *)descr)->d_method->ml_flags & ~METH_COEXIST) != flags) {
        PyErr_SetString(PyExc_TypeError, "deque methods are not the builtin ones this core expects");
        return NULL;
    }
    return ((PyMethodDescrObject *)descr)->d_method->ml_meth;
}

static inline int call_discard(PyObject *func, PyObject *const *args, size_t n)
{
    PyObject *r = PyObject_Vectorcall(func, args, n, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Book.new_level(side, price, order): open the level ``price`` (absent) with ``order`` alone in it. */
static int new_level(PyObject *book, int side, PyObject *price_obj, long long price, PyObject *order)
{
    PyObject *queue = PyObject_CallNoArgs(deque_type);
    if (queue == NULL || deque_call(deque_append, queue, order) < 0) {
        Py_XDECREF(queue);
        return -1;
    }
    PyObject *level = PyList_New(3);
    if (level == NULL) {
        Py_DECREF(queue);
        return -1;
    }
    PyList_SET_ITEM(level, L_QTY, ref(PyList_GET_ITEM(order, O_OPEN)));
    PyList_SET_ITEM(level, L_DEAD, PyLong_FromLong(0));
    PyList_SET_ITEM(level, L_QUEUE, queue);
    PyObject *levels = SLOT(book, side == BUY ? B_BIDS : B_ASKS);
    PyObject *heap = SLOT(book, side == BUY ? B_BID_HEAP : B_ASK_HEAP);
    PyObject *key = side == BUY ? PyLong_FromLongLong(-price) : ref(price_obj);
    int rc = key == NULL || PyDict_SetItem(levels, price_obj, level) < 0 ? -1 : 0;
    Py_DECREF(level);
    if (rc == 0) {
        PyObject *args[2] = {heap, key};
        rc = call_discard(heappush, args, 2);
    }
    Py_XDECREF(key);
    if (rc < 0)
        return -1;
    if (PyList_GET_SIZE(heap) > 2 * PyDict_GET_SIZE(levels) + HEAP_SLACK &&
        call_discard(book_rebuild_heaps, &book, 1) < 0)
        return -1;
    if (side == BUY ? price > i64(SLOT(book, B_BEST_BID)) : price < i64(SLOT(book, B_BEST_ASK)))
        return set_slot(book, side == BUY ? B_BEST_BID : B_BEST_ASK, ref(price_obj)), 0;
    return 0;
}

/* Book.drop_level(side, price): remove an empty level and, when it was the best, find the next best price. */
static int drop_level(PyObject *book, int side, long long price)
{
    PyObject *levels = SLOT(book, side == BUY ? B_BIDS : B_ASKS);
    PyObject *price_obj = PyLong_FromLongLong(price);
    int rc = price_obj == NULL ? -1 : PyDict_DelItem(levels, price_obj);
    Py_XDECREF(price_obj);
    if (rc < 0)
        return -1;
    const Py_ssize_t best_slot = side == BUY ? B_BEST_BID : B_BEST_ASK;
    if (price != i64(SLOT(book, best_slot)))
        return 0;
    PyObject *heap = SLOT(book, side == BUY ? B_BID_HEAP : B_ASK_HEAP);
    const long long sign = side == BUY ? -1 : 1;
    while (PyList_GET_SIZE(heap)) {
        PyObject *top = PyLong_FromLongLong(sign * i64(PyList_GET_ITEM(heap, 0)));
        int live = top == NULL ? -1 : PyDict_Contains(levels, top);
        if (live) {
            if (live < 0) {
                Py_XDECREF(top);
                return -1;
            }
            set_slot(book, best_slot, top);
            return 0;
        }
        Py_DECREF(top);
        PyObject *popped = PyObject_Vectorcall(heappop, &heap, 1, NULL);
        if (popped == NULL)
            return -1;
        Py_DECREF(popped);
    }
    return set_slot_i64(book, best_slot, side == BUY ? 0 : NO_ASK);
}

/* Book.unlink(order): forget it in the id and user indexes. */
static int unlink_order(PyObject *book, PyObject *order)
{
    PyObject **o = ((PyListObject *)order)->ob_item;
    PyObject *users = SLOT(book, B_USERS);
    if (PyDict_DelItem(SLOT(book, B_ORDERS), o[O_ID]) < 0)
        return -1;
    PyObject *by_coid = PyDict_GetItemWithError(users, o[O_USER]);
    if (by_coid == NULL)
        return PyErr_Occurred() ? -1 : (PyErr_SetString(PyExc_SystemError, "resting order's user is not indexed"), -1);
    if (PyDict_DelItem(by_coid, o[O_COID]) < 0)
        return -1;
    if (PyDict_GET_SIZE(by_coid) == 0 && PyDict_DelItem(users, o[O_USER]) < 0)
        return -1;
    return 0;
}

/* Drop the departed orders of a queue more than half dead (Book.remove's compaction). */
static int compact(PyObject *level, PyObject *queue)
{
    PyObject *live = PyList_New(0), *it = PyObject_GetIter(queue), *order;
    if (live == NULL || it == NULL)
        goto fail;
    while ((order = PyIter_Next(it)) != NULL) {
        int open = PyObject_IsTrue(PyList_GET_ITEM(order, O_OPEN));
        if (open < 0 || (open && PyList_Append(live, order) < 0)) {
            Py_DECREF(order);
            goto fail;
        }
        Py_DECREF(order);
    }
    if (PyErr_Occurred() || deque_call(deque_clear, queue, NULL) < 0 || deque_call(deque_extend, queue, live) < 0 ||
        set_item_i64(level, L_DEAD, 0) < 0)
        goto fail;
    Py_DECREF(it);
    Py_DECREF(live);
    return 0;
fail:
    Py_XDECREF(it);
    Py_XDECREF(live);
    return -1;
}

/* Book.remove(order): take a resting order out wherever it sits; the level's new quantity, or -1. */
static long long remove_order(PyObject *book, PyObject *order, int side, PyObject *price)
{
    PyObject *level = PyDict_GetItemWithError(SLOT(book, side == BUY ? B_BIDS : B_ASKS), price);
    if (level == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "resting order's level is missing");
        return -1;
    }
    long long left = i64(PyList_GET_ITEM(level, L_QTY)) - i64(PyList_GET_ITEM(order, O_OPEN));
    if (set_item_i64(order, O_OPEN, 0) < 0)
        return -1;
    if (left) {
        PyObject *queue = PyList_GET_ITEM(level, L_QUEUE);
        long long dead = i64(PyList_GET_ITEM(level, L_DEAD)) + 1;
        if (set_item_i64(level, L_QTY, left) < 0 || set_item_i64(level, L_DEAD, dead) < 0)
            return -1;
        if (dead >= COMPACT_MIN_DEAD && 2 * dead > PySequence_Size(queue) && compact(level, queue) < 0)
            return -1;
    } else if (drop_level(book, side, i64(price)) < 0) {
        return -1;
    }
    if (unlink_order(book, order) < 0)
        return -1;
    return left;
}

/* --- the commands ----------------------------------------------------------------------------------- */

typedef struct {
    PyObject *symbol_id, *user_id, *coid, *side, *order_type, *tif, *price, *qty, *quote_qty, *stp, *ts;
} NewOrderObjs;

typedef struct {
    long long user_id, side, order_type, tif, price, qty, quote_qty, stp, ts;
    uint32_t symbol_id;
} NewOrderVals;

typedef struct {
    Level *items;
    size_t n, cap;
} Levels;

static int levels_push(Levels *levels, long long price, long long qty)
{
    if (levels->n == levels->cap) {
        size_t cap = levels->cap ? 2 * levels->cap : 8;
        Level *items = PyMem_Realloc(levels->items, cap * sizeof(Level));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        levels->items = items;
        levels->cap = cap;
    }
    levels->items[levels->n++] = (Level){price, qty};
    return 0;
}

/* The trades of one taker order, kept in C until the caller turns them into Fill objects or answer bytes. */
typedef struct {
    long long trade_id, price, qty;
} FillRec;

typedef struct {
    FillRec *items;
    size_t n, cap;
    FillRec stack[16];
} Fills;

/* What an accepted new order came to: its OrderView's computed fields and its fills. */
typedef struct {
    long long order_id, orig_qty, executed, cum_quote;
    int status;
    Fills fills;
} Outcome;

static inline void outcome_init(Outcome *out)
{
    out->fills.items = out->fills.stack;
    out->fills.n = 0;
    out->fills.cap = sizeof out->fills.stack / sizeof(FillRec);
}

static inline void outcome_free(Outcome *out)
{
    if (out->fills.items != out->fills.stack)
        PyMem_Free(out->fills.items);
    outcome_init(out);
}

static int fills_push(Fills *fills, long long trade_id, long long price, long long qty)
{
    if (fills->n == fills->cap) {
        size_t cap = 2 * fills->cap;
        FillRec *items = fills->items == fills->stack ? PyMem_Malloc(cap * sizeof(FillRec))
                                                      : PyMem_Realloc(fills->items, cap * sizeof(FillRec));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (fills->items == fills->stack)
            memcpy(items, fills->stack, sizeof fills->stack);
        fills->items = items;
        fills->cap = cap;
    }
    fills->items[fills->n++] = (FillRec){trade_id, price, qty};
    return 0;
}

/* Engine._take: match an accepted crossing order, then rest or expire what is left. */
static int take(PyObject *engine, PyObject *book, Events *events, const NewOrderObjs *c, const NewOrderVals *v,
                long long order_id, long long seq, Outcome *out)
{
    const int buy = v->side == BUY;
    const int maker_side = buy ? SELL : BUY;
    PyObject *levels_dict = SLOT(book, buy ? B_ASKS : B_BIDS);
    PyObject *orders = SLOT(book, B_ORDERS), *users = SLOT(book, B_USERS);
    const long long limit = v->order_type != MARKET ? v->price : buy ? MARKET_BUY_LIMIT : MARKET_SELL_LIMIT;
    const int by_quote = v->quote_qty > 0;
    const long long ts = v->ts, user_id = v->user_id;
    const uint32_t symbol_id = v->symbol_id;
    long long remaining = by_quote ? INT64_C(1) << 62 : v->qty;
    long long budget = v->quote_qty, cap = 0, executed = 0, cum_quote = 0;
    long long trade_id = i64(SLOT(book, B_NEXT_TRADE_ID));
    int taker_stp = 0, out_of_budget = 0;
    Levels changed = {NULL, 0, 0};
    PyObject *maker = NULL, *best_obj = NULL;
    int result = -1;

    while (remaining) {
        long long best = i64(SLOT(book, buy ? B_BEST_ASK : B_BEST_BID));
        if (buy ? best > limit : best < limit)
            break;
        if (by_quote) {
            cap = budget / best;
            if (!cap) {
                out_of_budget = 1;
                break;
            }
        }
        Py_XSETREF(best_obj, PyLong_FromLongLong(best));
        if (best_obj == NULL)
            goto fail;
        PyObject *level = PyDict_GetItemWithError(levels_dict, best_obj);
        if (level == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_SystemError, "best price has no level");
            goto fail;
        }
        PyObject *queue = PyList_GET_ITEM(level, L_QUEUE);
        long long before = i64(PyList_GET_ITEM(level, L_QTY)), level_qty = before;
        while (PySequence_Size(queue) > 0) {
            maker = PySequence_GetItem(queue, 0);
            if (maker == NULL)
                goto fail;
            PyObject **m = ((PyListObject *)maker)->ob_item;
            long long open_qty = i64(m[O_OPEN]);
            if (!open_qty) { /* cancelled earlier: lazy deletion */
                if (deque_call(deque_popleft, queue, NULL) < 0 ||
                    set_item_i64(level, L_DEAD, i64(PyList_GET_ITEM(level, L_DEAD)) - 1) < 0)
                    goto fail;
                Py_CLEAR(maker);
                continue;
            }
            long long maker_user = i64(m[O_USER]), fill;
            if (v->stp && maker_user == user_id) {
                if (v->stp == EXPIRE_TAKER) {
                    taker_stp = 1;
                    Py_CLEAR(maker);
                    break;
                }
                fill = 0;
            } else {
                fill = open_qty < remaining ? open_qty : remaining;
                if (by_quote && fill > cap)
                    fill = cap;
                char *p;
                if (new_event(events, T_TRADE, ++seq, ts, symbol_id, HEAD_SIZE + 57, &p) < 0)
                    goto fail;
                p = put8(put8(put8(put8(p, trade_id), best), fill), i64(m[O_ID]));
                p = put8(put8(put8(p, order_id), maker_user), user_id);
                *p = (char)v->side;
                if (fills_push(&out->fills, trade_id, best, fill) < 0)
                    goto fail;
                trade_id++;
                long long quote = fill * best;
                executed += fill;
                cum_quote += quote;
                remaining -= fill;
                level_qty -= fill;
                if (set_item_i64(maker, O_EXEC, i64(m[O_EXEC]) + fill) < 0 ||
                    set_item_i64(maker, O_QUOTE, i64(m[O_QUOTE]) + quote) < 0)
                    goto fail;
                set_item(maker, O_UPDATE, c->ts);
                if (by_quote) {
                    budget -= quote;
                    cap -= fill;
                    if (!cap)
                        out_of_budget = 1;
                }
                if (fill < open_qty) {
                    if (set_item_i64(maker, O_OPEN, open_qty - fill) < 0)
                        goto fail;
                    Py_CLEAR(maker);
                    break; /* the taker is done, or out of budget */
                }
            }
            /* the maker leaves the book: filled, or expired by self-trade prevention */
            if (deque_call(deque_popleft, queue, NULL) < 0 || set_item_i64(maker, O_OPEN, 0) < 0)
                goto fail;
            if (PyDict_DelItem(orders, m[O_ID]) < 0)
                goto fail;
            PyObject *by_coid = PyDict_GetItemWithError(users, m[O_USER]);
            if (by_coid == NULL || PyDict_DelItem(by_coid, m[O_COID]) < 0)
                goto fail;
            if (PyDict_GET_SIZE(by_coid) == 0 && PyDict_DelItem(users, m[O_USER]) < 0)
                goto fail;
            if (!fill) {
                level_qty -= open_qty;
                if (add_order_event(events, T_EXPIRED, ++seq, ts, symbol_id, i64(m[O_ID]), user_id, open_qty,
                                    R_STP_MAKER) < 0)
                    goto fail;
                Py_CLEAR(maker);
                if (v->stp == EXPIRE_BOTH) {
                    taker_stp = 1;
                    break;
                }
            } else {
                Py_CLEAR(maker);
                if (out_of_budget || !remaining)
                    break;
            }
        }
        if (PyErr_Occurred())
            goto fail;
        if (level_qty != before) {
            if (set_item_i64(level, L_QTY, level_qty) < 0 || levels_push(&changed, best, level_qty) < 0)
                goto fail;
            if (!level_qty && drop_level(book, maker_side, best) < 0)
                goto fail;
        }
        if (taker_stp || out_of_budget)
            break;
    }
    if (set_slot_i64(book, B_NEXT_TRADE_ID, trade_id) < 0)
        goto fail;

    Level rested = {0, 0};
    int n_rested = 0, status;
    if (taker_stp) {
        status = EXPIRED_IN_MATCH;
        if (add_order_event(events, T_EXPIRED, ++seq, ts, symbol_id, order_id, user_id, by_quote ? 0 : remaining,
                            R_STP_TAKER) < 0)
            goto fail;
    } else if (by_quote) {
        if (executed && out_of_budget) {
            status = FILLED;
        } else {
            status = EXPIRED;
            if (add_order_event(events, T_EXPIRED, ++seq, ts, symbol_id, order_id, user_id, 0, R_MARKET) < 0)
                goto fail;
        }
    } else if (!remaining) {
        status = FILLED;
    } else if (v->order_type == LIMIT && v->tif == GTC) {
        PyObject *items[O_FIELDS] = {
            PyLong_FromLongLong(order_id), ref(c->user_id), ref(c->side), ref(c->price),
            PyLong_FromLongLong(remaining), ref(c->qty), PyLong_FromLongLong(executed),
            PyLong_FromLongLong(cum_quote), ref(c->coid), PyLong_FromLong(LIMIT), PyLong_FromLong(GTC),
            ref(c->stp), ref(c->ts), ref(c->ts),
        };
        PyObject *order = PyList_New(O_FIELDS);
        for (int i = 0; i < O_FIELDS; i++) {
            if (order != NULL && items[i] != NULL)
                PyList_SET_ITEM(order, i, items[i]);
            else
                Py_XDECREF(items[i]);
        }
        if (order == NULL || PyErr_Occurred()) {
            Py_XDECREF(order);
            goto fail;
        }
        PyObject *level_qty = call2(book_rest, book, order);
        Py_DECREF(order);
        if (level_qty == NULL)
            goto fail;
        rested = (Level){v->price, i64(level_qty)};
        Py_DECREF(level_qty);
        n_rested = 1;
        status = executed ? PARTIALLY_FILLED : NEW;
    } else { /* IOC or MARKET rest (a FOK gets here only when it fills entirely) */
        status = EXPIRED;
        if (add_order_event(events, T_EXPIRED, ++seq, ts, symbol_id, order_id, user_id, remaining,
                            v->order_type == LIMIT ? R_IOC : R_MARKET) < 0)
            goto fail;
    }
    if (changed.n || n_rested) {
        long long depth_seq = i64(SLOT(book, B_DEPTH_SEQ)) + 1;
        if (set_slot_i64(book, B_DEPTH_SEQ, depth_seq) < 0)
            goto fail;
        int rc = buy ? add_depth(events, ++seq, ts, symbol_id, depth_seq, &rested, n_rested, changed.items,
                                 (uint32_t)changed.n)
                     : add_depth(events, ++seq, ts, symbol_id, depth_seq, changed.items, (uint32_t)changed.n,
                                 &rested, n_rested);
        if (rc < 0)
            goto fail;
    }
    if (set_slot_i64(engine, E_LAST_SEQ, seq) < 0)
        goto fail;
    out->order_id = order_id;
    out->orig_qty = by_quote ? executed : v->qty;
    out->executed = executed;
    out->cum_quote = cum_quote;
    out->status = status;
    result = 0;
fail:
    Py_XDECREF(maker);
    Py_XDECREF(best_obj);
    PyMem_Free(changed.items);
    return result;
}

static PyObject *declined(void)
{
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* Engine._new_order after its checks: take the accepted order's id, write its events, rest or match it. */
static int accept(PyObject *engine, PyObject *book, PyObject *users, PyObject *by_coid, Events *events,
                  const NewOrderObjs *c, const NewOrderVals *v, const char *raw_coid, Py_ssize_t coid_len, int crosses,
                  long long seq0, Outcome *out)
{
    long long order_id = i64(SLOT(book, B_NEXT_ORDER_ID));
    if (set_slot_i64(book, B_NEXT_ORDER_ID, order_id + 1) < 0)
        return -1;
    long long seq = seq0 + 1;
    char *p;
    if (new_event(events, T_ACCEPTED, seq, v->ts, v->symbol_id, HEAD_SIZE + 46 + (size_t)coid_len, &p) < 0)
        return -1;
    p = put8(put8(p, order_id), v->user_id);
    *p++ = (char)v->side;
    *p++ = (char)v->order_type;
    *p++ = (char)v->tif;
    *p++ = (char)v->stp;
    p = put8(put8(put8(p, v->price), v->qty), v->quote_qty);
    uint16_t n = (uint16_t)coid_len;
    memcpy(p, &n, 2);
    memcpy(p + 2, raw_coid, coid_len);
    if (crosses)
        return take(engine, book, events, c, v, order_id, seq, out);

    int status;
    PyObject *order_id_obj = PyLong_FromLongLong(order_id);
    if (order_id_obj == NULL)
        return -1;
    seq++;
    if (v->order_type == LIMIT && v->tif != GTC) { /* an IOC that crosses nothing */
        if (add_order_event(events, T_EXPIRED, seq, v->ts, v->symbol_id, order_id, v->user_id, v->qty, R_IOC) < 0)
            goto fail;
        status = EXPIRED;
    } else { /* rest it */
        PyObject *order = PyList_New(O_FIELDS);
        if (order == NULL)
            goto fail;
        PyObject *zero = PyLong_FromLong(0);
        PyObject *items[O_FIELDS] = {order_id_obj, c->user_id, c->side, c->price, c->qty, c->qty, zero, zero,
                                     c->coid, c->order_type, c->tif, c->stp, c->ts, c->ts};
        for (int i = 0; i < O_FIELDS; i++)
            PyList_SET_ITEM(order, i, ref(items[i]));
        Py_DECREF(zero);
        int rc = PyDict_SetItem(SLOT(book, B_ORDERS), order_id_obj, order);
        if (rc == 0) {
            if (by_coid == NULL) {
                PyObject *fresh = PyDict_New();
                rc = fresh == NULL || PyDict_SetItem(fresh, c->coid, order) < 0 || PyDict_SetItem(users, c->user_id, fresh) < 0
                         ? -1
                         : 0;
                Py_XDECREF(fresh);
            } else {
                rc = PyDict_SetItem(by_coid, c->coid, order);
            }
        }
        long long depth_seq = i64(SLOT(book, B_DEPTH_SEQ)) + 1;
        if (rc < 0 || set_slot_i64(book, B_DEPTH_SEQ, depth_seq) < 0) {
            Py_DECREF(order);
            goto fail;
        }
        PyObject *level = PyDict_GetItemWithError(SLOT(book, v->side == BUY ? B_BIDS : B_ASKS), c->price);
        long long level_qty;
        if (level == NULL) {
            level_qty = v->qty;
            rc = PyErr_Occurred() ? -1 : new_level(book, (int)v->side, c->price, v->price, order);
        } else {
            level_qty = i64(PyList_GET_ITEM(level, L_QTY)) + v->qty;
            rc = set_item_i64(level, L_QTY, level_qty) < 0 || deque_call(deque_append, PyList_GET_ITEM(level, L_QUEUE), order) < 0
                     ? -1
                     : 0;
        }
        Py_DECREF(order);
        if (rc < 0 || add_depth_one(events, seq, v->ts, v->symbol_id, depth_seq, (int)v->side, v->price, level_qty) < 0)
            goto fail;
        status = NEW;
    }
    if (set_slot_i64(engine, E_LAST_SEQ, seq) < 0)
        goto fail;
    Py_DECREF(order_id_obj);
    out->order_id = order_id;
    out->orig_qty = v->qty;
    out->executed = 0;
    out->cum_quote = 0;
    out->status = status;
    return 0;
fail:
    Py_DECREF(order_id_obj);
    return -1;
}

/* What both commands read off the engine; 0 when its slots are not what this core expects (it declines). */
typedef struct {
    PyObject *books, *journal;
    long long last_seq;
} EngineState;

static int engine_state(PyObject *engine, EngineState *st)
{
    if (Py_TYPE(engine) != engine_type)
        return 0;
    st->books = SLOT(engine, E_BOOKS);
    st->journal = SLOT(engine, E_JOURNAL);
    return st->books != NULL && st->journal != NULL && PyList_CheckExact(st->journal) &&
           as_i64(SLOT(engine, E_LAST_SEQ), &st->last_seq);
}

/* Engine._new_order for the common cases: 1 when it took the command (its events in ``events``, ``out`` filled),
 * 0 when it declines before changing anything (the Python path must take it), -1 on an error. ``cmd`` is the NewOrder
 * itself when the caller has one (FOK checks need it), else NULL. */
static int new_order_core(PyObject *engine, const EngineState *st, const NewOrderObjs *c, const NewOrderVals *v,
                          PyObject *cmd, Events *events, Outcome *out)
{
    PyObject *books = st->books;
    const long long seq0 = st->last_seq;
    PyObject *book = PyDict_GetItemWithError(books, c->symbol_id);
    if (book == NULL || Py_TYPE(book) != book_type)
        return PyErr_Occurred() ? -1 : 0;

    long long min_price, max_price, min_qty, max_qty, max_quote;
    if (!as_i64(SLOT(book, B_MIN_PRICE), &min_price) || !as_i64(SLOT(book, B_MAX_PRICE), &max_price) ||
        !as_i64(SLOT(book, B_MIN_QTY), &min_qty) || !as_i64(SLOT(book, B_MAX_QTY), &max_qty) ||
        __builtin_mul_overflow(max_price, max_qty, &max_quote))
        return 0;
    const int qty_ok = min_qty <= v->qty && v->qty <= max_qty;
    const int limit_ok = ((v->order_type == LIMIT && 1 <= v->tif && v->tif <= 3) || v->order_type == LIMIT_MAKER) &&
                         min_price <= v->price && v->price <= max_price && qty_ok && !v->quote_qty;
    const int market_ok =
        v->order_type == MARKET && !v->price && ((qty_ok && !v->quote_qty) || (!v->qty && v->quote_qty > 0));
    const int valid = 1 <= v->side && v->side <= 2 && 0 <= v->stp && v->stp <= 3 &&
                      PyUnicode_GET_LENGTH(c->coid) <= MAX_CLIENT_ORDER_ID && (limit_ok || market_ok);
    if (!valid)
        return 0; /* rejected: the Python path words it */

    PyObject *users = SLOT(book, B_USERS);
    PyObject *by_coid = PyDict_GetItemWithError(users, c->user_id);
    if (by_coid == NULL && PyErr_Occurred())
        return -1;
    if (by_coid != NULL) {
        int dup = PyDict_Contains(by_coid, c->coid);
        if (dup != 0)
            return dup < 0 ? -1 : 0; /* duplicate client order id: rejected */
    }
    long long best_ask, best_bid;
    if (!as_i64(SLOT(book, B_BEST_ASK), &best_ask) || !as_i64(SLOT(book, B_BEST_BID), &best_bid))
        return 0;
    const int crosses = v->order_type == MARKET || (v->side == BUY ? v->price >= best_ask : v->price <= best_bid);
    if (crosses && v->order_type == LIMIT_MAKER)
        return 0;
    if (v->tif == FOK && v->order_type == LIMIT) {
        if (!crosses)
            return 0;
        PyObject *made = NULL;
        if (cmd == NULL) {
            PyObject *items[11] = {ref(c->symbol_id), ref(c->user_id), ref(c->coid), ref(c->side),
                                   ref(c->order_type), ref(c->tif), ref(c->price), ref(c->qty),
                                   ref(c->quote_qty), ref(c->stp), ref(c->ts)};
            cmd = made = named_tuple((PyTypeObject *)new_order_type, items, 11);
            if (cmd == NULL)
                return -1;
        }
        PyObject *ok = call2(fok_fillable, book, cmd);
        Py_XDECREF(made);
        if (ok == NULL)
            return -1;
        int fillable = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (fillable <= 0)
            return fillable;
    }
    Py_ssize_t coid_len;
    const char *raw_coid = PyUnicode_AsUTF8AndSize(c->coid, &coid_len);
    long long order_id;
    if (raw_coid == NULL || coid_len > 0xFFFF || !as_i64(SLOT(book, B_NEXT_ORDER_ID), &order_id)) {
        PyErr_Clear();
        return 0;
    }
    /* accepted: from here on the state changes */
    if (accept(engine, book, users, by_coid, events, c, v, raw_coid, coid_len, crosses, seq0, out) < 0)
        return -1;
    return 1;
}

/* The OrderResult of an order ``new_order_core`` took. */
static PyObject *result_object(const NewOrderObjs *c, const Outcome *out)
{
    const Py_ssize_t n = (Py_ssize_t)out->fills.n;
    PyObject *fills = n ? PyTuple_New(n) : ref(empty_tuple);
    if (fills == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        const FillRec *f = &out->fills.items[i];
        PyObject *items[3] = {PyLong_FromLongLong(f->trade_id), PyLong_FromLongLong(f->price),
                              PyLong_FromLongLong(f->qty)};
        PyObject *fill = named_tuple(fill_type, items, 3);
        if (fill == NULL) {
            Py_DECREF(fills);
            return NULL;
        }
        PyTuple_SET_ITEM(fills, i, fill);
    }
    PyObject *items[17] = {
        ref(c->symbol_id), PyLong_FromLongLong(out->order_id), ref(c->coid), ref(c->user_id), ref(c->side),
        ref(c->order_type), ref(c->tif), ref(c->stp), ref(c->price), PyLong_FromLongLong(out->orig_qty),
        PyLong_FromLongLong(out->executed), PyLong_FromLongLong(out->cum_quote), ref(c->quote_qty),
        PyLong_FromLong(out->status), ref(c->ts), ref(c->ts), ref(c->ts),
    };
    PyObject *view = named_tuple(view_type, items, 17);
    if (view == NULL) {
        Py_DECREF(fills);
        return NULL;
    }
    return order_result(view, fills);
}

/* Engine._new_order for the common cases; None when the Python path must take the command. */
static PyObject *new_order(PyObject *engine, const EngineState *st, PyObject *cmd)
{
    if (!PyTuple_Check(cmd) || PyTuple_GET_SIZE(cmd) != 11)
        return declined();
    PyObject **f = ((PyTupleObject *)cmd)->ob_item;
    NewOrderObjs c = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]};
    NewOrderVals v;
    long long symbol_id;
    if (!as_i64(c.symbol_id, &symbol_id) || symbol_id < 0 || symbol_id > UINT32_MAX || !as_i64(c.user_id, &v.user_id) ||
        !as_i64(c.side, &v.side) || !as_i64(c.order_type, &v.order_type) || !as_i64(c.tif, &v.tif) ||
        !as_i64(c.price, &v.price) || !as_i64(c.qty, &v.qty) || !as_i64(c.quote_qty, &v.quote_qty) ||
        !as_i64(c.stp, &v.stp) || !as_i64(c.ts, &v.ts) || !PyUnicode_CheckExact(c.coid))
        return declined();
    v.symbol_id = (uint32_t)symbol_id;
    Events events;
    Outcome out;
    events_init(&events);
    outcome_init(&out);
    int rc = new_order_core(engine, st, &c, &v, cmd, &events, &out);
    PyObject *result = NULL;
    if (rc > 0) {
        if (events_flush(&events, st->journal) == 0)
            result = result_object(&c, &out);
    } else {
        events_free(&events);
        result = rc == 0 ? declined() : NULL;
    }
    outcome_free(&out);
    return result;
}

/* Engine._cancel for an order that exists and is the user's; None otherwise (the Python path rejects). */
static PyObject *cancel(PyObject *engine, const EngineState *st, PyObject *cmd)
{
    if (!PyTuple_Check(cmd) || PyTuple_GET_SIZE(cmd) != 5)
        return declined();
    PyObject *books = st->books, *journal = st->journal;
    const long long seq0 = st->last_seq;
    PyObject **f = ((PyTupleObject *)cmd)->ob_item;
    PyObject *symbol_obj = f[0], *user_obj = f[1], *order_id_obj = f[2], *coid = f[3], *ts_obj = f[4];
    long long symbol_id, user_id, order_id, ts;
    if (!as_i64(symbol_obj, &symbol_id) || symbol_id < 0 || symbol_id > UINT32_MAX || !as_i64(user_obj, &user_id) ||
        !as_i64(order_id_obj, &order_id) || !as_i64(ts_obj, &ts))
        return declined();
    PyObject *book = PyDict_GetItemWithError(books, symbol_obj);
    if (book == NULL || Py_TYPE(book) != book_type)
        return declined();
    PyObject *order;
    if (order_id) {
        order = PyDict_GetItemWithError(SLOT(book, B_ORDERS), order_id_obj);
    } else {
        PyObject *by_coid = PyDict_GetItemWithError(SLOT(book, B_USERS), user_obj);
        order = by_coid == NULL ? NULL : PyDict_GetItemWithError(by_coid, coid);
    }
    if (order == NULL)
        return declined();
    PyObject **o = ((PyListObject *)order)->ob_item;
    long long owner, remaining, side;
    if (!as_i64(o[O_USER], &owner) || owner != user_id || !as_i64(o[O_OPEN], &remaining) || !as_i64(o[O_SIDE], &side))
        return declined();
    order_id = i64(o[O_ID]);
    long long price = i64(o[O_PRICE]);

    Py_INCREF(order); /* remove() drops the book's references */
    PyObject *result = NULL;
    long long level_qty = remove_order(book, order, (int)side, o[O_PRICE]);
    if (level_qty < 0)
        goto done;
    set_item(order, O_UPDATE, ts_obj);
    long long seq = seq0 + 1, depth_seq = i64(SLOT(book, B_DEPTH_SEQ)) + 1;
    if (set_slot_i64(engine, E_LAST_SEQ, seq + 1) < 0 || set_slot_i64(book, B_DEPTH_SEQ, depth_seq) < 0)
        goto done;
    Events events;
    events_init(&events);
    if (add_order_event(&events, T_CANCELED, seq, ts, (uint32_t)symbol_id, order_id, user_id, remaining, 0) < 0 ||
        add_depth_one(&events, seq + 1, ts, (uint32_t)symbol_id, depth_seq, (int)side, price, level_qty) < 0 ||
        events_flush(&events, journal) < 0)
        goto done;
    PyObject *view = view_of(symbol_obj, order, CANCELED);
    if (view != NULL)
        result = order_result(view, ref(empty_tuple));
done:
    Py_DECREF(order);
    return result;
}

/* --- NewOrders in, Results out (shards/wire.py layouts, checked by bind_wire) ------------------------ */

enum { T_NEW_ORDERS = 10, K_ORDER = 1, K_RESULTS = 7, WIRE_COID = 36 };
enum { NEW_ORDERS_HEAD = 11, NEW_ORDER_BODY = 85, RESULTS_HEAD = 11, ORDER_BODY = 131, FILL_SIZE = 24 };
static int wire_bound;

/* A growing byte buffer (the answer record). */
typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static char *buf_room(Buf *b, size_t size)
{
    if (b->len + size > b->cap) {
        size_t cap = 2 * (b->len + size);
        char *data = PyMem_Realloc(b->data, cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        b->data = data;
        b->cap = cap;
    }
    char *p = b->data + b->len;
    b->len += size;
    return p;
}

/* The OrderResult of an order this core took: a Results item (wire._ORDER_BODY, ``rid8`` NULL) or a whole answer
 * (wire._ORDER_HEAD: the same with the request id's 8 bytes after the kind), then wire._FILL per fill. */
static int put_order_item(Buf *b, const unsigned char *rid8, const NewOrderVals *v, const char *coid,
                          Py_ssize_t coid_len, const Outcome *out)
{
    char *p = buf_room(b, ORDER_BODY + (rid8 ? 8 : 0) + FILL_SIZE * out->fills.n);
    if (p == NULL)
        return -1;
    *p++ = K_ORDER;
    if (rid8 != NULL) {
        memcpy(p, rid8, 8);
        p += 8;
    }
    p = put8(put4(p, v->symbol_id), out->order_id);
    *p++ = (char)coid_len; /* 37p: length byte, then the bytes, zero-padded */
    memcpy(p, coid, coid_len);
    memset(p + coid_len, 0, WIRE_COID - coid_len);
    p = put8(p + WIRE_COID, v->user_id);
    *p++ = (char)v->side;
    *p++ = (char)v->order_type;
    *p++ = (char)v->tif;
    *p++ = (char)v->stp;
    p = put8(put8(put8(put8(put8(p, v->price), out->orig_qty), out->executed), out->cum_quote), v->quote_qty);
    *p++ = (char)out->status;
    p = put4(put8(put8(put8(p, v->ts), v->ts), v->ts), (uint32_t)out->fills.n);
    for (size_t i = 0; i < out->fills.n; i++)
        p = put8(put8(put8(p, out->fills.items[i].trade_id), out->fills.items[i].price), out->fills.items[i].qty);
    return 0;
}

static inline uint64_t get8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t get4(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The exception being raised, normalized and cleared (Python 3.11 has no PyErr_GetRaisedException). */
static PyObject *fetch_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* Hand one order's outcome that this core did not encode to ``part(rid, result_or_exception) -> bytes`` and append
 * what it returns. ``result`` NULL: the error set now is the order's (an Exception: part answers it; anything else
 * propagates). */
static int put_part(Buf *b, PyObject *part, PyObject *rid, PyObject *result /* stolen */)
{
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        result = fetch_exception();
        if (result == NULL)
            return -1;
    }
    PyObject *bytes = call2(part, rid, result);
    Py_DECREF(result);
    if (bytes == NULL)
        return -1;
    if (!PyBytes_Check(bytes)) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_TypeError, "part() must return bytes");
        return -1;
    }
    char *p = buf_room(b, (size_t)PyBytes_GET_SIZE(bytes));
    if (p != NULL)
        memcpy(p, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    return p == NULL ? -1 : 0;
}

/* Write the events gathered so far to the engine's journal (before the Python path appends its own, and at the end). */
static int events_flush_keep(Events *ev, PyObject *engine)
{
    if (!ev->len)
        return 0;
    PyObject *journal = SLOT(engine, E_JOURNAL);
    PyObject *chunk = PyBytes_FromStringAndSize(ev->data, (Py_ssize_t)ev->len);
    int rc = chunk == NULL || journal == NULL ? -1 : PyList_Append(journal, chunk);
    Py_XDECREF(chunk);
    ev->len = 0;
    return rc;
}

/* new_orders(engine, record, now, part) -> the Results answer record, or None when ``record`` does not decode (the
 * caller then takes its Python path, which answers it as a whole). The same bytes as
 * ``encode_results(rid, [engine.apply(o) for o in decode_new_orders(record, now)[1]])`` and the same journal: orders
 * this core declines go to Engine._new_order, and ``part`` encodes their results (and answers an order whose apply
 * raised); ``part`` owns the Rejected layout. */
static PyObject *new_orders(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "new_orders(engine, record, now, part)");
        return NULL;
    }
    if (!wire_bound) {
        PyErr_SetString(PyExc_RuntimeError, "new_orders needs bind_wire() first");
        return NULL;
    }
    PyObject *engine = args[0], *record = args[1], *now_obj = args[2], *part = args[3];
    long long now;
    if (!as_i64(now_obj, &now) || Py_TYPE(engine) != engine_type)
        return declined();
    Py_buffer view;
    if (PyObject_GetBuffer(record, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *rec = view.buf;
    const size_t len = (size_t)view.len;
    PyObject **coids = NULL, *rid = NULL, *answer = NULL;
    Buf out_buf = {NULL, 0, 0};
    Events events;
    Outcome out;
    events_init(&events);
    outcome_init(&out);
    size_t n = 0, decoded = 0;
    if (len < NEW_ORDERS_HEAD || rec[0] != T_NEW_ORDERS)
        goto decline;
    n = (size_t)rec[9] | (size_t)rec[10] << 8;
    if (len < NEW_ORDERS_HEAD + n * NEW_ORDER_BODY)
        goto decline;
    /* every client order id first: one that is not UTF-8 makes the whole record undecodable, before any order runs */
    coids = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    if (coids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; decoded < n; decoded++) {
        const unsigned char *body = rec + NEW_ORDERS_HEAD + decoded * NEW_ORDER_BODY;
        size_t coid_len = body[12] > WIRE_COID ? WIRE_COID : body[12];
        coids[decoded] = PyUnicode_DecodeUTF8((const char *)body + 13, (Py_ssize_t)coid_len, NULL);
        if (coids[decoded] == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                goto done;
            PyErr_Clear();
            goto decline;
        }
    }
    rid = PyLong_FromUnsignedLongLong(get8(rec + 1));
    char *head = rid == NULL ? NULL : buf_room(&out_buf, RESULTS_HEAD + n * (ORDER_BODY + FILL_SIZE));
    if (head == NULL)
        goto done;
    out_buf.len = RESULTS_HEAD;
    head[0] = K_RESULTS;
    memcpy(head + 1, rec + 1, 8);
    head[9] = rec[9];
    head[10] = rec[10];

    for (size_t i = 0; i < n; i++) {
        /* wire._NEW_ORDER_BODY: symbol@0 user@4 coid@12 side@49 type@50 tif@51 price@52 qty@60 quote@68 stp@76 */
        const unsigned char *body = rec + NEW_ORDERS_HEAD + i * NEW_ORDER_BODY;
        const uint64_t user = get8(body + 4);
        NewOrderVals v = {
            .user_id = (long long)user, .side = body[49], .order_type = body[50], .tif = body[51],
            .price = (long long)get8(body + 52), .qty = (long long)get8(body + 60),
            .quote_qty = (long long)get8(body + 68), .stp = body[76], .ts = now, .symbol_id = get4(body),
        };
        NewOrderObjs c = {
            PyLong_FromUnsignedLong(v.symbol_id), PyLong_FromUnsignedLongLong(user), coids[i],
            PyLong_FromLong((long)v.side), PyLong_FromLong((long)v.order_type), PyLong_FromLong((long)v.tif),
            PyLong_FromLongLong(v.price), PyLong_FromLongLong(v.qty), PyLong_FromLongLong(v.quote_qty),
            PyLong_FromLong((long)v.stp), now_obj,
        };
        int rc = -1;
        if (c.symbol_id && c.user_id && c.side && c.order_type && c.tif && c.price && c.qty && c.quote_qty && c.stp) {
            EngineState st;
            const size_t mark = events.len;
            rc = user > INT64_MAX || !engine_state(engine, &st) ? 0
                                                                : new_order_core(engine, &st, &c, &v, NULL, &events, &out);
            if (rc > 0) {
                Py_ssize_t coid_len;
                const char *raw = PyUnicode_AsUTF8AndSize(c.coid, &coid_len);
                rc = raw == NULL || put_order_item(&out_buf, NULL, &v, raw, coid_len, &out) < 0 ? -1 : 1;
                if (rc < 0) /* not answerable: it stays applied, as when encode_results raises; stop here */
                    goto order_failed;
            } else if (rc == 0) { /* declined: the Python path, as Engine.apply would take it */
                PyObject *items[11] = {ref(c.symbol_id), ref(c.user_id), ref(c.coid), ref(c.side),
                                       ref(c.order_type), ref(c.tif), ref(c.price), ref(c.qty),
                                       ref(c.quote_qty), ref(c.stp), ref(c.ts)};
                PyObject *cmd = named_tuple((PyTypeObject *)new_order_type, items, 11);
                if (cmd != NULL && events_flush_keep(&events, engine) == 0) {
                    PyObject *call_args[2] = {engine, cmd};
                    rc = put_part(&out_buf, part, rid, PyObject_Vectorcall(python_new_order, call_args, 2, NULL));
                } else {
                    rc = -1;
                }
                Py_XDECREF(cmd);
            } else { /* the C path raised: its events are dropped, like those of an apply that raises */
                events.len = mark;
                rc = put_part(&out_buf, part, rid, NULL);
            }
        } else {
            rc = put_part(&out_buf, part, rid, NULL);
        }
    order_failed:
        outcome_free(&out);
        Py_XDECREF(c.symbol_id);
        Py_XDECREF(c.user_id);
        Py_XDECREF(c.side);
        Py_XDECREF(c.order_type);
        Py_XDECREF(c.tif);
        Py_XDECREF(c.price);
        Py_XDECREF(c.qty);
        Py_XDECREF(c.quote_qty);
        Py_XDECREF(c.stp);
        if (rc < 0)
            goto done;
    }
    if (events_flush_keep(&events, engine) == 0)
        answer = PyBytes_FromStringAndSize(out_buf.data, (Py_ssize_t)out_buf.len);
    goto done;
decline:
    answer = ref(Py_None);
done:
    if (answer == NULL && events.len) { /* an error propagates: what ran stays journaled, as in the Python loop */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (events_flush_keep(&events, engine) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    events_free(&events);
    for (size_t i = 0; i < decoded; i++)
        Py_XDECREF(coids[i]);
    PyMem_Free(coids);
    PyMem_Free(out_buf.data);
    Py_XDECREF(rid);
    PyBuffer_Release(&view);
    return answer;
}

/* An OrderView object as wire bytes (wire._VIEW); 0 when a field is out of its format's range (the caller lets
 * shards/wire.py encode it, which names the value). */
static int put_view_object(Buf *b, PyObject *view)
{
    static const char kinds[17] = "IQsQBBBBqqqqqBqqq"; /* wire._VIEW, field by field ("s": 37p) */
    if (!PyTuple_Check(view) || PyTuple_GET_SIZE(view) != 17)
        return 0;
    long long vals[17];
    const char *coid = NULL;
    Py_ssize_t coid_len = 0;
    for (int i = 0; i < 17; i++) {
        PyObject *item = PyTuple_GET_ITEM(view, i);
        if (kinds[i] == 's') {
            if (!PyUnicode_Check(item) || (coid = PyUnicode_AsUTF8AndSize(item, &coid_len)) == NULL) {
                PyErr_Clear();
                return 0;
            }
            if (coid_len > WIRE_COID)
                return 0;
            continue;
        }
        if (!as_i64(item, &vals[i]))
            return 0;
        const long long v = vals[i];
        if ((kinds[i] == 'I' && (v < 0 || v > UINT32_MAX)) || (kinds[i] == 'Q' && v < 0) ||
            (kinds[i] == 'B' && (v < 0 || v > 255)))
            return 0;
    }
    char *p = buf_room(b, ORDER_BODY - 1 - 4);
    if (p == NULL)
        return -1;
    p = put8(put4(p, (uint32_t)vals[0]), vals[1]);
    *p++ = (char)coid_len;
    memcpy(p, coid, coid_len);
    memset(p + coid_len, 0, WIRE_COID - coid_len);
    p = put8(p + WIRE_COID, vals[3]);
    for (int i = 4; i < 8; i++)
        *p++ = (char)vals[i];
    for (int i = 8; i < 13; i++)
        p = put8(p, vals[i]);
    *p++ = (char)vals[13];
    for (int i = 14; i < 17; i++)
        p = put8(p, vals[i]);
    return 1;
}

enum { T_NEW_ORDER = 1, T_CANCEL_ORDER = 2, NEW_ORDER_SIZE = 94, CANCEL_ORDER_SIZE = 74, ANSWER_HEAD = 9 };

/* A coid field (37p) as str; NULL with no error set when it is not UTF-8. */
static PyObject *wire_coid(const unsigned char *field)
{
    PyObject *s = PyUnicode_DecodeUTF8((const char *)field + 1, field[0] > WIRE_COID ? WIRE_COID : field[0], NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return s;
}

/* One NewOrder record: its answer bytes, or None (declined before any change: the caller's Python path takes it). */
static PyObject *command_new_order(PyObject *engine, const unsigned char *rec, PyObject *now_obj, long long now)
{
    /* wire._NEW_ORDER: rid@1 symbol@9 user@13 coid@21 side@58 type@59 tif@60 price@61 qty@69 quote@77 stp@85 */
    const uint64_t user = get8(rec + 13);
    EngineState st;
    if (user > INT64_MAX || !engine_state(engine, &st))
        return declined();
    NewOrderVals v = {
        .user_id = (long long)user, .side = rec[58], .order_type = rec[59], .tif = rec[60],
        .price = (long long)get8(rec + 61), .qty = (long long)get8(rec + 69), .quote_qty = (long long)get8(rec + 77),
        .stp = rec[85], .ts = now, .symbol_id = get4(rec + 9),
    };
    NewOrderObjs c = {
        PyLong_FromUnsignedLong(v.symbol_id), PyLong_FromUnsignedLongLong(user), wire_coid(rec + 21),
        PyLong_FromLong((long)v.side), PyLong_FromLong((long)v.order_type), PyLong_FromLong((long)v.tif),
        PyLong_FromLongLong(v.price), PyLong_FromLongLong(v.qty), PyLong_FromLongLong(v.quote_qty),
        PyLong_FromLong((long)v.stp), now_obj,
    };
    PyObject *answer = NULL;
    Events events;
    Outcome out;
    events_init(&events);
    outcome_init(&out);
    if (c.symbol_id && c.user_id && c.coid && c.side && c.order_type && c.tif && c.price && c.qty && c.quote_qty &&
        c.stp) {
        int rc = new_order_core(engine, &st, &c, &v, NULL, &events, &out);
        if (rc > 0) {
            Buf b = {NULL, 0, 0};
            Py_ssize_t coid_len;
            const char *raw = PyUnicode_AsUTF8AndSize(c.coid, &coid_len);
            if (events_flush(&events, st.journal) == 0 && raw != NULL &&
                put_order_item(&b, rec + 1, &v, raw, coid_len, &out) == 0)
                answer = PyBytes_FromStringAndSize(b.data, (Py_ssize_t)b.len);
            PyMem_Free(b.data);
        } else {
            events_free(&events);
            if (rc == 0)
                answer = declined();
        }
    } else {
        answer = declined(); /* a client order id that is not UTF-8: the Python path answers the record */
    }
    outcome_free(&out);
    Py_XDECREF(c.symbol_id);
    Py_XDECREF(c.user_id);
    Py_XDECREF(c.coid);
    Py_XDECREF(c.side);
    Py_XDECREF(c.order_type);
    Py_XDECREF(c.tif);
    Py_XDECREF(c.price);
    Py_XDECREF(c.qty);
    Py_XDECREF(c.quote_qty);
    Py_XDECREF(c.stp);
    return answer;
}

/* One CancelOrder record: its answer bytes, or None (declined: the caller's Python path takes it). */
static PyObject *command_cancel(PyObject *engine, const unsigned char *rec, PyObject *now_obj, PyObject *encode)
{
    /* wire._CANCEL_ORDER: rid@1 symbol@9 user@13 order id@21 coid@29 ts@66 */
    EngineState st;
    if (!engine_state(engine, &st))
        return declined();
    PyObject *items[5] = {PyLong_FromUnsignedLong(get4(rec + 9)), PyLong_FromUnsignedLongLong(get8(rec + 13)),
                          PyLong_FromUnsignedLongLong(get8(rec + 21)), wire_coid(rec + 29), ref(now_obj)};
    if (items[3] == NULL && !PyErr_Occurred()) { /* not UTF-8: the Python path answers the record */
        for (int i = 0; i < 5; i++)
            Py_XDECREF(items[i]);
        return declined();
    }
    PyObject *cmd = named_tuple((PyTypeObject *)cancel_type, items, 5);
    if (cmd == NULL)
        return NULL;
    PyObject *result = cancel(engine, &st, cmd), *answer = NULL;
    Py_DECREF(cmd);
    if (result == NULL || result == Py_None)
        return result;
    Buf b = {NULL, 0, 0};
    char *p = buf_room(&b, ANSWER_HEAD);
    int rc = p == NULL ? -1 : 0;
    if (rc == 0) {
        p[0] = K_ORDER;
        memcpy(p + 1, rec + 1, 8);
        rc = put_view_object(&b, PyTuple_GET_ITEM(result, 0));
    }
    if (rc > 0 && (p = buf_room(&b, 4)) != NULL) {
        put4(p, 0); /* a cancel has no fills */
        answer = PyBytes_FromStringAndSize(b.data, (Py_ssize_t)b.len);
    } else if (rc == 0) { /* a value past its wire range: shards/wire.py encodes it (and raises, naming it) */
        PyObject *rid = PyLong_FromUnsignedLongLong(get8(rec + 1));
        answer = rid == NULL ? NULL : call2(encode, rid, result);
        Py_XDECREF(rid);
    }
    PyMem_Free(b.data);
    Py_DECREF(result);
    return answer;
}

/* command(engine, record, now, encode_answer) -> the answer record of a NewOrder or CancelOrder record, or None when
 * this core does not take it (another type, a record that does not decode, a command it declines: the caller's Python
 * path decodes, applies and answers it, nothing having changed). The same bytes as
 * ``encode_answer(rid, engine.apply(stamped(decode_command(record))))`` and the same journal. */
static PyObject *command(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "command(engine, record, now, encode_answer)");
        return NULL;
    }
    if (!wire_bound) {
        PyErr_SetString(PyExc_RuntimeError, "command needs bind_wire() first");
        return NULL;
    }
    PyObject *engine = args[0], *record = args[1], *now_obj = args[2];
    long long now;
    if (!PyBytes_Check(record) || !as_i64(now_obj, &now))
        return declined();
    const unsigned char *rec = (const unsigned char *)PyBytes_AS_STRING(record);
    const Py_ssize_t len = PyBytes_GET_SIZE(record);
    if (len >= NEW_ORDER_SIZE && rec[0] == T_NEW_ORDER)
        return command_new_order(engine, rec, now_obj, now);
    if (len >= CANCEL_ORDER_SIZE && rec[0] == T_CANCEL_ORDER)
        return command_cancel(engine, rec, now_obj, args[3]);
    Py_RETURN_NONE;
}

/* bind_wire(layouts): check that shards/wire.py's layouts are the ones this core writes; returns (new_orders,
 * command). */
static PyObject *bind_wire(PyObject *module, PyObject *formats)
{
    static const char *const expected[][2] = {
        {"new_orders_head", "<BQH"}, {"new_order_body", "<IQ37pBBBqqqBq"}, {"results_head", "<BQH"},
        {"order_body", "<BIQ37pQBBBBqqqqqBqqqI"}, {"fill", "<Qqq"}, {"new_order", "<BQIQ37pBBBqqqBq"},
        {"cancel_order", "<BQIQQ37pq"}, {"order_head", "<BQIQ37pQBBBBqqqqqBqqqI"},
    };
    static const struct {
        const char *name;
        long value;
    } constants[] = {{"T_NEW_ORDERS", T_NEW_ORDERS}, {"T_NEW_ORDER", T_NEW_ORDER}, {"T_CANCEL_ORDER", T_CANCEL_ORDER},
                     {"K_ORDER", K_ORDER}, {"K_RESULTS", K_RESULTS}, {"MAX_CLIENT_ORDER_ID", WIRE_COID}};
    if (!PyDict_Check(formats)) {
        PyErr_SetString(PyExc_TypeError, "bind_wire(dict of wire layouts)");
        return NULL;
    }
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        PyObject *got = PyDict_GetItemString(formats, expected[i][0]);
        if (got == NULL || !PyUnicode_Check(got) || PyUnicode_CompareWithASCIIString(got, expected[i][1]) != 0) {
            PyErr_Format(PyExc_ValueError, "wire layout %s is %R, this core writes %s", expected[i][0], got,
                         expected[i][1]);
            return NULL;
        }
    }
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        PyObject *got = PyDict_GetItemString(formats, constants[i].name);
        if (got == NULL || !PyLong_Check(got) || PyLong_AsLong(got) != constants[i].value) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "wire constant %s is %R, this core writes %ld", constants[i].name, got,
                         constants[i].value);
            return NULL;
        }
    }
    if (engine_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_wire needs bind() first");
        return NULL;
    }
    wire_bound = 1;
    PyObject *batch = PyObject_GetAttrString(module, "new_orders"), *single = PyObject_GetAttrString(module, "command");
    if (batch == NULL || single == NULL) {
        Py_XDECREF(batch);
        Py_XDECREF(single);
        return NULL;
    }
    return Py_BuildValue("(NN)", batch, single);
}

/* --- binding ---------------------------------------------------------------------------------------- */

static int slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ attribute", type->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    return 0;
}

/* Engine.apply with this core: NewOrder and CancelOrder here first, everything else (and what these decline) in the
 * engine's Python methods. */
static PyObject *apply(PyObject *engine, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "apply(cmd)");
        return NULL;
    }
    PyObject *cmd = args[0], *call_args[2] = {engine, cmd}, *result, *fallback;
    PyTypeObject *kind = Py_TYPE(cmd);
    EngineState st;
    if (kind == (PyTypeObject *)new_order_type) {
        result = engine_state(engine, &st) ? new_order(engine, &st, cmd) : declined();
        fallback = python_new_order;
    } else if (kind == (PyTypeObject *)cancel_type) {
        result = engine_state(engine, &st) ? cancel(engine, &st, cmd) : declined();
        fallback = python_cancel;
    } else {
        return PyObject_Vectorcall(python_apply, call_args, 2, NULL);
    }
    if (result == NULL)
        return NULL;
    if (result != Py_None)
        return result;
    Py_DECREF(result);
    return PyObject_Vectorcall(fallback, call_args, 2, NULL);
}

static PyMethodDef apply_def = {
    "apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL,
    "Apply one command; state changes append events for take_events/take_encoded (C core).",
};

static int keep(PyObject **target, PyObject *value /* stolen */)
{
    if (value == NULL)
        return -1;
    Py_XSETREF(*target, value);
    return 0;
}

static PyObject *bind(PyObject *module, PyObject *args)
{
    PyObject *engine_cls, *book_cls, *view_cls, *result_cls, *fill_cls, *new_order_cls, *cancel_cls, *deque_cls,
        *fok, *push, *pop;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!OOO:bind", &PyType_Type, &engine_cls, &PyType_Type, &book_cls,
                          &PyType_Type, &view_cls, &PyType_Type, &result_cls, &PyType_Type, &fill_cls, &PyType_Type,
                          &new_order_cls, &PyType_Type, &cancel_cls, &PyType_Type, &deque_cls, &fok, &push, &pop))
        return NULL;
    PyTypeObject *e = (PyTypeObject *)engine_cls, *b = (PyTypeObject *)book_cls;
    if (slot_offset(e, "_books", &E_BOOKS) || slot_offset(e, "_journal", &E_JOURNAL) ||
        slot_offset(e, "last_seq", &E_LAST_SEQ) || slot_offset(b, "min_price", &B_MIN_PRICE) ||
        slot_offset(b, "max_price", &B_MAX_PRICE) || slot_offset(b, "min_qty", &B_MIN_QTY) ||
        slot_offset(b, "max_qty", &B_MAX_QTY) || slot_offset(b, "bids", &B_BIDS) || slot_offset(b, "asks", &B_ASKS) ||
        slot_offset(b, "best_bid", &B_BEST_BID) || slot_offset(b, "best_ask", &B_BEST_ASK) ||
        slot_offset(b, "orders", &B_ORDERS) || slot_offset(b, "users", &B_USERS) ||
        slot_offset(b, "next_order_id", &B_NEXT_ORDER_ID) || slot_offset(b, "next_trade_id", &B_NEXT_TRADE_ID) ||
        slot_offset(b, "depth_seq", &B_DEPTH_SEQ) || slot_offset(b, "bid_heap", &B_BID_HEAP) ||
        slot_offset(b, "ask_heap", &B_ASK_HEAP))
        return NULL;
    PyObject *tuples[5] = {view_cls, result_cls, fill_cls, new_order_cls, cancel_cls};
    for (int i = 0; i < 5; i++) {
        if (!PyType_IsSubtype((PyTypeObject *)tuples[i], &PyTuple_Type)) {
            PyErr_Format(PyExc_TypeError, "%s is not a NamedTuple", ((PyTypeObject *)tuples[i])->tp_name);
            return NULL;
        }
    }
    if (keep(&deque_append, PyObject_GetAttrString(deque_cls, "append")) ||
        keep(&deque_popleft, PyObject_GetAttrString(deque_cls, "popleft")) ||
        keep(&deque_clear, PyObject_GetAttrString(deque_cls, "clear")) ||
        keep(&deque_extend, PyObject_GetAttrString(deque_cls, "extend")) ||
        keep(&book_rebuild_heaps, PyObject_GetAttrString(book_cls, "_rebuild_heaps")) ||
        keep(&book_rest, PyObject_GetAttrString(book_cls, "rest")) ||
        keep(&python_apply, PyObject_GetAttrString(engine_cls, "apply")) ||
        keep(&python_new_order, PyObject_GetAttrString(engine_cls, "_new_order")) ||
        keep(&python_cancel, PyObject_GetAttrString(engine_cls, "_cancel")))
        return NULL;
    deque_append_fn = c_function_of(deque_append, METH_O);
    deque_popleft_fn = c_function_of(deque_popleft, METH_NOARGS);
    if (deque_append_fn == NULL || deque_popleft_fn == NULL)
        return NULL;
    keep(&fok_fillable, ref(fok));
    keep(&heappush, ref(push));
    keep(&heappop, ref(pop));
    keep(&deque_type, ref(deque_cls));
    keep(&new_order_type, ref(new_order_cls));
    keep(&cancel_type, ref(cancel_cls));
    keep((PyObject **)&engine_type, ref(engine_cls));
    keep((PyObject **)&book_type, ref(book_cls));
    keep((PyObject **)&view_type, ref(view_cls));
    keep((PyObject **)&result_type, ref(result_cls));
    keep((PyObject **)&fill_type, ref(fill_cls));
    return PyDescr_NewMethod(e, &apply_def);
}

static PyMethodDef methods[] = {
    {"new_orders", (PyCFunction)(void (*)(void))new_orders, METH_FASTCALL,
     "new_orders(engine, record, now, part) -> the Results answer of a NewOrders record, or None (see the C source)."},
    {"command", (PyCFunction)(void (*)(void))command, METH_FASTCALL,
     "command(engine, record, now, encode_answer) -> the answer of a NewOrder or CancelOrder record, or None."},
    {"bind_wire", bind_wire, METH_O, "bind_wire(layouts) -> (new_orders, command), once the layouts are checked."},
    {"bind", bind, METH_VARARGS,
     "bind(Engine, Book, OrderView, OrderResult, Fill, NewOrder, CancelOrder, deque, fok_fillable, heappush, "
     "heappop) -> the C Engine.apply (a method descriptor)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_matchcore", "The matching engine's hot commands in C (see shards/engine.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__matchcore(void)
{
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
