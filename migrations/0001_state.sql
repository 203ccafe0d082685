-- Runs, their phases and steps, the journal of events, plan locks and the audit chain.
CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    plan_name    TEXT NOT NULL,
    plan_path    TEXT NOT NULL,
    plan_sha256  TEXT NOT NULL,
    status       TEXT NOT NULL,
    dry_run      INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    point_of_no_return INTEGER NOT NULL DEFAULT 0,
    detail       TEXT
);
CREATE INDEX runs_by_plan ON runs (plan_name, started_at);

CREATE TABLE phases (
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    phase_index INTEGER NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    PRIMARY KEY (run_id, phase_index)
);

CREATE TABLE steps (
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    phase_index INTEGER NOT NULL,
    step_index  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    elapsed_ms  INTEGER,
    positions   TEXT,
    detail      TEXT,
    PRIMARY KEY (run_id, phase_index, step_index)
);

-- Append-only: every intent before acting and every result after, with what was observed.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
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
    pid             INTEGER NOT NULL,
    pid_start_time  INTEGER,
    acquired_at     TEXT NOT NULL
);

-- AUTOINCREMENT keeps sqlite_sequence at the highest sequence ever issued,
-- which is how a deleted tail of the chain is detected.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
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
