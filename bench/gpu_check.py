"""The GPU check: one command, one table, under 10 minutes on a CUDA machine.

    python -m bench.gpu_check --out gpu-check.json              # on a GPU machine (ML-100K, full sizes)
    python -m bench.gpu_check --tiny --out /tmp/gpu-check.json  # CPU mode, tiny sizes (CI keeps it working)

What it runs, each through the pipeline's own library (no separate code path):

1. SASRec on ML-100K (`../shared/datasets/ml-100k`, or `--source`) trained on the device in fp32 and in
   bf16 autocast (`train.precision`), then evaluated: test NDCG@10 / HR@10 beside the CPU numbers
   recorded in docs (0.1104 ± 0.0045 NDCG@10, studies/spine-ml100k) — quality within noise.
2. FAISS evaluation on the device against the CPU path: exact top-(K+1) of the same user and item
   vectors on the GPU index and on the CPU index, on a sample of users; ranks must be equal.
3. Exact top-50 at `--users` x `--items` (default 1M x 1M, d = 64): FAISS brute force on the
   device, timed, beside the time of the GEMM it has to do (a timed matmul block, scaled).
4. MiniLM extraction of the ML-100K texts on the device (the text stage's encoder): items/s.

On a lent device (the `device` tool): the checkout travels without `../shared`, so copy the data
into a git-excluded folder first (`mkdir -p .gpu-data && cp -r ../shared/datasets/ml-100k .gpu-data/`,
`echo /.gpu-data/ >> .git/info/exclude`), name `.gpu-data` in `carry`, and run
`python -m bench.gpu_check --source .gpu-data/ml-100k --out $OUT/gpu-check.json` with a 540 s limit.

In `--tiny` mode the same steps run on the CPU at toy sizes (the embedded demo data, 2 epochs,
2,000 x 2,000 vectors, 64 texts): a failure there means the GPU run would fail too.
Prints one Markdown table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.cells import prepare, with_settings
from pipeline.config import TextEncoderConfig, load_params
from pipeline.params import setup_logging

ROOT = Path(__file__).resolve().parents[1]
CPU_RECORD = {"ndcg@10": "0.1104 ± 0.0045", "hr@10": "0.2160 ± 0.0098"}  # studies/spine-ml100k, 3 seeds, one thread


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_sasrec(work: Path, tiny: bool, source: str | None) -> list[dict]:
    """SASRec trained and evaluated on the device in fp32 and in bf16 (CPU mode: fp32 twice is not
    bf16, so the CPU run trains fp32 and bf16 autocast on the CPU — slow but the same code)."""
    from pipeline.evaluate import evaluate
    from pipeline.train import train

    base = load_params(ROOT / "params.yaml")
    sets = ["dataset=demo", "train.epochs=2", "preprocess.max_len=20"] if tiny else ["dataset=ml-100k"]
    if source and not tiny:
        sets.append(f"datasets.ml-100k.source={source}")
    rows = []
    for precision in ("fp32", "bf16"):
        p = with_settings(base, sets + [f"train.precision={precision}", "train.device=auto", "model=sasrec"])
        prepare(p, work)
        t0 = time.perf_counter()
        info = train(p, work / "prepared", work / precision)
        sync()
        seconds = time.perf_counter() - t0
        m = evaluate(p, work / "prepared", work / precision / "model.pt", work / precision / "metrics.json")
        rows.append({"check": f"SASRec train + evaluate, {precision}", "device": str(device()),
                     "result": f"test NDCG@10 {m['test/ndcg@10']:.4f}, HR@10 {m['test/hr@10']:.4f} " + (
                         "(tiny demo, 2 epochs: no record to compare)" if tiny else
                         f"(CPU record {CPU_RECORD['ndcg@10']} / {CPU_RECORD['hr@10']})"),
                     "seconds": round(seconds, 1), "best_epoch": info["best_epoch"], "epochs": info["epochs_run"],
                     "ndcg@10": m["test/ndcg@10"], "hr@10": m["test/hr@10"], "precision": info.get("precision")})
    return rows


def faiss_exactness(users: int, items: int, sample: int) -> dict:
    """The same vectors through the GPU index and the CPU index: top-51 ids and ranks equal."""
    from pipeline.metrics import ranks_from_topk
    from pipeline.retrieval import exact_topk

    rng = np.random.default_rng(0)
    q = rng.standard_normal((users, 64)).astype(np.float32)
    v = rng.standard_normal((items, 64)).astype(np.float32)
    pick = rng.choice(users, min(sample, users), replace=False)
    targets = rng.integers(1, items + 1, len(pick))
    t0 = time.perf_counter()
    s_gpu, i_gpu = exact_topk(q[pick], v, 51, use_gpu=True)
    gpu_s = time.perf_counter() - t0
    s_cpu, i_cpu = exact_topk(q[pick], v, 51, use_gpu=False)
    same_ranks = np.array_equal(ranks_from_topk(s_gpu, i_gpu + 1, targets), ranks_from_topk(s_cpu, i_cpu + 1, targets))
    same_ids = float((i_gpu == i_cpu).mean())
    return {"check": f"FAISS on the device vs CPU, {len(pick):,} users x {items:,} items, top-51",
            "device": "gpu index" if torch.cuda.is_available() else "cpu (no GPU: both paths are the CPU index)",
            "result": f"ranks equal: {same_ranks}; ids equal in {same_ids:.2%} of slots (ties may swap)",
            "seconds": round(gpu_s, 2), "ranks_equal": bool(same_ranks)}


def topk_vs_gemm(users: int, items: int, d: int = 64, k: int = 50) -> dict:
    """Exact top-k at users x items on the device, and the GEMM time it contains (a timed block of
    the score matrix, scaled to the whole)."""
    from pipeline.retrieval import exact_topk

    rng = np.random.default_rng(1)
    q = rng.standard_normal((users, d)).astype(np.float32)
    v = rng.standard_normal((items, d)).astype(np.float32)
    t0 = time.perf_counter()
    exact_topk(q, v, k, use_gpu=True, chunk=65536, max_results=1 << 26)
    sync()
    topk_s = time.perf_counter() - t0
    dev = device()
    block = min(users, 8192)
    a, b = torch.from_numpy(q[:block]).to(dev), torch.from_numpy(v).to(dev)
    a @ b[: min(items, 4096)].T  # warm-up
    sync()
    t0 = time.perf_counter()
    for s in range(0, items, 1 << 18):
        a @ b[s:s + (1 << 18)].T
    sync()
    gemm_s = (time.perf_counter() - t0) * users / block
    return {"check": f"exact top-{k}, {users:,} users x {items:,} items, d = {d}", "device": str(dev),
            "result": f"{topk_s:.1f} s; the GEMM alone {gemm_s:.1f} s ({2 * users * items * d / 1e12:.2f} TFLOP): "
                      f"{topk_s / gemm_s:.1f}x the GEMM time", "seconds": round(topk_s, 2), "gemm_s": round(gemm_s, 2),
            "ratio": round(topk_s / gemm_s, 2)}


def minilm_extraction(work: Path, n: int | None) -> dict:
    """MiniLM over the prepared items' texts on the device (the text stage's encoder and batching)."""
    from pipeline.features.encoders import TextEncoder
    from pipeline.features.text import item_texts
    from pipeline.tables import read_table

    items = read_table(work / "prepared" / "items.parquet", "items")
    texts = [t for t in item_texts(items, ["title", "description", "categories"])["text"].to_list() if t][:n]
    enc = TextEncoder(TextEncoderConfig(), device())
    enc.encode(texts[:8])  # load and warm up
    sync()
    t0 = time.perf_counter()
    enc.encode(texts)
    sync()
    s = time.perf_counter() - t0
    return {"check": f"MiniLM extraction, {len(texts):,} item texts", "device": str(device()),
            "result": f"{len(texts) / s:.0f} items/s", "seconds": round(s, 2), "items_per_s": round(len(texts) / s, 1)}


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| check | device | result | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['device']} | {r['result']} | {r['seconds']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU mode at toy sizes (what CI runs)")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--source", default=None, help="ML-100K folder (default: params.yaml's datasets.ml-100k.source)")
    ap.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = ap.parse_args(argv)
    setup_logging()
    users, items = (2000, 2000) if args.tiny else (args.users, args.items)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = train_sasrec(work, args.tiny, args.source)
        rows.append(faiss_exactness(users, items, 512 if args.tiny else 100_000))
        rows.append(topk_vs_gemm(users, items))
        rows.append(minilm_extraction(work, 64 if args.tiny else None))
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    header = (f"GPU check on {name} ({'tiny CPU mode' if args.tiny else 'full sizes'}), torch {torch.__version__}, "
              f"{time.perf_counter() - t0:.0f} s in all")
    args.out.write_text(json.dumps({"device": name, "tiny": args.tiny, "rows": rows}, indent=1))
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
