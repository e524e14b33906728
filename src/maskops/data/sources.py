"""Dataset sources: image folders (one folder per class, possibly nested) and Pascal VOC.

Files are listed without looking at suffixes (the content decides whether a file is an image);
only hidden files (``.DS_Store``) are skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

VOC_IMAGE_DIRS = ("images", "JPEGImages")
VOC_XML_DIRS = ("annotations", "Annotations")


class VocParseError(ValueError):
    """A VOC xml file that cannot be used; the message names the file and the field."""


def list_files(root: str | Path) -> list[Path]:
    """Every non-hidden file under ``root`` (recursive), sorted."""
    root = Path(root)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or not p.is_file():
            continue
        out.append(p)
    return sorted(out)


def folder_label(path: str | Path, root: str | Path, classes: Collection[str] | None = None) -> str | None:
    """Raw label of a file in a folder dataset.

    With ``classes``, the label is the nearest parent folder (below ``root``) whose name is one of
    them, so ``malaria-nih/train/Parasitized/x.png`` is ``Parasitized``. Without, it is the
    immediate parent folder. Files directly in ``root`` (or under no class folder) get ``None``.
    """
    parents = Path(path).relative_to(root).parts[:-1]
    if not parents:
        return None
    if classes is None:
        return parents[-1]
    for name in reversed(parents):
        if name in classes:
            return name
    return None


def is_voc(root: str | Path) -> bool:
    """A folder is a VOC dataset when it has an annotations folder."""
    return any((Path(root) / d).is_dir() for d in VOC_XML_DIRS)


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return root / names[0]


@dataclass(frozen=True)
class VocObject:
    """One annotated box (pixel coordinates as written in the xml)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin


@dataclass(frozen=True)
class VocAnnotation:
    """One parsed VOC xml file."""

    xml_path: str
    filename: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


def _text(node: ET.Element, tag: str, path: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise VocParseError(f"{path}: missing <{tag}> in {where}")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path, where: str) -> float:
    text = _text(node, tag, path, where)
    try:
        return float(text)
    except ValueError as exc:
        raise VocParseError(f"{path}: <{tag}> in {where} must be a number, got {text!r}") from exc


def parse_voc(path: str | Path) -> VocAnnotation:
    """Parse a Pascal VOC annotation file.

    Raises:
        VocParseError: unreadable or malformed xml, or a missing/non-numeric field (named).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise VocParseError(f"{path}: not readable VOC xml: {exc}") from exc
    size = root.find("size")
    if size is None:
        raise VocParseError(f"{path}: missing <size>")
    width = int(_number(size, "width", path, "<size>"))
    height = int(_number(size, "height", path, "<size>"))
    filename_node = root.find("filename")
    filename = (filename_node.text or "").strip() if filename_node is not None else ""
    objects = []
    for i, obj in enumerate(root.findall("object")):
        where = f"<object> #{i}"
        box = obj.find("bndbox")
        if box is None:
            raise VocParseError(f"{path}: missing <bndbox> in {where}")
        difficult = obj.find("difficult")
        objects.append(
            VocObject(
                name=_text(obj, "name", path, where),
                xmin=_number(box, "xmin", path, where),
                ymin=_number(box, "ymin", path, where),
                xmax=_number(box, "xmax", path, where),
                ymax=_number(box, "ymax", path, where),
                difficult=difficult is not None and (difficult.text or "").strip() == "1",
            )
        )
    return VocAnnotation(str(path), filename, width, height, tuple(objects))


@dataclass(frozen=True)
class VocItem:
    """An image and its xml, matched by file stem; either may be missing."""

    stem: str
    image: Path | None
    xml: Path | None


def voc_items(root: str | Path) -> list[VocItem]:
    """Pair the images and xml files of a VOC dataset by stem, sorted by stem."""
    root = Path(root)
    img_dir, xml_dir = _first_dir(root, VOC_IMAGE_DIRS), _first_dir(root, VOC_XML_DIRS)
    images = {p.stem: p for p in list_files(img_dir)} if img_dir.is_dir() else {}
    xmls = {p.stem: p for p in list_files(xml_dir) if p.suffix.lower() == ".xml"} if xml_dir.is_dir() else {}
    return [VocItem(s, images.get(s), xmls.get(s)) for s in sorted(set(images) | set(xmls))]
