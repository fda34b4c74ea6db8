-- When an inactive account was warned that it will be deleted or disabled (retention).
ALTER TABLE users ADD COLUMN inactivity_warned_at timestamptz;
