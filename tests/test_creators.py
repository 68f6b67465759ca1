"""Creators' features on the worker side and the CLI: seamless loops, lossless files with a
fallback, extending a take, melody from a clip, previews (tiny random checkpoints)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.audio_files import encode_audio, fit_audio
from pipeline.loop import make_loop, plan
from pipeline.models import TuneRequest
from tests.workers import start_worker
from worker.cli import main
from worker.queue import Event, JobQueue, ReplyTo, TakeRef
from worker.tokens import codes_from_bytes

REPO = Path(__file__).resolve().parents[1]
RATE = 32_000


def click_track(seconds: float, bpm: float, first_downbeat: float, rate: int = RATE) -> np.ndarray:
    """Noise and a bass tone, with a click on every beat, louder on each bar's first beat."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal(len(t)) + 0.1 * np.sin(2 * np.pi * 110 * t)
    beat, n = 60.0 / bpm, int(0.03 * rate)
    click = np.sin(2 * np.pi * 880 * np.arange(n) / rate) * np.exp(-np.arange(n) / (0.01 * rate))
    for k in range(int((seconds - first_downbeat) / beat)):
        at = int((first_downbeat + k * beat) * rate)
        x[at: at + n] += (1.0 if k % 4 == 0 else 0.35) * click[: len(x) - at]
    return x.astype(np.float32)


def seam_within_the_take(loop: np.ndarray, rate: int = RATE) -> None:
    """Played twice back to back, the seam's sample jump and short-time loudness change are
    within what the rest of the loop shows."""
    twice = np.concatenate([loop, loop])
    seam = len(loop)
    jumps = np.abs(np.diff(twice))
    assert jumps[seam - 1] <= np.delete(jumps, [seam - 1]).max()
    block = int(0.05 * rate)
    start = seam % block
    rms = np.sqrt(np.mean(twice[start: start + (len(twice) - start) // block * block].reshape(-1, block) ** 2, axis=1))
    changes = np.abs(np.diff(20 * np.log10(rms + 1e-9)))
    at = (seam - start) // block - 1  # the change from the block before the seam to the one after
    assert changes[at] <= np.delete(changes, [at]).max()


def decoded(data: bytes) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE
    return samples


# ---- loops ------------------------------------------------------------------------------------
def test_a_loop_is_whole_bars_starts_on_a_downbeat_and_repeats_without_a_seam() -> None:
    bpm, first = 100.0, 0.37
    loop = make_loop(click_track(20.0, bpm, first), RATE, bpm, 10.0)
    assert loop.bars == 4 and abs(len(loop.samples) / RATE - 4 * 2.4) <= 0.01 * 9.6
    bar = 2.4
    assert min(abs(loop.start_s - (first + k * bar)) for k in range(8)) < 0.02  # on a downbeat, not a weak beat
    flac = encode_audio(loop.samples, RATE, "flac")
    seam_within_the_take(decoded(flac.data))


def test_the_loop_length_is_the_bar_count_closest_to_the_request() -> None:
    assert plan(10.0, 100) == (4, pytest.approx(9.6))
    assert plan(30.0, 100) == (8, pytest.approx(19.2))
    assert plan(5.0, 120) == (2, pytest.approx(4.0))


# ---- formats ----------------------------------------------------------------------------------
def test_lossless_files_fall_back_to_smaller_formats_and_say_so() -> None:
    noise = (0.3 * np.random.default_rng(1).standard_normal(RATE * 10)).astype(np.float32)
    wav = encode_audio(noise, RATE, "wav")
    assert wav.format == "wav" and wav.note == "" and decoded(wav.data).shape == (RATE * 10,)
    squeezed = encode_audio(noise, RATE, "wav", max_bytes=len(wav.data) - 1)
    assert squeezed.format == "flac" and "WAV file would be over" in squeezed.note and "a FLAC" in squeezed.note
    tiny = encode_audio(noise, RATE, "flac", max_bytes=300_000, loop=True)
    assert tiny.format == "mp3" and "an MP3" in tiny.note and "gap when it repeats" in tiny.note
    tone = encode_audio((0.3 * np.sin(np.arange(RATE * 10) * 0.05)).astype(np.float32), RATE, "wav")
    assert fit_audio(tone.data, "wav", len(tone.data)).data == tone.data  # fits: untouched
    refit = fit_audio(tone.data, "wav", len(tone.data) - 1)
    assert refit.format == "flac" and len(refit.data) < len(tone.data) and refit.changed_from("wav")


@pytest.mark.slow
def test_generate_makes_a_seamless_flac_loop_named_loop(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["generate", "calm piano bpm:100 10s loop:yes", "--model", str(tiny_model_dir), "--device", "cpu",
                 "--seed", "3", "-o", str(tmp_path / "bed")])
    assert code == 0, capsys.readouterr().err
    [path] = list(tmp_path.iterdir())
    assert path.name == "bed-loop.flac"
    loop = decoded(path.read_bytes())
    assert abs(len(loop) / RATE - 9.6) <= 0.096  # 4 bars at 100 bpm, within 1 %
    seam_within_the_take(loop)
    assert np.abs(loop[:100]).max() > 1e-3  # no fade-in on a loop


@pytest.mark.slow
def test_generate_writes_wav_when_the_output_name_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert main(["generate", "calm", "--model", str(tiny_model_dir), "--device", "cpu", "--duration", "5",
                 "-o", str(tmp_path / "take.wav")]) == 0
    assert abs(len(decoded((tmp_path / "take.wav").read_bytes())) / RATE - 5.0) < 0.01


# ---- extend -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_take_extended_from_the_cli_keeps_its_start_and_is_posted_as_a_new_take(
        redis_url: str, tiny_model, tiny_engine, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    queue = JobQueue.from_url(redis_url)
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine)
    try:
        assert main(["submit", "calm piano 5s", "--seed", "4", "--redis-url", redis_url, "--wait", "--timeout", "120",
                     "-o", str(tmp_path / "first.mp3")]) == 0
        first_id = capsys.readouterr().out.split("queued job ")[1].split()[0]
        assert main(["submit", "--extend", f"{first_id}:1", "--duration", "10", "--redis-url", redis_url, "--wait",
                     "--timeout", "120", "-o", str(tmp_path / "longer.flac")]) == 0
        printed = capsys.readouterr().out
        longer_id = printed.split("queued job ")[1].split()[0]
    finally:
        stop.set(); thread.join(60)
    assert abs(len(decoded((tmp_path / "longer.flac").read_bytes())) / RATE - 15.0) < 0.05
    before = codes_from_bytes(queue.load_tokens(queue.tokens_key(first_id, 1)))
    after = codes_from_bytes(queue.load_tokens(queue.tokens_key(longer_id, 1)))
    assert after.shape == (4, 750) and np.array_equal(after[:, :250], before)  # the start stays exactly as it was
    job = queue.get_job(longer_id)
    assert job.extend == TakeRef(first_id, 1) and job.request.prompt == "calm piano"
    queue.close()


def test_extending_what_can_not_be_extended_gets_a_clear_error(redis_url: str, queue: JobQueue, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["submit", "--extend", "nope", "--redis-url", redis_url]) == 2
    assert "JOB:TAKE" in capsys.readouterr().err
    assert main(["submit", "--extend", "0123456789ab:1", "--redis-url", redis_url]) == 2
    assert "I don't know take 0123456789ab:1" in capsys.readouterr().err
    job = queue.submit(TuneRequest(prompt="calm", duration=10), ReplyTo(platform="cli"))
    assert main(["submit", "--extend", f"{job.job_id}:1", "--redis-url", redis_url]) == 2
    assert "can't be extended any more" in capsys.readouterr().err  # no tokens (expired)
    queue.store_tokens(job.job_id, 1, b"TTK1\x04" + bytes(2 * 4 * 50 * 170))  # a 170 s take
    assert main(["submit", "--extend", f"{job.job_id}:1", "--duration", "30", "--redis-url", redis_url]) == 2
    assert "between 5 and 10 seconds" in capsys.readouterr().err
    queue.store_tokens(job.job_id, 1, b"TTK1\x04" + bytes(2 * 4 * 50 * 178))
    assert main(["submit", "--extend", f"{job.job_id}:1", "--redis-url", redis_url]) == 2
    assert "already 178 s long" in capsys.readouterr().err
    assert main(["submit", "calm", "--extend", f"{job.job_id}:1", "--redis-url", redis_url]) == 2
    assert queue.depth() == 1  # nothing more was queued


# ---- melody --------------------------------------------------------------------------------------
def test_chroma_equals_what_transformers_melody_feature_extractor_computes() -> None:
    """The extractor needs torchaudio for its spectrogram; with torchaudio's Spectrogram
    written out as documented, the extractor itself must agree with worker.chroma."""
    import transformers.models.musicgen_melody.feature_extraction_musicgen_melody as extraction

    from worker.chroma import chroma

    class Spectrogram(torch.nn.Module):  # torchaudio.transforms.Spectrogram, normalized="window", power=2
        def __init__(self, n_fft: int, win_length: int, hop_length: int, power: float, center: bool, pad: int,
                     normalized: bool, pad_mode: str = "reflect") -> None:
            super().__init__()
            self.n_fft, self.hop, self.power, self.center, self.normalized = n_fft, hop_length, power, center, normalized
            self.window, self.pad_mode = torch.hann_window(win_length), pad_mode

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            shape = waveform.shape
            spec = torch.stft(waveform.reshape(-1, shape[-1]), self.n_fft, self.hop, window=self.window,
                              center=self.center, pad_mode=self.pad_mode, return_complex=True)
            spec = spec.reshape(shape[:-1] + spec.shape[-2:])
            if self.normalized:
                spec = spec / self.window.pow(2.0).sum().sqrt()
            return spec.abs().pow(self.power)

    real = getattr(extraction, "torchaudio", None)
    extraction.torchaudio = types.SimpleNamespace(transforms=types.SimpleNamespace(Spectrogram=Spectrogram))
    try:
        extractor = extraction.MusicgenMelodyFeatureExtractor()
        rng = np.random.default_rng(2)
        t = np.arange(RATE * 12) / RATE
        tune = np.concatenate([np.sin(2 * np.pi * f * t[: RATE * 3]) for f in (261.6, 329.6, 392.0, 440.0)])
        clips = [(tune + 0.05 * rng.standard_normal(len(tune))).astype(np.float32), tune[: RATE * 5].astype(np.float32)]
        expected = extractor(clips, sampling_rate=RATE, return_tensors="pt")["input_features"]
        ours = chroma(clips)
    finally:
        extraction.torchaudio = real
    assert torch.equal(ours, expected)
    assert ours[0, 5].argmax() == 0 and ours[0, -5].argmax() == 9  # C first, A last


@pytest.mark.slow
def test_a_melody_job_runs_on_a_melody_worker_and_a_bad_clip_or_no_worker_is_refused(
        redis_url: str, tiny_melody_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from pipeline.melody import prepare_clip
    from worker.engine import EngineOptions, ReferenceEngine
    from worker.melody import MelodyGen
    from worker.queue import MELODY_LANE

    hum = tmp_path / "hum.wav"
    t = np.arange(RATE * 4) / RATE
    sf.write(hum, 0.4 * np.sin(2 * np.pi * 330 * t), RATE)
    (tmp_path / "notes.txt").write_text("la la la")
    assert main(["submit", "calm piano", "--melody", str(hum), "--redis-url", redis_url]) == 2
    assert "no worker follows melodies" in capsys.readouterr().err
    assert main(["submit", "calm piano", "--melody", str(tmp_path / "notes.txt"), "--redis-url", redis_url]) == 2
    assert "isn't audio I can read" in capsys.readouterr().err

    model = MelodyGen.load(str(tiny_melody_dir), device="cpu")
    queue = JobQueue.from_url(redis_url, lane=MELODY_LANE)
    worker, stop, thread = start_worker(queue, model, ReferenceEngine(model, EngineOptions(slots=2)), consumer="m")
    try:
        from tests.test_worker import wait_for
        wait_for(lambda: queue.melody_workers(), what="the melody worker's heartbeat")
        assert main(["submit", "calm piano 5s", "--melody", str(hum), "--redis-url", redis_url, "--wait",
                     "--timeout", "120", "-o", str(tmp_path / "tune.mp3")]) == 0
    finally:
        stop.set(); thread.join(60)
        queue.close()
    assert abs(sf.info(str(tmp_path / "tune.mp3")).duration - 5.0) < 0.1
    assert prepare_clip(hum.read_bytes())  # the same clip, as the frontends prepare it


# ---- previews ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_each_take_has_a_png_preview_and_a_loop_shows_its_seam(queue: JobQueue, tiny_model, tiny_engine) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from tests.test_worker import EventLog, wait_for

    plain = queue.submit(TuneRequest(prompt="calm", duration=5), ReplyTo(platform="cli"))
    looped = queue.submit(TuneRequest(prompt="calm", duration=5, bpm=120, loop=True), ReplyTo(platform="cli"))
    log = EventLog(queue)
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine)
    try:
        wait_for(lambda: len(log.of("done")) == 2, timeout=120, what="both takes")
    finally:
        stop.set(); thread.join(60)
    [plain_done] = log.of("done", plain.job_id)
    [loop_done] = log.of("done", looped.job_id)
    assert loop_done.take.loop and loop_done.take.format == "flac" and plain_done.take.format == "mp3"
    sizes = [Image.open(io.BytesIO(queue.load_preview(e.take.preview_key))).size for e in (plain_done, loop_done)]
    assert sizes[0][0] < sizes[1][0]  # the loop's preview has the seam panel
    assert abs(loop_done.take.duration - 4.0) < 0.04  # 2 bars at 120 bpm
