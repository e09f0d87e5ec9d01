"""The client side of .ci/disk-full.sh, with paho-mqtt (an independent client).

  disk_full.py fill HOST PORT FILLER
      publishes numbered QoS 1 messages for the persistent session "full-sub"
      until the broker stops acknowledging (the disk is full), deletes
      FILLER to free space, waits for the acknowledgements that were held
      back, and prints the acknowledged numbers, one line, comma-separated.
  disk_full.py drain HOST PORT ACKED
      reconnects "full-sub" (clean session 0) and checks that the session is
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


def subscribe_once(host, port):
    """Makes the persistent session and its subscription, then leaves."""
    c = client("full-sub", False)
    connect(c, host, port)
    done = threading.Event()
    c.on_subscribe = lambda *_: done.set()
    c.subscribe(TOPIC, qos=1)
    if not done.wait(10):
        sys.exit("no SUBACK")
    c.disconnect()
    c.loop_stop()


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
        print(f"disk full after {len(acked)} acknowledged messages; freeing space",
              file=sys.stderr)
        os.remove(filler)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            sys.exit(f"message {n} not acknowledged {TIMEOUT}s after space was freed")
        acked.append(n)
        break
    if len(acked) < 2:
        sys.exit("the disk filled before anything was acknowledged: make the filler smaller")
    c.disconnect()
    c.loop_stop()
    print(",".join(map(str, acked)))


def drain(host, port, acked):
    want = set(int(x) for x in acked.split(","))
    got = set()
    all_in = threading.Event()

    def on_message(_c, _u, msg):
        got.add(int(msg.payload.split(b":", 1)[0]))
        if want <= got:
            all_in.set()

    c = client("full-sub", False)
    c.on_message = on_message
    present = connect(c, host, port)
    if not present:
        sys.exit("the persistent session was lost (CONNACK session present 0)")
    if not all_in.wait(TIMEOUT):
        missing = sorted(want - got)
        sys.exit(f"{len(missing)} acknowledged messages never delivered: {missing[:20]}")
    c.disconnect()
    c.loop_stop()
    print(f"all {len(want)} acknowledged messages delivered after the restart")


if __name__ == "__main__":
    mode, host, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    {"fill": fill, "drain": drain}[mode](host, port, arg)
