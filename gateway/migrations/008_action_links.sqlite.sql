-- Email and chat pages (channel 'email', 'chat'), and the one use of each signed action link.
--
-- SQLite cannot change a CHECK constraint in place: the pages table is rebuilt with the wider one (same
-- columns, same rows, same indexes). Nothing references pages, so the copy keeps every id.
CREATE TABLE pages_008 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   INTEGER NOT NULL REFERENCES alerts (id),
    step       INTEGER,
    repeat     INTEGER,
    engineer   TEXT,
    number     TEXT    NOT NULL,
    channel    TEXT    NOT NULL CHECK (channel IN ('call', 'sms', 'email', 'chat')),
    status     TEXT    NOT NULL CHECK (status IN ('due', 'sent', 'done')),
    outcome    TEXT,
    detail     TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL,
    owner      TEXT,
    due_at     REAL
);
INSERT INTO pages_008 (id, alert_id, step, repeat, engineer, number, channel, status, outcome, detail, created_at,
                       updated_at, owner, due_at)
    SELECT id, alert_id, step, repeat, engineer, number, channel, status, outcome, detail, created_at, updated_at,
           owner, due_at FROM pages;
DROP TABLE pages;
ALTER TABLE pages_008 RENAME TO pages;
CREATE INDEX pages_alert ON pages (alert_id, step, repeat);
CREATE INDEX pages_status ON pages (status) WHERE status != 'done';
CREATE INDEX pages_engineer ON pages (engineer, alert_id);
CREATE INDEX pages_due_at ON pages (due_at) WHERE due_at IS NOT NULL AND status = 'due';

-- A signed action link (acknowledge or resolve from an email or a chat message) works once: its nonce is
-- inserted here when it is used; a second use finds the row and is refused.
CREATE TABLE action_links_used (
    nonce    TEXT    PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    action   TEXT    NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
    engineer TEXT    NOT NULL,
    used_at  REAL    NOT NULL
);
