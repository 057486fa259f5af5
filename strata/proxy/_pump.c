/* strata.proxy._pump: one direction of a relayed session, without the GIL.
 *
 * pump(source_fd, sink_fd) copies everything a blocking stream socket delivers to
 * another until the source's EOF, then returns the byte count; an error on either
 * socket raises OSError. The GIL is released for the whole call, so a relayed message
 * costs one recv and one send and no Python at all (strata/proxy/relay.py explains why
 * this is C). Another thread ends a pump early by shutting the sockets down.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#define BUFFER_BYTES (256 * 1024) /* a read takes all the kernel holds, up to this */

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

static PyMethodDef methods[] = {
    {"pump", pump, METH_VARARGS,
     "pump(source_fd, sink_fd) -> bytes moved: copy until the source's EOF, GIL released."},
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
