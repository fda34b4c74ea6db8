//! Breached-password check: the HaveIBeenPwned k-anonymity range API (only a 5-hex-digit
//! SHA-1 prefix leaves the server, with padding on) or an offline sorted SHA-1 list for
//! air-gapped clusters, with an explicit fail-open/fail-closed policy and a timeout.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use portcullis_crds::realm::{BreachCheck, BreachCheckMode, FailurePolicy};
use sha1::{Digest, Sha1};

use super::Violation;

/// What the breach source said about a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreachVerdict {
    /// Not in the breach corpus.
    Clean,
    /// Seen in breaches (`count` times, 0 when the offline list has no counts).
    Breached {
        /// Times seen.
        count: u64,
    },
    /// The source could not answer (timeout, HTTP error, unreadable list).
    Unavailable(String),
}

/// The policy decision for a verdict (pure): a violation, or none.
pub fn decide(
    field: &'static str,
    verdict: &BreachVerdict,
    failure_policy: FailurePolicy,
) -> Option<Violation> {
    match (verdict, failure_policy) {
        (BreachVerdict::Breached { .. }, _) => Some(Violation::new(
            field,
            "password_breached",
            "this password appears in known data breaches; choose another",
        )),
        (BreachVerdict::Unavailable(_), FailurePolicy::Closed) => Some(Violation::new(
            field,
            "breach_check_unavailable",
            "the breached-password check is unavailable; try again later",
        )),
        (BreachVerdict::Clean | BreachVerdict::Unavailable(_), _) => None,
    }
}

/// Uppercase hex SHA-1 of the password, as both sources index it.
pub fn sha1_hex(password: &str) -> String {
    Sha1::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The configured breach source.
#[derive(Clone, Debug)]
pub enum BreachChecker {
    /// No check.
    Disabled,
    /// A HaveIBeenPwned-compatible range API.
    Online {
        /// HTTP client with the timeout set.
        client: reqwest::Client,
        /// Base URL, without the trailing `/range/`.
        api_url: String,
    },
    /// A sorted SHA-1 list on disk.
    Offline {
        /// The list file.
        path: PathBuf,
    },
}

impl BreachChecker {
    /// Builds the checker for the realm's settings; `offline_list` is where the list file is
    /// mounted.
    pub fn new(config: &BreachCheck, offline_list: Option<PathBuf>) -> Result<Self, String> {
        match config.mode {
            BreachCheckMode::Disabled => Ok(Self::Disabled),
            BreachCheckMode::Online => {
                let client = reqwest::Client::builder()
                    .timeout(config.timeout.as_duration())
                    .connect_timeout(config.timeout.as_duration())
                    .user_agent("portcullis-authserver")
                    .build()
                    .map_err(|e| format!("cannot build the breach API client: {e}"))?;
                Ok(Self::Online {
                    client,
                    api_url: config.api_url.trim_end_matches('/').to_owned(),
                })
            }
            BreachCheckMode::Offline => {
                let path = offline_list
                    .ok_or("breachCheck mode Offline needs the list file (--breach-list)")?;
                if !path.is_file() {
                    return Err(format!("breach list {} is not a file", path.display()));
                }
                Ok(Self::Offline { path })
            }
        }
    }

    /// Looks the password up.
    pub async fn check(&self, password: &str) -> BreachVerdict {
        self.check_sha1(&sha1_hex(password)).await
    }

    /// Looks a password up by its uppercase hex SHA-1 ([`sha1_hex`]): a background check
    /// holds only the hash, never the password.
    pub async fn check_sha1(&self, hash: &str) -> BreachVerdict {
        if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return BreachVerdict::Unavailable("not a SHA-1 hex digest".into());
        }
        let hash = hash.to_ascii_uppercase();
        match self {
            Self::Disabled => BreachVerdict::Clean,
            Self::Online { client, api_url } => {
                let (prefix, suffix) = hash.split_at(5);
                match fetch_range(client, api_url, prefix).await {
                    Ok(body) => match parse_range(&body, suffix) {
                        Some(0) | None => BreachVerdict::Clean,
                        Some(count) => BreachVerdict::Breached { count },
                    },
                    Err(reason) => BreachVerdict::Unavailable(reason),
                }
            }
            Self::Offline { path } => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || search_sorted_list(&path, &hash)).await {
                    Ok(Ok(Some(count))) => BreachVerdict::Breached { count },
                    Ok(Ok(None)) => BreachVerdict::Clean,
                    Ok(Err(e)) => {
                        BreachVerdict::Unavailable(format!("breach list unreadable: {e}"))
                    }
                    Err(e) => BreachVerdict::Unavailable(format!("breach list search failed: {e}")),
                }
            }
        }
    }
}

async fn fetch_range(
    client: &reqwest::Client,
    api_url: &str,
    prefix: &str,
) -> Result<String, String> {
    let response = client
        .get(format!("{api_url}/range/{prefix}"))
        .header("Add-Padding", "true")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    if !response.status().is_success() {
        return Err(format!("breach API answered {}", response.status()));
    }
    response.text().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_owned()
        } else {
            format!("body: {e}")
        }
    })
}

/// Finds `suffix` in a range answer (`SUFFIX:COUNT` lines). Padding lines have count 0.
pub fn parse_range(body: &str, suffix: &str) -> Option<u64> {
    body.lines().find_map(|line| {
        let (s, count) = line.trim().split_once(':')?;
        s.eq_ignore_ascii_case(suffix)
            .then(|| count.trim().parse().unwrap_or(0))
    })
}

/// Binary search of a file of uppercase SHA-1 hashes sorted ascending, one per line as `HASH`
/// or `HASH:COUNT`. Reads O(log n) lines; the file may be tens of gigabytes.
pub fn search_sorted_list(path: &std::path::Path, hash: &str) -> std::io::Result<Option<u64>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    // Reads the first whole line starting at or after `offset`; returns its start and text.
    let mut line_at = |offset: u64, line: &mut String| -> std::io::Result<Option<u64>> {
        let mut start = offset;
        if offset > 0 {
            reader.seek(SeekFrom::Start(offset - 1))?;
            let mut skipped = Vec::new();
            reader.read_until(b'\n', &mut skipped)?;
            start = offset - 1 + skipped.len() as u64;
        } else {
            reader.seek(SeekFrom::Start(0))?;
        }
        line.clear();
        if reader.read_line(line)? == 0 {
            return Ok(None);
        }
        Ok(Some(start))
    };
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(start) = line_at(mid, &mut line)? else {
            hi = mid;
            continue;
        };
        if start >= hi {
            hi = mid;
            continue;
        }
        let entry = line.trim();
        let (entry_hash, count) = entry.split_once(':').unwrap_or((entry, "0"));
        match entry_hash.to_ascii_uppercase().as_str().cmp(hash) {
            std::cmp::Ordering::Equal => return Ok(Some(count.trim().parse().unwrap_or(0))),
            std::cmp::Ordering::Less => lo = start + line.len() as u64,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_uppercase_hex() {
        assert_eq!(
            sha1_hex("password"),
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
        );
    }

    #[test]
    fn range_lines_match_case_insensitively_and_padding_counts_zero() {
        let body = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:3861493\r\nFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:0\r\n";
        assert_eq!(
            parse_range(body, "1e4c9b93f3f0682250b6cf8331b7ee68fd8"),
            Some(3_861_493)
        );
        assert_eq!(
            parse_range(body, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"),
            Some(0)
        );
        assert_eq!(
            parse_range(body, "0000000000000000000000000000000000A"),
            None
        );
    }

    #[test]
    fn the_sorted_list_finds_every_entry_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        let mut hashes: Vec<String> = (0..500).map(|i| sha1_hex(&format!("pw{i}"))).collect();
        hashes.sort();
        let text: String = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{h}:{}\n", i + 1))
            .collect();
        std::fs::write(&path, text).unwrap();
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(
                search_sorted_list(&path, h).unwrap(),
                Some(i as u64 + 1),
                "entry {i}"
            );
        }
        for absent in [
            "0000000000000000000000000000000000000000",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            &sha1_hex("nope"),
        ] {
            assert_eq!(search_sorted_list(&path, absent).unwrap(), None, "{absent}");
        }
    }

    #[test]
    fn the_failure_policy_decides_what_an_outage_means() {
        let down = BreachVerdict::Unavailable("timeout".into());
        assert_eq!(decide("p", &down, FailurePolicy::Open), None);
        assert_eq!(
            decide("p", &down, FailurePolicy::Closed).unwrap().code,
            "breach_check_unavailable"
        );
        assert_eq!(
            decide(
                "p",
                &BreachVerdict::Breached { count: 3 },
                FailurePolicy::Open
            )
            .unwrap()
            .code,
            "password_breached"
        );
        assert_eq!(
            decide("p", &BreachVerdict::Clean, FailurePolicy::Closed),
            None
        );
    }
}
