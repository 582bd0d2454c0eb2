//! The exit (thesis 6.4.4): what a delivered original looks like (`prepare`), its queue, and
//! delivering queued entries recipient by recipient under the exit's policy (`deliver`).
//! The round only hands it the entries, in its shuffled order, and adds up the counts.

pub mod deliver;
pub mod prepare;

pub use deliver::{cap_queue, deliver, Delivered, Exit};
pub use prepare::{
    cap, delivers_to, enqueue, enqueue_notice, is_own_bounce, prepare, prepare_notice, purge_sent, queued,
    quoted_own_ids, remember_sent, Delivery, Entry, ExitError, Outcome, Policy, Queued, BOUNCE_WINDOW,
};
