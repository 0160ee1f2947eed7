-- Trigger state. `trigger_firings`: who each rule triggered, once per person (or again after its
-- re-entry gap), held out or not. `trigger_actions`: an outbox of what to send, written in the
-- same transaction as the firing, so that a restart or kill -9 neither loses a due action nor
-- sends one twice beyond at-least-once delivery with the same idempotency key.
-- `trigger_watermarks`: arrivals before this were evaluated (re-evaluated after a crash).
CREATE TABLE IF NOT EXISTS trigger_firings (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    rule TEXT NOT NULL,
    person TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    fired_at_ms INTEGER NOT NULL,
    because TEXT NOT NULL,
    held_out INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_id, rule, person, at_ms));
CREATE INDEX IF NOT EXISTS trigger_firings_by_rule ON trigger_firings(project_id, rule, fired_at_ms);
CREATE TABLE IF NOT EXISTS trigger_actions (
    id INTEGER PRIMARY KEY,
    firing_id INTEGER NOT NULL REFERENCES trigger_firings(id),
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    rate_per_minute INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    done_at_ms INTEGER);
CREATE INDEX IF NOT EXISTS trigger_actions_due ON trigger_actions(status, next_at_ms);
CREATE TABLE IF NOT EXISTS trigger_watermarks (
    project_id INTEGER PRIMARY KEY REFERENCES projects(id),
    received_ms INTEGER NOT NULL);
