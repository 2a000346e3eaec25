-- 008_producer_curve.sql - a producer's CurveZMQ public key (Z85, 40 characters).  When
-- ingest's ROUTER is a CURVE server ([ingest] curve_secret_key), a ZeroMQ producer is
-- identified by the public key of its connection instead of PLAIN name and key; the key
-- (key_sha256) still authenticates HTTP.  NULL: the producer does not publish over CURVE.
ALTER TABLE producers
    ADD COLUMN curve_public text UNIQUE
        CHECK (curve_public IS NULL OR curve_public ~ '^[0-9a-zA-Z.:+=^!/*?&<>()[\]{}@%$#-]{40}$');
