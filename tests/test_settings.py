"""The generation settings' one definition and the helpers built from it: flags, JSON, help."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from diffucode.errors import ConfigError
from diffucode.settings import (SETTINGS_HELP, InfillSettings, add_flags, camel, from_flags, from_json, snake,
                                to_json)


def parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, **kw)
    return p


def test_every_field_has_help_and_one_flag():
    names = [f.name for f in dataclasses.fields(InfillSettings)]
    assert list(SETTINGS_HELP) == names and all(SETTINGS_HELP.values())
    flags = {s for a in parser()._actions for s in a.option_strings} - {"-h", "--help"}
    expected = {"--no-validate" if n == "validate" else "--" + n.replace("_", "-") for n in names}
    assert flags == expected


def test_flags_round_trip_to_settings_and_leave_out_what_was_not_given():
    p = parser()
    assert from_flags(p.parse_args([])) == {}
    given = from_flags(p.parse_args(["--steps", "3", "--temperature", "0.5", "--no-validate", "--exact",
                                     "--search-lengths", "4,8", "--language", "go"]))
    assert given == {"steps": 3, "temperature": 0.5, "validate": False, "exact": True, "search_lengths": (4, 8),
                     "language": "go"}
    InfillSettings(**given).check()


def test_only_skip_notes_and_unset():
    p = parser(only=("temperature", "exact", "steps"), skip=("steps",), notes={"temperature": "; note"},
               unset="engine default if unset")
    helps = {a.dest: a.help for a in p._actions if a.dest != "help"}
    assert list(helps) == ["temperature", "exact"]
    assert helps["temperature"] == SETTINGS_HELP["temperature"] + "; note (engine default if unset)"
    assert helps["exact"] == SETTINGS_HELP["exact"]  # a switch has no value to default
    assert parser()._option_string_actions["--seed"].help == SETTINGS_HELP["seed"] + " (default: 0)"


def test_json_round_trip_with_camel_keys():
    s = InfillSettings(search_lengths=(2, 4), max_new_tokens=9, validate=False)
    raw = to_json(s)
    assert raw["maxNewTokens"] == 9 and raw["searchLengths"] == [2, 4] and "max_new_tokens" not in raw
    assert dataclasses.replace(InfillSettings(), **from_json(raw)) == s
    assert from_json({"max_new_tokens": 3}) == {"max_new_tokens": 3}  # snake_case is accepted too
    assert from_json(None) == {}
    assert all(snake(camel(f.name)) == f.name for f in dataclasses.fields(InfillSettings))


@pytest.mark.parametrize("raw, message", [
    ([], "options must be an object, got list"),
    ({"nope": 1}, "unknown generation setting 'nope' in options; known: steps, strategy"),
    ({"steps": 1.5}, "setting 'steps' must be an integer, got 1.5"),
    ({"steps": True}, "setting 'steps' must be an integer, got True"),
    ({"temperature": "hot"}, "setting 'temperature' must be a number, got 'hot'"),
    ({"validate": 1}, "setting 'validate' must be true or false, got 1"),
    ({"searchLengths": [1, "a"]}, "setting 'searchLengths' must be a list of integers"),
    ({"maxNewTokens": None}, "setting 'maxNewTokens' cannot be null"),
])
def test_json_errors_are_one_line_and_name_the_key(raw, message):
    with pytest.raises(ConfigError) as e:
        from_json(raw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_settings_load_no_torch():
    r = subprocess.run([sys.executable, "-c", "import sys, diffucode.settings; print('torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
