"""test_cases.py: the shared request/response cases (tests/cases/clients.json, its "about"
says the format) through tessera.Client; the C and Node clients run the same file."""
import json

import pytest

import tessera
from daemon import CASES

CASE_LIST = json.loads(CASES.read_text())["cases"]


def substitute(v, saved):
    if isinstance(v, str) and v.startswith("$") and "." in v:
        name, key = v[1:].split(".", 1)
        return saved[name][key]
    if isinstance(v, dict):
        return {k: substitute(x, saved) for k, x in v.items()}
    if isinstance(v, list):
        return [substitute(x, saved) for x in v]
    return v


def matches(want, got):
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and matches(v, got[k]) for k, v in want.items())
    return want == got and type(want) is type(got)


@pytest.mark.parametrize("case", CASE_LIST, ids=[c["name"] for c in CASE_LIST])
def test_case(daemon, case):
    saved = {}
    with tessera.connect(daemon.socket) as c:
        for i, step in enumerate(case["steps"]):
            where = f"step {i + 1} ({step['call']})"
            expect = substitute(step.get("expect", {}), saved)
            try:
                result = c.call(step["call"], substitute(step.get("params", {}), saved))
            except tessera.TesseraError as e:
                assert e.remote and expect.get("error") == e.code, f"{where}: error {e.code}"
                continue
            assert "error" not in expect, f"{where}: succeeded, expected {expect['error']}"
            if "result" in expect:
                assert matches(expect["result"], result), f"{where}: result {result!r}"
            for k in expect.get("keys", []):
                assert k in result, f"{where}: no {k}"
            for k, n in expect.get("lengths", {}).items():
                assert len(result[k]) == n, f"{where}: len({k}) == {len(result[k])}"
            if "save" in step:
                saved[step["save"]] = result
