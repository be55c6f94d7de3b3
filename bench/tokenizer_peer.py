#!/usr/bin/python3
# tokenizer_peer.py: Google sentencepiece's own encode throughput on the texts BenchmarkDotNet uses for
# ManagedT5.Tokenizer (bench/ManagedT5.Bench.Tokenizer/texts), for the ratio in docs/TOKENIZER-BENCHMARKS.md.
#
# usage: /usr/bin/python3 bench/tokenizer_peer.py [spiece.model]      (needs: apt-get install python3-sentencepiece)
#
# Each text file is repeated to at least 1 MiB of UTF-8 (the same rule as the C# benchmark), then encoded
#   document: the whole string in one sp.encode call
#   lines:    each non-empty line in its own sp.encode call (short prompts, as T5 sees them)
# MB/s counts UTF-8 megabytes (10^6 bytes) of input per second, one thread: from the best (min) run, which
# BenchmarkDotNet's "MB/s best" column matches, and from the median run.
import os
import platform
import statistics
import sys
import time

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = os.path.join(ROOT, "bench", "ManagedT5.Bench.Tokenizer", "texts")
MIN_BYTES = 1 << 20
RUNS = 10


def load_document(name):
    with open(os.path.join(TEXTS, name), encoding="utf-8") as f:
        unit = f.read()
    parts, size = [], 0
    while size < MIN_BYTES:
        parts.append(unit)
        size += len(unit.encode("utf-8"))
    return "".join(parts)


def timings(fn):
    fn()  # warm up
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "tokenizer", "spiece.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    print(f"sentencepiece {spm.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print(f"{'text':<14}{'mode':<10}{'MB':>8}{'ids':>10}{'best ms':>10}{'MB/s best':>11}{'MB/s median':>13}")
    for name in ("english.txt", "multilingual.txt"):
        document = load_document(name)
        lines = [line for line in document.split("\n") if line]
        megabytes = len(document.encode("utf-8")) / 1e6
        ids = len(sp.encode(document))
        for mode, fn in (("document", lambda: sp.encode(document)),
                         ("lines", lambda: [sp.encode(line) for line in lines])):
            best, median = timings(fn)
            print(f"{name[:-4]:<14}{mode:<10}{megabytes:>8.2f}{ids:>10}{best * 1e3:>10.1f}"
                  f"{megabytes / best:>11.2f}{megabytes / median:>13.2f}")


if __name__ == "__main__":
    main()
