-- The flow state of every live call (providers/call_session.py), so a restarted gateway, or another
-- gateway on the same database, carries on a call in progress. A row lives while its call does.
CREATE TABLE call_sessions (
    call_id    TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
