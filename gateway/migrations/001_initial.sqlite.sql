-- Alerts, their escalation state, every page attempt, and an append-only timeline.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('triggered', 'acknowledged', 'resolved')),
    priority        TEXT    NOT NULL CHECK (priority IN ('high', 'low')),
    source          TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    details         TEXT    NOT NULL DEFAULT '{}',
    labels          TEXT    NOT NULL DEFAULT '{}',
    team            TEXT    NOT NULL,
    policy          TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    resolved_at     REAL
);
-- One open (triggered or acknowledged) alert per dedup key.
CREATE UNIQUE INDEX alerts_open_dedup ON alerts (dedup_key) WHERE status != 'resolved';
CREATE INDEX alerts_status ON alerts (status, id);

-- `step`/`repeat` name the next step to run, at `next_due`; NULL next_due: nothing left to run.
CREATE TABLE escalations (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts (id),
    step     INTEGER NOT NULL,
    repeat   INTEGER NOT NULL,
    next_due REAL
);
CREATE INDEX escalations_due ON escalations (next_due) WHERE next_due IS NOT NULL;

-- One call or SMS attempt. Outbox: written 'due', then 'sent' once the provider took it,
-- then 'done' with its outcome.
CREATE TABLE pages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   INTEGER NOT NULL REFERENCES alerts (id),
    step       INTEGER,
    repeat     INTEGER,
    engineer   TEXT,
    number     TEXT    NOT NULL,
    channel    TEXT    NOT NULL CHECK (channel IN ('call', 'sms')),
    status     TEXT    NOT NULL CHECK (status IN ('due', 'sent', 'done')),
    outcome    TEXT,
    detail     TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
CREATE INDEX pages_alert ON pages (alert_id, step, repeat);
CREATE INDEX pages_status ON pages (status) WHERE status != 'done';
CREATE INDEX pages_engineer ON pages (engineer, alert_id);

CREATE TABLE timeline (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    at       REAL    NOT NULL,
    kind     TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    data     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_alert ON timeline (alert_id, id);
