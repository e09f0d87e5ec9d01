/*
 * mqttgen: a second MQTT load generator, written apart from roost-bench
 * (no code shared with it or with roost: plain C, blocking and epoll
 * sockets, packets built and parsed byte by byte here), to check that
 * roost-bench's figures are not an artefact of its own design.
 *
 *   mqttgen latency HOST PORT RATE SECONDS ACKS
 *       One QoS 1 publisher at RATE msg/s into one subscriber; prints the
 *       p50 and p99 send-to-receive latency in microseconds. ACKS says who
 *       reads the publisher's PUBACKs: "thread" (a thread of their own, as
 *       most client libraries do), "inline" (the publisher, between
 *       sends, as roost-bench does) or "unread".
 *   mqttgen fanout HOST PORT SUBSCRIBERS MESSAGES WINDOW [BURST]
 *       One QoS 0 publisher on one topic into SUBSCRIBERS subscribers, at
 *       most WINDOW messages ahead of the slowest one, writing BURST
 *       messages (1 to 64, default 64) per system call; one thread, epoll,
 *       64 KiB reads; prints deliveries per second.
 *
 * Build: cc -O2 -pthread -o mqttgen tests/independent/mqttgen.c
 * The README's "Benchmark" section says what it showed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host;
static int port;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("write");
        }
        p += w;
        n -= (size_t)w;
    }
}

static void read_exact(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            fprintf(stderr, "connection closed\n");
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

/* Remaining length, MQTT's variable byte integer; returns bytes written. */
static size_t put_len(uint8_t *p, size_t len)
{
    size_t i = 0;
    do {
        uint8_t b = len % 128;
        len /= 128;
        p[i++] = b | (len ? 0x80 : 0);
    } while (len);
    return i;
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

/* Sends one packet: its first byte, the remaining length, then `body`. */
static void send_packet(int fd, uint8_t first, const uint8_t *body, size_t len)
{
    uint8_t pkt[300];
    size_t n = 0;
    pkt[n++] = first;
    n += put_len(pkt + n, len);
    memcpy(pkt + n, body, len);
    write_all(fd, pkt, n + len);
}

/* Connects, sends CONNECT (3.1.1, clean session) and waits for CONNACK 0. */
static int mqtt_connect(const char *client_id)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t body[256];
    size_t b = put_str(body, "MQTT");
    body[b++] = 4;    /* protocol level 3.1.1 */
    body[b++] = 0x02; /* clean session */
    body[b++] = 0;
    body[b++] = 60; /* keep-alive */
    b += put_str(body + b, client_id);
    send_packet(fd, 0x10, body, b);
    uint8_t ack[4];
    read_exact(fd, ack, 4);
    if (ack[0] != 0x20 || ack[3] != 0) {
        fprintf(stderr, "CONNACK refused: %02x %02x\n", ack[0], ack[3]);
        exit(1);
    }
    return fd;
}

static void mqtt_subscribe(int fd, const char *filter, uint8_t qos)
{
    uint8_t body[256];
    size_t b = 0;
    body[b++] = 0;
    body[b++] = 1; /* packet id */
    b += put_str(body + b, filter);
    body[b++] = qos;
    send_packet(fd, 0x82, body, b);
    uint8_t ack[5];
    read_exact(fd, ack, 5);
    if (ack[0] != 0x90 || ack[4] > 2) {
        fprintf(stderr, "SUBACK refused\n");
        exit(1);
    }
}

/* A PUBLISH of `topic` carrying `payload_len` bytes starting with `stamp`. */
static size_t build_publish(uint8_t *pkt, const char *topic, uint8_t qos, uint16_t id,
                            uint64_t stamp, size_t payload_len)
{
    size_t t = strlen(topic);
    size_t rest = 2 + t + (qos ? 2 : 0) + payload_len;
    size_t n = 0;
    pkt[n++] = 0x30 | (uint8_t)(qos << 1);
    n += put_len(pkt + n, rest);
    n += put_str(pkt + n, topic);
    if (qos) {
        pkt[n++] = (uint8_t)(id >> 8);
        pkt[n++] = (uint8_t)id;
    }
    memset(pkt + n, 'x', payload_len);
    memcpy(pkt + n, &stamp, sizeof stamp);
    return n + payload_len;
}

/*
 * A parser of the packets a broker sends: calls `on_packet` with each
 * whole packet's first byte, body and body length.
 */
struct reader {
    uint8_t buf[1 << 16];
    size_t len;
};

typedef void (*on_packet_fn)(void *ctx, uint8_t first, const uint8_t *body, size_t len);

/* Returns 0 when the peer closed. */
static int read_packets(int fd, struct reader *r, on_packet_fn on_packet, void *ctx)
{
    ssize_t got = read(fd, r->buf + r->len, sizeof r->buf - r->len);
    if (got <= 0)
        return got < 0 && (errno == EAGAIN || errno == EINTR);
    r->len += (size_t)got;
    size_t at = 0;
    for (;;) {
        size_t i = at + 1, len = 0, mult = 1;
        int whole = 0;
        while (i < r->len && i < at + 5) {
            len += (r->buf[i] & 0x7f) * mult;
            mult *= 128;
            if (!(r->buf[i++] & 0x80)) {
                whole = 1;
                break;
            }
        }
        if (!whole || r->len - i < len)
            break;
        on_packet(ctx, r->buf[at], r->buf + i, len);
        at = i + len;
    }
    memmove(r->buf, r->buf + at, r->len - at);
    r->len -= at;
    return 1;
}

/* ---- latency ---- */

struct latency {
    uint64_t *samples;
    size_t count, max;
    uint64_t measure_from; /* send time from which samples count */
    uint8_t acks[4096];    /* the subscriber's PUBACKs of one read */
    size_t acks_len;
    volatile int done;
};

static void on_latency_packet(void *ctx, uint8_t first, const uint8_t *body, size_t len)
{
    struct latency *l = ctx;
    if ((first & 0xf0) != 0x30)
        return;
    uint64_t t = now_ns();
    size_t topic = ((size_t)body[0] << 8) | body[1];
    size_t at = 2 + topic + ((first & 0x06) ? 2 : 0);
    uint64_t stamp;
    if (len < at + sizeof stamp)
        return;
    memcpy(&stamp, body + at, sizeof stamp);
    if (stamp >= l->measure_from && l->count < l->max)
        l->samples[l->count++] = t - stamp;
    if ((first & 0x06) == 0x02 && l->acks_len + 4 <= sizeof l->acks) { /* QoS 1 */
        uint8_t *a = l->acks + l->acks_len;
        a[0] = 0x40;
        a[1] = 2;
        a[2] = body[2 + topic];
        a[3] = body[3 + topic];
        l->acks_len += 4;
    }
}

struct sub_thread {
    int fd;
    struct latency *l;
};

static void ignore_packet(void *ctx, uint8_t first, const uint8_t *body, size_t len)
{
    (void)ctx;
    (void)first;
    (void)body;
    (void)len;
}

static void *latency_subscriber(void *arg)
{
    struct sub_thread *s = arg;
    static struct reader r;
    while (!s->l->done) {
        if (!read_packets(s->fd, &r, on_latency_packet, s->l))
            break;
        /* At the end the socket is shut down under this thread: a failed
         * write of acknowledgements then ends it quietly. */
        size_t at = 0;
        while (at < s->l->acks_len) {
            ssize_t w = send(s->fd, s->l->acks + at, s->l->acks_len - at, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return NULL;
            at += (size_t)w;
        }
        s->l->acks_len = 0;
    }
    return NULL;
}

static void *ack_reader(void *arg)
{
    int fd = *(int *)arg;
    static struct reader r;
    while (read_packets(fd, &r, ignore_packet, NULL))
        ;
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int latency(int rate, int seconds, const char *acks)
{
    struct latency l = {0};
    l.max = (size_t)rate * (size_t)(seconds + 2);
    l.samples = calloc(l.max, sizeof *l.samples);
    int sub = mqtt_connect("mqttgen-sub");
    mqtt_subscribe(sub, "gen/latency", 1);
    int pub = mqtt_connect("mqttgen-pub");
    struct sub_thread st = {sub, &l};
    pthread_t sub_t, ack_t;
    pthread_create(&sub_t, NULL, latency_subscriber, &st);
    int thread_acks = strcmp(acks, "thread") == 0;
    int inline_acks = strcmp(acks, "inline") == 0;
    if (thread_acks)
        pthread_create(&ack_t, NULL, ack_reader, &pub);
    if (inline_acks)
        fcntl(pub, F_SETFL, fcntl(pub, F_GETFL) | O_NONBLOCK);
    static struct reader pub_r;
    uint64_t start = now_ns(), interval = 1000000000u / (uint64_t)rate;
    l.measure_from = start + 1000000000u; /* one second of warm-up */
    uint64_t end = l.measure_from + (uint64_t)seconds * 1000000000u;
    uint8_t pkt[128];
    uint16_t id = 0;
    for (uint64_t k = 0;; k++) {
        uint64_t due = start + k * interval;
        if (due >= end)
            break;
        while (now_ns() < due) {
            if (inline_acks)
                read_packets(pub, &pub_r, ignore_packet, NULL);
            sched_yield();
        }
        id = (uint16_t)(id % 65535 + 1);
        size_t n = build_publish(pkt, "gen/latency", 1, id, now_ns(), 64);
        write_all(pub, pkt, n);
    }
    /* Let the last messages arrive. */
    uint64_t wait_until = now_ns() + 200000000u;
    while (now_ns() < wait_until)
        usleep(1000);
    l.done = 1;
    shutdown(sub, SHUT_RDWR);
    shutdown(pub, SHUT_RDWR);
    pthread_join(sub_t, NULL);
    if (thread_acks)
        pthread_join(ack_t, NULL);
    if (l.count == 0) {
        fprintf(stderr, "no samples\n");
        return 1;
    }
    size_t expected = (size_t)rate * (size_t)seconds;
    if (l.count < expected) {
        fprintf(stderr, "%zu of the %zu measured QoS 1 messages arrived\n", l.count, expected);
        return 1;
    }
    qsort(l.samples, l.count, sizeof *l.samples, cmp_u64);
    printf("latency acks=%s samples=%zu p50_us=%.1f p99_us=%.1f\n", acks, l.count,
           l.samples[l.count / 2] / 1000.0, l.samples[l.count * 99 / 100] / 1000.0);
    return 0;
}

/* ---- fan-out ---- */

struct fan_sub {
    int fd;
    uint64_t received;
    struct reader r;
};

static void count_publish(void *ctx, uint8_t first, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    if ((first & 0xf0) == 0x30)
        ((struct fan_sub *)ctx)->received++;
}

static int fanout(int subscribers, uint64_t messages, uint64_t window, size_t burst)
{
    struct fan_sub *subs = calloc((size_t)subscribers, sizeof *subs);
    int ep = epoll_create1(0);
    for (int i = 0; i < subscribers; i++) {
        char id[32];
        snprintf(id, sizeof id, "mqttgen-sub-%d", i);
        subs[i].fd = mqtt_connect(id);
        mqtt_subscribe(subs[i].fd, "gen/fanout", 0);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
    }
    int pub = mqtt_connect("mqttgen-pub");
    uint8_t bursts[64 * 96];
    size_t one = build_publish(bursts, "gen/fanout", 0, 0, 0, 64);
    for (int i = 1; i < 64; i++)
        memcpy(bursts + i * one, bursts, one);
    uint64_t sent = 0, start = now_ns(), last_progress = start;
    struct epoll_event events[256];
    for (;;) {
        uint64_t slowest = UINT64_MAX;
        for (int i = 0; i < subscribers; i++)
            if (subs[i].received < slowest)
                slowest = subs[i].received;
        if (slowest >= messages)
            break;
        while (sent < messages && sent - slowest + burst <= window) {
            size_t k = messages - sent < burst ? (size_t)(messages - sent) : burst;
            write_all(pub, bursts, k * one);
            sent += k;
        }
        int n = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            struct fan_sub *s = events[i].data.ptr;
            uint64_t before = s->received;
            if (!read_packets(s->fd, &s->r, count_publish, s)) {
                fprintf(stderr, "subscriber closed\n");
                return 1;
            }
            if (s->received != before)
                last_progress = now_ns();
        }
        if (now_ns() - last_progress > 5000000000u) {
            fprintf(stderr, "no progress for 5 s (%llu of %llu at the slowest)\n",
                    (unsigned long long)slowest, (unsigned long long)messages);
            return 1;
        }
    }
    double secs = (now_ns() - start) / 1e9;
    printf("fanout subscribers=%d messages=%llu burst=%zu deliveries_per_s=%.0f\n", subscribers,
           (unsigned long long)messages, burst, (double)messages * subscribers / secs);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 7 && strcmp(argv[1], "latency") == 0) {
        host = argv[2];
        port = atoi(argv[3]);
        return latency(atoi(argv[4]), atoi(argv[5]), argv[6]);
    }
    if (argc >= 7 && strcmp(argv[1], "fanout") == 0) {
        host = argv[2];
        port = atoi(argv[3]);
        size_t burst = argc >= 8 ? strtoul(argv[7], NULL, 10) : 64;
        if (burst < 1 || burst > 64)
            burst = 64;
        return fanout(atoi(argv[4]), strtoull(argv[5], NULL, 10), strtoull(argv[6], NULL, 10), burst);
    }
    fprintf(stderr, "usage: mqttgen latency HOST PORT RATE SECONDS thread|inline|unread\n"
                    "       mqttgen fanout HOST PORT SUBSCRIBERS MESSAGES WINDOW [BURST]\n");
    return 2;
}
