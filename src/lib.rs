//! Mixtasy: anonymous email over SMTP and OpenPGP (J. Burk, 2016), as a batch mix node
//! (`mixtasyd`) and a sender's tool (`mixtasy`).
//!
//! The map: one folder a subsystem. A folder uses only the folders listed above it
//! (`tests/layout.rs` checks this), so each can be read on its own terms; `cli` and the
//! programs in `bin/` may use all of them.

/// nym.alias.net's controls, shared by the exit and later the nym server: the destination
/// blocklist, recipient quotas, salted address hashes.
pub mod abuse;
/// What every timer program over a Maildir and SQLite shares: the lock, the spool, the
/// transport, the delivery stamp, the store.
pub mod batch;
/// The bytes of a message (D1–D5): packets, CFB, armor, one layer, the verification hash,
/// the final message, the mail around it. No files, no SQL.
pub mod format;
/// Who the mixes are (D8): addresses, modes, keys, the directory, keyservers and WKD.
pub mod mixes;
/// The mix node `mixtasyd`: its home and settings, peel, the round, the exit, status.
pub mod node;
/// The nym's owner's side (`mixtasy nym …`): the nym key and settings, requests to the
/// server, fetching its mail from the shared group by hSub.
pub mod nymclient;
/// The nym server `mixtasy-nymd`: pseudonymous addresses that receive into a shared group
/// and send through the local MTA.
pub mod nymserv;
/// The pinger `mixtasy-pinger`: pings every mix, Echolot's statistics, `mlist2.txt`, the
/// mix keyring and the ranking certifications.
pub mod pinger;
/// The sender's side (D7): path choice, creating the layered message, what a submission is.
pub mod sender;
/// Process-wide helpers with no notion of mail: clock, durable files, allocator tuning.
pub mod util;

/// The command-line edge shared by the programs.
pub mod cli;
