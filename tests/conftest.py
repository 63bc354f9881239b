import os
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMREC_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)  # xdist: a worker per core


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (set MMREC_SHARED_DATASETS); it exists in CI")
    return SHARED


def tiny_params(**overrides) -> dict:
    """A small but structured demo configuration used by the end-to-end tests."""
    params = {
        "dataset": "demo",
        "model": "sasrec",
        "datasets": {"demo": {"format": "demo", "n_items": 300, "n_users": 250, "seed": 3, "image_size": 16}},
        "preprocess": {"user_core": 3, "item_core": 3, "max_len": 20},
        "protocol": {"mask_history": True, "ks": [5, 10, 20, 50]},
        "train": {"epochs": 12, "batch_size": 64, "lr": 0.003, "patience": 4, "seed": 0},
        "models": {"pop": {}, "sasrec": {"hidden": 32, "layers": 1, "heads": 2, "inner": 64, "dropout": 0.1},
                   "gru4rec": {"embedding": 32, "hidden": 32}, "nextitnet": {"embedding": 32, "blocks": 1},
                   "mlpmixer": {"hidden": 32, "blocks": 1, "dropout": 0.1},
                   "m2sr": {"hidden": 32, "blocks": 1, "dropout": 0.1},
                   "msm4sr": {"hidden": 32, "attn_dim": 32, "experts": 4, "layers": 1, "inner": 64, "dropout": 0.1},
                   "mmsr": {"hidden": 32, "inner": 64, "adapter_dim": 32, "dropout": 0.1},
                   "automlp": {"hidden": 32, "short_lengths": [2, 5, 10], "search_epochs": 2, "dropout": 0.1},
                   "bprmf": {"embedding": 32}, "fpmc": {"embedding": 32},
                   "bert4rec": {"hidden": 32, "layers": 1, "heads": 2, "inner": 64, "dropout": 0.1}},
        "pretrain": {"model": "msm4sr", "epochs": 3, "batch_size": 256, "seed": 0},
    }
    features = yaml.safe_load((ROOT / "params.yaml").read_text())["features"]  # the shipped defaults
    features["shard_size"] = 128
    params["features"] = features
    for k, v in overrides.items():
        params[k] = v
    return params


def write_random_features(prepared: Path, out: Path, seed: int = 0) -> None:
    """Feature tables for `prepared` (every kind a model reads) with random vectors, written through
    the real schemas and provenance, so feature models train without running the encoders."""
    import numpy as np
    import pyarrow as pa

    from pipeline.features.store import stack_table, vector_column
    from pipeline.tables import file_sha256, read_table, write_table

    n = read_table(prepared / "items.parquet", "items").height
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    base = {"source_sha256": file_sha256(prepared / "items.parquet"), "dtype": "float32"}
    text = pa.table({"item_id": pa.array(ids, pa.int32()), "present": pa.array(np.ones(n, bool)),
                     "vector": vector_column(rng.standard_normal((n, 12)), "float32")})
    write_table(text, out / "text" / "text.parquet", "text", base | {"dim": 12})
    for folder, kind, slots, dim in (("text", "text_sentences", 3, 12), ("text", "text_tokens", 6, 12),
                                     ("image", "image", 2, 16), ("keywords", "keyword_vectors", 2, 12)):
        mask = rng.random((n, slots)) < 0.8
        mask[:, 0] = True
        table = stack_table(ids, rng.standard_normal((n, slots, dim)), mask, "float32")
        write_table(table, out / folder / f"{kind}.parquet", kind, base | {"dim": dim, "slots": slots})
    with_image = ids[rng.random(n) < 0.9]  # image_grid: one row per encoded image, 4 tokens each
    grid = pa.table({"item_id": pa.array(with_image, pa.int32()), "image_index": pa.array(np.zeros(len(with_image)),
                                                                                          pa.int32()),
                     "tokens": vector_column(rng.standard_normal((len(with_image), 4, 16)), "float32")})
    write_table(grid, out / "image" / "image_grid.parquet", "image_grid", base | {"dim": 16, "grid": 4})
