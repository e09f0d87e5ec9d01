//! What SIGHUP cannot apply: the keys that need a restart.

use super::*;

/// The keys whose value differs between the `running` configuration and a
/// reloaded one and that only a restart applies: everything but `[limits]`
/// and `[auth]` (see `broker::live`). Each section is taken apart field by
/// field, so that a new key cannot be added without being placed here.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("listener", running.listener == new.listener);
    check("listeners", running.listeners == new.listeners);
    let BrokerConfig {
        workers,
        shards,
        sys_interval_secs,
        response_information_prefix,
    } = &running.broker;
    check("broker.workers", *workers == new.broker.workers);
    check("broker.shards", *shards == new.broker.shards);
    check(
        "broker.sys_interval_secs",
        *sys_interval_secs == new.broker.sys_interval_secs,
    );
    check(
        "broker.response_information_prefix",
        *response_information_prefix == new.broker.response_information_prefix,
    );
    let SessionConfig {
        max_inflight,
        max_queued_messages,
        max_queued_bytes,
        queue_qos0,
        expiry_secs,
    } = &running.session;
    check(
        "session.max_inflight",
        *max_inflight == new.session.max_inflight,
    );
    check(
        "session.max_queued_messages",
        *max_queued_messages == new.session.max_queued_messages,
    );
    check(
        "session.max_queued_bytes",
        *max_queued_bytes == new.session.max_queued_bytes,
    );
    check("session.queue_qos0", *queue_qos0 == new.session.queue_qos0);
    check(
        "session.expiry_secs",
        *expiry_secs == new.session.expiry_secs,
    );
    let StoreConfig {
        db,
        synchronous,
        log_cache_mib,
        reset_damaged: _,
    } = &running.store;
    check("store.db", *db == new.store.db);
    check("store.synchronous", *synchronous == new.store.synchronous);
    check(
        "store.log_cache_mib",
        *log_cache_mib == new.store.log_cache_mib,
    );
    let SupervisionConfig {
        max_restarts,
        window_secs,
        shutdown_timeout_secs,
    } = &running.supervision;
    check(
        "supervision.max_restarts",
        *max_restarts == new.supervision.max_restarts,
    );
    check(
        "supervision.window_secs",
        *window_secs == new.supervision.window_secs,
    );
    check(
        "supervision.shutdown_timeout_secs",
        *shutdown_timeout_secs == new.supervision.shutdown_timeout_secs,
    );
    let MetricsConfig { listen } = &running.metrics;
    check("metrics.listen", *listen == new.metrics.listen);
    let WebSocketConfig {
        listen,
        tls_cert,
        tls_key,
        allowed_origins,
    } = &running.websocket;
    check("websocket.listen", *listen == new.websocket.listen);
    check("websocket.tls_cert", *tls_cert == new.websocket.tls_cert);
    check("websocket.tls_key", *tls_key == new.websocket.tls_key);
    check(
        "websocket.allowed_origins",
        *allowed_origins == new.websocket.allowed_origins,
    );
    let LogConfig {
        level,
        file,
        timestamps,
    } = &running.log;
    check("log.level", *level == new.log.level);
    check("log.file", *file == new.log.file);
    check("log.timestamps", *timestamps == new.log.timestamps);
    // Reloaded: `[limits]`, `[auth]` and `[redirect]`.
    let Config {
        listener: _,
        listeners: _,
        broker: _,
        limits: _,
        session: _,
        store: _,
        supervision: _,
        auth: _,
        metrics: _,
        redirect: _,
        websocket: _,
        log: _,
    } = running;
    changed
}
