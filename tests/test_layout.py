"""The house rules, checked on the source: stages are thin commands that never import each other,
imports run one way without circles, dvc.yaml's code deps are exactly what each stage imports, and
only the model builder asks a model what it is."""

from __future__ import annotations

import ast
import graphlib
import re

import pytest
import yaml

from tests.imports import ROOT, closure, imports, module_files

MODULES = module_files()
STAGES = {name: stage for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}
FINGERPRINTS = ("data/plan/code.json", "data/plan/pretrain.json")  # the plan stage's hashes of the model code


def stage_module(stage: dict) -> str:
    return re.match(r"python -m (\S+)", stage["cmd"]).group(1)


def rel(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def has_code(module: str) -> bool:
    """A module with more than a docstring (an empty package marker needs no dependency)."""
    body = ast.parse(MODULES[module].read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def test_no_import_circles():
    graph = {m: imports(m) for m in MODULES}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_every_dvc_stage_is_a_module_under_pipeline_stages():
    mods = {name: stage_module(stage) for name, stage in STAGES.items()}
    assert all(m.startswith("pipeline.stages.") and m in MODULES for m in mods.values()), mods
    assert set(mods.values()) == {m for m in MODULES if m.startswith("pipeline.stages.") and m != "pipeline.stages"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module):
    """models/ imports nothing of the pipeline; the pipeline nothing of bench/ or tests/; a stage no
    other stage; nothing but a test imports a stage."""
    mine = imports(module)
    stages = {m for m in mine if m.startswith("pipeline.stages.")}
    if module.startswith("models"):
        assert not {m for m in mine if not m.startswith("models")}, f"{module} imports {sorted(mine)}"
    if module.startswith("pipeline"):
        assert not {m for m in mine if m.startswith(("bench", "tests"))}, f"{module} imports {sorted(mine)}"
    if not module.startswith("tests"):
        assert not stages, f"{module} imports the stage(s) {sorted(stages)}: move what they share into the library"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_deps_are_the_stage_imports(name):
    """Each stage's code deps in dvc.yaml cover every project file its command imports, and nothing
    else; model files are covered by the plan stage's fingerprints of the selected model's code."""
    stage = STAGES[name]
    deps = [d.split("#")[0].strip() for d in stage.get("deps", [])]
    code_deps = [d for d in deps if d.startswith(("pipeline", "models"))]
    needed = sorted(rel(m) for m in closure(stage_module(stage)) if has_code(m))

    def covered(path: str) -> bool:
        if path.startswith("models/") and any(f in deps for f in FINGERPRINTS):
            return True
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in code_deps)

    missing = [p for p in needed if not covered(p)]
    extra = [d for d in code_deps if not any(p == d or p.startswith(d.rstrip("/") + "/") for p in needed)]
    assert not missing, f"dvc.yaml stage {name!r} imports {missing} but does not list them under deps"
    assert not extra, f"dvc.yaml stage {name!r} lists {extra} under deps, which it does not import"


def test_stage_commands_are_thin():
    """A stage is short (≤ 60 lines): its arguments, one library call; no default repeats a dvc.yaml path."""
    for module in (m for m in MODULES if m.startswith("pipeline.stages.")):
        text = MODULES[module].read_text()
        assert len(text.splitlines()) <= 60, f"{rel(module)}: {len(text.splitlines())} lines"
        assert "default=" not in text and '"data/' not in text, f"{rel(module)} repeats a path dvc.yaml states"


# The hasattr / getattr calls outside the builder, each on a library object, not a model: (module, object).
NOT_MODELS = {("pipeline.features.encoders", "self.st"), ("pipeline.features.encoders", "conf"),
              ("pipeline.features.encoders", "out"), ("pipeline.sources.fetch", "resp"), ("pipeline.retrieval", "faiss")}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(("pipeline", "bench"))))
def test_only_the_builder_asks_a_model_what_it_is(module):
    """No hasattr / getattr outside pipeline/builder.py but on the listed library objects (a new one
    is reviewed and listed here); the contract (models.contract) is read in the builder only."""
    if module == "pipeline.builder":
        return
    tree = ast.parse(MODULES[module].read_text())
    probes = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id in ("hasattr", "getattr") and (module, ast.unparse(n.args[0])) not in NOT_MODELS]
    assert not probes, f"{rel(module)} probes {probes}; ask pipeline.builder (it reads models/contract.py)"
    readers = sorted({a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "models.contract"
                      for a in n.names} - {"ModelInputs", "FeatureTable", "with_markdown"})  # its types and its doc
    assert not readers, f"{rel(module)} imports {readers}: only pipeline/builder.py reads the model contract"
