-- The state store on PostgreSQL: the same tables as the SQLite store
-- (migrations/), in one step. Integers are BIGINT and flags BOOLEAN.
CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    plan_name    TEXT NOT NULL,
    plan_path    TEXT NOT NULL,
    plan_sha256  TEXT NOT NULL,
    status       TEXT NOT NULL,
    dry_run      BOOLEAN NOT NULL,
    actor        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    point_of_no_return BOOLEAN NOT NULL DEFAULT FALSE,
    detail       TEXT
);
CREATE INDEX runs_by_plan ON runs (plan_name, started_at);

CREATE TABLE phases (
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    phase_index  BIGINT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT,
    ended_at     TEXT,
    completed_in TEXT,
    PRIMARY KEY (run_id, phase_index)
);

CREATE TABLE steps (
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    phase_index BIGINT NOT NULL,
    step_index  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    elapsed_ms  BIGINT,
    positions   TEXT,
    detail      TEXT,
    PRIMARY KEY (run_id, phase_index, step_index)
);

-- Append-only: every intent before acting and every result after.
CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    at          TEXT NOT NULL,
    phase       TEXT,
    step        TEXT,
    kind        TEXT NOT NULL,
    cluster     TEXT,
    positions   TEXT,
    message     TEXT
);
CREATE INDEX events_by_run ON events (run_id, id);

CREATE TABLE plan_locks (
    plan_name       TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    host            TEXT NOT NULL,
    pid             BIGINT NOT NULL,
    pid_start_time  BIGINT,
    acquired_at     TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    run_id     TEXT,
    step       TEXT,
    target     TEXT NOT NULL,
    action     TEXT NOT NULL,
    result     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
-- The highest sequence ever issued (SQLite keeps it in sqlite_sequence), so
-- that a deleted tail of the chain is detected.
CREATE TABLE audit_issued (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);

CREATE TABLE snapshot_progress (
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    step       TEXT NOT NULL,
    target     TEXT NOT NULL,
    table_name TEXT NOT NULL,
    loaded     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, step, target, table_name)
);

CREATE TABLE drills (
    drill_id       TEXT PRIMARY KEY,
    plan_name      TEXT NOT NULL,
    failure        TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    status         TEXT NOT NULL,
    primary_name   TEXT NOT NULL,
    promoted       TEXT,
    rto_ms         BIGINT,
    rto_target_ms  BIGINT,
    rpo_ms         BIGINT NOT NULL,
    rpo_target_ms  BIGINT,
    lost_writes    BIGINT NOT NULL,
    report_dir     TEXT,
    report         TEXT NOT NULL
);
CREATE INDEX drills_by_plan ON drills (plan_name, started_at);

CREATE TABLE drill_schedules (
    plan_path   TEXT PRIMARY KEY,
    plan_name   TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    last_due_at TEXT
);

CREATE TABLE drill_misses (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_path   TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    reason      TEXT NOT NULL
);
