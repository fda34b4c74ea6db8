-- OpenID Connect grants: a refresh-token family records what it grants (scope), how and when
-- its user authenticated (for the ID tokens a refresh issues: auth_time, amr, acr) and whether
-- it is an offline_access grant. Families of the realm's own API get the API scope and a
-- password login.
ALTER TABLE refresh_families
    ADD COLUMN scope     text        NOT NULL DEFAULT 'openid profile email',
    ADD COLUMN auth_time timestamptz,
    ADD COLUMN amr       text[]      NOT NULL DEFAULT '{pwd}',
    ADD COLUMN acr       text,
    ADD COLUMN offline   boolean     NOT NULL DEFAULT false;
-- A user's live families of one client (revoking an app, consent withdrawal).
CREATE INDEX refresh_families_user_client ON refresh_families (user_id, client_id)
    WHERE revoked_at IS NULL;

-- What a user allowed an OAuth client, remembered so the consent page is asked once.
CREATE TABLE oauth_consents (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text        NOT NULL,
    scopes     text[]      NOT NULL,
    granted_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
