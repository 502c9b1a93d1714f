"""Property-based fuzzing (hypothesis) of the parsers that read what users type or hand over: the
budget, architecture specs, teacher references. Whatever the input, only `UserError` may escape."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gancompress.budget import resolve_budget
from gancompress.arch.spec import ArchSpec, uniform_sr_spec, uniform_translate_spec
from gancompress.errors import UserError

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
number_text = st.one_of(numbers.map(str), st.sampled_from(["inf", "-inf", "nan", "1e400", "1e-400", "0x10", "١٢",
                                                           "1_000", " 5 ", "", "/", "x", "1/", "/2", "1//2"]))
budget_text = st.one_of(
    st.text(max_size=30),
    st.builds(lambda a, b: f"{a}/{b}", number_text, number_text),
    st.builds(lambda a, s: f"{a}{s}", number_text, st.sampled_from(["", "x", "X", "k", "M", "g", "T", "G", "p"])),
)


@FUZZ
@given(text=st.one_of(budget_text, numbers, st.booleans()),
       teacher=st.one_of(st.none(), st.integers(0, 10 ** 15)))
def test_budget_parser_raises_only_user_errors(text, teacher):
    try:
        b = resolve_budget(text, teacher)
    except UserError:
        return
    assert isinstance(b, int) and b >= 1


def test_budget_examples():
    assert resolve_budget("9.2G", None) == 9_200_000_000
    assert resolve_budget("1/10", 1000) == 100
    assert resolve_budget("0.5x", 1000) == 500
    for bad in ("inf", "1e400", "nan", "-1G", "1e400/1", "1/0", "0"):
        with pytest.raises(UserError):
            resolve_budget(bad, 1000)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)
VALID = [uniform_sr_spec(4, 8, 2, 2).to_dict(), uniform_translate_spec(8, 2, 2).to_dict()]


def _paths(d, prefix=()):
    """Every (path, value) inside a JSON document, for mutating one place at a time."""
    yield prefix, d
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


def _replace(d, path, value):
    if not path:
        return value
    d = json.loads(json.dumps(d))
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return d


@st.composite
def mutated_specs(draw):
    """A valid spec with one place replaced by arbitrary JSON, or a key removed."""
    d = draw(st.sampled_from(VALID))
    places = list(_paths(d))
    path, _ = draw(st.sampled_from(places))
    if path and draw(st.booleans()) and isinstance(path[-1], str):
        d = json.loads(json.dumps(d))
        node = d
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
        return d
    return _replace(d, path, draw(json_values))


@FUZZ
@given(d=st.one_of(mutated_specs(), json_values))
def test_spec_loader_raises_only_user_errors(d):
    for load in (ArchSpec.from_dict, lambda x: ArchSpec.from_json(json.dumps(x))):
        try:
            spec = load(d)
        except UserError:
            continue
        assert isinstance(spec, ArchSpec)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["[" * 100000, '{"cells": ' * 5000, "1e400", "NaN", '"x"'])))
def test_spec_json_text_raises_only_user_errors(text):
    try:
        ArchSpec.from_json(text)
    except UserError:
        pass


def test_spec_file_with_bad_bytes_is_a_user_error(tmp_path):
    p = tmp_path / "spec.json"
    p.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(UserError, match="spec.json"):
        ArchSpec.load(p)


kinds = st.sampled_from(["srgan", "esrgan", "srresnet", "torchscript", "export", "onnx", "module", "pt2", "jit",
                         "cyclegan", "pix2pix", "ESRGAN", "demo", "nope", "c", "a-b_c", ""])
refs = st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, sep, rest: f"{k}{sep}{rest}", kinds, st.sampled_from([":", "::", "", ":~"]),
              st.text(max_size=40)),
    st.sampled_from(["~nosuchuser_gc/x.pth", "esrgan:~nosuchuser_gc/x.pth", "a" * 5000, "esrgan:" + "b" * 5000,
                     "x\x00y.onnx", "onnx:\x00", "/", ".", "..", "esrgan:/", "module:", "module:os:getcwd"]),
)


@FUZZ
@given(ref=refs)
def test_teacher_kind_parser_raises_only_user_errors(ref):
    from gancompress.teachers import _parse_ref, load_teacher

    try:
        kind, target = _parse_ref(ref)
    except UserError:
        pass
    else:
        assert isinstance(kind, str) and isinstance(target, str)
    if ref.startswith("demo"):  # a real teacher: parsing is what is fuzzed here
        return
    try:
        load_teacher(ref)  # no file exists, and code-running kinds need trust_code
    except UserError:
        pass
