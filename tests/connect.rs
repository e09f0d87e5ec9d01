//! CONNECT and CONNACK (section 3.1, 3.2), tested with raw bytes.

use crate::common::raw::{self, RawClient, CONNACK_OK};
use crate::common::TestBroker;

#[tokio::test]
async fn connect_accepted_mqtt_3_2_2_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&raw::connect("c1", true)).await;
    assert_eq!(c.recv().await.bytes(), CONNACK_OK);
    c.ping().await;
}
