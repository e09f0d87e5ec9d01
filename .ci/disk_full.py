"""The client side of .ci/disk-full.sh, with paho-mqtt (an independent client).

  disk_full.py fill HOST PORT FILLER
      publishes numbered QoS 1 messages for the persistent session "full-sub"
      until the broker stops acknowledging (the disk is full). While the
      disk is full, a new persistent session "late-sub" connects: roost must
      refuse it (0x03) rather than accept a session it cannot store
      [MQTT-3.1.2-4]; an accepted one must be kept. Then deletes FILLER to
      free space, waits for the acknowledgements that were held back, makes
      "late-sub" subscribe once it is accepted, publishes a few more, and
      prints two lines of acknowledged numbers, comma-separated: those for
      "full-sub" (all) and those for "late-sub" (after it subscribed).
  disk_full.py drain HOST PORT CLIENT ACKED
      reconnects CLIENT (clean session 0) and checks that the session is
      present and that every number in ACKED arrives.
"""

import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

PAYLOAD_PAD = b"x" * 32 * 1024
TOPIC = "full/data"
STALL = 3.0  # seconds without an acknowledgement: the disk is full
TIMEOUT = 60.0


def client(client_id, clean):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    c.max_inflight_messages_set(1)
    return c


def connect(c, host, port):
    connected = threading.Event()
    flags = {}

    def on_connect(_c, _u, f, reason, _p):
        flags["present"] = f.session_present
        flags["reason"] = reason
        connected.set()

    c.on_connect = on_connect
    c.connect(host, port, keepalive=60)
    c.loop_start()
    if not connected.wait(10):
        sys.exit("no CONNACK")
    if flags["reason"].is_failure:
        sys.exit(f"CONNACK refused: {flags['reason']}")
    return flags["present"]


def try_connect(client_id, host, port):
    """One CONNECT with clean session 0: the client if accepted, else None."""
    c = client(client_id, False)
    connected = threading.Event()
    result = {}

    def on_connect(_c, _u, _f, reason, _p):
        result["reason"] = reason
        connected.set()

    c.on_connect = on_connect
    c.connect(host, port, keepalive=60)
    c.loop_start()
    if not connected.wait(10):
        sys.exit(f"{client_id}: no CONNACK")
    if result["reason"].is_failure:
        c.loop_stop()
        c.disconnect()
        print(f"{client_id}: CONNACK refused ({result['reason']})", file=sys.stderr)
        return None
    return c


def subscribe(c):
    done = threading.Event()
    c.on_subscribe = lambda *_: done.set()
    c.subscribe(TOPIC, qos=1)
    if not done.wait(10):
        sys.exit("no SUBACK")
    c.disconnect()
    c.loop_stop()


def subscribe_once(host, port):
    """Makes the persistent session and its subscription, then leaves."""
    c = client("full-sub", False)
    connect(c, host, port)
    subscribe(c)


def publish(c, n):
    info = c.publish(TOPIC, str(n).encode() + b":" + PAYLOAD_PAD, qos=1)
    info.wait_for_publish(TIMEOUT)
    if not info.is_published():
        sys.exit(f"message {n} not acknowledged with space free")


def fill_to_the_brim(path):
    """Writes PATH until the disk is full, if a file can still be made."""
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


def fill(host, port, filler):
    subscribe_once(host, port)
    c = client("full-pub", True)
    connect(c, host, port)
    acked = []
    n = 0
    while True:
        n += 1
        info = c.publish(TOPIC, str(n).encode() + b":" + PAYLOAD_PAD, qos=1)
        info.wait_for_publish(STALL)
        if info.is_published():
            acked.append(n)
            continue
        # Not acknowledged: the commit of this message failed (disk full)
        # and is being tried again. Free space; it must then be acknowledged.
        print(f"disk full after {len(acked)} acknowledged messages", file=sys.stderr)
        # Fill the last free bytes too, so that even a session's small row
        # cannot be written while "late-sub" connects.
        top_up = filler + ".top-up"
        fill_to_the_brim(top_up)
        late = try_connect("late-sub", host, port)
        print("freeing space", file=sys.stderr)
        if os.path.exists(top_up):
            os.remove(top_up)
        os.remove(filler)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            sys.exit(f"message {n} not acknowledged {TIMEOUT}s after space was freed")
        acked.append(n)
        break
    if len(acked) < 2:
        sys.exit("the disk filled before anything was acknowledged: make the filler smaller")
    deadline = time.monotonic() + TIMEOUT
    while late is None:
        if time.monotonic() > deadline:
            sys.exit("late-sub still refused with space free")
        time.sleep(0.2)
        late = try_connect("late-sub", host, port)
    subscribe(late)
    late_acked = []
    for _ in range(5):
        n += 1
        publish(c, n)
        acked.append(n)
        late_acked.append(n)
    c.disconnect()
    c.loop_stop()
    print(",".join(map(str, acked)))
    print(",".join(map(str, late_acked)))


def drain(host, port, client_id, acked):
    want = set(int(x) for x in acked.split(","))
    got = set()
    all_in = threading.Event()

    def on_message(_c, _u, msg):
        got.add(int(msg.payload.split(b":", 1)[0]))
        if want <= got:
            all_in.set()

    c = client(client_id, False)
    c.on_message = on_message
    present = connect(c, host, port)
    if not present:
        sys.exit(f"{client_id}: the persistent session was lost (CONNACK session present 0)")
    if not all_in.wait(TIMEOUT):
        missing = sorted(want - got)
        sys.exit(f"{client_id}: {len(missing)} acknowledged messages never delivered: {missing[:20]}")
    c.disconnect()
    c.loop_stop()
    print(f"{client_id}: all {len(want)} acknowledged messages delivered after the restart")


if __name__ == "__main__":
    mode, host, port, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    {"fill": fill, "drain": drain}[mode](host, port, *args)
