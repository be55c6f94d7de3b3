#!/usr/bin/env python3
"""Peer baseline for `managedt5 finetune`: one T5 / Flan-T5 training step in plain PyTorch eager mode (fp32, CPU), the
computation of HF transformers' T5ForConditionalGeneration with labels= (mean token cross-entropy), dropout 0,
torch.optim.AdamW, clip_grad_norm_ to 1; full fine-tuning or PEFT-style LoRA (q and v, r 8, alpha 8, base frozen).

Needs Debian's python3-torch (see torch_peer.py in the shared bench folder for the BLAS notes). NOT RUN in the
session that wrote it (torch is absent there); it is written to run where torch exists.
Usage:
    python3 torch_train_peer.py --config tests/fixtures/configs/flan-t5-small.json [--mode full|lora] [--threads 2]
Protocol (bench/train_bench.py runs ManagedT5 on the same work): random weights of the config's shapes, batch 8,
every input 128 tokens and every target 32 tokens (no padding: 8 x 160 = 1280 tokens a step), lr 1e-4 constant,
2 warm-up steps then --steps timed steps. Prints one JSON line: tokens_per_s over the timed steps, the step's arithmetic
and GFLOP/s (train_flops.py), peak RSS (MiB).
"""
import argparse, json, math, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

from train_flops import step_gflop   # bench/train_flops.py, beside this file


class Linear(nn.Module):
    """nn.Linear without bias, optionally with LoRA: y = x W^T + (x A^T B^T) * alpha / r (PEFT's init: B = 0)."""

    def __init__(self, d_in, d_out, g):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in, generator=g) * d_in ** -0.5)
        self.lora_A = self.lora_B = None

    def add_lora(self, r, alpha, g):
        d_out, d_in = self.weight.shape
        self.lora_A = nn.Parameter((torch.rand(r, d_in, generator=g) * 2 - 1) / math.sqrt(d_in))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r))
        self.scale = alpha / r

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.lora_A is not None:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        return y


class Norm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, cfg, g, bias):
        super().__init__()
        D, self.H, self.dk = cfg["d_model"], cfg["num_heads"], cfg["d_kv"]
        inner = self.H * self.dk
        self.q, self.k, self.v, self.o = Linear(D, inner, g), Linear(D, inner, g), Linear(D, inner, g), Linear(inner, D, g)
        self.relative_attention_bias = nn.Embedding(cfg["relative_attention_num_buckets"], self.H) if bias else None

    def forward(self, x, kv, bias):
        B, T, _ = x.shape
        heads = lambda t: t.view(B, -1, self.H, self.dk).transpose(1, 2)
        q, k, v = heads(self.q(x)), heads(self.k(kv)), heads(self.v(kv))
        s = torch.matmul(q, k.transpose(-1, -2)) + bias   # T5: no 1/sqrt(d_kv)
        return self.o(torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, cfg, g, decoder, first):
        super().__init__()
        D, FF, eps = cfg["d_model"], cfg["d_ff"], cfg["layer_norm_epsilon"]
        self.self_attn, self.n1 = Attention(cfg, g, first), Norm(D, eps)
        self.cross, self.n2 = (Attention(cfg, g, False), Norm(D, eps)) if decoder else (None, None)
        self.wi_0, self.wi_1, self.wo, self.n3 = Linear(D, FF, g), Linear(D, FF, g), Linear(FF, D, g), Norm(D, eps)

    def forward(self, x, bias, enc=None, cross_bias=None):
        h = self.n1(x)
        x = x + self.self_attn(h, h, bias)
        if self.cross is not None:
            x = x + self.cross(self.n2(x), enc, cross_bias)
        h = self.n3(x)
        return x + self.wo(F.gelu(self.wi_0(h), approximate="tanh") * self.wi_1(h))


class T5(nn.Module):
    """Flan-T5 (gated-GELU, untied head) with HF's structure; random weights (timing only)."""

    def __init__(self, cfg, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.cfg = cfg
        self.shared = nn.Embedding(cfg["vocab_size"], cfg["d_model"])
        with torch.no_grad():   # nn.init.normal_ takes no generator in torch 1.13 (Debian 12)
            self.shared.weight.copy_(torch.randn(cfg["vocab_size"], cfg["d_model"], generator=g))
        self.encoder = nn.ModuleList(Block(cfg, g, False, i == 0) for i in range(cfg["num_layers"]))
        self.decoder = nn.ModuleList(Block(cfg, g, True, i == 0) for i in range(cfg["num_decoder_layers"]))
        self.enc_norm, self.dec_norm = Norm(cfg["d_model"], cfg["layer_norm_epsilon"]), Norm(cfg["d_model"], cfg["layer_norm_epsilon"])
        self.lm_head = Linear(cfg["d_model"], cfg["vocab_size"], g)

    def bucket(self, rel, bidirectional):
        nb, md = self.cfg["relative_attention_num_buckets"], self.cfg["relative_attention_max_distance"]
        ret = 0
        if bidirectional:
            nb //= 2
            ret = (rel > 0).long() * nb
            rel = rel.abs()
        else:
            rel = -torch.clamp(rel, max=0)
        exact = nb // 2
        large = exact + (torch.log(rel.float().clamp(min=1) / exact) / math.log(md / exact) * (nb - exact)).long()
        return ret + torch.where(rel < exact, rel, torch.clamp(large, max=nb - 1))

    def position_bias(self, table, T, bidirectional):
        pos = torch.arange(T)
        return table(self.bucket(pos[None, :] - pos[:, None], bidirectional)).permute(2, 0, 1).unsqueeze(0)

    def forward(self, input_ids, labels):
        B, S = input_ids.shape
        T = labels.shape[1]
        x = self.shared(input_ids)
        bias = self.position_bias(self.encoder[0].self_attn.relative_attention_bias, S, True)
        for blk in self.encoder:
            x = blk(x, bias)
        enc = self.enc_norm(x)
        dec_in = torch.cat([torch.zeros(B, 1, dtype=labels.dtype), labels[:, :-1]], 1)   # shift right, start 0
        causal = torch.triu(torch.full((T, T), torch.finfo(torch.float32).min), 1)
        bias = self.position_bias(self.decoder[0].self_attn.relative_attention_bias, T, False) + causal
        y = self.shared(dec_in)
        for blk in self.decoder:
            y = blk(y, bias, enc, torch.zeros(1, 1, T, S))
        logits = self.lm_head(self.dec_norm(y))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--mode", choices=["full", "lora"], default="full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--source", type=int, default=128)
    ap.add_argument("--target", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    model = T5(cfg)
    if a.mode == "lora":
        model.requires_grad_(False)
        g = torch.Generator().manual_seed(1)
        for blocks in (model.encoder, model.decoder):
            for blk in blocks:
                for attn in [blk.self_attn] + ([blk.cross] if blk.cross is not None else []):
                    attn.q.add_lora(8, 8, g)
                    attn.v.add_lora(8, 8, g)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("enc_norm", "dec_norm")) and ".n" not in n]
    rest = [p for p in params if all(p is not q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-4, eps=1e-8)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(2, cfg["vocab_size"], (a.batch, a.source), generator=g)
    ids[:, -1] = 1
    labels = torch.randint(2, cfg["vocab_size"], (a.batch, a.target), generator=g)
    labels[:, -1] = 1
    times = []
    for step in range(2 + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = model(ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    timed = times[2:]
    tokens = a.batch * (a.source + a.target)
    print(json.dumps({
        "engine": "pytorch-eager", "torch": torch.__version__, "config": cfg.get("_name_or_path", a.config), "mode": a.mode,
        "threads": a.threads, "batch": a.batch, "source_tokens": a.source, "target_tokens": a.target, "steps": a.steps,
        "trainable_parameters": sum(p.numel() for p in params), "loss": float(loss),
        "step_s": sum(timed) / len(timed), "tokens_per_s": tokens * len(timed) / sum(timed),
        "gflop_per_step": round(step_gflop(cfg, a.mode, a.batch, a.source, a.target), 1),
        "gflop_per_s": round(step_gflop(cfg, a.mode, a.batch, a.source, a.target) * len(timed) / sum(timed), 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    sys.exit(main())
