-- When an account was last used without a sign-in: a granted refresh (the realm's API or an
-- OAuth client's, `offline_access` included). The inactive-accounts retention rule counts
-- it with the last login, so a user who stays signed in through refresh tokens is never
-- warned or deleted as inactive. Written at most once an hour per account.
ALTER TABLE users ADD COLUMN last_active_at timestamptz;
-- NOT VALID: enforced on every write from now on, without scanning the table under its lock
-- (the new column is NULL everywhere).
ALTER TABLE users ADD CONSTRAINT users_last_active_at_finite
    CHECK (isfinite(last_active_at)) NOT VALID;
