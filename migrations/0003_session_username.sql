-- The user name a client connected with (NULL: none). Kept for persistent
-- sessions, so that the ACL (auth.acl_file) applies to messages delivered
-- to a session restored after a restart, before its client returns.
ALTER TABLE sessions ADD COLUMN username TEXT;
