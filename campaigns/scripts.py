"""Which dialog scripts a campaign may name, and the default script of each campaign type.

Scripts themselves belong to the dialog robot (``dialog/``): the shipped ones are the YAML
files in ``dialog/scripts/``, and a deployment adds or overrides its own in
``<data dir>/scripts/``. A script id is the file name without ``.yaml``. This module only
lists them (it never parses a script), so a campaign naming a script that does not exist is
refused when it is created rather than failing on every call. Runs on the caller's thread.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from callcenter.storage.models import CampaignType

SCRIPT_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SUFFIXES = (".yaml", ".yml")

# The script each campaign type runs unless the campaign names another one. ``custom``
# campaigns have no default: they must name a script.
DEFAULT_SCRIPT: dict[CampaignType, str] = {
    CampaignType.POST_SERVICE: "post_service",
    CampaignType.NEW_CAR: "new_car",
    CampaignType.MAINTENANCE_DUE: "maintenance_due",
    CampaignType.INSURANCE_RENEWAL: "insurance_renewal",
    CampaignType.WARRANTY_EXPIRY: "warranty_expiry",
    CampaignType.WINBACK: "winback",
    CampaignType.NPS: "nps",
}


def script_dirs(data_dir: Path | None) -> list[Path]:
    """Where scripts are looked for: the dialog package's ``scripts/``, then the data directory's."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec("dialog")  # locate without importing the dialog package
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) / "scripts" for p in spec.submodule_search_locations)
    if data_dir is not None:
        dirs.append(Path(data_dir) / "scripts")
    return dirs


def available_scripts(data_dir: Path | None) -> dict[str, Path]:
    """Script id -> file, later directories overriding earlier ones."""
    found: dict[str, Path] = {}
    for directory in script_dirs(data_dir):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and SCRIPT_ID_RE.match(path.stem):
                found[path.stem] = path
    return found


def check_script(script: str, known: set[str] | frozenset[str]) -> str:
    """Return ``script`` if it is a known script id.

    Raises:
        ValueError: malformed id, or no such script (the message lists the known ones).
    """
    if not SCRIPT_ID_RE.match(script or ""):
        raise ValueError(f"script {script!r}: ids are lower-case letters, digits and _ (e.g. post_service)")
    if script not in known:
        listing = ", ".join(sorted(known)) if known else "none installed (dialog/scripts/ or <data dir>/scripts/)"
        raise ValueError(f"unknown script {script!r} (available: {listing})")
    return script
