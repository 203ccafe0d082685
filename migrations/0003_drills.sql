-- Drill history and drill schedules.
CREATE TABLE drills (
    drill_id       TEXT PRIMARY KEY,
    plan_name      TEXT NOT NULL,
    failure        TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    status         TEXT NOT NULL,
    primary_name   TEXT NOT NULL,
    promoted       TEXT,
    rto_ms         INTEGER,
    rto_target_ms  INTEGER,
    rpo_ms         INTEGER NOT NULL,
    rpo_target_ms  INTEGER,
    lost_writes    INTEGER NOT NULL,
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
    -- The last due time the daemon handled (ran or recorded as missed).
    last_due_at TEXT
);

CREATE TABLE drill_misses (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_path   TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    reason      TEXT NOT NULL
);
