//! "Do this once the write has committed": a reference-counted callback.
//!
//! A PUBACK waits for every row that holds its message. Each holder keeps a
//! clone of the same [`Completion`]; when the last clone is dropped (the
//! shard routed the message, each session handled it, the store committed
//! each row) the callback runs. If a commit fails, the store abandons the
//! completions it holds instead: the callback never runs and the client,
//! which got no acknowledgement, sends the message again.

use std::sync::{Arc, Mutex};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Completion(Arc<Inner>);

/// A completion dropped by a handler that is panicking never runs: the
/// panic may have cut the work short (a message routed to some sessions but
/// not all), so nothing may be acknowledged for it.
impl Drop for Completion {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abandon();
        }
    }
}

struct Inner {
    callback: Mutex<Option<Callback>>,
}

impl Completion {
    pub fn new(callback: impl FnOnce() + Send + 'static) -> Completion {
        Completion(Arc::new(Inner {
            callback: Mutex::new(Some(Box::new(callback))),
        }))
    }

    /// One completion that finishes when both `a` and `b` would.
    pub fn both(a: Option<Completion>, b: Option<Completion>) -> Option<Completion> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Completion::new(move || drop((a, b)))),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the callback never runs, whoever holds the other clones.
    pub fn abandon(&self) {
        if let Ok(mut c) = self.0.callback.lock() {
            c.take();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let callback = match self.callback.get_mut() {
            Ok(c) => c.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(callback) = callback {
            callback();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_once_when_the_last_clone_drops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = Completion::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let b = a.clone();
        drop(a);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn abandoned_never_runs() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = Completion::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let b = a.clone();
        b.abandon();
        drop((a, b));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}
