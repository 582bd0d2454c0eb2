//! Mixtasy: anonymous email over SMTP and OpenPGP (J. Burk, 2016), as a batch mix node
//! (`mixtasyd`) and a sender's tool (`mixtasy`).
//!
//! The modules follow a message through a mix (D6), then the parts both sides share.

// Framing: the bytes of one layer.
pub mod sizes;
pub mod packet;
pub mod cfb;
pub mod armor;

// One message through a mix, in processing order.
pub mod session;
pub mod layer;
pub mod verification;
pub mod message;

// Keys, modes, addresses.
pub mod address;
pub mod headers;
pub mod modes;
pub mod keys;
pub mod directory;
pub mod keyserver;
pub mod wkd;
pub mod path;

// The two sides of the wire.
pub mod wire;
pub mod submit;
pub mod pgpmime;
pub mod create;
pub mod peel;

// The round: intake, replay cache, pool, dummies, exit delivery.
pub mod lock;
pub mod state;
pub mod spool;
pub mod replay;
pub mod pool;
pub mod parts;
pub mod copies;
pub mod dummy;
pub mod stamp;
pub mod hashed;
pub mod exit;
pub mod block;
pub mod quota;
pub mod transport;
pub mod round;
pub mod status;
pub mod check;

// State on disk, settings, the command-line edge.
pub mod tuning;
pub mod clock;
pub mod fsutil;
pub mod config;
pub mod home;
pub mod cli;
