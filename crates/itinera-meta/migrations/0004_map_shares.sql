-- Read-only links to a journey map: a random secret (stored as its SHA-256) that shows one map
-- with its live figures until it expires or is revoked.
CREATE TABLE IF NOT EXISTS map_shares (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at TEXT
);
