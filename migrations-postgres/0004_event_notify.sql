-- Each journal event is announced on `cutover_events` with its run's id, so
-- `cutover status RUN_ID --follow` on any host sees it as it is written.
CREATE FUNCTION cutover_announce_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('cutover_events', NEW.run_id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_announced AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION cutover_announce_event();
