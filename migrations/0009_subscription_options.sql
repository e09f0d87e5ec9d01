-- MQTT 5.0 subscription options that routing applies, kept with each
-- subscription of a persistent session (0 for 3.1.1 subscriptions):
--   no_local             1: messages its own client publishes are not
--                        delivered to it
--   retain_as_published  1: messages keep the RETAIN flag they were
--                        published with (else it is cleared)
--   subscription_identifier  the Subscription Identifier the client gave
--                        it (NULL: none), sent with each message it matches
-- Retain Handling is not kept: it only decides what is sent at SUBSCRIBE.
ALTER TABLE subscriptions ADD COLUMN no_local INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN retain_as_published INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN subscription_identifier INTEGER;
