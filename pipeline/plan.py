"""What the selected model needs from the optional stages, and which code it runs (the `plan` stage's library).

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
- editing `models/mmsr.py` leaves `code.json` of SASRec unchanged, so SASRec is not retrained;
- `pretrain.json` of a model that pre-trains also holds its code's hashes, so editing that code
  pre-trains again, and nothing else does.

What a model needs comes from the model builder (pipeline.builder.needs), the one reader of the
model contract.

`features.extract: all` makes every feature stage run whatever the model (to query the tables).
"""

from __future__ import annotations

import ast
import hashlib
import logging
from pathlib import Path

from pipeline import builder
from pipeline.tables import write_json

log = logging.getLogger("pipeline.plan")

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def module_closure(name: str, root: Path = MODELS_DIR) -> list[Path]:
    """The registered model's source file and every models.* module it imports, transitively. Not the
    registry: adding or editing another model changes nothing here (the registry only maps the name
    to this class, whose file is the closure's root)."""
    seen: list[Path] = []
    todo = [builder.source_file(name)]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.append(path)
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            todo += [root / f"{m.split('.', 1)[1].replace('.', '/')}.py" for m in mods if m.startswith("models.")]
    return sorted(seen)


def code_hashes(name: str) -> dict[str, str]:
    """{path: SHA-256} of the model's source closure."""
    top = MODELS_DIR.parent
    return {str(p.relative_to(top) if p.is_relative_to(top) else p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in module_closure(name)}


def plan(params: dict, out: Path) -> dict:
    name, _ = builder.selected(params)
    result = builder.needs(params)
    code = code_hashes(name)
    for stage, needed in result.items():  # nothing else: equal needs, equal files
        write_json(out / f"{stage}.json", {"needed": needed} | ({"code": code} if stage == "pretrain" and needed
                                                                 else {}))
    write_json(out / "code.json", code)
    log.info("model %s needs %s; its code: %s", name, [s for s, n in result.items() if n] or "no optional stage",
             sorted(code))
    return result
