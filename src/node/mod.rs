//! The mix node `mixtasyd` (D6): its home and settings, peeling one layer, the round
//! (intake, replay cache, pool, dummies), the exit, and what the operator sees.

// The node's home and settings.
pub mod config;
pub mod home;

// One message through the node, in processing order.
pub mod copies;
pub mod dummy;
pub mod exit;
pub mod parts;
pub mod peel;
pub mod pool;
pub mod replay;
pub mod round;
pub mod simulate;

// What the operator sees.
pub mod check;
pub mod counters;
pub mod daily;
pub mod metrics;
pub mod status;
