-- roost's durable state, written to be read by people:
--   sqlite3 -readonly data/roost.db
-- Times are UTC, ISO 8601 ("2026-11-25T18:40:00Z").

-- One row per client id: every connected client (clean session or not), and
-- every persistent session (clean session 0) while it is kept, connected or not.
CREATE TABLE sessions (
    client_id       TEXT PRIMARY KEY,
    persistent      INTEGER NOT NULL,  -- 1: clean session 0, kept across disconnects and restarts
    connected       INTEGER NOT NULL,  -- 1 while a client is connected with this id
    connected_since TEXT,              -- when the current (or last) connection was made
    last_seen       TEXT,              -- when the client last disconnected; NULL while connected
    keep_alive      INTEGER NOT NULL,  -- seconds, as the client asked in CONNECT (0: off)
    will_topic      TEXT,              -- last will, published if the connection ends without DISCONNECT
    will_payload    BLOB,
    will_qos        INTEGER,
    will_retain     INTEGER
);

-- Subscriptions of persistent sessions (those of clean sessions live in memory only).
-- Removed together with their session.
CREATE TABLE subscriptions (
    client_id    TEXT NOT NULL,        -- sessions.client_id
    topic_filter TEXT NOT NULL,
    qos          INTEGER NOT NULL,     -- granted QoS
    PRIMARY KEY (client_id, topic_filter)
);

-- QoS 1/2 messages of persistent sessions that are not finished yet. Removed
-- together with their session.
--   outbound: to the client; state is queued (not sent yet), awaiting_puback,
--             awaiting_pubrec or awaiting_pubcomp (sent, handshake under way).
--   inbound:  a QoS 2 PUBLISH from the client, already routed, whose PUBREL
--             has not arrived (state awaiting_pubrel; no topic or payload):
--             a resent PUBLISH with this packet id is not routed again.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,    -- order of arrival
    client_id  TEXT NOT NULL,          -- sessions.client_id
    direction  TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    state      TEXT NOT NULL CHECK (state IN ('queued', 'awaiting_puback', 'awaiting_pubrec',
                                              'awaiting_pubcomp', 'awaiting_pubrel')),
    packet_id  INTEGER,                -- NULL while queued
    topic      TEXT,
    payload    BLOB,
    qos        INTEGER NOT NULL,       -- the QoS it is delivered at
    retain     INTEGER NOT NULL,       -- 1 for a retained message sent on subscribe
    created_at TEXT NOT NULL
);

-- The retained message of each topic.
CREATE TABLE retained (
    topic      TEXT PRIMARY KEY,
    payload    BLOB NOT NULL,
    qos        INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
