//! Hand-offs held back to the end of a scope, per thread.
//!
//! Some handlers hand many things to other tasks in one go: the store runs
//! a commit's completions, a shard routes a run of publishes. Done one by
//! one, each hand-off wakes its task, and a task on another worker thread
//! is woken through that thread's eventfd, once per hand-off. Held back,
//! each task is woken once, when the scope ends, with all of its work
//! waiting.
//!
//! A [`HeldBack`] opens such a scope on its thread for one list (a
//! `thread_local!` of `Option<Vec<T>>`, `None` outside every scope). While
//! it lives, [`hold`] adds an item to the list instead of handing it on;
//! when the outermost scope ends, also in a panic, each item held is
//! released. Scopes nest: an inner one leaves the release to the outermost.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's list of items held back; `None` outside every scope.
pub type HeldList<T> = LocalKey<RefCell<Option<Vec<T>>>>;

/// A scope in which items of one list are held back (see the module's doc).
pub struct HeldBack<T: 'static> {
    list: &'static HeldList<T>,
    release: fn(T),
    /// The outermost scope on its thread, which releases the items.
    outermost: bool,
}

impl<T: 'static> HeldBack<T> {
    /// Opens a scope for `list`; `release` is what each item held gets
    /// when the outermost scope ends.
    pub fn new(list: &'static HeldList<T>, release: fn(T)) -> HeldBack<T> {
        let outermost = list.with(|held| {
            let mut held = held.borrow_mut();
            held.is_none() && {
                *held = Some(Vec::new());
                true
            }
        });
        HeldBack {
            list,
            release,
            outermost,
        }
    }
}

impl<T: 'static> Drop for HeldBack<T> {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let held = self.list.with(|held| held.borrow_mut().take());
        for item in held.into_iter().flatten() {
            (self.release)(item);
        }
    }
}

/// Runs `f` with the thread's held items if a scope is open for `list`
/// (to add one, or to see whether it is there already); `None` otherwise.
pub fn hold<T: 'static, R>(
    list: &'static HeldList<T>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> Option<R> {
    list.with(|held| held.borrow_mut().as_mut().map(f))
}

/// Whether a scope for `list` is open on this thread.
pub fn holding<T: 'static>(list: &'static HeldList<T>) -> bool {
    list.with(|held| held.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static LIST: RefCell<Option<Vec<u32>>> = const { RefCell::new(None) };
        static RELEASED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    fn release(n: u32) {
        RELEASED.with(|r| r.borrow_mut().push(n));
    }

    fn released() -> Vec<u32> {
        RELEASED.with(|r| r.borrow_mut().drain(..).collect())
    }

    /// Outside a scope nothing is held; inside, items wait for the end of
    /// the outermost scope, in the order they came; a panic ends the scope
    /// too.
    #[test]
    fn items_wait_for_the_outermost_scope() {
        assert_eq!(hold(&LIST, |l| l.push(1)), None);
        {
            let _outer = HeldBack::new(&LIST, release);
            assert!(holding(&LIST));
            hold(&LIST, |l| l.push(2));
            {
                let _inner = HeldBack::new(&LIST, release);
                hold(&LIST, |l| l.push(3));
            }
            assert_eq!(
                released(),
                Vec::<u32>::new(),
                "the inner scope releases nothing"
            );
        }
        assert_eq!(released(), [2, 3]);
        assert!(!holding(&LIST));
        let panicked = std::panic::catch_unwind(|| {
            let _scope = HeldBack::new(&LIST, release);
            hold(&LIST, |l| l.push(4));
            panic!("in the scope");
        });
        assert!(panicked.is_err());
        assert_eq!(released(), [4]);
    }
}
