"""Evaluating a checkpoint (the `evaluate` stage's library): exact FAISS full-ranking metrics on
valid and test (metrics.json) and every query's rank (ranks.parquet).

The only code that reads the test targets (`pipeline.data.Split`). Keys are flat (`test/ndcg@10`) for `dvc metrics show` / `dvc exp show`; the protocol (ranking,
split, history-masking rule, tie rule) is written into the same file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from pipeline import builder, distributed
from pipeline.checkpoint import run_params
from pipeline.config import TrainConfig, load_params
from pipeline.data import load_split
from pipeline.device import resolve_device
from pipeline.evaluation import (
    ProtocolConfig,
    catalogue,
    cold_items,
    cold_subsequences,
    evaluate_chunks,
    evaluate_queries,
    length_groups,
    sample_negatives,
    sampled_ranks,
    unmasked_ranks,
)
from pipeline.metrics import beyond_accuracy, metrics_from_ranks
from pipeline.params import ConfigError, from_dict
from pipeline.tables import file_sha256, read_json, write_json, write_table

log = logging.getLogger("pipeline.evaluate")


def check_checkpoint_matches(ckpt: dict, params: dict, checkpoint: Path) -> None:
    """Refuse to label a checkpoint with parameters it was not trained with (e.g. params.yaml rewritten by
    a concurrent `dvc exp run` between train and evaluate)."""
    trained = ckpt["meta"].get("params")
    if trained is None:
        raise ConfigError(f"{checkpoint}: the checkpoint does not record the parameters it was trained with (an "
                          "older version wrote it); re-run training (dvc repro)")
    wanted = run_params(params, params.get("model"))
    if trained != wanted:
        diff = sorted(k for k in set(trained) | set(wanted) if trained.get(k) != wanted.get(k))
        detail = "; ".join(f"{k}: trained with {trained.get(k)!r}, params.yaml says {wanted.get(k)!r}" for k in diff)
        raise ConfigError(f"{checkpoint} was trained with other parameters than params.yaml ({detail}); no metrics "
                          "written. Re-run training (dvc repro). Two `dvc exp run` in one workspace at once rewrite "
                          "each other's params.yaml: queue them instead (README, 'Running experiments concurrently')")


PINNED = ("torch", "torchvision", "numpy", "polars", "pyarrow", "faiss-cpu", "faiss-gpu-cu12", "transformers",
          "sentence-transformers", "open-clip-torch", "scikit-learn", "scipy", "dvc")
LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def provenance() -> dict[str, str]:
    """The library versions these numbers were measured with (installed, as the lock pins them) and
    the lock file's SHA-256: `provenance/*` keys of metrics.json."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in PINNED:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    out = {"provenance/versions": " ".join(found)}
    if LOCK.is_file():
        out["provenance/lock_sha256"] = file_sha256(LOCK)
    return out


def write_ranks(path: Path, queries: dict, ranks: dict, provenance: dict, per_query: dict | None = None) -> None:
    """One row per evaluated query: query set, user, target, rank (float32; inf beyond the top-(K+1))
    and, with `per_query` ({query set: {column: values}}, columns named in provenance `beyond_ks`),
    the beyond-accuracy values of the query sets that have them (NaN for the others)."""
    per_query = per_query or {}
    columns = sorted({c for cols in per_query.values() for c in cols})
    frames = [pl.DataFrame({"query": name, "user_id": (queries[name].users + 1).astype(np.int32),
                            "target": queries[name].targets.astype(np.int32), "rank": r.astype(np.float32)}
                           | {c: per_query.get(name, {}).get(c, np.full(len(r), np.nan)).astype(np.float32)
                              for c in columns})
              for name, r in ranks.items()]
    write_table(pl.concat(frames), path, "ranks", provenance)


def evaluate(params: dict, prepared: Path, checkpoint: Path, out: Path, ranks_out: Path | None = None) -> dict:
    """Metrics of the checkpoint into `out` (JSON) and every query's rank into `ranks_out` (Parquet,
    default `ranks.parquet` beside `out`): what `pipeline.compare` reads for paired statistics."""
    protocol = from_dict(ProtocolConfig, params.get("protocol"), "protocol")
    device = resolve_device((params.get("train") or {}).get("device", "auto"))
    distributed.init(device)  # under torchrun: every query set is scored in shards, gathered in order
    model, ckpt = builder.load_model(checkpoint, device)
    check_checkpoint_matches(ckpt, params, checkpoint)
    split = load_split(prepared)
    if split.num_items != ckpt["num_items"]:
        raise ValueError(f"{checkpoint}: trained on {ckpt['num_items']} items but {prepared} has {split.num_items}; "
                         "re-run training (dvc repro)")
    view = split.training
    max_len = ckpt["inputs"]["max_len"]
    stats = read_json(prepared / "stats.json")
    result = {"model": ckpt["model"], "dataset": stats.get("dataset"), "users": view.num_users,
              "items": split.num_items}
    ranks, top, beyond = {}, {}, {}
    counts = view.train.counts()  # training events per item: the popularity the lists are measured against
    items = catalogue(model)  # once for every query set below
    test = split.test_queries(max_len)
    queries_of = {"valid": view.valid_queries(max_len), "test": test}
    if split.spec.kind != "loo":  # several queries per user; the ones with no earlier event are counted
        result |= {f"{name}/queries": len(q) for name, q in queries_of.items()} | \
            {f"split/{k}": v for k, v in split.skipped.items()}
    for name, queries in queries_of.items():
        metrics, ranks[name], vectors, top[name] = evaluate_queries(model, queries, protocol, device, items)
        result |= {f"{name}/{k}": round(v, 6) for k, v in metrics.items()}
        beyond[name], overall = beyond_accuracy(top[name], counts, protocol.ks, protocol.head_share)
        result |= {f"{name}/{k}": round(v, 6) for k, v in overall.items()}
        if name == "test" and protocol.sampled:  # test_sampled100_popularity/hr@10: labelled SAMPLED
            neg = sample_negatives(view, queries, protocol.sampled, protocol.sampled_by, protocol.sampled_seed,
                                   protocol.mask_history)
            ranks["test_sampled"] = sampled_ranks(vectors, items, queries.targets, neg)  # labelled in the file
            result |= {f"test_sampled{protocol.sampled}_{protocol.sampled_by}/{k}": round(v, 6)
                       for k, v in metrics_from_ranks(ranks["test_sampled"], protocol.ks).items()}
        if name == "test" and protocol.mask_history:  # the unmasked protocol (UniSRec, RecBole) beside it
            ranks["test_unmasked"] = unmasked_ranks(vectors, items, queries.targets, queries.seen, ranks["test"])
            result |= {f"test_unmasked/{k}": round(v, 6)
                       for k, v in metrics_from_ranks(ranks["test_unmasked"], protocol.ks).items()}
    for name, of_user in length_groups(view, protocol.length_groups).items():
        members = of_user[test.users]  # each test query by its user's group (leave-one-out: one per user)
        result[f"test_len_{name}/users"] = int(members.sum())
        if members.any():
            result |= {f"test_len_{name}/{k}": round(v, 6)
                       for k, v in metrics_from_ranks(ranks["test"][members], protocol.ks).items()}
    cold = cold_items(view, protocol.cold_threshold)[test.targets]
    result["test_cold/users"] = int(cold.sum())
    if cold.any():
        cold_metrics = metrics_from_ranks(ranks["test"][cold], protocol.ks)
        result |= {f"test_cold/{k}": round(v, 6) for k, v in cold_metrics.items()}
    metrics, cold_ranks, cold_targets, cold_users = evaluate_chunks(
        model, cold_subsequences(split, protocol.cold_threshold, max_len), protocol, device, items)
    result["cold_seq/queries"] = len(cold_ranks)
    result |= {f"cold_seq/{k}": round(v, 6) for k, v in metrics.items()}
    if len(cold_ranks):
        ranks["cold_seq"] = cold_ranks
    # what the training procedure recorded (AutoMLP: the searched length, softmax(α) and α)
    result |= {k: round(v, 6) if isinstance(v, float) else v for k, v in ckpt["meta"].get("metrics", {}).items()}
    described = protocol.describe() | {"protocol/split": split.spec.describe()}
    result |= described | provenance()
    if not distributed.is_main():
        return result
    queries_of["cold_seq"] = SimpleNamespace(targets=cold_targets, users=cold_users)
    for name in ("test_unmasked", "test_sampled"):  # the test queries ranked another way
        if name in ranks:
            queries_of[name] = test
    write_ranks(ranks_out or out.with_name("ranks.parquet"), queries_of, ranks,
                {"stage": "evaluate", "model": ckpt["model"], "dataset": stats.get("dataset"), **described,
                 "beyond_ks": list(protocol.ks)}, beyond)
    write_json(out, result)
    log.info("%s on %s: test hr@10 %.4f ndcg@10 %.4f mrr@10 %.4f", result["model"], result["dataset"],
             result["test/hr@10"], result["test/ndcg@10"], result["test/mrr@10"])
    return result


def run_stage(params_file: Path, prepared: Path, checkpoint: Path, out: Path, ranks: Path,
              module: str | None = None) -> dict:
    """The evaluate stage: with `train.nproc` > 1 relaunched as torchrun workers (`module`), each
    scoring its shard of every query set."""
    params = load_params(params_file)
    if module:
        distributed.become_workers(from_dict(TrainConfig, params.get("train"), "train").nproc, module)
    result = evaluate(params, prepared, checkpoint, out, ranks)
    distributed.finish()
    return result
