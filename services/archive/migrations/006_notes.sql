-- 006_notes.sql - validation notes kept with the event, and the index validate's stateful
-- domain rules read a licence's history through.
--
-- notes: the findings of validate that do not reject (e.g. discoveryNotifiedLate, a licence
-- unknown to the archive, a rule that could not be checked), as a JSON array of
-- {"pointer","keyword","message"}; NULL when there are none.  Written by archive in the same
-- transaction as the event row.  The digest and the hash chain cover the event only, never the
-- notes: notes are archive's annotation, not what the producer sent, and `eminectl verify`
-- recomputes the chain from the envelope alone.
ALTER TABLE events ADD COLUMN notes jsonb;
-- NOT VALID: every existing row is NULL, so the check need not scan the table now.
ALTER TABLE events ADD CONSTRAINT events_notes_array
    CHECK (notes IS NULL OR (jsonb_typeof(notes) = 'array' AND jsonb_array_length(notes) > 0))
    NOT VALID;

-- A licence's lifecycle events in seq order (validate: licenceInForce,
-- kpTransferAfter2YearsOfGrant, renewedAreaNotLarger).  Partial: only the licence.* types, so
-- that the bulk of the archive (production reports, royalties, shipments, which name a licence
-- too) costs no index maintenance on insert.  validate's query repeats the predicate.
CREATE INDEX events_licence_seq ON events ((envelope #>> '{data,licenceId}'), seq)
    WHERE type LIKE 'pk.gov.emining.licence.%';
