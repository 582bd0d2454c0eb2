//! Integration tests: one binary, one module per capability (ripgrep's layout).

#[macro_use]
mod util;

mod abuse;
mod badinput;
mod check;
mod crash;
mod deb;
mod docs;
mod exit;
mod exitq;
mod faults;
mod flood;
mod gnupg;
mod install;
mod keys;
mod keyserver;
mod layout;
mod nym;
mod nymclient;
mod nympostfix;
mod pinger;
mod pingnet;
mod postfix;
mod ranked;
mod round;
mod roundtrip;
mod security;
mod sender;
mod simulate;
mod tagging;
mod takeover;
mod wkd;
