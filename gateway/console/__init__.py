"""The operator console: server-rendered pages under /console, live through server-sent events."""
