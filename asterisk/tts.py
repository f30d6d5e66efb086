"""Text-to-speech for Asterisk: render each text once into a WAV file Asterisk can play.

Asterisk's ``wav`` format is 8 kHz, mono, 16-bit signed linear; ``STREAM FILE``
takes the path without its extension. Files are named by the SHA-256 of
language and text, so a text is rendered once and reused across calls and
restarts (clear ``cache_dir`` after changing the command or the voices).

The command is an argument list with placeholders, run without a shell:
``{text}``, ``{voice}``, ``{language}`` and ``{out}`` (the file to write),
for example ``["espeak-ng", "-v", "{voice}", "-w", "{out}", "{text}"]``.
When the engine cannot write 8 kHz mono 16-bit itself, add a ``resample``
step with ``{in}`` and ``{out}``, e.g.
``["sox", "{in}", "-r", "8000", "-c", "1", "-b", "16", "{out}"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path

_log = logging.getLogger(__name__)

SAMPLE_RATE = 8000


class TtsRenderer:
    """Renders texts to cached WAV files; ``path_for`` gives what ``STREAM FILE`` needs."""

    def __init__(
        self,
        command: Sequence[str] | None,
        cache_dir: Path,
        *,
        resample: Sequence[str] | None = None,
        voices: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        max_concurrent: int = 2,
    ) -> None:
        self._command = tuple(command) if command else None
        self._resample = tuple(resample) if resample else None
        self._cache_dir = Path(cache_dir)
        self._voices = dict(voices or {})
        self._timeout_s = timeout_s
        self._limit = asyncio.Semaphore(max_concurrent)
        self._pending: dict[str, asyncio.Task[bool]] = {}

    @property
    def enabled(self) -> bool:
        return self._command is not None

    @staticmethod
    def key(text: str, language: str) -> str:
        return hashlib.sha256(f"{language}\n{text}".encode()).hexdigest()

    def voice_for(self, language: str) -> str:
        """The engine's voice for a BCP 47 language: configured, else the lower-cased tag."""
        return self._voices.get(language, language.lower())

    async def path_for(self, text: str, language: str) -> str | None:
        """The rendered file without extension, or None (no command configured, or it failed)."""
        if self._command is None:
            return None
        key = self.key(text, language)
        base = self._cache_dir / key
        if base.with_suffix(".wav").is_file():
            return str(base)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._render(key, text, language))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        try:
            rendered = await asyncio.shield(task)
        except Exception:
            _log.exception("tts: rendering text %s failed", key[:12])
            return None
        return str(base) if rendered else None

    async def _render(self, key: str, text: str, language: str) -> bool:
        assert self._command is not None
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        final = self._cache_dir / f"{key}.wav"
        stem = f".{key}.{uuid.uuid4().hex}"
        raw = self._cache_dir / f"{stem}.tts.wav"
        resampled = self._cache_dir / f"{stem}.8k.wav"
        values = {
            "text": text,
            "language": language,
            "voice": self.voice_for(language),
            "out": str(raw),
        }
        try:
            async with self._limit:
                if not await self._run(self._command, values, key):
                    return False
                produced = raw
                if self._resample is not None:
                    step = {"in": str(raw), "out": str(resampled)}
                    if not await self._run(self._resample, step, key):
                        return False
                    produced = resampled
            if not _is_asterisk_wav(produced, key):
                return False
            os.replace(produced, final)
            return True
        finally:
            for leftover in (raw, resampled):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    async def _run(self, template: Sequence[str], values: Mapping[str, str], key: str) -> bool:
        argv = [part.format_map(values) for part in template]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            _log.error("tts: cannot run %s: %s", argv[0], exc)
            return False
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), self._timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            _log.error(
                "tts: %s timed out after %.1f s (text %s)", argv[0], self._timeout_s, key[:12]
            )
            return False
        if proc.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-300:]
            _log.error("tts: %s exited %s (text %s): %s", argv[0], proc.returncode, key[:12], tail)
            return False
        return True


def _is_asterisk_wav(path: Path, key: str) -> bool:
    """Asterisk plays ``.wav`` as 8 kHz mono 16-bit; anything else sounds wrong or fails."""
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
    except (OSError, EOFError, wave.Error) as exc:
        _log.error("tts: no usable WAV for text %s: %s", key[:12], exc)
        return False
    if shape != (SAMPLE_RATE, 1, 2):
        _log.error(
            "tts: text %s rendered as %d Hz, %d channel(s), %d-byte samples; "
            "Asterisk needs 8000 Hz mono 16-bit: configure a resample step",
            key[:12],
            *shape,
        )
        return False
    return True
