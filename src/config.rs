//! Typed configuration, loaded and validated once at start.
//!
//! Layers, later wins: `config/default.toml` (embedded, so the binary runs
//! with no file at all), the file given with `--config`, environment
//! variables `ROOST__SECTION__KEY`, then command-line flags. Unknown keys and
//! invalid values are errors that name the key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod log;
mod reload;

pub use log::{LogConfig, LogLevel, Timestamps};
pub use reload::needs_restart;

/// The defaults, the same text as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// The file of `--config`: unreadable, not TOML, or with a key or
    /// value that is not right. `path` is as the user gave it.
    #[error("configuration file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A `ROOST__SECTION__KEY` variable with a key or value that is not right.
    #[error("configuration from the environment (ROOST__SECTION__KEY variables): {0}")]
    Environment(config::ConfigError),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The first listener.
    pub listener: ListenerConfig,
    /// Further listeners (`[[listeners]]` tables), plain or TLS.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    pub broker: BrokerConfig,
    pub limits: LimitsConfig,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub supervision: SupervisionConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub websocket: WebSocketConfig,
    pub log: LogConfig,
    pub redirect: RedirectConfig,
}

/// `[redirect]`: MQTT 5.0 server redirection, reloaded by SIGHUP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Where new 5.0 clients are sent (CONNACK's Server Reference); empty:
    /// no redirection.
    pub server_reference: String,
    /// The move is for good (0x9D, server moved) rather than for now
    /// (0x9C, use another server).
    pub permanent: bool,
}

/// The message for a value that is none of `valid`.
pub(crate) fn one_of(value: &str, valid: &[&str]) -> String {
    let valid: Vec<String> = valid.iter().map(|v| format!("\"{v}\"")).collect();
    format!("{value:?} is not one of {}", valid.join(", "))
}

/// A listener address as the config and `--listen` take it, resolved once:
/// - `HOST:PORT` with an IP address (`0.0.0.0:1883`, `[::1]:1883`);
/// - `NAME:PORT` with a host name (`localhost:1883`): its first address;
/// - a bare `PORT`: loopback (`127.0.0.1:PORT`), as Mosquitto 2's `-p`.
pub fn resolve_bind(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = text
            .parse()
            .map_err(|_| format!("{text:?}: a port is 0 to 65535"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "{text:?}: expected HOST:PORT (e.g. localhost:1883 or 0.0.0.0:1883) or a port"
        ));
    }
    let mut found = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("{text:?}: the host name has no address"))
}

fn deserialize_bind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    resolve_bind(&text).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// `HOST:PORT` for MQTT over WebSocket (path `/mqtt`); empty: off.
    pub listen: String,
    /// TLS (wss://): certificate chain and key, PEM. Empty: plain ws://.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Origins (`scheme://host[:port]`) whose pages may connect; empty:
    /// any. A request without an Origin header (not a browser) is let in.
    pub allowed_origins: Vec<String>,
}

impl WebSocketConfig {
    /// The WebSocket listener as a listener entry (no client certificates).
    pub fn listener(&self) -> Option<ListenerConfig> {
        Some(ListenerConfig {
            bind: resolve_bind(&self.listen).ok()?,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: PathBuf::new(),
            use_identity_as_username: false,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` for Prometheus' `GET /metrics`; empty: off.
    pub listen: String,
}

impl MetricsConfig {
    /// The address to serve metrics on, if set (checked by `validate`).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        resolve_bind(&self.listen).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Unset: see [`AuthConfig::allow_anonymous`].
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// Empty: no password file.
    pub password_file: PathBuf,
    /// Empty: no ACL (every client may publish and subscribe to anything).
    pub acl_file: PathBuf,
}

impl AuthConfig {
    /// Whether clients without a user name (and, without a password file,
    /// any user name) are accepted, given the MQTT listeners' addresses.
    /// Set, `allow_anonymous` decides. Unset, as Mosquitto 2 does: yes when
    /// every listener is on loopback; with a listener on another address,
    /// no if there is a password file, and an error if there is none (the
    /// broker would be open to the network, or closed to everybody).
    pub fn allow_anonymous(&self, listeners: &[SocketAddr]) -> Result<bool, String> {
        let exposed = listeners.iter().find(|a| !a.ip().is_loopback());
        match (self.allow_anonymous, exposed, self.password_file()) {
            (Some(allow), _, _) => Ok(allow),
            (None, None, _) => Ok(true),
            (None, Some(_), Some(_)) => Ok(false),
            (None, Some(addr), None) => Err(format!(
                "listener {addr} is not on loopback and there is no password file, so anyone who \
                 can reach it could connect: set auth.allow_anonymous = true to accept anonymous \
                 clients from the network, or set auth.password_file (as Mosquitto 2, roost does \
                 not open itself to the network without being told)"
            )),
        }
    }

    pub fn password_file(&self) -> Option<&Path> {
        (!self.password_file.as_os_str().is_empty()).then_some(self.password_file.as_path())
    }

    pub fn acl_file(&self) -> Option<&Path> {
        (!self.acl_file.as_os_str().is_empty()).then_some(self.acl_file.as_path())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    pub max_restarts: usize,
    pub window_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `HOST:PORT`, a host name such as `localhost:1883`, or a bare port
    /// (on loopback): see [`resolve_bind`].
    #[serde(deserialize_with = "deserialize_bind")]
    pub bind: SocketAddr,
    /// TLS: certificate chain (PEM). Empty: plain TCP.
    #[serde(default)]
    pub tls_cert: PathBuf,
    /// TLS: the certificate's private key (PEM).
    #[serde(default)]
    pub tls_key: PathBuf,
    /// mTLS: clients must present a certificate signed by a CA in this PEM
    /// file. Empty: client certificates are not asked for.
    #[serde(default)]
    pub tls_client_ca: PathBuf,
    /// mTLS: the common name of the client's certificate is its user name
    /// (Mosquitto's `use_identity_as_username`); the password file is then
    /// not consulted for these clients.
    #[serde(default)]
    pub use_identity_as_username: bool,
}

impl ListenerConfig {
    /// A plain TCP listener on `bind` (what `--listen` adds).
    pub fn plain(bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            bind,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_client_ca: PathBuf::new(),
            use_identity_as_username: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }

    pub fn client_ca(&self) -> Option<&Path> {
        (!self.tls_client_ca.as_os_str().is_empty()).then_some(self.tls_client_ca.as_path())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub workers: usize,
    pub shards: usize,
    /// Seconds between `$SYS` updates; 0: no `$SYS` topics.
    pub sys_interval_secs: u64,
    /// MQTT 5.0: the Response Information a client that asks for it is
    /// told in CONNACK is this prefix and its client id; empty: none.
    pub response_information_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_packet_size: usize,
    pub connect_timeout_secs: u64,
    pub max_outbound_bytes: usize,
    pub max_routing_backlog: usize,
    pub max_connections: usize,
    pub max_keepalive: u16,
    pub max_client_id_length: usize,
    pub max_topic_length: usize,
    pub max_topic_levels: usize,
    pub max_subscriptions_per_client: usize,
    pub max_filters_per_subscribe: usize,
    pub max_will_bytes: usize,
    pub max_persistent_sessions: usize,
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
    /// MQTT 5.0: topic aliases a client may set per connection (the Topic
    /// Alias Maximum of CONNACK); 0 accepts none.
    pub topic_alias_maximum: u16,
}

impl LimitsConfig {
    /// Whether a topic name or filter is within `max_topic_length` and
    /// `max_topic_levels`.
    pub fn topic_allowed(&self, topic: &str) -> bool {
        topic.len() <= self.max_topic_length && topic.split('/').count() <= self.max_topic_levels
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub max_inflight: usize,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub queue_qos0: bool,
    pub expiry_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub db: PathBuf,
    pub synchronous: Synchronous,
    /// MiB of recent queued messages kept in memory.
    pub log_cache_mib: usize,
    /// `--reset-damaged-db`: move a damaged database aside and start empty.
    #[serde(skip)]
    pub reset_damaged: bool,
}

/// `store.synchronous` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Synchronous {
    /// Survives a crash of roost (kill -9); a power loss may lose the last commits.
    Normal,
    /// Survives a power loss too: one fsync per commit.
    Full,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        }
    }
}

impl TryFrom<String> for Synchronous {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            _ => Err(one_of(&s, &["normal", "full"])),
        }
    }
}

impl Config {
    /// Embedded defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, config::Environment::with_prefix("ROOST"))
    }

    fn load_with_env(file: Option<&Path>, env: config::Environment) -> Result<Config, ConfigError> {
        let defaults = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        // The file is read here, not by the config crate, so that every
        // error about it names it as the user wrote it.
        let file = match file {
            Some(path) => {
                let failed = |reason: String| ConfigError::File {
                    path: path.to_path_buf(),
                    reason,
                };
                let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
                let layer = config::File::from_str(&text, config::FileFormat::Toml);
                // Unknown keys and bad values of the file, named as its own.
                let alone = defaults.clone().add_source(layer.clone()).build();
                match alone.and_then(|c| c.try_deserialize::<Config>()) {
                    Err(e) => return Err(failed(e.to_string())),
                    Ok(alone) => alone.validate().map_err(|e| failed(e.to_string()))?,
                }
                Some(layer)
            }
            None => None,
        };
        let env = env.prefix_separator("__").separator("__").try_parsing(true);
        let layered = match file {
            Some(file) => defaults.add_source(file),
            None => defaults,
        };
        let config: Config = layered
            .add_source(env)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(ConfigError::Environment)?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults alone: what tests and `cargo run` start from.
    pub fn defaults() -> Config {
        Self::load_with_env(
            None,
            config::Environment::with_prefix("ROOST_UNUSED_IN_DEFAULTS"),
        )
        .expect("the embedded default config is valid")
    }

    /// Every listener: `[listener]`, then each of `[[listeners]]`.
    pub fn all_listeners(&self) -> impl Iterator<Item = &ListenerConfig> {
        std::iter::once(&self.listener).chain(&self.listeners)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if !self.websocket.listen.is_empty() && self.websocket.listener().is_none() {
            return invalid(
                "websocket.listen",
                "must be HOST:PORT (e.g. 127.0.0.1:8080) or empty",
            );
        }
        if self.websocket.tls_cert.as_os_str().is_empty()
            != self.websocket.tls_key.as_os_str().is_empty()
        {
            return invalid("websocket.tls_cert", "tls_cert and tls_key go together");
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen_addr().is_none() {
            return invalid(
                "metrics.listen",
                "must be HOST:PORT (e.g. 127.0.0.1:9883) or empty",
            );
        }
        for l in self.all_listeners() {
            let has_key = !l.tls_key.as_os_str().is_empty();
            if l.is_tls() != has_key {
                return invalid(
                    "listener.tls_cert",
                    &format!("listener {}: tls_cert and tls_key go together", l.bind),
                );
            }
            if !l.is_tls() && l.client_ca().is_some() {
                return invalid(
                    "listener.tls_client_ca",
                    &format!(
                        "listener {}: client certificates need tls_cert and tls_key",
                        l.bind
                    ),
                );
            }
            if l.use_identity_as_username && l.client_ca().is_none() {
                return invalid(
                    "listener.use_identity_as_username",
                    &format!(
                        "listener {}: needs tls_client_ca (client certificates)",
                        l.bind
                    ),
                );
            }
        }
        if self.limits.max_packet_size < 64
            || self.limits.max_packet_size > crate::protocol::MAX_REMAINING_LENGTH + 5
        {
            return invalid(
                "limits.max_packet_size",
                "must be between 64 and 268435460 bytes",
            );
        }
        if self.limits.connect_timeout_secs == 0 {
            return invalid("limits.connect_timeout_secs", "must be at least 1");
        }
        if self.limits.max_outbound_bytes < self.limits.max_packet_size.min(65536) {
            return invalid(
                "limits.max_outbound_bytes",
                "must be at least 65536 (or max_packet_size if smaller)",
            );
        }
        if self.limits.max_topic_levels == 0 {
            return invalid("limits.max_topic_levels", "must be at least 1");
        }
        if self.limits.max_topic_length == 0 {
            return invalid("limits.max_topic_length", "must be at least 1");
        }
        if self.limits.max_routing_backlog == 0 {
            return invalid("limits.max_routing_backlog", "must be at least 1");
        }
        if !(1..=65535).contains(&self.session.max_inflight) {
            return invalid(
                "session.max_inflight",
                "must be between 1 and 65535 (packet ids are 16 bits)",
            );
        }
        if self.supervision.window_secs == 0 {
            return invalid("supervision.window_secs", "must be at least 1");
        }
        if self.supervision.shutdown_timeout_secs == 0 {
            return invalid("supervision.shutdown_timeout_secs", "must be at least 1");
        }
        if self.broker.workers > 1024 {
            return invalid(
                "broker.workers",
                "must be between 0 (one per core but one) and 1024",
            );
        }
        if self.broker.shards > 4096 {
            return invalid(
                "broker.shards",
                "must be between 0 (one per two workers) and 4096",
            );
        }
        Ok(())
    }

    fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// `broker.workers` with 0 resolved to [`default_workers`].
    pub fn workers(&self) -> usize {
        match self.broker.workers {
            0 => default_workers(Self::cores()),
            n => n,
        }
    }

    /// `broker.shards` with 0 resolved to one shard per two workers (at
    /// least one).
    ///
    /// A shard's routing is a small part of what a message costs, so one
    /// shard keeps up with two workers; and the fewer shards hand a
    /// session its deliveries, the fewer threads touch its inbox. Measured
    /// unpinned on 2 cores with two workers, sets of 5 alternating runs:
    /// at fan-in QoS 1, one shard used 1.30–1.41 µs of broker CPU per
    /// message against 1.44–1.49 with a shard per worker, and kept pace
    /// with one worker (1.02–1.16× its rate) where a shard per worker fell
    /// behind it (0.90–0.91×). At fan-in QoS 0 and fan-out the two were
    /// within the noise of each other, and with one worker one shard or
    /// two made no difference beyond it.
    pub fn shards(&self) -> usize {
        match self.broker.shards {
            0 => self.workers().div_ceil(2),
            n => n,
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.connect_timeout_secs)
    }

    /// `session.expiry_secs`, `None` when 0 (never).
    pub fn session_expiry(&self) -> Option<Duration> {
        (self.session.expiry_secs > 0).then(|| Duration::from_secs(self.session.expiry_secs))
    }

    /// The bounds every session holds a copy of (as `u32`s: beyond 4 Gi
    /// they are the same as no bound).
    pub fn session_limits(&self) -> crate::session::SessionLimits {
        crate::session::SessionLimits {
            max_inflight: clamp(self.session.max_inflight),
            // What QoS 1/2 messages in flight may hold of a client's
            // outbound queue: the same bound as for QoS 0.
            max_inflight_bytes: clamp(self.limits.max_outbound_bytes),
            max_queued_messages: clamp(self.session.max_queued_messages),
            max_queued_bytes: clamp(self.session.max_queued_bytes),
            queue_qos0: self.session.queue_qos0,
        }
    }
}

/// Worker arbiters on `cores` cores when the config leaves it to roost:
/// one per core but one, which the store's thread gets (it writes every
/// durable change, and shares no arbiter with connections). Measured on 2
/// cores, unpinned, one worker against two: queueing for offline
/// persistent sessions 1.32×, QoS 1 fan-in into a clean session 1.13×,
/// QoS 0 fan-in 0.94×, fan-out 0.97×.
pub fn default_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// A session bound as a `u32`: larger values are as good as none.
fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::Environment::with_prefix("ROOST").source(Some(map))
    }

    #[test]
    fn default_workers_leave_a_core_to_the_store() {
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(8), 7);
        let mut c = Config::defaults();
        c.broker.workers = 3;
        assert_eq!(c.workers(), 3, "a configured count is kept");
    }

    #[test]
    fn default_shards_are_one_per_two_workers() {
        let mut c = Config::defaults();
        for (workers, shards) in [(1, 1), (2, 1), (3, 2), (4, 2), (15, 8)] {
            c.broker.workers = workers;
            assert_eq!(c.shards(), shards, "{workers} workers");
        }
        c.broker.shards = 5;
        assert_eq!(c.shards(), 5, "a configured count is kept");
    }

    /// `--listen` and `bind` take an address, a host name, or a bare port
    /// on loopback (as Mosquitto 2's `-p`).
    #[test]
    fn bind_addresses_resolve() {
        let ok = |s: &str| resolve_bind(s).unwrap();
        assert_eq!(ok("1884"), "127.0.0.1:1884".parse().unwrap());
        assert_eq!(ok("0.0.0.0:1883"), "0.0.0.0:1883".parse().unwrap());
        assert_eq!(ok("[::1]:1883"), "[::1]:1883".parse().unwrap());
        let local = ok("localhost:1885");
        assert!(local.ip().is_loopback() && local.port() == 1885, "{local}");
        for bad in ["", "localhost", "70000", "host:port", "1.2.3.4:99999"] {
            assert!(resolve_bind(bad).is_err(), "{bad:?}");
        }
        let c = Config::load_with_env(None, env(&[("ROOST__LISTENER__BIND", "localhost:2000")]))
            .unwrap();
        assert!(c.listener.bind.ip().is_loopback());
    }

    /// SIGHUP names what it cannot apply: each changed key outside
    /// `[limits]` and `[auth]`, and nothing when only those changed.
    #[test]
    fn keys_that_need_a_restart_are_named() {
        let running = Config::defaults();
        let mut new = running.clone();
        new.limits.max_keepalive = 10;
        new.auth.allow_anonymous = Some(false);
        assert!(needs_restart(&running, &new).is_empty());
        new.listeners
            .push(ListenerConfig::plain("127.0.0.1:1".parse().unwrap()));
        new.session.max_inflight = 7;
        new.websocket.allowed_origins = vec!["https://x".into()];
        new.log.timestamps = Timestamps::Off;
        assert_eq!(
            needs_restart(&running, &new),
            [
                "listeners",
                "session.max_inflight",
                "websocket.allowed_origins",
                "log.timestamps"
            ]
        );
    }

    #[test]
    fn embedded_defaults_load() {
        let c = Config::defaults();
        assert_eq!(c.listener.bind.to_string(), "127.0.0.1:1883");
        assert_eq!(c.session.max_queued_messages, 10000);
    }

    #[test]
    fn environment_overrides_defaults() {
        let c = Config::load_with_env(None, env(&[("ROOST__SESSION__MAX_INFLIGHT", "7")])).unwrap();
        assert_eq!(c.session.max_inflight, 7);
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err =
            Config::load_with_env(None, env(&[("ROOST__SESSION__MAX_INFLIGHT", "0")])).unwrap_err();
        assert!(err.to_string().contains("session.max_inflight"), "{err}");
        let err = Config::load_with_env(None, env(&[("ROOST__LIMITS__MAX_PACKET_SIZE", "lots")]))
            .unwrap_err();
        assert!(err.to_string().contains("max_packet_size"), "{err}");
    }

    #[test]
    fn file_layer_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("roost-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[listener]\nbind = \"127.0.0.1:2883\"\n").unwrap();
        let c = Config::load_with_env(Some(&good), env(&[])).unwrap();
        assert_eq!(c.listener.bind.port(), 2883);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[session]\nmax_inflite = 3\n").unwrap();
        let err = Config::load_with_env(Some(&bad), env(&[])).unwrap_err();
        assert!(err.to_string().contains("max_inflite"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn listeners_from_a_file_and_tls_keys_checked_together() {
        let dir = std::env::temp_dir().join(format!("roost-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("listeners.toml");
        std::fs::write(
            &file,
            "[[listeners]]\nbind = \"0.0.0.0:8883\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\n\n\
             [[listeners]]\nbind = \"127.0.0.1:1884\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(Some(&file), env(&[])).unwrap();
        let all: Vec<_> = c
            .all_listeners()
            .map(|l| (l.bind.port(), l.is_tls()))
            .collect();
        assert_eq!(all, [(1883, false), (8883, true), (1884, false)]);
        for bad in [
            "[listener]\nbind = \"127.0.0.1:1\"\ntls_cert = \"s.pem\"\n",
            "[listener]\nbind = \"127.0.0.1:1\"\ntls_client_ca = \"ca.pem\"\n",
            "[listener]\nbind = \"127.0.0.1:1\"\ntls_cert = \"s.pem\"\ntls_key = \"k\"\nuse_identity_as_username = true\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = Config::load_with_env(Some(&file), env(&[])).unwrap_err();
            assert!(err.to_string().contains("listener"), "{err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
