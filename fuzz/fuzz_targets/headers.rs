//! Header parsing: revealed mix messages (D2/D3, strict), delivered mail (D5), and an
//! original's header at the exit (recipients, copied fields, the footer), the sender's
//! header allowlist, and block
//! requests and confirmations.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mixtasy::format::verification::check(data);
    let _ = mixtasy::format::message::parse(data);
    let _ = mixtasy::format::wire::parse(data);
    let _ = mixtasy::sender::create::recipient_domain(data);
    let _ = mixtasy::abuse::block::parse(data);
    let _ = mixtasy::format::headers::filter(data, &["x-keep".to_string()]);
    let _ = mixtasy::node::exit::prepare_notice(data);
    let address = mixtasy::mixes::address::MixAddress::for_fqdn("exit.test").unwrap();
    let policy = mixtasy::node::exit::Policy {
        address: &address,
        modes: mixtasy::mixes::modes::Modes::parse("exitpublic").unwrap(),
        local_domains: &[],
        max_recipients: 5,
        operator: "postmaster@exit.test",
        from: "nobody@exit.test",
    };
    let stamp = mixtasy::batch::stamp::Stamp { date: std::time::SystemTime::UNIX_EPOCH, message_id: "<x@exit.test>".into() };
    if let Ok(d) = mixtasy::node::exit::prepare(data, &policy, &stamp) {
        assert!(!d.recipients.is_empty() && d.recipients.len() <= 5);
        assert!(d.recipients.iter().all(|r| !mixtasy::mixes::address::relays(r)));
    }
});
