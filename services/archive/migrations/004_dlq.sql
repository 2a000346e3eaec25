-- 004_dlq.sql - dead-letter redrive (eminectl dlq redrive): when a rejected event was submitted
-- again, and the outcome.  redrive_seq is the seq of the committed event when the redrive was
-- accepted (or answered duplicate); a redrive rejected again leaves a new dead letter of its own.
ALTER TABLE rejected_events
    ADD COLUMN redriven_at    timestamptz,
    ADD COLUMN redrive_seq    bigint,
    ADD COLUMN redrive_status text;
CREATE INDEX rejected_events_pending ON rejected_events (id) WHERE redriven_at IS NULL;
