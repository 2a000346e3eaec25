-- 003_producers.sql - the producers allowed to publish, with what they may publish.
-- ingest reads this table (and re-reads it every few seconds and on SIGHUP); eminectl
-- producers writes it.  Keys are random 256-bit secrets: only their SHA-256 is stored.
CREATE TABLE producers (
    name        text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    key_sha256  text        NOT NULL UNIQUE CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
    -- allowed CloudEvents `source` prefixes, e.g. {/pk/ba/mmdd/}; '*' allows any source
    sources     text[]      NOT NULL DEFAULT '{}',
    -- allowed `type`s: exact, or a prefix ending in '*', e.g. {pk.gov.emining.licence.*}
    types       text[]      NOT NULL DEFAULT '{}',
    disabled    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
