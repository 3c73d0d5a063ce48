-- A closed event whose queue has drained gives its partition back (partition NULL) when
-- a new event needs one and none is free. The event stays, with its seats and
-- reservations, as the sale's record; reopening it takes a free partition again.
ALTER TABLE events ALTER COLUMN partition DROP NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_released_only_when_closed
    CHECK (partition IS NOT NULL OR state = 'closed');

-- When the event last closed: joins that passed the open check just before may still
-- land for a while, so a partition is released (or the event deleted) only once the
-- event has been closed for a settling time.
ALTER TABLE events ADD COLUMN closed_at TIMESTAMPTZ;
UPDATE events SET closed_at = updated_at WHERE state = 'closed';
