-- Social sign-in: identities at upstream providers linked to local accounts (issue 12; crate
-- portcullis-social). Times are written by the server from its clock, never by now().

-- One row per upstream identity. A subject is unique only per issuer (GitHub Enterprise's
-- numeric ids collide with github.com's), so the key is (issuer, subject), never the provider's
-- name in the realm: repointing a provider at another issuer must not sign anyone in as the
-- user linked at the old one. The auth server serves one realm per database, so no realm column.
CREATE TABLE linked_identities (
    -- The row's own id: the owner bound inside the sealed upstream tokens, so a ciphertext
    -- copied to another row is refused.
    id                    uuid        PRIMARY KEY,
    user_id               uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The realm's name for the provider when the link was made (shown on the account page;
    -- a provider removed from the realm is no longer a way in).
    provider              text        NOT NULL CHECK (provider <> ''),
    issuer                text        NOT NULL CHECK (issuer <> ''),
    subject               text        NOT NULL CHECK (subject <> ''),
    -- The upstream email when linked, for the account page and the data export.
    email                 text,
    created_at            timestamptz NOT NULL,
    last_used_at          timestamptz NOT NULL,
    -- The provider's tokens, only when a feature needs them: a standard Fernet token
    -- (portcullis-sealed) binding them to purpose and this row's id; NULL otherwise.
    upstream_tokens       text,
    upstream_tokens_key_id text,
    CONSTRAINT linked_identities_issuer_subject UNIQUE (issuer, subject),
    CONSTRAINT linked_identities_tokens_have_key
        CHECK ((upstream_tokens IS NULL) = (upstream_tokens_key_id IS NULL)),
    CONSTRAINT linked_identities_finite_times CHECK (isfinite(created_at) AND isfinite(last_used_at))
);
-- The account page, /me, the export and unlinking list a user's links.
CREATE INDEX linked_identities_user ON linked_identities (user_id);
