-- Accounts created by social sign-in (issue 12) have no password until their owner sets one
-- through a password reset: NULL is "no password", never an empty or marker hash that a
-- verifier might be coaxed into accepting. The pepper version stays as written (the realm's
-- current one), so a password set later needs no other column.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
