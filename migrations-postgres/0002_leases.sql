-- Leases: a plan lock expires unless its holder renews it (by the store's
-- clock), and each acquisition takes a higher epoch, the fencing token that
-- every journal write of the holder names.
ALTER TABLE plan_locks ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE plan_locks ADD COLUMN expires_at_ms BIGINT;
CREATE TABLE lease_epochs (
    plan_name TEXT PRIMARY KEY,
    epoch     BIGINT NOT NULL
);
