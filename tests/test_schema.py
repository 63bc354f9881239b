"""params.yaml's typed schema (pipeline/config.py, pipeline/params.py, models' Config types): every
field of every section, given a wrong type and an out-of-range value, is a one-line error naming the
key, the value and what is allowed; every key is written in params.yaml; quoted booleans are
refused, numbers written as strings converted with a note."""

from __future__ import annotations

import dataclasses
import logging
import typing

import pytest
import yaml
from annotated_types import Ge, Gt, Le, Lt

from pipeline import builder, config
from pipeline.params import ConfigError, from_dict, read_params
from pipeline.schema import check_all
from pipeline.sources import SOURCES
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def sections() -> list[tuple[str, type, dict]]:
    """(where, dataclass, a valid base section) for every section of the schema."""
    out = [("features", config.FeatureSettings, {})] + [(w, c, {}) for w, c in config.SECTIONS.items()]
    out += [(f"models.{n}", builder.model_class(n).Config, {}) for n in sorted(PARAMS["models"])]
    for name, entry in PARAMS["datasets"].items():  # one entry per format, with its required keys
        if not any(w.startswith("datasets.") and c is SOURCES[entry["format"]].config for w, c, _ in out):
            out.append((f"datasets.{name}", SOURCES[entry["format"]].config,
                        {k: v for k, v in entry.items() if k != "format"}))
    return out


FIELDS = [(where, cls, base, f) for where, cls, base in sections() for f in dataclasses.fields(cls)]
IDS = [f"{where}.{f.name}" for where, _, _, f in FIELDS]


def out_of_range(hint) -> object | None:
    """A value the field's type refuses though it has the right kind (None: the type has no range)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        _, meta = args[0], [m for a in args[1:] for m in getattr(a, "metadata", [a])]
        for m in meta:
            if isinstance(m, Gt):
                return m.gt
            if isinstance(m, Ge):
                return m.ge - 1
            if isinstance(m, Lt):
                return m.lt
            if isinstance(m, Le):
                return m.le + 1
            if getattr(m, "pattern", None):
                return "no-such-thing"
        return None
    if origin is typing.Literal:
        return "no-such-option"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return next((v for v in (out_of_range(a) for a in args if a is not type(None)) if v is not None), None)
    if origin is list:
        inner = out_of_range(args[0])
        return None if inner is None else [inner]
    return None


@pytest.mark.parametrize("where, cls, base, f", FIELDS, ids=IDS)
def test_every_field_refuses_a_wrong_type_and_an_out_of_range_value(where, cls, base, f):
    hint = typing.get_type_hints(cls, include_extras=True)[f.name]
    bad = [[1] if hint is dict else {"not": "a value"}]
    if (r := out_of_range(hint)) is not None:
        bad.append(r)
    for value in bad:
        with pytest.raises(ConfigError) as err:
            from_dict(cls, base | {f.name: value}, where)
        said = str(err.value)
        shown = value[0] if isinstance(value, list) and value != [1] else value  # a list: its bad element
        assert f"`{where}.{f.name}" in said and repr(shown) in said and "\n" not in said, said
        assert "not allowed" in said or "—" in said, said  # and what is allowed


def test_every_key_of_the_schema_is_written_in_params_yaml():
    """So `dvc exp run -S <section>.<key>=...` can set any of them (DVC sets only keys the file has)."""
    missing = [f"{where}.{f.name}" for where, cls, _, f in FIELDS if not where.startswith("datasets.")
               and f.name not in config.section(PARAMS, where)]
    assert not missing, f"add these keys to params.yaml with their defaults: {missing}"


def test_the_project_params_file_passes_and_the_plan_stage_checks_it():
    assert check_all(read_params(ROOT / "params.yaml"))
    bad = PARAMS | {"models": PARAMS["models"] | {"sasrec": PARAMS["models"]["sasrec"] | {"dropout": 1.5}}}
    with pytest.raises(ConfigError, match=r"`models.sasrec.dropout`: 1.5 is not allowed: input should be less than 1"):
        check_all(bad)


@pytest.mark.parametrize("value", ["false", "true", "no", 0, 1])
def test_a_quoted_or_numeric_boolean_is_refused(value):
    with pytest.raises(ConfigError, match="write true or false, without quotes"):
        from_dict(config.PreprocessConfig, {"allow_degenerate": value}, "preprocess")


def test_a_number_written_as_a_string_is_converted_with_a_note(caplog, tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  lr: 1e-3\n")  # YAML 1.1: a string
    with caplog.at_level(logging.WARNING):
        params = config.load_params(tmp_path / "p.yaml")
    assert params["train"]["lr"] == 0.001 and "'1e-3' read as the number 0.001" in caplog.text


@pytest.mark.parametrize("text, says", [
    ("trian:\n  lr: 0.1\n", "unknown top-level key(s) ['trian']"),
    ("train:\n  lrate: 0.1\n", "`train`: unknown key(s) ['lrate']"),
    ("train:\n  lr: [0.1\n", "p.yaml:3: not valid YAML"),
    ("train:\n  threads: -1\n", "`train.threads`: -1 is not allowed: input should be greater than or equal to 0"),
    ("features:\n  text:\n    max_sentences: 0\n", "`features.text.max_sentences`: 0 is not allowed"),
    ("preprocess:\n  user_core: '5'\n", None),  # converted (a note), not refused
])
def test_a_bad_file_is_one_line(tmp_path, text, says):
    (tmp_path / "p.yaml").write_text(text)
    if says is None:
        assert config.load_params(tmp_path / "p.yaml")["preprocess"]["user_core"] == 5
        return
    with pytest.raises(ConfigError) as err:
        config.load_params(tmp_path / "p.yaml")
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
