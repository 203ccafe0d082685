-- Which daemon took each due time of a drill schedule (or recorded it as
-- missed): several daemons on one store run each due drill once.
CREATE TABLE drill_claims (
    plan_path  TEXT NOT NULL,
    due_at     TEXT NOT NULL,
    holder     TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (plan_path, due_at)
);
