"""The generated reference pages of the documentation site.

``docs/hooks.py`` adds them to the site at build time (``mkdocs build`` / ``mkdocs serve``), so they
follow the code and are not kept in the repository. To read them without the site:

    .venv/bin/python docs/gen_reference.py --out work/reference

- ``reference/cli.md``: every command of the Typer app (``maskops.cli.app``) with its usage,
  help, arguments and options, walked through the click command tree;
- ``reference/api.md``: every route of the OpenAPI schema of ``maskops.serve.app.create_app()``
  (the app is built but not started, so no model is loaded);
- ``reference/task-config.md``: every field of the task config (``maskops.config.TaskConfig``
  and the models it nests), with its type, default and description;
- ``reference/settings.md``: every ``MASKOPS_*`` setting (``Settings`` and ``ServeSettings``).

``tests/test_docs.py`` compares the pages against the Typer app, the OpenAPI schema and the models.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
WIDTH = 100  # help text wrapped as on a 100-column terminal, whatever the caller's terminal

HEADER = "<!-- generated at build time by docs/gen_reference.py from the code it reads -->\n\n"


# ---------------------------------------------------------------- CLI


def _cell(text: str) -> str:
    """One table cell of prose: one line, pipes escaped, ``<name>`` shown rather than read as HTML."""
    text = " ".join(text.split()).replace("|", "\\|")
    # keep `code spans` as they are; outside them, angle brackets are text
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _code(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def walk_commands() -> Iterator[tuple[list[str], Any, Any]]:
    """``(path, command, context)`` for the root and every command and group below it, in help order."""
    import typer

    from maskops.cli import app

    root = typer.main.get_command(app)
    ctx_cls = root.context_class

    def walk(cmd: Any, ctx: Any, path: list[str]) -> Iterator[tuple[list[str], Any, Any]]:
        yield path, cmd, ctx
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                sub_ctx = ctx_cls(
                    sub, info_name=name, parent=ctx, terminal_width=WIDTH, max_content_width=WIDTH
                )
                yield from walk(sub, sub_ctx, [*path, name])

    yield from walk(
        root, ctx_cls(root, info_name="maskops", terminal_width=WIDTH, max_content_width=WIDTH), ["maskops"]
    )


def command_paths() -> list[str]:
    """Every command and group, e.g. ``maskops monitor drift``."""
    return [" ".join(path) for path, _, _ in walk_commands()]


def _param_row(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx)
    if record is None:  # hidden
        return ""
    names, help_text = record
    return f"| `{_code(names)}` | {_cell(help_text)} |"


def render_cli() -> str:
    out = [
        HEADER,
        "# Command line reference\n\n",
        "Every command of `maskops`, generated from the Typer app (`maskops.cli`). "
        "`maskops COMMAND --help` prints the same text. Commands exit 0 on success, 1 when the "
        "result is bad (a failed gate, drift, an unreadable file in a batch) and 2 on bad input.\n\n",
    ]
    for path, cmd, ctx in walk_commands():
        depth = min(len(path), 3)
        out.append(f"{'#' * (depth + 1)} `{' '.join(path)}`\n\n")
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        out.append(f"```text\n{ctx.command_path} {usage}\n```\n\n")
        help_text = (cmd.help or "").strip()
        if help_text:
            out.append(help_text.replace("\b\n", "") + "\n\n")
        if hasattr(cmd, "list_commands"):
            subs = cmd.list_commands(ctx)
            if subs:
                out.append("| command | what it does |\n| --- | --- |\n")
                for name in subs:
                    sub = cmd.get_command(ctx, name)
                    out.append(f"| `{name}` | {_cell(sub.get_short_help_str(limit=200))} |\n")
                out.append("\n")
        rows = [r for r in (_param_row(p, ctx) for p in cmd.get_params(ctx)) if r]
        if rows:
            out.append("| argument or option | meaning |\n| --- | --- |\n")
            out.append("\n".join(rows) + "\n\n")
    return "".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- HTTP API


def openapi_schema() -> dict[str, Any]:
    """The service's OpenAPI schema, from an app that is built but never started (no model loads)."""
    from maskops.serve.app import create_app
    from maskops.serve.settings import ServeSettings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServeSettings(work_dir=Path(tmp), models_dir=Path(tmp), warm_up=False))
        return app.openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{_ref_name(schema['$ref'])}`"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_schema_type(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    return f"`{schema.get('type', 'any')}`"


def _body_types(body: dict[str, Any]) -> str:
    parts = []
    for media, content in sorted(body.get("content", {}).items()):
        parts.append(f"`{media}` ({_schema_type(content.get('schema', {}))})")
    return ", ".join(parts)


def route_keys(schema: dict[str, Any]) -> list[str]:
    """``METHOD /path`` for every operation of the schema."""
    return [f"{m.upper()} {p}" for p, ops in schema["paths"].items() for m in ops]


def render_api(schema: dict[str, Any]) -> str:
    out = [
        HEADER,
        "# HTTP API reference\n\n",
        "Generated from the service's OpenAPI schema (`maskops.serve.app.create_app().openapi()`). "
        "The running service serves the same schema at `/openapi.json` and an interactive reference "
        "at `/docs`. The web pages and the WebSocket are described in [the web app](../webapp.md).\n\n",
        schema["info"].get("description", "").strip() + "\n\n",
        "## Routes\n\n| method | path | summary |\n| --- | --- | --- |\n",
    ]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            dep = " (deprecated)" if op.get("deprecated") else ""
            out.append(f"| {method.upper()} | `{path}` | {_cell(op.get('summary', ''))}{dep} |\n")
    out.append("\n")
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            out.append(f"## `{method.upper()} {path}`\n\n")
            if op.get("deprecated"):
                out.append("**Deprecated.**\n\n")
            desc = (op.get("description") or op.get("summary") or "").strip()
            if desc:
                out.append(desc + "\n\n")
            params = op.get("parameters", [])
            if params:
                out.append(
                    "| parameter | in | type | required | description |\n| --- | --- | --- | --- | --- |\n"
                )
                for prm in params:
                    sch = prm.get("schema", {})
                    dep = " (deprecated)" if prm.get("deprecated") else ""
                    out.append(
                        f"| `{prm['name']}` | {prm['in']} | {_schema_type(sch)} | "
                        f"{'yes' if prm.get('required') else 'no'} | "
                        f"{_cell(prm.get('description', sch.get('description', '')))}{dep} |\n"
                    )
                out.append("\n")
            if "requestBody" in op:
                out.append(f"Request body: {_body_types(op['requestBody'])}.\n\n")
            out.append("| status | meaning | body |\n| --- | --- | --- |\n")
            for status, resp in op.get("responses", {}).items():
                out.append(f"| {status} | {_cell(resp.get('description', ''))} | {_body_types(resp)} |\n")
            out.append("\n")
    schemas = schema.get("components", {}).get("schemas", {})
    if schemas:
        out.append("## Schemas\n\n")
        for name, sch in sorted(schemas.items()):
            out.append(f"### `{name}`\n\n")
            if sch.get("description"):
                out.append(sch["description"].strip() + "\n\n")
            props = sch.get("properties", {})
            if props:
                required = set(sch.get("required", []))
                out.append("| field | type | required | description |\n| --- | --- | --- | --- |\n")
                for field, fs in props.items():
                    out.append(
                        f"| `{field}` | {_schema_type(fs)} | {'yes' if field in required else 'no'} | "
                        f"{_cell(fs.get('description', fs.get('title', '')))} |\n"
                    )
                out.append("\n")
            elif "enum" in sch:
                out.append("One of: " + ", ".join(f"`{v}`" for v in sch["enum"]) + ".\n\n")
    return "".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- task config

# what the fields without a description in maskops.config mean
FIELD_NOTES: dict[str, str] = {
    "TaskConfig.name": "the task's name: the registered model's name, the prepared folder and the served file (`models/<name>.onnx`)",
    "TaskConfig.kind": "`detection`: faces found by a detector, then classified (facemask); `classification`: whole images (malaria)",
    "TaskConfig.classes": "class names, in the order of the model's outputs (at least two, unique)",
    "TaskConfig.sources": "the raw datasets feeding the task (see SourceConfig)",
    "TaskConfig.split": "how images are split into train, val and test when a source has no fixed split",
    "TaskConfig.crops": "how boxes are cut into training crops",
    "TaskConfig.train": "training defaults; `maskops train` options and `--config` files override them",
    "TaskConfig.grayscale": "images are read as grey, replicated to three channels, in training and inference (the card records it)",
    "TaskConfig.synthetic": "synthetic masks painted on unmasked training faces (off when unset)",
    "SourceConfig.name": "the source's name, written in the manifest's `source` column",
    "SourceConfig.kind": "`voc`: Pascal VOC XML annotations beside the images; `folder`: one sub-folder per class",
    "SplitConfig.fractions": "share of groups per split; must name train, val and test and sum to 1",
    "SplitConfig.seed": "seed of the group-aware split",
    "SynthConfig.seed": "seed of the placement draw",
    "TrainConfig.model": "backbone name from the model registry (`maskops.models.list_models()`)",
    "TrainConfig.input_size": "square input side in pixels",
    "TrainConfig.epochs": "maximum epochs",
    "TrainConfig.batch_size": "batch size",
    "TrainConfig.lr": "peak learning rate (AdamW)",
    "TrainConfig.schedule": "learning-rate schedule after the warm-up",
    "TrainConfig.warmup_epochs": "linear warm-up, in epochs",
    "TrainConfig.weight_decay": "AdamW weight decay",
    "TrainConfig.patience": "epochs without a better validation figure before early stopping",
    "TrainConfig.seed": "seed of weights initialisation, sampling and augmentation",
    "TrainConfig.num_threads": "torch CPU threads",
    "TrainConfig.class_weighting": "loss weight per class from the training counts",
    "TrainConfig.balanced_sampling": "draw training rows so that classes (and source weights) are balanced",
    "TrainConfig.label_smoothing": "label smoothing of the cross-entropy",
    "TrainConfig.augment": "augmentation overrides: fields of `maskops.data.augment.AugmentConfig` (probabilities and ranges of flip, crop, rotation, downscale, colour, low light, blur, motion blur, JPEG, grey), e.g. `{downscale: 0.5}`",
}


def _nested_models(annotation: Any) -> Iterator[type]:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _nested_models(arg)


def config_models() -> list[type]:
    """``TaskConfig`` and every model nested in it (sources, split, crops, train, ...), in reading order."""
    from maskops.config import TaskConfig

    found: list[type] = [TaskConfig]
    for model in found:  # grows while it is walked: breadth first
        for field in model.model_fields.values():  # type: ignore[attr-defined]
            for nested in _nested_models(field.annotation):
                if nested not in found:
                    found.append(nested)
    return found


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(repr(a).replace("'", '"') for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if hasattr(value, "model_dump"):
        return "(the defaults below)"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{json.dumps(value)}`"


def _constraints(field: Any) -> str:
    out = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >=")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def config_fields() -> list[tuple[str, str]]:
    """``(model name, field name)`` for every field of the task config models."""
    return [(m.__name__, name) for m in config_models() for name in m.model_fields]


def render_task_config() -> str:
    out = [
        HEADER,
        "# Task config reference\n\n",
        "A task is data, not code: `configs/tasks/<name>.yaml` names its kind, classes, data sources, "
        "split rule, crop rule, training defaults and (optionally) synthetic masks. The file is read by "
        "`maskops.config.load_task` and validated by the pydantic models below (unknown keys are an "
        "error naming the file and the field). A task file may start with `extends: <task or path>` and "
        "give only what differs: mappings merge key by key, lists and values replace, and `null` "
        "restores a field's default. Training options can also be overridden by a `--config` YAML "
        "holding `train` fields, and by the options of `maskops train`.\n\n",
        "Generated from `src/maskops/config.py`; the two shipped tasks follow the tables.\n\n",
    ]
    for model in config_models():
        out.append(f"## `{model.__name__}`\n\n")
        doc = (model.__doc__ or "").strip()
        if doc:
            out.append(doc.splitlines()[0] + "\n\n")
        out.append("| field | type | default | constraints | meaning |\n| --- | --- | --- | --- | --- |\n")
        for name, field in model.model_fields.items():
            desc = field.description or FIELD_NOTES.get(f"{model.__name__}.{name}", "")
            out.append(
                f"| `{name}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} | "
                f"{_constraints(field)} | {_cell(desc)} |\n"
            )
        out.append("\n")
    for task, what in (
        ("facemask", "face-mask detection: three sources, synthetic masks, int8 at 80 px"),
        ("malaria", "whole-image classification of cell images, the second example"),
    ):
        out.append(f"## Example: `configs/tasks/{task}.yaml`\n\n{what.capitalize()}.\n\n")
        out.append(f'```yaml\n--8<-- "configs/tasks/{task}.yaml"\n```\n\n')
    return "".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- settings (MASKOPS_* variables)

# defaults computed on the machine (paths of the checkout, core count), shown as the rule that makes them
COMPUTED_DEFAULTS: dict[str, str] = {
    "data_dir": "`../shared/datasets` (beside the checkout)",
    "yunet_path": "`../shared/models/face_detection_yunet_2026may.onnx` when that file exists",
    "models_dir": "`models` of the checkout",
    "config_dir": "`configs` of the checkout",
    "workers": "one per core",
}
SETTING_NOTES: dict[str, str] = {
    "yunet_path": "YuNet face detector weights (ONNX)",
    "host": "where `maskops serve` listens",
    "port": "where `maskops serve` listens",
    "log_level": "logging level of the service",
}


def settings_fields() -> list[str]:
    from maskops.serve.settings import ServeSettings

    return list(ServeSettings.model_fields)


def render_settings() -> str:
    from maskops.config import Settings
    from maskops.serve.settings import ServeSettings

    out = [
        HEADER,
        "# Settings reference\n\n",
        "Every setting is read from a `MASKOPS_*` environment variable (or a `.env` file in the working "
        "directory): the variable is `MASKOPS_` and the field name in capitals, e.g. `MASKOPS_DATA_DIR`. "
        "Lists and mappings are JSON (`MASKOPS_CORS_ORIGINS='[\"https://example.org\"]'`). "
        "Generated from `maskops.config.Settings` (every command) and `maskops.serve.settings.ServeSettings` "
        "(the service). MLflow reads its own `MLFLOW_TRACKING_URI` (default `sqlite:///mlflow.db`, "
        "artifacts in `./mlartifacts`).\n\n",
    ]
    for model, title in ((Settings, "Every command"), (ServeSettings, "The service only")):
        out.append(f"## {title}\n\n")
        out.append("| variable | type | default | meaning |\n| --- | --- | --- | --- |\n")
        for name, field in model.model_fields.items():
            if model is ServeSettings and name in Settings.model_fields:
                continue
            default = COMPUTED_DEFAULTS.get(name) or _default(field)
            desc = field.description or SETTING_NOTES.get(name, "")
            out.append(
                f"| `MASKOPS_{name.upper()}` | {_cell(_type_name(field.annotation))} | {_cell(default)} | "
                f"{_cell(desc)} |\n"
            )
        out.append("\n")
    return "".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- main


def pages() -> dict[str, str]:
    """Site path -> markdown of every generated page."""
    return {
        "reference/cli.md": render_cli(),
        "reference/api.md": render_api(openapi_schema()),
        "reference/task-config.md": render_task_config(),
        "reference/settings.md": render_settings(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pages into")
    args = parser.parse_args(argv)
    for name, text in pages().items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
