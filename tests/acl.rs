//! Authorisation with an ACL file in Mosquitto's format (`auth.acl_file`):
//! enforced on SUBSCRIBE (SUBACK 0x80 [MQTT-3.9.3-2]), on PUBLISH (dropped
//! and counted; MQTT 3.1.1 has no refusal, so the sender is still
//! acknowledged), on every delivery (retained messages included), and on
//! wills (CONNACK 0x05, as Mosquitto 2). A durable subscription that a new
//! ACL no longer allows stops receiving.
//!
//! Each test proves a message was *not* delivered by order: a later,
//! allowed message on the same connection arrives first.

use crate::common::raw::{self, ConnectOptions, RawClient, Will, CONNACK_OK, CONNACK_PRESENT};
use crate::common::TestBroker;
use std::sync::atomic::Ordering;

const ACL: &str = "\
# anonymous clients: the public tree
topic readwrite public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret
topic read public/#

user bob
topic write sensors/#

# every client: its own subtree
pattern readwrite clients/%c/#
";

/// A broker with `acl` as its ACL file; the file stays in the broker's
/// directory, so a test may rewrite it before `restart`.
fn broker_with_acl(acl: &str) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, acl).unwrap();
    let broker = TestBroker::start_with(|c| c.auth.acl_file = path.clone());
    // Keep the file (and its directory) as long as the broker's own.
    std::mem::forget(dir);
    broker
}

async fn client(broker: &TestBroker, id: &str, user: Option<&str>, clean: bool) -> RawClient {
    let options = ConnectOptions {
        username: user,
        clean,
        ..ConnectOptions::new(id)
    };
    RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await
}

fn denied(broker: &TestBroker) -> u64 {
    broker.handle.metrics().acl_denied.load(Ordering::Relaxed)
}

/// [MQTT-3.9.3-2] A filter that no read rule covers is refused with 0x80,
/// one code per filter: `#` is wider than `sensors/#`, and a write-only
/// rule grants no subscription.
#[tokio::test]
async fn acl_subscribe_outside_read_rules_gets_0x80_per_filter_mqtt_3_9_3_2() {
    let broker = broker_with_acl(ACL);
    let mut alice = client(&broker, "alice-1", Some("alice"), true).await;
    alice
        .send(&raw::subscribe(
            1,
            &[
                ("sensors/#", 1),
                ("#", 1),
                ("sensors/+/t", 2),
                ("sensors/secret", 0),
            ],
        ))
        .await;
    assert_eq!(
        alice.recv().await.bytes(),
        raw::suback(1, &[1, 0x80, 2, 0x80])
    );
    let mut bob = client(&broker, "bob-1", Some("bob"), true).await;
    bob.send(&raw::subscribe(
        2,
        &[("sensors/#", 0), ("clients/bob-1/#", 1)],
    ))
    .await;
    assert_eq!(
        bob.recv().await.bytes(),
        raw::suback(2, &[0x80, 1]),
        "bob may only write sensors/#; his own subtree comes from the pattern"
    );
    assert_eq!(denied(&broker), 3);
}

/// A PUBLISH the ACL does not allow is acknowledged (QoS 1 PUBACK, QoS 2
/// the whole handshake) but reaches no subscriber, and is counted.
#[tokio::test]
async fn acl_publish_not_allowed_is_acknowledged_and_dropped() {
    let broker = broker_with_acl(ACL);
    let mut alice = client(&broker, "alice-2", Some("alice"), true).await;
    alice
        .subscribe_ok(1, &[("sensors/#", 2), ("public/#", 2)])
        .await;
    let mut bob = client(&broker, "bob-2", Some("bob"), true).await;
    bob.publish_ok("public/no", b"bob may not write public", 1, 1, false)
        .await;
    bob.publish_ok("public/no", b"nor at QoS 2", 2, 2, false)
        .await;
    bob.publish_ok("sensors/t", b"allowed", 1, 3, false).await;
    alice.expect_publish("sensors/t", b"allowed").await;
    assert_eq!(denied(&broker), 2);
}

/// [MQTT-4.6.0-2] [MQTT-4.6.0-3] The acknowledgement of a refused PUBLISH
/// waits its turn: pipelined behind allowed ones whose acknowledgements
/// wait for a persistent subscriber's commit, refused ones are acknowledged
/// in the order of the PUBLISHes, at QoS 1 and at QoS 2 (section 4.6 states
/// the rule for the client; roost follows it as receiver too).
#[tokio::test]
async fn acl_refused_publishes_are_acknowledged_in_turn() {
    let broker = broker_with_acl(ACL);
    let mut alice = client(&broker, "alice-order", Some("alice"), false).await;
    alice.subscribe_ok(1, &[("sensors/#", 2)]).await;
    let mut bob = client(&broker, "bob-order", Some("bob"), true).await;
    for qos in [1u8, 2] {
        let base = u16::from(qos) * 100;
        for i in 0..20u16 {
            // Every third one goes to public/, which bob may not write.
            let topic = if i % 3 == 2 { "public/no" } else { "sensors/t" };
            bob.send(&raw::publish(
                topic,
                &i.to_be_bytes(),
                qos,
                base + i,
                false,
                false,
            ))
            .await;
        }
        for i in 0..20u16 {
            let expected = match qos {
                1 => raw::puback(base + i),
                _ => raw::pubrec(base + i),
            };
            assert_eq!(
                bob.recv().await.bytes(),
                expected,
                "QoS {qos}: out of order"
            );
        }
    }
    assert_eq!(denied(&broker), 12);
}

/// A deny rule hides matching messages from a wider subscription, and
/// retained messages sent on subscribe are checked the same way.
#[tokio::test]
async fn acl_deny_rule_hides_messages_and_retained_messages_from_a_wider_subscription() {
    let broker = broker_with_acl(ACL);
    let mut bob = client(&broker, "bob-3", Some("bob"), true).await;
    bob.publish_ok("sensors/secret", b"kept from alice", 1, 1, true)
        .await;
    bob.publish_ok("sensors/open", b"for alice", 1, 2, true)
        .await;
    let mut alice = client(&broker, "alice-3", Some("alice"), true).await;
    alice.subscribe_ok(1, &[("sensors/#", 1)]).await;
    let retained = alice.recv_publish().await;
    assert_eq!(
        (retained.topic.as_str(), retained.retain),
        ("sensors/open", true)
    );
    bob.publish_ok("sensors/secret", b"live, also kept", 1, 3, false)
        .await;
    bob.publish_ok("sensors/open", b"live", 1, 4, false).await;
    alice.expect_publish("sensors/open", b"live").await;
    alice
        .expect_nothing_within(
            std::time::Duration::from_millis(200),
            "nothing else arrives",
        )
        .await;
}

/// As Mosquitto 2: a will whose topic the client may not publish to
/// refuses the connection with 0x05 (not authorised); an allowed one
/// connects.
#[tokio::test]
async fn acl_will_topic_not_allowed_refuses_connect_with_0x05() {
    let broker = broker_with_acl(ACL);
    let will = |topic| Will {
        topic,
        payload: b"gone",
        qos: 1,
        retain: false,
    };
    let refused = ConnectOptions {
        will: Some(will("sensors/x")),
        ..ConnectOptions::new("anon-will")
    };
    let (mut c, ack) = RawClient::connect_with(broker.addr(), &refused).await;
    assert_eq!(ack.bytes(), raw::connack_refused(5));
    c.expect_closed().await;
    let allowed = ConnectOptions {
        will: Some(will("public/wills/anon")),
        ..ConnectOptions::new("anon-will")
    };
    RawClient::connected_expecting(broker.addr(), &allowed, &CONNACK_OK).await;
}

/// `pattern` lines apply to every client, with `%c` its client id; an id
/// that contains a level separator never matches such a pattern.
#[tokio::test]
async fn acl_pattern_substitutes_client_id_and_refuses_ids_with_separators() {
    let broker = broker_with_acl(ACL);
    let mut dev = client(&broker, "dev-7", None, true).await;
    dev.send(&raw::subscribe(
        1,
        &[("clients/dev-7/#", 1), ("clients/dev-8/#", 1)],
    ))
    .await;
    assert_eq!(dev.recv().await.bytes(), raw::suback(1, &[1, 0x80]));
    let mut sneaky = client(&broker, "x/#", None, true).await;
    sneaky.send(&raw::subscribe(2, &[("clients/x/#", 1)])).await;
    assert_eq!(sneaky.recv().await.bytes(), raw::suback(2, &[0x80]));
}

/// A persistent session keeps its subscription across a restart, but once
/// the new ACL no longer allows it, nothing more is delivered or queued on
/// it: the check applies to each message, using the user name stored with
/// the session while its client is away.
#[tokio::test]
async fn acl_durable_subscription_stops_receiving_when_the_acl_no_longer_allows_it() {
    let broker = broker_with_acl(ACL);
    let acl_path = broker.config.auth.acl_file.clone();
    let mut alice = client(&broker, "alice-4", Some("alice"), false).await;
    alice
        .subscribe_ok(1, &[("sensors/#", 1), ("public/#", 1)])
        .await;
    alice.disconnect().await;
    // The new ACL takes sensors/# away from alice.
    std::fs::write(&acl_path, ACL.replace("topic readwrite sensors/#\n", "")).unwrap();
    let broker = broker.restart();
    let mut bob = client(&broker, "bob-4", Some("bob"), true).await;
    bob.publish_ok("sensors/t", b"no longer for alice", 1, 1, false)
        .await;
    let mut anon = client(&broker, "anon-4", None, true).await;
    anon.publish_ok("public/t", b"still for alice", 1, 1, false)
        .await;
    let options = ConnectOptions {
        username: Some("alice"),
        clean: false,
        ..ConnectOptions::new("alice-4")
    };
    let mut alice = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_PRESENT).await;
    alice.expect_publish("public/t", b"still for alice").await;
    alice
        .expect_nothing_within(
            std::time::Duration::from_millis(200),
            "the sensors message was neither queued nor delivered",
        )
        .await;
}

/// Messages queued for a persistent session are checked again when a
/// client takes the session up: another user reusing the client id gets
/// none of what only the first user may read.
#[tokio::test]
async fn acl_queued_messages_are_checked_again_for_the_client_that_resumes_the_session() {
    let broker = broker_with_acl(ACL);
    let mut alice = client(&broker, "shared-id", Some("alice"), false).await;
    alice.subscribe_ok(1, &[("sensors/#", 1)]).await;
    alice.disconnect().await;
    let mut bob = client(&broker, "bob-5", Some("bob"), true).await;
    bob.publish_ok("sensors/t", b"for alice only", 1, 1, false)
        .await;
    let before = denied(&broker);
    let options = ConnectOptions {
        username: Some("bob"),
        clean: false,
        ..ConnectOptions::new("shared-id")
    };
    let mut impostor =
        RawClient::connected_expecting(broker.addr(), &options, &CONNACK_PRESENT).await;
    impostor.ping().await;
    impostor
        .expect_nothing_within(
            std::time::Duration::from_millis(200),
            "the queued message went to a user who may not read it",
        )
        .await;
    assert_eq!(denied(&broker), before + 1);
}
