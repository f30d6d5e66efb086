-- Handoff notices and on-call summaries (gateway/notices.py): one row per message to send, written before it is
-- sent. The unique key makes it once: a restarted gateway, or a second gateway on the same database, finds the
-- row and does not send again. A row claimed but never finished (its gateway died while sending) may be taken
-- again once claimed_until has passed.
CREATE TABLE notices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL CHECK (kind IN ('handoff', 'summary')),
    team          TEXT NOT NULL,
    role          TEXT NOT NULL,  -- 'primary' | 'secondary'; '' for a summary
    moment        REAL NOT NULL,  -- the handoff, or the summary's scheduled time (epoch seconds)
    engineer      TEXT NOT NULL,
    channel       TEXT NOT NULL,  -- 'sms' (later 'email')
    claimed_at    REAL NOT NULL,
    claimed_until REAL NOT NULL,
    finished_at   REAL,
    outcome       TEXT,           -- 'sent' | 'failed'
    detail        TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, team, role, moment, engineer, channel)
);
