-- A scheduled on-sale: joins open at prequeue_opens_at and wait for sale_starts_at, when
-- the queue opens by itself; sale_ends_at (optional) closes it. With the
-- 'shuffle_prequeue' order the pre-queue is served in a random order drawn from
-- draw_seed (committed to by its SHA-256 before the start); the activator records the
-- pre-queue's offsets [draw_first_offset, draw_end_offset) of draw_partition at the
-- start, once.
ALTER TABLE events
    ADD COLUMN prequeue_opens_at TIMESTAMPTZ,
    ADD COLUMN sale_starts_at TIMESTAMPTZ,
    ADD COLUMN sale_ends_at TIMESTAMPTZ,
    ADD COLUMN queue_order TEXT NOT NULL DEFAULT 'fifo'
        CHECK (queue_order IN ('fifo', 'shuffle_prequeue')),
    ADD COLUMN draw_seed BYTEA CHECK (octet_length(draw_seed) = 32),
    ADD COLUMN draw_partition INT,
    ADD COLUMN draw_first_offset BIGINT,
    ADD COLUMN draw_end_offset BIGINT;

ALTER TABLE events ADD CONSTRAINT events_schedule_complete
    CHECK ((prequeue_opens_at IS NULL) = (sale_starts_at IS NULL)
           AND (sale_ends_at IS NULL OR sale_starts_at IS NOT NULL));
ALTER TABLE events ADD CONSTRAINT events_schedule_in_order
    CHECK (prequeue_opens_at <= sale_starts_at AND sale_starts_at < sale_ends_at);
ALTER TABLE events ADD CONSTRAINT events_shuffle_has_a_seed
    CHECK (queue_order = 'fifo' OR (sale_starts_at IS NOT NULL AND draw_seed IS NOT NULL));
ALTER TABLE events ADD CONSTRAINT events_draw_range
    CHECK ((draw_first_offset IS NULL) = (draw_end_offset IS NULL)
           AND (draw_first_offset IS NULL) = (draw_partition IS NULL)
           AND draw_first_offset <= draw_end_offset);
