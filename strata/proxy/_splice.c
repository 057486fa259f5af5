/* strata.proxy._splice: the kernel relays a session's server-to-client bytes (BPF sockmap).
 *
 * load() creates three maps and an SK_SKB verdict program (docs/rfcs/0009-proxy-relay.md,
 * "Kernel splicing"): ``sources`` (a sockhash holding the proxy's end of each compute
 * connection, the program attached to it), ``sinks`` (a sockhash holding each client's TCP
 * socket) and ``counts`` (bytes redirected per session). All three are keyed by the
 * cookie of PostgreSQL's end of the unix connection: for a unix skb that is the cookie the
 * program sees (the sender's). For each skb arriving at a proxy socket in ``sources`` the
 * program looks up ``counts``; no entry: SK_PASS (the socket receives it as usual); an
 * entry: bpf_sk_redirect_hash onto the client socket's egress, and on success the skb's
 * length is added to the count. The bytes never wake the proxy.
 *
 * peer_cookie(fd) finds that key through sock_diag: the peer inode of our socket, then
 * that inode's cookie. join/leave/redirected manage and read a session's entries;
 * written(fd) is everything a TCP socket has taken to send so far (acked + queued), which
 * the proxy compares with its own writes plus the redirected count before it may close.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <linux/bpf.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_SESSIONS 65536

static int sources_fd = -1, sinks_fd = -1, counts_fd = -1, program_fd = -1;

static long bpf(int command, union bpf_attr *attr) {
    return syscall(__NR_bpf, command, attr, sizeof *attr);
}

static int map_create(uint32_t type, uint32_t value_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = type;
    attr.key_size = sizeof(uint64_t);
    attr.value_size = value_size;
    attr.max_entries = MAX_SESSIONS;
    return (int)bpf(BPF_MAP_CREATE, &attr);
}

#define INSN(CODE, DST, SRC, OFF, IMM)                                                      \
    ((struct bpf_insn){.code = (CODE), .dst_reg = (DST), .src_reg = (SRC), .off = (OFF),    \
                       .imm = (IMM)})
#define LD_MAP(DST, FD)                                                                     \
    INSN(BPF_LD | BPF_DW | BPF_IMM, DST, BPF_PSEUDO_MAP_FD, 0, FD), INSN(0, 0, 0, 0, 0)

static int program_load(char *log, size_t log_size) {
    struct bpf_insn program[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),             /* r6 = skb */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie),
        INSN(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0),            /* key = the sender's */
        LD_MAP(1, counts_fd),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -8),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        INSN(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 12, 0),              /* no session: pass */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 7, 0, 0, 0),             /* r7 = &count */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
        LD_MAP(2, sinks_fd),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -8),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash),
        INSN(BPF_JMP | BPF_JNE | BPF_K, 0, 0, 2, SK_PASS),          /* not redirected */
        INSN(BPF_LDX | BPF_MEM | BPF_W, 1, 6, offsetof(struct __sk_buff, len), 0),
        INSN(BPF_STX | BPF_ATOMIC | BPF_DW, 7, 1, 0, BPF_ADD),     /* count += len */
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, SK_PASS),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SK_SKB;
    attr.insns = (uint64_t)(uintptr_t)program;
    attr.insn_cnt = sizeof program / sizeof program[0];
    attr.license = (uint64_t)(uintptr_t) "GPL";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = (uint32_t)log_size;
    attr.log_level = 1;
    return (int)bpf(BPF_PROG_LOAD, &attr);
}

static void close_all(void) {
    int *fds[] = {&program_fd, &counts_fd, &sinks_fd, &sources_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

static PyObject *load(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args)) {
    if (program_fd >= 0)
        Py_RETURN_NONE;
    static char log[4096];
    log[0] = '\0';
    const char *step = "map";
    sources_fd = map_create(BPF_MAP_TYPE_SOCKHASH, sizeof(uint32_t));
    sinks_fd = sources_fd < 0 ? -1 : map_create(BPF_MAP_TYPE_SOCKHASH, sizeof(uint32_t));
    counts_fd = sinks_fd < 0 ? -1 : map_create(BPF_MAP_TYPE_HASH, sizeof(uint64_t));
    if (counts_fd >= 0) {
        step = "program";
        program_fd = program_load(log, sizeof log);
    }
    if (program_fd >= 0) {
        step = "attach";
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)sources_fd;
        attr.attach_bpf_fd = (uint32_t)program_fd;
        attr.attach_type = BPF_SK_SKB_VERDICT;
        if (bpf(BPF_PROG_ATTACH, &attr) == 0)
            Py_RETURN_NONE;
    }
    int error = errno;
    close_all();
    char *end = strchr(log, '\n');
    if (end != NULL)
        *end = '\0';
    return PyErr_Format(PyExc_OSError, "BPF %s: %s%s%s", step, strerror(error),
                        log[0] ? "; " : "", log);
}

/* One sock_diag request for the unix socket ``inode``: its cookie and its peer's inode. */
static int unix_diag(int netlink, uint32_t inode, uint64_t *cookie, uint32_t *peer) {
    struct {
        struct nlmsghdr header;
        struct unix_diag_req request;
    } query;
    memset(&query, 0, sizeof query);
    query.header.nlmsg_len = sizeof query;
    query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    query.header.nlmsg_flags = NLM_F_REQUEST;
    query.request.sdiag_family = AF_UNIX;
    query.request.udiag_states = ~0U;
    query.request.udiag_ino = inode;
    query.request.udiag_show = UDIAG_SHOW_PEER;
    query.request.udiag_cookie[0] = query.request.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (send(netlink, &query, sizeof query, 0) < 0)
        return errno;
    long answer[1024];
    ssize_t length = recv(netlink, answer, sizeof answer, 0);
    if (length < 0)
        return errno;
    struct nlmsghdr *header = (struct nlmsghdr *)answer;
    if (!NLMSG_OK(header, (size_t)length))
        return EPROTO;
    if (header->nlmsg_type == NLMSG_ERROR) {
        int error = -((struct nlmsgerr *)NLMSG_DATA(header))->error;
        return error ? error : EPROTO;
    }
    struct unix_diag_msg *message = NLMSG_DATA(header);
    *cookie = (uint64_t)message->udiag_cookie[0] | (uint64_t)message->udiag_cookie[1] << 32;
    *peer = 0;
    int rest = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof *message));
    for (struct rtattr *attribute = (struct rtattr *)(message + 1); RTA_OK(attribute, rest);
         attribute = RTA_NEXT(attribute, rest))
        if (attribute->rta_type == UNIX_DIAG_PEER)
            *peer = *(uint32_t *)RTA_DATA(attribute);
    return 0;
}

static PyObject *peer_cookie(PyObject *Py_UNUSED(module), PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:peer_cookie", &fd))
        return NULL;
    struct stat status;
    if (fstat(fd, &status) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int netlink = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (netlink < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    uint64_t cookie = 0;
    uint32_t peer = 0, unused;
    int error = unix_diag(netlink, (uint32_t)status.st_ino, &cookie, &peer);
    if (error == 0 && peer == 0)
        error = ENOTCONN;
    if (error == 0)
        error = unix_diag(netlink, peer, &cookie, &unused);
    close(netlink);
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromUnsignedLongLong(cookie);
}

static int map_update(int map, uint64_t key, const void *value) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)map;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)value;
    attr.flags = BPF_ANY;
    return bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0 ? errno : 0;
}

static int map_delete(int map, uint64_t key) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)map;
    attr.key = (uint64_t)(uintptr_t)&key;
    return bpf(BPF_MAP_DELETE_ELEM, &attr) < 0 && errno != ENOENT ? errno : 0;
}

static PyObject *not_loaded(void) {
    PyErr_SetString(PyExc_RuntimeError, "the splice program is not loaded");
    return NULL;
}

static PyObject *join(PyObject *Py_UNUSED(module), PyObject *args) {
    int server, client;
    unsigned long long cookie;
    if (!PyArg_ParseTuple(args, "iiK:join", &server, &client, &cookie))
        return NULL;
    if (program_fd < 0)
        return not_loaded();
    uint32_t client_fd = (uint32_t)client, server_fd = (uint32_t)server;
    uint64_t zero = 0;
    /* the sink and the count before the source: once the source is in, skbs redirect */
    int error = map_update(sinks_fd, cookie, &client_fd);
    if (!error)
        error = map_update(counts_fd, cookie, &zero);
    if (!error)
        error = map_update(sources_fd, cookie, &server_fd);
    if (error) {
        map_delete(sources_fd, cookie);
        map_delete(counts_fd, cookie);
        map_delete(sinks_fd, cookie);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *leave(PyObject *Py_UNUSED(module), PyObject *args) {
    unsigned long long cookie;
    if (!PyArg_ParseTuple(args, "K:leave", &cookie))
        return NULL;
    if (program_fd < 0)
        return not_loaded();
    /* the source first: no skb is looked at after it, so none passes unredirected */
    int error = map_delete(sources_fd, cookie);
    int counts_error = map_delete(counts_fd, cookie);
    int sinks_error = map_delete(sinks_fd, cookie);
    error = error ? error : counts_error ? counts_error : sinks_error;
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *redirected(PyObject *Py_UNUSED(module), PyObject *args) {
    unsigned long long cookie;
    if (!PyArg_ParseTuple(args, "K:redirected", &cookie))
        return NULL;
    if (program_fd < 0)
        return not_loaded();
    uint64_t key = cookie, count = 0;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)counts_fd;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&count;
    if (bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLongLong(count);
}

static PyObject *written(PyObject *Py_UNUSED(module), PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:written", &fd))
        return NULL;
    struct tcp_info info;
    socklen_t length = sizeof info;
    memset(&info, 0, sizeof info);
    /* acked first, then what is queued: an ACK in between can only make the sum smaller */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_BuildValue("(KB)", (unsigned long long)info.tcpi_bytes_acked + (unsigned)queued,
                         info.tcpi_state);
}

static PyMethodDef methods[] = {
    {"load", load, METH_NOARGS,
     "load(): create the maps and attach the verdict program once; OSError if the kernel "
     "refuses (no CAP_BPF, an old kernel)."},
    {"peer_cookie", peer_cookie, METH_VARARGS,
     "peer_cookie(unix_fd) -> the socket cookie of the other end of a unix connection."},
    {"join", join, METH_VARARGS,
     "join(server_fd, client_fd, cookie): from now on the kernel redirects what arrives at "
     "server_fd from the socket ``cookie`` to client_fd, counting it."},
    {"leave", leave, METH_VARARGS, "leave(cookie): forget the session's entries."},
    {"redirected", redirected, METH_VARARGS,
     "redirected(cookie) -> bytes the kernel redirected for the session so far."},
    {"written", written, METH_VARARGS,
     "written(tcp_fd) -> (bytes the socket acked or still queues, its TCP state)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "strata.proxy._splice",
    .m_doc = "The kernel relays a session's server-to-client bytes (BPF sockmap redirect).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__splice(void) { return PyModule_Create(&module); }
