"""TtsRenderer with a fake TTS engine (a Python script writing WAVs with the wave module)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import wave
from pathlib import Path

import pytest

from asterisk.tts import TtsRenderer

FAKE_TTS = """\
import sys, time, wave
log, out, voice, text, rate = sys.argv[1:6]
with open(log, "a") as f:
    f.write(f"{voice}|{text}\\n")
if text == "fail":
    sys.stderr.write("engine exploded\\n")
    sys.exit(3)
if text == "hang":
    time.sleep(30)
with wave.open(out, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(int(rate))
    w.writeframes(b"\\x00\\x00" * (int(rate) // 10))
"""

FAKE_RESAMPLE = """\
import sys, wave
src, dst = sys.argv[1:3]
with wave.open(src, "rb") as r:
    seconds = r.getnframes() / r.getframerate()
with wave.open(dst, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(b"\\x00\\x00" * int(8000 * seconds))
"""


@pytest.fixture
def engine(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "fake_tts.py"
    script.write_text(FAKE_TTS)
    return script, tmp_path / "calls.log"


def command(engine: tuple[Path, Path], rate: int = 8000) -> list[str]:
    script, log = engine
    return [sys.executable, str(script), str(log), "{out}", "{voice}", "{text}", str(rate)]


def calls(engine: tuple[Path, Path]) -> list[str]:
    log = engine[1]
    return log.read_text().splitlines() if log.exists() else []


def wav_shape(base: str) -> tuple[int, int, int]:
    with wave.open(f"{base}.wav", "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth()


async def test_identical_texts_are_rendered_once(tmp_path: Path, engine: tuple[Path, Path]) -> None:
    cache = tmp_path / "cache"
    tts = TtsRenderer(command(engine), cache)

    first, second = await asyncio.gather(
        tts.path_for("Disk full on db-7.", "en-US"), tts.path_for("Disk full on db-7.", "en-US")
    )
    again = await tts.path_for("Disk full on db-7.", "en-US")

    expected = cache / hashlib.sha256(b"en-US\nDisk full on db-7.").hexdigest()
    assert first == second == again == str(expected)
    assert calls(engine) == ["en-us|Disk full on db-7."]
    assert wav_shape(str(expected)) == (8000, 1, 2)
    assert sorted(p.name for p in cache.iterdir()) == [f"{expected.name}.wav"]


async def test_cache_survives_a_restart(tmp_path: Path, engine: tuple[Path, Path]) -> None:
    cache = tmp_path / "cache"
    path = await TtsRenderer(command(engine), cache).path_for("Hello", "en-US")
    again = await TtsRenderer(command(engine), cache).path_for("Hello", "en-US")
    assert path == again
    assert len(calls(engine)) == 1


async def test_language_picks_file_and_voice(tmp_path: Path, engine: tuple[Path, Path]) -> None:
    tts = TtsRenderer(command(engine), tmp_path / "cache", voices={"en-US": "en-us+f3"})
    english = await tts.path_for("Hallo", "en-US")
    german = await tts.path_for("Hallo", "de-DE")
    assert english != german
    assert calls(engine) == ["en-us+f3|Hallo", "de-de|Hallo"]


async def test_without_a_command_there_is_no_path(tmp_path: Path) -> None:
    tts = TtsRenderer(None, tmp_path / "cache")
    assert not tts.enabled
    assert await tts.path_for("Hello", "en-US") is None
    assert not (tmp_path / "cache").exists()


async def test_a_failing_engine_gives_none_and_leaves_nothing(
    tmp_path: Path, engine: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    tts = TtsRenderer(command(engine), cache)
    assert await tts.path_for("fail", "en-US") is None
    assert await tts.path_for("fail", "en-US") is None  # a failure is not cached
    assert len(calls(engine)) == 2
    assert list(cache.iterdir()) == []
    assert "engine exploded" in caplog.text


async def test_a_missing_engine_gives_none(tmp_path: Path) -> None:
    tts = TtsRenderer(["/nonexistent/espeak-ng", "-w", "{out}", "{text}"], tmp_path / "cache")
    assert await tts.path_for("Hello", "en-US") is None


async def test_a_slow_engine_is_killed(tmp_path: Path, engine: tuple[Path, Path]) -> None:
    tts = TtsRenderer(command(engine), tmp_path / "cache", timeout_s=0.3)
    assert await tts.path_for("hang", "en-US") is None
    assert list((tmp_path / "cache").iterdir()) == []


async def test_wrong_sample_rate_is_refused_without_resample(
    tmp_path: Path, engine: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tts = TtsRenderer(command(engine, rate=22050), tmp_path / "cache")
    assert await tts.path_for("Hello", "en-US") is None
    assert "resample" in caplog.text


async def test_resample_step(tmp_path: Path, engine: tuple[Path, Path]) -> None:
    resample = tmp_path / "fake_resample.py"
    resample.write_text(FAKE_RESAMPLE)
    tts = TtsRenderer(
        command(engine, rate=22050),
        tmp_path / "cache",
        resample=[sys.executable, str(resample), "{in}", "{out}"],
    )
    path = await tts.path_for("Hello", "en-US")
    assert path is not None
    assert wav_shape(path) == (8000, 1, 2)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"{Path(path).name}.wav"]
