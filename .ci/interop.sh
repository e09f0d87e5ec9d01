#!/usr/bin/env bash
# Interoperability checks: the release `roost` binary against three
# independent MQTT client implementations -- mosquitto_pub/mosquitto_sub
# (libmosquitto), paho-mqtt (Python) and MQTT.js (Node) -- at QoS 0, 1 and 2,
# plus a retained round trip, MQTT.js over WebSocket and a page in headless
# Chromium, a password file, an ACL file, and TLS with client certificates
# (openssl), and the Debian package with its systemd unit (cargo deb,
# dpkg, systemd-analyze). Run after `cargo test`, as root on a fresh
# Debian machine: it installs its own clients. Prints PASS/FAIL per check and
# ends with "N passed, M failed"; exits non-zero if any check failed.
#
# Environment: ROOST_BIN (use this binary instead of building; otherwise
# it is built into $CARGO_TARGET_DIR or target/),
# ROOST_PORT (first port to try, default 18883).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
WORK="$(mktemp -d /tmp/roost-interop.XXXXXX)"
ROOST_PID=""
PASSED=0
FAILED=0

cleanup() {
    if [[ -n "$ROOST_PID" ]] && kill -0 "$ROOST_PID" 2>/dev/null; then
        kill -TERM "$ROOST_PID" 2>/dev/null || true
        wait "$ROOST_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "interop: $*"; }

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi

# ---------------------------------------------------------------- install
log "installing clients"
export DEBIAN_FRONTEND=noninteractive
# mosquitto brings mosquitto_passwd; its service is stopped right after.
apt_pkgs=(mosquitto-clients mosquitto openssl chromium)
command -v python3 >/dev/null || apt_pkgs+=(python3 python3-venv)
command -v node >/dev/null || apt_pkgs+=(nodejs)
command -v cc >/dev/null || apt_pkgs+=(gcc)
command -v npm >/dev/null || apt_pkgs+=(npm)
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
$SUDO systemctl stop mosquitto >/dev/null 2>&1 || $SUDO service mosquitto stop >/dev/null 2>&1 || true

# paho-mqtt in a private venv (Debian's system Python refuses global pip
# installs, PEP 668); python3-venv is only needed if ensurepip is missing.
if ! python3 -m venv "$WORK/venv" >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$WORK/venv"
fi
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --disable-pip-version-check 'paho-mqtt>=2,<3'

mkdir -p "$WORK/node"
npm install --prefix "$WORK/node" --no-audit --no-fund --silent mqtt >/dev/null

log "mosquitto_pub $(mosquitto_pub --help | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)," \
    "paho-mqtt $("$PY" -c 'import paho.mqtt; print(paho.mqtt.__version__)')," \
    "node $(node --version), mqtt.js $(node -e "console.log(require('$WORK/node/node_modules/mqtt/package.json').version)")"

# ---------------------------------------------------------------- broker
if [[ -n "${ROOST_BIN:-}" ]]; then
    ROOST="$ROOST_BIN"
elif command -v cargo >/dev/null; then
    log "building roost (release)"
    (cd "$REPO" && cargo build --release --bin roost --quiet)
    ROOST="${CARGO_TARGET_DIR:-$REPO/target}/release/roost"
else
    ROOST="${CARGO_TARGET_DIR:-$REPO/target}/release/roost"
fi
[[ -x "$ROOST" ]] || { echo "interop: no roost binary at $ROOST"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

PORT="${ROOST_PORT:-18883}"
while port_in_use "$PORT"; do PORT=$((PORT + 1)); done

# MQTT over WebSocket on a second port (path /mqtt).
WS_PORT=$((PORT + 10))
while port_in_use "$WS_PORT"; do WS_PORT=$((WS_PORT + 1)); done

ROOST__WEBSOCKET__LISTEN="$HOST:$WS_PORT" \
    "$ROOST" --listen "$HOST:$PORT" --db "$WORK/roost.db" >"$WORK/roost.log" 2>&1 &
ROOST_PID=$!
for _ in $(seq 100); do
    port_in_use "$PORT" && break
    kill -0 "$ROOST_PID" 2>/dev/null || { cat "$WORK/roost.log"; echo "interop: roost exited"; exit 1; }
    sleep 0.1
done
port_in_use "$PORT" || { cat "$WORK/roost.log"; echo "interop: roost does not accept on $PORT"; exit 1; }
log "roost (pid $ROOST_PID) listening on $HOST:$PORT"

# ---------------------------------------------------------------- checks
# check NAME FUNCTION ARGS...: runs the function, output captured, and
# prints PASS or FAIL (with the output) for it.
check() {
    local name="$1"; shift
    local out="$WORK/check.out"
    if "$@" >"$out" 2>&1; then
        PASSED=$((PASSED + 1))
        echo "PASS  $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL  $name"
        sed 's/^/      | /' "$out"
    fi
}

# Starts mosquitto_sub in the background (one message, 10 s timeout, debug
# on so that its SUBACK is visible; stdout line-buffered so that it is visible
# at once) and waits until it is subscribed. Sets SUB_PID and SUB_OUT.
# Messages are printed as MSG|topic|qos|retain|payload.
# A third argument, v5, subscribes with MQTT 5.0 and prints the message's
# properties too: MSG|topic|qos|content type|response topic|user
# properties|expiry interval|payload.
start_mosquitto_sub() {
    local filter="$1" qos="$2" version=() format='MSG|%t|%q|%r|%p'
    if [[ "${3:-}" == v5 ]]; then version=(-V mqttv5); format='MSG|%t|%q|%C|%R|%P|%E|%p'; fi
    SUB_OUT="$WORK/sub.$RANDOM.out"
    stdbuf -oL mosquitto_sub -d "${version[@]}" -h "$HOST" -p "$PORT" -i "interop-sub-$RANDOM" -t "$filter" -q "$qos" -C 1 -W 10 \
        -F "$format" >"$SUB_OUT" 2>&1 &
    SUB_PID=$!
    for _ in $(seq 100); do
        grep -q '^Subscribed' "$SUB_OUT" && return 0
        kill -0 "$SUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$SUB_PID" 2>/dev/null || true
    echo "mosquitto_sub did not get a SUBACK:"; cat "$SUB_OUT"
    return 1
}

# Waits for the background mosquitto_sub and compares its message line.
expect_mosquitto_message() {
    local expected="$1" status=0
    wait "$SUB_PID" || status=$?
    cat "$SUB_OUT"
    [[ $status -eq 0 ]] || { echo "mosquitto_sub exited with $status"; return 1; }
    local got
    got="$(grep '^MSG|' "$SUB_OUT" || true)"
    [[ "$got" == "$expected" ]] || { echo "expected: $expected"; echo "got:      $got"; return 1; }
}

mosquitto_round_trip() {
    local qos="$1"
    local topic="interop/mosquitto/sensor-1/q$qos" payload="mosquitto qos $qos"
    start_mosquitto_sub "interop/mosquitto/+/q$qos" "$qos" || return 1
    mosquitto_pub -h "$HOST" -p "$PORT" -i "interop-pub-$qos" -t "$topic" -q "$qos" -m "$payload" || return 1
    expect_mosquitto_message "MSG|$topic|$qos|0|$payload"
}

# MQTT 5.0 both ends: user properties (a name repeated, order kept),
# response topic, content type and message expiry arrive with the message.
mosquitto_v5_round_trip() {
    local qos="$1"
    local topic="interop/v5/sensor-1/q$qos" payload="mqtt5 qos $qos"
    start_mosquitto_sub "interop/v5/+/q$qos" "$qos" v5 || return 1
    mosquitto_pub -V mqttv5 -h "$HOST" -p "$PORT" -i "interop-pub5-$qos" -t "$topic" -q "$qos" -m "$payload" \
        -D publish user-property unit celsius -D publish user-property unit kelvin \
        -D publish response-topic reply/here -D publish content-type text/plain \
        -D publish message-expiry-interval 3600 || return 1
    local status=0 got
    wait "$SUB_PID" || status=$?
    cat "$SUB_OUT"
    [[ $status -eq 0 ]] || { echo "mosquitto_sub exited with $status"; return 1; }
    got="$(grep '^MSG|' "$SUB_OUT" || true)"
    # The interval left is 3600, or 3599 if a second turned meanwhile.
    local expected="MSG|$topic|$qos|text/plain|reply/here|unit:celsius unit:kelvin|3600|$payload"
    [[ "$got" == "$expected" || "$got" == "${expected/|3600|/|3599|}" ]] ||
        { echo "expected: $expected"; echo "got:      $got"; return 1; }
}

retained_round_trip() {
    local topic="interop/retained/lamp"
    mosquitto_pub -h "$HOST" -p "$PORT" -t "$topic" -q 1 -r -m "on" || return 1
    # A subscriber arriving afterwards gets it, flagged retained.
    start_mosquitto_sub "interop/retained/+" 1 || return 1
    expect_mosquitto_message "MSG|$topic|1|1|on" || return 1
    # An empty retained publish clears it: the next subscriber's first
    # message is a live marker, not the old retained one.
    mosquitto_pub -h "$HOST" -p "$PORT" -t "$topic" -q 1 -r -n || return 1
    start_mosquitto_sub "interop/retained/+" 1 || return 1
    mosquitto_pub -h "$HOST" -p "$PORT" -t "$topic" -q 1 -m "marker" || return 1
    expect_mosquitto_message "MSG|$topic|1|0|marker"
}

cat >"$WORK/paho_round_trip.py" <<'PY'
import sys, threading
import paho.mqtt.client as mqtt

from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

host, port, qos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# A fourth argument, 5, runs it over MQTT 5.0 with message properties.
v5 = len(sys.argv) > 4 and sys.argv[4] == "5"
protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
topic, filt = f"interop/paho{'5' if v5 else ''}/dev-1/q{qos}", f"interop/paho{'5' if v5 else ''}/#"
payload = f"paho qos {qos}".encode()
connected = {"sub": threading.Event(), "pub": threading.Event()}
subscribed, received, messages = threading.Event(), threading.Event(), []
granted = []

def on_connect_for(name):
    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            connected[name].set()
    return on_connect

def on_subscribe(client, userdata, mid, reason_codes, properties):
    granted.extend(rc.value for rc in reason_codes)
    subscribed.set()

def on_message(client, userdata, message):
    messages.append(message)
    received.set()

def fail(why):
    print("FAIL:", why)
    sys.exit(1)

sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"interop-paho-sub-{qos}", protocol=protocol)
pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"interop-paho-pub-{qos}", protocol=protocol)
sub.on_connect, sub.on_subscribe, sub.on_message = on_connect_for("sub"), on_subscribe, on_message
pub.on_connect = on_connect_for("pub")
for c in (sub, pub):
    c.connect(host, port, keepalive=30)
    c.loop_start()
for name, ev in connected.items():
    ev.wait(10) or fail(f"{name} not connected")
sub.subscribe(filt, qos=qos)
subscribed.wait(10) or fail("no SUBACK")
granted == [qos] or fail(f"granted {granted}, asked {qos}")
props = None
if v5:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("site", "north"), ("unit", "celsius")]
    props.ResponseTopic = "interop/paho5/reply"
    props.CorrelationData = b"req-1"
pub.publish(topic, payload, qos=qos, properties=props).wait_for_publish(timeout=10)
received.wait(10) or fail("no message")
m = messages[0]
print(f"received topic={m.topic} qos={m.qos} retain={m.retain} payload={m.payload!r}")
(m.topic, m.qos, m.retain, m.payload) == (topic, qos, False, payload) or fail("wrong message")
if v5:
    got = m.properties
    print(f"properties {got}")
    getattr(got, "UserProperty", None) == [("site", "north"), ("unit", "celsius")] or fail("user properties")
    getattr(got, "ResponseTopic", None) == "interop/paho5/reply" or fail("response topic")
    getattr(got, "CorrelationData", None) == b"req-1" or fail("correlation data")
for c in (sub, pub):
    c.disconnect()
    c.loop_stop()
PY

paho_round_trip() { "$PY" "$WORK/paho_round_trip.py" "$HOST" "$PORT" "$@"; }

cat >"$WORK/node/round_trip.js" <<'JS'
const mqtt = require('mqtt');
const [host, port, qos, transport] = [process.argv[2], process.argv[3], Number(process.argv[4]), process.argv[5] || 'tcp'];
// A fifth argument, 5, runs it over MQTT 5.0 with user properties.
const v5 = process.argv[6] === '5';
const topic = `interop/mqttjs${v5 ? 5 : ''}-${transport}/dev-1/q${qos}`, filter = `interop/mqttjs${v5 ? 5 : ''}-${transport}/+/q${qos}`;
const payload = `mqtt.js qos ${qos}`;
const opts = { protocolVersion: v5 ? 5 : 4, reconnectPeriod: 0, connectTimeout: 10000 };
const sent = v5 ? { properties: { userProperties: { site: 'north' }, responseTopic: 'interop/mqttjs5/reply' } } : {};
const fail = (why) => { console.log('FAIL:', why); process.exit(1); };
setTimeout(() => fail('timed out'), 10000).unref();
const connected = (c) => new Promise((ok, ko) => { c.once('connect', ok); c.once('error', ko); });
const url = transport === 'ws' ? `ws://${host}:${port}/mqtt` : `mqtt://${host}:${port}`;
const sub = mqtt.connect(url, { ...opts, clientId: `interop-mqttjs-${transport}-sub-${qos}` });
const pub = mqtt.connect(url, { ...opts, clientId: `interop-mqttjs-${transport}-pub-${qos}` });
(async () => {
  await Promise.all([connected(sub), connected(pub)]);
  const got = new Promise((ok) => sub.once('message', (t, p, packet) => ok({ t, p: p.toString(), packet })));
  const granted = await sub.subscribeAsync(filter, { qos });
  if (granted[0].qos !== qos) fail(`granted ${JSON.stringify(granted)}, asked ${qos}`);
  await pub.publishAsync(topic, payload, { qos, ...sent });
  const { t, p, packet } = await got;
  console.log(`received topic=${t} qos=${packet.qos} retain=${packet.retain} payload=${p} properties=${JSON.stringify(packet.properties)}`);
  if (v5) {
    const props = packet.properties || {};
    if ((props.userProperties || {}).site !== 'north') fail('user properties');
    if (props.responseTopic !== 'interop/mqttjs5/reply') fail('response topic');
  }
  if (t !== topic || p !== payload || packet.qos !== qos || packet.retain) fail('wrong message');
  await Promise.all([sub.endAsync(), pub.endAsync()]);
  process.exit(0);
})().catch((e) => fail(e.stack || e));
JS

mqttjs_round_trip() { node "$WORK/node/round_trip.js" "$HOST" "$PORT" "$1" tcp "${2:-}"; }

# MQTT 5.0 topic aliases from roost to a client that accepts them: MQTT.js
# (topicAliasMaximum) gets three messages on one topic, the first setting
# an alias, the next two using it, and sees the full topic each time.
cat >"$WORK/node/aliases.js" <<'JS'
const mqtt = require('mqtt');
const [host, port] = [process.argv[2], process.argv[3]];
const topic = 'interop/aliases/building-7/floor-2';
const fail = (why) => { console.log('FAIL:', why); process.exit(1); };
setTimeout(() => fail('timed out'), 10000).unref();
const sub = mqtt.connect(`mqtt://${host}:${port}`, { protocolVersion: 5, clientId: 'interop-alias-sub', reconnectPeriod: 0, properties: { topicAliasMaximum: 5 } });
const pub = mqtt.connect(`mqtt://${host}:${port}`, { protocolVersion: 4, clientId: 'interop-alias-pub', reconnectPeriod: 0 });
const got = [];
sub.on('error', (e) => fail(e.message));
sub.on('message', (t, p, packet) => {
  got.push(`${t} ${p} alias=${(packet.properties || {}).topicAlias}`);
  if (got.length < 3) return;
  console.log(got.join('\n'));
  const want = [1, 2, 3].map((i) => `${topic} m${i} alias=1`);
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`expected ${want}`);
  process.exit(0);
});
sub.on('connect', async () => {
  await sub.subscribeAsync('interop/aliases/#', { qos: 1 });
  for (let i = 1; i <= 3; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
});
JS

for qos in 0 1 2; do
    check "mosquitto_pub -> mosquitto_sub (wildcard +), QoS $qos" mosquitto_round_trip "$qos"
done
for qos in 0 1 2; do
    check "paho-mqtt publish -> subscribe (wildcard #), QoS $qos" paho_round_trip "$qos"
done
for qos in 0 1 2; do
    check "MQTT.js publish -> subscribe (wildcard +), QoS $qos" mqttjs_round_trip "$qos"
done
for qos in 0 1 2; do
    check "MQTT 5.0: mosquitto_pub -> mosquitto_sub -V mqttv5 with properties, QoS $qos" mosquitto_v5_round_trip "$qos"
    check "MQTT 5.0: paho-mqtt MQTTv5 with properties, QoS $qos" paho_round_trip "$qos" 5
    check "MQTT 5.0: MQTT.js protocolVersion 5 with properties, QoS $qos" mqttjs_round_trip "$qos" 5
done
check "MQTT 5.0: topic aliases assigned by roost, resolved by MQTT.js" node "$WORK/node/aliases.js" "$HOST" "$PORT"
check "retained message (mosquitto clients): delivered later, cleared by empty payload" retained_round_trip
for qos in 0 1 2; do
    check "MQTT.js over WebSocket (ws://HOST:PORT/mqtt), QoS $qos" node "$WORK/node/round_trip.js" "$HOST" "$WS_PORT" "$qos" ws
done

# A real browser: headless Chromium loads a page that connects with MQTT.js
# over WebSocket, subscribes, publishes, and writes what it received into
# the page. The page then publishes the text it shows (retained, to
# browser/result), which a mosquitto_sub on plain TCP waits for; Chromium
# runs until then. The first message is retained too, so a TCP subscriber
# afterwards sees what the browser published.
browser_check() {
    local page="$WORK/browser"
    mkdir -p "$page"
    cp "$WORK/node/node_modules/mqtt/dist/mqtt.min.js" "$page/"
    cat >"$page/index.html" <<HTML
<!doctype html>
<html><head><meta charset="utf-8"><script src="mqtt.min.js"></script></head>
<body><p id="result">waiting</p>
<script>
const result = document.getElementById('result');
const client = mqtt.connect('ws://$HOST:$WS_PORT/mqtt', { protocolVersion: 4, reconnectPeriod: 1000, clientId: 'chromium-page' });
client.on('error', (e) => { result.textContent = 'error ' + e; });
client.on('connect', () => {
  client.subscribe('browser/+', { qos: 1 }, () => {
    client.publish('browser/page', 'hello from chromium', { qos: 1, retain: true });
  });
});
client.on('message', (topic, payload) => {
  if (topic !== 'browser/page') return;
  result.textContent = 'received ' + topic + ': ' + payload.toString();
  // Report what the page now shows.
  client.publish('browser/result', document.getElementById('result').textContent, { qos: 1, retain: true });
});
</script></body></html>
HTML
    local status=0
    mosquitto_sub -h "$HOST" -p "$PORT" -t browser/result -q 1 -C 1 -W 60 >"$page/shown.out" 2>&1 &
    local sub=$!
    chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --remote-debugging-port=0 \
        "file://$page/index.html" >"$page/chromium.log" 2>&1 &
    local browser=$!
    wait "$sub" || status=1
    kill "$browser" 2>/dev/null; wait "$browser" 2>/dev/null || true
    echo "the page shows: $(cat "$page/shown.out")"
    grep -qx "received browser/page: hello from chromium" "$page/shown.out" || { status=1; tail -5 "$page/chromium.log"; }
    mosquitto_sub -h "$HOST" -p "$PORT" -t 'browser/page' -q 1 -v -C 1 -W 10 >"$page/tcp.out" 2>&1 || status=1
    grep -qx "browser/page hello from chromium" "$page/tcp.out" || { echo "TCP subscriber got: $(cat "$page/tcp.out")"; status=1; }
    return $status
}
check "headless Chromium: MQTT.js page over WebSocket subscribes, publishes, shows the message" browser_check

# A second roost that requires a password: a user added by `roost passwd`
# and one added by mosquitto_passwd both work from mosquitto_pub -u/-P; a
# wrong password is refused with CONNACK 0x04 (mosquitto_pub exits 4).
password_checks() {
    local port=$((PORT + 1)) pw="$WORK/passwd"
    while port_in_use "$port"; do port=$((port + 1)); done
    echo "roost-secret" | "$ROOST" passwd "$pw" roost-user || return 1
    mosquitto_passwd -b "$pw" mosq-user mosq-secret || return 1
    ROOST__AUTH__PASSWORD_FILE="$pw" ROOST__AUTH__ALLOW_ANONYMOUS=false \
        "$ROOST" --listen "$HOST:$port" --db "$WORK/auth.db" >"$WORK/auth.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do port_in_use "$port" && break; sleep 0.1; done
    local status=0
    mosquitto_pub -h "$HOST" -p "$port" -u roost-user -P roost-secret -t auth/t -m ok -q 1 || status=1
    mosquitto_pub -h "$HOST" -p "$port" -u mosq-user -P mosq-secret -t auth/t -m ok -q 1 || status=1
    local wrong=0
    mosquitto_pub -h "$HOST" -p "$port" -u roost-user -P wrong -t auth/t -m no -q 1 || wrong=$?
    [[ $wrong -eq 4 ]] || { echo "wrong password: mosquitto_pub exited $wrong, expected 4"; status=1; }
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    return $status
}
check "password file: roost passwd and mosquitto_passwd users, wrong password refused (0x04)" password_checks

# A third roost with an ACL file in Mosquitto's format: mosquitto_sub as
# alice receives what bob may publish, not what the ACL drops, and a
# subscription no rule covers is denied (SUBACK 0x80).
acl_checks() {
    local port=$((PORT + 2)) acl="$WORK/acl"
    while port_in_use "$port"; do port=$((port + 1)); done
    printf 'user alice\ntopic read sensors/#\n\nuser bob\ntopic write sensors/#\n' >"$acl"
    ROOST__AUTH__ACL_FILE="$acl" \
        "$ROOST" --listen "$HOST:$port" --db "$WORK/acl.db" >"$WORK/acl.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do port_in_use "$port" && break; sleep 0.1; done
    local status=0 got="$WORK/acl.out"
    mosquitto_sub -h "$HOST" -p "$port" -u alice -t 'sensors/#' -t 'other/#' -q 1 -v -C 1 -W 10 >"$got" 2>&1 &
    local sub=$!
    # Publish until the subscription is in place; bob may not write other/.
    for i in $(seq 50); do
        mosquitto_pub -h "$HOST" -p "$port" -u bob -t other/x -m "dropped $i" -q 1 || status=1
        mosquitto_pub -h "$HOST" -p "$port" -u bob -t sensors/t -m allowed -q 1 || status=1
        kill -0 "$sub" 2>/dev/null || break
        sleep 0.1
    done
    wait "$sub" || status=1
    grep -qx "sensors/t allowed" "$got" || { echo "alice got: $(cat "$got")"; status=1; }
    local denied
    denied=$(mosquitto_sub -h "$HOST" -p "$port" -u alice -t '#' -C 1 -W 3 2>&1 || true)
    [[ "$denied" == *denied* ]] || { echo "subscribe to # as alice: $denied"; status=1; }
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    return $status
}
check "ACL file (Mosquitto format): mosquitto_sub -u gets allowed messages only, wider filter denied" acl_checks

# A fourth roost with a second listener speaking TLS and requiring client
# certificates (openssl-made CA); the certificate's common name is the user
# name the ACL sees. mosquitto_sub/pub connect with --cafile/--cert/--key;
# without a client certificate mosquitto_pub is refused.
tls_checks() {
    local plain=$((PORT + 3)) port d="$WORK/tls"
    while port_in_use "$plain"; do plain=$((plain + 1)); done
    port=$((plain + 1))
    while port_in_use "$port"; do port=$((port + 1)); done
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=roost-ci-ca" 2>/dev/null || return 1
    openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null || return 1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -out "$d/server.pem" -days 2 -extfile "$d/san.ext" 2>/dev/null || return 1
    openssl req -newkey rsa:2048 -nodes -keyout "$d/alice.key" -out "$d/alice.csr" -subj "/CN=alice" 2>/dev/null || return 1
    # An extension makes it X.509 v3: rustls (webpki) refuses v1 certificates.
    printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
    openssl x509 -req -in "$d/alice.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -out "$d/alice.pem" -days 2 -extfile "$d/client.ext" 2>/dev/null || return 1
    printf 'user alice\ntopic readwrite alice/#\n' >"$d/acl"
    cat >"$d/roost.toml" <<EOF_TOML
[listener]
bind = "$HOST:$plain"

[[listeners]]
bind = "$HOST:$port"
tls_cert = "$d/server.pem"
tls_key = "$d/server.key"
tls_client_ca = "$d/ca.pem"
use_identity_as_username = true

[auth]
acl_file = "$d/acl"
EOF_TOML
    "$ROOST" --config "$d/roost.toml" --db "$WORK/tls.db" >"$WORK/tls.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do port_in_use "$port" && break; sleep 0.1; done
    local status=0 tls=(-h localhost -p "$port" --cafile "$d/ca.pem" --cert "$d/alice.pem" --key "$d/alice.key")
    mosquitto_sub "${tls[@]}" -t 'alice/#' -q 1 -v -C 1 -W 10 >"$d/out" 2>&1 &
    local sub=$!
    for _ in $(seq 50); do
        mosquitto_pub "${tls[@]}" -t alice/t -m "over mTLS" -q 1 || status=1
        kill -0 "$sub" 2>/dev/null || break
        sleep 0.1
    done
    wait "$sub" || status=1
    grep -qx "alice/t over mTLS" "$d/out" || { echo "subscriber got: $(cat "$d/out")"; status=1; }
    if mosquitto_pub -h localhost -p "$port" --cafile "$d/ca.pem" -t alice/t -m x -q 1 2>/dev/null; then
        echo "a client without certificate was accepted"; status=1
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    [[ $status -eq 0 ]] || tail -5 "$WORK/tls.log"
    return $status
}
check "TLS listener with client certificates: mosquitto_sub/pub --cafile --cert --key, CN as user name" tls_checks

# The second load generator (tests/independent/mqttgen.c, plain C, no code
# shared with roost or roost-bench): built and run small, so that the
# README's figures from it stay reproducible. Each mode fails on a message
# that does not arrive.
mqttgen_checks() {
    cc -O2 -Wall -Werror -pthread -o "$WORK/mqttgen" "$REPO/tests/independent/mqttgen.c"
    "$WORK/mqttgen" fanout "$HOST" "$PORT" 10 2000 200
    "$WORK/mqttgen" latency "$HOST" "$PORT" 1000 1 thread
    "$WORK/mqttgen" latency "$HOST" "$PORT" 1000 1 inline
}
check "mqttgen (independent C generator): fan-out 1 -> 10 QoS 0 and QoS 1 latency, nothing missing" mqttgen_checks

# The Debian package (cargo deb): installed with dpkg, its unit checked with
# systemd-analyze, and the installed binary run, as the unit runs it (the
# roost user, /etc/roost/roost.toml, /var/lib/roost), for a round trip.
deb_checks() {
    command -v cargo >/dev/null || { echo "no cargo to build the package with"; return 1; }
    command -v systemd-analyze >/dev/null || $SUDO apt-get install -y -qq systemd >/dev/null || return 1
    if ! command -v cargo-deb >/dev/null; then
        cargo install cargo-deb --locked --quiet || return 1
    fi
    local deb
    deb=$(cd "$REPO" && cargo deb --quiet) || return 1
    deb=$(echo "$deb" | tail -1)
    [[ -f "$deb" ]] || { echo "cargo deb made no package: $deb"; return 1; }
    dpkg-deb --contents "$deb"
    $SUDO dpkg -i "$deb" || return 1
    local status=0 unit
    unit=$(ls /lib/systemd/system/roost.service /usr/lib/systemd/system/roost.service 2>/dev/null | head -1)
    [[ -n "$unit" ]] || { echo "no roost.service installed"; return 1; }
    systemd-analyze verify "$unit" || status=1
    grep -q '^Type=notify' "$unit" || { echo "the unit is not Type=notify"; status=1; }
    getent passwd roost >/dev/null || { echo "no roost user"; status=1; }
    [[ "$($SUDO stat -c '%U %a' /var/lib/roost)" == "roost 700" ]] || { echo "/var/lib/roost: $($SUDO stat -c '%U %a' /var/lib/roost)"; status=1; }
    if [[ -d /run/systemd/system ]]; then
        # systemd runs here: dpkg started the service, which must be
        # active (Type=notify: only once roost said READY=1). It is stopped
        # for the run below, which needs its database.
        $SUDO systemctl is-active --quiet roost || { echo "roost.service is not active"; $SUDO systemctl status roost --no-pager; status=1; }
        $SUDO systemctl stop roost
    fi
    local port=$((PORT + 40))
    while port_in_use "$port"; do port=$((port + 1)); done
    $SUDO runuser -u roost -- sh -c "cd /var/lib/roost && exec env ROOST__LISTENER__BIND=$HOST:$port /usr/bin/roost -c /etc/roost/roost.toml" >"$WORK/deb.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do port_in_use "$port" && break; sleep 0.1; done
    mosquitto_pub -h "$HOST" -p "$port" -t deb/installed -m yes -q 1 -r || status=1
    mosquitto_sub -h "$HOST" -p "$port" -t deb/installed -C 1 -W 5 | grep -qx yes || { echo "no retained message back"; status=1; }
    # The roost user runs nothing else: the service is stopped.
    $SUDO pkill -TERM -u roost -x roost || true
    wait "$pid" || true
    cat "$WORK/deb.log"
    grep -q "database: /var/lib/roost/roost.db" "$WORK/deb.log" || status=1
    [[ "$($SUDO stat -c '%U %a' /var/lib/roost/roost.db)" == "roost 600" ]] || { echo "roost.db: $($SUDO stat -c '%U %a' /var/lib/roost/roost.db)"; status=1; }
    $SUDO /usr/bin/roost inspect retained -c /etc/roost/roost.toml | grep -q 'deb/installed' || { echo "roost inspect does not see it"; status=1; }
    $SUDO dpkg --purge roost >/dev/null || status=1
    return $status
}
check "Debian package (cargo deb): dpkg -i, systemd-analyze verify, the installed binary on the installed config" deb_checks

if ! kill -0 "$ROOST_PID" 2>/dev/null; then
    echo "FAIL  roost still running after the checks"
    FAILED=$((FAILED + 1))
fi
if [[ $FAILED -ne 0 ]]; then
    echo "--- roost log (tail) ---"
    tail -n 40 "$WORK/roost.log"
fi
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
