//! Durable state (migrations/): persistent sessions, their
//! subscriptions and unfinished QoS 1/2 messages in both directions, and
//! retained messages survive a graceful restart; acks for state that must
//! survive are sent only after it is committed; the `sessions` table shows
//! who is connected.
//!
//! Ordering used instead of sleeps: a PUBACK/PUBREC for a message routed to a
//! persistent session or that sets/clears a retained message, and the SUBACK
//! of a persistent session, come after the commit, so the database can be
//! read as soon as they arrive. `TestBroker::restart` stops gracefully
//! (pending writes committed) before it starts again. Only the `sessions`
//! rows of connects and disconnects have no event to wait for: those checks
//! poll the database until the row is as expected (or TIMEOUT).

use crate::common::raw::{self, ConnectOptions, ReceivedPublish, CONNACK_OK, CONNACK_PRESENT};
use crate::common::{persistent, RawClient, TestBroker, TIMEOUT};
use crate::crash::Roost;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Runs `sql` on a read-only connection of its own.
pub(crate) async fn query(db: &Path, sql: &str) -> Vec<SqliteRow> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    rows
}

/// Polls `sql` until `check` accepts its rows, for state with no event to
/// await (the `sessions` row of a connect or disconnect).
pub(crate) async fn eventually<T: std::fmt::Debug>(
    db: &Path,
    sql: &str,
    extract: impl Fn(&[SqliteRow]) -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let got = extract(&query(db, sql).await);
        if check(&got) {
            return got;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("after {TIMEOUT:?}, `{sql}` still gives {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// "2026-11-25T18:40:00Z", as the schema says times are written.
pub(crate) fn is_iso8601_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// (state, packet_id, topic, payload, qos) of a client's messages in one
/// direction, in order of arrival: outbound from the view of its queue,
/// inbound (QoS 2 ids awaiting PUBREL) from `inbound_qos2`.
type MessageRow = (String, Option<i64>, Option<String>, Option<Vec<u8>>, i64);

async fn messages(db: &Path, client_id: &str, direction: &str) -> Vec<MessageRow> {
    let sql = match direction {
        "outbound" => format!(
            "SELECT state, packet_id, topic, payload, qos FROM queued_messages \
             WHERE client_id = '{client_id}' ORDER BY message_id"
        ),
        _ => format!(
            "SELECT 'awaiting_pubrel' AS state, packet_id, NULL AS topic, NULL AS payload, \
             2 AS qos FROM inbound_qos2 WHERE client_id = '{client_id}' ORDER BY packet_id"
        ),
    };
    query(db, &sql)
        .await
        .iter()
        .map(|r| {
            (
                r.get("state"),
                r.get("packet_id"),
                r.get("topic"),
                r.get("payload"),
                r.get("qos"),
            )
        })
        .collect()
}

fn text(p: &ReceivedPublish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// [MQTT-3.1.2-4] The session of a client with CleanSession 0 is resumed
/// from stored state, here across a graceful restart: Session Present is 1
/// [MQTT-3.2.2-2] and the subscriptions still route, at their granted QoS;
/// both for a client that had disconnected and one still connected when the
/// broker stopped.
#[tokio::test]
async fn persistent_session_and_subscriptions_survive_restart_mqtt_3_1_2_4() {
    let broker = TestBroker::start();
    let mut offline = persistent(&broker, "p-offline", &CONNACK_OK).await;
    offline
        .subscribe_ok(1, &[("keep/a", 1), ("keep/+/b", 2)])
        .await;
    offline.disconnect().await;
    let mut online = persistent(&broker, "p-online", &CONNACK_OK).await;
    online
        .subscribe_ok(1, &[("keep/a", 1), ("keep/+/b", 2)])
        .await;

    let broker = broker.restart();
    drop(online);
    let rows = query(
        &broker.db_path(),
        "SELECT client_id, topic_filter, qos FROM subscriptions ORDER BY client_id, topic_filter",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<i64, _>(2),
        )
    })
    .collect::<Vec<_>>();
    let expected: Vec<(String, String, i64)> = ["p-offline", "p-online"]
        .iter()
        .flat_map(|c| {
            [
                (c.to_string(), "keep/+/b".to_string(), 2),
                (c.to_string(), "keep/a".to_string(), 1),
            ]
        })
        .collect();
    assert_eq!(rows, expected, "subscriptions table after restart");

    let mut offline = persistent(&broker, "p-offline", &CONNACK_PRESENT).await;
    let mut online = persistent(&broker, "p-online", &CONNACK_PRESENT).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("keep/a", b"a", 2, 1, false).await;
    publisher.publish_ok("keep/x/b", b"b", 2, 2, false).await;
    for c in [&mut offline, &mut online] {
        let got = c.recv_publishes(2).await;
        let got: Vec<(&str, &[u8], u8)> = got
            .iter()
            .map(|p| (p.topic.as_str(), p.payload.as_slice(), p.qos))
            .collect();
        assert_eq!(got, [("keep/a", &b"a"[..], 1), ("keep/x/b", &b"b"[..], 2)]);
    }
}

/// Ack after commit: the SUBACK to a persistent session comes after its
/// subscriptions are in the `subscriptions` table (with the granted QoS);
/// those of a clean session are not stored.
#[tokio::test]
async fn suback_to_persistent_session_sent_after_subscription_commits() {
    let broker = TestBroker::start();
    let mut p = persistent(&broker, "p", &CONNACK_OK).await;
    p.subscribe_ok(1, &[("s/a", 0), ("s/#", 2)]).await;
    let rows: Vec<(String, i64)> = query(
        &broker.db_path(),
        "SELECT topic_filter, qos FROM subscriptions WHERE client_id = 'p' ORDER BY topic_filter",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(rows, [("s/#".to_string(), 2), ("s/a".to_string(), 0)]);
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    c.subscribe_ok(1, &[("s/c", 1)]).await;
    let rows = query(
        &broker.db_path(),
        "SELECT topic_filter FROM subscriptions WHERE client_id = 'c'",
    )
    .await;
    assert!(
        rows.is_empty(),
        "a clean session's subscriptions are not stored"
    );
}

/// [MQTT-3.1.2-5] QoS 1 and 2 messages for an offline persistent session are
/// stored (committed before the publisher's PUBACK/PUBREC: the rows are
/// there as soon as the ack is), survive a restart and are delivered on
/// reconnect in the order published [MQTT-4.6.0-5], with DUP=0 since they
/// were never sent before.
#[tokio::test]
async fn queued_qos1_and_qos2_committed_before_ack_and_delivered_in_order_after_restart_mqtt_3_1_2_5(
) {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q", 2)]).await;
    c.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let qos_of = |i: u16| 1 + (i % 2) as u8;
    for i in 0..10u16 {
        publisher
            .publish_ok("q", &i.to_be_bytes(), qos_of(i), i + 1, false)
            .await;
    }
    let rows = messages(&broker.db_path(), "p", "outbound").await;
    let expected: Vec<MessageRow> = (0..10u16)
        .map(|i| {
            (
                "queued".to_string(),
                None,
                Some("q".to_string()),
                Some(i.to_be_bytes().to_vec()),
                i64::from(qos_of(i)),
            )
        })
        .collect();
    assert_eq!(
        rows, expected,
        "queued messages in the database once acknowledged"
    );

    let broker = broker.restart();
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let got = c.recv_publishes(10).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            p.payload,
            (i as u16).to_be_bytes(),
            "queued message {i} out of order: {got:?}"
        );
        assert_eq!(p.qos, qos_of(i as u16));
        assert!(!p.dup, "a message never sent before must have DUP=0: {p:?}");
    }
    // Nothing else was queued: a new message is next.
    publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("q", b"marker", 1, 1, false).await;
    c.expect_publish("q", b"marker").await;
}

/// How a persistent client gets back to its session in the resend
/// scenarios: it reconnects to the running broker, or the broker restarts
/// (the in-flight messages then come back from the database).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WayBack {
    Reconnect,
    Restart,
}

impl WayBack {
    /// The client goes away without DISCONNECT; for `Restart`, the broker
    /// restarts on its database too.
    fn take(self, broker: TestBroker, client: RawClient) -> TestBroker {
        match self {
            WayBack::Reconnect => {
                drop(client);
                broker
            }
            WayBack::Restart => {
                let broker = broker.restart();
                drop(client);
                broker
            }
        }
    }
}

/// [MQTT-4.4.0-1] When a Client reconnects with CleanSession set to 0, both
/// the Client and Server MUST re-send any unacknowledged PUBLISH Packets
/// (where QoS > 0) and PUBREL Packets using their original Packet
/// Identifiers; [MQTT-3.3.1-1] a re-sent PUBLISH has DUP=1. A QoS 1 message
/// awaiting PUBACK and a QoS 2 message awaiting PUBREC, stored in those
/// states when the way back is a restart.
async fn unacknowledged_publish_resent_with_dup_and_same_packet_id(way: WayBack) {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q1", 1), ("q2", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("q1", b"one", 1, 1, false).await;
    let first1 = c.recv().await.publish();
    publisher.publish_ok("q2", b"two", 2, 2, false).await;
    let first2 = c.recv().await.publish();
    assert!(!first1.dup && !first2.dup);

    // Neither acknowledged; the client goes away.
    let broker = way.take(broker, c);
    if way == WayBack::Restart {
        let rows = messages(&broker.db_path(), "p", "outbound").await;
        let expected: Vec<MessageRow> = vec![
            (
                "awaiting_puback".into(),
                first1.packet_id.map(i64::from),
                Some("q1".into()),
                Some(b"one".to_vec()),
                1,
            ),
            (
                "awaiting_pubrec".into(),
                first2.packet_id.map(i64::from),
                Some("q2".into()),
                Some(b"two".to_vec()),
                2,
            ),
        ];
        assert_eq!(
            rows, expected,
            "in-flight messages stored with their packet ids"
        );
    }

    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let mut resent = [c.recv().await.publish(), c.recv().await.publish()];
    resent.sort_by(|a, b| a.topic.cmp(&b.topic));
    for (again, before) in resent.iter().zip([&first1, &first2]) {
        assert!(again.dup, "resent without DUP=1: {again:?}");
        assert_eq!(
            (&again.topic, again.packet_id, &again.payload, again.qos),
            (&before.topic, before.packet_id, &before.payload, before.qos),
            "resent with a different id, payload or QoS"
        );
    }
    // Completing the handshakes now ends them: no third resend.
    c.send(&raw::puback(resent[0].packet_id.unwrap())).await;
    let id2 = resent[1].packet_id.unwrap();
    c.send(&raw::pubrec(id2)).await;
    assert_eq!(c.recv().await.bytes(), raw::pubrel(id2));
    c.send(&raw::pubcomp(id2)).await;
    if way == WayBack::Restart {
        publisher = RawClient::connected(broker.addr(), "pub", true).await;
    }
    publisher.publish_ok("q1", b"marker", 1, 3, false).await;
    c.expect_publish("q1", b"marker").await;
}

#[tokio::test]
async fn unacknowledged_publish_resent_with_dup_after_reconnect_mqtt_4_4_0_1() {
    unacknowledged_publish_resent_with_dup_and_same_packet_id(WayBack::Reconnect).await;
}

#[tokio::test]
async fn unacknowledged_publish_resent_with_dup_and_same_packet_id_after_restart_mqtt_4_4_0_1() {
    unacknowledged_publish_resent_with_dup_and_same_packet_id(WayBack::Restart).await;
}

/// [MQTT-4.4.0-1] An outbound QoS 2 message whose PUBREC the client sent
/// gets its PUBREL resent when the client is back, not the PUBLISH
/// [MQTT-4.3.3-1]: across a restart it is stored as awaiting_pubcomp.
async fn pubrel_not_publish_resent_when_pubrec_was_received(way: WayBack) {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q2", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("q2", b"two", 2, 1, false).await;
    let p = c.recv().await.publish();
    let id = p.packet_id.unwrap();
    c.send(&raw::pubrec(id)).await;
    assert_eq!(c.recv().await.bytes(), raw::pubrel(id));
    // No PUBCOMP; the client goes away.
    let broker = way.take(broker, c);
    if way == WayBack::Restart {
        let rows = messages(&broker.db_path(), "p", "outbound").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1),
            ("awaiting_pubcomp", Some(i64::from(id))),
            "{rows:?}"
        );
    }

    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    assert_eq!(
        c.recv().await.bytes(),
        raw::pubrel(id),
        "expected the PUBREL to be resent"
    );
    c.send(&raw::pubcomp(id)).await;
    if way == WayBack::Restart {
        publisher = RawClient::connected(broker.addr(), "pub", true).await;
    }
    publisher.publish_ok("q2", b"marker", 1, 2, false).await;
    c.expect_publish("q2", b"marker").await;
}

#[tokio::test]
async fn pubrel_resent_after_reconnect_mqtt_4_4_0_1() {
    pubrel_not_publish_resent_when_pubrec_was_received(WayBack::Reconnect).await;
}

#[tokio::test]
async fn pubrel_not_publish_resent_after_restart_when_pubrec_was_received_mqtt_4_4_0_1() {
    pubrel_not_publish_resent_when_pubrec_was_received(WayBack::Restart).await;
}

/// [MQTT-4.3.3-2] with [MQTT-4.4.0-1]: an inbound QoS 2 packet id awaiting
/// PUBREL is stored before the PUBREC is sent and survives a restart; the
/// publisher's resent PUBLISH (DUP=1, same id) gets PUBREC and is not routed
/// again: the subscriber, which already had the message, next receives the
/// marker published after it.
#[tokio::test]
async fn inbound_qos2_awaiting_pubrel_survives_restart_and_is_not_routed_twice_mqtt_4_3_3_2() {
    let broker = TestBroker::start();
    let mut sub = persistent(&broker, "sub", &CONNACK_OK).await;
    sub.subscribe_ok(1, &[("once", 2)]).await;
    let mut publisher = persistent(&broker, "pub", &CONNACK_OK).await;
    publisher
        .send(&raw::publish("once", b"exactly once", 2, 7, false, false))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(7));
    let rows = messages(&broker.db_path(), "pub", "inbound").await;
    assert_eq!(
        rows,
        [("awaiting_pubrel".to_string(), Some(7), None, None, 2)],
        "inbound id stored before PUBREC"
    );
    let got = sub.recv_publishes(1).await;
    assert_eq!(text(&got[0]), "exactly once");

    let broker = broker.restart();
    drop((sub, publisher));
    let mut publisher = persistent(&broker, "pub", &CONNACK_PRESENT).await;
    publisher
        .send(&raw::publish("once", b"exactly once", 2, 7, false, true))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(7));
    publisher.send(&raw::pubrel(7)).await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(7));
    publisher.publish_ok("once", b"marker", 1, 8, false).await;
    let mut sub = persistent(&broker, "sub", &CONNACK_PRESENT).await;
    let p = sub.recv_publishes(1).await;
    assert_eq!(
        text(&p[0]),
        "marker",
        "the resent PUBLISH was routed again: {p:?}"
    );
}

/// Ack after commit for retained messages: once the PUBACK/PUBCOMP of a
/// retained PUBLISH is in, the `retained` table holds it; once that of a
/// zero-length retained PUBLISH is in, the row is gone [MQTT-3.3.1-10].
#[tokio::test]
async fn retained_set_and_clear_committed_before_ack_mqtt_3_3_1_10() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let retained = |db: std::path::PathBuf| async move {
        query(
            &db,
            "SELECT topic, payload, qos FROM retained ORDER BY topic",
        )
        .await
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<Vec<u8>, _>(1),
                r.get::<i64, _>(2),
            )
        })
        .collect::<Vec<_>>()
    };
    publisher.publish_ok("r/a", b"A", 1, 1, true).await;
    publisher.publish_ok("r/b", b"B", 2, 2, true).await;
    assert_eq!(
        retained(broker.db_path()).await,
        [
            ("r/a".into(), b"A".to_vec(), 1),
            ("r/b".into(), b"B".to_vec(), 2)
        ]
    );
    publisher.publish_ok("r/a", b"", 1, 3, true).await;
    assert_eq!(
        retained(broker.db_path()).await,
        [("r/b".into(), b"B".to_vec(), 2)]
    );
    let rows = query(&broker.db_path(), "SELECT updated_at FROM retained").await;
    let updated: String = rows[0].get(0);
    assert!(is_iso8601_utc(&updated), "updated_at {updated:?}");
}

/// A retained marker topic, not matched by `r/#`.
const MARKER_TOPIC: &str = "retained-marker";

/// A new clean client subscribes to `filter` and the retained marker in one
/// SUBSCRIBE; retained messages follow the SUBACK filter by filter, so what
/// arrives before the marker is everything retained under `filter` (sorted
/// by topic). Acknowledges as each QoS requires; the QoS 0 marker may
/// overtake a PUBREL.
pub(crate) async fn retained_before_marker(
    addr: std::net::SocketAddr,
    filter: &str,
    marker_topic: &str,
) -> Vec<ReceivedPublish> {
    let mut sub = RawClient::connected(addr, "retained-reader", true).await;
    sub.subscribe_ok(1, &[(filter, 2), (marker_topic, 0)]).await;
    let mut got = Vec::new();
    let mut marker_seen = false;
    let mut awaiting_rel = Vec::new();
    while !marker_seen || !awaiting_rel.is_empty() {
        let packet = sub.recv().await;
        if packet.first == 0x62 {
            let id = packet.packet_id();
            awaiting_rel.retain(|&a| a != id);
            sub.send(&raw::pubcomp(id)).await;
            continue;
        }
        let p = packet.publish();
        match (p.qos, p.packet_id) {
            (1, Some(id)) => sub.send(&raw::puback(id)).await,
            (2, Some(id)) => {
                sub.send(&raw::pubrec(id)).await;
                awaiting_rel.push(id);
            }
            _ => {}
        }
        if p.topic == marker_topic {
            marker_seen = true;
        } else {
            assert!(!marker_seen, "retained message after the marker: {p:?}");
            got.push(p);
        }
    }
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    got
}

/// [MQTT-3.3.1-5] retained messages are stored (here: across a restart) and
/// sent to new subscribers, [MQTT-3.3.1-8] with RETAIN 1; one cleared with a
/// zero-length payload [MQTT-3.3.1-10] stays cleared after the restart.
#[tokio::test]
async fn retained_messages_survive_restart_and_cleared_stay_cleared_mqtt_3_3_1_5() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("r/a", b"A", 1, 1, true).await;
    publisher.publish_ok("r/b", b"B", 1, 2, true).await;
    publisher.publish_ok("r/b", b"", 1, 3, true).await;
    publisher.publish_ok("r/c", b"C", 2, 4, true).await;
    publisher
        .publish_ok(MARKER_TOPIC, b"marker", 1, 5, true)
        .await;

    let broker = broker.restart();
    let got = retained_before_marker(broker.addr(), "r/#", MARKER_TOPIC).await;
    let got: Vec<(&str, &[u8], u8, bool)> = got
        .iter()
        .map(|p| (p.topic.as_str(), p.payload.as_slice(), p.qos, p.retain))
        .collect();
    assert_eq!(
        got,
        [("r/a", &b"A"[..], 1, true), ("r/c", &b"C"[..], 2, true)],
        "retained after restart"
    );
}

/// The `sessions` table lists every connected client: a clean-session
/// client has a row (persistent 0, connected 1, connected_since set,
/// last_seen NULL, its keep alive) while connected, and none after it sends
/// DISCONNECT or its connection drops.
#[tokio::test]
async fn clean_session_clients_listed_while_connected_and_removed_when_gone() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    let sql = "SELECT client_id, persistent, connected, connected_since, last_seen, keep_alive \
               FROM sessions WHERE client_id IN ('c1', 'c2') ORDER BY client_id";
    type SessionRow = (String, i64, i64, Option<String>, Option<String>, i64);
    let extract = |rows: &[SqliteRow]| -> Vec<SessionRow> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    };
    let mut c1 = RawClient::connected(broker.addr(), "c1", true).await;
    let options = ConnectOptions {
        keep_alive: 17,
        ..ConnectOptions::new("c2")
    };
    let c2 = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    let rows = eventually(&db, sql, extract, |rows| rows.len() == 2).await;
    for (row, keep_alive) in rows.iter().zip([60, 17]) {
        assert_eq!((row.1, row.2, row.5), (0, 1, keep_alive), "{row:?}");
        assert!(
            row.3.as_deref().is_some_and(is_iso8601_utc),
            "connected_since: {row:?}"
        );
        assert_eq!(row.4, None, "last_seen while connected: {row:?}");
    }
    c1.disconnect().await;
    eventually(&db, sql, extract, |rows| {
        rows.len() == 1 && rows[0].0 == "c2"
    })
    .await;
    drop(c2);
    eventually(&db, sql, extract, |rows| rows.is_empty()).await;
}

/// A persistent session's row stays when its client goes: connected 0 and
/// last_seen set, also after a restart. A clean-session client connected
/// when the broker stopped has no row after the restart.
#[tokio::test]
async fn persistent_session_row_kept_with_last_seen_and_clean_rows_gone_after_restart() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    let sql = "SELECT client_id, persistent, connected, last_seen FROM sessions ORDER BY client_id";
    let extract = |rows: &[SqliteRow]| -> Vec<(String, i64, i64, Option<String>)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let mut p = persistent(&broker, "p", &CONNACK_OK).await;
    p.subscribe_ok(1, &[("t", 1)]).await;
    let _c = RawClient::connected(broker.addr(), "c", true).await;
    eventually(&db, sql, extract, |rows| {
        rows.len() == 2 && rows[0].0 == "c" && rows[0].2 == 1 && rows[1].0 == "p" && rows[1].2 == 1
    })
    .await;
    p.disconnect().await;
    let rows = eventually(&db, sql, extract, |rows| {
        rows.iter().any(|r| r.0 == "p" && r.2 == 0)
    })
    .await;
    let p_row = rows.iter().find(|r| r.0 == "p").unwrap();
    assert_eq!(p_row.1, 1, "{p_row:?}");
    assert!(
        p_row.3.as_deref().is_some_and(is_iso8601_utc),
        "last_seen: {p_row:?}"
    );

    let broker = broker.restart();
    let rows = eventually(&db, sql, extract, |rows| rows.iter().all(|r| r.0 != "c")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].2),
        ("p", 1, 0),
        "{rows:?}"
    );
    assert!(
        rows[0].3.as_deref().is_some_and(is_iso8601_utc),
        "last_seen after restart: {rows:?}"
    );
    persistent(&broker, "p", &CONNACK_PRESENT)
        .await
        .ping()
        .await;
}

/// The SQL statements of the README's "Inspecting the database" block, in
/// order, comments removed.
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Inspecting the database")
        .nth(1)
        .expect("README has \"Inspecting the database\"");
    let block = section
        .split("```sql")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an sql block");
    let sql: String = block
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql.split(';')
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .collect()
}

/// The README's `sqlite3 -readonly` queries, run as written while the
/// broker runs: who is connected; persistent sessions with their
/// subscription and queued message counts; one session's subscriptions;
/// retained topics.
#[tokio::test]
async fn readme_queries_connected_clients_persistent_sessions_and_retained_topics() {
    let queries = readme_queries();
    let find = |needle: &str| -> String {
        queries
            .iter()
            .find(|q| q.contains(needle))
            .unwrap_or_else(|| panic!("no README query with {needle:?}: {queries:#?}"))
            .clone()
    };
    let connected_sql = find("WHERE connected = 1");
    let sessions_sql = find("s.persistent = 1");
    let subscriptions_sql = find("FROM subscriptions WHERE client_id = 'sensor-7'");
    let queued_sql = find("FROM queued_messages WHERE client_id = 'sensor-7'");
    let retained_sql = find("FROM retained");

    let broker = TestBroker::start();
    let db = broker.db_path();
    let mut away = persistent(&broker, "sensor-7", &CONNACK_OK).await;
    away.subscribe_ok(1, &[("readme/a", 1), ("readme/b", 2)])
        .await;
    away.disconnect().await;
    let mut here = persistent(&broker, "here", &CONNACK_OK).await;
    here.subscribe_ok(1, &[("readme/c", 0)]).await;
    let options = ConnectOptions {
        keep_alive: 23,
        ..ConnectOptions::new("watcher")
    };
    let _watcher = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("readme/a", b"1", 1, 1, false).await;
    publisher.publish_ok("readme/a", b"2", 1, 2, false).await;
    publisher.publish_ok("readme/b", b"3", 2, 3, false).await;
    publisher.publish_ok("readme/r1", b"x", 1, 4, true).await;
    publisher.publish_ok("readme/r2", b"yy", 2, 5, true).await;

    let connected = eventually(
        &db,
        &connected_sql,
        |rows| {
            let mut v: Vec<(String, Option<String>, i64)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get("client_id"),
                        r.get("connected_since"),
                        r.get("keep_alive"),
                    )
                })
                .collect();
            v.sort();
            v
        },
        |v| v.iter().map(|r| r.0.as_str()).collect::<Vec<_>>() == ["here", "pub", "watcher"],
    )
    .await;
    assert_eq!(
        connected.iter().map(|r| r.2).collect::<Vec<_>>(),
        [60, 60, 23],
        "keep_alive: {connected:?}"
    );
    assert!(
        connected
            .iter()
            .all(|r| r.1.as_deref().is_some_and(is_iso8601_utc)),
        "connected_since: {connected:?}"
    );

    let mut sessions: Vec<(String, i64, Option<String>, i64, i64)> = query(&db, &sessions_sql)
        .await
        .iter()
        .map(|r| {
            (
                r.get("client_id"),
                r.get("connected"),
                r.get("last_seen"),
                r.get("subscriptions"),
                r.get("queued_or_in_flight"),
            )
        })
        .collect();
    sessions.sort();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        (
            sessions[0].0.as_str(),
            sessions[0].1,
            sessions[0].2.as_deref(),
            sessions[0].3,
            sessions[0].4
        ),
        ("here", 1, None, 1, 0)
    );
    assert_eq!(
        (
            sessions[1].0.as_str(),
            sessions[1].1,
            sessions[1].3,
            sessions[1].4
        ),
        ("sensor-7", 0, 2, 3),
        "{sessions:?}"
    );
    assert!(
        sessions[1].2.as_deref().is_some_and(is_iso8601_utc),
        "last_seen: {sessions:?}"
    );

    let mut subscriptions: Vec<(String, i64)> = query(&db, &subscriptions_sql)
        .await
        .iter()
        .map(|r| (r.get("topic_filter"), r.get("qos")))
        .collect();
    subscriptions.sort();
    assert_eq!(
        subscriptions,
        [("readme/a".to_string(), 1), ("readme/b".to_string(), 2)]
    );

    let queued: Vec<(String, Option<i64>, String, i64, i64, String)> = query(&db, &queued_sql)
        .await
        .iter()
        .map(|r| {
            (
                r.get("state"),
                r.get("packet_id"),
                r.get("topic"),
                r.get("bytes"),
                r.get("qos"),
                r.get("created_at"),
            )
        })
        .collect();
    let shape: Vec<(&str, Option<i64>, &str, i64, i64)> = queued
        .iter()
        .map(|q| (q.0.as_str(), q.1, q.2.as_str(), q.3, q.4))
        .collect();
    assert_eq!(
        shape,
        [
            ("queued", None, "readme/a", 1, 1),
            ("queued", None, "readme/a", 1, 1),
            ("queued", None, "readme/b", 1, 2)
        ],
        "{queued:?}"
    );
    assert!(queued.iter().all(|q| is_iso8601_utc(&q.5)), "{queued:?}");

    let retained: Vec<(String, i64, i64, String)> = query(&db, &retained_sql)
        .await
        .iter()
        .map(|r| {
            (
                r.get("topic"),
                r.get("qos"),
                r.get("bytes"),
                r.get("updated_at"),
            )
        })
        .collect();
    assert_eq!(retained.len(), 2, "{retained:?}");
    assert_eq!(
        (retained[0].0.as_str(), retained[0].1, retained[0].2),
        ("readme/r1", 1, 1)
    );
    assert_eq!(
        (retained[1].0.as_str(), retained[1].1, retained[1].2),
        ("readme/r2", 2, 2)
    );
    assert!(
        retained.iter().all(|r| is_iso8601_utc(&r.3)),
        "updated_at: {retained:?}"
    );
    here.ping().await;
}

/// The WAL does not grow without bound: committed pages are copied into
/// the database file while roost runs, soon after they are acknowledged,
/// not only once the WAL reaches the writer's own checkpoint threshold
/// (64 MiB) or at shutdown.
#[tokio::test]
async fn committed_pages_reach_the_database_file_while_roost_runs() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("w", 1)]).await;
    c.disconnect().await;
    let db = broker.db_path();
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let payload = vec![b'x'; 4096];
    for i in 0..100u16 {
        publisher.publish_ok("w", &payload, 1, i + 1, false).await;
    }
    // 100 queued bodies of 4 KiB: 400 KiB more in the file, once copied.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while size() < before + 400 * 1024 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {TIMEOUT:?} the database file is still {} bytes ({before} before 400 KiB of messages were acknowledged): the WAL is not being checkpointed",
            size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The database file is created readable and writable by its owner only.
#[tokio::test]
async fn database_file_created_with_mode_0600() {
    let broker = TestBroker::start();
    let mode = std::fs::metadata(broker.db_path())
        .expect("database file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
}

/// `roost --db` with a path under directories that do not exist creates them
/// (and the file, mode 0600).
#[tokio::test]
async fn binary_creates_missing_directories_of_db_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("not/there/yet/roost.db");
    let roost = Roost::start(&db, &[]).await;
    let mut c = RawClient::connected(roost.addr, "c", true).await;
    c.ping().await;
    let mode = std::fs::metadata(&db)
        .expect("database file created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    assert_eq!(roost.terminate().await, Some(0));
}

/// SIGTERM: the binary commits pending writes and exits 0; started again on
/// the same file it resumes the persistent session (Session Present 1) with
/// its queued message.
#[tokio::test]
async fn binary_sigterm_keeps_sessions_and_queued_messages_mqtt_3_1_2_4() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roost.db");
    let roost = Roost::start(&db, &[]).await;
    let options = ConnectOptions {
        clean: false,
        ..ConnectOptions::new("p")
    };
    let mut p = RawClient::connected_expecting(roost.addr, &options, &CONNACK_OK).await;
    p.subscribe_ok(1, &[("t", 2)]).await;
    p.disconnect().await;
    let mut publisher = RawClient::connected(roost.addr, "pub", true).await;
    publisher.publish_ok("t", b"kept", 2, 1, false).await;
    assert_eq!(roost.terminate().await, Some(0), "exit code after SIGTERM");

    let roost = Roost::start(&db, &[]).await;
    let mut p = RawClient::connected_expecting(roost.addr, &options, &CONNACK_PRESENT).await;
    p.expect_publish("t", b"kept").await;
    assert_eq!(roost.terminate().await, Some(0));
}

async fn count(db: &Path, table: &str) -> i64 {
    query(db, &format!("SELECT COUNT(*) AS n FROM {table}")).await[0].get("n")
}

/// Receives `n` QoS 1 messages and acknowledges each.
async fn receive_and_ack(client: &mut RawClient, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    for p in client.recv_publishes(n).await {
        client.send(&raw::puback(p.packet_id.expect("QoS 1"))).await;
        got.push((p.topic, p.payload));
    }
    got
}

/// A message queued for several persistent sessions is stored once in
/// `message_log`; each session's queue is a run of message ids in
/// `queue_runs`. The message stays while any queue refers to it (also
/// across a restart) and leaves the log with the last one.
#[tokio::test]
async fn a_message_is_stored_once_for_all_sessions_and_leaves_with_its_last_reference() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    let expected = queue_two_messages_for_three_sessions(&broker, "body").await;
    let mut first = persistent(&broker, "body-1", &CONNACK_PRESENT).await;
    assert_eq!(receive_and_ack(&mut first, 2).await, expected);
    eventually(
        &db,
        "SELECT COUNT(*) AS n FROM queued_messages",
        |rows| rows[0].get::<i64, _>("n"),
        |n| *n == 4,
    )
    .await;
    assert_eq!(
        count(&db, "message_log").await,
        2,
        "two sessions still need them"
    );
    first.disconnect().await;

    let broker = broker.restart();
    for id in ["body-2", "body-3"] {
        let mut s = persistent(&broker, id, &CONNACK_PRESENT).await;
        assert_eq!(receive_and_ack(&mut s, 2).await, expected, "{id}");
        s.disconnect().await;
    }
    let bodies = eventually(&db, ROWS_AND_BODIES, rows_and_bodies, |(m, b)| {
        *m == 0 && *b == 0
    })
    .await;
    assert_eq!(bodies, (0, 0));
}

/// Queued copies (the view `queued_messages`) and messages in
/// `message_log`, read by `rows_and_bodies`.
const ROWS_AND_BODIES: &str =
    "SELECT (SELECT COUNT(*) FROM queued_messages) AS m, (SELECT COUNT(*) FROM message_log) AS b";

fn rows_and_bodies(rows: &[SqliteRow]) -> (i64, i64) {
    (rows[0].get::<i64, _>("m"), rows[0].get::<i64, _>("b"))
}

/// Persistent sessions `{prefix}-1` to `{prefix}-3` subscribe to
/// `{prefix}/#` at QoS 1 and go offline; a publisher sends them two QoS 1
/// messages. Returns the (topic, payload) pairs each session has queued.
async fn queue_two_messages_for_three_sessions(
    broker: &TestBroker,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let db = broker.db_path();
    for i in 1..=3 {
        let mut s = persistent(broker, &format!("{prefix}-{i}"), &CONNACK_OK).await;
        s.subscribe_ok(1, &[(&format!("{prefix}/#"), 1)]).await;
        s.disconnect().await;
    }
    let expected = vec![
        (format!("{prefix}/a"), b"first".to_vec()),
        (format!("{prefix}/b"), b"second!".to_vec()),
    ];
    let mut publisher = RawClient::connected(broker.addr(), &format!("{prefix}-pub"), true).await;
    for (packet_id, (topic, payload)) in (1..).zip(&expected) {
        publisher
            .publish_ok(topic, payload, 1, packet_id, false)
            .await;
    }
    // PUBACK follows the commit of every copy: each message once in the
    // log, each session's two in one run.
    assert_eq!(count(&db, "queued_messages").await, 6);
    assert_eq!(count(&db, "message_log").await, 2);
    assert_eq!(count(&db, "queue_runs").await, 3);
    expected
}

/// A persistent session discarded with its queue (its client returns with
/// clean session 1 [MQTT-3.1.2-6]) takes its rows with it; a message leaves
/// the log only with the last session that still has it queued.
#[tokio::test]
async fn discarded_sessions_release_their_messages_from_the_log() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    queue_two_messages_for_three_sessions(&broker, "drop").await;

    let mut clean = RawClient::connected(broker.addr(), "drop-1", true).await;
    clean.disconnect().await;
    let after_one = eventually(&db, ROWS_AND_BODIES, rows_and_bodies, |(m, _)| *m == 4).await;
    assert_eq!(after_one, (4, 2), "two sessions still need both messages");

    // The bookkeeping survives a restart: the last two discards remove them.
    let broker = broker.restart();
    for id in ["drop-2", "drop-3"] {
        let mut clean = RawClient::connected(broker.addr(), id, true).await;
        clean.disconnect().await;
    }
    let after_all = eventually(&db, ROWS_AND_BODIES, rows_and_bodies, |(m, b)| {
        *m == 0 && *b == 0
    })
    .await;
    assert_eq!(after_all, (0, 0));
}

/// A database written before `0002_message_bodies.sql` (messages holding
/// their own topic and payload) is migrated at start, through every later
/// migration: a queued message moves to `message_log` and is delivered,
/// and an inbound QoS 2 id awaiting PUBREL stays one.
#[tokio::test]
async fn database_from_before_message_bodies_is_migrated_and_delivers_its_queue() {
    let old = tempfile::tempdir().unwrap();
    let migrations = old.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/0001_initial.sql"),
        migrations.join("0001_initial.sql"),
    )
    .unwrap();
    let db = old.path().join("roost.db");
    let options = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO sessions (client_id, persistent, connected, keep_alive) VALUES ('old-sub', 1, 0, 60)",
        "INSERT INTO subscriptions VALUES ('old-sub', 'old/#', 1)",
        "INSERT INTO messages VALUES (7, 'old-sub', 'outbound', 'queued', NULL, 'old/t', X'6869', 1, 0, '2026-11-25T10:00:00Z')",
        "INSERT INTO messages VALUES (8, 'old-sub', 'inbound', 'awaiting_pubrel', 5, NULL, NULL, 2, 0, '2026-11-25T10:00:00Z')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let db_path = db.clone();
    let broker = TestBroker::start_with(move |c| c.store.db = db_path);
    let bodies: Vec<(i64, String, Vec<u8>, String)> = query(
        &db,
        "SELECT id, topic, payload, created_at FROM message_log",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("topic"),
            r.get("payload"),
            r.get("created_at"),
        )
    })
    .collect();
    assert_eq!(
        bodies,
        [(
            7,
            "old/t".to_string(),
            b"hi".to_vec(),
            "2026-11-25T10:00:00Z".to_string()
        )]
    );
    let inbound: Vec<(String, i64)> = query(&db, "SELECT client_id, packet_id FROM inbound_qos2")
        .await
        .iter()
        .map(|r| (r.get("client_id"), r.get("packet_id")))
        .collect();
    assert_eq!(inbound, [("old-sub".to_string(), 5)]);

    let mut sub = persistent(&broker, "old-sub", &CONNACK_PRESENT).await;
    assert_eq!(
        receive_and_ack(&mut sub, 1).await,
        [("old/t".to_string(), b"hi".to_vec())]
    );
    eventually(
        &db,
        "SELECT COUNT(*) AS n FROM message_log",
        |rows| rows[0].get::<i64, _>("n"),
        |n| *n == 0,
    )
    .await;
    drop(broker);
}

/// A database written by the previous release (`0004`: a row per queued
/// copy in `messages`, each message's content once in `message_bodies`)
/// is migrated at start and nothing queued is lost: queued copies are
/// delivered in order, a QoS 1 message in flight is resent with DUP set and
/// its packet id, a QoS 2 one whose PUBREC had come gets PUBREL
/// [MQTT-4.4.0-1], and an inbound QoS 2 id awaiting PUBREL is still not
/// routed twice [MQTT-4.3.3-2].
#[tokio::test]
async fn database_of_the_previous_release_is_migrated_without_losing_a_message_mqtt_4_4_0_1() {
    let old = tempfile::tempdir().unwrap();
    let migrations = old.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for m in [
        "0001_initial.sql",
        "0002_message_bodies.sql",
        "0003_session_username.sql",
        "0004_messages_checks.sql",
    ] {
        std::fs::copy(
            format!("{}/migrations/{m}", env!("CARGO_MANIFEST_DIR")),
            migrations.join(m),
        )
        .unwrap();
    }
    let db = old.path().join("roost.db");
    let options = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO sessions (client_id, persistent, connected, keep_alive) VALUES ('s1', 1, 0, 60), ('s2', 1, 0, 60)",
        "INSERT INTO subscriptions VALUES ('s1', 'up/#', 1), ('s2', 'up/#', 2)",
        "INSERT INTO message_bodies VALUES (10, 'up/a', X'61', '2026-12-01T10:00:00Z'), \
             (11, 'up/b', X'62', '2026-12-01T10:00:01Z'), (12, 'up/c', X'63', '2026-12-01T10:00:02Z')",
        // s1: a in flight (QoS 1, packet id 7), b and c queued.
        "INSERT INTO messages VALUES (100, 's1', 'outbound', 'awaiting_puback', 7, 10, 1, 0), \
             (101, 's1', 'outbound', 'queued', NULL, 11, 1, 0), \
             (102, 's1', 'outbound', 'queued', NULL, 12, 1, 0)",
        // s2: a past PUBREC (QoS 2, packet id 3), c queued; inbound id 9.
        "INSERT INTO messages VALUES (103, 's2', 'outbound', 'awaiting_pubcomp', 3, 10, 2, 0), \
             (104, 's2', 'outbound', 'queued', NULL, 12, 2, 0), \
             (105, 's2', 'inbound', 'awaiting_pubrel', 9, NULL, 2, 0)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let db_path = db.clone();
    let broker = TestBroker::start_with(move |c| c.store.db = db_path);
    assert_eq!(count(&db, "message_log").await, 3, "each message once");
    assert_eq!(count(&db, "queued_messages").await, 5, "every queued copy");

    // (recv_publishes acknowledges each.)
    let mut s1 = persistent(&broker, "s1", &CONNACK_PRESENT).await;
    let seen: Vec<_> = s1
        .recv_publishes(3)
        .await
        .iter()
        .map(|p| (text(p), p.dup, p.packet_id))
        .collect();
    assert_eq!(
        seen[0],
        ("a".to_string(), true, Some(7)),
        "resent with its packet id"
    );
    assert_eq!((seen[1].0.as_str(), seen[2].0.as_str()), ("b", "c"));
    s1.disconnect().await;

    let mut s2 = persistent(&broker, "s2", &CONNACK_PRESENT).await;
    assert_eq!(
        s2.recv().await.bytes(),
        raw::pubrel(3),
        "PUBREL, not the PUBLISH"
    );
    s2.send(&raw::pubcomp(3)).await;
    let c = s2.recv().await.publish();
    assert_eq!((text(&c), c.qos), ("c".to_string(), 2));
    s2.send(&raw::pubrec(c.packet_id.unwrap())).await;
    assert_eq!(s2.recv().await.bytes(), raw::pubrel(c.packet_id.unwrap()));
    // The inbound id is still awaiting PUBREL: a resent PUBLISH is not routed.
    s2.send(&raw::publish("up/dup", b"x", 2, 9, false, true))
        .await;
    assert_eq!(s2.recv().await.bytes(), raw::pubrec(9));
    s2.expect_nothing_within(
        Duration::from_millis(200),
        "the resent PUBLISH is not routed again",
    )
    .await;
    drop(broker);
}

/// [MQTT-3.1.2-6] A clean CONNECT discards a persistent session: its
/// subscriptions, queued and in-flight rows (and their bodies) leave the
/// database with it, whether committed long ago or waiting in the batch.
#[tokio::test]
async fn a_discarded_persistent_session_leaves_no_rows_mqtt_3_1_2_6() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "gone", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("gone/#", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("gone/a", b"in flight", 1, 1, false)
        .await;
    let _ = c.recv().await.publish();
    c.disconnect().await;
    for n in 2..=20 {
        publisher.publish_ok("gone/b", b"queued", 1, n, false).await;
    }
    let db = broker.db_path();
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            let rows = query(&db, &format!("SELECT count(*) AS n FROM {table}")).await;
            sqlx::Row::get::<i64, _>(&rows[0], "n")
        }
    };
    assert_eq!(count("queued_messages").await, 20);
    assert_eq!(count("message_log").await, 20);
    // A clean CONNECT with the same client id discards it.
    let mut clean = RawClient::connected(broker.addr(), "gone", true).await;
    clean.ping().await;
    drop(clean);
    eventually(
        &db,
        "SELECT (SELECT count(*) FROM queue_runs) + (SELECT count(*) FROM message_log) \
         + (SELECT count(*) FROM inflight) + (SELECT count(*) FROM inbound_qos2) \
         + (SELECT count(*) FROM subscriptions) AS n",
        |rows| sqlx::Row::get::<i64, _>(&rows[0], "n"),
        |n| *n == 0,
    )
    .await;
}

/// A restart with a backlog loads none of it: the queues come back as runs
/// of message ids, the messages stay in the database until their sessions
/// return (queued copies counted, no queued message in memory), and then
/// every one is delivered, in order. One message shared by many sessions is
/// read once. (The 1,000,000-copy version is `roost-bench backlog`.)
#[tokio::test]
async fn a_restart_with_a_backlog_loads_no_message_and_delivers_every_one() {
    use roost::broker::ops::metrics::Metrics;
    let broker = TestBroker::start();
    for i in 0..10 {
        let mut s = persistent(&broker, &format!("many-{i}"), &CONNACK_OK).await;
        s.subscribe_ok(1, &[("backlog/many", 1)]).await;
        s.disconnect().await;
    }
    for i in 0..40 {
        let mut s = persistent(&broker, &format!("big-{i}"), &CONNACK_OK).await;
        s.subscribe_ok(1, &[("backlog/big", 1)]).await;
        s.disconnect().await;
    }
    let mut publisher = RawClient::connected(broker.addr(), "backlog-pub", true).await;
    let payload = vec![b'x'; 1000];
    for n in 0..300u16 {
        let mut p = n.to_be_bytes().to_vec();
        p.extend_from_slice(&payload);
        publisher
            .publish_ok("backlog/many", &p, 1, n + 1, false)
            .await;
    }
    let big = vec![b'B'; 200 * 1024];
    publisher
        .publish_ok("backlog/big", &big, 1, 1000, false)
        .await;
    publisher.disconnect().await;

    let broker = broker.restart();
    let m = broker.handle.metrics();
    assert_eq!(Metrics::get(&m.queued_messages), 10 * 300 + 40);
    assert_eq!(
        Metrics::get(&m.log_cache_bytes),
        0,
        "no queued message is read at start"
    );
    for i in 0..10 {
        let mut s = persistent(&broker, &format!("many-{i}"), &CONNACK_PRESENT).await;
        let got: Vec<u16> = s
            .recv_publishes(300)
            .await
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
            .collect();
        assert_eq!(got, (0..300).collect::<Vec<_>>(), "many-{i}");
        s.disconnect().await;
    }
    for i in 0..40 {
        let mut s = persistent(&broker, &format!("big-{i}"), &CONNACK_PRESENT).await;
        let p = s.recv_publishes(1).await.remove(0);
        assert_eq!(p.payload.len(), big.len(), "big-{i}");
        s.disconnect().await;
    }
    let db = broker.db_path();
    eventually(
        &db,
        "SELECT (SELECT COUNT(*) FROM queue_runs) + (SELECT COUNT(*) FROM message_log) AS n",
        |rows| rows[0].get::<i64, _>("n"),
        |n| *n == 0,
    )
    .await;
}
