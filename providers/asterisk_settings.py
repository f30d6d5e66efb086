"""The Asterisk provider's settings: the ``asterisk:`` section of the config file, read and checked by
the gateway's config reader (one file, validated at start), used by ``providers.asterisk``.

Kept apart from the adapter so that reading a config never imports the AMI client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class AsteriskSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str
    secret: str
    dial_string: str = "PJSIP/{number}@trunk"  # {number} is E.164; {digits} without the '+'
    caller_id: str  # E.164 presented on outbound calls
    agi_listen_host: str = "127.0.0.1"
    agi_listen_port: int = 4573
    agi_url: str = "agi://127.0.0.1:4573"  # how Asterisk reaches our FastAGI server
    agi_allowed_hosts: tuple[str, ...] = ()  # besides loopback and `host`: who may open FastAGI sessions
    max_channels: int = 10
    tts_command: tuple[str, ...] = ()  # e.g. ("espeak-ng", "-v", "{voice}", "-w", "{out}", "{text}")
    tts_resample: tuple[str, ...] = ()  # e.g. ("sox", "{in}", "-r", "8000", "-c", "1", "-b", "16", "{out}")
    sounds_dir: Path = Path("/var/lib/asterisk/sounds/gateway")
    record_dir: Path = Path("/var/spool/asterisk/gateway")
