"""The arithmetic of one fine-tuning step of the benchmark (train_bench.py / torch_train_peer.py), for the roofline.

step_gflop(cfg, mode, batch, source, target): the multiply-adds of every matrix product of one step, times 2, in GFLOP.
Forward: each Linear (n x in x out), attention (scores and weighted sum), the head. Backward: each Linear's dX (not
below the lowest trained module: under LoRA on q/v, block 0's self-attention q/k/v of either stack get none, as
PyTorch's autograd and ManagedT5 both skip it) and, in full fine-tuning, its dW; attention 2x its forward; LoRA's six
rank-r products per adapted Linear. Element-wise work (norms, softmax, GELU, cross-entropy, AdamW) is left out: it is
memory-bound, and a few flops per element (AdamW's ~10 per parameter is 0.8 GFLOP of flan-t5-small's 200). Both engines do this same arithmetic, so tokens/s ratios are ratios of
efficiency: GFLOP/s over the machine's FMA peak.
"""


def step_gflop(cfg, mode, batch=8, source=128, target=32, lora_r=8):
    d, ff, inner, vocab = cfg["d_model"], cfg["d_ff"], cfg["num_heads"] * cfg["d_kv"], cfg["vocab_size"]
    enc_layers, dec_layers = cfg["num_layers"], cfg.get("num_decoder_layers") or cfg["num_layers"]
    gated = cfg.get("feed_forward_proj", "relu").startswith("gated")
    ns, nt = batch * source, batch * target
    ff_products = [(d, ff), (d, ff), (ff, d)] if gated else [(d, ff), (ff, d)]
    # (rows, in, out, adapted by LoRA, gets dX) for every Linear of the step.
    linears = []
    for layer in range(enc_layers):
        for name in "qkvo":
            linears.append((ns, d if name != "o" else inner, inner if name != "o" else d, name in "qv", not (mode == "lora" and layer == 0 and name != "o")))
        linears += [(ns, i, o, False, True) for i, o in ff_products]
    for layer in range(dec_layers):
        for name in "qkvo":
            linears.append((nt, d if name != "o" else inner, inner if name != "o" else d, name in "qv", not (mode == "lora" and layer == 0 and name != "o")))
        for name in "qkvo":   # cross-attention: k and v read the encoder's output
            rows = ns if name in "kv" else nt
            linears.append((rows, d if name != "o" else inner, inner if name != "o" else d, name in "qv", True))
        linears += [(nt, i, o, False, True) for i, o in ff_products]
    linears.append((nt, d, vocab, False, True))   # the head
    macs = 0
    for rows, i, o, adapted, dx in linears:
        macs += rows * i * o * (1 + (1 if dx else 0) + (1 if mode == "full" else 0))
        if mode == "lora" and adapted:
            macs += 3 * rows * lora_r * (i + o)   # x·Aᵀ, ·Bᵀ; dy·B, tᵀ·x, dyᵀ·saved, t·A
    attention = batch * (enc_layers * 2 * source * source + dec_layers * 2 * (target * target + target * source)) * inner
    macs += 3 * attention   # forward, and a backward of twice its products
    return 2 * macs / 1e9
