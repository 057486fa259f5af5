/* strata.proxy._pump: one direction of a relayed session, without the GIL.
 *
 * pump(source_fd, sink_fd) copies everything a blocking stream socket delivers to
 * another until the source's EOF, then returns the byte count; an error on either
 * socket raises OSError. The GIL is released for the whole call, so a relayed message
 * costs one recv and one send and no Python at all (strata/proxy/relay.py explains why
 * this is C). Another thread ends a pump early by shutting the sockets down.
 *
 * watch(source_fd, sink_fd, pending, skip, names) is the client-to-server pump of a
 * session with undo: it follows the frontend messages' framing and holds back the first
 * Query or Parse message the pre-filter of _suspect.c flags, or Bind of a prepared
 * statement in ``names``, for Python to look at (and take a checkpoint) before it goes
 * on. Everything else moves as in pump(), GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "_suspect.h"

#define BUFFER_BYTES (256 * 1024) /* a read takes all the kernel holds, up to this */
#define HELD_MAX (16 * 1024 * 1024) /* a longer Query/Parse is held only in part */

/* 0 at the source's EOF, or the errno that ended the copy. */
static int copy_until_eof(int source, int sink, char *buffer, long long *moved) {
    for (;;) {
        ssize_t received = recv(source, buffer, BUFFER_BYTES, 0);
        if (received == 0)
            return 0;
        if (received < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        for (char *next = buffer; received > 0;) {
            ssize_t sent = send(sink, next, (size_t)received, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EINTR)
                    continue;
                return errno;
            }
            next += sent;
            received -= sent;
            *moved += sent;
        }
    }
}

static PyObject *pump(PyObject *Py_UNUSED(module), PyObject *args) {
    int source, sink;
    if (!PyArg_ParseTuple(args, "ii:pump", &source, &sink))
        return NULL;
    char *buffer = malloc(BUFFER_BYTES);
    if (buffer == NULL)
        return PyErr_NoMemory();
    long long moved = 0;
    int error;
    Py_BEGIN_ALLOW_THREADS
    error = copy_until_eof(source, sink, buffer, &moved);
    Py_END_ALLOW_THREADS
    free(buffer);
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong(moved);
}

static int send_all(int sink, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = send(sink, data, length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

struct watched {
    char *data;
    size_t capacity, length;
    unsigned long long skip; /* bytes of the current message still to pass unlooked at */
    size_t held_at, held_length; /* what watch() returns; held_length 0: the EOF */
    const unsigned char *names; /* prepared statements whose Bind is held: "\0a\0b\0" */
    size_t names_length;
};

/* Whether a message of this kind is read whole for a look. */
static int looked_at(const struct watched *w, char kind) {
    return kind == 'Q' || kind == 'P' || (kind == 'B' && w->names_length > 0);
}

/* Grow the buffer to hold ``needed`` bytes: 0, or ENOMEM. */
static int reserve(struct watched *w, size_t needed) {
    if (needed <= w->capacity)
        return 0;
    char *grown = realloc(w->data, needed);
    if (grown == NULL)
        return ENOMEM;
    w->data = grown;
    w->capacity = needed;
    return 0;
}

static uint32_t be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

/* Relay until a flagged message (held_length > 0; the bytes before it sent) or the
 * source's EOF (everything sent); 0, or the errno that ended it. */
static int watch_until_held(int source, int sink, struct watched *w) {
    for (;;) {
        size_t at = 0; /* [0, at) is looked at and goes out with the next send */
        while (at < w->length) {
            if (w->skip > 0) {
                size_t passed = w->length - at;
                if (w->skip < passed)
                    passed = (size_t)w->skip;
                at += passed;
                w->skip -= passed;
                continue;
            }
            if (w->length - at < 5)
                break;
            char kind = w->data[at];
            uint32_t declared = be32(w->data + at + 1);
            if (declared < 4) { /* not a message: relay the rest as it is; PostgreSQL ends it */
                w->skip = ~0ULL;
                continue;
            }
            size_t total = 1 + (size_t)declared;
            if (!looked_at(w, kind)) {
                w->skip = total;
                continue;
            }
            if (w->length - at >= total) {
                if (strata_message_suspect((const unsigned char *)w->data + at, total, w->names,
                                           w->names_length)) {
                    w->held_at = at;
                    w->held_length = total;
                    return send_all(sink, w->data, at);
                }
                at += total;
                continue;
            }
            if (total > HELD_MAX) { /* held in part: the rest follows unlooked at */
                w->held_at = at;
                w->held_length = w->length - at;
                w->skip = total - w->held_length;
                return send_all(sink, w->data, at);
            }
            break; /* the rest of this message is still to come */
        }
        if (at > 0) {
            int error = send_all(sink, w->data, at);
            if (error)
                return error;
            memmove(w->data, w->data + at, w->length - at);
            w->length -= at;
        }
        if (w->skip == 0 && w->length >= 5 && looked_at(w, w->data[0])) {
            size_t total = 1 + (size_t)be32(w->data + 1);
            int error = reserve(w, total); /* total <= HELD_MAX + 1 here */
            if (error)
                return error;
        }
        if (w->length == w->capacity) {
            int error = reserve(w, w->capacity * 2);
            if (error)
                return error;
        }
        ssize_t received = recv(source, w->data + w->length, w->capacity - w->length, 0);
        if (received == 0) { /* the EOF: a torn last message goes on as it is */
            w->held_length = 0;
            return send_all(sink, w->data, w->length);
        }
        if (received < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        w->length += (size_t)received;
    }
}

static PyObject *watch(PyObject *Py_UNUSED(module), PyObject *args) {
    int source, sink;
    Py_buffer pending, names;
    unsigned long long skip;
    if (!PyArg_ParseTuple(args, "iiy*Ky*:watch", &source, &sink, &pending, &skip, &names))
        return NULL;
    struct watched w = {.skip = skip, .names = names.buf, .names_length = (size_t)names.len};
    size_t capacity = (size_t)pending.len > BUFFER_BYTES ? (size_t)pending.len : BUFFER_BYTES;
    if (reserve(&w, capacity)) {
        PyBuffer_Release(&pending);
        PyBuffer_Release(&names);
        return PyErr_NoMemory();
    }
    memcpy(w.data, pending.buf, (size_t)pending.len);
    w.length = (size_t)pending.len;
    PyBuffer_Release(&pending);
    int error;
    Py_BEGIN_ALLOW_THREADS
    error = watch_until_held(source, sink, &w);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&names);
    PyObject *result = NULL;
    if (error) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
    } else if (w.held_length == 0) {
        result = Py_BuildValue("(Oy#K)", Py_None, "", (Py_ssize_t)0, 0ULL);
    } else {
        size_t after = w.held_at + w.held_length;
        result = Py_BuildValue("(y#y#K)", w.data + w.held_at, (Py_ssize_t)w.held_length,
                               w.data + after, (Py_ssize_t)(w.length - after), w.skip);
    }
    free(w.data);
    return result;
}

static PyObject *suspect(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer query;
    if (!PyArg_ParseTuple(args, "y*:suspect", &query))
        return NULL;
    int flagged = strata_query_suspect(query.buf, (size_t)query.len);
    PyBuffer_Release(&query);
    return PyBool_FromLong(flagged);
}

static PyObject *message_suspect(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer message, names;
    if (!PyArg_ParseTuple(args, "y*y*:message_suspect", &message, &names))
        return NULL;
    int held = strata_message_suspect(message.buf, (size_t)message.len, names.buf,
                                      (size_t)names.len);
    PyBuffer_Release(&message);
    PyBuffer_Release(&names);
    return PyBool_FromLong(held);
}

static PyMethodDef methods[] = {
    {"pump", pump, METH_VARARGS,
     "pump(source_fd, sink_fd) -> bytes moved: copy until the source's EOF, GIL released."},
    {"watch", watch, METH_VARARGS,
     "watch(source_fd, sink_fd, pending, skip, names) -> (held, rest, skip): relay frontend "
     "messages until one the undo pre-filter flags or a Bind of a prepared statement in "
     "names (held, not sent; rest: received after it; skip: bytes of it still to come) or "
     "the EOF (held None)."},
    {"suspect", suspect, METH_VARARGS,
     "suspect(query) -> whether the SQL text may hold a statement that destroys data."},
    {"message_suspect", message_suspect, METH_VARARGS,
     "message_suspect(message, names) -> whether watch holds this whole frontend message."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "strata.proxy._pump",
    .m_doc = "One direction of a relayed session in C, without the GIL.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pump(void) { return PyModule_Create(&module); }
