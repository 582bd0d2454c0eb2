//! nym.alias.net's controls against abuse of an anonymous mail service: a blocklist of
//! destinations that asked for it, recipient quotas, and the salted hashes that let both
//! remember addresses without keeping them.

pub mod block;
pub mod hashed;
pub mod quota;
