"""Stage `plan`: what the selected model needs from the optional stages, and which code it runs.

    python -m pipeline.plan --params params.yaml --out data/plan

DVC runs every stage of the graph; a stage whose output the selected model does not read should
cost nothing. This stage writes one small file per optional stage — `text.json`, `image.json`,
`keywords.json` (feature stages) and `pretrain.json` — holding only whether it is needed, and
`code.json`, the SHA-256 of every model source file the selected model imports. The optional
stages and `train` depend on these files instead of on `model` / the whole `models/` folder, so:

- a model that reads no features (SASRec, GRU4Rec, …) makes the feature stages and the
  pre-training write a marker in a second, and switching back to one that does restores the real
  outputs from DVC's run cache (same deps, same params) instead of recomputing them;
- switching between two models with the same needs changes no file here, so nothing upstream of
  `train` runs again;
- editing `models/mmsr.py` leaves `code.json` of SASRec unchanged, so SASRec is not retrained.

`features.extract: all` makes every feature stage run whatever the model (to query the tables).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
from pathlib import Path

from pipeline.params import ConfigError, choose, load_params, setup_logging
from pipeline.tables import write_json

log = logging.getLogger("pipeline.plan")

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
FEATURE_STAGES = ("text", "image", "keywords")
EXTRACT = ("auto", "all")


def module_closure(name: str, root: Path = MODELS_DIR) -> list[Path]:
    """models/<name>.py and every models.* module it imports, transitively (plus the registry file
    itself, not what the registry imports)."""
    seen: list[Path] = []
    todo = [root / f"{name}.py"]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.append(path)
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            todo += [root / f"{m.split('.', 1)[1].replace('.', '/')}.py" for m in mods if m.startswith("models.")]
    return sorted(seen + [root / "__init__.py"])


def needs(params: dict) -> dict[str, bool]:
    """{stage: needed} for the feature stages and the pre-training, from the selected model."""
    from models import MODELS
    from pipeline.pretrain import needed as pretrain_reason
    from pipeline.train import FEATURE_DIRS

    name, section = choose(params, "model", "models")
    extract = (params.get("features") or {}).get("extract", "auto")
    if extract not in EXTRACT:
        raise ConfigError(f"features.extract={extract!r}: use one of {EXTRACT}")
    cls = MODELS.get(name)
    if cls is None:
        raise ConfigError(f"params.yaml: model={name!r} is not registered; registered: {sorted(MODELS)}")
    defaults = cls.Config.__dataclass_fields__
    tables = {section.get(f"{m}_table", defaults[f"{m}_table"].default) for m in getattr(cls, "FEATURES", ())}
    dirs = {FEATURE_DIRS.get(t) for t in tables}
    return {**{s: extract == "all" or s in dirs for s in FEATURE_STAGES}, "pretrain": pretrain_reason(params) is None}


def plan(params: dict, out: Path) -> dict:
    name, _ = choose(params, "model", "models")
    result = needs(params)
    for stage, needed in result.items():
        write_json(out / f"{stage}.json", {"needed": needed})  # nothing else: equal needs, equal files
    code = {str(p.relative_to(MODELS_DIR.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in module_closure(name)}
    write_json(out / "code.json", code)
    log.info("model %s needs %s; its code: %s", name, [s for s, n in result.items() if n] or "no optional stage",
             sorted(code))
    return result


def is_needed(plan_file: Path | None) -> bool:
    """What a stage reads from its plan file (no file given: run, as when called from Python)."""
    if plan_file is None:
        return True
    import json

    return bool(json.loads(plan_file.read_text())["needed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/plan")
    args = ap.parse_args()
    setup_logging()
    plan(load_params(args.params), Path(args.out))


if __name__ == "__main__":
    main()
