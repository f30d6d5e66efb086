"""Message and prompt texts from jinja2 templates: built-in ones, overridable per deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2


class Templates:
    """Renders ``<name>.j2``; a file of the same name in ``override_dir`` wins over the built-in one.

    Plain text (calls, SMS, the text of an email) is not escaped; ``*.html.j2`` (an email's HTML, the action
    links' pages) is autoescaped."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.PackageLoader("gateway", "templates"))
        # Undefined names are errors.
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )

    def render_string(self, source: str, **context: Any) -> str:
        """Render template text from the config (e.g. a hotline greeting)."""
        return " ".join(self._env.from_string(source).render(**context).split())

    def render(self, name: str, **context: Any) -> str:
        text = self._env.get_template(f"{name}.j2").render(**context)
        return " ".join(text.split()) if name.endswith("_call") else text.strip()
