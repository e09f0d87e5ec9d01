-- The protocol version a client connected with: '3.1' or '3.1.1' (NULL:
-- a session written before this column, until its client connects again).
-- For `roost inspect sessions` and a person with sqlite3; roost reads it
-- nowhere else.
ALTER TABLE sessions ADD COLUMN protocol TEXT;
