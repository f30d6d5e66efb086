-- Maintenance windows added at run time (API); one ended early keeps its row (ended_at/ended_by), so who
-- silenced what, and when, stays on record. Windows from the YAML are not stored.
CREATE TABLE maintenance_windows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers   TEXT NOT NULL,  -- JSON array of matcher texts
    start_at   REAL NOT NULL,
    end_at     REAL NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('suppress', 'low_priority')),
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at   REAL,
    ended_by   TEXT
);

-- Alerts recorded during maintenance and not paged yet (their escalation has no next_due). Releasing one
-- deletes its row and starts its escalation in one transaction: whoever deletes the row releases it.
CREATE TABLE maintenance_holds (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts (id),
    windows  TEXT NOT NULL,  -- JSON array of {key, name, until}
    held_at  REAL NOT NULL
);

-- Heartbeat monitors' last check-in (the heartbeats themselves are in the YAML).
CREATE TABLE heartbeats (
    name      TEXT PRIMARY KEY,
    last_seen REAL NOT NULL
);
