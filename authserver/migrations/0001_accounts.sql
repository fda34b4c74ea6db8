-- Accounts, one-time tokens (email verification, password reset), refresh-token families and
-- consents. Times are written by the server from its clock, never by now(), so tests control
-- them exactly.

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text        NOT NULL,
    email_canonical text        NOT NULL UNIQUE,
    display_name    text,
    password_hash   text        NOT NULL,
    pepper_version  text        NOT NULL,
    email_verified  boolean     NOT NULL DEFAULT false,
    disabled        boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_login_at   timestamptz
);

CREATE TABLE one_time_tokens (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

CREATE TABLE refresh_tokens (
    token_hash        bytea       PRIMARY KEY,
    family_id         uuid        NOT NULL,
    user_id           uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Public id of the session that started the family; logout of that session ends it.
    session_id        text        NOT NULL,
    client_id         text,
    issued_at         timestamptz NOT NULL,
    -- Idle expiry of this token; the family's absolute expiry is family_expires_at.
    expires_at        timestamptz NOT NULL,
    family_expires_at timestamptz NOT NULL,
    used_at           timestamptz,
    revoked_at        timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE consents (
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose        text        NOT NULL,
    granted        boolean     NOT NULL,
    policy_version text        NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
