-- A deleted event changes the seat maps that show it even when it had no seats (and so
-- no seat row whose trigger would say so): the reservation service's live copies
-- re-read it and answer 404 from then on.
CREATE FUNCTION notify_event_deleted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('seats_changed', OLD.event_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER event_deleted AFTER DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION notify_event_deleted();
