"""The ``callcenter`` command: the composition root.

It builds :class:`~callcenter.config.Settings` once, wires the subsystems and hands
them down; nothing imports this package. Sub-commands live in sibling modules and
are loaded lazily so that ``callcenter init`` does not pay for importing torch or
pjsua2 (``_COMMANDS`` maps each command name to ``module:attribute``).
"""

from __future__ import annotations

import importlib
import logging

import click

from callcenter import __version__

# name -> "module:attribute" (module relative to callcenter.cli). One line per command.
_COMMANDS: dict[str, str] = {
    "init": "db:init_command",
    "stores": "stores:stores",
    "import": "dms:import_group",
    "customers": "customers:customers",
    "users": "users:users",
    "campaign": "campaigns:campaign",
    "models": "speech:models",
    "transcribe": "speech:transcribe",
    "asr": "speech:asr_group",
    "call": "telephony:call_command",
    "dial": "dial:dial_command",
    "worker": "telephony:worker_command",
    "simulate": "simulate:simulate_command",
    "serve": "web:serve",
    "console": "web:console",
    "nlu": "nlp:nlu_command",
    "classify": "nlp:classify_command",
    "classifier": "nlp:classifier_group",
    "dialog": "nlp:dialog_group",
    "demo": "demo:demo",
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when it is used."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def invoke(self, ctx: click.Context):
        """Run the sub-command; an unexpected error becomes one clear line, not a traceback.

        The traceback goes to the log at DEBUG level (CALLCENTER_LOG_LEVEL=debug shows it).
        """
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            logging.getLogger("callcenter.cli").debug("command failed", exc_info=True)
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise click.ClickException(f"{type(exc).__name__}: {detail[0] if detail else 'no detail'} "
                                       "(CALLCENTER_LOG_LEVEL=debug shows the traceback)") from exc

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy:
            module_name, attr = self._lazy[name].split(":")
            module = importlib.import_module(f"callcenter.cli.{module_name}")
            return getattr(module, attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="callcenter")
def main() -> None:
    """Intelligent call center for car dealerships (智能回访呼叫中心)."""
