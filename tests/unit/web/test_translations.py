"""Chinese is the default language: every message of the console has a translation, and the
compiled catalog the application loads says the same as the .po file."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[3] / "web"
CATALOG = WEB / "translations" / "zh" / "LC_MESSAGES"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None, "N_": None}
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]


def _source_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(WEB), METHODS, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_has_a_chinese_translation():
    catalog = read_po((CATALOG / "messages.po").open("rb"))
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(_source_messages() - set(translated))
    assert not missing, f"{len(missing)} messages without a zh translation (see docs/console.md): {missing[:10]}"


def test_the_compiled_catalog_matches_the_po_file():
    po = {m.id: m.string for m in read_po((CATALOG / "messages.po").open("rb")) if m.id and m.string}
    mo = {m.id: m.string for m in read_mo((CATALOG / "messages.mo").open("rb")) if m.id}
    assert mo == po, "messages.mo is stale: run pybabel compile -d web/translations (docs/console.md)"


def test_placeholders_survive_translation():
    import re

    for m in read_po((CATALOG / "messages.po").open("rb")):
        if m.id and m.string:
            assert sorted(re.findall(r"%\(\w+\)[sd]", m.id)) == sorted(re.findall(r"%\(\w+\)[sd]", m.string)), m.id
