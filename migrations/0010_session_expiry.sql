-- The Session Expiry Interval a MQTT 5.0 client's persistent session was
-- granted, in seconds (4294967295: for ever): it is removed once its client
-- has been away that long. NULL for MQTT 3.1.1 sessions (and sessions of
-- earlier releases), which session.expiry_secs governs.
ALTER TABLE sessions ADD COLUMN session_expiry INTEGER;
