-- Queues as runs over one log of messages, instead of a row per copy.
--
-- A message queued for persistent sessions is one row in `message_log`,
-- however many sessions it is queued for. Each session's queue is a list
-- of runs of consecutive message ids in `queue_runs` ("messages 1200 to
-- 1450 of the log, at QoS 1"): a topic that 10 offline sessions subscribe
-- to costs one log row per message and one run row per session, which
-- grows as messages arrive and shrinks as they are acknowledged. A message
-- leaves the log when no run covers it.
--
-- To read the queued messages with their topic and payload, use the view
-- `queued_messages` (one row per queued copy, as before).

CREATE TABLE message_log (
    id          INTEGER PRIMARY KEY,   -- order of arrival
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,      -- as published
    created_at  TEXT NOT NULL,         -- when it was stored
    -- MQTT 5.0 (not used by MQTT 3.1.1): when the message expires, and
    -- the properties forwarded with it. NULL: never, none.
    expires_at  TEXT,
    properties  BLOB
);

-- The messages each persistent session has not acknowledged: message ids
-- first_id to last_id of `message_log`, all of them, delivered at `qos`.
CREATE TABLE queue_runs (
    client_id  TEXT NOT NULL,          -- sessions.client_id
    first_id   INTEGER NOT NULL,       -- message_log.id
    last_id    INTEGER NOT NULL,       -- message_log.id, >= first_id
    qos        INTEGER NOT NULL,       -- the QoS they are delivered at
    retain     INTEGER NOT NULL,       -- 1 for retained messages sent on subscribe
    bytes      INTEGER NOT NULL,       -- topic and payload bytes of the run
    PRIMARY KEY (client_id, first_id)
) WITHOUT ROWID;

-- Queued messages that were sent and not yet acknowledged: their packet
-- id, and the step of the handshake they are at.
CREATE TABLE inflight (
    client_id  TEXT NOT NULL,          -- sessions.client_id
    message_id INTEGER NOT NULL,       -- message_log.id
    packet_id  INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state = 'awaiting_puback' OR state = 'awaiting_pubrec'
                                    OR state = 'awaiting_pubcomp'),
    PRIMARY KEY (client_id, message_id)
) WITHOUT ROWID;

-- QoS 2 PUBLISHes received from a persistent session's client, already
-- routed, whose PUBREL has not arrived: a resent PUBLISH with one of these
-- packet ids is not routed again.
CREATE TABLE inbound_qos2 (
    client_id  TEXT NOT NULL,          -- sessions.client_id
    packet_id  INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;

-- The data of the previous tables: each body becomes a log message (same
-- id), each outbound row a run of one message, each inbound row a packet id.
INSERT INTO message_log (id, topic, payload, qos, created_at)
    SELECT b.id, b.topic, b.payload,
           coalesce((SELECT max(m.qos) FROM messages m WHERE m.body_id = b.id), 1),
           b.created_at
    FROM message_bodies b;
INSERT OR IGNORE INTO queue_runs (client_id, first_id, last_id, qos, retain, bytes)
    SELECT m.client_id, m.body_id, m.body_id, m.qos, m.retain,
           length(CAST(b.topic AS BLOB)) + length(b.payload)
    FROM messages m JOIN message_bodies b ON b.id = m.body_id
    WHERE m.direction = 'outbound';
INSERT OR IGNORE INTO inflight (client_id, message_id, packet_id, state)
    SELECT client_id, body_id, packet_id, state FROM messages
    WHERE direction = 'outbound' AND state <> 'queued' AND packet_id IS NOT NULL
      AND body_id IS NOT NULL;
INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id)
    SELECT client_id, packet_id FROM messages
    WHERE direction = 'inbound' AND packet_id IS NOT NULL;

DROP VIEW queued_messages;
DROP TABLE messages;
DROP TABLE message_bodies;

-- Every queued copy with its topic and payload: `state` is queued, or the
-- step of the handshake it is at.
CREATE VIEW queued_messages AS
    SELECT r.client_id, l.id AS message_id,
           coalesce(i.state, 'queued') AS state, i.packet_id,
           l.topic, l.payload, r.qos, r.retain, l.created_at
    FROM queue_runs r
    JOIN message_log l ON l.id BETWEEN r.first_id AND r.last_id
    LEFT JOIN inflight i ON i.client_id = r.client_id AND i.message_id = l.id;
