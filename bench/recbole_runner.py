"""Run one RecBole model on atomic files and record its time-to-quality curve.

Runs inside RecBole's own virtual environment (.venv-recbole; see bench/recbole_compare.py),
so it imports nothing from this project. Usage:

    .venv-recbole/bin/python bench/recbole_runner.py CONFIG.json OUT.json

CONFIG.json: {"model": "SASRec", "threads": 2, "anomaly": false, "config": {...RecBole config...}}.
OUT.json gets the per-epoch curve (wall seconds since training started, validation NDCG@10),
best validation score, test metrics, per-epoch time, peak RSS, and every test user's rank of its
target under the best model (`test_ranks`: [user token, item token, rank], rank = #items scoring
>= the target, the same tie rule as ours), so the two libraries can be compared user by user.
"""

import json
import sys
import time
from pathlib import Path

import recbole.model.sequential_recommender  # noqa: F401  (sine.py turns anomaly detection on at import)
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench's helpers only (no project import)
from bench import peak_rss_mb  # noqa: E402


@torch.no_grad()
def test_ranks(trainer, test, dataset, config) -> list:
    """[user token, target token, rank] for every test user, from RecBole's own full-sort scores
    (padding and, where RecBole masks, the history at -inf; ties counted against the target)."""
    trainer.model.eval()
    trainer.tot_item_num = test._dataset.item_num
    if trainer.item_tensor is None:
        trainer.item_tensor = test._dataset.get_item_feature().to(trainer.device)
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    out = []
    for batched in test:
        interaction, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched)
        target = scores[pos_u, pos_i]
        rank = (scores[pos_u] >= target[:, None]).sum(1)
        users = dataset.id2token(uid, interaction[uid][pos_u].cpu().numpy())
        items = dataset.id2token(iid, pos_i.cpu().numpy())
        out += [[str(u), str(i), int(r)] for u, i, r in zip(users, items, rank.cpu().numpy())]
    return out


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec.get("threads", 2))
    torch.autograd.set_detect_anomaly(bool(spec.get("anomaly", False)))
    config = Config(model=spec["model"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    t_data = time.perf_counter()
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    data_s = time.perf_counter() - t_data
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    curve, t0 = [], time.perf_counter()

    def on_epoch(epoch: int, score: float) -> None:
        curve.append({"epoch": epoch + 1, "wall_s": time.perf_counter() - t0, "valid/ndcg@10": float(score)})
        print(json.dumps(curve[-1]), flush=True)

    best, _ = trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=on_epoch)
    train_s = time.perf_counter() - t0
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    ranks = test_ranks(trainer, test, dataset, config)
    out = {
        "model": spec["model"], "data_prep_s": data_s, "train_wall_s": train_s, "curve": curve,
        "best_valid_ndcg@10": float(best), "epochs_run": len(curve),
        "s_per_epoch": train_s / max(len(curve), 1),
        "test": {k.lower(): float(v) for k, v in result.items()},
        "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1), "interactions": int(dataset.inter_num),
        "peak_rss_mb": peak_rss_mb(),
        "anomaly_detection": bool(spec.get("anomaly", False)), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "test_ranks": ranks,
    }
    json.dump(out, open(sys.argv[2], "w"), indent=2)


if __name__ == "__main__":
    main()
