//! The container's termination message, the one writer of it: Kubernetes reads the file at the
//! container's `terminationMessagePath` (`/dev/termination-log`, `--termination-log`) when it
//! stops, and the operator reads that: the JSON summary of `retention run`, or why `serve`
//! refused to start, `{"reason": ..., "message": ...}` (`KeysMismatch` becomes a condition of
//! the realm).

use std::path::Path;

/// Kubernetes keeps at most this many bytes of a termination message.
pub const MAX_BYTES: usize = 4096;

/// Writes `message` to `path` when that file exists: Kubernetes creates it in every container,
/// elsewhere there is nothing to write. A failed write is logged, never fatal (the message
/// also went to stderr).
pub fn write(path: &Path, message: &str) {
    if !path.is_file() {
        return;
    }
    if let Err(error) = std::fs::write(path, message) {
        tracing::warn!(path = %path.display(), error = %error, "cannot write the termination message");
    }
}

/// Why the server refused to start, as the operator reads it: `{"reason", "message"}`, the
/// message shortened (at a character boundary, ending in `…`) so the JSON fits [`MAX_BYTES`].
pub fn refusal(reason: &str, message: &str) -> String {
    let json =
        |message: &str| serde_json::json!({"reason": reason, "message": message}).to_string();
    let whole = json(message);
    if whole.len() <= MAX_BYTES {
        return whole;
    }
    // The longest prefix that fits (escaping makes JSON longer than the text: search).
    let shortened = |keep: usize| json(&format!("{}…", &message[..keep]));
    let (mut fits, mut too_long) = (0, message.len());
    while too_long - fits > 1 {
        let mut middle = fits + (too_long - fits) / 2;
        while !message.is_char_boundary(middle) {
            middle -= 1;
        }
        if middle == fits {
            break;
        }
        if shortened(middle).len() <= MAX_BYTES {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    shortened(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_the_json_the_operator_reads() {
        let json: serde_json::Value =
            serde_json::from_str(&refusal("KeysMismatch", "pepper \"v1\" changed")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"reason": "KeysMismatch", "message": "pepper \"v1\" changed"})
        );
    }

    #[test]
    fn a_long_message_is_shortened_to_fit_at_a_character_boundary() {
        for filler in ["é", "\"", "a"] {
            let long = filler.repeat(5_000);
            let text = refusal("KeysMismatch", &long);
            assert!(text.len() <= MAX_BYTES, "{filler}: {}", text.len());
            assert!(text.len() > MAX_BYTES - 16, "{filler}: {}", text.len());
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let message = json["message"].as_str().unwrap();
            assert!(message.ends_with('…'));
            assert!(long.starts_with(message.trim_end_matches('…')));
        }
    }

    #[test]
    fn only_an_existing_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("termination-log");
        write(&absent, "x");
        assert!(!absent.exists(), "outside Kubernetes nothing is created");
        std::fs::write(&absent, "").unwrap();
        write(&absent, "{}");
        assert_eq!(std::fs::read_to_string(&absent).unwrap(), "{}");
    }
}
