-- How far an interrupted snapshot got, per target and table, so a resume
-- checks what was loaded and loads only the rest.
CREATE TABLE snapshot_progress (
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    step       TEXT NOT NULL,
    target     TEXT NOT NULL,
    table_name TEXT NOT NULL,
    loaded     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, step, target, table_name)
);
