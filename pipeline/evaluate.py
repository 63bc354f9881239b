"""Stage `evaluate`: checkpoint -> exact FAISS full-ranking metrics on valid and test (metrics.json).

Keys are flat (`test/ndcg@10`) for `dvc metrics show` / `dvc exp show`; the protocol (ranking,
split, history-masking rule, tie rule) is written into the same file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.checkpoint import load_checkpoint
from pipeline.evaluation import (ProtocolConfig, catalogue, cold_users, evaluate_cold_subsequences, evaluate_split,
                                 length_groups)
from pipeline.metrics import metrics_from_ranks
from pipeline.params import from_dict, load_params, setup_logging
from pipeline.tables import read_json, write_json
from pipeline.train import load_sequences
from pipeline.trainer import resolve_device

log = logging.getLogger("pipeline.evaluate")


def evaluate(params: dict, prepared: Path, checkpoint: Path, out: Path) -> dict:
    protocol = from_dict(ProtocolConfig, params.get("protocol"), "protocol")
    device = resolve_device((params.get("train") or {}).get("device", "auto"))
    model, ckpt = load_checkpoint(checkpoint, device)
    seq = load_sequences(prepared)
    if seq.num_items != ckpt["num_items"]:
        raise ValueError(f"{checkpoint}: trained on {ckpt['num_items']} items but {prepared} has {seq.num_items}; "
                         "re-run training (dvc repro)")
    max_len = ckpt["meta"].get("max_len", 50)
    stats = read_json(prepared / "stats.json")
    result = {"model": ckpt["model"], "dataset": stats.get("dataset"), "users": len(seq.lengths),
              "items": seq.num_items}
    ranks = {}
    items = catalogue(model)  # once for every query set below
    for split in ("valid", "test"):
        extra: dict = {}
        metrics, ranks[split] = evaluate_split(model, seq, split, max_len, protocol, device,
                                               extra if split == "test" else None, items)
        result |= {f"{split}/{k}": round(v, 6) for k, v in metrics.items()}
        result |= {f"{split}_{k}": round(v, 6) for k, v in extra.items()}  # test_sampled100_popularity/hr@10
    for name, members in length_groups(seq, protocol.length_groups).items():
        result[f"test_len_{name}/users"] = int(members.sum())
        if members.any():
            result |= {f"test_len_{name}/{k}": round(v, 6)
                       for k, v in metrics_from_ranks(ranks["test"][members], protocol.ks).items()}
    cold = cold_users(seq, protocol.cold_threshold)
    result["test_cold/users"] = int(cold.sum())
    if cold.any():
        cold_metrics = metrics_from_ranks(ranks["test"][cold], protocol.ks)
        result |= {f"test_cold/{k}": round(v, 6) for k, v in cold_metrics.items()}
    result |= {f"cold_seq/{k}": round(v, 6) for k, v in
               evaluate_cold_subsequences(model, seq, max_len, protocol, device, items).items()}
    if "search" in ckpt["meta"]:  # AutoMLP: the searched short-term length and softmax(α)
        result["search/k"] = ckpt["meta"]["search"]["k"]
        result |= {f"search/p@{k}": round(p, 6) for k, p in ckpt["meta"]["search"]["p"].items()}
        result |= {f"search/alpha@{k}": round(a, 6) for k, a in zip(ckpt["meta"]["search"]["p"],
                                                                    ckpt["meta"]["search"]["alpha"])}
    result |= protocol.describe()
    write_json(out, result)
    log.info("%s on %s: test hr@10 %.4f ndcg@10 %.4f mrr@10 %.4f", result["model"], result["dataset"],
             result["test/hr@10"], result["test/ndcg@10"], result["test/mrr@10"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--checkpoint", default="data/model/model.pt")
    ap.add_argument("--out", default="data/metrics.json")
    args = ap.parse_args()
    setup_logging()
    evaluate(load_params(args.params), Path(args.prepared), Path(args.checkpoint), Path(args.out))


if __name__ == "__main__":
    main()
