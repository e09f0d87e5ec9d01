-- The rows of one session, in arrival order. Without this index, deleting
-- a persistent session (a clean CONNECT replacing it, or its expiry) read
-- the whole `messages` table, twice, on the store's thread, while every
-- durable acknowledgement waited for it.
CREATE INDEX messages_by_client ON messages (client_id, id);
