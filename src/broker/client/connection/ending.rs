//! Why a connection ended: set where it is closed, said in the line that
//! logs the client's disconnect.

/// Why a connection ended, for the line that says a client disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Nothing else set it: roost itself stopped the connection (shutdown).
    Stopped,
    /// The client sent DISCONNECT.
    Disconnect,
    /// The client closed the socket without DISCONNECT.
    PeerClosed,
    /// Reading the socket failed (reset, TLS error, ...).
    ReadError(std::io::ErrorKind),
    /// A protocol violation, logged where it was found.
    Protocol,
    KeepAlive,
    TakenOver,
    /// Its session ended under it.
    SessionEnded,
    /// Its handler panicked (logged by the panic hook).
    Failed,
    /// Before CONNACK: refused, or not connected in time.
    Refused,
}

impl Ending {
    pub(super) fn describe(self) -> String {
        match self {
            Ending::Stopped => "closed by roost".into(),
            Ending::Disconnect => "sent DISCONNECT".into(),
            Ending::PeerClosed => "closed the connection without DISCONNECT".into(),
            Ending::ReadError(kind) => format!("read error ({kind})"),
            Ending::Protocol => "protocol error (see the line above)".into(),
            Ending::KeepAlive => "keep-alive expired".into(),
            Ending::TakenOver => "another connection took over its client id".into(),
            Ending::SessionEnded => "its session ended".into(),
            Ending::Failed => "roost failed handling its packet".into(),
            Ending::Refused => "refused".into(),
        }
    }
}
