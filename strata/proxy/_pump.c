/* strata.proxy._pump: the relay of every plain-text session, one C thread, one epoll.
 *
 * add(client_fd, server_fd, to_server, to_client, watched) hands a session's two sockets
 * (the relay owns and closes them) to a thread that moves bytes both ways for every
 * session of the process: edge-triggered epoll, nonblocking recv/send on one buffer per
 * direction, never any Python, many ready sockets served per epoll_wait (why this and
 * not a thread per direction: docs/rfcs/0009-proxy-relay.md). The client's EOF is passed
 * on as a half-close once its bytes are out; the server's EOF, once its bytes are out, or
 * an error on either socket, ends the session (both sockets closed). Backpressure is the
 * kernel's: a direction whose buffer holds unsent bytes reads nothing more.
 *
 * A watched session (undo) follows the frontend messages' framing client to server and
 * holds back each Query or Parse the pre-filter of _suspect.c flags, and each Bind of a
 * prepared statement named by the last release(): that direction stops until Python has
 * looked (events() gives it the message) and called release(id, names).
 *
 * events() blocks until something happened and returns [(id, held, whole)]: held None
 * when the session ended, else a held message (whole False: over 16 MiB, its start).
 * abort(id) ends a session now. Everything Python asks goes through a queue the loop
 * thread reads, so only that thread touches a session.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "_suspect.h"

#define BUFFER_BYTES (256 * 1024) /* a read takes all the kernel holds, up to this */
#define HELD_MAX (16 * 1024 * 1024) /* a longer Query/Parse is held only in part */
#define READY_MAX 128 /* sockets served per epoll_wait, at most */

enum { UP, DOWN };       /* flows: client to server, server to client */
enum { CLIENT, SERVER }; /* a session's sockets */

struct flow {
    char *data;
    size_t capacity;
    size_t sent;    /* [0, sent) went to the sink */
    size_t cleared; /* [sent, cleared) may go; [cleared, length) waits for a look */
    size_t length;
    int eof;        /* the source's EOF was read */
    int done;       /* everything went and the EOF was passed on */
    /* a watched flow only */
    int watched;
    int held;                /* [cleared, cleared + held_length) is with Python */
    size_t held_length;
    unsigned long long skip; /* bytes of the current message still to pass unlooked at */
    char *names;             /* prepared statements whose Bind is held: "\0a\0b\0" */
    size_t names_length;
};

struct session;
struct end {
    struct session *session;
    int side;
    int readable; /* epoll reported bytes (or an EOF) not read yet */
    int hup;      /* epoll reported the peer's FIN or an error: read until 0 or EAGAIN */
    int writing;  /* EPOLLOUT is asked for: a send would have blocked */
};

struct session {
    unsigned long long id;
    int fd[2];
    struct end ends[2];
    struct flow flow[2];
    int closed;
    struct session *next; /* among the live sessions, or the dead of one batch */
};

enum command_kind { ADD, RELEASE, ABORT };
struct command {
    enum command_kind kind;
    unsigned long long id;
    struct session *session; /* ADD */
    char *names;             /* RELEASE */
    size_t names_length;
    struct command *next;
};

struct event {
    unsigned long long id;
    char *held; /* NULL: the session ended */
    size_t held_length;
    int whole;
    struct event *next;
};

static struct {
    pthread_mutex_t lock; /* commands, events, next_id, live */
    int epoll, wake, notify;
    int started;
    struct command *commands, **commands_tail;
    struct event *events, **events_tail;
    unsigned long long next_id;
    long live;
    struct session *sessions; /* the loop thread's own */
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void post(struct event *event) {
    pthread_mutex_lock(&L.lock);
    *L.events_tail = event;
    L.events_tail = &event->next;
    pthread_mutex_unlock(&L.lock);
    uint64_t one = 1;
    while (write(L.notify, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void end_session(struct session *s, struct session **dead) {
    if (s->closed)
        return;
    s->closed = 1;
    for (int side = CLIENT; side <= SERVER; side++) {
        epoll_ctl(L.epoll, EPOLL_CTL_DEL, s->fd[side], NULL);
        close(s->fd[side]);
    }
    for (struct session **p = &L.sessions; *p != NULL; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    s->next = *dead; /* freed after the batch: its other socket may be in it */
    *dead = s;
    struct event *event = calloc(1, sizeof *event);
    if (event != NULL) { /* without memory the owner is not told; nothing else to do */
        event->id = s->id;
        post(event);
    }
    pthread_mutex_lock(&L.lock);
    L.live--;
    pthread_mutex_unlock(&L.lock);
}

static void free_session(struct session *s) {
    for (int d = UP; d <= DOWN; d++) {
        free(s->flow[d].data);
        free(s->flow[d].names);
    }
    free(s);
}

static uint32_t be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

/* Whether a message of this kind is read whole for a look. */
static int looked_at(const struct flow *f, char kind) {
    return kind == 'Q' || kind == 'P' || (kind == 'B' && f->names_length > 0);
}

/* Grow the buffer to hold ``needed`` bytes: 0, or -1 without memory. */
static int reserve(struct flow *f, size_t needed) {
    if (needed <= f->capacity)
        return 0;
    char *grown = realloc(f->data, needed);
    if (grown == NULL)
        return -1;
    f->data = grown;
    f->capacity = needed;
    return 0;
}

/* Move the cleared mark over every message that needs no look, up to the first one the
 * pre-filter flags (then held) or one not whole yet. */
static void scan(struct flow *f) {
    size_t at = f->cleared;
    while (at < f->length) {
        if (f->skip > 0) {
            size_t passed = f->length - at;
            if (f->skip < passed)
                passed = (size_t)f->skip;
            at += passed;
            f->skip -= passed;
            continue;
        }
        if (f->length - at < 5)
            break;
        char kind = f->data[at];
        uint32_t declared = be32(f->data + at + 1);
        if (declared < 4) { /* not a message: relay the rest as it is; PostgreSQL ends it */
            f->skip = ~0ULL;
            continue;
        }
        size_t total = 1 + (size_t)declared;
        if (!looked_at(f, kind)) {
            f->skip = total;
            continue;
        }
        if (f->length - at >= total) {
            if (strata_message_suspect((const unsigned char *)f->data + at, total,
                                       (const unsigned char *)f->names, f->names_length)) {
                f->held = 1;
                f->held_length = total;
                break;
            }
            at += total;
            continue;
        }
        if (total > HELD_MAX) { /* held in part: the rest follows unlooked at */
            f->held = 1;
            f->held_length = f->length - at;
            f->skip = total - f->held_length;
            break;
        }
        break; /* the rest of this message is still to come */
    }
    f->cleared = at;
}

/* Tell Python about the message just held. 0, or -1 without memory. */
static int show_held(struct session *s, struct flow *f) {
    struct event *event = calloc(1, sizeof *event);
    char *copy = malloc(f->held_length);
    if (event == NULL || copy == NULL) {
        free(event);
        free(copy);
        return -1;
    }
    memcpy(copy, f->data + f->cleared, f->held_length);
    event->id = s->id;
    event->held = copy;
    event->held_length = f->held_length;
    event->whole = f->skip == 0;
    post(event);
    return 0;
}

/* Room to read into: the unsent bytes moved to the front, and for a watched flow whose
 * next message is looked at, room for all of it. 0, or -1 without memory. */
static int make_room(struct flow *f) {
    if (f->sent > 0) {
        memmove(f->data, f->data + f->sent, f->length - f->sent);
        f->length -= f->sent;
        f->cleared -= f->sent;
        f->sent = 0;
    }
    if (f->length == 0 && f->capacity > BUFFER_BYTES) { /* after a long message */
        free(f->data);
        f->data = NULL;
        f->capacity = 0;
    }
    if (reserve(f, BUFFER_BYTES))
        return -1;
    if (f->watched && f->skip == 0 && f->length - f->cleared >= 5 &&
        looked_at(f, f->data[f->cleared]))
        return reserve(f, f->cleared + 1 + (size_t)be32(f->data + f->cleared + 1));
    return 0; /* (a looked-at message over HELD_MAX was held in part before this) */
}

/* Ask epoll for the socket's EPOLLOUT only while a send waits for room: otherwise every
 * ACK (TCP) or read by the peer (unix) would wake the loop for nothing. */
static void want_room(struct session *s, int side, int wanted) {
    struct end *end = &s->ends[side];
    if (end->writing == wanted)
        return;
    end->writing = wanted;
    struct epoll_event interest = {
        .events = EPOLLIN | EPOLLRDHUP | EPOLLET | (wanted ? EPOLLOUT : 0),
        .data.ptr = end,
    };
    epoll_ctl(L.epoll, EPOLL_CTL_MOD, s->fd[side], &interest);
}

/* Everything flow ``d`` can do now without blocking: send what is cleared, read more,
 * look, pass the EOF on. Ends the session on an error. */
static void progress(struct session *s, int d, struct session **dead) {
    struct flow *f = &s->flow[d];
    int from = d == UP ? CLIENT : SERVER, to = d == UP ? SERVER : CLIENT;
    int source = s->fd[from], sink = s->fd[to];
    struct end *source_end = &s->ends[from];
    while (!s->closed && !f->done) {
        while (f->sent < f->cleared) {
            ssize_t sent = send(sink, f->data + f->sent, f->cleared - f->sent,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
            if (sent < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN)
                    end_session(s, dead);
                else
                    want_room(s, to, 1);
                return; /* the sink's EPOLLOUT comes back here */
            }
            f->sent += (size_t)sent;
        }
        want_room(s, to, 0);
        if (f->eof) {
            if (f->held || f->sent < f->length)
                return;
            f->done = 1;
            if (d == UP)
                shutdown(sink, SHUT_WR); /* the server still answers what it got */
            else
                end_session(s, dead);
            return;
        }
        if (f->held || !source_end->readable)
            return; /* the source's next edge comes back here */
        if (make_room(f)) {
            end_session(s, dead);
            return;
        }
        size_t room = f->capacity - f->length;
        if (room == 0)
            return; /* (cannot last: a looked-at message gets room for all of it) */
        ssize_t received = recv(source, f->data + f->length, room, MSG_DONTWAIT);
        if (received < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                end_session(s, dead);
            source_end->readable = 0;
            return; /* the source's EPOLLIN comes back here */
        }
        if (received == 0) {
            f->eof = 1;
        } else {
            f->length += (size_t)received;
            /* A short read emptied the source: new bytes come with a new edge. Not so
             * for an EOF already reported, whose edge is gone: read on until the 0. */
            if ((size_t)received < room && !source_end->hup)
                source_end->readable = 0;
        }
        if (!f->watched || f->eof) { /* at the EOF a torn last message goes as it is */
            if (!f->held)
                f->cleared = f->length;
        } else {
            scan(f);
            if (f->held && show_held(s, f)) {
                end_session(s, dead);
                return;
            }
        }
    }
}

static struct session *find(unsigned long long id) {
    for (struct session *s = L.sessions; s != NULL; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void start_session(struct session *s, struct session **dead) {
    s->next = L.sessions;
    L.sessions = s;
    struct flow *up = &s->flow[UP];
    if (up->watched) { /* the bytes that came first are looked at like the rest */
        scan(up);
        if (up->held && show_held(s, up)) {
            end_session(s, dead);
            return;
        }
    }
    for (int side = CLIENT; side <= SERVER; side++) {
        struct epoll_event interest = {
            .events = EPOLLIN | EPOLLRDHUP | EPOLLET,
            .data.ptr = &s->ends[side],
        };
        s->ends[side].readable = 1; /* bytes may be there already */
        if (epoll_ctl(L.epoll, EPOLL_CTL_ADD, s->fd[side], &interest) < 0) {
            end_session(s, dead);
            return;
        }
    }
    progress(s, UP, dead); /* the bytes that came first go now */
    progress(s, DOWN, dead);
}

static void release(struct session *s, char *names, size_t names_length,
                    struct session **dead) {
    struct flow *f = &s->flow[UP];
    if (!f->held) {
        free(names);
        return;
    }
    free(f->names);
    f->names = names;
    f->names_length = names_length;
    f->held = 0;
    f->cleared += f->held_length;
    if (f->eof) {
        f->cleared = f->length;
    } else {
        scan(f);
        if (f->held && show_held(s, f)) {
            end_session(s, dead);
            return;
        }
    }
    progress(s, UP, dead);
}

static void run_commands(struct session **dead) {
    uint64_t count;
    while (read(L.wake, &count, sizeof count) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&L.lock);
    struct command *command = L.commands;
    L.commands = NULL;
    L.commands_tail = &L.commands;
    pthread_mutex_unlock(&L.lock);
    while (command != NULL) {
        struct command *next = command->next;
        struct session *s = command->kind == ADD ? command->session : find(command->id);
        if (command->kind == ADD)
            start_session(s, dead);
        else if (s == NULL)
            free(command->names); /* the session ended meanwhile */
        else if (command->kind == RELEASE)
            release(s, command->names, command->names_length, dead);
        else
            end_session(s, dead);
        free(command);
        command = next;
    }
}

static void *loop(void *unused) {
    (void)unused;
    struct epoll_event ready[READY_MAX];
    for (;;) {
        int count = epoll_wait(L.epoll, ready, READY_MAX, -1);
        struct session *dead = NULL;
        for (int i = 0; i < count; i++) {
            struct end *end = ready[i].data.ptr;
            if (end == NULL) {
                run_commands(&dead);
                continue;
            }
            struct session *s = end->session;
            uint32_t events = ready[i].events;
            if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                end->readable = 1;
            if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                end->hup = 1;
            int from = end->side == CLIENT ? UP : DOWN, to = end->side == CLIENT ? DOWN : UP;
            if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                progress(s, to, &dead);
            if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                progress(s, from, &dead);
        }
        while (dead != NULL) {
            struct session *next = dead->next;
            free_session(dead);
            dead = next;
        }
    }
    return NULL;
}

/* The loop's descriptors and thread, once per process. 0, or -1 with a Python error. */
static int ensure_started(void) {
    if (L.started)
        return 0;
    L.commands_tail = &L.commands;
    L.events_tail = &L.events;
    L.epoll = epoll_create1(EPOLL_CLOEXEC);
    L.wake = eventfd(0, EFD_CLOEXEC);
    L.notify = eventfd(0, EFD_CLOEXEC);
    if (L.epoll < 0 || L.wake < 0 || L.notify < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event interest = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(L.epoll, EPOLL_CTL_ADD, L.wake, &interest) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int error = pthread_create(&thread, &attributes, loop, NULL);
    pthread_attr_destroy(&attributes);
    if (error) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    L.started = 1;
    return 0;
}

static void submit(struct command *command) {
    pthread_mutex_lock(&L.lock);
    *L.commands_tail = command;
    L.commands_tail = &command->next;
    pthread_mutex_unlock(&L.lock);
    uint64_t one = 1;
    while (write(L.wake, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static int fill(struct flow *f, const Py_buffer *first) {
    size_t capacity = (size_t)first->len > BUFFER_BYTES ? (size_t)first->len : BUFFER_BYTES;
    if (reserve(f, capacity))
        return -1;
    memcpy(f->data, first->buf, (size_t)first->len);
    f->length = (size_t)first->len;
    if (!f->watched)
        f->cleared = f->length;
    return 0;
}

static PyObject *add(PyObject *Py_UNUSED(module), PyObject *args) {
    int client, server, watched;
    Py_buffer to_server, to_client;
    if (!PyArg_ParseTuple(args, "iiy*y*p:add", &client, &server, &to_server, &to_client,
                          &watched))
        return NULL;
    struct session *s = calloc(1, sizeof *s);
    struct command *command = calloc(1, sizeof *command);
    int failed = s == NULL || command == NULL;
    if (!failed) {
        s->flow[UP].watched = watched;
        failed = fill(&s->flow[UP], &to_server) || fill(&s->flow[DOWN], &to_client);
    }
    PyBuffer_Release(&to_server);
    PyBuffer_Release(&to_client);
    if (failed) { /* the sockets are the relay's: closed, as a session's end would */
        if (s != NULL)
            free_session(s);
        free(command);
        close(client);
        close(server);
        return PyErr_NoMemory();
    }
    pthread_mutex_lock(&L.lock);
    int started = ensure_started();
    unsigned long long id = ++L.next_id;
    if (started == 0)
        L.live++;
    pthread_mutex_unlock(&L.lock);
    if (started < 0) {
        free_session(s);
        free(command);
        close(client);
        close(server);
        return NULL;
    }
    s->id = id;
    s->fd[CLIENT] = client;
    s->fd[SERVER] = server;
    for (int side = CLIENT; side <= SERVER; side++) {
        s->ends[side] = (struct end){.session = s, .side = side};
        fcntl(s->fd[side], F_SETFL, fcntl(s->fd[side], F_GETFL) | O_NONBLOCK);
    }
    command->kind = ADD;
    command->session = s;
    submit(command);
    return PyLong_FromUnsignedLongLong(id);
}

static PyObject *release_held(PyObject *Py_UNUSED(module), PyObject *args) {
    unsigned long long id;
    Py_buffer names;
    if (!PyArg_ParseTuple(args, "Ky*:release", &id, &names))
        return NULL;
    struct command *command = calloc(1, sizeof *command);
    char *copy = names.len > 0 ? malloc((size_t)names.len) : NULL;
    if (command == NULL || (names.len > 0 && copy == NULL)) {
        free(command);
        free(copy);
        PyBuffer_Release(&names);
        return PyErr_NoMemory();
    }
    if (copy != NULL)
        memcpy(copy, names.buf, (size_t)names.len);
    command->kind = RELEASE;
    command->id = id;
    command->names = copy;
    command->names_length = (size_t)names.len;
    PyBuffer_Release(&names);
    submit(command);
    Py_RETURN_NONE;
}

static PyObject *abort_session(PyObject *Py_UNUSED(module), PyObject *args) {
    unsigned long long id;
    if (!PyArg_ParseTuple(args, "K:abort", &id))
        return NULL;
    struct command *command = calloc(1, sizeof *command);
    if (command == NULL)
        return PyErr_NoMemory();
    command->kind = ABORT;
    command->id = id;
    submit(command);
    Py_RETURN_NONE;
}

static PyObject *events(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args)) {
    pthread_mutex_lock(&L.lock);
    int started = ensure_started();
    pthread_mutex_unlock(&L.lock);
    if (started < 0)
        return NULL;
    uint64_t count;
    ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    do
        got = read(L.notify, &count, sizeof count);
    while (got < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    if (got < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    pthread_mutex_lock(&L.lock);
    struct event *event = L.events;
    L.events = NULL;
    L.events_tail = &L.events;
    pthread_mutex_unlock(&L.lock);
    PyObject *list = PyList_New(0);
    while (event != NULL) {
        struct event *next = event->next;
        PyObject *item = list == NULL ? NULL
                       : event->held == NULL
                           ? Py_BuildValue("(KOO)", event->id, Py_None, Py_False)
                           : Py_BuildValue("(Ky#O)", event->id, event->held,
                                           (Py_ssize_t)event->held_length,
                                           event->whole ? Py_True : Py_False);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
        free(event->held);
        free(event);
        event = next;
    }
    return list;
}

static PyObject *sessions(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args)) {
    pthread_mutex_lock(&L.lock);
    long live = L.live;
    pthread_mutex_unlock(&L.lock);
    return PyLong_FromLong(live);
}

static PyObject *suspect(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer query;
    if (!PyArg_ParseTuple(args, "y*:suspect", &query))
        return NULL;
    int flagged = strata_query_suspect(query.buf, (size_t)query.len);
    PyBuffer_Release(&query);
    return PyBool_FromLong(flagged);
}

static PyMethodDef methods[] = {
    {"add", add, METH_VARARGS,
     "add(client_fd, server_fd, to_server, to_client, watched) -> id: relay a session "
     "(the relay owns both sockets from now on; the bytes given go first)."},
    {"release", release_held, METH_VARARGS,
     "release(id, names): send the held message on; hold Binds of the prepared statements "
     "in names (b'\\0a\\0b\\0', or b'') from now on."},
    {"abort", abort_session, METH_VARARGS, "abort(id): end the session now."},
    {"events", events, METH_NOARGS,
     "events() -> [(id, held, whole)]: wait for sessions that ended (held None) or hold a "
     "message for a look (whole False: only its start, over 16 MiB)."},
    {"sessions", sessions, METH_NOARGS, "sessions() -> sessions relayed now."},
    {"suspect", suspect, METH_VARARGS,
     "suspect(query) -> whether the SQL text may hold a statement that destroys data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "strata.proxy._pump",
    .m_doc = "The relay of every plain-text session: one C thread, one epoll, no Python.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pump(void) { return PyModule_Create(&module); }
