//! Tagging the unverified tail, as an attacker between mixes (or running one) would, through
//! the real binaries: every tag that survives CFB decryption is refused by the first honest
//! mix that sees it (`drop.tagged`), at any hop of a 4- and a 6-hop path, and the untagged
//! message still goes through. `badinput` covers the verified window; `src/format/layer.rs` and
//! `src/format/cfb.rs` the check itself and its false-alarm rate.

use mixtasy::format::sizes::OUTER;

use crate::util::*;

/// The three tags of issue 10, applied to a wire mail's binary body.
#[derive(Debug, Clone, Copy)]
enum Tag {
    /// Every byte from offset 24000 set to 0x41: ~400 equal cipher blocks.
    PeriodicTail,
    /// A 1 KiB chunk of the tail copied over another place on the CFB grid.
    CopiedChunk,
    /// One 16-byte cipher block copied over another, on the grid: no duplicate on the
    /// wire after this hop, but two revealed blocks whose XOR the attacker knows.
    CopiedBlock,
}

const TAGS: [Tag; 3] = [Tag::PeriodicTail, Tag::CopiedChunk, Tag::CopiedBlock];

/// Where the CFB grid of a D4 layer starts: after the PKESK packet, the SED header byte
/// and the 18-byte random prefix.
fn grid_start(body: &[u8]) -> usize {
    let pkesk = mixtasy::format::packet::read_packet(body).unwrap();
    body.len() - pkesk.rest.len() + 1 + mixtasy::format::cfb::PREFIX_LEN
}

impl Tag {
    fn apply(self, mail: &[u8]) -> Vec<u8> {
        let mut body = wire_body(mail);
        assert_eq!(body.len(), OUTER);
        let g = grid_start(&body);
        let block = |i: usize| g + 16 * i;
        match self {
            Tag::PeriodicTail => body[24000..].fill(0x41),
            Tag::CopiedChunk => body.copy_within(block(1520)..block(1584), block(1700)),
            Tag::CopiedBlock => body.copy_within(block(1600)..block(1601), block(1750)),
        }
        rewrap(mail, &body)
    }
}

/// The mail each hop of `wire`'s path receives, as (mix, mail), found with `mixtasyd peel`
/// (which keeps no replay state), and the original the exit reveals.
fn trace(net: &Net, wire: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut hops = Vec::new();
    let mut mail = wire.to_vec();
    loop {
        let mix = wire_to(&mail);
        let (out, _) = net.peel(&mix, &mail).unwrap_or_else(|e| panic!("honest hop {} at {mix}: {e}", hops.len()));
        hops.push((mix, mail));
        let forwarded = mixtasy::format::wire::parse(&out)
            .is_ok_and(|w| w.remailer_type.as_deref() == Some(mixtasy::format::wire::REMAILER_TYPE));
        if !forwarded {
            return (hops, out);
        }
        mail = out;
    }
}

fn lab(n: usize) -> Net {
    let mut net = Net::new(unix_now());
    for i in 1..=n {
        net.add_lab_node(&format!("mix{i}.test"), "middleman,exitpublic");
    }
    net.publish_all_to_client();
    net
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What a node handed on in total: forwarded to another mix's Maildir or delivered.
fn outbox_count(net: &Net) -> usize {
    let root = net.mail_root();
    std::fs::read_dir(&root)
        .unwrap()
        .map(|d| d.unwrap().path().join("new"))
        .map(|new| std::fs::read_dir(new).map_or(0, |d| d.count()))
        .sum()
}

/// A tag at each hop position of a 4- and a 6-hop path is refused by the mix at that
/// position, counted as `tagged` and nothing else; the same message untagged goes through
/// every hop and is delivered, so the check raised no false alarm on it.
#[test]
fn tags_at_every_hop_of_4_and_6_hop_paths_are_refused_at_the_first_honest_mix() {
    let net = lab(6);
    let mut tagged_at: std::collections::BTreeMap<String, i64> = Default::default();
    for hops in [4usize, 6] {
        let original = format!("To: bob@rcpt.test\r\nSubject: {hops} hops\r\n\r\ntagged at every hop\r\n").into_bytes();
        let wires = net.create(&original, &["--hops", &hops.to_string()]);
        assert_eq!(wires.len(), 1);
        let (path, revealed) = trace(&net, &wires[0]);
        assert_eq!(path.len(), hops);
        assert!(revealed.ends_with(b"tagged at every hop\r\n"), "the exit reveals the original");
        for (k, (mix, mail)) in path.iter().enumerate() {
            for tag in TAGS {
                let before = outbox_count(&net);
                net.inject(&tag.apply(mail));
                let line = net.round(mix);
                *tagged_at.entry(mix.clone()).or_default() += 1;
                let st = net.status(mix);
                assert_eq!(
                    st.get("drop.tagged"),
                    tagged_at[mix],
                    "{hops} hops, hop {k} at {mix}, {tag:?}: {line}\n{}",
                    st.0
                );
                assert_eq!(outbox_count(&net), before, "{hops} hops, hop {k}, {tag:?}: nothing leaves");
            }
        }
        // Untagged, the same message passes every hop and is delivered once.
        net.inject(&path[0].1);
        for (mix, _) in &path {
            net.round(mix);
            let st = net.status(mix);
            assert_eq!(st.get("drop.tagged"), tagged_at[mix], "the honest layer at {mix} is not refused");
            assert_eq!(st.get("drop.replay"), 0);
        }
        assert_eq!(net.delivered("bob@rcpt.test").len(), 1, "{hops} hops: delivered once");
        // The 6-hop run counts its own delivery.
        std::fs::remove_dir_all(net.mailbox("bob@rcpt.test")).unwrap();
    }
    for n in &net.nodes {
        assert_counters_add_up(&net.status(n));
    }
}

/// A malicious first mix tags what it forwards (its output is the second mix's input):
/// the honest second mix refuses each of the three tags, and forwards the untagged mail.
#[test]
fn a_malicious_first_mix_tagging_its_output_is_caught_by_the_honest_second() {
    let net = lab(5);
    let original = b"To: bob@rcpt.test\r\nSubject: first mix is evil\r\n\r\nbody\r\n".to_vec();
    for tag in TAGS {
        let wires = net.create(&original, &["--hops", "4"]);
        let first = wire_to(&wires[0]);
        net.inject(&wires[0]);
        net.round(&first);
        // The first mix (the attacker) forwarded into the second's Maildir; it rewrites that
        // file before the second mix's round, as it could have written it to begin with.
        let (second, file) = net
            .nodes
            .iter()
            .find_map(|n| {
                let new = net.mailbox(&format!("mixtasy@{n}")).join("new");
                let f = std::fs::read_dir(new).ok()?.next()?.ok()?.path();
                Some((n.clone(), f))
            })
            .expect("the first mix forwarded one message");
        let honest = std::fs::read(&file).unwrap();
        std::fs::write(&file, tag.apply(&honest)).unwrap();
        let before = net.status(&second).get("drop.tagged");
        let line = net.round(&second);
        let st = net.status(&second);
        assert_eq!(st.get("drop.tagged"), before + 1, "{tag:?} at {second}: {line}\n{}", st.0);
        assert_eq!(outbox_count(&net), 0, "{tag:?}: the second mix sent nothing on");
        // Without the tag, the same forwarded mail passes the honest second mix.
        net.inject(&honest);
        net.round(&second);
        assert_eq!(net.status(&second).get("drop.tagged"), before + 1);
        assert_eq!(outbox_count(&net), 1, "{tag:?}: the untagged mail goes on");
        for n in &net.nodes {
            for sub in ["new", "cur"] {
                for f in std::fs::read_dir(net.mailbox(&format!("mixtasy@{n}")).join(sub)).unwrap() {
                    std::fs::remove_file(f.unwrap().path()).unwrap();
                }
            }
        }
    }
}
