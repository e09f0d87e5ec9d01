//! The bounds of one session (`[session]` in the config).

/// Bounds of one session, from `[session]` in the config. Every session
/// holds a copy: `u32`s, not `usize`s, keep sessions in a smaller
/// allocation (the config clamps larger values).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Outbound QoS 1/2 messages sent and not yet acknowledged.
    pub max_inflight: u32,
    /// The same bound in bytes (topic + payload); one message is let in
    /// flight whatever its size. Keeps what a client that does not read
    /// holds in its outbound queue near `limits.max_outbound_bytes`, not at
    /// `max_inflight` × the packet size.
    pub max_inflight_bytes: u32,
    /// Messages waiting for a free in-flight slot or for the client to return.
    pub max_queued_messages: u32,
    /// The same bound in bytes (topic + payload).
    pub max_queued_bytes: u32,
    /// Whether QoS 0 messages are queued for an offline persistent session.
    pub queue_qos0: bool,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 128,
            max_inflight_bytes: 1 << 20,
            max_queued_messages: 10000,
            max_queued_bytes: 16 << 20,
            queue_qos0: false,
        }
    }
}
