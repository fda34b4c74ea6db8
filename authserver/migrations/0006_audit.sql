-- The tamper-evident audit trail (issue 11; crate portcullis-audit).
-- Each row carries an HMAC over its canonical encoding and the previous row's hash, keyed with
-- the `audit-key` secret, which never enters the database.

-- The chain head: appenders serialise on this row's lock (SELECT ... FOR UPDATE), and seq comes
-- from it rather than from a sequence, whose rollbacks would leave gaps that look like deletions.
CREATE TABLE audit_chain_head (
    id        smallint PRIMARY KEY CHECK (id = 1),
    seq       bigint   NOT NULL,           -- last appended seq; 0 = empty
    hash      bytea,                       -- its hash; NULL = genesis
    base_seq  bigint   NOT NULL DEFAULT 0, -- rows <= base_seq were pruned (retention Delete)
    base_hash bytea                        -- hash of row base_seq (the anchor); NULL = genesis
);
INSERT INTO audit_chain_head (id, seq) VALUES (1, 0);

CREATE TABLE audit_events (
    -- head.seq + 1 under the head lock: contiguous. Bounded so no arithmetic on it can overflow.
    seq             bigint      PRIMARY KEY
                    CONSTRAINT audit_events_seq_range CHECK (seq > 0 AND seq < 4611686018427387904),
    event_id        uuid        NOT NULL UNIQUE,
    -- Truncated to µs before hashing. Bounded to what every reader can represent: `infinity` and
    -- years past 9999 are valid timestamptz values that no Rust time type holds. The store reads
    -- them defensively too, as this constraint can be dropped.
    occurred_at     timestamptz NOT NULL
                    CONSTRAINT audit_events_occurred_at_range
                    CHECK (occurred_at >= '1970-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00'),
    event_type      text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('success','failure')),
    actor_kind      text        NOT NULL CHECK (actor_kind IN ('anonymous','user','admin','client','system')),
    -- A registered OAuth client's id (an Ident in the crate): in the MAC, never erased.
    client_id       text        CHECK (char_length(client_id) <= 128),
    -- text, not jsonb: jsonb reorders keys and normalises numbers, so the hashed bytes would be lost.
    details         text        NOT NULL,          -- canonical JSON (sorted keys)
    actor_id        text,                          -- personal: user UUID / client id / 'admin'
    subject_id      uuid,                          -- personal: the account the event is about
    ip              text,                          -- personal
    user_agent      text,                          -- personal (<= 256 chars)
    salt            bytea,                         -- 16 random bytes; NULL once pseudonymised
    personal_digest bytea       NOT NULL,          -- salted digest of the personal fields (in the MAC)
    pseudonym_of    text,                          -- 'erasure:<uuid>' / 'retention:<run>:<batch>'
    pseudonym_seq   bigint,                        -- seq of the audit_pseudonymized record of its group
    -- HMAC (key outside the database) over seq, hash, pseudonym_of, pseudonym_seq and the personal
    -- columns as pseudonymisation left them: with the salt gone, this is what vouches for them.
    pseudonym_mac   bytea,
    key_version     text        NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject_id, seq);
CREATE INDEX audit_events_actor   ON audit_events (actor_id, seq) WHERE actor_kind = 'user';
CREATE INDEX audit_events_type    ON audit_events (event_type, seq);
CREATE INDEX audit_events_time    ON audit_events (occurred_at);
-- Rows retention still has to clear, so each batch skips those already cleared.
CREATE INDEX audit_events_personal ON audit_events (seq)
  WHERE salt IS NOT NULL OR subject_id IS NOT NULL OR (actor_kind = 'user' AND actor_id IS NOT NULL);

-- What the triggers below are, honestly: a seatbelt against application bugs, not a control
-- against SQL users. `portcullis.audit_maintenance` is a placeholder setting that ANY session may
-- SET, so every role with UPDATE or DELETE on audit_events can lift the append-only trigger, and
-- a plain INSERT (no setting needed) can plant a row or squat on the next seq (appends then fail
-- until it is removed). What holds against SQL users is the MAC: verify names every edited,
-- planted or removed row, except a cut tail whose head was rewritten, which only a head recorded
-- elsewhere (`verify --expect-head`, the SIEM's copy) reveals. Deployments that want more should
-- give the application role only INSERT and SELECT on audit_events and UPDATE on
-- audit_chain_head, and run migrations and maintenance as the owner.

-- Append-only: UPDATE/DELETE need `SET LOCAL portcullis.audit_maintenance = 'on'`, which only
-- the pseudonymise and prune transactions set.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('portcullis.audit_maintenance', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION 'audit_events is append-only';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The head only moves forward: the last seq and the anchor may advance, never go back, and the
-- hash of a seq already recorded never changes. No setting lifts this, as no legitimate step
-- needs it; a head reset (after emptying the table) would otherwise verify as an empty chain.
CREATE FUNCTION audit_chain_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id
     AND (NEW.seq > OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash IS NOT DISTINCT FROM OLD.hash))
     AND (NEW.base_seq > OLD.base_seq
          OR (NEW.base_seq = OLD.base_seq AND NEW.base_hash IS NOT DISTINCT FROM OLD.base_hash))
     AND NEW.base_seq <= NEW.seq THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_chain_head only moves forward';
END $$;
CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE OR DELETE ON audit_chain_head
  FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward_only();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_forward_only();
