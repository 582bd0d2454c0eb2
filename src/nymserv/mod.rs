//! The nym server `mixtasy-nymd` (issue 15, the Zax model of crooks/nymserv): pseudonymous
//! addresses `name@nymdomain` that receive mail into a shared newsgroup (or through the
//! Mixtasy network to a mailbox) and send through the local MTA, while nobody, the operator
//! included, can link a nym to its owner. One run over the Maildir Postfix fills for the
//! whole nym domain, like the mix node's round.

// The server's home and settings.
pub mod config;
pub mod home;
pub mod store;

// One request or mail through the server, in processing order.
pub mod blocking;
pub mod deliver;
pub mod hsub;
pub mod pgp;
pub mod request;
pub mod run;
