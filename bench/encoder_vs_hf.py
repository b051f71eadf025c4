"""Our BertModel against transformers' BertModel: same weights, one 384-token sequence, CPU.

    python3 bench/encoder_vs_hf.py                 # multilingual-e5-small's shape, random weights
    python3 bench/encoder_vs_hf.py --model DIR     # the weights of a checkpoint directory

Both run in eval mode under torch.inference_mode with the same thread count; their calls are
interleaved (order alternating) so that machine noise hits both alike. Prints median ms each and
the speed-up of ours over HF (HF ms / our ms: above 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from korqa.modeling import BertConfig, BertModel
from korqa.modeling.checkpoint import load_model

# intfloat/multilingual-e5-small's encoder shape (XLM-R vocabulary).
E5_SMALL = BertConfig(vocab_size=250037, hidden_size=384, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
                      type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-12)


def build(model_dir: str | None) -> tuple[BertModel, transformers.BertModel]:
    torch.manual_seed(0)
    ours = load_model(BertModel, model_dir) if model_dir else BertModel(E5_SMALL)
    ours.eval()
    hf_config = transformers.BertConfig(**ours.config.to_dict(), attn_implementation="sdpa")
    hf = transformers.BertModel(hf_config).eval()
    result = hf.load_state_dict(ours.state_dict(), strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result
    return ours, hf


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: random e5-small shape)")
    parser.add_argument("--length", type=int, default=384)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    ours, hf = build(args.model)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, ours.config.vocab_size, (1, args.length), generator=gen)
    mask = torch.ones_like(ids)
    run_ours = lambda: ours(ids, attention_mask=mask, output_all_encoded_layers=False)  # noqa: E731
    run_hf = lambda: hf(input_ids=ids, attention_mask=mask)  # noqa: E731

    with torch.inference_mode():
        diff = (run_ours()[0][-1] - run_hf().last_hidden_state).abs().max().item()
        for _ in range(args.warmup):
            run_ours(), run_hf()
        times: dict[str, list[float]] = {"ours": [], "hf": []}
        for i in range(args.repeats):
            order = [("ours", run_ours), ("hf", run_hf)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                times[name].append(timed(fn))

    ours_ms, hf_ms = statistics.median(times["ours"]), statistics.median(times["hf"])
    print(f"BertModel {ours.config.num_hidden_layers}x{ours.config.hidden_size}, "
          f"batch 1 x {args.length} tokens, {args.threads} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__} (sdpa)")
    print(f"max |ours - hf| on the last layer: {diff:.2e}")
    print(f"korqa        median {ours_ms:8.1f} ms")
    print(f"transformers median {hf_ms:8.1f} ms")
    print(f"speed-up (hf / ours): {hf_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
