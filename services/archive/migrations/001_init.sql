-- 001_init.sql - the event archive, the dead letters and the subscribers' cursors.
-- Applied once by archive (the single writer) inside a transaction; see services/PROTOCOL.md.

-- Every archived event.  seq is assigned by archive with no holes; chain links each row to
-- the previous one: chain = sha256(prev chain bytes || digest bytes), genesis = 32 zero bytes.
CREATE TABLE events (
    seq         bigint      PRIMARY KEY CHECK (seq > 0),
    source      text        NOT NULL,
    id          text        NOT NULL,
    type        text        NOT NULL,
    subject     text,
    time        timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    producer    text        NOT NULL DEFAULT '',
    visibility  text,
    projectid   text,
    province    text,
    envelope    jsonb       NOT NULL,
    digest      text        NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    chain       text        NOT NULL CHECK (chain ~ '^[0-9a-f]{64}$'),
    UNIQUE (source, id)
);
CREATE INDEX events_projectid_seq ON events (projectid, seq) WHERE projectid IS NOT NULL;
CREATE INDEX events_type_seq ON events (type, seq);

-- Dead letters: events that reached archive and were not archived.
CREATE TABLE rejected_events (
    id           bigserial   PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    producer     text,
    source       text,
    event_id     text,
    type         text,
    reason       text        NOT NULL CHECK (reason IN ('invalid', 'conflict', 'store_error')),
    errors       jsonb,
    raw          text        NOT NULL,
    existing_seq bigint
);
CREATE INDEX rejected_events_source_id ON rejected_events (source, event_id);

-- Persisted positions of the consumers (notify subscriptions).
CREATE TABLE cursors (
    name       text        PRIMARY KEY,
    seq        bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
