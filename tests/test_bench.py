"""The engine benchmark runs end to end (on the tiny model) and writes the figures it prints.

Wall times are never asserted here; the benchmark itself prints ratios measured in one run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")]


def test_bench_steps_and_arrivals_write_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker import bench

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path / "figures.json"
    assert bench.main(["--size", "tiny", "--part", "steps", "--part", "arrivals", "--requests", "6",
                       "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["size"] == "tiny" and figures["device"] == "CPU"
    for batch in ("1", "4", "8"):
        row = figures["steps"]["by_batch"][batch]
        assert row["generate_ms"] > 0 and row["engine_ms"] > 0
        assert len(row["engine_rounds_ms"]) == figures["steps"]["rounds"]
    arrivals = figures["arrivals"]
    for policy in ("static-generate", "static-engine", "continuous"):
        assert arrivals[policy]["requests"] == 6  # every request came back done, under every policy
        assert arrivals[policy]["p95_s"] >= arrivals[policy]["p50_s"] > 0
    printed = capsys.readouterr().out
    assert "continuous vs static-generate" in printed


def test_the_gpu_part_can_measure_another_decoder_in_the_same_run(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    # `--baseline-decoder FILE` loads another version of worker/decoder.py; engines built inside
    # decoder_class() use it, and the current decoder is back afterwards.
    from worker import bench, decoder
    from worker.engine import DecodeEngine, EngineOptions, TakeRequest, make

    source = Path(decoder.__file__).read_text().replace("class SlotDecoder:", "class SlotDecoder:\n    marker = 'baseline'")
    (tmp_path / "old.py").write_text(source)
    baseline = bench.load_decoder(str(tmp_path / "old.py"))
    with bench.decoder_class(baseline):
        engine = DecodeEngine(tiny_model, EngineOptions(slots=1))
    assert getattr(engine.decoder, "marker", None) == "baseline"
    assert make(engine, [TakeRequest("k", "calm piano", 1, tiny_model.frames_for(0.5))])[0].codes is not None
    assert not hasattr(DecodeEngine(tiny_model, EngineOptions(slots=1)).decoder, "marker")


@pytest.mark.parametrize("content", [None, "x = 1\n"])
def test_a_baseline_decoder_that_is_missing_or_not_a_decoder_is_refused_before_the_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None) -> None:
    from worker import bench

    path = tmp_path / "old.py"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(bench, "load", lambda *a: pytest.fail("the model was loaded before the check"))
    with pytest.raises(SystemExit, match="--baseline-decoder"):
        bench.main(["--size", "tiny", "--part", "gpu", "--baseline-decoder", str(path)])
