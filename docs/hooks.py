"""MkDocs hook: the reference pages are generated at build time from the code, so they never go stale.

``reference/cli.md`` (the Typer app), ``reference/api.md`` (the OpenAPI schema),
``reference/task-config.md`` and ``reference/settings.md`` (the pydantic models) are added to the
site's files by ``docs/gen_reference.py``; they are not kept in the repository.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_GEN = Path(__file__).resolve().parent / "gen_reference.py"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("maskops_docs_gen_reference", _GEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: Any) -> Files:
    gen = _generator()
    for src_uri, content in gen.pages().items():
        files.append(File.generated(config, src_uri, content=content))
    return files
