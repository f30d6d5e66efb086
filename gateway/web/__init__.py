"""HTTP handlers: thin, one module per resource; the logic lives in the services."""
