-- Events and queue configuration: the source of truth every service loads into memory.
--
-- A queue is one partition of the tickets topic. Its activation policy belongs to the
-- queue, so events sharing a partition (the global mode) share one policy.

CREATE TABLE queues (
    partition           INTEGER PRIMARY KEY CHECK (partition >= 0),
    -- open: activate in batches; paused: activate nothing; passthrough: activate on arrival.
    mode                TEXT    NOT NULL DEFAULT 'open'
                        CHECK (mode IN ('open', 'paused', 'passthrough')),
    batch_size          INTEGER NOT NULL DEFAULT 100 CHECK (batch_size > 0),
    interval_ms         INTEGER NOT NULL DEFAULT 1000 CHECK (interval_ms > 0),
    max_active          INTEGER CHECK (max_active IS NULL OR max_active > 0),
    active_ttl_seconds  INTEGER NOT NULL DEFAULT 600 CHECK (active_ttl_seconds > 0),
    grace_seconds       INTEGER NOT NULL DEFAULT 60 CHECK (grace_seconds > 0),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    event_id        TEXT PRIMARY KEY CHECK (event_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'paused', 'closed', 'passthrough')),
    partition       INTEGER NOT NULL REFERENCES queues (partition),
    seat_rows       INTEGER CHECK (seat_rows IS NULL OR seat_rows > 0),
    seats_per_row   INTEGER CHECK (seats_per_row IS NULL OR seats_per_row > 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((seat_rows IS NULL) = (seats_per_row IS NULL))
);

CREATE INDEX events_partition ON events (partition);

-- Every change to configuration wakes the services' in-memory views (LISTEN config_changed).
CREATE FUNCTION notify_config_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('config_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER queues_changed AFTER INSERT OR UPDATE OR DELETE ON queues
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER events_changed AFTER INSERT OR UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
