from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from worker.cli import main, take_paths
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def seconds(path: Path) -> float:
    audio, rate = sf.read(io.BytesIO(path.read_bytes()))
    return len(audio) / rate


def test_take_paths_number_files_only_for_several_takes_and_follow_each_format() -> None:
    assert take_paths("out/song.mp3", ["mp3"]) == [Path("out/song.mp3")]
    assert take_paths("song.mp3", ["mp3"] * 3) == [Path("song-1.mp3"), Path("song-2.mp3"), Path("song-3.mp3")]
    assert take_paths("song.wav", ["wav", "flac"]) == [Path("song-1.wav"), Path("song-2.flac")]  # one fell back
    assert take_paths("bed", ["flac"], loop=True) == [Path("bed-loop.flac")]
    assert take_paths(None, ["mp3"]) == [Path("textunes.mp3")]


@pytest.mark.slow
def test_generate_writes_one_mp3_per_take_and_prints_the_caption(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "calm.mp3"
    code = main(["generate", "calm piano genre:jazz", "--model", str(tiny_model_dir), "--device", "cpu",
                 "--duration", "5", "--takes", "2", "--seed", "11", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "caption: jazz, calm piano" in printed
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["calm-1.mp3", "calm-2.mp3"]
    assert all(abs(seconds(p) - 5) <= 0.1 for p in tmp_path.iterdir())
    assert "seed 11" in printed and "seed 12" in printed


@pytest.mark.slow
def test_submit_wait_fetches_the_mp3_from_a_running_worker(redis_url: str, real_worker, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "deploy-check.mp3"
    code = main(["submit", "happy ukulele 5s", "--redis-url", redis_url, "--wait", "--timeout", "120", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "queued job" in printed and "caption: happy ukulele" in printed
    assert abs(seconds(out) - 5) <= 0.1


def test_submit_without_wait_only_queues(redis_url: str, queue, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["submit", "calm", "--redis-url", redis_url]) == 0
    assert "queued job" in capsys.readouterr().out and queue.depth() == 1


def test_a_bad_request_is_refused_with_the_reason(redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["submit", "calm takes:9", "--redis-url", redis_url]) == 2
    assert "Takes must be between 1 and 4 (got 9)" in capsys.readouterr().err


def test_help_of_every_command_names_its_environment_variables() -> None:
    for command, expected in (("worker", "REDIS_URL"), ("generate", "TEXTUNES_MODEL"), ("submit", "--wait"),
                              ("up", "TEXTUNES_LOCAL_REDIS_DIR"), ("admin", "purge-audio")):
        result = subprocess.run([sys.executable, "-m", "worker.cli", command, "--help"], cwd=REPO,
                                capture_output=True, text=True, check=True)
        assert expected in result.stdout


def test_settings_read_the_environment_and_never_show_secrets() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://r:6379/2", "TEXTUNES_MAX_BATCH": "4",
                                  "DISCORD_TOKEN": "very-secret-token", "SLACK_SIGNING_SECRET": "shh"})
    assert settings.redis_url == "redis://r:6379/2" and settings.max_batch == 4
    assert settings.discord_token == "very-secret-token"
    assert "very-secret-token" not in repr(settings) and "shh" not in repr(settings)
    with pytest.raises(SystemExit, match="TEXTUNES_MAX_BATCH must be a whole number"):
        Settings.from_env({"TEXTUNES_MAX_BATCH": "many"})


@pytest.mark.slow
def test_generate_in_text_mode_shows_the_analysis_and_uses_its_caption(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "story.mp3"
    story = "The funeral was quiet. Rain fell on the black umbrellas and nobody spoke on the long walk home."
    code = main(["generate", story, "--text", "--model", str(tiny_model_dir), "--device", "cpu",
                 "--duration", "5", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "analysis: " in printed and "minor" in printed
    assert abs(seconds(out) - 5) <= 0.1


def test_generate_refuses_text_with_nothing_to_read(tiny_model_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["generate", "🎵🎵 !!!", "--text", "--model", str(tiny_model_dir)])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")
