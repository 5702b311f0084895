"""Help in plain words: arguments shown by their name, without type labels like `<str>`.

Typer labels every argument with its Python type and wraps required ones in braces in
the usage line; `aliasflow status --help` should read like a man page instead. Options get
their words from `metavar` and `help`, and `rich_markup_mode=None` keeps flags unlabelled.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand


class PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: object) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return f"{name}..." if self.nargs != 1 else name


class PlainCommand(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.__class__ = PlainArgument
