"""Real MovieLens-100K (+ TMDB posters/overviews) from ../shared, through the configurable source."""

import json

import polars as pl

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.evaluate import evaluate
from pipeline.preprocess import run
from pipeline.tables import read_table
from pipeline.train import train
from tests.conftest import tiny_params


def test_ml100k_end_to_end_sasrec_beats_pop(shared_datasets, tmp_path):
    params = tiny_params()
    params["dataset"] = "ml-100k"
    params["datasets"] = {"ml-100k": {"format": "ml-100k", "source": str(shared_datasets / "ml-100k"),
                                      "posters": str(shared_datasets / "ml-100k-posters")}}
    params["preprocess"] = {"max_len": 50}
    params["train"] = {"epochs": 6, "batch_size": 128, "lr": 0.002, "patience": 3, "seed": 0}
    params["models"]["sasrec"] = {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.3}
    download(params, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**params["preprocess"]))
    # GroupLens's counts, then 5-core: every user has >= 20 ratings, 333 rare movies go.
    assert stats["raw"]["interactions"] == 100_000
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1349, 99_287)
    assert stats["dropped"]["kcore"] == 713
    items = read_table(tmp_path / "prepared" / "items.parquet", "items")
    toy = items.filter(pl.col("title") == "Toy Story").row(0, named=True)
    assert toy["orig_id"] == "1" and "Animation" in toy["categories"] and "Woody" in toy["description"]
    assert toy["image_paths"] == ["posters/1.jpg"] and (tmp_path / "raw" / "posters" / "1.jpg").is_file()
    assert stats["metadata"]["items_without_image"] < 20

    results = {}
    for model in ("pop", "sasrec"):
        train(params | {"model": model}, tmp_path / "prepared", tmp_path / model)
        results[model] = evaluate(params | {"model": model}, tmp_path / "prepared", tmp_path / model / "model.pt",
                                  tmp_path / model / "metrics.json")
    assert results["sasrec"]["test/ndcg@10"] > 1.15 * results["pop"]["test/ndcg@10"], json.dumps(results)
    assert results["sasrec"]["valid/ndcg@10"] > 1.15 * results["pop"]["valid/ndcg@10"]
