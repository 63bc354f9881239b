"""Benchmark: feature extraction throughput on ML-100K (TMDB overviews + posters), three ways.

    python -m bench.extract_speed --threads 2

For text (MiniLM: one pooled text + up to 10 sentences per item) and images (EfficientNet-Lite0,
one poster per item), measured in the same run on the same items:

1. pipeline: the real stage (`pipeline.features.text` / `.image`): reading, splitting, image
   decoding, tokenizing, sharding, writing Parquet; items/s from its own timer (model load excluded).
2. raw forward: the encoder's batched forward alone on inputs prepared beforehand (tokenized
   text / decoded + transformed image tensors, the same batch size and length-sorted order).
3. one at a time: a loop that prepares and encodes one item at a time (batch of 1), on the first
   `--loop-items` items, extrapolated to items/s.

Targets (issue 4): pipeline overhead over the raw forward under 20%; at least 3x the loop.
Writes bench/results/extract-speed.json and prints the Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from pipeline.cells import prepare
from pipeline.config import ImageEncoderConfig, TextEncoderConfig, load_params
from pipeline.features import image as image_stage
from pipeline.features import keywords as keywords_stage
from pipeline.features import text as text_stage
from pipeline.features.common import image_slots, open_stage
from pipeline.features.encoders import ImageEncoder, TextEncoder
from pipeline.features.images import load_image
from pipeline.features.text import item_texts
from pipeline.params import setup_logging
from pipeline.results import load_rows, save, table
from pipeline.tables import read_table

ROOT = Path(__file__).resolve().parents[1]

def text_rates(items, cfg: dict, device, loop_items: int) -> dict:
    enc = TextEncoder(TextEncoderConfig(**cfg["text"]["encoder"]), device)
    texts = item_texts(items, cfg["text"].get("fields", ["title", "description"]))
    texts = texts.filter(texts["text"] != "")
    m = cfg["text"].get("max_sentences", 10)
    work = texts["text"].to_list() + [s for ss in texts["sentences"].to_list() for s in ss[:m]]
    order = sorted(range(len(work)), key=lambda i: -len(work[i]))
    bs = enc.cfg.batch_size
    batches = [enc.tokenize([work[i] for i in order[s:s + bs]]) for s in range(0, len(order), bs)]
    t0 = time.perf_counter()
    for b in batches:
        enc.forward(b)
    raw = texts.height / (time.perf_counter() - t0)
    sub = texts.head(loop_items)
    t0 = time.perf_counter()
    for text, sentences in zip(sub["text"].to_list(), sub["sentences"].to_list()):
        for t in [text, *sentences[:m]]:
            enc.forward(enc.tokenize([t]))
    loop = sub.height / (time.perf_counter() - t0)
    return {"raw_forward_items_per_s": raw, "one_at_a_time_items_per_s": loop, "texts_encoded": len(work)}


def image_rates(items, raw_dir: Path, cfg: dict, device, loop_items: int) -> dict:
    enc = ImageEncoder(ImageEncoderConfig(**cfg["image"]["encoder"]), device)
    slots = image_slots(items, cfg["image"].get("max_images", 3), Counter())
    paths = [raw_dir / p for p in slots["path"].to_list()]
    tensors = [enc.preprocess(img) for p in paths if (img := load_image(p, Counter())) is not None]
    bs = enc.cfg.batch_size
    batches = [torch.stack(tensors[s:s + bs]) for s in range(0, len(tensors), bs)]
    t0 = time.perf_counter()
    for b in batches:
        enc.forward(b)
    raw = items.height / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in paths[:loop_items]:
        img = load_image(p, Counter())
        if img is not None:
            enc.forward(enc.preprocess(img)[None])
    loop = min(loop_items, len(paths)) / (time.perf_counter() - t0) * (items.height / max(len(paths), 1))
    return {"raw_forward_items_per_s": raw, "one_at_a_time_items_per_s": loop, "images": len(tensors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loop-items", type=int, default=200)
    ap.add_argument("--stages", nargs="+", default=["text", "image", "keywords"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    setup_logging()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml") | {"dataset": args.dataset}
    params["features"] = params["features"] | {"threads": args.threads}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stats = prepare(params, tmp)
        items = read_table(tmp / "prepared" / "items.parquet", "items")
        for name in args.stages:
            stage = open_stage(name, params, tmp / "prepared", tmp / "raw", tmp / "features" / name)
            module = {"text": text_stage, "image": image_stage, "keywords": keywords_stage}[name]
            report = module.run(stage)
            row = {"stage": name, "items": stats["items"], "pipeline_items_per_s": report["items_per_s"],
                   "pipeline_s": report["seconds"]}
            if name == "text":
                row |= text_rates(items, params["features"], stage.device, args.loop_items)
            elif name == "image":
                row |= image_rates(items, tmp / "raw", params["features"], stage.device, args.loop_items)
            if "raw_forward_items_per_s" in row:
                row["overhead_vs_raw"] = row["raw_forward_items_per_s"] / row["pipeline_items_per_s"] - 1
                row["speedup_vs_loop"] = row["pipeline_items_per_s"] / row["one_at_a_time_items_per_s"]
            rows.append(row)
            save(Path(args.out) / "extract-speed.json", rows, dataset=args.dataset, threads=args.threads)

    print_table(rows)


def print_table(rows: list[dict]) -> None:
    def f(x, fmt="{:.1f}"):
        return "—" if x is None else fmt.format(x)

    print(table(["stage", "items", "pipeline items/s", "raw forward items/s", "one-at-a-time items/s",
                 "overhead vs raw", "speed-up vs loop"],
                [[r["stage"], r["items"], f(r["pipeline_items_per_s"]), f(r.get("raw_forward_items_per_s")),
                  f(r.get("one_at_a_time_items_per_s")), f(r.get("overhead_vs_raw"), "{:+.0%}"),
                  f(r.get("speedup_vs_loop"), "{:.1f}x")] for r in rows]))


if __name__ == "__main__":
    main()
