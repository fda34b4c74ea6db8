-- The audit key MACs the audit chain (0006): with a version's key changed or gone, every row it
-- sealed reads as tampered. So its fingerprints are recorded like the pepper's (key_id is the
-- version), and a start whose audit key does not cover them is refused.
ALTER TABLE key_fingerprints DROP CONSTRAINT key_fingerprints_kind_check;
ALTER TABLE key_fingerprints ADD CONSTRAINT key_fingerprints_kind_check
    CHECK (kind IN ('pepper', 'fernet', 'audit'));
