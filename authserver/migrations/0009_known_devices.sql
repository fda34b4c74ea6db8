-- New-device notices (issue 11): the devices each account signed in from, as keyed digests
-- (HMAC under the cookie key of the device cookie, or of the user agent and address prefix for
-- API clients), never the cookie or the address itself. At most 50 per account, oldest dropped.
CREATE TABLE known_devices (
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_hash   bytea       NOT NULL CHECK (octet_length(device_hash) = 32),
    kind          text        NOT NULL CHECK (kind IN ('cookie', 'fingerprint')),
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);

-- A breached password is notified once per credential epoch: the epoch last notified.
ALTER TABLE users ADD COLUMN breach_noticed_epoch bigint;
