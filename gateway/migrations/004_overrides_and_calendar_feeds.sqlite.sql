-- Overrides added at run time (API, console), beside those in the YAML; a removed one keeps its row
-- (deleted_at/deleted_by), so who changed the schedule stays on record.
CREATE TABLE overrides (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('primary', 'secondary')),
    engineer   TEXT NOT NULL,
    start_at   REAL NOT NULL,
    end_at     REAL NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    deleted_at REAL,
    deleted_by TEXT
);
CREATE INDEX overrides_live ON overrides (team, id) WHERE deleted_at IS NULL;

-- Calendar feeds (iCalendar, per team or per engineer) reached by a secret URL: only the secret's SHA-256
-- is kept. A revoked feed keeps its row (revoked_at/revoked_by).
CREATE TABLE calendar_feeds (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    team          TEXT,
    engineer      TEXT,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    REAL NOT NULL,
    revoked_at    REAL,
    revoked_by    TEXT,
    CHECK ((team IS NULL) <> (engineer IS NULL))
);
