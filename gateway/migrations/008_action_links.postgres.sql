-- Email and chat pages (channel 'email', 'chat'), and the one use of each signed action link.
-- The pages check is widened (dropped and added again under its own name; NOT VALID skips re-reading the
-- table, whose rows all satisfy the narrower check already).
ALTER TABLE pages DROP CONSTRAINT IF EXISTS pages_channel_check;
ALTER TABLE pages ADD CONSTRAINT pages_channel_check CHECK (channel IN ('call', 'sms', 'email', 'chat')) NOT VALID;

-- A signed action link (acknowledge or resolve from an email or a chat message) works once: its nonce is
-- inserted here when it is used; the primary key makes a second use fail, on whichever gateway it comes.
CREATE TABLE action_links_used (
    nonce    text    PRIMARY KEY,
    alert_id bigint  NOT NULL REFERENCES alerts (id),
    action   text    NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
    engineer text    NOT NULL,
    used_at  double precision NOT NULL
);
