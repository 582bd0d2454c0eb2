//! Integration tests: one binary, one module per capability (ripgrep's layout).

#[macro_use]
mod util;

mod badinput;
mod crash;
mod docs;
mod gnupg;
mod keys;
mod round;
mod roundtrip;
mod keyserver;
mod faults;
mod flood;
mod postfix;
mod security;
mod abuse;
mod tagging;
mod takeover;
mod wkd;
mod exit;
mod exitq;
mod sender;
mod check;
mod layout;
mod install;
mod deb;
mod simulate;
mod ranked;
mod pinger;
mod pingnet;
mod nym;
mod nymclient;
