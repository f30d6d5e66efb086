-- Placeholder for migration 006, which another branch adds under its own name: it lets 008 apply on this
-- branch alone (the numbers must run without a gap). Drop this file when that branch is merged.
SELECT 1;
