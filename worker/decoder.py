"""MusicGen's decoder as a fixed set of batch slots, over the weights transformers loaded.

Each slot holds one take: one conditional and (with classifier-free guidance) one
unconditional row. Its self-attention keys and values live in a cache preallocated once
for the longest window; its cross-attention keys and values are computed once from the
caption's text encoding. A decode step feeds every slot in ``[0, n)`` one token per
codebook at the slot's own position and returns the next-token logits.

The arithmetic is transformers' ``MusicgenDecoder`` (pre-norm layers: self-attention,
cross-attention, feed-forward; sinusoidal positions; one embedding and one head per
codebook), arranged for few kernels per step, since at small batch a GPU step is bound by
kernel count, not arithmetic: a layer's query, key and value projections are one product (the
modules' weights become views of one fused matrix, so transformers' own forward still works and
no memory is added), each layer's new keys and values are written with one indexed store into one
cache tensor, residual additions ride in the matrix products (``addmm``), and all codebooks' heads
are one product. The unconditional row attends to a single zero
key with a zero value, which gives exactly the zero that transformers' all-zero text
encoding gives it; each caption is attended at its own length (padding is masked anyway).
All shapes in a step depend only on ``(n, length, text_length)``, so the step can be
captured in a CUDA graph for each such triple.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class SlotDecoder:
    def __init__(self, model, slots: int, max_positions: int, max_text_tokens: int, guided: bool) -> None:  # type: ignore[no-untyped-def]
        causal = model.decoder  # MusicgenForCausalLM
        decoder = causal.model.decoder  # MusicgenDecoder
        config = decoder.config
        self.layers = list(decoder.layers)
        self.final_norm = decoder.layer_norm
        self.books = int(config.num_codebooks)
        self.width = int(config.hidden_size)
        self.num_heads = int(config.num_attention_heads)
        self.head_dim = self.width // self.num_heads
        self.vocab = int(config.vocab_size)
        self.rows = 2 if guided else 1
        self.slots = slots
        self.max_positions = max_positions
        self.max_text_tokens = max_text_tokens
        heads = list(causal.lm_heads)
        self.device, self.dtype = heads[0].weight.device, heads[0].weight.dtype
        self.head_weight = torch.cat([h.weight for h in heads])  # every codebook's head in one product
        if decoder.embed_positions.weights.shape[0] < max_positions:
            decoder.embed_positions.make_weights(max_positions, self.width)
        self.positions = decoder.embed_positions.weights.to(self.device, self.dtype)
        self.embeddings = [e.weight for e in decoder.embed_tokens]
        self.qkv_weights = [_fuse_projections(layer.self_attn) for layer in self.layers]
        rows = slots * self.rows  # row r of slot s is s * self.rows + r; r = 0 conditional, 1 unconditional
        # One cache per layer: [row, 0] holds keys, [row, 1] values, so one store writes both.
        shape = (rows, 2, self.num_heads, max_positions, self.head_dim)
        self.caches = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.layers]
        cross = (rows, self.num_heads, max_text_tokens, self.head_dim)
        self.cross_keys = [torch.zeros(cross, device=self.device, dtype=self.dtype) for _ in self.layers]
        self.cross_values = [torch.zeros(cross, device=self.device, dtype=self.dtype) for _ in self.layers]
        # Unconditional rows (and free slots) attend to one zero key with a zero value: exactly
        # zero, as transformers' all-zero text encoding gives them. No row softmaxes over nothing.
        self.cross_mask = torch.zeros((rows, max_text_tokens), device=self.device, dtype=torch.bool)
        self.cross_mask[:, 0] = True

    # ---- per slot, between steps ---------------------------------------------------
    def set_text(self, slot: int, text: torch.Tensor) -> None:
        """Cross-attention keys/values of a caption's encoding ``(tokens, width)`` for ``slot``."""
        length = text.shape[0]
        if not 0 < length <= self.max_text_tokens:
            raise ValueError(f"a caption must encode to 1..{self.max_text_tokens} tokens, got {length}")
        text = text.to(self.device, self.dtype)
        row = slot * self.rows
        for layer, keys, values in zip(self.layers, self.cross_keys, self.cross_values):
            attention = layer.encoder_attn
            keys[row, :, :length] = self._split(attention.k_proj(text)).transpose(0, 1)
            values[row, :, :length] = self._split(attention.v_proj(text)).transpose(0, 1)
        self.cross_mask[row] = False
        self.cross_mask[row, :length] = True

    def prefill(self, slot: int, tokens: torch.Tensor) -> None:
        """Fill ``slot``'s cache for positions ``0 .. P-1`` from input tokens ``(P, books)``."""
        length = tokens.shape[0]
        if length == 0:
            return
        rows = slice(slot * self.rows, (slot + 1) * self.rows)
        hidden = self._embed(tokens.to(self.device)) + self.positions[:length]
        hidden = hidden.unsqueeze(0).expand(self.rows, length, self.width).contiguous()
        text_mask = self.cross_mask[rows].view(self.rows, 1, 1, self.max_text_tokens)
        for index, layer in enumerate(self.layers):
            x = layer.self_attn_layer_norm(hidden)
            attention = layer.self_attn
            query, key, value = (self._split(p).transpose(1, 2) for p in F.linear(x, self.qkv_weights[index]).chunk(3, dim=-1))
            self.caches[index][rows, 0, :, :length] = key
            self.caches[index][rows, 1, :, :length] = value
            out = F.scaled_dot_product_attention(query, key, value, is_causal=True)
            hidden = hidden + attention.out_proj(out.transpose(1, 2).reshape(self.rows, length, self.width))
            x = layer.encoder_attn_layer_norm(hidden)
            cross = layer.encoder_attn
            query = self._split(cross.q_proj(x)).transpose(1, 2)
            out = F.scaled_dot_product_attention(query, self.cross_keys[index][rows], self.cross_values[index][rows],
                                                 attn_mask=text_mask)
            hidden = hidden + cross.out_proj(out.transpose(1, 2).reshape(self.rows, length, self.width))
            x = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(x)))

    # ---- the decode step ----------------------------------------------------------
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, length: int, text_length: int) -> torch.Tensor:
        """Logits ``(n, rows, books, vocab)`` for slots ``0 .. n-1``, each fed ``tokens[i]``
        (one per codebook) at ``positions[i]``; keys at ``0 .. length-1`` are attended."""
        n = tokens.shape[0]
        rows = n * self.rows
        hidden = self._embed(tokens) + self.positions.index_select(0, positions)
        hidden = hidden.unsqueeze(1).expand(n, self.rows, self.width).reshape(rows, self.width)
        row_positions = positions.repeat_interleave(self.rows)
        # Where each row's new key and value go in a (rows * 2 * heads * positions, head_dim) view of a cache.
        row_kv_heads = torch.arange(rows * 2 * self.num_heads, device=self.device).view(rows, 2, self.num_heads)
        cache_index = row_kv_heads * self.max_positions + row_positions.view(rows, 1, 1)
        # Additive masks, made once per step rather than converted from booleans in every layer.
        visible = self._additive(torch.arange(length, device=self.device).view(1, length) <= row_positions.view(rows, 1))
        text_visible = self._additive(self.cross_mask[:rows, :text_length])
        for index, layer in enumerate(self.layers):
            x = layer.self_attn_layer_norm(hidden)
            attention = layer.self_attn
            qkv = torch.mm(x, self.qkv_weights[index].t())
            cache = self.caches[index]
            cache.view(-1, self.head_dim).index_put_((cache_index,), qkv[:, self.width:].view(rows, 2, self.num_heads, self.head_dim))
            out = F.scaled_dot_product_attention(self._split(qkv[:, : self.width]).unsqueeze(2), cache[:rows, 0, :, :length],
                                                 cache[:rows, 1, :, :length], attn_mask=visible)
            hidden = torch.addmm(hidden, out.view(rows, self.width), attention.out_proj.weight.t())
            x = layer.encoder_attn_layer_norm(hidden)
            cross = layer.encoder_attn
            out = F.scaled_dot_product_attention(
                self._split(cross.q_proj(x)).unsqueeze(2), self.cross_keys[index][:rows, :, :text_length],
                self.cross_values[index][:rows, :, :text_length], attn_mask=text_visible)
            hidden = torch.addmm(hidden, out.view(rows, self.width), cross.out_proj.weight.t())
            x = layer.final_layer_norm(hidden)
            hidden = torch.addmm(hidden, layer.activation_fn(layer.fc1(x)), layer.fc2.weight.t())
        logits = F.linear(self.final_norm(hidden), self.head_weight)
        return logits.view(n, self.rows, self.books, self.vocab)

    # ---- helpers -------------------------------------------------------------------
    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the codebooks' embeddings, added in codebook order as transformers does."""
        total = self.embeddings[0][tokens[..., 0]]
        for book in range(1, self.books):
            total = total + self.embeddings[book][tokens[..., book]]
        return total

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """A (rows, positions) boolean mask as (rows, 1, 1, positions) zeros and -inf."""
        rows, positions = allowed.shape
        mask = torch.zeros((rows, 1, 1, positions), device=self.device, dtype=self.dtype)
        return mask.masked_fill_(~allowed.view(rows, 1, 1, positions), float("-inf"))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` -> ``(..., heads, head_dim)``."""
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim)


def _fuse_projections(attention) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One ``(3 * width, width)`` matrix of the query, key and value projections; the three
    modules' weights become views of it, so nothing is stored twice."""
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    if any(p.bias is not None for p in projections):
        raise ValueError("the decode engine expects MusicGen's bias-free attention projections")
    fused = torch.cat([p.weight.detach() for p in projections])
    width = projections[0].weight.shape[0]
    for i, p in enumerate(projections):
        p.weight.data = fused[i * width: (i + 1) * width]
    return fused
