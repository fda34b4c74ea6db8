//! Verify: one walk over the rows in seq order (fed page by page) that names every finding.

use std::collections::BTreeMap;

use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::chain::{
    AuditRow, Hash, Head, PRUNED, PSEUDONYMIZED, genesis, hex, mac, mac_input, pseudonym_mac_valid,
    row_personal_digest, rows_digest,
};
use crate::keys::AuditKeys;

/// One problem found in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Row `seq` is not what was written. `what`: `mac` (a hashed field or the hash itself),
    /// `personal_fields` (they no longer match the salted digest), `prev_hash` (a valid MAC
    /// linking to another predecessor), `key_version` (signed by no known key),
    /// `expected_head` (the row at a head recorded elsewhere has another hash), `pseudonym` (a
    /// pseudonymised row's ids, personal columns, reference or group are not what its
    /// pseudonym MAC vouches for) or `rows_digest` (the rows pseudonymised under this
    /// `audit_pseudonymized` record are not those it counted: one was restored, moved or
    /// removed).
    Changed {
        /// The row.
        seq: i64,
        /// Which check failed.
        what: &'static str,
    },
    /// Row `seq` was never appended: it lies past the head, or before the pruned anchor.
    Inserted {
        /// The row.
        seq: i64,
    },
    /// Rows `first..=last` are missing: a gap, a cut tail, or a prefix gone without a matching
    /// `audit_pruned` record.
    Deleted {
        /// The first missing seq.
        first: i64,
        /// The last missing seq.
        last: i64,
    },
    /// Row `seq` is pseudonymised but names no later `audit_pseudonymized` record, or the record
    /// it names is missing.
    PseudonymizedWithoutRecord {
        /// The row.
        seq: i64,
    },
    /// The head names the last row but not its hash.
    HeadMismatch {
        /// The head's seq.
        head_seq: i64,
        /// The last row's seq.
        last_seq: i64,
    },
}

/// The head as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportHead {
    /// The head's seq.
    pub seq: i64,
    /// Its hash in hex; `None` before the first append.
    pub hash: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No findings.
    pub ok: bool,
    /// Rows looked at.
    pub checked: u64,
    /// The head verified against.
    pub head: ReportHead,
    /// Whether the row at the expected head was found and compared; `None` when none was
    /// given. `Some(false)` without a `Deleted` finding means it lies in the pruned prefix, so
    /// nothing was checked against it: pass a newer one.
    pub expected_head_checked: Option<bool>,
    /// The findings in the order met, at most [`MAX_FINDINGS`]: a wrong or lost key makes
    /// every row a finding, and the answer must stay small.
    pub findings: Vec<Finding>,
    /// How many findings there were in all, listed or not.
    pub findings_total: u64,
}

/// Most findings a report lists.
pub const MAX_FINDINGS: usize = 1000;

/// The pseudonymised rows naming one record, gathered until the record itself is met (a record
/// follows its rows), so only groups still open take memory.
#[derive(Default)]
struct Group {
    reference: String,
    mixed_references: bool,
    seqs: Vec<i64>,
}

/// The newest `audit_pruned` record with a valid MAC.
struct PrunedRecord {
    through_seq: i64,
    through_hash: String,
}

/// The incremental verifier: feed rows in ascending seq with [`Verifier::push`] (any page
/// size), then [`Verifier::finish`]. Memory grows only with the pseudonymised rows whose record
/// is still ahead, and with at most [`MAX_FINDINGS`] findings.
pub struct Verifier<'a> {
    keys: &'a AuditKeys,
    head: Head,
    expect_head: Option<(i64, Hash)>,
    expect_head_seen: bool,
    next: i64,
    prev: Hash,
    last_seq: i64,
    checked: u64,
    findings: Vec<Finding>,
    findings_total: u64,
    groups: BTreeMap<i64, Group>,
    newest_pruned: Option<PrunedRecord>,
}

impl<'a> Verifier<'a> {
    /// Starts at the head's anchor (`base_seq + 1`, after `base_hash`), or at genesis.
    pub fn new(head: Head, keys: &'a AuditKeys, realm: &str) -> Self {
        let prev = if head.base_seq > 0 {
            // A missing anchor hash cannot link to anything; the pruned-record check names it.
            head.base_hash.unwrap_or([0; 32])
        } else {
            genesis(realm)
        };
        Self {
            keys,
            head,
            expect_head: None,
            expect_head_seen: false,
            next: head.base_seq.saturating_add(1),
            prev,
            last_seq: head.base_seq,
            checked: 0,
            findings: Vec::new(),
            findings_total: 0,
            groups: BTreeMap::new(),
            newest_pruned: None,
        }
    }

    /// Also checks a head recorded elsewhere (the SIEM's log line): row `seq` must exist with
    /// `hash`. This catches a cut tail whose head was rewritten to match.
    pub fn expect_head(mut self, seq: i64, hash: Hash) -> Self {
        self.expect_head = Some((seq, hash));
        self
    }

    /// Checks the next row.
    pub fn push(&mut self, row: &AuditRow) {
        self.push_row(row, true);
    }

    /// Checks the next row, which the store could not read back as written (a time PostgreSQL
    /// keeps but no timestamp type can hold, an unknown outcome): `row` carries placeholders, so
    /// it is named as changed (or inserted, past the head) whatever its MAC says, and its stored
    /// hash still links the next row.
    pub fn push_unreadable(&mut self, row: &AuditRow) {
        self.push_row(row, false);
    }

    /// [`Verifier::push`] or [`Verifier::push_unreadable`], as the store read the row.
    pub(crate) fn push_checked(&mut self, row: &AuditRow, readable: bool) {
        self.push_row(row, readable);
    }

    /// Counts a finding, and keeps it while the list is short.
    fn note(&mut self, finding: Finding) {
        self.findings_total += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        }
    }

    /// The findings so far (those [`Verifier::finish`] adds are not among them).
    pub(crate) fn findings(&self) -> &[Finding] {
        &self.findings
    }

    fn push_row(&mut self, row: &AuditRow, readable: bool) {
        self.checked += 1;
        if row.seq < self.next {
            // Only rows at or before the anchor can come early (seq is the primary key):
            // those were pruned, so this one was put back or made up.
            self.note(Finding::Inserted { seq: row.seq });
            return;
        }
        let after_gap = row.seq > self.next;
        // Only seqs the head has counted can have been deleted: a gap past the head was never
        // written, so a row planted there is named as inserted and nothing else.
        let deleted_last = (row.seq - 1).min(self.head.seq);
        if after_gap && self.next <= deleted_last {
            self.note(Finding::Deleted {
                first: self.next,
                last: deleted_last,
            });
        }
        let past_head = row.seq > self.head.seq;
        let mac_ok = self.check_row(row, past_head, after_gap, readable);
        if mac_ok {
            self.note_records(row);
        }
        if let Some((seq, hash)) = self.expect_head
            && seq == row.seq
        {
            self.expect_head_seen = true;
            if !bool::from(row.hash.ct_eq(&hash)) {
                self.note(Finding::Changed {
                    seq,
                    what: "expected_head",
                });
            }
        }
        if row.salt.is_none() {
            self.check_pseudonym(row);
        } else if row.pseudonym_of.is_some()
            || row.pseudonym_seq.is_some()
            || row.pseudonym_mac.is_some()
        {
            // Pseudonymisation always drops the salt: these were set by hand, and would make the
            // export call an intact row pseudonymised.
            self.note(Finding::Changed {
                seq: row.seq,
                what: "pseudonym",
            });
        }
        // The stored hash links the next row even when this one failed, so one edit gives one
        // finding instead of a cascade.
        self.prev = row.hash;
        // Saturating: seq comes from the table, and a planted i64::MAX must not overflow.
        self.next = row.seq.saturating_add(1);
        self.last_seq = row.seq;
    }

    /// The MAC, digest and link checks of one row; true when its MAC is valid.
    fn check_row(
        &mut self,
        row: &AuditRow,
        past_head: bool,
        after_gap: bool,
        readable: bool,
    ) -> bool {
        let seq = row.seq;
        let Some(key) = self.keys.get(&row.key_version) else {
            self.note(if past_head {
                Finding::Inserted { seq }
            } else {
                Finding::Changed {
                    seq,
                    what: "key_version",
                }
            });
            return false;
        };
        if let Some(digest) = row_personal_digest(row)
            && !bool::from(digest.ct_eq(&row.personal_digest))
        {
            self.note(Finding::Changed {
                seq,
                what: "personal_fields",
            });
        }
        // A placeholder could happen to equal the real value, so an unreadable row never passes.
        let mac_ok = readable && bool::from(mac(key, &mac_input(row)).ct_eq(&row.hash));
        let linked = bool::from(row.prev_hash.ct_eq(&self.prev));
        if past_head {
            self.note(Finding::Inserted { seq });
        } else if !mac_ok {
            self.note(Finding::Changed { seq, what: "mac" });
        } else if !linked && !after_gap {
            // A gap already explains a broken link.
            self.note(Finding::Changed {
                seq,
                what: "prev_hash",
            });
        }
        mac_ok && !past_head
    }

    /// A pseudonymised row must carry a valid pseudonym MAC and name a later record, whose group
    /// it joins.
    fn check_pseudonym(&mut self, row: &AuditRow) {
        let seq = row.seq;
        let (Some(reference), Some(record)) = (&row.pseudonym_of, row.pseudonym_seq) else {
            self.note(Finding::PseudonymizedWithoutRecord { seq });
            return;
        };
        if record <= seq {
            self.note(Finding::PseudonymizedWithoutRecord { seq });
            return;
        }
        if !pseudonym_mac_valid(row, self.keys) {
            self.note(Finding::Changed {
                seq,
                what: "pseudonym",
            });
        }
        let group = self.groups.entry(record).or_insert_with(|| Group {
            reference: reference.clone(),
            ..Group::default()
        });
        group.mixed_references |= group.reference != *reference;
        group.seqs.push(seq);
    }

    /// Remembers the chain's own records; only MAC-valid ones count, so they cannot be forged.
    fn note_records(&mut self, row: &AuditRow) {
        if row.event_type != PSEUDONYMIZED && row.event_type != PRUNED {
            return;
        }
        let Ok(details) = serde_json::from_str::<serde_json::Value>(&row.details) else {
            return;
        };
        let text = |k: &str| details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let int = |k: &str| details.get(k).and_then(serde_json::Value::as_i64);
        if row.event_type == PSEUDONYMIZED {
            if let (Some(reference), Some(rows), Some(rows_digest), Some(first_seq)) = (
                text("ref"),
                int("rows"),
                text("rows_digest"),
                int("first_seq"),
            ) {
                let group = self.groups.remove(&row.seq).unwrap_or_default();
                let record = PseudonymRecord {
                    reference,
                    rows,
                    rows_digest,
                    first_seq,
                };
                if !self.group_matches(&record, &group) {
                    self.note(Finding::Changed {
                        seq: row.seq,
                        what: "rows_digest",
                    });
                }
            }
        } else if let (Some(through_seq), Some(through_hash)) =
            (int("through_seq"), text("through_hash"))
        {
            self.newest_pruned = Some(PrunedRecord {
                through_seq,
                through_hash,
            });
        }
    }

    /// Ends the walk: tail, head, anchor and pseudonym checks.
    pub fn finish(mut self) -> Report {
        let head = self.head;
        if self.last_seq < head.seq {
            self.note(Finding::Deleted {
                first: self.last_seq + 1,
                last: head.seq,
            });
        } else if self.last_seq == head.seq
            && head.seq > 0
            && !head.hash.is_some_and(|h| bool::from(h.ct_eq(&self.prev)))
        {
            self.note(Finding::HeadMismatch {
                head_seq: head.seq,
                last_seq: self.last_seq,
            });
        }
        if let Some((seq, _)) = self.expect_head
            && !self.expect_head_seen
            && seq > self.last_seq
        {
            self.note(Finding::Deleted {
                first: self.last_seq + 1,
                last: seq,
            });
        }
        if head.base_seq > 0 {
            let anchored = match (&self.newest_pruned, head.base_hash) {
                (Some(p), Some(base_hash)) => {
                    p.through_seq == head.base_seq && p.through_hash == hex(&base_hash)
                }
                _ => false,
            };
            if !anchored {
                self.note(Finding::Deleted {
                    first: 1,
                    last: head.base_seq,
                });
            }
        }
        // Groups whose record never came: it is missing, forged, or was never written.
        let groups = std::mem::take(&mut self.groups);
        for seq in groups.into_values().flat_map(|g| g.seqs) {
            self.note(Finding::PseudonymizedWithoutRecord { seq });
        }
        Report {
            ok: self.findings_total == 0,
            findings_total: self.findings_total,
            expected_head_checked: self.expect_head.map(|_| self.expect_head_seen),
            checked: self.checked,
            head: ReportHead {
                seq: head.seq,
                hash: head.hash.map(|h| hex(&h)),
            },
            findings: self.findings,
        }
    }

    /// The rows naming a record must be exactly those it counted, under its reference.
    fn group_matches(&self, record: &PseudonymRecord, group: &Group) -> bool {
        let n = group.seqs.len();
        let same_reference = group.seqs.is_empty()
            || (!group.mixed_references && group.reference == record.reference);
        // A prune may since have removed the group's first rows; the digest covered them, so only
        // the count can be bounded. Each remaining row still carries its own pseudonym MAC.
        let partly_pruned = record.first_seq <= self.head.base_seq;
        same_reference
            && if partly_pruned {
                i64::try_from(n).is_ok_and(|n| n <= record.rows)
                    && group.seqs.iter().all(|seq| *seq >= record.first_seq)
            } else {
                i64::try_from(n).is_ok_and(|n| n == record.rows)
                    && hex(&rows_digest(group.seqs.iter().copied())) == record.rows_digest
            }
    }
}

/// An `audit_pseudonymized` record with a valid MAC.
struct PseudonymRecord {
    reference: String,
    rows: i64,
    rows_digest: String,
    first_seq: i64,
}

/// Parses an expected head written as `SEQ:HEX` (the `--expect-head` of `audit verify`, taken
/// from the seq and hash a log line carried).
pub fn parse_expected_head(text: &str) -> Option<(i64, Hash)> {
    let (seq, hash) = text.trim().split_once(':')?;
    let seq: i64 = seq.parse().ok().filter(|s| *s > 0)?;
    if hash.len() != 64 || !hash.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hash.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((seq, out))
}

/// Verifies `rows` (ascending seq) against `head`; see [`Verifier`] for pages.
pub fn verify<'r>(
    rows: impl IntoIterator<Item = &'r AuditRow>,
    head: Head,
    keys: &AuditKeys,
    realm: &str,
) -> Report {
    let mut verifier = Verifier::new(head, keys, realm);
    for row in rows {
        verifier.push(row);
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tests::{event, keys};
    use crate::chain::{
        NewEvent, RecordMeta, Rewrite, pruned_record, pseudonymize_row, pseudonymized_record, seal,
    };
    use crate::details::Ident;
    use time::macros::datetime;
    use uuid::Uuid;

    const REALM: &str = "acme";

    /// A chain in memory, appended the way the store does.
    struct Chain {
        rows: Vec<AuditRow>,
        head: Head,
    }

    impl Chain {
        fn new() -> Self {
            Self {
                rows: Vec::new(),
                head: Head::default(),
            }
        }

        fn with(n: usize) -> Self {
            let mut chain = Self::new();
            for i in 0..n {
                chain.append(&event(i as u128 + 1), &keys());
            }
            chain
        }

        fn append(&mut self, e: &NewEvent, keys: &AuditKeys) -> i64 {
            let seq = self.head.seq + 1;
            let prev = self.head.hash.unwrap_or_else(|| genesis(REALM));
            let row = seal(e, seq, prev, [seq as u8; 16], keys);
            self.head.seq = seq;
            self.head.hash = Some(row.hash);
            self.rows.push(row);
            seq
        }

        fn row(&mut self, seq: i64) -> &mut AuditRow {
            self.rows.iter_mut().find(|r| r.seq == seq).unwrap()
        }

        /// What `pseudonymize_user` does: rewrite the rows, then append the record.
        fn pseudonymize(&mut self, seqs: &[i64], reference: &str, record: bool) {
            let record_seq = self.head.seq + 1;
            let mut newly = Vec::new();
            for &seq in seqs {
                let row = self.row(seq).clone();
                let rewrite = Rewrite::User {
                    user: row.subject_id.unwrap(),
                    pseudonym: Uuid::from_u128(0xe7a5e),
                };
                let (new, verified) =
                    pseudonymize_row(&row, rewrite, reference, record_seq, &keys()).unwrap();
                assert!(verified);
                if row.salt.is_some() {
                    newly.push(seq);
                }
                *self.row(seq) = new;
            }
            if record {
                let e = pseudonymized_record(meta(), Ident::parse(reference).unwrap(), &newly, 0);
                self.append(&e, &keys());
            }
        }

        /// What `prune_prefix` does: delete through `through`, anchor, append the record.
        fn prune(&mut self, through: i64, anchor: bool) {
            let through_hash = self.row(through).hash;
            self.rows.retain(|r| r.seq > through);
            if anchor {
                self.head.base_seq = through;
                self.head.base_hash = Some(through_hash);
            }
            self.append(
                &pruned_record(meta(), through, &through_hash, through),
                &keys(),
            );
        }

        fn verify(&self) -> Report {
            verify(&self.rows, self.head, &keys(), REALM)
        }
    }

    fn meta() -> RecordMeta {
        RecordMeta {
            event_id: Uuid::from_u128(0xfeed),
            occurred_at: datetime!(2026-12-01 00:00 UTC),
        }
    }

    fn findings(chain: &Chain) -> Vec<Finding> {
        chain.verify().findings
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let report = Chain::with(5).verify();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 5);
        assert_eq!(report.head.seq, 5);
        let empty = Chain::new().verify();
        assert!(empty.ok && empty.checked == 0, "{empty:?}");
    }

    #[test]
    fn an_edited_hashed_field_is_named() {
        let mut chain = Chain::with(5);
        chain.row(3).event_type = "login".into();
        assert_eq!(
            findings(&chain),
            [Finding::Changed {
                seq: 3,
                what: "mac"
            }]
        );
    }

    #[test]
    fn an_edited_personal_field_is_named() {
        let mut chain = Chain::with(5);
        chain.row(2).ip = Some("198.51.100.1".into());
        assert_eq!(
            findings(&chain),
            [Finding::Changed {
                seq: 2,
                what: "personal_fields"
            }]
        );
    }

    #[test]
    fn a_row_inserted_at_the_tail_is_named() {
        let mut chain = Chain::with(3);
        let mut forged = chain.rows[2].clone();
        forged.seq = 4;
        forged.prev_hash = chain.rows[2].hash;
        forged.event_id = Uuid::from_u128(99);
        chain.rows.push(forged);
        assert_eq!(findings(&chain), [Finding::Inserted { seq: 4 }]);
    }

    #[test]
    fn a_row_planted_past_the_head_of_an_empty_chain_is_only_inserted() {
        let mut chain = Chain::with(1);
        chain.rows[0].seq = 3;
        chain.head = Head::default();
        assert_eq!(findings(&chain), [Finding::Inserted { seq: 3 }]);
    }

    #[test]
    fn a_row_planted_after_a_gap_past_the_head_names_only_the_counted_deletions() {
        let mut chain = Chain::with(3);
        let mut planted = chain.rows[2].clone();
        planted.seq = 6;
        chain.rows.pop();
        chain.rows.push(planted);
        assert_eq!(
            findings(&chain),
            [
                Finding::Deleted { first: 3, last: 3 },
                Finding::Inserted { seq: 6 }
            ]
        );
    }

    #[test]
    fn a_row_deleted_in_the_middle_is_named() {
        let mut chain = Chain::with(5);
        chain.rows.retain(|r| r.seq != 3);
        assert_eq!(findings(&chain), [Finding::Deleted { first: 3, last: 3 }]);
    }

    #[test]
    fn a_deleted_tail_is_named() {
        let mut chain = Chain::with(5);
        chain.rows.truncate(3);
        assert_eq!(findings(&chain), [Finding::Deleted { first: 4, last: 5 }]);
    }

    #[test]
    fn a_cut_tail_with_a_rewritten_head_is_caught_by_the_expected_head() {
        let mut chain = Chain::with(5);
        let logged = chain.head;
        chain.rows.truncate(3);
        chain.head.seq = 3;
        chain.head.hash = Some(chain.rows[2].hash);
        assert!(chain.verify().ok, "undetectable from the database alone");
        let keys = keys();
        let mut verifier =
            Verifier::new(chain.head, &keys, REALM).expect_head(logged.seq, logged.hash.unwrap());
        for row in &chain.rows {
            verifier.push(row);
        }
        assert_eq!(
            verifier.finish().findings,
            [Finding::Deleted { first: 4, last: 5 }]
        );
    }

    #[test]
    fn an_expected_head_in_the_pruned_prefix_is_reported_unchecked() {
        let mut chain = Chain::with(6);
        let old = (2, chain.row(2).hash);
        chain.prune(3, true);
        let keys = keys();
        let verify_against = |expected: (i64, Hash)| {
            let mut verifier =
                Verifier::new(chain.head, &keys, REALM).expect_head(expected.0, expected.1);
            for row in &chain.rows {
                verifier.push(row);
            }
            verifier.finish()
        };
        let newer = (5, chain.rows.iter().find(|r| r.seq == 5).unwrap().hash);
        let report = verify_against(old);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.expected_head_checked, Some(false));
        let report = verify_against(newer);
        assert_eq!(
            (report.ok, report.expected_head_checked),
            (true, Some(true))
        );
        assert_eq!(chain.verify().expected_head_checked, None);
    }

    #[test]
    fn renumbering_after_a_deletion_names_every_moved_row() {
        let mut chain = Chain::with(5);
        chain.rows.retain(|r| r.seq != 2);
        for row in chain.rows.iter_mut().filter(|r| r.seq > 2) {
            row.seq -= 1;
        }
        chain.head.seq = 4;
        assert_eq!(
            findings(&chain),
            [
                Finding::Changed {
                    seq: 2,
                    what: "mac"
                },
                Finding::Changed {
                    seq: 3,
                    what: "mac"
                },
                Finding::Changed {
                    seq: 4,
                    what: "mac"
                },
            ]
        );
    }

    #[test]
    fn a_wrong_head_hash_is_named() {
        let mut chain = Chain::with(2);
        chain.head.hash = Some([1; 32]);
        assert_eq!(
            findings(&chain),
            [Finding::HeadMismatch {
                head_seq: 2,
                last_seq: 2
            }]
        );
    }

    #[test]
    fn pseudonymisation_with_its_record_verifies() {
        let mut chain = Chain::with(6);
        chain.pseudonymize(&[2, 5], "erasure:1", true);
        let report = chain.verify();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 7);
    }

    #[test]
    fn pseudonymisation_without_a_record_is_named() {
        let mut chain = Chain::with(6);
        chain.pseudonymize(&[2, 5], "erasure:1", false);
        assert_eq!(
            findings(&chain),
            [
                Finding::PseudonymizedWithoutRecord { seq: 2 },
                Finding::PseudonymizedWithoutRecord { seq: 5 },
            ]
        );
        // A row hidden under an existing record's name, or with only its salt dropped.
        let mut chain = Chain::with(6);
        chain.pseudonymize(&[2], "erasure:1", true);
        chain.pseudonymize(&[3], "erasure:1", false);
        chain.row(4).salt = None;
        assert_eq!(
            findings(&chain),
            [
                Finding::PseudonymizedWithoutRecord { seq: 4 },
                Finding::PseudonymizedWithoutRecord { seq: 3 },
            ]
        );
    }

    type Edit = (&'static str, fn(&mut AuditRow));

    #[test]
    fn every_edit_of_a_pseudonymised_row_is_named() {
        let victim = Uuid::from_u128(0x51c7);
        let edits: [Edit; 6] = [
            ("subject", |r| r.subject_id = Some(Uuid::from_u128(0x51c7))),
            ("actor", |r| {
                r.actor_id = Some(Uuid::from_u128(0x51c7).to_string())
            }),
            ("ip", |r| r.ip = Some("203.0.113.66".into())),
            ("user agent", |r| r.user_agent = Some("evil".into())),
            ("reference", |r| {
                r.pseudonym_of = Some("erasure:other".into())
            }),
            ("tag", |r| r.pseudonym_mac = Some([0; 32])),
        ];
        for (name, edit) in edits {
            let mut chain = Chain::with(4);
            chain.pseudonymize(&[2, 3], "erasure:1", true);
            assert!(chain.verify().ok, "{name}");
            edit(chain.row(2));
            let found = findings(&chain);
            // A new reference also takes the row out of its record's group.
            assert_eq!(
                found.first(),
                Some(&Finding::Changed {
                    seq: 2,
                    what: "pseudonym"
                }),
                "{name} (victim {victim})"
            );
            assert_eq!(
                found.len(),
                if name == "reference" { 2 } else { 1 },
                "{name}"
            );
        }
    }

    #[test]
    fn pseudonym_columns_on_a_row_that_keeps_its_salt_are_named() {
        let mut chain = Chain::with(3);
        chain.row(2).pseudonym_of = Some("erasure:1".into());
        assert_eq!(
            findings(&chain),
            [Finding::Changed {
                seq: 2,
                what: "pseudonym"
            }]
        );
    }

    #[test]
    fn rows_hidden_in_a_partly_pruned_group_are_named() {
        let mut chain = Chain::with(8);
        chain.pseudonymize(&[1, 2, 3, 8], "erasure:2", true);
        chain.prune(3, true);
        assert!(chain.verify().ok);
        // A DBA hides rows 5..=7 in the group's slack: its record still counts 4 rows.
        for seq in 5..=7 {
            let row = chain.row(seq);
            row.ip = None;
            row.user_agent = None;
            row.subject_id = None;
            row.salt = None;
            row.pseudonym_of = Some("erasure:2".into());
            row.pseudonym_seq = Some(9);
        }
        assert_eq!(
            findings(&chain),
            [5, 6, 7].map(|seq| Finding::Changed {
                seq,
                what: "pseudonym"
            })
        );
    }

    #[test]
    fn a_group_moved_or_restored_is_named_at_its_record() {
        // Group A (row 2, record 5) moved under B (rows 3, record 6): A's record counts a row
        // it no longer has, B's one too many.
        let mut chain = Chain::with(4);
        chain.pseudonymize(&[2], "erasure:a", true);
        chain.pseudonymize(&[3], "erasure:b", true);
        assert!(chain.verify().ok);
        chain.row(2).pseudonym_seq = Some(6);
        chain.row(2).pseudonym_of = Some("erasure:b".into());
        assert_eq!(
            findings(&chain),
            [
                Finding::Changed {
                    seq: 2,
                    what: "pseudonym"
                },
                Finding::Changed {
                    seq: 5,
                    what: "rows_digest"
                },
                Finding::Changed {
                    seq: 6,
                    what: "rows_digest"
                },
            ]
        );
        // A row put back from a backup with its personal data: MAC and digest are genuine, but
        // its record counted it as pseudonymised.
        let original = Chain::with(4).rows[1].clone();
        let mut chain = Chain::with(4);
        chain.pseudonymize(&[2, 3], "erasure:a", true);
        *chain.row(2) = original;
        assert_eq!(
            findings(&chain),
            [Finding::Changed {
                seq: 5,
                what: "rows_digest"
            }]
        );
    }

    #[test]
    fn one_reference_used_by_two_records_verifies() {
        let mut chain = Chain::with(6);
        chain.pseudonymize(&[2], "erasure:1", true);
        chain.pseudonymize(&[4, 5], "erasure:1", true);
        let report = chain.verify();
        assert!(report.ok, "{report:?}");
    }

    #[test]
    fn a_pruned_prefix_with_its_anchor_verifies() {
        let mut chain = Chain::with(6);
        chain.pseudonymize(&[2, 5], "erasure:1", true);
        chain.prune(3, true);
        let report = chain.verify();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 5);
    }

    #[test]
    fn a_pruned_prefix_without_its_anchor_is_named() {
        let mut chain = Chain::with(6);
        chain.prune(3, false);
        assert_eq!(findings(&chain), [Finding::Deleted { first: 1, last: 3 }]);
        // A prefix deleted with a hand-made anchor but no audit_pruned record.
        let mut chain = Chain::with(6);
        chain.head.base_seq = 2;
        chain.head.base_hash = Some(chain.row(2).hash);
        chain.rows.retain(|r| r.seq > 2);
        assert_eq!(findings(&chain), [Finding::Deleted { first: 1, last: 2 }]);
    }

    #[test]
    fn a_key_rotation_mid_chain_verifies_with_both_keys() {
        let old = keys();
        let both = AuditKeys::parse(&format!(
            "v2:{}\nv1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "B".repeat(44)
        ))
        .unwrap();
        let mut chain = Chain::new();
        for i in 1..=3 {
            chain.append(&event(i), &old);
        }
        for i in 4..=6 {
            chain.append(&event(i), &both);
        }
        assert_eq!(chain.rows[3].key_version, "v2");
        let report = verify(&chain.rows, chain.head, &both, REALM);
        assert!(report.ok, "{report:?}");
        // Without the new key its rows cannot be vouched for, and are named.
        let report = verify(&chain.rows, chain.head, &old, REALM);
        let seqs: Vec<_> = report.findings.iter().collect();
        assert_eq!(
            seqs,
            [4, 5, 6]
                .map(|seq| Finding::Changed {
                    seq,
                    what: "key_version"
                })
                .iter()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_finding_is_reported_not_just_the_first() {
        let mut chain = Chain::with(8);
        chain.row(2).outcome = crate::chain::Outcome::Success;
        chain.rows.retain(|r| r.seq != 5);
        chain.row(7).user_agent = None;
        chain.rows.truncate(chain.rows.len() - 1);
        assert_eq!(
            findings(&chain),
            [
                Finding::Changed {
                    seq: 2,
                    what: "mac"
                },
                Finding::Deleted { first: 5, last: 5 },
                Finding::Changed {
                    seq: 7,
                    what: "personal_fields"
                },
                Finding::Deleted { first: 8, last: 8 },
            ]
        );
    }

    #[test]
    fn a_report_lists_a_bounded_number_of_findings_and_counts_them_all() {
        let chain = Chain::with(MAX_FINDINGS + 5);
        // A key nobody has: every row is a finding.
        let other = AuditKeys::parse(&format!("v1:{}", "B".repeat(44))).unwrap();
        let report = verify(&chain.rows, chain.head, &other, REALM);
        assert!(!report.ok);
        assert_eq!(report.findings.len(), MAX_FINDINGS);
        assert_eq!(report.findings_total, MAX_FINDINGS as u64 + 5);
    }

    #[test]
    fn an_expected_head_parses_from_seq_and_hex() {
        let hash = [0xab; 32];
        let text = format!("42:{}", hex(&hash));
        assert_eq!(parse_expected_head(&text), Some((42, hash)));
        for bad in [
            "42",
            "0:00",
            "x:ab",
            &format!("-1:{}", hex(&hash)),
            &text[..60],
        ] {
            assert_eq!(parse_expected_head(bad), None, "{bad}");
        }
        assert_eq!(parse_expected_head(&text.replace("ab", "zz")), None);
    }

    #[test]
    fn the_report_serialises_with_kind_tags() {
        let mut chain = Chain::with(2);
        chain.row(1).details = "{}".into();
        let json = serde_json::to_value(chain.verify()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checked"], 2);
        assert_eq!(json["findings"][0]["kind"], "changed");
        assert_eq!(json["findings"][0]["seq"], 1);
        assert_eq!(json["head"]["hash"].as_str().unwrap().len(), 64);
    }
}
