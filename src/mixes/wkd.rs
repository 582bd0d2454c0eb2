//! The OpenPGP Web Key Directory (WKD), read as GnuPG's `--locate-keys` reads it: the
//! domain's own word on which key belongs to one of its addresses.
//!
//! D7 makes a mix of the recipient's domain the exit for that domain's recipients; the
//! directory trusts that only for a key the domain serves from its WKD (issue 10). The lookup
//! is made for the mix's own address when the directory learns its key, never at send time:
//! a lookup then would tell the recipient's domain that mail is on its way.
//!
//! Advanced method first, `https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/H?l=LOCAL`,
//! then the direct method, `https://DOMAIN/.well-known/openpgpkey/hu/H?l=LOCAL`, with H the
//! z-base-32 of SHA-1 of the lowercased local part. HTTPS only. `--wkd-resolve
//! HOST:PORT:ADDR` (as curl's `--resolve`; ADDR may end in `:PORT2`) connects to ADDR
//! instead of asking DNS, and
//! `--wkd-ca-file` trusts the CAs of a PEM file instead of the built-in web roots.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::Cert;
use sequoia_openpgp as openpgp;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

use crate::mixes::address::MixAddress;
use crate::util::sha1;

/// Largest WKD answer read: a mix key is a few KiB.
const MAX_ANSWER: u64 = 1 << 20;

/// z-base-32 (RFC 6189 / WKD): 5 bits per character, most significant first.
pub fn zbase32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((acc >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The two WKD URLs of an address, advanced method first.
pub fn urls(address: &MixAddress) -> [String; 2] {
    let s = address.as_str();
    let (local, domain) = s.rsplit_once('@').expect("a mix address has an @");
    let domain = domain.to_ascii_lowercase();
    let hash = zbase32(&sha1::digest(local.to_lowercase().as_bytes()));
    [
        format!("https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{hash}?l={local}"),
        format!("https://{domain}/.well-known/openpgpkey/hu/{hash}?l={local}"),
    ]
}

/// The two URLs of the WKD policy file of an address's domain, advanced method first.
pub fn policy_urls(address: &MixAddress) -> [String; 2] {
    let domain = address.fqdn().to_ascii_lowercase();
    [
        format!("https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/policy"),
        format!("https://{domain}/.well-known/openpgpkey/policy"),
    ]
}

/// The fingerprints a WKD policy file names in `mixtasy-exit: FINGERPRINT` lines (spaces
/// in the fingerprint allowed, any case): the domain's explicit opt-in for its exit mix.
/// Other lines, the keywords of the WKD draft, are ignored, as WKD clients ignore ours.
pub fn exit_opt_ins(policy: &str) -> Vec<String> {
    policy
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("mixtasy-exit"))
        .map(|(_, v)| v.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// `HOST:PORT:ADDR` overrides of DNS, as curl's `--resolve`; ADDR may carry a port of its
/// own (`127.0.0.1:8443`, `[::1]:8443`), as curl's `--connect-to`, so that a WKD can be
/// served from an unprivileged port while the URL, the Host header and TLS name stay the same.
#[derive(Debug, Clone, Default)]
struct Overrides(Vec<(String, u16, SocketAddr)>);

impl Overrides {
    fn parse(specs: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        for spec in specs {
            let bad = || anyhow!("--wkd-resolve `{spec}` is not HOST:PORT:ADDR");
            let (host, rest) = spec.split_once(':').ok_or_else(bad)?;
            let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let to = match addr.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => SocketAddr::new(
                    addr.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().map_err(|_| bad())?,
                    port,
                ),
            };
            out.push((host.to_ascii_lowercase(), port, to));
        }
        Ok(Overrides(out))
    }
}

#[derive(Debug)]
struct OverrideResolver {
    overrides: Overrides,
    default: DefaultResolver,
}

impl Resolver for OverrideResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(443);
        if let Some((_, _, addr)) = self.overrides.0.iter().find(|(h, p, _)| *h == host && *p == port) {
            let mut out = self.empty();
            out.push(*addr);
            return Ok(out);
        }
        self.default.resolve(uri, config, timeout)
    }
}

/// How to reach WKDs: DNS overrides and trusted CAs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `HOST:PORT:ADDR` entries.
    pub resolve: Vec<String>,
    /// A PEM file of CA certificates to trust instead of the built-in web roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A WKD client.
pub struct Wkd {
    agent: ureq::Agent,
}

impl Wkd {
    /// `timeout` bounds each request.
    pub fn new(options: &Options, timeout: Duration) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &options.ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_cas(path)?));
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .https_only(true)
            .max_redirects(0)
            .tls_config(tls.build())
            .build();
        let resolver =
            OverrideResolver { overrides: Overrides::parse(&options.resolve)?, default: DefaultResolver::default() };
        Ok(Wkd {
            agent: ureq::Agent::with_parts(config, ureq::unversioned::transport::DefaultConnector::new(), resolver),
        })
    }

    /// The keys the WKD of `address`'s domain holds for it, only those with a user id
    /// naming the address. As the draft (and GnuPG) has it, the advanced method's host
    /// decides when it answers at all; the direct method is asked only when that host
    /// cannot be reached. `Ok(empty)`: the domain has none (404); an unreachable or broken
    /// WKD is an error.
    pub fn lookup(&self, address: &MixAddress) -> Result<Vec<Cert>> {
        let Some(body) = self.get_either(urls(address))? else { return Ok(Vec::new()) };
        let certs: Vec<Cert> = CertParser::from_bytes(&body)
            .context("the WKD answer is not OpenPGP")?
            .filter_map(|c| c.ok())
            .filter(|c| {
                c.userids().any(|u| {
                    u.userid().email().ok().flatten().is_some_and(|e| e.eq_ignore_ascii_case(address.as_str()))
                })
            })
            .collect();
        Ok(certs)
    }

    /// The fingerprints the domain of `address` opts in as its exit mix in its WKD policy
    /// file (`exit_opt_ins`; review of issue 10: a provider that publishes every user's key
    /// in its WKD would otherwise vouch for whoever registers mixtasy@provider). `Ok(empty)`:
    /// no policy file (404), or none named.
    pub fn exit_policy(&self, address: &MixAddress) -> Result<Vec<String>> {
        let Some(body) = self.get_either(policy_urls(address))? else { return Ok(Vec::new()) };
        Ok(exit_opt_ins(&String::from_utf8_lossy(&body)))
    }

    /// The advanced method's URL, and the direct one only when that host cannot be reached.
    fn get_either(&self, [advanced, direct]: [String; 2]) -> Result<Option<Vec<u8>>> {
        match self.get(&advanced) {
            Ok(answer) => Ok(answer),
            Err(e) if e.downcast_ref::<Unreachable>().is_some() => self.get(&direct),
            Err(e) => Err(e),
        }
    }

    /// One GET: `Ok(None)` on 404.
    fn get(&self, url: &str) -> Result<Option<Vec<u8>>> {
        let host = url.split('/').nth(2).unwrap_or(url);
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| anyhow::Error::new(Unreachable(format!("WKD {host} did not answer: {e}"))))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => bail!("WKD {host} answered HTTP {s}"),
        }
        Ok(Some(
            resp.body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_vec()
                .with_context(|| format!("reading the answer of WKD {host}"))?,
        ))
    }
}

/// A WKD host that could not be reached (name, connection, TLS): the advanced method falls
/// back to the direct one only then.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

fn read_cas(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.with_context(|| format!("parsing {}", path.display()))? {
            out.push(c);
        }
    }
    if out.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_draft() {
        // The example of draft-koch-openpgp-webkey-service: Joe.Doe@Example.ORG.
        assert_eq!(zbase32(&sha1::digest(b"joe.doe")), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
        let a = MixAddress::parse("mixtasy@Mix2.Test").unwrap();
        let [adv, direct] = urls(&a);
        let h = zbase32(&sha1::digest(b"mixtasy"));
        assert_eq!(adv, format!("https://openpgpkey.mix2.test/.well-known/openpgpkey/mix2.test/hu/{h}?l=mixtasy"));
        assert_eq!(direct, format!("https://mix2.test/.well-known/openpgpkey/hu/{h}?l=mixtasy"));
    }

    #[test]
    fn the_policy_file_opts_in_by_fingerprint() {
        let policy = "protocol-version: 15\n# comment\nmixtasy-exit: abcd 0123\nMIXTASY-EXIT:EF01\nmixtasy-exit:\nsubmission-address: x@y\n";
        assert_eq!(exit_opt_ins(policy), ["ABCD0123", "EF01"]);
        assert!(exit_opt_ins("").is_empty());
        let [adv, direct] = policy_urls(&MixAddress::parse("mixtasy@Mix2.Test").unwrap());
        assert_eq!(adv, "https://openpgpkey.mix2.test/.well-known/openpgpkey/mix2.test/policy");
        assert_eq!(direct, "https://mix2.test/.well-known/openpgpkey/policy");
    }

    #[test]
    fn resolve_overrides_parse() {
        let o =
            Overrides::parse(&["Mix.Test:8443:127.0.0.1".into(), "h:1:[::1]".into(), "h:443:127.0.0.1:9999".into()])
                .unwrap();
        assert_eq!(o.0[0], ("mix.test".into(), 8443, "127.0.0.1:8443".parse().unwrap()));
        assert_eq!(o.0[1].2, "[::1]:1".parse::<SocketAddr>().unwrap());
        assert_eq!(o.0[2].2, "127.0.0.1:9999".parse::<SocketAddr>().unwrap());
        for bad in ["mix.test", "mix.test:x:127.0.0.1", "mix.test:1:nothost"] {
            assert!(Overrides::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
