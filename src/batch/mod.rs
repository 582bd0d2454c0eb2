//! What a timer program over a Maildir and SQLite needs, whatever its duty (the mix node
//! today; the pinger and the nym server next): one run at a time, a crash-safe spool, a
//! transport to the MTA, the delivery stamp, and the store with its migrations.

pub mod lock;
pub mod settings;
pub mod spool;
pub mod stamp;
pub mod state;
pub mod transport;
