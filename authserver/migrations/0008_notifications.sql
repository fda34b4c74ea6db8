-- The durable notifications outbox (issue 11, protection plan §7.1; the `portcullis-notify` crate).
-- One row per notice and channel, enqueued in the transaction of the change it reports and
-- delivered at least once by a worker on some replica. Rows hold no token or secret: token mails
-- (verification, reset) never come here, so no credential rests in the database or its backups.
CREATE TABLE notification_outbox (
    -- Also the webhook event id: stable across retries, so receivers dedupe on it.
    id              uuid        PRIMARY KEY,
    channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- account.locked, login.new_device, password.breached, password.changed, mfa.added, ...
    event           text        NOT NULL CHECK (event ~ '^[a-z_]+(\.[a-z_]+)+$' AND length(event) <= 64),
    -- Erasing a user drops their pending notices; account.erased rows carry no user_id (the id
    -- is in the payload) so that they survive it.
    user_id         uuid        REFERENCES users (id) ON DELETE CASCADE,
    -- The email channel's address; the webhook channel has none (its bodies carry ids only).
    -- Cleared (with the mail payload) once the row is delivered or dead.
    recipient       text,
    payload         jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at      timestamptz NOT NULL,
    -- Claims so far: each claim adds one, so it also fences a worker whose lease ran out.
    attempts        int         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    -- The lease of the worker delivering it; after it a crashed worker's row is claimed again.
    locked_until    timestamptz,
    delivered_at    timestamptz,
    dead_at         timestamptz,
    last_error      text,
    CHECK (delivered_at IS NULL OR dead_at IS NULL),
    CHECK (channel = 'email' OR recipient IS NULL),
    CHECK (channel <> 'email' OR recipient IS NOT NULL OR delivered_at IS NOT NULL OR dead_at IS NOT NULL)
);

-- The claim's scan (one channel at a time), and the backlog gauges: pending rows by due time.
CREATE INDEX notification_outbox_due ON notification_outbox (channel, next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- Pruning finished rows.
CREATE INDEX notification_outbox_delivered ON notification_outbox (delivered_at)
    WHERE delivered_at IS NOT NULL;
CREATE INDEX notification_outbox_dead ON notification_outbox (dead_at)
    WHERE dead_at IS NOT NULL;
-- The cascade from users.
CREATE INDEX notification_outbox_user ON notification_outbox (user_id)
    WHERE user_id IS NOT NULL;
