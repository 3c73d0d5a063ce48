-- How fans get into an event's line: anyone (anonymous) or only fans the ticketing site
-- vouches for with a signed enqueue token (optionally from one named trusted issuer),
-- and whether each join must carry a solved proof-of-work challenge.
ALTER TABLE events
    ADD COLUMN entry_identity TEXT NOT NULL DEFAULT 'anonymous'
        CHECK (entry_identity IN ('anonymous', 'enqueue_token')),
    ADD COLUMN entry_issuer TEXT CHECK (entry_issuer IS NULL OR length(entry_issuer) BETWEEN 1 AND 512),
    ADD COLUMN entry_challenge TEXT NOT NULL DEFAULT 'none'
        CHECK (entry_challenge IN ('none', 'proof_of_work')),
    ADD COLUMN entry_challenge_difficulty INTEGER NOT NULL DEFAULT 50000
        CHECK (entry_challenge_difficulty BETWEEN 1 AND 10000000);
