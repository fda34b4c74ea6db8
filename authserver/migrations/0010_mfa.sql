-- TOTP second factor (issue 12; crate portcullis-mfa, module pg). Depends only on 0001's users.
-- Times are written by the server from its clock, never by now(), so tests control them.

-- Numbers enrolments: every new (or restarted) enrolment takes a fresh value, re-encryption
-- keeps it. Confirmation and the replay guard write only the enrolment whose secret checked the
-- code, without depending on the ciphertext, which re-encryption may change meanwhile.
CREATE SEQUENCE mfa_totp_enrolment_seq;

-- One TOTP enrolment per user: pending until confirmed with a code (confirmed_at NULL), then
-- enrolled. A new pending enrolment replaces a pending one, never a confirmed one: removing
-- TOTP is a separate step that needs a fresh second factor.
CREATE TABLE mfa_totp (
    user_id        uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    enrolment      bigint      NOT NULL DEFAULT nextval('mfa_totp_enrolment_seq'),
    -- A standard Fernet token (portcullis-sealed) whose authenticated plaintext binds the
    -- secret to purpose "TOTP secret" and to this user_id: copied to another row, it is refused.
    secret         text        NOT NULL,
    -- The id (portcullis_sealed::KeyId) of the Fernet key that sealed it, so that re-encryption
    -- finds the rows under older keys without decrypting every row.
    secret_key_id  text        NOT NULL,
    -- The enrolment's own TotpParams in their stored form (algorithm:digits:period:skew); the
    -- app keeps them for ever, whatever the realm's settings become.
    params         text        NOT NULL,
    created_at     timestamptz NOT NULL,
    confirmed_at   timestamptz,
    -- The last TOTP time step accepted (confirmation included). Only moves forward, through a
    -- compare-and-set, so a step is accepted once per user across every replica.
    last_used_step bigint      CHECK (last_used_step >= 0),
    CONSTRAINT mfa_totp_confirmed_has_step CHECK (confirmed_at IS NULL OR last_used_step IS NOT NULL),
    -- Times are real instants: 'infinity' would make "when" meaningless (and not decodable).
    CONSTRAINT mfa_totp_finite_times CHECK (isfinite(created_at) AND (confirmed_at IS NULL OR isfinite(confirmed_at)))
);
-- Re-encryption walks the primary key from its cursor and skips rows under the newest key: no
-- other index (an inequality on secret_key_id could not use one anyway).

-- Recovery codes: keyed HMAC digests bound to realm and user (portcullis_mfa::RecoveryCodeHash)
-- with the version of the key that made them. Spent by setting used_at (once: UPDATE ... WHERE
-- used_at IS NULL); a new set replaces the whole old one.
CREATE TABLE mfa_recovery_codes (
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_version bigint      NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),
    digest      bytea       NOT NULL CHECK (octet_length(digest) = 32),
    created_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT mfa_recovery_codes_finite_times
        CHECK (isfinite(created_at) AND (used_at IS NULL OR isfinite(used_at))),
    PRIMARY KEY (user_id, key_version, digest)
);
