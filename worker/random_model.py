"""Randomly initialised MusicGen checkpoints, for tests and the benchmark.

Real deployments load trained weights from the hub; this machine can't reach it, so tests and
``python -m worker.bench`` build a random model of the right shape, save it with
``save_pretrained`` (model, processor with an offline-made tokenizer, generation config) and
load it back through the production loader, exactly as a downloaded checkpoint would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Size = Literal["tiny", "small"]

_WORDS = (
    "calm dreamy lo-fi hip hop with piano and soft drums bpm music jazz rock pop sad happy "
    "epic cinematic orchestral guitar strings slow fast medium tempo ambient electronic in a "
    "major minor key rainy night melancholic energetic peaceful cello violin synthesizer"
).split()


def build_random_musicgen(out_dir: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Save a random MusicGen (model, processor, generation config) to ``out_dir``."""
    model, processor = random_musicgen(size, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_random_melody(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random MusicGen-melody (model, tokenizer, generation config) to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, MusicgenMelodyForConditionalGeneration

    base, processor = random_musicgen("tiny", seed)
    torch.manual_seed(seed)
    decoder = MusicgenMelodyDecoderConfig(**{k: getattr(base.config.decoder, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "num_codebooks",
        "pad_token_id", "bos_token_id")})
    config = MusicgenMelodyConfig(text_encoder=base.config.text_encoder.to_dict(),
                                  audio_encoder=base.config.audio_encoder.to_dict(), decoder=decoder.to_dict())
    model = MusicgenMelodyForConditionalGeneration(config).eval()
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.generation_config = GenerationConfig.from_dict(base.generation_config.to_dict())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    return out


def random_musicgen(size: Size = "tiny", seed: int = 0):  # type: ignore[no-untyped-def]
    """A random MusicGen (T5 text encoder + EnCodec 32 kHz + decoder) and its processor.

    ``tiny``: a few hundred thousand parameters, for tests. ``small``: the shape of
    facebook/musicgen-small (decoder defaults, T5-base-sized encoder, EnCodec 32 kHz with
    upsampling ratios [8, 5, 4, 4], 64 filters, hidden size 128, codebook size 2048).
    """
    import torch
    from transformers import (
        EncodecConfig, EncodecFeatureExtractor, GenerationConfig, MusicgenConfig,
        MusicgenDecoderConfig, MusicgenForConditionalGeneration, MusicgenProcessor, T5Config,
        T5Tokenizer,
    )

    torch.manual_seed(seed)
    if size == "tiny":
        codebook = 64
        text = T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
        audio = EncodecConfig(
            sampling_rate=32_000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4], num_filters=4,
            hidden_size=8, codebook_size=codebook, codebook_dim=8, num_lstm_layers=1,
            target_bandwidths=[1.2], normalize=False,
        )
        decoder = MusicgenDecoderConfig(
            vocab_size=codebook, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            ffn_dim=64, num_codebooks=4, pad_token_id=codebook, bos_token_id=codebook,
        )
    else:
        codebook = 2048
        text = T5Config(vocab_size=32_128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
        audio = EncodecConfig(
            sampling_rate=32_000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4], num_filters=64,
            hidden_size=128, codebook_size=codebook, num_lstm_layers=2, target_bandwidths=[2.2],
            normalize=False,
        )
        decoder = MusicgenDecoderConfig(num_codebooks=4, pad_token_id=codebook, bos_token_id=codebook)
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(config).eval()
    with torch.no_grad():  # codebooks start at zero, which would make the audio ignore the codes
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=codebook, pad_token_id=codebook, bos_token_id=codebook,
        do_sample=True, guidance_scale=3.0, top_k=250, max_length=1503,
    )
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"▁{w}", -float(i + 1)) for i, w in enumerate(_WORDS)]
    vocab += [(chr(c), -50.0) for c in range(ord("a"), ord("z") + 1)]
    vocab += [(str(d), -60.0) for d in range(10)] + [(",", -60.0), ("-", -60.0), ("▁", -70.0)]
    vocab = vocab[: text.vocab_size]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    processor = MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32_000), tokenizer=tokenizer)
    return model, processor


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Save a randomly initialised MusicGen checkpoint.")
    parser.add_argument("out_dir")
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    args = parser.parse_args()
    print(build_random_musicgen(args.out_dir, args.size))
