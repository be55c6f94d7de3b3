#!/usr/bin/env python3
"""ManagedT5's side of the fine-tuning benchmark: the work of torch_train_peer.py through `managedt5 finetune`.

Builds (once, under --work) a model folder with random weights of a config's shapes (Flan-T5: gated-GELU, untied head;
the tokenizer files come from the tiny-flan-t5 fixture, which has Flan-T5's vocabulary) and a JSONL of 8 examples
whose inputs truncate to exactly 128 tokens and targets to 32, then runs 2 warm-up + --steps steps at batch 8
(lr 1e-4 constant, weight decay 0.01, clipping to 1) in full or LoRA (q and v, r 8, alpha 8) mode. Prints one JSON
line: tokens_per_s over the timed steps (the CLI's own per-step token counts and times), the step's arithmetic and
GFLOP/s (train_flops.py: comparable with the FMA peak) and the CLI process's peak RSS.
Plain Python 3, no packages. Usage (from the repository root, after `dotnet build engine/ManagedT5.Cli -c Release`):
    python3 bench/train_bench.py --config tests/fixtures/configs/flan-t5-small.json --mode lora [--threads 2]
"""
import argparse, array, json, os, random, resource, shutil, struct, subprocess, sys

from train_flops import step_gflop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(REPO, "engine", "ManagedT5.Cli", "bin", "Release", "net10.0", "ManagedT5.Cli.dll")
TOKENIZER = os.path.join(REPO, "tests", "fixtures", "models", "tiny-flan-t5")


def random_folder(cfg, folder):
    """config.json, model.safetensors (F32, HF names, N(0,1)/sqrt(fan_in) Linears, N(0,1) embedding, unit norms)."""
    os.makedirs(folder, exist_ok=True)
    D, FF, inner, V = cfg["d_model"], cfg["d_ff"], cfg["num_heads"] * cfg["d_kv"], cfg["vocab_size"]
    rng = random.Random(0)
    blocks = {}

    def block(scale):   # 2^20 normal samples per scale, tiled from a moving offset (timing only)
        if scale not in blocks:
            blocks[scale] = array.array("f", (rng.gauss(0, 1) * scale for _ in range(1 << 20))).tobytes()
        return blocks[scale]

    tensors = [("shared.weight", [V, D], 1.0)]
    for stack, L in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
        attn = ["0.SelfAttention"] + (["1.EncDecAttention"] if stack == "decoder" else [])
        for i in range(L):
            p = f"{stack}.block.{i}.layer."
            for j, a in enumerate(attn):
                tensors += [(f"{p}{a}.{m}.weight", [inner, D], D ** -0.5) for m in "qkv"] + [(f"{p}{a}.o.weight", [D, inner], inner ** -0.5)]
                if i == 0 and j == 0:
                    tensors.append((f"{p}0.SelfAttention.relative_attention_bias.weight", [cfg["relative_attention_num_buckets"], cfg["num_heads"]], 1.0))
                tensors.append((f"{p}{j}.layer_norm.weight", [D], None))
            f = f"{p}{len(attn)}."
            tensors += [(f + "DenseReluDense.wi_0.weight", [FF, D], D ** -0.5), (f + "DenseReluDense.wi_1.weight", [FF, D], D ** -0.5),
                        (f + "DenseReluDense.wo.weight", [D, FF], FF ** -0.5), (f + "layer_norm.weight", [D], None)]
        tensors.append((f"{stack}.final_layer_norm.weight", [D], None))
    tensors.append(("lm_head.weight", [V, D], D ** -0.5))
    header, offset = {}, 0
    for name, shape, _ in tensors:
        n = 4 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as out:
        out.write(struct.pack("<Q", len(head)) + head)
        start = 0
        for name, shape, scale in tensors:
            n = 4 * shape[0] * (shape[1] if len(shape) > 1 else 1)
            if scale is None:
                out.write(array.array("f", [1.0]).tobytes() * (n // 4))
                continue
            src = block(scale)
            while n > 0:
                start = (start + 4 * 7919) % len(src)
                chunk = src[start:start + n]
                out.write(chunk)
                n -= len(chunk)
    json.dump(dict(cfg, torch_dtype="float32", tie_word_embeddings=False), open(os.path.join(folder, "config.json"), "w"), indent=2)
    for f in ("spiece.model", "tokenizer.json", "generation_config.json"):
        shutil.copy(os.path.join(TOKENIZER, f), folder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--mode", choices=["full", "lora"], default="full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--work", default="/tmp/managedt5-train-bench")
    a = ap.parse_args()
    cfg = json.load(open(a.config))
    name = os.path.splitext(os.path.basename(a.config))[0]
    folder = os.path.join(a.work, name)
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        random_folder(cfg, folder)
    data = os.path.join(a.work, "batch8.jsonl")
    rng = random.Random(1)
    words = "the of and to in is was for on that with as by at from his her an which are this be or have had".split()
    with open(data, "w") as f:
        for _ in range(8):
            f.write(json.dumps({"input": " ".join(rng.choice(words) for _ in range(400)), "target": " ".join(rng.choice(words) for _ in range(100))}) + "\n")
    out = os.path.join(a.work, f"out-{name}-{a.mode}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["dotnet", CLI, "finetune", "--model", folder, "--data", data, "--out", out, "--max-steps", str(2 + a.steps),
           "--batch-size", "8", "--no-shuffle", "--learning-rate", "1e-4", "--lr-scheduler-type", "constant", "--weight-decay", "0.01",
           "--max-source-length", "128", "--max-target-length", "32", "--save-steps", "0", "--threads", str(a.threads), "--json",
           "--dropout-rate", "0"]   # the peer (torch_train_peer.py) runs without dropout
    if a.mode == "lora":
        cmd += ["--lora-r", "8", "--lora-alpha", "8", "--lora-target-modules", "q", "v"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"managedt5 finetune failed ({run.returncode}): {run.stderr.strip()}")
    lines = [json.loads(l) for l in run.stdout.splitlines() if l.strip()]
    steps = [l for l in lines if "step" in l][2:]
    tokens, seconds = sum(s["tokens"] for s in steps), sum(s["seconds"] for s in steps)
    print(json.dumps({
        "engine": "managedt5", "config": name, "mode": a.mode, "threads": a.threads, "batch": 8, "source_tokens": 128, "target_tokens": 32,
        "steps": len(steps), "loss": steps[-1]["loss"], "step_s": seconds / len(steps), "tokens_per_s": tokens / seconds,
        "tokens_per_step": tokens / len(steps), "gflop_per_step": round(step_gflop(cfg, a.mode), 1),
        "gflop_per_s": round(step_gflop(cfg, a.mode) * len(steps) / seconds, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
