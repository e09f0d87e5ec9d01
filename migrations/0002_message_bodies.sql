-- Each message body (topic and payload) is stored once, however many
-- persistent sessions it is queued for: a message published to 1,000
-- offline subscribers is one row in `message_bodies` and 1,000 small rows
-- in `messages`. A body is removed with the last row that refers to it.
--
-- To read messages with their topic and payload, use the view
-- `queued_messages` (same columns as `messages` before this migration).

CREATE TABLE message_bodies (
    id         INTEGER PRIMARY KEY,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at TEXT NOT NULL           -- when it was first stored
);

-- `messages` without topic, payload and created_at, which move to the body.
CREATE TABLE messages_new (
    id         INTEGER PRIMARY KEY,    -- order of arrival
    client_id  TEXT NOT NULL,          -- sessions.client_id
    direction  TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    state      TEXT NOT NULL CHECK (state IN ('queued', 'awaiting_puback', 'awaiting_pubrec',
                                              'awaiting_pubcomp', 'awaiting_pubrel')),
    packet_id  INTEGER,                -- NULL while queued
    body_id    INTEGER,                -- message_bodies.id; NULL for inbound rows
    qos        INTEGER NOT NULL,       -- the QoS it is delivered at
    retain     INTEGER NOT NULL        -- 1 for a retained message sent on subscribe
);

INSERT INTO message_bodies (id, topic, payload, created_at)
    SELECT id, topic, payload, created_at FROM messages WHERE direction = 'outbound';
INSERT INTO messages_new (id, client_id, direction, state, packet_id, body_id, qos, retain)
    SELECT id, client_id, direction, state, packet_id,
           CASE direction WHEN 'outbound' THEN id END, qos, retain
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- Messages of persistent sessions with their topic and payload.
CREATE VIEW queued_messages AS
    SELECT m.id, m.client_id, m.direction, m.state, m.packet_id,
           b.topic, b.payload, m.qos, m.retain, b.created_at
    FROM messages m LEFT JOIN message_bodies b ON b.id = m.body_id;
