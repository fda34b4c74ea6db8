//! Reading docs/webhooks.md, shared by the test binaries.

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;

/// A repository path from the crate directory.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

pub fn webhooks_md() -> String {
    std::fs::read_to_string(repo_path("docs/webhooks.md")).unwrap()
}

/// The fenced blocks that follow a line starting with `marker`, contents without the fences.
pub fn blocks_after(doc: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with(marker) {
            continue;
        }
        let fence = lines.next().unwrap();
        assert!(
            fence.starts_with("```"),
            "no fenced block after {marker}: {fence}"
        );
        let mut block = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            block.push_str(l);
            block.push('\n');
        }
        out.push(block);
    }
    out
}

/// A worked signature example of the doc.
#[derive(Debug)]
pub struct Example {
    /// The secret file (one line per `secret:`).
    pub secrets: String,
    pub t: i64,
    pub body: String,
    pub signed: String,
    pub header: String,
}

pub fn signature_examples() -> Vec<Example> {
    let doc = webhooks_md();
    let examples: Vec<Example> = blocks_after(&doc, "<!-- checked-example")
        .iter()
        .map(|block| {
            let field = |name: &str| -> Vec<String> {
                block
                    .lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .map(str::to_owned)
                    .collect()
            };
            let one = |name: &str| {
                let v = field(name);
                assert_eq!(v.len(), 1, "{name} in {block}");
                v[0].clone()
            };
            Example {
                secrets: field("secret: ").join("\n"),
                t: one("t: ").parse().unwrap(),
                body: one("body: "),
                signed: one("signed: "),
                header: one("Portcullis-Signature: "),
            }
        })
        .collect();
    assert!(examples.len() >= 2, "the doc lost its worked examples");
    examples
}
