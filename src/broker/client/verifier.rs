//! Password checks, bounded. A check is slow on purpose (argon2id as
//! `roost passwd` writes it takes 19 MiB and tens of milliseconds), so an
//! unbounded number of them is a weapon: a flood of wrong passwords would
//! take all the memory and every core.
//!
//! - At most one check per core runs at once, on the blocking pool; the
//!   others wait their turn (each a small future, no memory of its own).
//! - At most one check per user name runs at once: a flood against one
//!   user takes one core at most, and every other user is checked
//!   meanwhile.
//! - A turn is held by the blocking task itself, so a CONNECT that stops
//!   waiting (its connect timeout) never lets more checks run than that.

use crate::auth::PasswordFile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub struct Verifier {
    /// One permit per check that may run at once.
    running: Arc<Semaphore>,
    /// Per user name with checks waiting or running: one permit. Entries
    /// leave the map when no check of that user is left.
    per_user: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Verifier {
    /// At most `at_once` checks at a time (roost gives the number of cores).
    pub fn new(at_once: usize) -> Arc<Verifier> {
        Arc::new(Verifier {
            running: Arc::new(Semaphore::new(at_once.max(1))),
            per_user: Mutex::new(HashMap::new()),
        })
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.per_user.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `password` is `user`'s, in `passwords`, checked in turn.
    pub async fn verify(
        self: &Arc<Self>,
        passwords: Arc<PasswordFile>,
        user: String,
        password: Vec<u8>,
    ) -> bool {
        let entry = UserEntry::new(self, user);
        let checked = async {
            let user_turn = entry.turns.clone().acquire_owned().await.ok()?;
            let turn = self.running.clone().acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || {
                let ok = passwords.verify(&entry.user, &password);
                drop((turn, user_turn, entry));
                ok
            })
            .await
            .ok()
        };
        checked.await.unwrap_or(false)
    }

    /// User names with checks waiting or running.
    pub fn users_waiting(&self) -> usize {
        self.users().len()
    }
}

/// One check's hold on its user's turns: the map's entry for the user is
/// removed when the last check of that user lets go (done, or given up).
struct UserEntry {
    verifier: Arc<Verifier>,
    user: String,
    turns: Arc<Semaphore>,
}

impl UserEntry {
    fn new(verifier: &Arc<Verifier>, user: String) -> UserEntry {
        let turns = verifier
            .users()
            .entry(user.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone();
        UserEntry {
            verifier: verifier.clone(),
            user,
            turns,
        }
    }
}

impl Drop for UserEntry {
    fn drop(&mut self) {
        let mut users = self.verifier.users();
        // Held by the map and by this entry only: nobody else waits.
        if Arc::strong_count(&self.turns) == 2 {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A password file whose `alice` check takes a while (PBKDF2 with many
    /// rounds), for counting what runs at once.
    fn slow_file() -> Arc<PasswordFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        // 64-byte hash of PBKDF2-HMAC-SHA512 with 40,000 rounds: any
        // bytes do, the password is wrong anyway.
        let hash = "A".repeat(86) + "==";
        let line =
            format!("alice:$7$40000$c2FsdHNhbHQ=${hash}\nbob:$7$40000$c2FsdHNhbHQ=${hash}\n");
        std::fs::write(&path, line).unwrap();
        Arc::new(PasswordFile::load(&path).unwrap())
    }

    /// Many checks of one user run one at a time, and another user's check
    /// does not wait behind them; nothing is left in the map afterwards,
    /// checks given up included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_check_per_user_at_a_time_and_other_users_go_on() {
        let verifier = Verifier::new(2);
        let file = slow_file();
        let mut flood = Vec::new();
        for _ in 0..20 {
            let (v, f) = (verifier.clone(), file.clone());
            flood.push(tokio::spawn(async move {
                v.verify(f, "alice".into(), b"wrong".to_vec()).await
            }));
        }
        while verifier.users_waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            verifier.users_waiting(),
            1,
            "one entry for all of alice's checks"
        );
        let started = std::time::Instant::now();
        let bob = verifier
            .verify(file.clone(), "bob".into(), b"wrong".to_vec())
            .await;
        assert!(!bob);
        let bob_took = started.elapsed();
        // Give some up while they wait, as a connect timeout does.
        for task in flood.iter().skip(10) {
            task.abort();
        }
        for task in flood.into_iter().take(10) {
            assert!(!task.await.unwrap());
        }
        // What runs still finishes, then the map is empty.
        for _ in 0..200 {
            if verifier.users_waiting() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(verifier.users_waiting(), 0);
        // Bob waited for at most the one alice check running, not 20.
        let one = {
            let started = std::time::Instant::now();
            verifier.verify(file, "bob".into(), b"x".to_vec()).await;
            started.elapsed()
        };
        assert!(
            bob_took < one * 4,
            "bob took {bob_took:?}, one check {one:?}"
        );
    }
}
