/*
 * The lab's load generator in C: the same closed-loop workload as loadgen.py,
 * but cheap enough per request that the server, not the client, is measured.
 *
 *   loadgen load  HOST PORT CONNECTIONS SIZE SEED
 *       Opens CONNECTIONS connections, prints "ready CONNECT_ERRORS", reads
 *       "WINDOW_START WINDOW_END" (CLOCK_MONOTONIC seconds, the clock of
 *       Python's time.monotonic()) from stdin, then runs the closed loop: each
 *       connection sends SIZE bytes, reads them back, checks them and sends the
 *       next message. Requests completed inside the window are counted and
 *       their latencies go into the same log buckets as loadgen.Histogram.
 *       Prints "done REQUESTS BYTES ERRORS MISMATCHES CPU_SECONDS",
 *       "error TEXT", "hist INDEX:COUNT ..." and "fair UNSERVED LONGEST_WAIT
 *       FEWEST MOST": connections that completed no request in the window,
 *       the longest any request waited (seconds; one still unanswered at the
 *       end of the window counts the time it had waited by then), and the
 *       fewest and most requests one connection completed. Percentiles over
 *       completed requests cannot see a connection that never completes.
 *
 *   loadgen open  HOST PORT CONNECTIONS SIZE SEED RATE
 *       Open loop: as "load", but requests go out on a schedule, RATE per
 *       second over all connections (request k on connection k % CONNECTIONS
 *       at start + k / RATE), whether or not earlier replies are in; a
 *       connection still waiting for a reply queues its next requests. Latency
 *       runs from a request's scheduled time, not from when it could be sent,
 *       so a stalled server cannot hide the queue it causes (coordinated
 *       omission, corrected as wrk2 does). Requests scheduled inside the
 *       window count; one still unanswered at its end counts as completed at
 *       the end (a lower bound of its latency). Prints what "load" prints and
 *       "open SCHEDULED COMPLETED LATE".
 *
 *   loadgen ws    HOST PORT CONNECTIONS SIZE SEED
 *       As "load", over WebSocket: each connection first upgrades (GET /, as
 *       RFC 6455 says), then every message is one binary frame of SIZE bytes,
 *       masked as a client must, and the reply must be the same payload in
 *       one unmasked binary frame. Requests are messages; bytes are payload.
 *
 *   loadgen storm HOST PORT CONNECTIONS SIZE TIMEOUT
 *       Opens CONNECTIONS connections back to back, as fast as connect() goes;
 *       each sends one SIZE-byte message as soon as it is connected. Reports
 *       "storm OK FAILED CONNECT_SECONDS P50 P99 MAX" (seconds from a
 *       connection's connect() call to its first full echo), then "holding",
 *       keeps every connection open until a line arrives on stdin, and exits.
 *
 *   loadgen busy  HOST PORT CONNECTIONS SIZE SECONDS
 *       A storm of busy connections: opens CONNECTIONS back to back as
 *       "storm" does, but each runs the closed loop of "load" from the moment
 *       it is connected until SECONDS after the storm began, then all close.
 *       Counted per connection: reports "busy SERVED UNSERVED CONNECT_SECONDS
 *       P50 P99 MAX LATE REQUESTS MISMATCHES", where the percentiles are of each
 *       connection's wait from its connect() call to its first full echo (one
 *       never echoed counts the time it waited until the end), LATE counts the
 *       connections not echoed within the first second of the storm, and
 *       REQUESTS all echoes completed, and MISMATCHES wrong replies; then
 *       "error TEXT".
 *
 * Messages are windows into one random pool, shifted every request, so a
 * stale or misrouted reply is caught; replies are compared as they arrive.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS_PER_E 50
#define BUCKET_COUNT 922 /* int(log(1e8) * 50) + 1, as in loadgen.py */
#define EVENTS 1024

struct conn {
    int fd;
    size_t offset, sent, got;
    /* What the current message sends, and the reply it expects: windows into the pool
     * for the plain echo; a frame built per message over WebSocket. */
    unsigned char *out, *expect;
    size_t out_len, expect_len;
    unsigned char *frames; /* WebSocket only: room for both frames */
    double started;
    double opened, first_echo; /* the busy storm: connect() called, first echo complete */
    int done;
    long long served; /* requests completed inside the window */
};

static unsigned char *pool, *scratch;
static size_t size, scratch_size;
static long long histogram[BUCKET_COUNT];
static char first_error[160] = "-";
static long long errors, mismatches;
static int websocket; /* the "ws" mode */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

static void note_error(const char *what, int code) {
    if (strcmp(first_error, "-") == 0)
        snprintf(first_error, sizeof first_error, "%s: %s", what, code ? strerror(code) : "EOF");
}

static void record(double seconds) {
    double us = seconds * 1e6;
    int index = us > 1 ? (int)(log(us) * BUCKETS_PER_E) : 0;
    histogram[index < BUCKET_COUNT ? index : BUCKET_COUNT - 1]++;
}

static void fill_pool(unsigned long long seed) {
    pool = malloc(2 * size + 1);
    uint64_t x = seed * 2654435761ULL + 88172645463325252ULL;
    for (size_t i = 0; i < 2 * size + 1; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pool[i] = (unsigned char)(x >> 24);
    }
    scratch_size = size < 65536 ? 65536 : size;
    scratch = malloc(scratch_size);
}

static struct sockaddr_storage address;
static socklen_t address_len;

static int resolve(const char *host, const char *port) {
    struct addrinfo hints = {0}, *found;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &found) != 0) return -1;
    memcpy(&address, found->ai_addr, found->ai_addrlen);
    address_len = found->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

/* A non-blocking, TCP_NODELAY socket with connect() started; -1 on failure. */
static int open_connection(int blocking_connect) {
    int fd = socket(address.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!blocking_connect) fcntl(fd, F_SETFL, O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&address, address_len) < 0 && errno != EINPROGRESS) {
        int code = errno;
        close(fd);
        errno = code;
        return -1;
    }
    if (blocking_connect) fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Sends what is left of the current message; returns 0, or -1 after dropping the connection. */
static int pump_send(int epoll, struct conn *c) {
    while (c->sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &ev);
                return 0;
            }
            note_error("send", errno);
            return -1;
        }
        c->sent += n;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* Reads what has arrived; returns 1 when the message is complete, 0 if not yet, -1 on failure. */
static int pump_recv(struct conn *c) {
    while (c->got < c->expect_len) {
        size_t want = c->expect_len - c->got;
        ssize_t n = recv(c->fd, scratch, want < scratch_size ? want : scratch_size, 0);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            note_error("recv", errno);
            errors++;
            return -1;
        }
        if (n == 0) {
            note_error("server closed the connection", 0);
            errors++;
            return -1;
        }
        if (memcmp(scratch, c->expect + c->got, n) != 0) {
            snprintf(first_error, sizeof first_error, "reply differs from request within bytes %zu..",
                     c->got);
            mismatches++;
            return -1;
        }
        c->got += n;
    }
    return 1;
}

/* A WebSocket frame header for SIZE bytes (0x82: a final binary frame); its length. */
static size_t frame_header(unsigned char *at, int masked) {
    size_t n = 0;
    at[n++] = 0x82;
    unsigned char bit = masked ? 0x80 : 0;
    if (size < 126) {
        at[n++] = bit | (unsigned char)size;
    } else if (size < 65536) {
        at[n++] = bit | 126, at[n++] = (unsigned char)(size >> 8), at[n++] = (unsigned char)size;
    } else {
        at[n++] = bit | 127;
        for (int shift = 56; shift >= 0; shift -= 8) at[n++] = (unsigned char)(size >> shift);
    }
    return n;
}

static void next_message(struct conn *c, double t) {
    c->offset = size > 1 ? (c->offset + 4099) % size : 0;
    c->sent = c->got = 0;
    c->started = t;
    const unsigned char *payload = pool + c->offset;
    if (!websocket) {
        c->out = c->expect = (unsigned char *)payload;
        c->out_len = c->expect_len = size;
        return;
    }
    if (!c->frames) c->frames = malloc(2 * (size + 14));
    unsigned char *out = c->frames, *reply = c->frames + size + 14;
    size_t n = frame_header(out, 1);
    unsigned char mask[4] = {(unsigned char)(c->offset * 7), (unsigned char)(c->offset >> 3), 0x5a,
                             (unsigned char)c->fd};
    memcpy(out + n, mask, 4);
    for (size_t i = 0; i < size; i++) out[n + 4 + i] = payload[i] ^ mask[i & 3];
    c->out = out, c->out_len = n + 4 + size;
    size_t m = frame_header(reply, 0);
    memcpy(reply + m, payload, size);
    c->expect = reply, c->expect_len = m + size;
}

/* The opening handshake on a connected, blocking socket: 0 once the server said 101. */
static int upgrade(int fd) {
    static const char request[] =
        "GET / HTTP/1.1\r\nHost: loadgen\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (send(fd, request, sizeof request - 1, MSG_NOSIGNAL) < 0) return -1;
    char head[4096];
    size_t got = 0;
    while (got < sizeof head - 1) { /* the server sends nothing after its head until asked */
        ssize_t n = recv(fd, head + got, sizeof head - 1 - got, 0);
        if (n <= 0) return -1;
        got += n;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n")) return strncmp(head, "HTTP/1.1 101", 12) == 0 ? 0 : -2;
    }
    return -2;
}

static void drop(int epoll, struct conn *c) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

/* Moves a connection's current message along after an epoll event: 1 when its reply
 * is complete, 0 when not yet, -1 when it failed and was dropped. */
static int pump(int epoll, struct conn *c, uint32_t events) {
    if ((events & EPOLLOUT) && c->sent < c->out_len && pump_send(epoll, c) < 0) {
        errors++, drop(epoll, c);
        return -1;
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return 0;
    int state = pump_recv(c);
    if (state < 0) drop(epoll, c);
    return state;
}

/* Connects COUNT connections, says "ready", reads the window and prepares the pool.
 * Returns the connections (*open_count of them) or NULL if no window came. */
static struct conn *prepare(int count, unsigned long long seed, int *open_count,
                            double *window_start, double *window_end) {
    struct conn *conns = calloc(count, sizeof *conns);
    int connect_errors = 0;
    *open_count = 0;
    for (int i = 0; i < count; i++) {
        int fd = open_connection(1);
        if (fd < 0) {
            connect_errors++;
            note_error("connect", errno);
            continue;
        }
        if (websocket) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            int refused = upgrade(fd);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            if (refused) {
                connect_errors++;
                note_error(refused == -2 ? "upgrade refused" : "upgrade", refused == -2 ? 0 : errno);
                close(fd);
                continue;
            }
        }
        conns[(*open_count)++].fd = fd;
    }
    printf("ready %d\n", connect_errors);
    fflush(stdout);
    if (scanf("%lf %lf", window_start, window_end) != 2) return NULL;
    fill_pool(seed);
    for (int i = 0; i < *open_count; i++) conns[i].offset = (size_t)i * 977 % size;
    return conns;
}

/* The "done", "error", "hist" and "fair" lines every load mode ends with. */
static void report(struct conn *conns, int open_count, long long requests, long long bytes,
                   double cpu, double longest) {
    long long unserved = 0, fewest = -1, most = 0;
    for (int i = 0; i < open_count; i++) {
        struct conn *c = &conns[i];
        if (c->fd < 0) continue; /* dropped: counted as an error */
        if (!c->served) unserved++;
        if (fewest < 0 || c->served < fewest) fewest = c->served;
        if (c->served > most) most = c->served;
    }
    printf("done %lld %lld %lld %lld %.6f\nerror %s\nhist", requests, bytes, errors, mismatches,
           cpu, first_error);
    for (int i = 0; i < BUCKET_COUNT; i++)
        if (histogram[i]) printf(" %d:%lld", i, histogram[i]);
    printf("\nfair %lld %.6f %lld %lld\n", unserved, longest, fewest < 0 ? 0 : fewest, most);
}

static int run_load(int count, unsigned long long seed) {
    int open_count;
    double window_start, window_end;
    struct conn *conns = prepare(count, seed, &open_count, &window_start, &window_end);
    if (!conns) return 2;
    int epoll = epoll_create1(0);
    while (now() < window_start - 0.2) usleep(5000); /* everyone starts together */
    double t = now();
    for (int i = 0; i < open_count; i++) {
        struct conn *c = &conns[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &ev);
        next_message(c, t);
        if (pump_send(epoll, c) < 0) errors++, drop(epoll, c);
    }
    long long requests = 0, bytes = 0;
    double cpu_start = -1, longest = 0;
    struct epoll_event events[EVENTS];
    for (;;) {
        t = now();
        if (t >= window_end) break;
        if (cpu_start < 0 && t >= window_start) cpu_start = cpu_seconds();
        int ready = epoll_wait(epoll, events, EVENTS, 50);
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (pump(epoll, c, events[i].events) > 0) {
                double done = now();
                if (done >= window_start) {
                    requests++;
                    bytes += size;
                    c->served++;
                    record(done - c->started);
                    if (done - c->started > longest) longest = done - c->started;
                }
                next_message(c, done);
                if (pump_send(epoll, c) < 0) errors++, drop(epoll, c);
            }
        }
    }
    double cpu = cpu_start < 0 ? 0 : cpu_seconds() - cpu_start;
    for (int i = 0; i < open_count; i++) /* a reply still awaited has waited this long */
        if (conns[i].fd >= 0 && window_end - conns[i].started > longest)
            longest = window_end - conns[i].started;
    report(conns, open_count, requests, bytes, cpu, longest);
    return 0;
}

#define QUEUE 4096 /* scheduled requests one connection may have waiting */

struct queue {
    double at[QUEUE]; /* scheduled send times, oldest first */
    int head, count;
};

static int run_open(int count, unsigned long long seed, double rate) {
    int open_count;
    double window_start, window_end;
    struct conn *conns = prepare(count, seed, &open_count, &window_start, &window_end);
    if (!conns) return 2;
    struct queue *queues = calloc(count, sizeof *queues);
    int epoll = epoll_create1(0);
    for (int i = 0; i < open_count; i++) {
        struct conn *c = &conns[i];
        c->done = 1; /* idle: nothing outstanding */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &ev);
    }
    while (now() < window_start - 0.2) usleep(5000);
    double start = now(), cpu_start = -1, longest = 0;
    long long k = 0, scheduled = 0, completed = 0, late = 0, requests = 0, bytes = 0;
    struct epoll_event events[EVENTS];
    for (;;) {
        double t = now();
        if (t >= window_end) break;
        if (cpu_start < 0 && t >= window_start) cpu_start = cpu_seconds();
        /* Hand out every request whose time has come. */
        while (open_count && start + k / rate <= t) {
            double at = start + k / rate;
            struct conn *c = &conns[k % open_count];
            struct queue *q = &queues[k % open_count];
            k++;
            if (c->fd < 0) continue;
            if (at >= window_start) scheduled++;
            if (c->done) {
                c->done = 0;
                next_message(c, at);
                if (pump_send(epoll, c) < 0) errors++, drop(epoll, c);
            } else if (q->count < QUEUE) {
                q->at[(q->head + q->count++) % QUEUE] = at;
            } else {
                late++; /* the server is hopelessly behind: count it, do not queue it */
            }
        }
        double next = start + k / rate - now();
        int wait_ms = next > 0.001 ? (int)(next * 1000) : 0;
        int ready = epoll_wait(epoll, events, EVENTS, wait_ms > 50 ? 50 : wait_ms);
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd < 0 || c->done || pump(epoll, c, events[i].events) <= 0) continue;
            double done = now();
            if (c->started >= window_start) {
                requests++, completed++;
                bytes += size;
                c->served++;
                record(done - c->started);
                if (done - c->started > longest) longest = done - c->started;
            }
            struct queue *q = &queues[c - conns];
            if (q->count) {
                next_message(c, q->at[q->head]);
                q->head = (q->head + 1) % QUEUE, q->count--;
                if (pump_send(epoll, c) < 0) errors++, drop(epoll, c);
            } else {
                c->done = 1;
            }
        }
    }
    /* What was scheduled in the window and is still unanswered waited at least this long. */
    for (int i = 0; i < open_count; i++) {
        struct conn *c = &conns[i];
        struct queue *q = &queues[i];
        if (c->fd < 0) continue;
        if (!c->done && c->started >= window_start) {
            record(window_end - c->started), requests++;
            if (window_end - c->started > longest) longest = window_end - c->started;
        }
        for (int j = 0; j < q->count; j++) {
            double at = q->at[(q->head + j) % QUEUE];
            if (at >= window_start) {
                record(window_end - at), requests++;
                if (window_end - at > longest) longest = window_end - at;
            }
        }
    }
    double cpu = cpu_start < 0 ? 0 : cpu_seconds() - cpu_start;
    report(conns, open_count, requests, bytes, cpu, longest);
    printf("open %lld %lld %lld\n", scheduled, completed, late);
    return 0;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Connects storm connection I, its first message ready to go, and watches it; -1 on failure. */
static int storm_open(int epoll, struct conn *c, int i) {
    c->offset = (size_t)i * 977 % size;
    c->out = c->expect = pool + c->offset;
    c->out_len = c->expect_len = size;
    c->opened = c->started = now();
    c->fd = open_connection(0);
    if (c->fd < 0) {
        note_error("connect", errno);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void storm_event(int epoll, struct conn *c, uint32_t events, double *first_echo, int *ok,
                        int *failed) {
    if (c->fd < 0 || c->done) return;
    if (c->sent < c->out_len) {
        int code = 0;
        socklen_t len = sizeof code;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &code, &len);
        if (code) {
            note_error("connect", code);
            (*failed)++, drop(epoll, c);
            return;
        }
        if (pump_send(epoll, c) < 0) {
            (*failed)++, drop(epoll, c);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
    int state = pump_recv(c);
    if (state < 0) {
        (*failed)++, drop(epoll, c);
    } else if (state > 0) {
        first_echo[(*ok)++] = now() - c->started;
        c->done = 1;
        struct epoll_event ev = {.events = 0, .data.ptr = c};
        epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static int run_storm(int count, double timeout) {
    fill_pool(1);
    struct conn *conns = calloc(count, sizeof *conns);
    double *first_echo = calloc(count, sizeof *first_echo);
    int epoll = epoll_create1(0), ok = 0, failed = 0;
    struct epoll_event events[EVENTS];
    double begin = now();
    for (int i = 0; i < count; i++) {
        if (storm_open(epoll, &conns[i], i) < 0) {
            failed++;
            continue;
        }
        if (i % 64 == 63) { /* let early connections make progress while the storm goes on */
            int ready = epoll_wait(epoll, events, EVENTS, 0);
            for (int j = 0; j < ready; j++)
                storm_event(epoll, events[j].data.ptr, events[j].events, first_echo, &ok, &failed);
        }
    }
    double connected = now() - begin;
    while (ok + failed < count && now() - begin < timeout) {
        int ready = epoll_wait(epoll, events, EVENTS, 50);
        for (int j = 0; j < ready; j++)
            storm_event(epoll, events[j].data.ptr, events[j].events, first_echo, &ok, &failed);
    }
    qsort(first_echo, ok, sizeof *first_echo, compare_doubles);
    double p50 = ok ? first_echo[ok / 2] : -1, p99 = ok ? first_echo[(int)(ok * 0.99)] : -1;
    double worst = ok ? first_echo[ok - 1] : -1;
    printf("storm %d %d %.6f %.6f %.6f %.6f\nerror %s\nholding\n", ok, count - ok, connected, p50,
           p99, worst, first_error);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;
    return 0;
}

/* One busy-storm connection's event: its first echo is noted, and every echo starts the next. */
static void busy_event(int epoll, struct conn *c, uint32_t events, long long *requests) {
    if (c->fd < 0) return;
    if (!c->served && c->sent == 0) { /* connecting: connect() may have failed */
        int code = 0;
        socklen_t len = sizeof code;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &code, &len);
        if (code) {
            note_error("connect", code);
            errors++, drop(epoll, c);
            return;
        }
    }
    if (pump(epoll, c, events) <= 0) return;
    double t = now();
    if (!c->served) c->first_echo = t;
    c->served++, (*requests)++;
    next_message(c, t);
    if (pump_send(epoll, c) < 0) errors++, drop(epoll, c);
}

static int run_busy(int count, double seconds) {
    fill_pool(1);
    struct conn *conns = calloc(count, sizeof *conns);
    int epoll = epoll_create1(0);
    long long requests = 0;
    struct epoll_event events[EVENTS];
    double begin = now(), end = begin + seconds;
    for (int i = 0; i < count; i++) {
        if (storm_open(epoll, &conns[i], i) < 0) {
            errors++;
            continue;
        }
        if (i % 64 == 63) { /* connections already open keep their loops going meanwhile */
            int ready = epoll_wait(epoll, events, EVENTS, 0);
            for (int j = 0; j < ready; j++)
                busy_event(epoll, events[j].data.ptr, events[j].events, &requests);
        }
    }
    double connected = now() - begin;
    while (now() < end) {
        int wait_ms = (int)((end - now()) * 1000) + 1;
        int ready = epoll_wait(epoll, events, EVENTS, wait_ms < 50 ? wait_ms : 50);
        for (int j = 0; j < ready; j++)
            busy_event(epoll, events[j].data.ptr, events[j].events, &requests);
    }
    double *waits = calloc(count, sizeof *waits);
    int served = 0, unserved = 0, late = 0, measured = 0;
    for (int i = 0; i < count; i++) {
        struct conn *c = &conns[i];
        if (c->fd < 0 && !c->served) continue; /* never connected, or failed: an error */
        if (c->served) {
            served++;
            waits[measured++] = c->first_echo - c->opened;
            if (c->first_echo > begin + 1.0) late++;
        } else {
            unserved++, late++;
            waits[measured++] = end - c->opened;
        }
        if (c->fd >= 0) close(c->fd);
    }
    qsort(waits, measured, sizeof *waits, compare_doubles);
    double p50 = measured ? waits[measured / 2] : -1;
    double p99 = measured ? waits[(int)(measured * 0.99)] : -1;
    double worst = measured ? waits[measured - 1] : -1;
    printf("busy %d %d %.6f %.6f %.6f %.6f %d %lld %lld\nerror %s\n", served, unserved, connected,
           p50, p99, worst, late, requests, mismatches, first_error);
    return 0;
}

int main(int argc, char **argv) {
    int open_mode = argc == 8 && strcmp(argv[1], "open") == 0;
    if ((argc != 7 && !open_mode) || resolve(argv[2], argv[3]) < 0) {
        fprintf(stderr, "usage: loadgen load|ws HOST PORT CONNECTIONS SIZE SEED\n"
                        "       loadgen storm|busy HOST PORT CONNECTIONS SIZE TIMEOUT|SECONDS\n"
                        "       loadgen open HOST PORT CONNECTIONS SIZE SEED RATE\n");
        return 2;
    }
    int count = atoi(argv[4]);
    size = (size_t)atol(argv[5]);
    if (count < 1 || size < 1) {
        fprintf(stderr, "loadgen: CONNECTIONS and SIZE must be positive\n");
        return 2;
    }
    if (strcmp(argv[1], "load") == 0) return run_load(count, strtoull(argv[6], NULL, 10));
    if (strcmp(argv[1], "ws") == 0) {
        websocket = 1;
        return run_load(count, strtoull(argv[6], NULL, 10));
    }
    if (open_mode) return run_open(count, strtoull(argv[6], NULL, 10), atof(argv[7]));
    if (strcmp(argv[1], "storm") == 0) return run_storm(count, atof(argv[6]));
    if (strcmp(argv[1], "busy") == 0) return run_busy(count, atof(argv[6]));
    fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
    return 2;
}
