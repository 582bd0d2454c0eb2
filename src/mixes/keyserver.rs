//! OpenPGP keyservers over HKP (thesis 6.3.2, D8): publishing the mix key and discovering
//! every mix.
//!
//! Discovery asks for the word `mixtasy` and fetches every key found in one request: the
//! query reveals that Mixtasy is used, never which mixes a path will take (the thesis'
//! "retrieve all found keys"). Keyserver search matches words, so what comes back is then
//! filtered exactly by the D8 check. Plain HKP only (`hkp://`, port 11371 by default).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The word every mix user id contains (`mixtasy@FQDN`).
pub const SEARCH_WORD: &str = "mixtasy";
/// Largest answer read from a keyserver: every mix key many times over.
const MAX_ANSWER: u64 = 32 << 20;

/// The keyserver refuses the search as too large (SKS caps an answer at 500 keys and
/// answers HTTP 500 "Too many responses"): discovery must take the keys elsewhere.
#[derive(Debug, Clone, thiserror::Error)]
#[error("keyserver {0} refuses the search as too large (more mix keys than it answers at once)")]
pub struct TooManyResults(pub String);

#[derive(Debug, Clone)]
pub struct Keyserver {
    /// What requests go to (`http://host:port`).
    base: String,
    /// What errors name: the URL as the user wrote it.
    name: String,
    agent: ureq::Agent,
}

impl Keyserver {
    /// Parses `hkp://host[:port]` (or `http://…`); `timeout` bounds every request.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let rest = url
            .strip_prefix("hkp://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| anyhow!("keyserver `{url}` is not hkp://host[:port]"))?
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            bail!("keyserver `{url}` is not hkp://host[:port]");
        }
        let hostport = if rest.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            rest.to_string()
        } else {
            format!("{rest}:11371")
        };
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        Ok(Keyserver { base: format!("http://{hostport}"), name: format!("hkp://{hostport}"), agent })
    }

    /// Uploads an armored cert (`POST /pks/add`); a keyserver merges it with what it has.
    pub fn publish(&self, armored: &str) -> Result<()> {
        let resp = self
            .agent
            .post(&format!("{}/pks/add", self.base))
            .send_form([("keytext", armored)])
            .with_context(|| format!("keyserver {} did not answer", self.name))?;
        if !resp.status().is_success() {
            bail!("keyserver {} refused the key (HTTP {})", self.name, resp.status().as_u16());
        }
        Ok(())
    }

    /// Fetches every key whose user ids contain the word `mixtasy`, as the keyserver's
    /// armored answer. `Ok(None)` when it has none (HTTP 404, as SKS answers).
    pub fn fetch_all(&self) -> Result<Option<Vec<u8>>> {
        let mut resp = self.lookup("get")?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            500 => {
                // SKS says why only to an index search ("Too many responses"); a get gets
                // "Exception raised". The same word asked again reveals nothing more.
                if says_too_many(&mut resp)
                    || self.lookup("index").is_ok_and(|mut r| r.status().as_u16() == 500 && says_too_many(&mut r))
                {
                    return Err(TooManyResults(self.name.clone()).into());
                }
                bail!("keyserver {} answered HTTP 500", self.name)
            }
            s => bail!("keyserver {} answered HTTP {s}", self.name),
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .with_context(|| format!("reading the answer of keyserver {}", self.name))?;
        if !body.windows(24).any(|w| w == b"BEGIN PGP PUBLIC KEY BLO") {
            bail!("keyserver {} answered something that is not a key block", self.name);
        }
        Ok(Some(body))
    }
}

impl Keyserver {
    /// `GET /pks/lookup?op=OP&options=mr&search=mixtasy`.
    fn lookup(&self, op: &str) -> Result<ureq::http::Response<ureq::Body>> {
        self.agent
            .get(&format!("{}/pks/lookup", self.base))
            .query("op", op)
            .query("options", "mr")
            .query("search", SEARCH_WORD)
            .call()
            .with_context(|| format!("keyserver {} did not answer", self.name))
    }
}

/// Whether an error answer says the search matched too many keys.
fn says_too_many(resp: &mut ureq::http::Response<ureq::Body>) -> bool {
    let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
    String::from_utf8_lossy(&body).to_ascii_lowercase().contains("too many")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn urls() {
        let t = Duration::from_secs(1);
        assert_eq!(Keyserver::new("hkp://127.0.0.1", t).unwrap().base, "http://127.0.0.1:11371");
        assert_eq!(Keyserver::new("hkp://keys.test:8080/", t).unwrap().base, "http://keys.test:8080");
        for bad in ["keys.test", "https://keys.test", "hkp://", "hkp://a/b", "hkp://u@h"] {
            assert!(Keyserver::new(bad, t).is_err(), "{bad}");
        }
    }

    /// A one-shot HTTP server on loopback answering `answer` to one request.
    fn serve(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("hkp://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut req = vec![0u8; 65536];
            let n = s.read(&mut req).unwrap_or(0);
            s.write_all(answer).unwrap();
            req.truncate(n);
            req
        });
        (url, h)
    }

    #[test]
    fn garbage_and_down_are_errors() {
        let (url, h) = serve(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let ks = Keyserver::new(&url, Duration::from_secs(5)).unwrap();
        assert!(ks.fetch_all().unwrap_err().to_string().contains("not a key block"));
        let req = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /pks/lookup?op=get&options=mr&search=mixtasy "), "{req}");
        let (url, h) = serve(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(Keyserver::new(&url, Duration::from_secs(5)).unwrap().fetch_all().unwrap().is_none());
        h.join().unwrap();
        let (url, h) = serve(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 18\r\n\r\nToo many responses");
        assert!(Keyserver::new(&url, Duration::from_secs(5)).unwrap().fetch_all().unwrap_err().is::<TooManyResults>());
        h.join().unwrap();
        let (url, h) = serve(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops");
        let e = Keyserver::new(&url, Duration::from_secs(5)).unwrap().fetch_all().unwrap_err();
        assert!(!e.is::<TooManyResults>() && e.to_string().contains("HTTP 500"));
        h.join().unwrap();
        // Nothing listens on this port (bound, then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(Keyserver::new(&format!("hkp://127.0.0.1:{port}"), Duration::from_secs(2))
            .unwrap()
            .fetch_all()
            .is_err());
    }
}
