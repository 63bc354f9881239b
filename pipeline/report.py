"""The results report: one static HTML page (figures inlined, opens offline) and a terminal table.

    python -m pipeline.report                     # docs/report/index.html: the workspace + every experiment
    python -m pipeline.report --table             # a comparison that fits a terminal
    python -m pipeline.stages.report --out data/report   # the `report` stage: this run's figures

Runs are the workspace and every DVC experiment (`dvc exp show --json -A`); each run's validation
curve is read from its commit (`data/model/curve.csv` is git-tracked). Figures (matplotlib):

1. validation NDCG@10 per epoch, every run on one axis;
2. test NDCG@10 and HR@10 per model (runs that differ only in `train.seed` are one model), bars =
   mean, dots = seeds;
3. test NDCG@10 by the user's training-history length (the `test_len_*` groups; MSM4SR Fig. 4);
4. cold vs warm users (test item < `protocol.cold_threshold` training occurrences vs the rest);
5. training time vs test NDCG@10 (the timing metrics);
6. a 2-D t-SNE map (scikit-learn) of the current run's item vectors beside the items' text
   features (when extracted), coloured by the item's first category.

With `--run-only` (the DVC stage) only this run's per-run data is written, as CSV files DVC plots
(`dvc plots diff` compares experiments) and a page without the cross-run figures; everything in it
comes from hashed inputs, so the page is byte-identical for the same run.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.builder import load_model
from pipeline.evaluation import catalogue
from pipeline.features.store import load_item_matrix
from pipeline.layout import PROJECT_DATA, RunDirs, feature_path
from pipeline.params import setup_logging
from pipeline.tables import read_table

log = logging.getLogger("pipeline.report")

DATA = PROJECT_DATA  # the DVC project's folders (runs are read from its workspace and experiment commits)
METRICS_FILE = str(DATA.metrics)
TIMING_FILE = str(DATA.timing / "train.json")
CURVE_FILE = str(DATA.model / "curve.csv")
KEY_PARAMS = ("model", "dataset", "train.loss", "train.seed", "train.epochs")


# ---------------------------------------------------------------------------------------- runs


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _run(node: dict, name: str) -> dict | None:
    data = node.get("data") or {}
    metrics = {}
    for path, m in (data.get("metrics") or {}).items():
        values = (m or {}).get("data") or {}
        metrics |= {f"timing/{k}": v for k, v in values.items()} if path == TIMING_FILE else values
    if "test/ndcg@10" not in metrics:
        return None
    params = _flat(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
    return {"name": name, "rev": node.get("rev"), "params": params, "metrics": metrics}


def experiments(repo: Path = Path(".")) -> list[dict]:
    """The workspace and every experiment with metrics (via `dvc exp show --json -A`); [] outside DVC."""
    try:
        out = subprocess.run(["dvc", "exp", "show", "--json", "-A"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        log.warning("no DVC experiments read (%s); the report shows the workspace only", e)
        return []
    runs = []
    for base in json.loads(out or "[]"):
        if base.get("rev") == "workspace":
            r = _run(base, "workspace")
            runs += [r] if r else []
        for group in base.get("experiments") or []:
            for node in group.get("revs") or []:
                r = _run(node, node.get("name") or node.get("rev", "")[:7])
                runs += [r] if r else []
    return _without_applied_workspace(runs)


def _without_applied_workspace(runs: list[dict]) -> list[dict]:
    """Drop the workspace when it is an experiment applied (`dvc exp run` leaves its results in the
    workspace): same params and metrics, so it would count that run twice."""
    def key(r: dict) -> tuple:
        return (sorted(r["params"].items(), key=str),
                sorted((k, v) for k, v in r["metrics"].items() if not k.startswith("timing/") and
                       not isinstance(v, (dict, list))))

    exps = {repr(key(r)) for r in runs if r["rev"] != "workspace"}
    return [r for r in runs if r["rev"] != "workspace" or repr(key(r)) not in exps]


def effective_loss(run: dict) -> str:
    """The loss a run trained with: the model's own `loss` when it sets one, else `train.loss`."""
    p = run["params"]
    own = p.get(f"models.{run['metrics'].get('model') or p.get('model')}.loss")
    return str(own or p.get("train.loss"))


def workspace(repo: Path = Path(".")) -> list[dict]:
    """The current run alone, from the files (no DVC needed)."""
    import yaml

    path = repo / METRICS_FILE
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text())
    params = _flat(yaml.safe_load((repo / "params.yaml").read_text())) if (repo / "params.yaml").is_file() else {}
    return [{"name": "workspace", "rev": "workspace", "params": params, "metrics": metrics}]


def curve(run: dict, repo: Path = Path(".")) -> pl.DataFrame | None:
    """A run's per-epoch validation curve (from its commit for experiments)."""
    try:
        if run["rev"] == "workspace":
            return pl.read_csv(repo / CURVE_FILE)
        text = subprocess.run(["git", "show", f"{run['rev']}:{CURVE_FILE}"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout
        return pl.read_csv(io.StringIO(text))
    except (OSError, subprocess.CalledProcessError, pl.exceptions.PolarsError):
        return None


def group_key(run: dict) -> str:
    """Runs that differ only in train.seed are one model."""
    p, m = run["params"], run["metrics"]
    name = m.get("model") or p.get("model")
    section = {k.split(".", 2)[2]: v for k, v in p.items() if k.startswith(f"models.{name}.")}
    return f"{name} ({m.get('dataset') or p.get('dataset')})" + (f" {section}" if len(section) <= 3 and section else "")


def table(runs: list[dict]) -> str:
    """Model, dataset, key params, test HR/NDCG/MRR@10, unmasked NDCG@10, coverage@10 and long-tail
    share@10 (mean ± std over seeds), seeds."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        protocol = f"{r['params'].get('preprocess.split', 'loo')}" + \
            ("" if r["params"].get("train.order", "time") == "time" else f", {r['params']['train.order']} order")
        groups.setdefault(f"{r['metrics'].get('model')}|{r['metrics'].get('dataset')}|{protocol}|"
                          f"{effective_loss(r)}|{r['params'].get('train.epochs')}", []).append(r)
    header = ["model", "dataset", "split", "loss", "epochs", "test HR@10", "test NDCG@10", "test MRR@10", "unmasked NDCG@10",
              "coverage@10", "tail@10", "seeds", "runs"]
    lines = []
    for key, rs in groups.items():
        model, dataset, protocol, loss, epochs = key.split("|")

        def ms(metric: str) -> str:
            v = np.array([r["metrics"][metric] for r in rs if metric in r["metrics"]], float)
            return f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else "") if len(v) else "—"

        seeds = sorted({r["params"].get("train.seed") for r in rs}, key=str)
        lines.append([model, dataset, protocol, loss, epochs, ms("test/hr@10"), ms("test/ndcg@10"), ms("test/mrr@10"),
                      ms("test_unmasked/ndcg@10"), ms("test/coverage@10"), ms("test/tail@10"),
                      ",".join(map(str, seeds)), ", ".join(r["name"] for r in rs)[:40]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*ln) for ln in lines])


# ---------------------------------------------------------------------------------------- figures


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def fig_curves(runs: list[dict], repo: Path) -> str | None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = 0
    for r in runs:
        c = curve(r, repo)
        if c is not None and "valid/ndcg@10" in c.columns:
            ax.plot(c["epoch"], c["valid/ndcg@10"], label=f"{r['name']}: {group_key(r)[:40]}", lw=1.2)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel="validation NDCG@10", title="Validation curves")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _groups(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(group_key(r), []).append(r)
    return out


def fig_models(runs: list[dict]) -> str:
    import matplotlib.pyplot as plt

    groups = _groups(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 + 0.45 * len(groups)), squeeze=False)
    for ax, metric in zip(axes[0], ("test/ndcg@10", "test/hr@10")):
        for i, (name, rs) in enumerate(groups.items()):
            v = np.array([r["metrics"][metric] for r in rs])
            ax.barh(i, v.mean(), xerr=v.std(ddof=1) if len(v) > 1 else None, color="#9ecae1", capsize=3)
            ax.plot(v, [i] * len(v), "k.", ms=5)
        ax.set_yticks(range(len(groups)), [g[:45] for g in groups], fontsize=7)
        ax.set(xlabel=metric, title=f"{metric} (bar: mean, dots: seeds)")
    return _png(fig)


def fig_lengths(runs: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    drawn = False
    for name, rs in _groups(runs).items():
        keys = sorted({k.split("/")[0] for k in rs[0]["metrics"] if k.startswith("test_len_") and k.endswith("/ndcg@10")},
                      key=lambda k: float(k.removeprefix("test_len_").split("-")[0]))
        if not keys:
            continue
        vals = [np.mean([r["metrics"].get(f"{k}/ndcg@10", np.nan) for r in rs]) for k in keys]
        ax.plot(range(len(keys)), vals, "o-", label=name[:40])
        ax.set_xticks(range(len(keys)), [f"{k.removeprefix('test_len_')}\n({rs[0]['metrics'].get(f'{k}/users', '?')} users)"
                                         for k in keys], fontsize=7)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="training interactions per user", ylabel="test NDCG@10", title="By history length")
    ax.legend(fontsize=7)
    return _png(fig)


def cold_warm(m: dict, metric: str = "hr@10") -> tuple[float, float] | None:
    """(cold, warm) test metric: cold from test_cold/*, warm from the overall mean minus the cold users."""
    users, cold_users = m.get("users"), m.get("test_cold/users")
    if not users or cold_users is None or f"test/{metric}" not in m:
        return None
    cold = m.get(f"test_cold/{metric}", 0.0) if cold_users else float("nan")
    warm = (m[f"test/{metric}"] * users - (cold * cold_users if cold_users else 0)) / max(users - cold_users, 1)
    return cold, warm


def fig_cold(runs: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    groups = {n: [cold_warm(r["metrics"]) for r in rs] for n, rs in _groups(runs).items()}
    groups = {n: [v for v in vs if v] for n, vs in groups.items() if any(vs)}
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.4 * len(groups)))
    for i, (name, vs) in enumerate(groups.items()):
        cold, warm = np.nanmean([v[0] for v in vs]), np.mean([v[1] for v in vs])
        ax.barh(i - 0.18, warm, 0.35, color="#fdae6b", label="warm users" if i == 0 else None)
        ax.barh(i + 0.18, cold, 0.35, color="#6baed6", label="cold users" if i == 0 else None)
    ax.set_yticks(range(len(groups)), [g[:45] for g in groups], fontsize=7)
    ax.set(xlabel="test HR@10", title="Cold vs warm users (test item rare vs frequent in training)")
    ax.legend(fontsize=7)
    return _png(fig)


def fig_time(runs: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    pts = [(r["metrics"]["timing/seconds"], r["metrics"]["test/ndcg@10"], group_key(r)) for r in runs
           if "timing/seconds" in r["metrics"]]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict.fromkeys(p[2] for p in pts):
        xs = [p[0] for p in pts if p[2] == name]
        ax.scatter(xs, [p[1] for p in pts if p[2] == name], label=name[:40], s=25)
    ax.set(xscale="log", xlabel="training wall seconds (log)", ylabel="test NDCG@10", title="Time vs quality")
    ax.legend(fontsize=7)
    return _png(fig)


def item_maps(repo: Path, limit: int = 1500) -> pl.DataFrame | None:
    """x, y, space (model's item vectors | text features), category of up to `limit` items, by t-SNE."""
    from sklearn.manifold import TSNE

    data = RunDirs(repo / DATA.root)
    ckpt, items_path = data.model / "model.pt", data.prepared / "items.parquet"
    if not ckpt.is_file() or not items_path.is_file():
        return None
    items = read_table(items_path, "items")
    model, _ = load_model(ckpt)
    spaces = {"the model's item vectors": catalogue(model)}
    text = feature_path(data.features, "text")
    if text.is_file():
        vec, present = load_item_matrix(text, "text", items.height)
        spaces["text features (content)"] = vec[1:]
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(items.height, min(limit, items.height), replace=False))
    cats = items["categories"].list.first().fill_null("(none)").to_numpy()[pick]
    frames = []
    for space, x in spaces.items():
        if not np.isfinite(x[pick]).all() or np.ptp(x[pick], axis=0).max(initial=0.0) == 0:
            log.info("item map: %s skipped (no variation to map: e.g. a data set without item text)", space)
            continue
        xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(x[pick].astype(np.float64))
        frames.append(pl.DataFrame({"item_id": pick + 1, "x": xy[:, 0], "y": xy[:, 1], "space": space, "category": cats}))
    return pl.concat(frames) if frames else None


def fig_items(maps: pl.DataFrame | None) -> str | None:
    import matplotlib.pyplot as plt

    if maps is None:
        return None
    spaces = maps["space"].unique(maintain_order=True).to_list()
    top = maps["category"].value_counts(sort=True)["category"].head(8).to_list()
    fig, axes = plt.subplots(1, len(spaces), figsize=(5.5 * len(spaces), 5), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        m = maps.filter(pl.col("space") == space)
        other = m.filter(~pl.col("category").is_in(top))
        ax.scatter(other["x"], other["y"], s=3, c="#dddddd", label="other")
        for c in top:
            sel = m.filter(pl.col("category") == c)
            ax.scatter(sel["x"], sel["y"], s=4, label=str(c)[:20])
        ax.set(title=f"t-SNE of {space}", xticks=[], yticks=[])
    axes[0][-1].legend(fontsize=7, markerscale=3, loc="best")
    return _png(fig)


# ---------------------------------------------------------------------------------------- page


def page(runs: list[dict], figures: dict[str, str | None], note: str) -> str:
    rows = "".join(f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(group_key(r))}</td>"
                   f"<td>{r['params'].get('train.seed', '')}</td>"
                   + "".join(f"<td>{r['metrics'].get(k, float('nan')):.4f}</td>" for k in ("test/hr@10", "test/ndcg@10",
                                                                                            "test/mrr@10"))
                   + "</tr>" for r in runs)
    figs = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b64}'>"
                   for t, b64 in figures.items() if b64)
    protocol = next((r["metrics"].get("protocol/ranking") for r in runs if "protocol/ranking" in r["metrics"]), "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>mmrec report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
            "img{max-width:100%;border:1px solid #eee}</style></head><body><h1>Results report</h1>"
            f"<p>{html.escape(note)} Protocol: {html.escape(str(protocol))}.</p>"
            "<table><tr><th>run</th><th>model</th><th>seed</th><th>test HR@10</th><th>test NDCG@10</th>"
            f"<th>test MRR@10</th></tr>{rows}</table>{figs}</body></html>\n")


def report(repo: Path, out: Path, run_only: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    runs = workspace(repo) if run_only else (experiments(repo) or workspace(repo))
    if not runs:
        raise SystemExit(f"{repo / METRICS_FILE}: no metrics yet; run `dvc repro` first")
    out.mkdir(parents=True, exist_ok=True)
    maps = item_maps(repo)
    empty = pl.DataFrame(schema={"item_id": pl.Int64, "x": pl.Float64, "y": pl.Float64, "space": pl.String,
                                 "category": pl.String})
    (maps if maps is not None else empty).write_csv(out / "item_map.csv")  # a declared plot: always written
    figures = {"Validation curves": fig_curves(runs, repo), "Test metrics per model": fig_models(runs),
               "By user history length": fig_lengths(runs), "Cold vs warm users": fig_cold(runs),
               "Item space (current run)": fig_items(maps)}
    if not run_only:
        figures["Training time vs quality"] = fig_time(runs)
    lengths = [{"group": k.split("/")[0].removeprefix("test_len_"), "ndcg@10": v} for k, v in runs[0]["metrics"].items()
               if k.startswith("test_len_") and k.endswith("/ndcg@10")]
    if lengths:
        pl.DataFrame(lengths).write_csv(out / "length_groups.csv")
    note = "This run only." if run_only else f"{len(runs)} runs: the workspace and the DVC experiments."
    (out / "index.html").write_text(page(runs, figures, note))
    log.info("report: %s (%d runs, %d figures)", out / "index.html", len(runs), sum(1 for f in figures.values() if f))
    return out / "index.html"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=".")
    ap.add_argument("--out", default="docs/report")
    ap.add_argument("--table", action="store_true", help="only print the comparison table")
    args = ap.parse_args()
    setup_logging()
    repo = Path(args.repo)
    if args.table:
        print(table(experiments(repo) or workspace(repo)))
        return
    report(repo, Path(args.out))


if __name__ == "__main__":
    main()
