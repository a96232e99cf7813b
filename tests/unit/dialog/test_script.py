"""Script files: the shipped ones are valid; a broken one is reported with its line numbers."""

from __future__ import annotations

import textwrap

import pytest

from dialog.script import EXPECT_CONTEXT, ScriptError, parse_script, shipped_scripts

MINIMAL = """\
id: demo
name: 演示
variables:
  customer: {fallback: ""}
start: ask
steps:
  ask:
    say: "{customer}您好,满意吗?"
    expect: yes_no
    on: {affirm: bye, deny: bye}
  bye:
    say: 再见
    end: completed
"""


def test_the_shipped_scripts_cover_the_seed_revisit_types():
    scripts = shipped_scripts()
    assert set(scripts) == {"post_service", "new_car", "maintenance_due", "insurance_renewal",
                            "warranty_expiry", "winback", "nps"}
    ps = scripts["post_service"]
    assert [ps.steps[s].expect for s in ("identity", "satisfaction", "improvement", "car_wash", "on_time")] == \
        ["identity", "score5", "text", "yes_no", "yes_no"]
    assert scripts["nps"].steps["nps"].expect == "nps"
    assert scripts["winback"].steps["winback_reason"].expect == "reason"
    assert scripts["maintenance_due"].steps["booking"].expect == "time"
    for script in scripts.values():
        assert not script.warnings, script.warnings
        assert {"opt_out", "wrong_number", "ask_human", "busy_callback"} <= set(script.handlers)


def test_step_contexts_are_nlu_contexts():
    assert {v for v in EXPECT_CONTEXT.values() if v} == {"id", "yn", "sat", "nps", "open", "book", "reason"}


def test_a_minimal_script_parses_and_on_is_not_a_boolean():
    script = parse_script(MINIMAL, "demo.yaml")
    assert script.steps["ask"].on == {"affirm": "bye", "deny": "bye"}
    assert script.steps["bye"].terminal


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(ScriptError) as err:
        parse_script(textwrap.dedent(text), "demo.yaml")
    return err.value.problems


def test_a_broken_step_reference_names_the_line():
    found = problems(MINIMAL.replace("on: {affirm: bye, deny: bye}", "on: {affirm: bye, deny: byee}"))
    assert found == [(10, "step 'ask' goes to unknown step 'byee'")]


def test_unknown_keys_duplicate_keys_and_undeclared_variables():
    text = MINIMAL.replace("    expect: yes_no\n", "    expect: yes_no\n    expct: text\n")
    text = text.replace("say: 再见", "say: 再见{store}")
    found = problems(text)
    assert any(line == 10 and "unknown key 'expct'" in msg for line, msg in found)
    assert any("variable {store} is not declared" in msg for _, msg in found)
    dup = problems(MINIMAL.replace("start: ask\n", "start: ask\nstart: bye\n"))
    assert dup == [(6, "duplicate key 'start' (first at line 5)")]


def test_bad_template_and_missing_fallback():
    text = MINIMAL.replace('"{customer}您好,满意吗?"', '"{customer您好"')
    assert any("broken template" in msg for _, msg in problems(text))
    text = MINIMAL.replace('customer: {fallback: ""}', "customer: {required: false}")
    assert any("give it a fallback" in msg for _, msg in problems(text))


def test_a_step_that_leads_nowhere_and_a_silent_loop():
    text = MINIMAL.replace("    on: {affirm: bye, deny: bye}\n", "    on: {affirm: bye}\n")
    assert any("leads nowhere" in msg for _, msg in problems(text))
    loop = MINIMAL + "  a: {say: 甲, goto: b}\n  b: {say: 乙, goto: a}\n"
    assert any("form a loop that never listens" in msg for _, msg in problems(loop))


def test_branches_must_cover_the_scale():
    text = MINIMAL.replace("""    expect: yes_no
    on: {affirm: bye, deny: bye}""", """    expect: score5
    branches:
      - {min: 4, goto: bye}""")
    found = problems(text)
    assert any("no branch for score(s) [1, 2, 3]" in msg for _, msg in found)


def test_invalid_yaml_and_wrong_values():
    assert problems("id: [unclosed\n")[0][1].startswith("not valid YAML")
    text = MINIMAL.replace("    end: completed", "    end: finished")
    assert any("end must be an outcome" in msg for _, msg in problems(text))
    text = MINIMAL.replace("    expect: yes_no", "    expect: yes_no\n    problem: weather")
    assert any("problem must be a category code" in msg for _, msg in problems(text))


def test_the_file_name_must_match_the_id():
    with pytest.raises(ScriptError, match="differs from the file name"):
        parse_script(MINIMAL, "other.yaml")
