"""Which persona answers a number: listed numbers, dial prefixes, the default, weighted mixes."""

from collections import Counter

import pytest

from campaigns.personas import PersonaError, load_personas


def test_listed_numbers_also_behind_a_pbx_prefix(book):
    assert book.for_number("13900000006").id == "busy"
    assert book.for_number("913900000006").id == "busy"  # "9" for an outside line
    assert book.for_number("1795113900000011").id == "opt_out"  # an IP long-distance prefix
    assert book.for_number("+86 139 0000 0013").id == "answering_machine"


def test_the_demo_mix_draws_by_weight_and_always_the_same_for_a_number(book):
    demo = book.with_default("demo")
    assert demo.for_number("13900000001").id == "satisfied"  # listed numbers keep their persona
    numbers = [f"138{i:08d}" for i in range(4000)]
    drawn = Counter(demo.for_number(n).id for n in numbers)
    weights = dict(book.mixes["demo"])
    total = sum(weights.values())
    for persona, weight in weights.items():
        assert drawn[persona] / len(numbers) == pytest.approx(weight / total, abs=0.025), persona
    assert [demo.for_number(n).id for n in numbers[:50]] == [demo.for_number(n).id for n in numbers[:50]]
    assert demo.for_number("138 0000 0042").id == demo.for_number("13800000042").id  # by digits, not spelling
    assert book.for_number("13800000042").id == "satisfied"  # the file's own default is a persona


def test_unknown_defaults_are_refused_with_the_choices(book):
    with pytest.raises(PersonaError, match="no persona or mix 'everyone'.*mixes: demo"):
        book.with_default("everyone")
    assert book.with_default("busy").for_number("13712345678").id == "busy"


def test_hello_lines_are_rendered_and_machines_do_not_say_hello(book):
    assert book.personas["satisfied"].hello.text == "喂，你好。"
    assert book.personas["satisfied"].hello.audio.is_file()
    assert book.personas["complains_wait"].hello is None  # some people pick up without a word
    assert book.personas["answering_machine"].hello is None


BASE = """
version: 1
questions:
  identity: {context: id}
personas:
  a:
    answers: {identity: 是我。}
  b:
    sip: busy
"""


@pytest.mark.parametrize("extra, message", [
    ("mixes: {a: {b: 1}}", "mixes.a: a persona has this name"),
    ("mixes: {m: {c: 1}}", "mixes.m.c: no such persona"),
    ("mixes: {m: {a: 0}}", "weight must be a positive number"),
    ("mixes: {m: {a: yes}}", "weight must be a positive number"),
    ("mixes: {m: []}", "mixes.m: expected persona -> weight"),
    ("default: m", "default: no persona or mix 'm'"),
])
def test_malformed_mixes_name_the_key(tmp_path, extra, message):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + extra + "\n", encoding="utf-8")
    with pytest.raises(PersonaError, match=message):
        load_personas(path)


def test_a_mix_as_the_files_default(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "mixes: {half: {a: 1, b: 1}}\ndefault: half\n", encoding="utf-8")
    book = load_personas(path)
    drawn = Counter(book.for_number(f"137{i:08d}").id for i in range(1000))
    assert set(drawn) == {"a", "b"} and abs(drawn["a"] - 500) < 60


def test_hello_and_greeting_exclude_each_other(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("    answers: {identity: 是我。}", "    answers: {identity: 是我。}\n    hello: 喂？\n"
                                 "    greeting: 请留言。"), encoding="utf-8")
    with pytest.raises(PersonaError, match="hello .* and greeting .* exclude each other"):
        load_personas(path)
