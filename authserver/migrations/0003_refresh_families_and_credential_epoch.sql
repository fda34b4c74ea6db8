-- Refresh-token families get a row of their own, which rotation locks and revocation updates:
-- a revocation that runs while a rotation is in flight waits for it and then ends the token it
-- issued too. A token is valid only while its family is neither revoked nor expired.
--
-- Accounts get a credential epoch, raised when their password is reset or changed and when
-- they are disabled. Sessions and families record the epoch they were created under; a login
-- still in flight when the epoch moves creates nothing, and anything left of an older epoch
-- dies at its next use.
ALTER TABLE users ADD COLUMN credential_epoch bigint NOT NULL DEFAULT 0;

CREATE TABLE refresh_families (
    family_id        uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Public id of the session that started the family; logout of that session ends it.
    session_id       text        NOT NULL,
    client_id        text,
    credential_epoch bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    -- Absolute expiry of the family; each token also has an idle expiry.
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_session ON refresh_families (session_id);

-- Every token of a family shares its user, session and client; a revocation marked them all.
INSERT INTO refresh_families (family_id, user_id, session_id, client_id, credential_epoch,
                              created_at, expires_at, revoked_at)
SELECT family_id, (array_agg(user_id))[1], (array_agg(session_id))[1], (array_agg(client_id))[1],
       0, min(issued_at), max(family_expires_at), max(revoked_at)
FROM refresh_tokens
GROUP BY family_id;

DROP INDEX refresh_tokens_user;
DROP INDEX refresh_tokens_session;
ALTER TABLE refresh_tokens
    DROP COLUMN user_id,
    DROP COLUMN session_id,
    DROP COLUMN client_id,
    DROP COLUMN family_expires_at,
    DROP COLUMN revoked_at,
    ADD CONSTRAINT refresh_tokens_family FOREIGN KEY (family_id)
        REFERENCES refresh_families (family_id) ON DELETE CASCADE;
