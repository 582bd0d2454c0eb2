//! The pinger `mixtasy-pinger` (issue 14, thesis 5.5 and 6.3.3): pings every mix of its
//! directory through the network itself, keeps what returned, computes Echolot's statistics
//! and publishes them: `mlist2.txt`, one keyring of every mix it pings, and a short-lived
//! certification on each mix key (`mixes::ranking`).
//!
//! Same shape as the node: a home, a settings file, a Maildir the MTA fills, one `--round`
//! a timer runs, the `batch` layer's lock, spool, transport and store.

pub mod config;
pub mod home;
pub mod ping;
pub mod publish;
pub mod round;
pub mod schedule;
pub mod stats;
pub mod store;
