//! Sessions reading their queues: a [`PageIn`] request is answered from
//! the store's index of the queues and its cache of recent messages, or,
//! for messages no longer cached, from the database between commits.
//! When the answer says a queue has nothing more in the store, the store
//! tells the session once it has ([`MoreQueued`]).

use super::{Page, PageIn, PendingPage, Store};
use crate::message::Message;
use crate::session::{MessageId, Paged};
use crate::store::{self, Logged};
use actix::prelude::*;

impl Handler<PageIn> for Store {
    type Result = ResponseFuture<Page>;

    fn handle(&mut self, msg: PageIn, ctx: &mut Context<Self>) -> Self::Result {
        // The writes sent before the request first, so that the session's
        // own queue changes are in the index. If that fails, the store
        // restarts: the session hears the page failed and asks again.
        if !self.take_inbox(ctx) {
            return Box::pin(async {
                Page {
                    failed: true,
                    ..Page::default()
                }
            });
        }
        let paged = self.queues.page(&msg.client_id, msg.max as usize);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pending = PendingPage {
            client_id: msg.client_id,
            paged,
            reply: tx,
            more: msg.more,
        };
        match self.cached_page(&pending.paged) {
            Some(messages) => self.reply(pending, messages),
            None => self.pending_pages.push(pending),
        }
        // The writes just taken from the inbox are the batch's now: their
        // wake-up found the inbox empty, so this commits them (or sets the
        // timer of a batch that can wait), as the page read waits for.
        if !self.committing {
            self.commit(ctx);
        }
        Box::pin(async move {
            rx.await.unwrap_or(Page {
                failed: true,
                ..Page::default()
            })
        })
    }
}

impl Store {
    /// The messages of a page, if every one is in the cache.
    fn cached_page(&self, paged: &[store::Paged]) -> Option<Vec<Paged>> {
        let mut cached = self.cache.cursor(paged.first().map_or(0, |p| p.id));
        // Sized at once: collected through `Option`, the vector would grow
        // (and be copied) a dozen times for a page of a thousand.
        let mut page = Vec::with_capacity(paged.len());
        for p in paged {
            page.push(page_entry(p, cached.get(p.id)?));
        }
        Some(page)
    }

    /// Answers a page with the messages from the cache and `read` (those
    /// read from the database). A message found in neither (its row is
    /// gone) leaves the queue.
    fn answer(&mut self, page: PendingPage, read: &ahash::AHashMap<MessageId, Logged>) {
        let mut messages = Vec::with_capacity(page.paged.len());
        let mut cached = self.cache.cursor(page.paged.first().map_or(0, |p| p.id));
        for p in &page.paged {
            match read.get(&p.id).or_else(|| cached.get(p.id)) {
                Some(logged) => messages.push(page_entry(p, logged)),
                None => {
                    log::warn!(
                        "client {:?}: queued message {} is missing from the log; dropped",
                        page.client_id,
                        p.id
                    );
                    self.queues.dequeue(&page.client_id, p.id, 0);
                }
            }
        }
        self.reply(page, messages);
    }

    fn reply(&mut self, page: PendingPage, messages: Vec<Paged>) {
        let more = self.queues.unheld(&page.client_id) > 0;
        if !more {
            self.starved.insert(page.client_id.clone(), page.more);
        }
        let _ = page.reply.send(Page {
            messages,
            more,
            failed: false,
        });
    }

    /// Reads the messages of waiting pages from the database, between
    /// commits. True if it started (the connection is taken).
    pub(super) fn serve_pages(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.pending_pages.is_empty() {
            return false;
        }
        let Some(mut conn) = self.conn.take() else {
            return false;
        };
        let pages = std::mem::take(&mut self.pending_pages);
        let mut ids: Vec<MessageId> = pages
            .iter()
            .flat_map(|p| p.paged.iter().map(|p| p.id))
            .filter(|id| self.cache.get(*id).is_none())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut ranges: Vec<(MessageId, MessageId)> = Vec::new();
        for id in ids {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == id => *last = id,
                _ => ranges.push((id, id)),
            }
        }
        self.committing = true;
        let work = async move {
            let read = store::read_log(&mut conn, &ranges).await;
            (conn, read)
        };
        ctx.spawn(work.into_actor(self).map(move |(conn, read), act, ctx| {
            act.conn = Some(conn);
            act.committing = false;
            match read {
                Ok(read) => {
                    let read: ahash::AHashMap<MessageId, Logged> = read.into_iter().collect();
                    for page in pages {
                        act.answer(page, &read);
                    }
                    for (id, logged) in read {
                        act.cache.read(id, logged);
                    }
                }
                Err(e) => {
                    log::error!("reading queued messages from the database failed: {e}");
                    for page in pages {
                        act.queues.unhold_ids(
                            &page.client_id,
                            &page.paged.iter().map(|p| p.id).collect::<Vec<_>>(),
                        );
                        // Dropped unanswered: the session hears the page failed.
                    }
                }
            }
            act.commit(ctx);
        }));
        true
    }
}

/// A paged message with its content, at its delivery QoS and RETAIN flag.
fn page_entry(p: &store::Paged, logged: &Logged) -> Paged {
    Paged {
        id: p.id,
        message: Message {
            topic: logged.topic.clone(),
            payload: logged.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            properties: logged.properties.clone(),
        },
        sent: p.sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::durable::store::{MoreQueued, StoreHandle};
    use crate::broker::durable::Completion;
    use crate::broker::ops::metrics::Metrics;
    use crate::protocol::{QoS, TopicName};
    use crate::store::Op;
    use std::sync::Arc;
    use std::time::Duration;

    struct Nobody;
    impl Actor for Nobody {
        type Context = Context<Self>;
    }
    impl Handler<MoreQueued> for Nobody {
        type Result = ();
        fn handle(&mut self, _: MoreQueued, _: &mut Context<Self>) {}
    }

    /// A store on a fresh database, idle, with its address and handle.
    async fn idle_store(db: std::path::PathBuf) -> (Addr<Store>, StoreHandle, Arc<Metrics>) {
        let (addr, store, metrics) = super::super::start_for_test(db).await;
        let (idle, idled) = tokio::sync::oneshot::channel();
        store.write(
            Op::Barrier,
            Some(Completion::new(move || {
                let _ = idle.send(());
            })),
        );
        idled.await.unwrap();
        (addr, store, metrics)
    }

    /// Acknowledgements alone wake nobody for their commit, yet commit on
    /// their own, soon, with no other write to carry them.
    #[test]
    fn acknowledgements_alone_commit_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        actix::System::new().block_on(async move {
            let (_addr, store, metrics) = idle_store(db).await;
            let commits = || {
                metrics
                    .store_commits
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            let before = commits();
            for id in 1..=3 {
                let op = Op::Dequeue {
                    client_id: "c".into(),
                    id,
                    size: 1,
                };
                store.write(op, None);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while commits() == before {
                assert!(std::time::Instant::now() < deadline, "never committed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(commits(), before + 1, "three acknowledgements, one commit");
        });
    }

    /// A page request that the store takes before the wake-up of a write
    /// just sent takes the write from the inbox with the session's own; the
    /// wake-up then finds the inbox empty. The write still commits (before,
    /// it waited for the next write to arrive: a PUBREC held forever).
    #[test]
    fn a_write_taken_from_the_inbox_by_a_page_request_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        let system = actix::System::new();
        system.block_on(async move {
            let (addr, store, _) = idle_store(db).await;
            // The write and, before the store runs again, a page request.
            let (tx, committed) = tokio::sync::oneshot::channel();
            let op = Op::SetRetained {
                topic: TopicName::new("r/t".to_string()).unwrap(),
                payload: bytes::Bytes::from_static(b"v"),
                qos: QoS::AtLeastOnce,
                properties: None,
            };
            store.write(
                op,
                Some(Completion::new(move || {
                    let _ = tx.send(());
                })),
            );
            let page = addr.send(PageIn {
                client_id: "nobody".into(),
                max: 10,
                more: Nobody.start().recipient(),
            });
            assert!(page.await.unwrap().messages.is_empty());
            tokio::time::timeout(Duration::from_secs(5), committed)
                .await
                .expect("the write taken by the page request committed")
                .unwrap();
        });
    }
}
