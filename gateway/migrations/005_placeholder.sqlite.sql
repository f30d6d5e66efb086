-- Placeholder for migration 005, which another branch adds (the numbers must run without a gap).
-- Drop this pair when that branch is merged: two scripts with one number are refused.
SELECT 1;
