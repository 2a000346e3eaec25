-- 002_subscriptions.sql - organisations and their API keys, subscriptions (the CloudEvents
-- Subscriptions API resource plus emine's fields), per-subscription delivery cursors and the
-- delivery dead letters.  Read and written by notify and eminectl; see domain.md §6 for the
-- visibility tiers that organisations map to.

-- Who may see what (domain.md §6):
--   authority  : province = 'PK-XX' (ISO 3166-2:PK) for a provincial department, or 'federal'
--                (Minerals Wing, customs/FBR) for every province;
--   enterprise : party_ids = its SECP numbers / Unified Social Credit Codes (the regNo of the
--                `party` type), matched against the parties named in an event;
--   public     : public events only.
-- source_prefixes are the CloudEvents `source` prefixes the organisation issues events under
-- (an authority sees its own internal events through them).
CREATE TABLE organisations (
    id              text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    name            text        NOT NULL DEFAULT '',
    kind            text        NOT NULL CHECK (kind IN ('authority', 'enterprise', 'public')),
    province        text        CHECK (province IS NULL OR province = 'federal'
                                       OR province ~ '^PK-(BA|SD|PB|KP|GB|JK|IS)$'),
    party_ids       text[]      NOT NULL DEFAULT '{}',
    source_prefixes text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'authority') = (province IS NOT NULL)),
    CHECK (kind = 'enterprise' OR cardinality(party_ids) = 0),
    CHECK (array_position(party_ids, '') IS NULL),
    CHECK (array_position(source_prefixes, '') IS NULL)
);

-- API keys: only the hex SHA-256 of the key is stored; the key itself is shown once.
CREATE TABLE api_keys (
    id          bigserial   PRIMARY KEY,
    org_id      text        NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    key_hash    text        NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    label       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);

-- Subscriptions: id, types, filters (dialects exact/prefix/suffix/all/any/not), sink,
-- protocol and protocolsettings as in the CloudEvents Subscriptions API; plus the owning
-- organisation, preferred languages, the webhook signing secret and the domain filters (an
-- empty array means "any").  Matching is `visible to org AND types AND filters AND domain`.
CREATE TABLE subscriptions (
    id               text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    org_id           text        NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    types            text[]      NOT NULL DEFAULT '{}',
    filters          jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(filters) = 'array'),
    sink             text        NOT NULL CHECK (sink ~ '^https?://'),
    protocol         text        NOT NULL DEFAULT 'HTTP' CHECK (protocol IN ('HTTP')),
    protocolsettings jsonb       NOT NULL DEFAULT '{}'
                                 CHECK (jsonb_typeof(protocolsettings) = 'object'),
    languages        text[]      NOT NULL DEFAULT '{en}',
    secret           text        NOT NULL CHECK (secret <> ''),
    provinces        text[]      NOT NULL DEFAULT '{}',
    minerals         text[]      NOT NULL DEFAULT '{}',
    project_ids      text[]      NOT NULL DEFAULT '{}',
    licence_ids      text[]      NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'disabled')),
    status_reason    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_org ON subscriptions (org_id);

-- Delivery position of each subscription: every event with seq <= seq has been delivered or
-- dead-lettered (or did not match).  attempts/next_attempt_at describe the event at seq + 1
-- while it is being retried.
CREATE TABLE subscription_cursors (
    subscription_id text        PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Deliveries given up after the retry schedule (or refused, e.g. an SSRF sink); redrive
-- re-sends them and sets redriven_at.
CREATE TABLE delivery_dead_letters (
    id              bigserial   PRIMARY KEY,
    subscription_id text        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    redriven_at     timestamptz,
    UNIQUE (subscription_id, seq)
);
