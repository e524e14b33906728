"""The documentation follows the code: every CLI command, HTTP route, task-config field and setting is
documented, every page is in the site's navigation, and the README starts with the two commands.

The reference pages are generated at build time by ``docs/gen_reference.py``; these tests walk the
Typer app, the OpenAPI schema and the pydantic models on their own and look for each item in what
the generator writes, so a command group or a route the walker misses fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
import yaml
from starlette.routing import Mount

from maskops.cli import app as cli_app
from maskops.config import Settings, TaskConfig
from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(gen: ModuleType) -> dict[str, str]:
    return dict(gen.pages())


@pytest.fixture
def web_app(tmp_path: Path) -> Any:
    """The service as ``tests/serve`` builds it, never started: no model is loaded."""
    return create_app(ServeSettings(work_dir=tmp_path, models_dir=tmp_path, warm_up=False))


def _commands() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(cli_app)

    def walk(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, f"{path} {name}")

    yield from walk(root, "maskops")


def test_every_cli_command_and_option_is_in_the_reference(pages: dict[str, str]) -> None:
    cli = pages["reference/cli.md"]
    commands = list(_commands())
    assert len(commands) > 20 and any(p == "maskops monitor drift" for p, _ in commands)
    missing = [p for p, _ in commands if not re.search(rf"^#+ `{re.escape(p)}`$", cli, re.M)]
    assert missing == [], f"commands missing from the CLI reference: {missing}"
    for path, cmd in commands:
        section = cli.split(f"`{path}`\n", 1)[1].split("\n#", 1)[0]
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"{opt}" in section, f"{path}: option {opt} missing from the CLI reference"


def test_every_route_is_in_the_api_reference(pages: dict[str, str], web_app: Any) -> None:
    api = pages["reference/api.md"]
    schema = web_app.openapi()
    operations = [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]
    assert len(operations) >= 14
    missing = [f"{m} {p}" for m, p in operations if f"## `{m} {p}`" not in api]
    assert missing == [], f"routes missing from the API reference: {missing}"
    for name in schema.get("components", {}).get("schemas", {}):
        assert f"### `{name}`" in api, f"schema {name} missing from the API reference"


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _routes(inner)
        else:
            yield route


# served by the app but not pages a user visits
NOT_PAGES = {"/openapi.json", "/docs/oauth2-redirect", "/favicon.ico"}


def test_every_page_and_websocket_outside_the_schema_is_described(web_app: Any) -> None:
    schema_paths = set(web_app.openapi()["paths"])
    written = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    paths = {
        r.path
        for r in _routes(web_app.routes)
        if hasattr(r, "path") and not isinstance(r, Mount) and r.path not in schema_paths | NOT_PAGES
    }
    assert {"/", "/live", "/v1/stream"} <= paths
    missing = sorted(p for p in paths if f"`{p}`" not in written)
    assert missing == [], f"pages or sockets not described in docs/: {missing}"


def test_every_task_config_field_is_in_the_reference(pages: dict[str, str], gen: ModuleType) -> None:
    page = pages["reference/task-config.md"]
    models = gen.config_models()
    assert TaskConfig in models
    for model in models:
        section = page.split(f"## `{model.__name__}`\n", 1)[1].split("\n## ", 1)[0]
        for name in model.model_fields:
            assert f"| `{name}` |" in section, (
                f"{model.__name__}.{name} missing from the task config reference"
            )
    for task in ("facemask", "malaria"):
        assert f'--8<-- "configs/tasks/{task}.yaml"' in page


def test_every_setting_is_in_the_reference(pages: dict[str, str]) -> None:
    page = pages["reference/settings.md"]
    for name in {*Settings.model_fields, *ServeSettings.model_fields}:
        assert f"`MASKOPS_{name.upper()}`" in page, (
            f"MASKOPS_{name.upper()} missing from the settings reference"
        )


def test_generated_pages_do_not_depend_on_the_machine(pages: dict[str, str]) -> None:
    for name, text in pages.items():
        assert str(ROOT) not in text, f"{name} shows this checkout's path"


def _nav_files(nav: Any) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_files(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_files(value)


def test_every_page_is_in_the_navigation(pages: dict[str, str]) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(_nav_files(config["nav"]))
    written = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert written | set(pages) == nav, "docs pages and mkdocs.yml nav differ"
    assert config["theme"]["font"] is False  # no font fetched from the internet


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make run", "make test"]
    assert readme.index("make run") < readme.index("##")  # before any section
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_benchmarks_has_one_current_table_per_area() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    areas = [
        "Classifier quality",
        "Classifier latency",
        "Detection mAP",
        "Video",
        "Folder",
        "Serving",
        "Monitoring",
        "Scale-out",
    ]
    assert headings[: len(areas)] == areas
    for area in areas:
        section = text.split(f"## {area}\n", 1)[1].split("\n## ", 1)[0]
        assert "none measured yet" in section.lower() or re.search(r"^\| .*\| date \|$", section, re.M), (
            f"BENCHMARKS {area}: no current table with a date column"
        )


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs not installed (pip install -e '.[dev]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
