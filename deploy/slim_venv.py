"""Slim the serving venv in the image's build stage (deploy/Dockerfile), keeping every function.

Run by the build stage's Python on the venv it has just installed:
``python3 deploy/slim_venv.py /opt/venv``. What goes, and why it is not needed at run time:

- ``tests`` folders of the installed packages (numpy's and scipy's own test suites);
- C/C++/Cython sources and headers (``*.h``, ``*.c``, ``*.pxd``, ...) and type stubs (``*.pyi``):
  read by compilers and type checkers, never by the interpreter;
- ``onnxruntime/capi/libonnxruntime.so.*``: ONNX Runtime's C API library. The Python binding
  (``onnxruntime_pybind11_state``) links the runtime statically and does not load it;
- ``onnxruntime/transformers``: ONNX Runtime's optimiser for transformer models, a tool that
  nothing in maskops calls;
- ``cv2/data`` except the one Haar cascade the haar fallback detector reads
  (``haarcascade_frontalface_default.xml``, maskops.detect.detectors);
- debug symbols of the packages' own extension modules (``strip --strip-unneeded``). The
  libraries vendored by auditwheel (``<package>.libs/``) are left as they are: patchelf has
  rewritten their headers, and a stripped copy fails to load ("ELF load command address/offset
  not page-aligned");
- identical vendored libraries in two packages (numpy.libs and scipy.libs carry the same
  libgfortran) become one file with two hard links;
- the byte-code caches of everything, then byte code again for the modules ``maskops serve``
  imports before it answers ``/ready`` (the image runs as a user who cannot write the venv, so
  a module without a cache is compiled at every start; the rest compile in memory on first use).

Logs the venv's size before and after. Standard library only: it runs before anything else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("slim_venv")

DROP_DIRS = {"tests", "__pycache__"}
DROP_SUFFIXES = {".h", ".hpp", ".c", ".cpp", ".pyx", ".pxd", ".pxi", ".pyi"}
KEEP_CASCADES = {"haarcascade_frontalface_default.xml", "__init__.py"}
# what `maskops serve` imports before /ready answers (byte code kept for these)
STARTUP_IMPORTS = [
    "maskops.cli",
    "maskops.serve.app",
    "onnxruntime",
    "cv2",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.lifespan.on",
    "uvicorn.logging",
]


def tree_size(root: Path) -> int:
    """Bytes under ``root``, each hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"slim_venv: no lib/python3*/site-packages under {venv}")
    return found[0]


def drop_files(site: Path) -> None:
    for dirpath, dirs, files in os.walk(site):
        for name in list(dirs):
            if name in DROP_DIRS:
                shutil.rmtree(os.path.join(dirpath, name))
                dirs.remove(name)
        for name in files:
            if os.path.splitext(name)[1] in DROP_SUFFIXES:
                os.remove(os.path.join(dirpath, name))
    for lib in (site / "onnxruntime" / "capi").glob("libonnxruntime.so*"):
        lib.unlink()
    shutil.rmtree(site / "onnxruntime" / "transformers", ignore_errors=True)
    cascades = site / "cv2" / "data"
    if cascades.is_dir():
        for path in cascades.iterdir():
            if path.name not in KEEP_CASCADES:
                path.unlink()


def strip_extensions(site: Path) -> None:
    strip = shutil.which("strip")
    if strip is None:
        log.warning("no `strip` (binutils) here: extension modules keep their symbols")
        return
    objects = [
        str(path)
        for path in site.rglob("*.so*")
        if path.is_file() and not any(part.endswith(".libs") for part in path.relative_to(site).parts)
    ]
    subprocess.run([strip, "--strip-unneeded", *objects], check=True)


def link_duplicates(site: Path) -> None:
    by_digest: dict[str, Path] = {}
    for libs in sorted(site.glob("*.libs")):
        for path in sorted(libs.iterdir()):
            if not path.is_file() or path.is_symlink():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            first = by_digest.setdefault(digest, path)
            if first != path:
                path.unlink()
                os.link(first, path)


def compile_startup(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
    subprocess.run(
        [str(venv / "bin" / "python"), "-W", "ignore", "-c", code, *STARTUP_IMPORTS], check=True, env=env
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: slim_venv.py VENV")
    logging.basicConfig(level=logging.INFO, format="slim_venv: %(message)s")
    venv = Path(argv[0])
    site = site_packages(venv)
    before = tree_size(venv)
    drop_files(site)
    strip_extensions(site)
    link_duplicates(site)
    compile_startup(venv)
    log.info("%s: %.0f MB -> %.0f MB", venv, before / 1e6, tree_size(venv) / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
