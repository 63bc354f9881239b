"""The locked environment: every dependency pinned with hashes; the versions reach metrics.json."""

import re

import tomllib

from tests.conftest import ROOT


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_lock_pins_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = names(project["dependencies"] + project["optional-dependencies"]["dev"])
    lock = (ROOT / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ \\]+)", lock, flags=re.M))
    assert wanted <= set(pinned), f"not in requirements.lock (re-run pip-compile): {sorted(wanted - set(pinned))}"
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n\n", 1)[1])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b)  # pip installs it with --require-hashes
    assert "/opt/" not in lock  # no machine-specific index or find-links lines


def test_metrics_carry_the_library_versions():
    from pipeline.evaluate import provenance

    prov = provenance()
    assert "torch==2.14.1" in prov["provenance/versions"] and "polars==" in prov["provenance/versions"]
    assert len(prov["provenance/lock_sha256"]) == 64
