"""Writes to wavelink's and discord.py's private attributes live in commands/recovery.py (issue: one home for
recovery), where each names the upstream behaviour it works around. This scans the production code for them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = "commands/recovery.py"
# VersionedQueue swaps wavelink.Queue's internal list for one that counts changes (snapshot bookkeeping, not
# recovery), and gateway_compression picks discord.py's gateway decoder (memory, not recovery); each module's
# docstring names the gap and recovery.py's docstring points to both.
ALSO_ALLOWED = {"utils/versioned_queue.py", "utils/gateway_compression.py"}
MUTATORS = {"pop", "clear", "append", "extend", "insert", "remove", "update", "setdefault", "popitem", "add",
            "discard"}


def _production_files() -> list[Path]:
    files = [ROOT / "bot.py", ROOT / "process_manager.py", ROOT / "register_commands.py"]
    for folder in ("commands", "utils"):
        files += sorted((ROOT / folder).glob("*.py"))
    return files


def _private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def _library_classes(tree: ast.Module) -> set[str]:
    """Classes of this module that derive from a wavelink or discord.py class (directly or through another)."""
    found: set[str] = set()
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    changed = True
    while changed:
        changed = False
        for cls in classes:
            if cls.name in found:
                continue
            for base in cls.bases:
                text = ast.unparse(base)
                if text.startswith(("wavelink.", "discord.")) or text in found or text == "MusicPlayer":
                    found.add(cls.name)
                    changed = True
    return found


def private_writes(path: Path) -> list[str]:
    """`obj._x = ...`, `obj._x += ...`, `obj._x.pop(...)` on another object, and `self._x = ...` inside a class
    derived from wavelink or discord.py (where `_x` may be the library's own)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    library = _library_classes(tree)
    hits: list[str] = []

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.ClassDef) else cls
            targets: list[ast.expr] = []
            if isinstance(child, ast.Assign):
                targets = list(child.targets)
            elif isinstance(child, (ast.AugAssign, ast.AnnAssign)):
                targets = [child.target]
            elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                  and child.func.attr in MUTATORS and isinstance(child.func.value, ast.Attribute)):
                targets = [child.func.value]
            for target in targets:
                for attr in [t for t in ast.walk(target) if isinstance(t, ast.Attribute)]:
                    if not _private(attr.attr):
                        continue
                    owner = ast.unparse(attr.value)
                    if owner in ("self", "cls") and cls not in library:
                        continue  # our own class's own attribute
                    hits.append(f"{path.relative_to(ROOT)}:{attr.lineno} {ast.unparse(attr)}")
            visit(child, inner)

    visit(tree, None)
    return hits


def test_private_writes_of_the_libraries_are_in_the_recovery_module() -> None:
    elsewhere = [hit for path in _production_files() for hit in private_writes(path)
                 if str(path.relative_to(ROOT)) not in {HOME, *ALSO_ALLOWED}]
    assert elsewhere == []


def test_the_scan_finds_the_writes_recovery_makes() -> None:
    """The scan above can fail: it sees the workarounds that recovery.py does make."""
    hits = private_writes(ROOT / HOME)
    assert any("_last_position" in h for h in hits)
    assert any("node._players" in h for h in hits)
    assert any("player._guild" in h for h in hits)
