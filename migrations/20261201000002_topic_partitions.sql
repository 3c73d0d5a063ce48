-- The tickets topic's partition count once an operator raised it online
-- (PUT /admin/partitions): every instance reads it with the catalog, so new partitions
-- can take events without a restart. Absent: the TICKETS_PARTITIONS setting.
CREATE TABLE topic_partitions (
    topic TEXT PRIMARY KEY,
    partitions INT NOT NULL CHECK (partitions > 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER topic_partitions_changed AFTER INSERT OR UPDATE OR DELETE ON topic_partitions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
