"""The decode engine: iteration-level ("continuous") batching over a fixed set of slots.

Takes wait in a queue; between decode steps the engine admits them into free slots and
retires finished ones, so a short take never waits for a long one and a new take starts
within a step of a slot freeing up. Each slot has its own position, window and codebook
delay pattern; one step decodes one token per codebook for every slot at once.

Long takes are made window by window (as audiocraft does with ``extend_stride``): a window
is at most ``window_s`` (30 s) of frames; when it is done, the next one starts
``window_s - prompt_s`` (18 s) later and is prompted with the last ``prompt_s`` (12 s) of
tokens, re-prefilled into the same slot's cache. No audio is decoded between windows: the
take's tokens are joined and EnCodec decodes them once at the end. A take given a prompt
(its own earlier tokens, to extend it) starts the same way, so the prompt stays exactly as
it was.

The step's bookkeeping lives in device tensors (positions, windows, known frames, seeds,
step counters, the codes themselves), so a step is one fixed sequence of kernels per
``(slots in use, attended length)`` bucket: on CUDA each bucket is captured once as a CUDA
graph. The host mirrors the positions as integers, so it needs no sync to know when a take
ends; it reads a take's codes once, when the take is retired.

A step that raises puts every take it held back in line to run alone, one at a time, so a
poison take fails by itself; a take whose logits were ever not finite fails at retirement.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import MusicgenForConditionalGeneration

from worker import sampling
from worker.decoder import SlotDecoder
from worker.musicgen import MusicGen, Row

log = logging.getLogger("textunes.engine")

LENGTH_BUCKETS = (256, 512, 1024)  # attended-length buckets for CUDA graphs (plus the full window)


@dataclass(frozen=True)
class EngineOptions:
    slots: int = 8
    guidance_scale: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    window_s: float = 30.0  # MusicGen's position limit
    prompt_s: float = 12.0  # each next window is prompted with this much of the last one
    max_duration_s: float = 300.0  # the longest take (with its prompt) a slot can hold
    cuda_graphs: bool = True  # capture the step on CUDA; ignored elsewhere
    static: bool = False  # admit only into an empty engine: batches run to their end (a baseline)


@dataclass(frozen=True)
class TakeRequest:
    """One take to make. ``key`` is the caller's; ``prompt`` is (codebooks, frames) to continue;
    ``melody`` a clip to follow (melody models only)."""

    key: Hashable
    caption: str
    seed: int
    frames: int
    prompt: torch.Tensor | None = None
    melody: np.ndarray | None = None


@dataclass
class FinishedTake:
    key: Hashable
    codes: torch.Tensor | None = None  # (codebooks, frames) on the CPU
    audio: np.ndarray | None = None  # the reference engine returns audio instead of codes
    error: str = ""


@dataclass
class _Slot:
    take: TakeRequest
    index: int
    text_length: int
    known: int = 0  # absolute frames final so far
    start: int = 0  # absolute frame where the current window starts
    frames: int = 0  # frames in the current window
    position: int = 0  # next input position within the window
    needs_window: bool = True


@dataclass
class _Waiting:
    take: TakeRequest
    solo: bool = False  # after a failed step: run alone to find out whether it is the cause


@dataclass
class EngineStats:
    steps: int = 0
    slot_steps: int = 0  # sum over steps of the slots decoding in it
    frames: int = 0  # frames of finished takes
    busiest: int = 0  # the most slots that ever decoded in one step


class DecodeEngine:
    def __init__(self, musicgen: MusicGen, options: EngineOptions = EngineOptions()) -> None:
        if musicgen.audio_channels != 1 or not isinstance(musicgen.model, MusicgenForConditionalGeneration):
            raise ValueError("the decode engine runs mono MusicGen checkpoints; use --engine hf for stereo or melody ones")
        self.musicgen = musicgen
        self.options = options
        self.books = musicgen.num_codebooks
        self.window_frames = musicgen.frames_for(options.window_s)
        self.prompt_frames = musicgen.frames_for(options.prompt_s)
        if not 0 < self.prompt_frames < self.window_frames:
            raise ValueError("the prompt of a window must be shorter than the window")
        self.max_frames = musicgen.frames_for(options.max_duration_s)
        positions = self.window_frames + self.books - 1
        self.decoder = SlotDecoder(musicgen.model, options.slots, positions, musicgen.max_text_tokens,
                                   guided=options.guidance_scale != 1.0)
        device = self.decoder.device
        self.device = device
        slots = options.slots

        def zeros(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, device=device, dtype=dtype)

        self._codes = zeros(slots, self.books, self.max_frames)
        self._position = zeros(slots)
        self._start = zeros(slots)
        self._frames = zeros(slots)
        self._known = zeros(slots)
        self._keys = zeros(slots)
        self._steps = zeros(slots)
        self._active = zeros(slots, dtype=torch.bool)
        self._bad = zeros(slots, dtype=torch.bool)
        self._book_index = torch.arange(self.books, device=device)
        self._slots: list[_Slot | None] = [None] * slots
        self._waiting: deque[_Waiting] = deque()
        self._solo_keys: set[Hashable] = set()
        self._graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.stats = EngineStats()
        self.on_step: Callable[[], None] = lambda: None  # called after every decode step
        self.uses_graphs = options.cuda_graphs and device.type == "cuda"
        if self.uses_graphs:
            self._capture_graphs()

    # ---- what the scheduler sees -------------------------------------------------------
    @property
    def slots(self) -> int:
        return self.options.slots

    @property
    def running(self) -> int:
        return sum(slot is not None for slot in self._slots)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self._waiting) or self.running > 0

    def room(self) -> int:
        """How many more takes could start now without waiting behind others."""
        return max(0, self.slots - self.running - len(self._waiting))

    def add(self, take: TakeRequest) -> None:
        prompt = 0 if take.prompt is None else take.prompt.shape[-1]
        if not 0 < take.frames <= self.max_frames:
            raise ValueError(f"a take must be 1..{self.max_frames} frames, got {take.frames}")
        if prompt >= take.frames:
            raise ValueError("a take must be longer than its prompt")
        if take.melody is not None:
            raise ValueError("the decode engine doesn't follow melodies; melody jobs go to a melody worker")
        self._waiting.append(_Waiting(take))

    def discard(self, keys: Iterable[Hashable]) -> None:
        """Forget these takes, waiting or running (a cancelled or failed job)."""
        gone = set(keys)
        self._waiting = deque(w for w in self._waiting if w.take.key not in gone)
        for slot in self._slots:
            if slot is not None and slot.take.key in gone:
                self._free(slot)

    def progress(self, key: Hashable) -> float:
        """Fraction of the take's new frames decoded so far (0 while waiting)."""
        for slot in self._slots:
            if slot is not None and slot.take.key == key:
                first = 0 if slot.take.prompt is None else slot.take.prompt.shape[-1]
                in_window = 0 if slot.needs_window else min(slot.frames, max(0, slot.position - self.books + 1))
                done = max(slot.known, slot.start + in_window)
                return (done - first) / (slot.take.frames - first)
        return 0.0

    # ---- one iteration ---------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[FinishedTake]:
        """Admit waiting takes, start windows, decode one step for every slot; returns the
        takes that finished (or failed) in this iteration."""
        finished = self._admit()
        finished += self._start_windows()
        live = [slot for slot in self._slots if slot is not None]
        if not live:
            return finished
        n = max(slot.index for slot in live) + 1
        length = max(slot.position for slot in live) + 1
        text_length = max(slot.text_length for slot in live)
        try:
            self._decode_step(n, length, text_length)
        except Exception as error:  # noqa: BLE001 - any failure of the batched step is handled the same way
            return finished + self._after_failed_step(live, error)
        self.stats.steps += 1
        self.stats.slot_steps += len(live)
        self.stats.busiest = max(self.stats.busiest, len(live))
        for slot in live:
            slot.position += 1
            if slot.position > slot.frames + self.books - 2:  # the window's last frame of the last codebook is in
                slot.known = slot.start + slot.frames
                slot.needs_window = True
                if slot.known >= slot.take.frames:
                    finished.append(self._retire(slot))
        self.on_step()
        return finished

    def _admit(self) -> list[FinishedTake]:
        failed: list[FinishedTake] = []
        empty = self.running == 0  # a static batch is admitted only into an empty engine
        while self._waiting:
            free = [i for i, slot in enumerate(self._slots) if slot is None]
            head = self._waiting[0]
            solo_running = any(s is not None and s.take.key in self._solo_keys for s in self._slots)
            if not free or solo_running or (head.solo and self.running) or (self.options.static and not empty):
                break
            self._waiting.popleft()
            index = free[0]
            try:
                text = self.musicgen.encode_text(head.take.caption)
                self.decoder.set_text(index, text)
            except Exception as error:  # noqa: BLE001 - a bad caption fails its own take only
                log.exception("take %s: encoding its caption failed", head.take.key)
                failed.append(FinishedTake(head.take.key, error=f"the caption could not be encoded ({type(error).__name__})"))
                continue
            slot = _Slot(head.take, index, text_length=text.shape[0])
            if head.solo:
                self._solo_keys.add(head.take.key)
            prompt = head.take.prompt
            if prompt is not None:
                slot.known = prompt.shape[-1]
                self._codes[index, :, : slot.known] = prompt.to(self.device)
            self._keys[index] = int(sampling.seed_key(torch.tensor(head.take.seed % 2**32)).item())
            self._steps[index] = 0
            self._bad[index] = False
            self._slots[index] = slot
        return failed

    def _start_windows(self) -> list[FinishedTake]:
        failed: list[FinishedTake] = []
        for slot in self._slots:
            if slot is None or not slot.needs_window:
                continue
            slot.start = max(0, slot.known - self.prompt_frames)
            slot.frames = min(slot.take.frames - slot.start, self.window_frames)
            prompt = slot.known - slot.start
            slot.position = prompt
            index = slot.index
            self._start[index], self._frames[index] = slot.start, slot.frames
            self._known[index], self._position[index] = slot.known, prompt
            try:
                self.decoder.prefill(index, self._prompt_inputs(index, slot.start, prompt))
            except Exception as error:  # noqa: BLE001
                log.exception("take %s: prefilling its window failed", slot.take.key)
                failed.append(FinishedTake(slot.take.key, error=f"continuing the track failed ({type(error).__name__})"))
                self._free(slot)
                continue
            self._active[index] = True
            slot.needs_window = False
        return failed

    def _prompt_inputs(self, index: int, start: int, prompt: int) -> torch.Tensor:
        """Input tokens ``(prompt, books)`` for window positions ``0 .. prompt-1``: codebook k
        at position p holds frame p-k-1 (the delay pattern), the pad token before that."""
        if prompt == 0:
            return torch.zeros((0, self.books), dtype=torch.long, device=self.device)
        frame = torch.arange(prompt, device=self.device).view(-1, 1) - 1 - self._book_index.view(1, -1)
        tokens = self._codes[index].gather(1, (start + frame.clamp(min=0)).t()).t()
        return torch.where(frame >= 0, tokens, self.musicgen.pad_token)

    def _decode_step(self, n: int, length: int, text_length: int) -> None:
        if not self.uses_graphs:
            self._step_tensors(n, length, text_length)
            return
        key = self._bucket(n, length)
        self._graphs[key].replay()

    def _step_tensors(self, n: int, length: int, text_length: int) -> None:
        """The whole step on device tensors: gather inputs, decode, guide, sample, write back."""
        position = self._position[:n]
        start, frames, known = self._start[:n, None], self._frames[:n, None], self._known[:n, None]
        frame_in = position[:, None] - 1 - self._book_index
        tokens = self._codes[:n].gather(2, (start + frame_in).clamp(0, self.max_frames - 1).unsqueeze(-1)).squeeze(-1)
        tokens = torch.where((frame_in >= 0) & (frame_in < frames), tokens, self.musicgen.pad_token)
        logits = sampling.guide(self.decoder.step(tokens, position, length, text_length), self.options.guidance_scale)
        self._bad[:n] |= ~torch.isfinite(logits).flatten(1).all(dim=1)
        chosen = sampling.sample(logits, self._keys[:n], self._steps[:n], top_k=self.options.top_k,
                                 temperature=self.options.temperature)
        frame_out = position[:, None] - self._book_index
        target = (start + frame_out).clamp(0, self.max_frames - 1).unsqueeze(-1)
        writable = self._active[:n, None] & (frame_out >= 0) & (frame_out < frames) & (start + frame_out >= known)
        codes = self._codes[:n]
        codes.scatter_(2, target, torch.where(writable, chosen, codes.gather(2, target).squeeze(-1)).unsqueeze(-1))
        self._position[:n] += self._active[:n]
        self._steps[:n] += self._active[:n]

    # ---- CUDA graphs ------------------------------------------------------------------
    def _bucket(self, n: int, length: int) -> tuple[int, int]:
        slots = 1
        while slots < n:
            slots *= 2
        lengths = self._length_buckets()
        return min(slots, self.slots), lengths[bisect.bisect_left(lengths, length)]

    def _length_buckets(self) -> list[int]:
        full = self.decoder.max_positions
        return [b for b in LENGTH_BUCKETS if b < full] + [full]

    def _capture_graphs(self) -> None:
        """Capture one graph per (slots, length) bucket while no slot is active (so the
        warm-up runs change nothing that matters)."""
        text = self.musicgen.max_text_tokens
        keys = sorted({self._bucket(n, length) for n in range(1, self.slots + 1) for length in self._length_buckets()})
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for n, length in keys:
                    self._step_tensors(n, length, text)
            torch.cuda.current_stream().wait_stream(stream)
            for n, length in keys:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self._step_tensors(n, length, text)
                self._graphs[(n, length)] = graph
        torch.cuda.synchronize()
        self._position.zero_()
        self._steps.zero_()
        log.info("captured %d CUDA graphs of the decode step", len(self._graphs))

    # ---- retiring ---------------------------------------------------------------------
    def _retire(self, slot: _Slot) -> FinishedTake:
        index, take = slot.index, slot.take
        bad = bool(self._bad[index].item())
        codes = self._codes[index, :, : take.frames].to("cpu", copy=True)
        self._free(slot)
        self.stats.frames += take.frames
        if bad:
            return FinishedTake(take.key, error="the model produced invalid values")
        return FinishedTake(take.key, codes=codes)

    def _free(self, slot: _Slot) -> None:
        self._active[slot.index] = False
        self._slots[slot.index] = None
        self._solo_keys.discard(slot.take.key)

    def _after_failed_step(self, live: list[_Slot], error: Exception) -> list[FinishedTake]:
        if len(live) == 1:
            [slot] = live
            log.error("take %s: decoding failed on its own: %s", slot.take.key, error)
            self._free(slot)
            return [FinishedTake(slot.take.key, error=f"decoding failed ({type(error).__name__})")]
        log.exception("a decode step of %d takes failed; running each alone to find the cause", len(live))
        for slot in sorted(live, key=lambda s: s.index, reverse=True):
            self._free(slot)
            self._waiting.appendleft(_Waiting(slot.take, solo=True))
        return []


def make(engine: "DecodeEngine | ReferenceEngine", takes: Iterable[TakeRequest]) -> list[FinishedTake]:
    """Run ``engine`` until these takes are made; results in the order given."""
    keys = []
    for take in takes:
        engine.add(take)
        keys.append(take.key)
    done: dict[Hashable, FinishedTake] = {}
    while engine.busy:
        done.update((f.key, f) for f in engine.step())
    return [done[key] for key in keys]


class ReferenceEngine:
    """transformers' ``generate`` behind the engine's interface (``--engine hf``): takes are
    gathered into one call of up to ``slots`` rows and run to the end of the longest, as the
    first version of the worker did. One window (30 s) at most; no tokens kept."""

    def __init__(self, musicgen: MusicGen, options: EngineOptions = EngineOptions()) -> None:
        self.musicgen = musicgen
        self.options = options
        self._waiting: deque[TakeRequest] = deque()
        self._progress: dict[Hashable, float] = {}
        self.stats = EngineStats()
        self.on_step: Callable[[], None] = lambda: None  # called after every decode step

    @property
    def slots(self) -> int:
        return self.options.slots

    @property
    def running(self) -> int:
        return 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self._waiting)

    def room(self) -> int:
        return max(0, self.slots - len(self._waiting))

    def add(self, take: TakeRequest) -> None:
        if take.prompt is not None:
            raise ValueError("the reference engine can't continue a take; use the decode engine")
        self._waiting.append(take)

    def discard(self, keys: Iterable[Hashable]) -> None:
        gone = set(keys)
        self._waiting = deque(t for t in self._waiting if t.key not in gone)

    def progress(self, key: Hashable) -> float:
        return self._progress.get(key, 0.0)

    def step(self) -> list[FinishedTake]:
        batch = [self._waiting.popleft() for _ in range(min(self.slots, len(self._waiting)))]
        if not batch:
            return []
        too_long = [t for t in batch if t.frames > self.musicgen.frames_for(self.options.window_s)]
        batch = [t for t in batch if t not in too_long]
        finished = [FinishedTake(t.key, error="the reference engine makes at most 30 s") for t in too_long]
        if not batch:
            return finished

        def report(fraction: float) -> None:
            for take in batch:
                self._progress[take.key] = fraction
            self.on_step()

        rows = [Row(t.caption, t.seed, t.frames / self.musicgen.frame_rate, t.melody) for t in batch]
        try:
            audio = self.musicgen.generate_reference(
                rows, guidance_scale=self.options.guidance_scale, top_k=self.options.top_k,
                temperature=self.options.temperature, progress=report)
        except Exception as error:  # noqa: BLE001
            if len(batch) == 1:
                log.exception("take %s: generation failed", batch[0].key)
                return finished + [FinishedTake(batch[0].key, error=f"generation failed ({type(error).__name__})")]
            log.exception("a batch of %d takes failed; running each alone to find the cause", len(batch))
            for take in batch:
                finished += make(self, [take])
            return finished
        finally:
            for take in batch:
                self._progress.pop(take.key, None)
        steps = max(self.musicgen.tokens_for(r.duration_s) for r in rows)
        self.stats.steps += steps
        self.stats.slot_steps += steps * len(batch)
        self.stats.busiest = max(self.stats.busiest, len(batch))
        self.stats.frames += sum(t.frames for t in batch)
        return finished + [FinishedTake(t.key, audio=a) for t, a in zip(batch, audio)]
