//! Finding the nym that signed a request (issue 15), over a store of 1000 nyms: the key
//! index (`store::by_handles`, then the one key it names parsed) against the scan it
//! replaced (every nym read and its key parsed until one holds the signature's issuer).
//! Reports the time per lookup of each and their ratio, and the keys parsed per lookup.
//!
//! Run with `cargo bench --bench nymlookup` (release profile) or `scripts/bench`; nothing
//! here asserts a timing. `MIXTASY_BENCH_QUICK=1`: 200 nyms.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use mixtasy::batch::state::State;
use mixtasy::nymserv::pgp;
use mixtasy::nymserv::store::{self, Nym};
use sequoia_openpgp::cert::CertBuilder;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::{Cert, KeyHandle};

/// The scan before the index: every nym's key parsed until one holds `issuer`.
fn scan(st: &State, issuer: &KeyHandle, parsed: &mut usize) -> Option<Nym> {
    store::all(st.conn()).unwrap().into_iter().find(|n| {
        *parsed += 1;
        pgp::cert(&n.cert).is_ok_and(|c| c.keys().any(|k| k.key().key_handle().aliases(issuer)))
    })
}

/// The index: the nyms the issuer names, and only their keys parsed.
fn indexed(st: &State, issuer: &KeyHandle, parsed: &mut usize) -> Option<Nym> {
    let nyms = store::by_handles(st.conn(), &pgp::handle_names(issuer)).unwrap();
    for n in &nyms {
        *parsed += 1;
        black_box(pgp::cert(&n.cert).unwrap());
    }
    nyms.into_iter().next()
}

fn main() {
    let quick = std::env::var_os("MIXTASY_BENCH_QUICK").is_some();
    let count = if quick { 200 } else { 1000 };
    let lookups = 200;
    println!("nym signer lookup over {count} nyms, {lookups} lookups of random nyms' signing keys");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut st = State::in_memory_with(store::MIGRATIONS).unwrap();
    let mut signing: Vec<KeyHandle> = Vec::new();
    let tx = st.transaction().unwrap();
    for i in 0..count {
        let name = format!("nym{i}");
        let (cert, _): (Cert, _) = CertBuilder::general_purpose(Some(format!("{name}@nym.test"))).generate().unwrap();
        let n = Nym {
            name: name.clone(),
            fingerprint: cert.fingerprint().to_hex(),
            cert: cert.to_vec().unwrap(),
            hsub: String::new(),
            symmetric: String::new(),
            acksend: true,
            delivery: "newsgroup".into(),
            active: true,
            created: t0,
            last_signed: t0,
        };
        store::put(&tx, &n).unwrap();
        store::index_keys(&tx, &name, &pgp::handles(&cert, SystemTime::now())).unwrap();
        // What GnuPG's signatures name: the signing (sub)key's id.
        let key = cert.keys().subkeys().find(|k| k.key().pk_algo().for_signing()).unwrap().key().keyid();
        signing.push(key.into());
    }
    tx.commit().unwrap();
    let picks: Vec<usize> = (0..lookups).map(|_| rand::random_range(0..count)).collect();
    let mut results = Vec::new();
    for (what, f) in [("scan (before)", scan as fn(&State, &KeyHandle, &mut usize) -> Option<Nym>), ("index", indexed)]
    {
        let mut parsed = 0;
        let start = Instant::now();
        for &i in &picks {
            let n = f(&st, &signing[i], &mut parsed).expect("the signer is found");
            assert_eq!(n.name, format!("nym{i}"));
        }
        let per = start.elapsed() / lookups as u32;
        println!(
            "{what:>14}: {:>9.3} ms per lookup, {:>7.1} keys parsed per lookup",
            per.as_secs_f64() * 1e3,
            parsed as f64 / lookups as f64
        );
        results.push(per);
    }
    println!("ratio scan/index: {:.0}x", results[0].as_secs_f64() / results[1].as_secs_f64());
}
