-- Putting the waiting room in front of an existing site (docs/integration.md).

-- The site an event admits fans to: the `aud` of the admission tokens its active fans
-- receive, and optionally where their browsers go once active (the token in the URL's
-- query or fragment). No audience: no admission token, as before.
ALTER TABLE events
    ADD COLUMN admission_audience  TEXT CHECK (length(admission_audience) BETWEEN 1 AND 256),
    ADD COLUMN admission_return_url TEXT CHECK (length(admission_return_url) BETWEEN 1 AND 2048),
    ADD COLUMN admission_token_in  TEXT NOT NULL DEFAULT 'fragment'
        CHECK (admission_token_in IN ('query', 'fragment')),
    ADD CONSTRAINT events_return_url_needs_audience
        CHECK (admission_return_url IS NULL OR admission_audience IS NOT NULL);

-- The sites' API keys for the slot API (POST /v1/admissions/{jti}/complete|release).
-- A key is shown once, when created; only its SHA-256 is kept. A revoked key stays
-- listed (who created it, when it stopped working) but no longer authenticates.
CREATE TABLE site_api_keys (
    key_id      TEXT PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9_-]{8,64}$'),
    audience    TEXT NOT NULL CHECK (length(audience) BETWEEN 1 AND 256),
    label       TEXT NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT NOT NULL,
    revoked_at  TIMESTAMPTZ
);

ALTER TABLE admin_audit DROP CONSTRAINT admin_audit_action_check;
ALTER TABLE admin_audit ADD CONSTRAINT admin_audit_action_check CHECK (action IN
    ('event_created', 'event_updated', 'event_deleted', 'queue_updated',
     'partitions_raised', 'site_key_created', 'site_key_revoked'));
