"""The decode engine on the tiny random MusicGen (CPU, fp32): same answers as transformers,
takes that depend only on their seed, continuous batching, long tracks, a poison take."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.engine import DecodeEngine, EngineOptions, FinishedTake, ReferenceEngine, TakeRequest, make
from worker.musicgen import MusicGen

pytestmark = pytest.mark.slow


def take(model: MusicGen, key: object, caption: str, seed: int, seconds: float, prompt: torch.Tensor | None = None) -> TakeRequest:
    return TakeRequest(key, caption, seed, model.frames_for(seconds), prompt)


def transformers_greedy_codes(model: MusicGen, captions: list[str], frames: int) -> torch.Tensor:
    """The codes transformers' own generate picks greedily, read where it hands them to EnCodec."""
    seen: list[torch.Tensor] = []
    decode = model.model.audio_encoder.decode
    model.model.audio_encoder.decode = lambda codes, *a, **k: (seen.append(codes.clone()), decode(codes, *a, **k))[1]
    try:
        inputs = model.processor(text=captions, padding=True, return_tensors="pt")
        with torch.inference_mode():
            model.model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + model.num_codebooks - 1)
    finally:
        model.model.audio_encoder.decode = decode
    return seen[0][0]


def test_greedy_tokens_equal_transformers_generate(tiny_model: MusicGen) -> None:
    captions = ["calm piano", "epic orchestral with strings and drums, 120 bpm", "sad cello in a minor key"]
    frames = 60
    expected = transformers_greedy_codes(tiny_model, captions, frames)
    engine = DecodeEngine(tiny_model, EngineOptions(slots=4, top_k=1))
    ours = make(engine, [TakeRequest(i, caption, 0, frames) for i, caption in enumerate(captions)])
    assert torch.equal(torch.stack([t.codes for t in ours]), expected)


def test_a_take_depends_on_its_seed_not_on_its_neighbours_or_when_it_joined(tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    alone = make(tiny_engine, [take(tiny_model, "me", "calm piano", 7, 2.0)])[0].codes
    full = make(tiny_engine, [take(tiny_model, i, f"epic drums {i}", i, 3.0) for i in range(7)]
                + [take(tiny_model, "me", "calm piano", 7, 2.0)])
    assert torch.equal(full[-1].codes, alone)

    for i in range(5):
        tiny_engine.add(take(tiny_model, ("early", i), f"rock {i}", 100 + i, 4.0))
    for _ in range(37):
        tiny_engine.step()
    tiny_engine.add(take(tiny_model, "me", "calm piano", 7, 2.0))
    late = {f.key: f for f in _drain(tiny_engine)}
    assert torch.equal(late["me"].codes, alone)

    other_seed = make(tiny_engine, [take(tiny_model, "other", "calm piano", 8, 2.0)])[0].codes
    assert not torch.equal(other_seed, alone)


def test_a_short_take_never_waits_for_a_long_one_and_a_free_slot_is_used_at_once(tiny_model: MusicGen) -> None:
    engine = DecodeEngine(tiny_model, EngineOptions(slots=2))
    engine.add(take(tiny_model, "long", "slow ambient", 1, 8.0))
    engine.add(take(tiny_model, "short", "fast drums", 2, 1.0))
    engine.add(take(tiny_model, "next", "jazz", 3, 1.0))  # waits: both slots are busy
    steps, finished_at, running_after = 0, {}, {}
    while engine.busy:
        for done in engine.step():
            finished_at[done.key] = steps
        steps += 1
        running_after[steps] = engine.running
    short_steps = tiny_model.tokens_for(1.0)
    assert finished_at["short"] == short_steps - 1  # its own length, not the long take's
    assert running_after[short_steps + 1] == 2  # the waiting take took the free slot on the next step
    assert finished_at["next"] == 2 * short_steps - 1
    assert finished_at["long"] == tiny_model.tokens_for(8.0) - 1


def test_a_70_second_take_is_made_in_windows_without_gaps_and_starts_as_a_30_second_take(tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    tiny_engine.add(take(tiny_model, "long", "calm piano, soft drums", 7, 70.0))
    progress = []
    finished: list[FinishedTake] = []
    while tiny_engine.busy:
        finished += tiny_engine.step()
        if tiny_engine.busy:
            progress.append(tiny_engine.progress("long"))
    [long] = finished
    assert long.codes.shape == (4, 3500)
    short = make(tiny_engine, [take(tiny_model, "short", "calm piano, soft drums", 7, 30.0)])[0]
    assert torch.equal(long.codes[:, :1500], short.codes)
    assert all(b >= a for a, b in zip(progress, progress[1:])), "progress counts over the whole track"
    assert progress[0] < 0.01 and progress[-1] > 0.99
    assert 0.4 < progress[1503] < 0.45  # one 30 s window of 70 s done

    audio = tiny_model.decode_audio(long.codes)
    rate = tiny_model.sample_rate
    assert len(audio) == 70 * rate
    joins = [30.0, 48.0, 66.0]  # where each next window's new frames begin
    near = np.zeros(len(audio), dtype=bool)
    for t in joins:
        near[int((t - 0.05) * rate): int((t + 0.05) * rate)] = True
    jumps = np.abs(np.diff(audio))
    assert jumps[near[1:]].max() <= jumps[~near[1:]].max()
    block = rate // 10
    rms = np.sqrt(np.mean(audio[: len(audio) // block * block].reshape(-1, block) ** 2, axis=1))
    join_blocks = [int(t * 10) for t in joins]
    others = np.delete(rms, join_blocks)
    assert all(others.min() <= rms[b] <= others.max() for b in join_blocks)


def test_a_take_continued_from_a_prompt_keeps_the_prompt_exactly(tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    first = make(tiny_engine, [take(tiny_model, "first", "calm piano", 3, 10.0)])[0].codes
    extended = make(tiny_engine, [take(tiny_model, "more", "calm piano", 4, 20.0, prompt=first)])[0].codes
    assert extended.shape == (4, 1000)
    assert torch.equal(extended[:, :500], first)
    longer = make(tiny_engine, [take(tiny_model, "more", "calm piano", 4, 50.0, prompt=extended)])[0].codes
    assert torch.equal(longer[:, :1000], extended) and longer.shape == (4, 2500)


def test_a_step_that_fails_reruns_each_take_alone_and_only_the_poison_fails(tiny_model: MusicGen) -> None:
    class Poisoned(DecodeEngine):
        def _decode_step(self, n: int, length: int, text_length: int) -> None:
            if any(s is not None and "poison" in s.take.caption for s in self._slots):
                raise RuntimeError("CUDA error: device-side assert triggered")
            super()._decode_step(n, length, text_length)

    engine = Poisoned(tiny_model, EngineOptions(slots=4))
    good = make(DecodeEngine(tiny_model, EngineOptions(slots=1)), [take(tiny_model, "good", "calm", 1, 1.0)])[0]
    results = make(engine, [take(tiny_model, "good", "calm", 1, 1.0), take(tiny_model, "bad", "poison", 2, 1.0),
                            take(tiny_model, "other", "jazz", 3, 1.0)])
    assert [bool(r.error) for r in results] == [False, True, False]
    assert torch.equal(results[0].codes, good.codes)
    assert "CUDA" not in results[1].error and "decoding failed" in results[1].error


def test_the_engine_refuses_a_take_longer_than_it_can_hold(tiny_model: MusicGen) -> None:
    engine = DecodeEngine(tiny_model, EngineOptions(slots=1, max_duration_s=60))
    with pytest.raises(ValueError, match="1..3000 frames"):
        engine.add(take(tiny_model, "x", "calm", 1, 61.0))


def test_long_audio_is_decoded_in_overlapping_chunks_without_seams(tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    codes = make(tiny_engine, [take(tiny_model, "x", "calm piano", 5, 12.0)])[0].codes
    whole = tiny_model.decode_audio(codes)
    chunked = tiny_model.decode_audio(codes, chunk_frames=200, context_frames=50)
    assert len(chunked) == len(whole) == 12 * tiny_model.sample_rate
    scale = np.abs(whole).max()
    assert np.abs(chunked - whole).max() < 0.05 * scale
    jumps = np.abs(np.diff(chunked))
    seams = [int(s * tiny_model.sample_rate) for s in (4.0, 8.0)]
    assert max(jumps[s - 200: s + 200].max() for s in seams) <= np.abs(np.diff(whole)).max() * 1.05


def test_the_reference_engine_runs_transformers_generate_one_batch_at_a_time(tiny_model: MusicGen) -> None:
    engine = ReferenceEngine(tiny_model, EngineOptions(slots=2))
    results = make(engine, [take(tiny_model, i, "calm", i, 1.0) for i in range(3)] + [take(tiny_model, "long", "calm", 9, 31.0)])
    assert [len(r.audio) for r in results[:3]] == [tiny_model.sample_rate] * 3
    assert "at most 30 s" in results[3].error
    assert engine.stats.steps == 2 * tiny_model.tokens_for(1.0)  # two calls: rows 1-2, then row 3 (+ the refusal)


def _drain(engine: DecodeEngine) -> list[FinishedTake]:
    finished: list[FinishedTake] = []
    while engine.busy:
        finished += engine.step()
    return finished


def test_building_an_engine_leaves_transformers_generate_unchanged_on_the_same_weights(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    # The engine fuses each layer's query/key/value weights into one matrix and makes the modules'
    # weights views of it; generate (the hf engine and the melody lane use it) must not notice.
    model = MusicGen.load(str(tiny_model_dir), device="cpu")
    before = transformers_greedy_codes(model, ["calm piano"], 30)
    engine = DecodeEngine(model, EngineOptions(slots=2))
    layer = model.model.decoder.model.decoder.layers[0].self_attn
    assert layer.k_proj.weight.untyped_storage().data_ptr() == engine.decoder.qkv_weights[0].untyped_storage().data_ptr()
    assert torch.equal(transformers_greedy_codes(model, ["calm piano"], 30), before)

