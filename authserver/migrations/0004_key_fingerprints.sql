-- No silent key loss: the fingerprint of every key that protects stored data, recorded at the
-- first start that sees it: each pepper version (it hashed passwords; key_id is the version)
-- and each Fernet key (it encrypts TOTP secrets and provider tokens; key_id is the start of
-- its fingerprint). A fingerprint is HMAC-SHA256 of a fixed label under the key, so it reveals
-- nothing about the key (the label is not UTF-8, so no password's peppered MAC equals one). A start whose keys do not cover these rows is refused.
CREATE TABLE key_fingerprints (
    kind        text        NOT NULL CHECK (kind IN ('pepper', 'fernet')),
    key_id      text        NOT NULL CHECK (key_id <> ''),
    fingerprint bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (kind, key_id)
);
