-- Sign-in with an OpenID Connect provider (Google).

-- An account created by "Sign in with Google" has no password: password login refuses it
-- like a wrong password, and it can sign in only through its provider.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

-- One row per sign-in sent to a provider: what the callback must find to finish it. The
-- `state` is the key the provider hands back; the row is deleted when the callback takes it,
-- so a state works once. `nonce` must come back inside the ID token, and the PKCE verifier
-- proves to the provider that whoever redeems the code started the sign-in.
CREATE TABLE oidc_signins (
    state         TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_signins_expiry ON oidc_signins (expires_at);

-- Accounts linked to a provider's identity: (provider, sub) is the provider's stable id for
-- the person; the e-mail it had at linking time is kept for support.
CREATE TABLE linked_identities (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX linked_identities_user ON linked_identities (user_id);

-- One-time tickets the callback hands the browser (in a redirect URL, so never the tokens
-- themselves); the storefront trades one for the platform's tokens within a minute. Stored as
-- SHA-256, deleted when used.
CREATE TABLE signin_tickets (
    ticket_hash BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
