-- What operators keep of a sale: the audit log of their changes, the post-sale reports,
-- and an index for the console's live sale figures.

-- The operators' audit log: every committed change made through the admin API, who
-- made it (the label of their admin token), and the configuration before and after.
-- Written in the change's own transaction, so no change goes unrecorded and no refused
-- one is recorded. No foreign key: the log outlives deleted events.
CREATE TABLE admin_audit (
    audit_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN
                ('event_created', 'event_updated', 'event_deleted', 'queue_updated',
                 'partitions_raised')),
    event_id    TEXT,
    partition   INTEGER,
    before      JSONB,
    after       JSONB
);

CREATE INDEX admin_audit_by_event ON admin_audit (event_id, audit_id);

-- The console's live sale figures count an event's reservations every second.
CREATE INDEX reservations_by_event ON reservations (event_id, status);

-- The post-sale report of each event (waiting-room report, POST /admin/events/{id}/report,
-- and when an event closes), computed from Kafka and PostgreSQL; recomputing replaces it.
CREATE TABLE event_reports (
    event_id     TEXT PRIMARY KEY,
    computed_at  TIMESTAMPTZ NOT NULL,
    report       JSONB NOT NULL
);
