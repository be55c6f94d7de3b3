# sentencepiece_reference.py: runs Google's sentencepiece (Debian's python3-sentencepiece) over a batch of
# texts and id lists, so the C# tests can compare ids, pieces, offsets and decoding with the original.
#
# usage: python3 sentencepiece_reference.py MODEL IN.json OUT.json
#   IN.json : {"texts": ["...", ...], "decode": [[ids...], ...]}
#   OUT.json: {"version": "...", "encoded": [{"ids": [...], "pieces": [...], "begin": [...], "end": [...]}],
#              "decoded": ["...", ...]}     begin/end count code points (the Python wrapper converts sentencepiece's byte offsets)
import json
import sys

import sentencepiece as spm


def main():
    model, source, target = sys.argv[1:4]
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(source, encoding="utf-8") as f:
        request = json.load(f)
    encoded = []
    for text in request["texts"]:
        proto = sp.encode(text, out_type="immutable_proto")
        encoded.append({
            "ids": [p.id for p in proto.pieces],
            "pieces": [p.piece for p in proto.pieces],
            "begin": [p.begin for p in proto.pieces],
            "end": [p.end for p in proto.pieces],
        })
    decoded = [sp.decode(ids) for ids in request["decode"]]
    with open(target, "w", encoding="utf-8") as f:
        json.dump({"version": spm.__version__, "encoded": encoded, "decoded": decoded}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
