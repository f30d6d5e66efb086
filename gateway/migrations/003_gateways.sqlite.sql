-- Several gateways on one database: each escalation and page names the gateway that runs it.
-- A SQLite file serves one gateway, so here the columns stay NULL (anyone's) and the coordination
-- tables of 003_gateways.postgres.sql (gateways, line_use, line_demand, line_pace) are not needed.
ALTER TABLE escalations ADD COLUMN owner TEXT;
ALTER TABLE pages ADD COLUMN owner TEXT;
