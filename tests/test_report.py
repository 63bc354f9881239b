"""The results report's comparison table and page, on constructed runs (no DVC needed)."""

import matplotlib

matplotlib.use("Agg")

from pipeline import report  # noqa: E402


def run(name, model, seed, ndcg, rev=None, **params):
    p = {"model": model, "dataset": "ml-100k", "train.seed": seed, "train.loss": "ce", "train.epochs": 200} | params
    m = {"model": model, "dataset": "ml-100k", "test/hr@10": 2 * ndcg, "test/ndcg@10": ndcg, "test/mrr@10": ndcg / 2,
         "test_len_1-10/ndcg@10": ndcg, "test_cold/hr@10": ndcg / 3, "test_warm/hr@10": ndcg, "timing/seconds": seed}
    return {"name": name, "rev": rev or name, "params": p, "metrics": m}


def test_table_groups_seeds_and_shows_the_loss_each_model_trained_with():
    runs = [run(f"s{s}", "sasrec", s, v) for s, v in ((0, 0.09), (1, 0.10), (2, 0.11))]
    runs.append(run("m", "mmsr", 42, 0.07, **{"models.mmsr.loss": "bce"}))
    lines = report.table(runs).splitlines()
    sasrec = next(ln for ln in lines if ln.startswith("sasrec"))
    mmsr = next(ln for ln in lines if ln.startswith("mmsr"))
    assert "0.1000 ± 0.0100" in sasrec and "0,1,2" in sasrec and " ce " in sasrec
    assert " bce " in mmsr and "0.0700" in mmsr and "±" not in mmsr  # one run: no spread


def test_an_applied_experiment_is_not_counted_twice():
    exp = run("mmsr-s42", "mmsr", 42, 0.07)
    applied = run("workspace", "mmsr", 42, 0.07, rev="workspace") | {"name": "workspace"}
    applied["metrics"] = applied["metrics"] | {"timing/seconds": 99}  # timings may differ
    edited = run("workspace", "mmsr", 42, 0.05, rev="workspace")  # a workspace run of its own
    assert [r["name"] for r in report._without_applied_workspace([applied, exp])] == ["mmsr-s42"]
    assert len(report._without_applied_workspace([edited, exp])) == 2


def test_page_inlines_the_figures():
    runs = [run(f"s{s}", "sasrec", s, 0.09 + s / 100) for s in range(3)]
    figures = {"Test metrics per model": report.fig_models(runs), "By user history length": report.fig_lengths(runs),
               "Empty": None}
    page = report.page(runs, figures, "note.")
    assert page.count("data:image/png;base64,") == 2 and "<h2>Empty</h2>" not in page and page.count("<tr>") == 4
