-- MQTT 5.0 message properties, kept with queued and retained messages so
-- that they survive a restart, in columns a person can query with sqlite3.
-- NULL everywhere for MQTT 3.1.1 messages, and for what a message lacks.
--
--   expires_at        when the message expires (Message Expiry Interval),
--                     as Unix seconds: datetime(expires_at, 'unixepoch')
--   payload_format    Payload Format Indicator: 1 for UTF-8 text
--   content_type      Content Type
--   response_topic    Response Topic
--   correlation_data  Correlation Data
--   user_properties   User Properties as JSON, in their order, names
--                     repeating as sent: [["name", "value"], ...]
--
-- message_log reserved two columns for this in 0005 that nothing wrote
-- (expires_at TEXT, properties BLOB): the table is made again with these
-- instead, every message kept.

DROP VIEW queued_messages;
CREATE TABLE message_log_new (
    id               INTEGER PRIMARY KEY,   -- order of arrival
    topic            TEXT NOT NULL,
    payload          BLOB NOT NULL,
    qos              INTEGER NOT NULL,      -- as published
    created_at       TEXT NOT NULL,         -- when it was stored
    expires_at       INTEGER,
    payload_format   INTEGER,
    content_type     TEXT,
    response_topic   TEXT,
    correlation_data BLOB,
    user_properties  TEXT
);
INSERT INTO message_log_new (id, topic, payload, qos, created_at)
    SELECT id, topic, payload, qos, created_at FROM message_log;
DROP TABLE message_log;
ALTER TABLE message_log_new RENAME TO message_log;

ALTER TABLE retained ADD COLUMN expires_at INTEGER;
ALTER TABLE retained ADD COLUMN payload_format INTEGER;
ALTER TABLE retained ADD COLUMN content_type TEXT;
ALTER TABLE retained ADD COLUMN response_topic TEXT;
ALTER TABLE retained ADD COLUMN correlation_data BLOB;
ALTER TABLE retained ADD COLUMN user_properties TEXT;

-- The view of queued copies shows them too.
CREATE VIEW queued_messages AS
    SELECT r.client_id, l.id AS message_id,
           coalesce(i.state, 'queued') AS state, i.packet_id,
           l.topic, l.payload, r.qos, r.retain, l.created_at,
           l.expires_at, l.payload_format, l.content_type, l.response_topic,
           l.correlation_data, l.user_properties
    FROM queue_runs r
    JOIN message_log l ON l.id BETWEEN r.first_id AND r.last_id
    LEFT JOIN inflight i ON i.client_id = r.client_id AND i.message_id = l.id;
