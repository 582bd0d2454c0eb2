//! The nym's owner's side of `mixtasy-nymd` (`mixtasy nym …`, issue 15): the nym's key and
//! settings in the client home, the requests to config@ and send@ (plain OpenPGP, signed by
//! the nym and encrypted to the server, exactly what `gpg --sign --encrypt` makes), and
//! fetching: every article of the shared group, the ones whose hSub matches opened and
//! written into a Maildir the user's mail program reads.

pub mod fetch;
pub mod profile;
pub mod request;
