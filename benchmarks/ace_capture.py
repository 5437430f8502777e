"""ACE attention capture vs naive `output_attentions=True`: peak memory and time, side by side.

Each variant runs in its own subprocess (so peak RSS is its own) on the same tiny Qwen2.5-VL with >= 8 layers
and a response of >= 1024 tokens, and the table prints both plus the ratios.

    python benchmarks/ace_capture.py [--layers 8] [--response-tokens 1024] [--repeats 3]

Goal (issue 2): capture peak memory <= 0.5x naive, time <= 1.0x naive.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(model_dir: str, variant: str, response_tokens: int, repeats: int) -> dict:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rap_hf.scoring.attention import capture_final_layer_attention

    torch.manual_seed(0)
    impl = "eager" if variant == "naive" else "sdpa"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation=impl).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(
        text=[prompt], images=[Image.new("RGB", (112, 112), (90, 20, 200))], return_tensors="pt"
    )
    vocab = model.config.get_text_config().vocab_size
    response = torch.randint(100, vocab - 100, (1, response_tokens))
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in inputs:
            fill = 1 if key == "attention_mask" else 0
            inputs[key] = torch.cat([inputs[key], torch.full_like(response, fill)], dim=1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], response], dim=1)
    baseline = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            if variant == "naive":
                out = model(**inputs, output_attentions=True, logits_to_keep=1)
                attn = out.attentions[-1][0].float().mean(0)[-response_tokens:, -response_tokens:]
            else:
                with capture_final_layer_attention(model, num_rows=response_tokens) as recorder:
                    model(**inputs, logits_to_keep=1)
                attn = recorder.result
        times.append(time.perf_counter() - start)
        del attn
    return {
        "variant": variant,
        "seq_len": int(inputs["input_ids"].shape[1]),
        "seconds": statistics.median(times),
        "peak_extra_mb": _rss_mb() - baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--response-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=["naive", "capture"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process
        print(json.dumps(run_variant(args.model_dir, args.variant, args.response_tokens, args.repeats)))
        return

    from rap_hf.demo.tiny_models import save_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_vlm(tmp, num_hidden_layers=args.layers, seed=0)
        results = {}
        for variant in ("naive", "capture"):
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--model-dir",
                tmp,
                "--layers",
                str(args.layers),
                "--response-tokens",
                str(args.response_tokens),
                "--repeats",
                str(args.repeats),
            ]
            out = (
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            results[variant] = json.loads(out)
    naive, capture = results["naive"], results["capture"]
    print(
        f"tiny Qwen2.5-VL, {args.layers} layers, sequence {naive['seq_len']} tokens ({args.response_tokens} response)"
    )
    print(f"{'variant':<40} {'peak extra RSS (MB)':>20} {'time (s, median)':>18}")
    print(
        f"{'naive output_attentions=True (eager)':<40} {naive['peak_extra_mb']:>20.1f} {naive['seconds']:>18.3f}"
    )
    print(f"{'final-layer capture (sdpa)':<40} {capture['peak_extra_mb']:>20.1f} {capture['seconds']:>18.3f}")
    mem_ratio = capture["peak_extra_mb"] / max(naive["peak_extra_mb"], 1e-9)
    time_ratio = capture["seconds"] / naive["seconds"]
    print(f"{'ratio capture / naive':<40} {mem_ratio:>20.2f} {time_ratio:>18.2f}")
    print(
        f"goal: memory <= 0.50x -> {'met' if mem_ratio <= 0.5 else 'NOT met'}; time <= 1.00x -> {'met' if time_ratio <= 1.0 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
