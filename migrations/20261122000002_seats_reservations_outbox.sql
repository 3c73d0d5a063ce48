-- Seats, reservations and the transactional outbox (the reservation service).
--
-- No seat is ever held or sold twice: a hold is one conditional UPDATE of the seats
-- (state = 'available') in the transaction that creates the reservation, and a seat
-- points at the one reservation holding it.

CREATE TABLE seats (
    event_id        TEXT    NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    seat_id         TEXT    NOT NULL,
    row_index       INTEGER NOT NULL,
    seat_number     INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'available'
                    CHECK (state IN ('available', 'held', 'sold')),
    reservation_id  UUID,
    PRIMARY KEY (event_id, seat_id),
    CHECK ((state = 'available') = (reservation_id IS NULL))
);

CREATE INDEX seats_reservation ON seats (reservation_id) WHERE reservation_id IS NOT NULL;

CREATE TABLE reservations (
    reservation_id   UUID        PRIMARY KEY,
    event_id         TEXT        NOT NULL REFERENCES events (event_id),
    ticket_id        UUID        NOT NULL,
    status           TEXT        NOT NULL
                     CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
    seat_ids         TEXT[]      NOT NULL,
    hold_expires_at  TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One live reservation per ticket: a released or expired hold lets the fan try again
-- while their ticket is still active; a confirmed one is final.
CREATE UNIQUE INDEX reservations_one_per_ticket ON reservations (ticket_id)
    WHERE status IN ('held', 'confirmed');
CREATE INDEX reservations_holds_by_expiry ON reservations (hold_expires_at)
    WHERE status = 'held';

-- Every reservation status change, written in the same transaction as the change and
-- published to Kafka by the relay (at least once; message_id lets consumers dedupe).
CREATE TABLE outbox (
    id              BIGSERIAL   PRIMARY KEY,
    message_id      UUID        NOT NULL UNIQUE,
    event_id        TEXT        NOT NULL,
    reservation_id  UUID        NOT NULL,
    payload         JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_unpublished_by_reservation ON outbox (reservation_id, id)
    WHERE published_at IS NULL;

-- Live pushes: every instance LISTENs and streams the change to its own clients.
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION notify_reservation_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('reservation_changed', NEW.reservation_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER reservation_changed AFTER INSERT OR UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION notify_reservation_changed();

CREATE FUNCTION notify_seats_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('seats_changed', COALESCE(NEW.event_id, OLD.event_id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER seats_changed AFTER INSERT OR UPDATE OR DELETE ON seats
    FOR EACH ROW EXECUTE FUNCTION notify_seats_changed();
