/* The per-order work of POST /api/v3/batchOrders in C: plain LIMIT orders to wire bodies, Results to JSON text;
 * and the single order's twin (POST /api/v3/order, parameters in the query string: scan_query and friends).
 *
 * ingress/batch.py is the specification and stays the reference: this module
 * does the two loops it spends a batch's time in, over the same tables, and
 * gives the same bytes. It saves the interpreter's work, not any step; what it
 * does not handle it leaves untouched for batch.py, which then runs its own
 * Python code on exactly that order or item (tests/ingress/test_batchcore.py
 * compares both paths over many random batches).
 *
 * bind(layouts, names) checks that shards/wire.py's struct formats and kind
 * codes are the ones written here (else ValueError: batch.py stays in Python)
 * and copies the enum names of ingress/views.py.
 *
 * tables(symbols, sides, tifs[, stps]) -> capsule
 *   A copy of batch.py's tables for plan(), made once per catalog: symbols
 *   name -> (symbol_id, shard, price decimals, tick units, min and max price
 *   in ticks, qty decimals, step units, min and max qty in lots), sides and
 *   tifs name -> code (params.SIDES, params.TIFS), and stps name -> code
 *   (params.STP_MODES; scan_query() declines everything without them).
 *
 * plan(orders, start, user_id, tables, coids, prefix, positions, bodies) -> int
 *   From orders[start], each order that is an exact dict of exactly the six
 *   plain LIMIT fields, every value an exact str, type "LIMIT", symbol, side
 *   and timeInForce found in the tables, price and quantity decimal texts on
 *   the symbol's grid and in its range (what params.price_ticks and qty_lots
 *   check, and the memo tables of batch.py's Python path remember) becomes
 *   its NewOrder body, appended to bodies[shard], its index to
 *   positions[shard], with the next generated client order id: the next of
 *   coids (bytes) when prefix is None, else prefix + the next of the counter
 *   coids in lower-case hex (params.ClientOrderIds' ids_bytes, written here).
 *   It stops at the first order it does not take and returns its index
 *   (len(orders) when it took them all): batch.py checks that one in Python
 *   and calls again from the next, so ids are drawn in batch order as before.
 *
 * scan(body, tables, shards) -> bytes | None
 *   The orders of a batchOrders JSON body read straight from its bytes, when
 *   plan() would take every one of them: the body is exactly the object
 *   {"orders": [order, ...]} (no other member) with 1 to 100 orders, each an
 *   object of exactly the six plain LIMIT fields (any order, each once), every
 *   value a string of printable ASCII without a backslash, any JSON
 *   whitespace between tokens and nothing after the object; and each order
 *   passes plan()'s checks. Then one record of SCAN_RECORD bytes per order
 *   (its NewOrder body with user id and client order id 0, then its shard).
 *   Anything else gives None and nothing else happens: the caller parses the
 *   body and runs plan() (and batch.py) as for any body, which names any error.
 *   What it takes is valid JSON that orjson parses to the same orders.
 *
 * emit(scanned, user_id, coids, prefix, positions, bodies) -> None
 *   The wire bodies of scan()'s orders, as plan() appends them: user id and
 *   the next generated client order id (as plan() draws them) filled in.
 *
 * render(record, count, part, out, special, table) -> list | None
 *   A Results record answering `count` orders at positions `part`: each item
 *   that is a FULL order answer (position not in `special`) of a symbol in
 *   table (symbol_id -> (head, quote asset JSON text, price decimals, tick
 *   units, qty decimals, step units)) with values it can write as batch.py
 *   does becomes out[part[k]] (a str); the indices k of the other items
 *   (rejects, other response types, odd values) come back in a list for
 *   batch.py. None when the record is malformed or holds another number of
 *   items than count: nothing was written, batch.py's path takes the record.
 *
 * join(texts) -> bytes | None
 *   The JSON array of the answer texts (batch.answer_bytes) in one copy.
 *
 * scan_query(query, tables, shards) -> (body, shard, resp, payload, signature, timestamp, recvWindow) | None
 *   A single order's raw query string (bytes as sent), taken only when
 *   inputs.py, auth.py's reading of it and params.new_order would take it as
 *   a plain LIMIT order without an error: name=value pairs joined by '&',
 *   every byte printable ASCII but '%' and '+' (nothing to decode) and '='
 *   and '&' only where they separate, no value empty, each name once and one
 *   of QUERY_NAMES (symbol side type timeInForce quantity price
 *   newClientOrderId selfTradePreventionMode newOrderRespType timestamp
 *   recvWindow signature), signature last; type LIMIT; symbol, side,
 *   timeInForce and selfTradePreventionMode found in the tables; price and
 *   quantity as plan() checks them; newClientOrderId 1 to 36 of A-Z a-z 0-9
 *   . _ -; newOrderRespType ACK, RESULT or FULL; timestamp and recvWindow as
 *   params.integer reads them (1 to 19 digits, at most INT64_MAX: the range
 *   of recvWindow is auth's check). Then: the NewOrder body with user id 0
 *   (and client order id empty when none was sent), the shard, the response
 *   type as an index of params.RESP_TYPES (FULL when absent), the signed
 *   payload (the query string before "&signature=", as
 *   auth.strip_form_signature cuts it), the signature (str), the timestamp
 *   and recvWindow (None when absent). Anything else gives None and nothing
 *   happened: the Python path checks it and names any error.
 *
 * order_body(body, user_id, coids, prefix) -> bytes
 *   scan_query()'s body with the user id, and the next generated client
 *   order id (drawn as plan() draws them) when the query sent none.
 *
 * render_order(record, table) -> bytes | None
 *   A shard's answer record to one NewOrder (kind K_ORDER: request id, order
 *   view, fills; bytes after them ignored, as wire.decode_answer does) as its
 *   FULL answer: the bytes render() writes for the same order in a Results
 *   record (batch.full_text). None for any other record, or values render()
 *   leaves to Python.
 *
 * Never does I/O, never logs. State between calls: the bound layouts and names, the key objects last seen
 * in orders, the render table entries last read (each held, see below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire records are little-endian and this core reads and writes them with native loads and stores"
#endif

/* --- the wire layouts written here (checked against shards/wire.py by bind) ----------------------------- */
#define NEW_ORDER_BODY_FORMAT "<IQ37pBBBqqqBq"
#define ORDER_BODY_FORMAT "<BIQ37pQBBBBqqqqqBqqqI"
#define RESULTS_HEAD_FORMAT "<BQH"
#define REJECTED_BODY_FORMAT "<BiH"
#define FILL_FORMAT "<Qqq"
enum { NEW_ORDER_BODY_SIZE = 85, ORDER_BODY_SIZE = 131, RESULTS_HEAD_SIZE = 11, REJECTED_BODY_SIZE = 7, FILL_SIZE = 24 };
enum { COID_MAX = 36, PLAIN_FIELDS = 6, NAMES = 256 };
/* offsets inside a Results order item (kind byte first) */
enum { V_SYMBOL = 1, V_ORDER_ID = 5, V_COID = 13, V_SIDE = 58, V_TYPE = 59, V_TIF = 60, V_STP = 61, V_PRICE = 62,
       V_ORIG = 70, V_EXEC = 78, V_CUM = 86, V_STATUS = 102, V_TIME = 103, V_WORKING = 119, V_FILLS = 127 };

static int bound, k_results, k_order, k_rejected, limit_type, expire_maker, coid_max;
/* enum names (ASCII) by value: status, timeInForce, type, side, selfTradePreventionMode */
typedef struct {
    const char *text;
    Py_ssize_t len;
} Name;
static Name status_names[NAMES], tif_names[NAMES], type_names[NAMES], side_names[NAMES], stp_names[NAMES];
static PyObject *name_refs; /* keeps the name strings alive */
static PyObject *s_symbol, *s_side, *s_type, *s_tif, *s_quantity, *s_price, *s_limit;

static inline uint64_t ld_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline int64_t ld_i64(const unsigned char *p) { int64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t ld_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ld_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* --- bind ----------------------------------------------------------------------------------------------- */

static int layout_is(PyObject *layouts, const char *key, const char *want) {
    PyObject *v = PyDict_GetItemString(layouts, key);
    if (v == NULL || !PyUnicode_Check(v) || strcmp(PyUnicode_AsUTF8(v), want) != 0) {
        PyErr_Format(PyExc_ValueError, "wire layout %s is %R, this core writes %s", key, v, want);
        return 0;
    }
    return 1;
}

static int layout_int(PyObject *layouts, const char *key, int *into) {
    PyObject *v = PyDict_GetItemString(layouts, key);
    long n = v != NULL && PyLong_Check(v) ? PyLong_AsLong(v) : -1;
    if (n < 0 || n > 255) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "wire constant %s is %R, not an integer 0..255", key, v);
        return 0;
    }
    *into = (int)n;
    return 1;
}

static int copy_names(PyObject *table, Name *into) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "enum names must be a dict of int -> str");
        return 0;
    }
    memset(into, 0, NAMES * sizeof(*into));
    while (PyDict_Next(table, &pos, &key, &value)) {
        long code = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
        if (code < 0 || code >= NAMES || !PyUnicode_Check(value) || !PyUnicode_IS_ASCII(value)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "enum name %R: %R is not a code 0..255 with an ASCII name", key, value);
            return 0;
        }
        if (PyList_Append(name_refs, value) < 0)
            return 0;
        into[code].text = PyUnicode_AsUTF8AndSize(value, &into[code].len);
    }
    return 1;
}

static PyObject *bind(PyObject *self, PyObject *args) {
    PyObject *layouts, *status, *tif, *type, *side, *stp;
    if (!PyArg_ParseTuple(args, "O!(OOOOO)", &PyDict_Type, &layouts, &status, &tif, &type, &side, &stp))
        return NULL;
    bound = 0;
    if (!layout_is(layouts, "new_order_body", NEW_ORDER_BODY_FORMAT) || !layout_is(layouts, "order_body", ORDER_BODY_FORMAT)
        || !layout_is(layouts, "results_head", RESULTS_HEAD_FORMAT)
        || !layout_is(layouts, "rejected_body", REJECTED_BODY_FORMAT) || !layout_is(layouts, "fill", FILL_FORMAT)
        || !layout_int(layouts, "K_RESULTS", &k_results) || !layout_int(layouts, "K_ORDER", &k_order)
        || !layout_int(layouts, "K_REJECTED", &k_rejected) || !layout_int(layouts, "LIMIT", &limit_type)
        || !layout_int(layouts, "MAX_CLIENT_ORDER_ID", &coid_max)
        || !layout_int(layouts, "EXPIRE_MAKER", &expire_maker))
        return NULL;
    if (coid_max != COID_MAX) {
        PyErr_Format(PyExc_ValueError, "MAX_CLIENT_ORDER_ID is %d, this core writes %d", coid_max, COID_MAX);
        return NULL;
    }
    Py_XSETREF(name_refs, PyList_New(0));
    if (name_refs == NULL)
        return NULL;
    if (!copy_names(status, status_names) || !copy_names(tif, tif_names) || !copy_names(type, type_names)
        || !copy_names(side, side_names) || !copy_names(stp, stp_names))
        return NULL;
    bound = 1;
    Py_RETURN_NONE;
}

/* --- plan ----------------------------------------------------------------------------------------------- */

/* params.price_ticks / qty_lots of a str, written out: the text ^[0-9]{1,20}(\.[0-9]{1,20})?$ at `decimals`
 * decimals (trailing zeros past them dropped), a whole number of `unit`, in [lo, hi]; 0 when it is not (then
 * batch.py's checks name what is wrong), else the number of units in *into */
static int grid_text(const char *s, Py_ssize_t n, int decimals, int64_t unit, int64_t lo, int64_t hi,
                     long long *into) {
    Py_ssize_t i = 0, whole, frac = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    whole = i;
    if (whole < 1 || whole > 20)
        return 0;
    const char *f = s + i + 1;
    if (i < n) {
        if (s[i] != '.')
            return 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
        if (i != n || frac < 1 || frac > 20)
            return 0;
    }
    while (frac > decimals && f[frac - 1] == '0')
        frac--;
    if (frac > decimals)
        return 0;
    int64_t u;
    if (whole + decimals <= 18) { /* below 10**18: no overflow in 64 bits */
        uint64_t v = 0;
        for (Py_ssize_t k = 0; k < whole; k++)
            v = v * 10 + (unsigned)(s[k] - '0');
        for (Py_ssize_t k = 0; k < frac; k++)
            v = v * 10 + (unsigned)(f[k] - '0');
        for (Py_ssize_t k = frac; k < decimals; k++)
            v *= 10;
        u = (int64_t)v;
        goto on_grid;
    }
    unsigned __int128 units = 0;
    for (Py_ssize_t k = 0; k < whole; k++)
        units = units * 10 + (unsigned)(s[k] - '0');
    for (Py_ssize_t k = 0; k < frac; k++)
        units = units * 10 + (unsigned)(f[k] - '0');
    for (Py_ssize_t k = frac; k < decimals; k++) {
        units *= 10;
        if (units > INT64_MAX)
            return 0;
    }
    if (units > INT64_MAX)
        return 0; /* beyond any maximum of the grid */
    u = (int64_t)units;
on_grid:
    if (unit < 1 || (unit > 1 && u % unit))
        return 0;
    if (unit > 1)
        u /= unit;
    if (u < lo || u > hi)
        return 0;
    *into = u;
    return 1;
}

static inline int grid_value(PyObject *value, int decimals, int64_t unit, int64_t lo, int64_t hi, long long *into) {
    if (!PyUnicode_IS_COMPACT_ASCII(value))
        return 0;
    return grid_text((const char *)PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value), decimals, unit, lo, hi,
                     into);
}

/* --- tables: what plan() looks names up in, copied once per catalog (tables()) ------------------------- */

enum { SMALL = 8, RULES = 10 };
typedef struct {
    char *name; /* UTF-8, NULL: an empty slot */
    Py_ssize_t len;
    long long v[RULES]; /* symbols: the plain-table entry; sides, times in force: v[0] is the code */
} Entry;
typedef struct {
    Entry *slots; /* symbols: open addressing by fnv1a(name), capacity mask + 1 */
    size_t mask;
    Entry sides[SMALL], tifs[SMALL], stps[SMALL];
    int nsides, ntifs, nstps; /* nstps -1: no stp table given (scan_query() then declines every query) */
} Tables;
static const char *TABLES = "ingress._batchcore.Tables";

static inline size_t fnv1a(const char *text, Py_ssize_t len) {
    size_t h = 1469598103934665603u;
    for (Py_ssize_t k = 0; k < len; k++)
        h = (h ^ (unsigned char)text[k]) * 1099511628211u;
    return h;
}

static void tables_free(PyObject *capsule) {
    Tables *t = PyCapsule_GetPointer(capsule, TABLES);
    if (t == NULL)
        return;
    for (size_t k = 0; t->slots && k <= t->mask; k++)
        PyMem_Free(t->slots[k].name);
    for (int k = 0; k < t->nsides; k++)
        PyMem_Free(t->sides[k].name);
    for (int k = 0; k < t->ntifs; k++)
        PyMem_Free(t->tifs[k].name);
    for (int k = 0; k < t->nstps; k++)
        PyMem_Free(t->stps[k].name);
    PyMem_Free(t->slots);
    PyMem_Free(t);
}

/* the UTF-8 of a str (exact), or NULL (no error set) */
static inline const char *utf8_of(PyObject *text, Py_ssize_t *len) {
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        *len = PyUnicode_GET_LENGTH(text);
        return (const char *)PyUnicode_1BYTE_DATA(text);
    }
    const char *data = PyUnicode_AsUTF8AndSize(text, len);
    if (data == NULL)
        PyErr_Clear();
    return data;
}

static int entry_of(Entry *e, PyObject *name, PyObject *value, int ints) {
    Py_ssize_t len;
    const char *text = PyUnicode_CheckExact(name) ? utf8_of(name, &len) : NULL;
    if (text == NULL) {
        PyErr_Format(PyExc_ValueError, "table key %R is not a str", name);
        return 0;
    }
    if (ints == 1)
        value = PyTuple_Pack(1, value);
    else
        Py_INCREF(value);
    if (value == NULL)
        return 0;
    int ok = PyTuple_CheckExact(value) && PyTuple_GET_SIZE(value) == ints;
    for (int k = 0; ok && k < ints; k++) {
        PyObject *o = PyTuple_GET_ITEM(value, k);
        e->v[k] = PyLong_CheckExact(o) ? PyLong_AsLongLong(o) : -1;
        ok = !(e->v[k] == -1 && PyErr_Occurred());
    }
    Py_DECREF(value);
    if (!ok) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "table entry %R is not %d integers", name, ints);
        return 0;
    }
    e->name = PyMem_Malloc((size_t)len + 1);
    if (e->name == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    memcpy(e->name, text, (size_t)len);
    e->len = len;
    return 1;
}

static int small_of(PyObject *dict, Entry *into, int *n) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(dict) || PyDict_GET_SIZE(dict) > SMALL) {
        PyErr_SetString(PyExc_ValueError, "sides and times in force must be dicts of at most 8 names");
        return 0;
    }
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!entry_of(&into[*n], key, value, 1))
            return 0;
        long long code = into[*n].v[0];
        (*n)++;
        if (code < 0 || code > 255) {
            PyErr_Format(PyExc_ValueError, "code %lld of %R is not 0..255", code, key);
            return 0;
        }
    }
    return 1;
}

/* tables(symbols, sides, tifs[, stps]): symbols name -> (symbol_id, shard, price decimals, tick units, min price,
 * max price, qty decimals, step units, min qty, max qty); sides, tifs (and stps: selfTradePreventionMode) name ->
 * code. A capsule for plan(), scan() and scan_query() (which needs stps). */
static PyObject *tables(PyObject *self, PyObject *args) {
    PyObject *symbols, *sides, *tifs, *stps = NULL, *key, *value;
    if (!PyArg_ParseTuple(args, "O!O!O!|O!", &PyDict_Type, &symbols, &PyDict_Type, &sides, &PyDict_Type, &tifs,
                          &PyDict_Type, &stps))
        return NULL;
    Tables *t = PyMem_Calloc(1, sizeof(Tables));
    if (t == NULL)
        return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(t, TABLES, tables_free);
    if (capsule == NULL) {
        PyMem_Free(t);
        return NULL;
    }
    size_t cap = 8;
    while (cap < 2 * (size_t)PyDict_GET_SIZE(symbols))
        cap *= 2;
    t->slots = PyMem_Calloc(cap, sizeof(Entry));
    if (t->slots == NULL) {
        Py_DECREF(capsule);
        return PyErr_NoMemory();
    }
    t->mask = cap - 1;
    Py_ssize_t pos = 0;
    while (PyDict_Next(symbols, &pos, &key, &value)) {
        Entry e = {0};
        if (!entry_of(&e, key, value, RULES)) {
            Py_DECREF(capsule);
            return NULL;
        }
        long long *v = e.v;
        if (v[0] < 0 || v[0] > UINT32_MAX || v[1] < 0 || v[2] < 0 || v[2] > 18 || v[6] < 0 || v[6] > 18 || v[3] < 1
            || v[7] < 1) { /* a symbol this core cannot write: left out, so its orders go to batch.py */
            PyMem_Free(e.name);
            continue;
        }
        size_t k = fnv1a(e.name, e.len) & t->mask;
        while (t->slots[k].name != NULL)
            k = (k + 1) & t->mask;
        t->slots[k] = e;
    }
    if (!small_of(sides, t->sides, &t->nsides) || !small_of(tifs, t->tifs, &t->ntifs)
        || (stps != NULL && !small_of(stps, t->stps, &t->nstps))) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (stps == NULL)
        t->nstps = -1;
    return capsule;
}

static inline const Entry *symbol_entry_text(const Tables *t, const char *text, Py_ssize_t len) {
    for (size_t k = fnv1a(text, len) & t->mask; t->slots[k].name != NULL; k = (k + 1) & t->mask)
        if (t->slots[k].len == len && memcmp(t->slots[k].name, text, (size_t)len) == 0)
            return &t->slots[k];
    return NULL;
}

static inline const Entry *symbol_entry(const Tables *t, PyObject *name) {
    Py_ssize_t len;
    const char *text = utf8_of(name, &len);
    return text == NULL ? NULL : symbol_entry_text(t, text, len);
}

static inline int small_code_text(const Entry *entries, int n, const char *text, Py_ssize_t len, long long *into) {
    for (int k = 0; k < n; k++)
        if (entries[k].len == len && memcmp(entries[k].name, text, (size_t)len) == 0) {
            *into = entries[k].v[0];
            return 1;
        }
    return 0;
}

static inline int small_code(const Entry *entries, int n, PyObject *name, long long *into) {
    if (!PyUnicode_IS_COMPACT_ASCII(name))
        return 0; /* every name is ASCII: a str that is not cannot equal one */
    return small_code_text(entries, n, (const char *)PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name), into);
}

/* The six values of a plain order's dict into v (symbol, side, type, timeInForce, quantity, price); 0 when it
 * does not hold exactly those keys. Keys are matched by identity with the last key objects seen for each field
 * (held, so their addresses stay theirs; orjson hands out the same key objects from its cache), else by value. */
static PyObject *seen_keys[PLAIN_FIELDS];
static PyObject **field_names[PLAIN_FIELDS] = {&s_symbol, &s_side, &s_type, &s_tif, &s_quantity, &s_price};

static int plain_fields(PyObject *item, PyObject **v) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    int found = 0;
    memset(v, 0, PLAIN_FIELDS * sizeof(*v));
    while (PyDict_Next(item, &pos, &key, &value)) {
        int j = 0;
        while (j < PLAIN_FIELDS && key != seen_keys[j])
            j++;
        if (j == PLAIN_FIELDS) {
            if (!PyUnicode_CheckExact(key))
                return 0;
            for (j = 0; j < PLAIN_FIELDS; j++) {
                int eq = PyUnicode_Compare(key, *field_names[j]);
                if (eq == 0)
                    break;
                if (eq == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                    return 0;
                }
            }
            if (j == PLAIN_FIELDS)
                return 0;
            Py_INCREF(key);
            Py_XSETREF(seen_keys[j], key);
        }
        if (v[j] != NULL || !PyUnicode_CheckExact(value))
            return 0;
        v[j] = value;
        found++;
    }
    return found == PLAIN_FIELDS;
}

/* the next generated client order id into b (its wire field: length byte, then up to COID_MAX bytes) */
static int next_coid(PyObject *coids, PyObject *prefix, unsigned char *b) {
    PyObject *next = PyIter_Next(coids);
    if (next == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "the client order id stream ended");
        return 0;
    }
    char text[80];
    Py_ssize_t len;
    if (prefix == Py_None) { /* the id itself, as bytes */
        if (!PyBytes_CheckExact(next)) {
            Py_DECREF(next);
            PyErr_SetString(PyExc_TypeError, "generated client order ids must be bytes");
            return 0;
        }
        len = PyBytes_GET_SIZE(next) > COID_MAX ? COID_MAX : PyBytes_GET_SIZE(next);
        memcpy(text, PyBytes_AS_STRING(next), (size_t)len);
    } else { /* the counter of prefix + "%x" */
        unsigned long long n = PyLong_CheckExact(next) ? PyLong_AsUnsignedLongLong(next) : (unsigned long long)-1;
        if (n == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(next);
            return 0;
        }
        Py_ssize_t plen = PyBytes_GET_SIZE(prefix);
        len = plen > COID_MAX ? COID_MAX : plen;
        memcpy(text, PyBytes_AS_STRING(prefix), (size_t)len);
        char hex[16];
        int k = 16;
        do {
            hex[--k] = "0123456789abcdef"[n & 15];
            n >>= 4;
        } while (n);
        for (; k < 16 && len < COID_MAX; k++)
            text[len++] = hex[k];
    }
    Py_DECREF(next);
    b[0] = (unsigned char)len;
    memcpy(b + 1, text, (size_t)len);
    return 1;
}

static PyObject *plan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "plan() takes 8 arguments");
        return NULL;
    }
    PyObject *orders = args[0], *coids = args[4], *prefix = args[5], *positions = args[6], *bodies = args[7];
    Tables *t = PyCapsule_IsValid(args[3], TABLES) ? PyCapsule_GetPointer(args[3], TABLES) : NULL;
    if (!bound || t == NULL || !PyList_CheckExact(orders) || !PyList_CheckExact(positions)
        || !PyList_CheckExact(bodies) || PyList_GET_SIZE(positions) != PyList_GET_SIZE(bodies)
        || (prefix != Py_None && !PyBytes_CheckExact(prefix))) {
        PyErr_SetString(PyExc_TypeError, "plan() needs a bound core, tables(), lists and bytes or None");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long user_id = PyLong_AsUnsignedLongLong(args[2]);
    if (user_id == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyLong_FromSsize_t(i); /* batch.py packs it and raises as it always did */
    }
    Py_ssize_t n = PyList_GET_SIZE(orders), shards = PyList_GET_SIZE(positions);
    for (; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(orders, i), *v[PLAIN_FIELDS];
        if (!PyDict_CheckExact(item) || PyDict_GET_SIZE(item) != PLAIN_FIELDS || !plain_fields(item, v))
            break;
        PyObject *symbol = v[0], *side = v[1], *type = v[2], *tif = v[3], *qty = v[4], *price = v[5];
        if (type != s_limit && PyUnicode_Compare(type, s_limit) != 0)
            break;
        const Entry *rules = symbol_entry(t, symbol);
        long long side_code, tif_code, ticks, lots;
        if (rules == NULL || rules->v[1] >= shards)
            break;
        const long long *r = rules->v;
        if (!small_code(t->sides, t->nsides, side, &side_code) || !small_code(t->tifs, t->ntifs, tif, &tif_code)
            || !grid_value(price, (int)r[2], r[3], r[4], r[5], &ticks)
            || !grid_value(qty, (int)r[6], r[7], r[8], r[9], &lots))
            break;
        long long symbol_id = r[0], shard = r[1];
        PyObject *body = PyBytes_FromStringAndSize(NULL, NEW_ORDER_BODY_SIZE);
        if (body == NULL)
            return NULL;
        unsigned char *b = (unsigned char *)PyBytes_AS_STRING(body);
        memset(b, 0, NEW_ORDER_BODY_SIZE);
        if (!next_coid(coids, prefix, b + 12)) {
            Py_DECREF(body);
            return NULL;
        }
        uint32_t sym32 = (uint32_t)symbol_id;
        uint64_t user = user_id;
        int64_t ticks64 = ticks, lots64 = lots;
        memcpy(b, &sym32, 4);
        memcpy(b + 4, &user, 8);
        b[49] = (unsigned char)side_code;
        b[50] = (unsigned char)limit_type;
        b[51] = (unsigned char)tif_code;
        memcpy(b + 52, &ticks64, 8);
        memcpy(b + 60, &lots64, 8);
        /* quote qty (68..75) and ts (77..84) stay 0 */
        b[76] = (unsigned char)expire_maker;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(PyList_GET_ITEM(positions, shard), index) < 0
            || PyList_Append(PyList_GET_ITEM(bodies, shard), body) < 0) {
            Py_XDECREF(index);
            Py_DECREF(body);
            return NULL;
        }
        Py_DECREF(index);
        Py_DECREF(body);
    }
    if (PyErr_Occurred())
        PyErr_Clear(); /* a lookup that raised: batch.py checks that order and raises or answers as it does */
    return PyLong_FromSsize_t(i);
}

/* --- scan and emit: plain LIMIT orders straight from the body's bytes ------------------------------------ */

/* A scanned order: its NewOrder body without user id and client order id (both 0), then its shard (uint16). */
enum { SCAN_RECORD = 88, SCAN_SHARD = 86, BATCH_MAX = 100 };

static inline const char *skip_ws(const char *p, const char *end) {
    if (p < end && (unsigned char)*p > ' ')
        return p; /* the common case: no whitespace */
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* SWAR over 8 bytes: a byte of w below 0x20, at or above 0x7f, or '"' or '\\' sets its high bit */
enum { WORD = 8 };
static const uint64_t ONES = 0x0101010101010101u, HIGHS = 0x8080808080808080u;

static inline uint64_t special_bytes(uint64_t w) {
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    uint64_t low = (w - ONES * 0x20) & ~w; /* a byte < 0x20 (>= 0x80: w itself) */
    uint64_t del = ((w ^ (ONES * 0x7f)) - ONES) & ~(w ^ (ONES * 0x7f));
    return (low | del | w | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)) & HIGHS;
}

/* a JSON string's text at p (past its opening quote) holding only printable ASCII, no backslash, up to its closing
 * quote: its length in *len; returns the byte after the closing quote, or NULL */
static inline const char *plain_text(const char *p, const char *end, Py_ssize_t *len) {
    const char *s = p;
    for (;;) {
        while (end - p >= WORD) {
            uint64_t w;
            memcpy(&w, p, WORD);
            uint64_t m = special_bytes(w);
            if (m) {
                p += __builtin_ctzll(m) >> 3;
                break;
            }
            p += WORD;
        }
        if (p >= end)
            return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *len = p - s;
            return p + 1;
        }
        if (c < 0x20 || c >= 0x7f || c == '\\')
            return NULL;
        p++; /* a plain byte: fewer than 8 left before the end */
    }
}

/* a JSON string at p (the opening quote) holding only printable ASCII, no backslash: its text in *text, *len;
 * returns the byte after the closing quote, or NULL */
static inline const char *plain_string(const char *p, const char *end, const char **text, Py_ssize_t *len) {
    if (p >= end || *p != '"')
        return NULL;
    *text = p + 1;
    return plain_text(p + 1, end, len);
}

/* p[0..n) == lit[0..n) for a constant n <= 16, in one or two word loads */
static inline __attribute__((always_inline)) int same_bytes(const char *p, const char *lit, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t head = n > WORD ? WORD : n;
    memcpy(&a, p, head);
    memcpy(&b, lit, head);
    if (n > WORD) {
        memcpy(&c, p + WORD, n - WORD);
        memcpy(&d, lit + WORD, n - WORD);
    }
    return a == b && c == d;
}

/* the field a key at p (the opening quote) names, 0..5 as in field_names, with *at moved past the key; else -1 */
static inline int plain_key(const char **at, const char *end) {
    const char *p = *at;
    Py_ssize_t left = end - p;
#define KEY_IS(text) (left >= (Py_ssize_t)sizeof(text) - 1 && same_bytes(p, text, sizeof(text) - 1))
    int j = -1;
    Py_ssize_t len = 0;
    if (left < 6 || p[0] != '"')
        return -1;
    switch (p[1]) {
    case 's':
        if (KEY_IS("\"symbol\""))
            j = 0, len = 8;
        else if (KEY_IS("\"side\""))
            j = 1, len = 6;
        break;
    case 't':
        if (KEY_IS("\"type\""))
            j = 2, len = 6;
        else if (KEY_IS("\"timeInForce\""))
            j = 3, len = 13;
        break;
    case 'q':
        if (KEY_IS("\"quantity\""))
            j = 4, len = 10;
        break;
    case 'p':
        if (KEY_IS("\"price\""))
            j = 5, len = 7;
        break;
    }
#undef KEY_IS
    *at = p + len;
    return j;
}

/* one order object at p ('{'): its record into rec; returns the byte after its '}', or NULL */
static const char *scan_order(const char *p, const char *end, const Tables *t, Py_ssize_t shards, unsigned char *rec) {
    const char *text[PLAIN_FIELDS];
    Py_ssize_t len[PLAIN_FIELDS];
    int seen = 0;
    if (p >= end || *p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    for (;;) {
        int j = plain_key(&p, end);
        if (j < 0 || (seen & (1 << j)))
            return NULL; /* another field, or one sent twice */
        seen |= 1 << j;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = plain_string(skip_ws(p + 1, end), end, &text[j], &len[j]);
        if (p == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            break;
        return NULL;
    }
    if (seen != (1 << PLAIN_FIELDS) - 1 || len[2] != 5 || memcmp(text[2], "LIMIT", 5) != 0)
        return NULL;
    const Entry *rules = symbol_entry_text(t, text[0], len[0]);
    long long side_code, tif_code, ticks, lots;
    if (rules == NULL || rules->v[1] >= shards || rules->v[1] > UINT16_MAX)
        return NULL;
    const long long *r = rules->v;
    if (!small_code_text(t->sides, t->nsides, text[1], len[1], &side_code)
        || !small_code_text(t->tifs, t->ntifs, text[3], len[3], &tif_code)
        || !grid_text(text[5], len[5], (int)r[2], r[3], r[4], r[5], &ticks)
        || !grid_text(text[4], len[4], (int)r[6], r[7], r[8], r[9], &lots))
        return NULL;
    uint32_t sym32 = (uint32_t)r[0];
    uint16_t shard = (uint16_t)r[1];
    int64_t ticks64 = ticks, lots64 = lots;
    memset(rec, 0, SCAN_RECORD);
    memcpy(rec, &sym32, 4);
    rec[49] = (unsigned char)side_code;
    rec[50] = (unsigned char)limit_type;
    rec[51] = (unsigned char)tif_code;
    memcpy(rec + 52, &ticks64, 8);
    memcpy(rec + 60, &lots64, 8);
    rec[76] = (unsigned char)expire_maker;
    memcpy(rec + SCAN_SHARD, &shard, 2);
    return p + 1;
}

/* The arguments of scan() and scan_query(): (text, tables, shards); 0 with an exception set when they are wrong. */
static int scanner_args(const char *name, PyObject *const *args, Py_ssize_t nargs, Tables **t, Py_ssize_t *shards) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes 3 arguments", name);
        return 0;
    }
    *t = PyCapsule_IsValid(args[1], TABLES) ? PyCapsule_GetPointer(args[1], TABLES) : NULL;
    if (!bound || *t == NULL || !PyBytes_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s() needs a bound core, bytes and tables()", name);
        return 0;
    }
    *shards = PyLong_AsSsize_t(args[2]);
    return !(*shards == -1 && PyErr_Occurred());
}

/* scan(body, tables, shards) -> bytes | None: see the module comment */
static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Tables *t;
    Py_ssize_t shards;
    if (!scanner_args("scan", args, nargs, &t, &shards))
        return NULL;
    const char *p = PyBytes_AS_STRING(args[0]), *end = p + PyBytes_GET_SIZE(args[0]), *key;
    Py_ssize_t key_len, n = 0;
    unsigned char recs[BATCH_MAX * SCAN_RECORD];
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        Py_RETURN_NONE;
    p = plain_string(skip_ws(p + 1, end), end, &key, &key_len);
    if (p == NULL || key_len != 6 || memcmp(key, "orders", 6) != 0)
        Py_RETURN_NONE;
    p = skip_ws(p, end);
    if (p >= end || *p != ':')
        Py_RETURN_NONE;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '[')
        Py_RETURN_NONE;
    p = skip_ws(p + 1, end);
    for (;;) {
        if (n == BATCH_MAX)
            Py_RETURN_NONE;
        p = scan_order(p, end, t, shards, recs + n * SCAN_RECORD);
        if (p == NULL)
            Py_RETURN_NONE;
        n++;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']')
            break;
        Py_RETURN_NONE;
    }
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '}' || skip_ws(p + 1, end) != end)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)recs, n * SCAN_RECORD);
}

/* emit(scanned, user_id, coids, prefix, positions, bodies) -> None: see the module comment */
static PyObject *emit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "emit() takes 6 arguments");
        return NULL;
    }
    PyObject *scanned = args[0], *coids = args[2], *prefix = args[3], *positions = args[4], *bodies = args[5];
    if (!bound || !PyBytes_CheckExact(scanned) || PyBytes_GET_SIZE(scanned) % SCAN_RECORD
        || !PyList_CheckExact(positions) || !PyList_CheckExact(bodies)
        || PyList_GET_SIZE(positions) != PyList_GET_SIZE(bodies) || (prefix != Py_None && !PyBytes_CheckExact(prefix))) {
        PyErr_SetString(PyExc_TypeError, "emit() needs a bound core, scan() bytes, lists and bytes or None");
        return NULL;
    }
    uint64_t user = PyLong_AsUnsignedLongLong(args[1]);
    if (user == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    const unsigned char *rec = (const unsigned char *)PyBytes_AS_STRING(scanned);
    Py_ssize_t n = PyBytes_GET_SIZE(scanned) / SCAN_RECORD, shards = PyList_GET_SIZE(positions);
    for (Py_ssize_t i = 0; i < n; i++, rec += SCAN_RECORD) {
        uint16_t shard;
        memcpy(&shard, rec + SCAN_SHARD, 2);
        if (shard >= shards) {
            PyErr_Format(PyExc_ValueError, "scanned order %zd is for shard %d of %zd", i, (int)shard, shards);
            return NULL;
        }
        PyObject *body = PyBytes_FromStringAndSize(NULL, NEW_ORDER_BODY_SIZE);
        if (body == NULL)
            return NULL;
        unsigned char *b = (unsigned char *)PyBytes_AS_STRING(body);
        memcpy(b, rec, NEW_ORDER_BODY_SIZE);
        memcpy(b + 4, &user, 8);
        if (!next_coid(coids, prefix, b + 12)) {
            Py_DECREF(body);
            return NULL;
        }
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(PyList_GET_ITEM(positions, shard), index) < 0
            || PyList_Append(PyList_GET_ITEM(bodies, shard), body) < 0) {
            Py_XDECREF(index);
            Py_DECREF(body);
            return NULL;
        }
        Py_DECREF(index);
        Py_DECREF(body);
    }
    Py_RETURN_NONE;
}

/* --- render --------------------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static Buf buf;

static int reserve(size_t more) {
    if (buf.len + more <= buf.cap)
        return 1;
    size_t cap = buf.cap ? buf.cap : 4096;
    while (cap < buf.len + more)
        cap *= 2;
    char *data = PyMem_Realloc(buf.data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    buf.data = data;
    buf.cap = cap;
    return 1;
}

/* callers reserve first */
static inline __attribute__((always_inline)) void put(const char *text, size_t len) {
    memcpy(buf.data + buf.len, text, len);
    buf.len += len;
}
#define PUT(literal) put(literal, sizeof(literal) - 1)

static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                     "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                     "8081828384858687888990919293949596979899";

/* the decimal digits of v, ending at end; returns where they start */
static inline char *digits_of(uint64_t v, char *end) {
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * v, 2);
    } else
        *--end = (char)('0' + v);
    return end;
}

static inline void put_u64(uint64_t v) {
    char tmp[24];
    char *start = digits_of(v, tmp + 24);
    put(start, (size_t)(tmp + 24 - start));
}

static inline void put_i64(int64_t v) {
    if (v < 0) {
        buf.data[buf.len++] = '-';
        put_u64((uint64_t)0 - (uint64_t)v);
    } else
        put_u64((uint64_t)v);
}

/* a time (ms): a shard stamps a whole batch with one, so the digits of the last one are kept */
static int64_t last_time = INT64_MIN;
static char last_time_text[24];
static size_t last_time_len;

static inline void put_time(int64_t v) {
    if (v != last_time) {
        size_t len = buf.len;
        put_i64(v);
        last_time_len = buf.len - len;
        memcpy(last_time_text, buf.data + len, last_time_len);
        last_time = v;
        return;
    }
    put(last_time_text, last_time_len);
}

/* symbols.fixed: units / 10**decimals with exactly `decimals` decimals (units >= 0) */
static inline void put_fixed(uint64_t units, int decimals) {
    char tmp[64]; /* 20 digits, or decimals + 1 (at most 37) */
    char *start = digits_of(units, tmp + 64);
    int digits = (int)(tmp + 64 - start);
    if (decimals == 0) {
        put(start, (size_t)digits);
        return;
    }
    while (digits <= decimals) { /* at least one digit before the point */
        *--start = '0';
        digits++;
    }
    put(start, (size_t)(digits - decimals));
    buf.data[buf.len++] = '.';
    put(tmp + 64 - decimals, (size_t)decimals);
}

typedef struct {
    long long symbol_id;
    const char *head, *asset;
    Py_ssize_t head_len, asset_len;
    int price_decimals, qty_decimals;
    int64_t tick_units, step_units;
} Symbol;

/* Entries read from the last render table (held: batch.py builds one per catalog and never changes it), by symbol
 * id below SYMBOL_CACHE: state 0 not read yet, 1 written here, 2 not written here. */
enum { SYMBOL_CACHE = 4096 };
static PyObject *cached_table;
static Symbol symbol_cache[SYMBOL_CACHE];
static signed char symbol_state[SYMBOL_CACHE];

/* the render table entry of symbol_id; 0 when it is absent or not written here (non-ASCII texts, odd scales) */
static int symbol_of(PyObject *table, long long symbol_id, Symbol *s) {
    PyObject *key = PyLong_FromLongLong(symbol_id);
    if (key == NULL)
        return -1;
    PyObject *t = PyDict_GetItemWithError(table, key);
    Py_DECREF(key);
    s->head = NULL;
    if (t == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 6)
        return 0;
    PyObject *head = PyTuple_GET_ITEM(t, 0), *asset = PyTuple_GET_ITEM(t, 1);
    if (!PyUnicode_CheckExact(head) || !PyUnicode_IS_ASCII(head) || !PyUnicode_CheckExact(asset)
        || !PyUnicode_IS_ASCII(asset))
        return 0;
    long long v[4];
    for (int k = 0; k < 4; k++) {
        PyObject *o = PyTuple_GET_ITEM(t, 2 + k);
        v[k] = PyLong_CheckExact(o) ? PyLong_AsLongLong(o) : -1;
        if (v[k] == -1 && PyErr_Occurred())
            PyErr_Clear();
    }
    if (v[0] < 0 || v[0] > 18 || v[2] < 0 || v[2] > 18 || v[1] < 1 || v[3] < 1)
        return 0;
    s->symbol_id = symbol_id;
    s->head = PyUnicode_AsUTF8AndSize(head, &s->head_len);
    s->asset = PyUnicode_AsUTF8AndSize(asset, &s->asset_len);
    s->price_decimals = (int)v[0];
    s->tick_units = v[1];
    s->qty_decimals = (int)v[2];
    s->step_units = v[3];
    return 1;
}

/* units * a (* b), when it is >= 0 and fits an int64 */
static inline int scaled(int64_t units, int64_t a, int64_t b, uint64_t *into) {
    int64_t r;
    if (units < 0 || __builtin_mul_overflow(units, a, &r) || __builtin_mul_overflow(r, b, &r))
        return 0;
    *into = (uint64_t)r;
    return 1;
}

static inline int coid_plain(const unsigned char *p, int len) {
    for (int k = 0; k < len; k++) {
        unsigned char c = p[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_'
              || c == '-'))
            return 0;
    }
    return 1;
}

/* writes the FULL answer of the order item at p into buf; 0 when it is not written here (buf unchanged) */
static int full_text(const unsigned char *p, const Symbol *s) {
    uint32_t nf = ld_u32(p + V_FILLS);
    int coid_len = p[V_COID] > COID_MAX ? COID_MAX : p[V_COID];
    const unsigned char *coid = p + V_COID + 1;
    const Name *status = &status_names[p[V_STATUS]], *tif = &tif_names[p[V_TIF]], *type = &type_names[p[V_TYPE]];
    const Name *side = &side_names[p[V_SIDE]], *stp = &stp_names[p[V_STP]];
    uint64_t price, orig, exec, cum;
    if (!status->text || !tif->text || !type->text || !side->text || !stp->text || !coid_plain(coid, coid_len)
        || !scaled(ld_i64(p + V_PRICE), s->tick_units, 1, &price) || !scaled(ld_i64(p + V_ORIG), s->step_units, 1, &orig)
        || !scaled(ld_i64(p + V_EXEC), s->step_units, 1, &exec)
        || !scaled(ld_i64(p + V_CUM), s->tick_units, s->step_units, &cum))
        return 0;
    const unsigned char *f = p + ORDER_BODY_SIZE;
    for (uint32_t k = 0; k < nf; k++, f += FILL_SIZE) {
        uint64_t u;
        if (!scaled(ld_i64(f + 8), s->tick_units, 1, &u) || !scaled(ld_i64(f + 16), s->step_units, 1, &u))
            return 0;
    }
    if (!reserve(600 + (size_t)s->head_len + (size_t)nf * (200 + (size_t)s->asset_len)))
        return -1;
    put(s->head, (size_t)s->head_len);
    put_u64(ld_u64(p + V_ORDER_ID));
    PUT(",\"orderListId\":-1,\"clientOrderId\":\"");
    put((const char *)coid, (size_t)coid_len);
    PUT("\",\"transactTime\":");
    put_time(ld_i64(p + V_TIME));
    PUT(",\"price\":\"");
    put_fixed(price, s->price_decimals);
    PUT("\",\"origQty\":\"");
    put_fixed(orig, s->qty_decimals);
    PUT("\",\"executedQty\":\"");
    put_fixed(exec, s->qty_decimals);
    PUT("\",\"cummulativeQuoteQty\":\"");
    put_fixed(cum, s->price_decimals + s->qty_decimals);
    PUT("\",\"status\":\"");
    put(status->text, (size_t)status->len);
    PUT("\",\"timeInForce\":\"");
    put(tif->text, (size_t)tif->len);
    PUT("\",\"type\":\"");
    put(type->text, (size_t)type->len);
    PUT("\",\"side\":\"");
    put(side->text, (size_t)side->len);
    PUT("\",\"workingTime\":");
    put_time(ld_i64(p + V_WORKING));
    PUT(",\"selfTradePreventionMode\":\"");
    put(stp->text, (size_t)stp->len);
    PUT("\",\"fills\":[");
    f = p + ORDER_BODY_SIZE;
    for (uint32_t k = 0; k < nf; k++, f += FILL_SIZE) {
        uint64_t fp = 0, fq = 0;
        scaled(ld_i64(f + 8), s->tick_units, 1, &fp);
        scaled(ld_i64(f + 16), s->step_units, 1, &fq);
        if (k)
            buf.data[buf.len++] = ',';
        PUT("{\"price\":\"");
        put_fixed(fp, s->price_decimals);
        PUT("\",\"qty\":\"");
        put_fixed(fq, s->qty_decimals);
        PUT("\",\"commission\":\"0\",\"commissionAsset\":");
        put(s->asset, (size_t)s->asset_len);
        PUT(",\"tradeId\":");
        put_u64(ld_u64(f));
        buf.data[buf.len++] = '}';
    }
    PUT("]}");
    return 1;
}

static PyObject *render(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "render() takes 6 arguments");
        return NULL;
    }
    PyObject *record = args[0], *part = args[2], *out = args[3], *special = args[4], *table = args[5];
    if (!bound || !PyBytes_CheckExact(record) || !PyList_CheckExact(part) || !PyList_CheckExact(out)
        || !PyDict_CheckExact(special) || !PyDict_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "render() needs a bound core, bytes, lists and dicts");
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *rec = (const unsigned char *)PyBytes_AS_STRING(record);
    Py_ssize_t size = PyBytes_GET_SIZE(record);
    /* the whole record first, as wire.results_items reads it: anything odd leaves it to batch.py */
    if (size < RESULTS_HEAD_SIZE || rec[0] != k_results || PyList_GET_SIZE(part) != count)
        Py_RETURN_NONE;
    Py_ssize_t n = ld_u16(rec + 9), off = RESULTS_HEAD_SIZE;
    if (n != count)
        Py_RETURN_NONE;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (off >= size)
            Py_RETURN_NONE;
        if (rec[off] == k_order) {
            if (size - off < ORDER_BODY_SIZE)
                Py_RETURN_NONE;
            uint64_t nf = ld_u32(rec + off + V_FILLS);
            off += ORDER_BODY_SIZE;
            if ((uint64_t)(size - off) < nf * FILL_SIZE)
                Py_RETURN_NONE;
            off += (Py_ssize_t)nf * FILL_SIZE;
        } else if (rec[off] == k_rejected) {
            if (size - off < REJECTED_BODY_SIZE)
                Py_RETURN_NONE;
            Py_ssize_t m = ld_u16(rec + off + 5);
            off += REJECTED_BODY_SIZE;
            if (size - off < m)
                Py_RETURN_NONE;
            off += m;
        } else
            Py_RETURN_NONE;
    }
    for (Py_ssize_t k = 0; k < n; k++) { /* every position must be an index of out */
        PyObject *pos = PyList_GET_ITEM(part, k);
        Py_ssize_t at = PyLong_CheckExact(pos) ? PyLong_AsSsize_t(pos) : -1;
        if (at < 0 || at >= PyList_GET_SIZE(out)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }
    PyObject *left = PyList_New(0);
    if (left == NULL)
        return NULL;
    if (table != cached_table) { /* another catalog's table: forget the entries read from the last one */
        Py_INCREF(table);
        Py_XSETREF(cached_table, table);
        memset(symbol_state, 0, sizeof(symbol_state));
    }
    Symbol other_sym = {.symbol_id = -1}, *sym = NULL;
    int have = 0; /* *sym is the entry of the item's symbol: 1 written here, 0 not */
    int has_special = PyDict_GET_SIZE(special) != 0;
    off = RESULTS_HEAD_SIZE;
    for (Py_ssize_t k = 0; k < n; k++) {
        const unsigned char *p = rec + off;
        int done = 0;
        PyObject *pos = PyList_GET_ITEM(part, k);
        if (p[0] == k_order) {
            off += ORDER_BODY_SIZE + (Py_ssize_t)ld_u32(p + V_FILLS) * FILL_SIZE;
            long long symbol_id = ld_u32(p + V_SYMBOL);
            if (symbol_id < SYMBOL_CACHE) {
                sym = &symbol_cache[symbol_id];
                if (!symbol_state[symbol_id]) {
                    have = symbol_of(table, symbol_id, sym);
                    if (have < 0)
                        goto error;
                    symbol_state[symbol_id] = (signed char)(have ? 1 : 2);
                }
                have = symbol_state[symbol_id] == 1;
            } else {
                sym = &other_sym;
                if (symbol_id != other_sym.symbol_id) {
                    have = symbol_of(table, symbol_id, sym);
                    if (have < 0)
                        goto error;
                    other_sym.symbol_id = symbol_id;
                }
                have = other_sym.head != NULL;
            }
            int other = 0;
            if (has_special) {
                other = PyDict_Contains(special, pos);
                if (other < 0)
                    goto error;
            }
            if (have && !other) {
                buf.len = 0;
                done = full_text(p, sym);
                if (done < 0)
                    goto error;
                if (done) {
                    PyObject *text = PyUnicode_New((Py_ssize_t)buf.len, 127);
                    if (text == NULL)
                        goto error;
                    memcpy(PyUnicode_1BYTE_DATA(text), buf.data, buf.len);
                    if (PyList_SetItem(out, PyLong_AsSsize_t(pos), text) < 0)
                        goto error;
                }
            }
        } else
            off += REJECTED_BODY_SIZE + ld_u16(p + 5);
        if (!done) {
            PyObject *index = PyLong_FromSsize_t(k);
            if (index == NULL || PyList_Append(left, index) < 0) {
                Py_XDECREF(index);
                goto error;
            }
            Py_DECREF(index);
        }
    }
    return left;
error:
    Py_DECREF(left);
    return NULL;
}

/* --- the single order: POST /api/v3/order with its parameters in the query string ------------------------ */

/* The names scan_query() takes (a subset of params.ORDER_PARAMS | SIGNED_PARAMS; QUERY_NAMES in Python). */
enum { Q_SYMBOL, Q_SIDE, Q_TYPE, Q_TIF, Q_QUANTITY, Q_PRICE, Q_COID, Q_STP, Q_RESP, Q_TIMESTAMP, Q_RECV, Q_SIGNATURE,
       QUERY_FIELDS };
static const char *const query_names[QUERY_FIELDS] = {
    "symbol", "side", "type", "timeInForce", "quantity", "price", "newClientOrderId", "selfTradePreventionMode",
    "newOrderRespType", "timestamp", "recvWindow", "signature"};
static const char *const resp_names[3] = {"ACK", "RESULT", "FULL"}; /* params.RESP_TYPES, in its order */
/* the class of a query string byte: printable ASCII but % + = & is QB_PLAIN; '=' and '&' separate */
enum { QB_ODD, QB_PLAIN, QB_EQUALS, QB_AMP };
static unsigned char query_byte[256];

static void query_bytes_init(void) {
    for (int c = '!'; c < 0x7f; c++)
        query_byte[c] = QB_PLAIN;
    query_byte['%'] = query_byte['+'] = QB_ODD;
    query_byte['='] = QB_EQUALS;
    query_byte['&'] = QB_AMP;
}
enum { Q_REQUIRED = (1 << Q_SYMBOL) | (1 << Q_SIDE) | (1 << Q_TYPE) | (1 << Q_TIF) | (1 << Q_QUANTITY)
                    | (1 << Q_PRICE) | (1 << Q_TIMESTAMP) | (1 << Q_SIGNATURE) };

/* the field `name` names (Q_*), or -1 */
static inline int query_name(const char *name, Py_ssize_t len) {
#define NAME_IS(j) (memcmp(name, query_names[j], (size_t)len) == 0 ? (j) : -1)
    switch (len) {
    case 4:
        return name[1] == 'i' ? NAME_IS(Q_SIDE) : NAME_IS(Q_TYPE);
    case 5:
        return NAME_IS(Q_PRICE);
    case 6:
        return NAME_IS(Q_SYMBOL);
    case 8:
        return NAME_IS(Q_QUANTITY);
    case 9:
        return name[0] == 's' ? NAME_IS(Q_SIGNATURE) : NAME_IS(Q_TIMESTAMP);
    case 10:
        return NAME_IS(Q_RECV);
    case 11:
        return NAME_IS(Q_TIF);
    case 16:
        return name[3] == 'C' ? NAME_IS(Q_COID) : NAME_IS(Q_RESP);
    case 23:
        return NAME_IS(Q_STP);
    }
    return -1;
#undef NAME_IS
}

/* params.integer of a str: 1 to 19 ASCII digits, at most INT64_MAX; 0 when it is not */
static inline int query_int(const char *s, Py_ssize_t n, long long *into) {
    if (n < 1 || n > 19)
        return 0;
    uint64_t v = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[k] - '0');
    }
    if (v > INT64_MAX)
        return 0;
    *into = (long long)v;
    return 1;
}

/* scan_query(query, tables, shards) -> (body, shard, response type, payload, signature, timestamp, recvWindow)
 * | None: see the module comment */
static PyObject *scan_query(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Tables *t;
    Py_ssize_t shards;
    if (!scanner_args("scan_query", args, nargs, &t, &shards))
        return NULL;
    if (t->nstps < 0)
        Py_RETURN_NONE;
    const char *q = PyBytes_AS_STRING(args[0]), *end = q + PyBytes_GET_SIZE(args[0]), *p = q;
    const char *text[QUERY_FIELDS];
    Py_ssize_t len[QUERY_FIELDS];
    int seen = 0;
    while (p < end) { /* name=value, then '&' or the end; each byte of either printable ASCII but % + = & */
        const char *name = p;
        while (p < end && query_byte[(unsigned char)*p] == QB_PLAIN)
            p++;
        if (p >= end || *p != '=' || p == name)
            Py_RETURN_NONE;
        int j = query_name(name, p - name);
        if (j < 0 || (seen & (1 << j)))
            Py_RETURN_NONE; /* a name this lane does not take, or one sent twice */
        const char *value = ++p;
        while (p < end && query_byte[(unsigned char)*p] == QB_PLAIN)
            p++;
        if (p == value || (p < end && *p != '&'))
            Py_RETURN_NONE; /* an empty value, or an odd byte in it */
        seen |= 1 << j;
        text[j] = value;
        len[j] = p - value;
        if (p < end) {
            if (j == Q_SIGNATURE)
                Py_RETURN_NONE; /* the signature ends the query string here (so no '&' ends it) */
            p++;
        }
    }
    if ((seen & Q_REQUIRED) != Q_REQUIRED || len[Q_TYPE] != 5 || memcmp(text[Q_TYPE], "LIMIT", 5) != 0)
        Py_RETURN_NONE;
    const Entry *rules = symbol_entry_text(t, text[Q_SYMBOL], len[Q_SYMBOL]);
    long long side_code, tif_code, ticks, lots, stp = expire_maker, timestamp, recv_window = -1;
    if (rules == NULL || rules->v[1] >= shards)
        Py_RETURN_NONE;
    const long long *r = rules->v;
    if (!small_code_text(t->sides, t->nsides, text[Q_SIDE], len[Q_SIDE], &side_code)
        || !small_code_text(t->tifs, t->ntifs, text[Q_TIF], len[Q_TIF], &tif_code)
        || !grid_text(text[Q_PRICE], len[Q_PRICE], (int)r[2], r[3], r[4], r[5], &ticks)
        || !grid_text(text[Q_QUANTITY], len[Q_QUANTITY], (int)r[6], r[7], r[8], r[9], &lots)
        || !query_int(text[Q_TIMESTAMP], len[Q_TIMESTAMP], &timestamp)
        || ((seen & (1 << Q_RECV)) && !query_int(text[Q_RECV], len[Q_RECV], &recv_window))
        || ((seen & (1 << Q_STP)) && !small_code_text(t->stps, t->nstps, text[Q_STP], len[Q_STP], &stp))
        || ((seen & (1 << Q_COID)) && (len[Q_COID] > COID_MAX || !coid_plain((const unsigned char *)text[Q_COID],
                                                                             (int)len[Q_COID]))))
        Py_RETURN_NONE;
    int resp = 2; /* FULL: the default */
    if (seen & (1 << Q_RESP)) {
        for (resp = 0; resp < 3; resp++)
            if ((Py_ssize_t)strlen(resp_names[resp]) == len[Q_RESP]
                && memcmp(resp_names[resp], text[Q_RESP], (size_t)len[Q_RESP]) == 0)
                break;
        if (resp == 3)
            Py_RETURN_NONE;
    }
    unsigned char b[NEW_ORDER_BODY_SIZE];
    memset(b, 0, sizeof(b));
    uint32_t sym32 = (uint32_t)r[0];
    int64_t ticks64 = ticks, lots64 = lots;
    memcpy(b, &sym32, 4);
    /* user id (4..11) is filled by order_body(), and the client order id (12..48) when none was sent */
    if (seen & (1 << Q_COID)) {
        b[12] = (unsigned char)len[Q_COID];
        memcpy(b + 13, text[Q_COID], (size_t)len[Q_COID]);
    }
    b[49] = (unsigned char)side_code;
    b[50] = (unsigned char)limit_type;
    b[51] = (unsigned char)tif_code;
    memcpy(b + 52, &ticks64, 8);
    memcpy(b + 60, &lots64, 8);
    b[76] = (unsigned char)stp; /* quote qty (68..75) and ts (77..84) stay 0 */
    Py_ssize_t payload = text[Q_SIGNATURE] - q - (Py_ssize_t)sizeof("&signature=") + 1;
    if (payload < 0)
        payload = 0; /* the signature alone (never plainly valid: the required fields are missing) */
    PyObject *out = PyTuple_New(7), *signature = PyUnicode_New(len[Q_SIGNATURE], 127);
    if (out == NULL || signature == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(signature);
        return NULL;
    }
    memcpy(PyUnicode_1BYTE_DATA(signature), text[Q_SIGNATURE], (size_t)len[Q_SIGNATURE]);
    PyTuple_SET_ITEM(out, 4, signature);
    PyObject *items[7] = {PyBytes_FromStringAndSize((const char *)b, NEW_ORDER_BODY_SIZE), PyLong_FromLongLong(r[1]),
                          PyLong_FromLong(resp), PyBytes_FromStringAndSize(q, payload), signature,
                          PyLong_FromLongLong(timestamp),
                          recv_window < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(recv_window)};
    for (int k = 0; k < 7; k++) {
        if (items[k] == NULL) {
            Py_DECREF(out); /* the items set so far with it */
            for (k++; k < 7; k++)
                if (k != 4)
                    Py_XDECREF(items[k]);
            return NULL;
        }
        if (k != 4)
            PyTuple_SET_ITEM(out, k, items[k]);
    }
    return out;
}

/* order_body(body, user_id, coids, prefix) -> bytes: scan_query()'s body with the user id, and the next generated
 * client order id when the query sent none (drawn as plan() draws them) */
static PyObject *order_body(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "order_body() takes 4 arguments");
        return NULL;
    }
    PyObject *scanned = args[0], *coids = args[2], *prefix = args[3];
    if (!PyBytes_CheckExact(scanned) || PyBytes_GET_SIZE(scanned) != NEW_ORDER_BODY_SIZE
        || (prefix != Py_None && !PyBytes_CheckExact(prefix))) {
        PyErr_SetString(PyExc_TypeError, "order_body() needs scan_query()'s body and bytes or None");
        return NULL;
    }
    uint64_t user = PyLong_AsUnsignedLongLong(args[1]);
    if (user == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    PyObject *body = PyBytes_FromStringAndSize(PyBytes_AS_STRING(scanned), NEW_ORDER_BODY_SIZE);
    if (body == NULL)
        return NULL;
    unsigned char *b = (unsigned char *)PyBytes_AS_STRING(body);
    memcpy(b + 4, &user, 8);
    if (b[12] == 0 && !next_coid(coids, prefix, b + 12)) {
        Py_DECREF(body);
        return NULL;
    }
    return body;
}

/* the render table entry of symbol_id, read once per table as render() reads them; NULL when it is not written here
 * (an error set when reading it failed) */
static Symbol *symbol_entry_of(PyObject *table, long long symbol_id) {
    static Symbol other;
    if (table != cached_table) {
        Py_INCREF(table);
        Py_XSETREF(cached_table, table);
        memset(symbol_state, 0, sizeof(symbol_state));
    }
    if (symbol_id >= SYMBOL_CACHE)
        return symbol_of(table, symbol_id, &other) > 0 ? &other : NULL;
    if (!symbol_state[symbol_id]) {
        int have = symbol_of(table, symbol_id, &symbol_cache[symbol_id]);
        if (have < 0)
            return NULL;
        symbol_state[symbol_id] = (signed char)(have ? 1 : 2);
    }
    return symbol_state[symbol_id] == 1 ? &symbol_cache[symbol_id] : NULL;
}

/* render_order(record, table) -> bytes | None: see the module comment */
static PyObject *render_order(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "render_order() takes 2 arguments");
        return NULL;
    }
    PyObject *record = args[0], *table = args[1];
    if (!bound || !PyBytes_CheckExact(record) || !PyDict_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "render_order() needs a bound core, bytes and a dict");
        return NULL;
    }
    /* an order answer: kind, request id, then an order item's view and fills (full_text() reads from p + 1) */
    const unsigned char *rec = (const unsigned char *)PyBytes_AS_STRING(record);
    Py_ssize_t size = PyBytes_GET_SIZE(record);
    if (size < 8 + ORDER_BODY_SIZE || rec[0] != k_order)
        Py_RETURN_NONE;
    const unsigned char *p = rec + 8;
    if ((uint64_t)(size - 8 - ORDER_BODY_SIZE) < (uint64_t)ld_u32(p + V_FILLS) * FILL_SIZE)
        Py_RETURN_NONE;
    Symbol *sym = symbol_entry_of(table, ld_u32(p + V_SYMBOL));
    if (sym == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    buf.len = 0;
    int done = full_text(p, sym);
    if (done < 0)
        return NULL;
    if (!done)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(buf.data, (Py_ssize_t)buf.len);
}

/* --- join --------------------------------------------------------------------------------------------- */

/* b"[" + ",".join(texts).encode() + b"]"; None when a text is not a str (batch.py then raises as it does) */
static PyObject *join(PyObject *self, PyObject *texts) {
    if (!PyList_CheckExact(texts)) {
        PyErr_SetString(PyExc_TypeError, "join() takes a list of str");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(texts), total = n + 1 + (n == 0);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *t = PyList_GET_ITEM(texts, k);
        Py_ssize_t len;
        if (!PyUnicode_CheckExact(t))
            Py_RETURN_NONE;
        if (PyUnicode_IS_ASCII(t))
            len = PyUnicode_GET_LENGTH(t);
        else if (PyUnicode_AsUTF8AndSize(t, &len) == NULL) {
            PyErr_Clear(); /* a lone surrogate: the Python path raises on it */
            Py_RETURN_NONE;
        }
        total += len;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, total);
    if (data == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(data);
    *w++ = '[';
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *t = PyList_GET_ITEM(texts, k);
        Py_ssize_t len;
        const char *text = PyUnicode_IS_ASCII(t) ? (const char *)PyUnicode_1BYTE_DATA(t) : PyUnicode_AsUTF8AndSize(t, &len);
        if (PyUnicode_IS_ASCII(t))
            len = PyUnicode_GET_LENGTH(t);
        if (k)
            *w++ = ',';
        memcpy(w, text, (size_t)len);
        w += len;
    }
    *w = ']';
    return data;
}

/* --- module --------------------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(layouts, (status, tif, type, side, stp names)): check the wire layouts"},
    {"tables", tables, METH_VARARGS, "tables(symbols, sides, tifs) -> what plan() looks names up in"},
    {"plan", (PyCFunction)(void (*)(void))plan, METH_FASTCALL,
     "plan(orders, start, user_id, tables, coids, prefix, positions, bodies) -> first index not taken"},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(body, tables, shards) -> the plain LIMIT orders of a batchOrders JSON body, or None"},
    {"emit", (PyCFunction)(void (*)(void))emit, METH_FASTCALL,
     "emit(scanned, user_id, coids, prefix, positions, bodies): the wire bodies of scan()'s orders"},
    {"render", (PyCFunction)(void (*)(void))render, METH_FASTCALL,
     "render(record, count, part, out, special, table) -> item indices left, or None for the whole record"},
    {"scan_query", (PyCFunction)(void (*)(void))scan_query, METH_FASTCALL,
     "scan_query(query, tables, shards) -> a plainly valid single order's parts, or None"},
    {"order_body", (PyCFunction)(void (*)(void))order_body, METH_FASTCALL,
     "order_body(body, user_id, coids, prefix) -> scan_query()'s body with user id and client order id"},
    {"render_order", (PyCFunction)(void (*)(void))render_order, METH_FASTCALL,
     "render_order(record, table) -> the FULL answer of an order answer record as bytes, or None"},
    {"join", join, METH_O, "join(texts) -> the JSON array of the answer texts as bytes, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_batchcore", "batchOrders per-order work in C", -1, methods};

PyMODINIT_FUNC PyInit__batchcore(void) {
    s_symbol = PyUnicode_InternFromString("symbol");
    s_side = PyUnicode_InternFromString("side");
    s_type = PyUnicode_InternFromString("type");
    s_tif = PyUnicode_InternFromString("timeInForce");
    s_quantity = PyUnicode_InternFromString("quantity");
    s_price = PyUnicode_InternFromString("price");
    s_limit = PyUnicode_InternFromString("LIMIT");
    query_bytes_init();
    if (!s_symbol || !s_side || !s_type || !s_tif || !s_quantity || !s_price || !s_limit)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *names = PyTuple_New(QUERY_FIELDS);
    for (int j = 0; names != NULL && j < QUERY_FIELDS; j++) {
        PyObject *name = PyUnicode_FromString(query_names[j]);
        if (name == NULL)
            Py_CLEAR(names);
        else
            PyTuple_SET_ITEM(names, j, name);
    }
    if (PyModule_AddIntConstant(m, "SCAN_RECORD", SCAN_RECORD) < 0 || names == NULL
        || PyModule_AddObject(m, "QUERY_NAMES", names) < 0) {
        Py_XDECREF(names);
        Py_CLEAR(m);
    }
    return m;
}
