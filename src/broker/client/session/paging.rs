//! A durable session reading its queue from the store, a page at a time.
//!
//! The state machine asks for a page ([`Action::PageIn`]) when the part of
//! the queue it holds in memory runs low; the handler that ran it sends the
//! request ([`PageIn`]) once it ends. The answer goes through the ACL
//! again (the client may read less than when the message was routed) and
//! into the state machine. When the store has nothing more, it says so
//! once more arrives ([`MoreQueued`]).
//!
//! [`Action::PageIn`]: crate::session::Action::PageIn

use super::Session;
use crate::broker::durable::{MoreQueued, Page, PageIn};
use crate::broker::ops::restart::{guard, ActorKind};
use crate::session::Action;
use actix::prelude::*;
use std::time::Duration;

/// After a page that could not be read, the pause before asking again.
const PAGE_RETRY_PAUSE: Duration = Duration::from_millis(200);

impl Session {
    /// Sends the page the last event asked for, if any.
    pub(super) fn request_page(&mut self, ctx: &mut Context<Self>) {
        let max = std::mem::take(&mut self.page_wanted);
        if max == 0 {
            return;
        }
        let request = PageIn {
            client_id: self.client_id.clone(),
            max,
            more: ctx.address().recipient(),
        };
        self.paging = true;
        let asked = self.deps.store.addr().send(request);
        ctx.spawn(asked.into_actor(self).map(|page, act, ctx| {
            let page = page.unwrap_or(Page {
                failed: true,
                ..Page::default()
            });
            act.on_page(page, ctx);
        }));
    }

    fn on_page(&mut self, page: Page, ctx: &mut Context<Self>) {
        self.paging = false;
        if page.failed {
            self.state.page_failed();
            ctx.run_later(PAGE_RETRY_PAUSE, |act, ctx| {
                act.state.more_in_store(&mut act.out);
                act.run(None);
                act.request_page(ctx);
            });
            return;
        }
        let id = self.client_id.clone();
        // The page's packets go to the client together, with one wake-up
        // of its writer (as for a run of acknowledgements).
        self.begin_gathering();
        let handled = guard::<Page, _>(ActorKind::Session, &id, || {
            let mut readable = Vec::with_capacity(page.messages.len());
            for p in page.messages {
                if self.may_read(&p.message.topic) {
                    readable.push(p);
                } else {
                    self.out.push(Action::Dequeue {
                        id: p.id,
                        size: u32::try_from(p.message.size()).unwrap_or(u32::MAX),
                    });
                }
            }
            self.state.paged(readable, page.more, &mut self.out);
            self.run(None);
        });
        if handled.is_err() {
            self.recover();
        }
        self.end_gathering();
        self.request_page(ctx);
        // The client left while the page was on its way: now it may sleep.
        self.sleep(ctx);
    }
}

impl Handler<MoreQueued> for Session {
    type Result = ();

    fn handle(&mut self, _: MoreQueued, ctx: &mut Context<Self>) {
        self.state.more_in_store(&mut self.out);
        self.run(None);
        self.request_page(ctx);
    }
}
