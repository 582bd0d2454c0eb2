//! Header parsing: revealed mix messages (D2/D3, strict), delivered mail (D5), and an
//! original's header at the exit (recipients, copied fields, the footer), the sender's
//! header allowlist, and block
//! requests and confirmations.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mixtasy::verification::check(data);
    let _ = mixtasy::message::parse(data);
    let _ = mixtasy::wire::parse(data);
    let _ = mixtasy::create::recipient_domain(data);
    let _ = mixtasy::block::parse(data);
    let _ = mixtasy::headers::filter(data, &["x-keep".to_string()]);
    let _ = mixtasy::exit::prepare_notice(data);
    let address = mixtasy::address::MixAddress::for_fqdn("exit.test").unwrap();
    let policy = mixtasy::exit::Policy {
        address: &address,
        modes: mixtasy::modes::Modes::parse("exitpublic").unwrap(),
        local_domains: &[],
        max_recipients: 5,
        operator: "postmaster@exit.test",
        from: "nobody@exit.test",
    };
    let stamp = mixtasy::stamp::Stamp { date: std::time::SystemTime::UNIX_EPOCH, message_id: "<x@exit.test>".into() };
    if let Ok(d) = mixtasy::exit::prepare(data, &policy, &stamp) {
        assert!(!d.recipients.is_empty() && d.recipients.len() <= 5);
        assert!(d.recipients.iter().all(|r| !mixtasy::address::relays(r)));
    }
});
