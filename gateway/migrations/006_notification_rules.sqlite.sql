-- Personal notification rules (gateway/notification_rules.py).
--
-- A page a rule sends later is written with the step, as due, with the time it falls due; it is released
-- (due_at cleared) when due and still wanted, and then sent like any page written as due.
ALTER TABLE pages ADD COLUMN due_at REAL;
CREATE INDEX pages_due_at ON pages (due_at) WHERE due_at IS NOT NULL AND status = 'due';

-- Every change made at run time, kept (the audit trail); an engineer's rules in force are those of their
-- latest change, NULL rules meaning "back to the config's".
CREATE TABLE notification_rule_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    engineer   TEXT NOT NULL,
    rules      TEXT,
    changed_by TEXT NOT NULL,
    changed_at REAL NOT NULL
);
CREATE INDEX notification_rule_changes_engineer ON notification_rule_changes (engineer, id);
