"""Loopback peers for protocol tests: they speak the real wire formats (AMI, FastAGI, Twilio)."""
