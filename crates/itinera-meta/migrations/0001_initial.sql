-- The schema as it stood when migrations were introduced. `IF NOT EXISTS` keeps it safe on
-- databases created before then (their schema_version table says 1, user_version 0).
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL CHECK (kind IN ('write','read')), prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS definitions (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, kind, name));
CREATE TABLE IF NOT EXISTS alert_state (
    project_id INTEGER NOT NULL REFERENCES projects(id), rule TEXT NOT NULL,
    watermark_ms INTEGER NOT NULL, last_fired_ms INTEGER,
    PRIMARY KEY (project_id, rule));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    rule TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL,
    created_at TEXT NOT NULL, delivery TEXT NOT NULL DEFAULT 'pending',
    UNIQUE (project_id, rule, key));
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id INTEGER NOT NULL REFERENCES alerts(id), attempt INTEGER NOT NULL,
    status INTEGER, error TEXT, at TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT 'webhook');
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    alert_id INTEGER REFERENCES alerts(id), person TEXT,
    status TEXT NOT NULL DEFAULT 'open', assignee TEXT, root_cause TEXT,
    action TEXT, follow_up TEXT, title TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);

