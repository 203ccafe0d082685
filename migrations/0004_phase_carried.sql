-- A run started with `--from-phase` carries the plan's earlier phases from the
-- runs that completed them: which run that was, per phase.
ALTER TABLE phases ADD COLUMN completed_in TEXT;
