-- Privacy (issue 13; crate portcullis-privacy): the accepted policy version, the history of
-- consent changes, and erasure requests with their receipts. Times are written by the server
-- from its clock, never by now(), so tests control them.

-- The privacy policy version the user last accepted as a whole; a login compares it with the
-- realm's current version. NULL: no acceptance on record (asked at the next login).
ALTER TABLE users ADD COLUMN policy_version_accepted text;

-- Registration has always recorded the version with each purpose's answer: the newest one is
-- what the user accepted. Accounts without any consent row (a realm without purposes) have no
-- record of the version and stay NULL.
UPDATE users AS u SET policy_version_accepted = c.policy_version
FROM (SELECT DISTINCT ON (user_id) user_id, policy_version
      FROM consents ORDER BY user_id, updated_at DESC, purpose) AS c
WHERE c.user_id = u.id;

-- Every grant and withdrawal: when, under which version, from where. Removed with the account
-- (cascade); withdrawals past `withdrawnConsents.retainFor` are deleted by retention.
CREATE TABLE consent_events (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose        text        NOT NULL CHECK (purpose <> ''),
    granted        boolean     NOT NULL,
    policy_version text        NOT NULL,
    at             timestamptz NOT NULL CHECK (isfinite(at)),
    source         text        NOT NULL
                   CHECK (source IN ('registration', 'account', 'api', 'consent_prompt', 'admin')),
    -- The client address cut to its network prefix (/24, /48), never the full address.
    ip_prefix      text
);
CREATE INDEX consent_events_user ON consent_events (user_id, at);
-- Retention's scan of withdrawals.
CREATE INDEX consent_events_withdrawn ON consent_events (at) WHERE NOT granted;

-- The history starts with what registration recorded.
INSERT INTO consent_events (user_id, purpose, granted, policy_version, at, source)
SELECT user_id, purpose, granted, policy_version, updated_at, 'registration' FROM consents
ORDER BY updated_at, user_id, purpose;

-- Erasure requests. The id is the erasure id: the pseudonym in the audit trail and the
-- receipt's key. user_id has no foreign key, as the row outlives the account: once done it is
-- NULL and the row is the receipt (id, times, who asked, categories), with no personal data.
CREATE TABLE erasure_requests (
    id           uuid        PRIMARY KEY,
    user_id      uuid,
    requested_at timestamptz NOT NULL CHECK (isfinite(requested_at)),
    effective_at timestamptz NOT NULL CHECK (isfinite(effective_at)),
    requested_by text        NOT NULL CHECK (requested_by IN ('self', 'admin')),
    state        text        NOT NULL CHECK (state IN ('pending', 'done')),
    -- What was erased: a JSON array of category names, set when done.
    categories   jsonb       CHECK (categories IS NULL OR jsonb_typeof(categories) = 'array'),
    completed_at timestamptz,
    CHECK (effective_at >= requested_at),
    CHECK ((state = 'pending') = (user_id IS NOT NULL)),
    CHECK ((state = 'done') = (completed_at IS NOT NULL AND categories IS NOT NULL))
);
-- One pending request per account: a second request finds the first (idempotence).
CREATE UNIQUE INDEX erasure_requests_pending_user ON erasure_requests (user_id)
    WHERE state = 'pending';
-- Retention's scan of due requests.
CREATE INDEX erasure_requests_due ON erasure_requests (effective_at) WHERE state = 'pending';
