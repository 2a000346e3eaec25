-- 005_operator_orgs.sql - organisations of kind 'operator': the platform's own operators, who
-- see every visibility tier (the live stream behind `eminectl tail`, audits).  Like public and
-- enterprise organisations they have no province; only enterprises have party ids.
ALTER TABLE organisations DROP CONSTRAINT IF EXISTS organisations_kind_check;
ALTER TABLE organisations ADD CONSTRAINT organisations_kind_check
    CHECK (kind IN ('authority', 'enterprise', 'public', 'operator'));
