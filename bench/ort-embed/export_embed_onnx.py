#!/usr/bin/env python3
"""Export a sentence-transformers T5 folder (T5 encoder, mean pooling, optional Dense, optional Normalize; weights in
safetensors) to one ONNX graph for the ORT embedding peer (Program.cs), with the same weights ManagedT5 reads.
Needs torch and onnx only (Debian: apt-get install -y python3-torch python3-onnx); no transformers, no
sentence-transformers. It was written for this project but NOT run here (the machine it was written on has no torch).
Usage:
    python3 export_embed_onnx.py MODEL_DIR [OUTDIR, default /tmp/ort-embed/<name>]
MODEL_DIR: e.g. the folder `dotnet bench/ManagedT5.Bench/bin/Release/net10.0/ManagedT5.Bench.dll --quick-embed 0 DIR`
writes (random sentence-t5-base shapes), or tests/fixtures/models/tiny-sentence-t5, whose reference.safetensors the
torch forward is checked against first (pooled and embeddings within 1e-5) so the exported graph computes what
sentence-transformers computes.
Writes to OUTDIR:
  embed.onnx          input_ids [B,S] int64, attention_mask [B,S] int64 -> embeddings [B,D]
  inputs.json         ids [32][128]: random ids (seed 1) in 3..31999, the last of each row </s> (1)
  ref_embeddings.bin  torch's embeddings of those ids (float32), for `Program.cs --check`
"""
import json, math, os, struct, sys

import torch
import torch.nn.functional as F
from torch import nn

OPSET = 17
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).float() \
            if t["dtype"] != "I64" else torch.frombuffer(bytearray(data[a:b]), dtype=torch.int64).reshape(t["shape"])
    return out


def bucket(rel, num_buckets, max_distance):
    """T5Attention._relative_position_bucket, bidirectional (the encoder's)."""
    num_buckets //= 2
    ret = (rel > 0).long() * num_buckets
    n = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return ret + torch.where(n < max_exact, n, large)


class SentenceT5(nn.Module):
    """modeling_t5.py's T5EncoderModel forward, then sentence-transformers' Pooling (mean), Dense and Normalize."""

    def __init__(self, folder):
        super().__init__()
        self.cfg = json.load(open(os.path.join(folder, "config.json")))
        w = load_safetensors(os.path.join(folder, "model.safetensors"))
        for k, v in w.items():
            self.register_buffer(k.replace(".", "_"), v)
        self.w = lambda k: getattr(self, k.replace(".", "_"))
        ff = self.cfg.get("feed_forward_proj", "relu")
        self.gated = ff.startswith("gated-")
        self.act = (lambda x: F.gelu(x, approximate="tanh")) if "gelu" in ff else F.relu
        modules = json.load(open(os.path.join(folder, "modules.json")))
        self.dense, self.normalize = [], False
        for m in modules[1:]:
            t, path = m["type"].split(".")[-1], os.path.join(folder, m["path"])
            if t == "Pooling":
                pc = json.load(open(os.path.join(path, "config.json")))
                assert pc.get("pooling_mode_mean_tokens") and not any(
                    v for k, v in pc.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"), \
                    "this peer exports mean pooling only"
            elif t == "Dense":
                dc = json.load(open(os.path.join(path, "config.json")))
                dw = load_safetensors(os.path.join(path, "model.safetensors"))
                i = len(self.dense)
                self.register_buffer(f"dense{i}_w", dw["linear.weight"])
                self.register_buffer(f"dense{i}_b", dw["linear.bias"] if dc.get("bias", True) else torch.zeros(dc["out_features"]))
                self.dense.append((i, dc.get("activation_function", "torch.nn.modules.activation.Tanh").endswith("Tanh")))
            elif t == "Normalize":
                self.normalize = True
            else:
                raise SystemExit(f"module type {m['type']} is not exported by this peer")

    def rms(self, x, name):
        return self.w(name) * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["layer_norm_epsilon"]))

    def encode(self, ids, mask):  # [B,S], [B,S] -> last_hidden_state [B,S,D]
        c = self.cfg
        H, dkv, S = c["num_heads"], c["d_kv"], ids.shape[1]
        shared = self.w("shared.weight") if hasattr(self, "shared_weight") else self.w("encoder.embed_tokens.weight")
        x = F.embedding(ids, shared)
        pos = torch.arange(S)
        table = self.w("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")  # [buckets, H]
        bias = F.embedding(bucket(pos[None, :] - pos[:, None], c["relative_attention_num_buckets"],
                                  c["relative_attention_max_distance"]), table).permute(2, 0, 1)[None]  # [1,H,S,S]
        bias = bias + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        B = ids.shape[0]
        for i in range(c["num_layers"]):
            p = f"encoder.block.{i}.layer."
            h = self.rms(x, p + "0.layer_norm.weight")
            q, k, v = (F.linear(h, self.w(p + f"0.SelfAttention.{n}.weight")).view(B, S, H, dkv).transpose(1, 2) for n in "qkv")
            a = torch.softmax((q @ k.transpose(-1, -2) + bias).float(), -1) @ v  # no 1/sqrt(d_kv): T5
            x = x + F.linear(a.transpose(1, 2).reshape(B, S, H * dkv), self.w(p + "0.SelfAttention.o.weight"))
            h = self.rms(x, p + "1.layer_norm.weight")
            if self.gated:
                h = self.act(F.linear(h, self.w(p + "1.DenseReluDense.wi_0.weight"))) * F.linear(h, self.w(p + "1.DenseReluDense.wi_1.weight"))
            else:
                h = self.act(F.linear(h, self.w(p + "1.DenseReluDense.wi.weight")))
            x = x + F.linear(h, self.w(p + "1.DenseReluDense.wo.weight"))
        return self.rms(x, "encoder.final_layer_norm.weight")

    def pool(self, hidden, mask):  # sentence-transformers Pooling, mean: [B,S,D] -> [B,D]
        m = mask[:, :, None].float()
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def head(self, x):  # Dense modules, then Normalize
        for i, tanh in self.dense:
            x = F.linear(x, getattr(self, f"dense{i}_w"), getattr(self, f"dense{i}_b"))
            x = torch.tanh(x) if tanh else x
        return F.normalize(x, p=2, dim=1) if self.normalize else x

    def forward(self, input_ids, attention_mask):
        return self.head(self.pool(self.encode(input_ids, attention_mask), attention_mask))


def main():
    src = sys.argv[1]
    name = os.path.basename(os.path.normpath(src))
    out = sys.argv[2] if len(sys.argv) > 2 else f"/tmp/ort-embed/{name}"
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    model = SentenceT5(src).eval()
    with torch.no_grad():
        ref_path = os.path.join(src, "reference.safetensors")
        if os.path.exists(ref_path):  # tiny-sentence-t5: the torch forward against sentence-transformers' own output
            ref = load_safetensors(ref_path)
            ids, mask = ref["batch.input_ids"], ref["batch.attention_mask"]
            pooled = model.pool(model.encode(ids, mask), mask)
            for what, got, want in [("pooled", pooled, ref["batch.pooled"]), ("embeddings", model.head(pooled), ref["batch.embeddings"])]:
                d = (got - want).abs().max().item()
                print(f"torch vs sentence-transformers {what}: max |diff| = {d:.2e}")
                assert d <= 1e-5, what
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(3, 32000, (32, 128), generator=g)
        ids[:, -1] = 1
        mask = torch.ones_like(ids)
        torch.onnx.export(model, (ids[:2, :16], mask[:2, :16]), os.path.join(out, "embed.onnx"), opset_version=OPSET,
                          input_names=["input_ids", "attention_mask"], output_names=["embeddings"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embeddings": {0: "batch"}})
        json.dump({"ids": ids.tolist()}, open(os.path.join(out, "inputs.json"), "w"))
        emb = model(ids, mask).float().flatten().tolist()
        with open(os.path.join(out, "ref_embeddings.bin"), "wb") as f:
            f.write(struct.pack(f"<{len(emb)}f", *emb))
    print(f"wrote {out}/embed.onnx, inputs.json, ref_embeddings.bin")


if __name__ == "__main__":
    main()
