"""Stage 5: the output tree on disk. What the generator writes, read back, and replaced atomically.

A whole tree is written beside the old one and swapped in (unchanged files hard-linked); a tree known to be the last
run's gets only its changed files rewritten, each through a temporary file and a rename. Nothing here decides what
a module holds: `pipeline` does, and hands over finished text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

TYPED_MARKER = "py.typed"
CATALOGUE = "CATALOGUE.md"  # the page listing every endpoint (`codegen.generation.listing`)


def is_generated(name: str) -> bool:
    """Whether a file name is one the generator writes (anything else in the tree, like `__pycache__`, is not)."""
    return name.endswith(".py") or name in (TYPED_MARKER, CATALOGUE)


def read_tree(root: Path) -> dict[str, str] | None:
    if not root.is_dir():
        return None
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if is_generated(p.name) and "__pycache__" not in p.parts and p.is_file()
    }


class TreeFiles(Mapping[str, str]):
    """A tree's files by relative path: those rendered by this run, and those `kept` on disk as the last run wrote
    them, read only when asked for. A run that changes one spec then neither renders nor reads the other 1,300
    modules."""

    def __init__(self, root: Path, rendered: dict[str, str], kept: set[str]) -> None:
        self.root = root
        self.rendered = rendered
        self.kept = kept

    def __getitem__(self, rel: str) -> str:
        if rel in self.rendered:
            return self.rendered[rel]
        if rel not in self.kept:
            raise KeyError(rel)
        return (self.root / rel).read_text(encoding="utf-8")

    def __contains__(self, rel: object) -> bool:  # Mapping's would read the file
        return rel in self.rendered or rel in self.kept

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self.rendered, *self.kept}))

    def __len__(self) -> int:
        return len({*self.rendered, *self.kept})


def write_tree(root: Path, files: Mapping[str, str]) -> bool:
    """Replace `root` with exactly `files`; returns False (touching nothing) when it already holds them.

    The new tree is written beside the old one and swapped in with renames, so a failure while writing leaves
    the old tree as it was. Files that did not change are hard-linked from the old tree rather than rewritten.
    """
    current = {rel: content_hash(text) for rel, text in (read_tree(root) or {}).items()}
    wanted = {rel: content_hash(text) for rel, text in files.items()}
    if current == wanted:
        return False
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if current.get(rel) == wanted[rel] and _linked(root / rel, target):
                continue
            target.write_text(content, encoding="utf-8")
        if root.exists():
            root.rename(old)
        tmp.rename(root)
    except BaseException:
        if old.exists() and not root.exists():
            old.rename(root)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return True


def _linked(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: write instead
        return False
    return True


def update_tree(root: Path, files: Mapping[str, str], hashes: dict[str, str], current: dict[str, str]) -> bool:
    """Bring a tree whose content hashes are `current` to `files`: write the files that differ (each to a temporary
    beside it, then renamed), delete the ones that went away. Every spec was validated before this, so nothing here
    depends on input; an interruption leaves whole files, and the next run's stamp check repairs the rest."""
    stale = [rel for rel in files if current.get(rel) != hashes[rel]]
    gone = [rel for rel in current if rel not in files]
    for rel in stale:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(files[rel], encoding="utf-8")
        tmp.replace(target)
    for rel in gone:
        (root / rel).unlink(missing_ok=True)
        for parent in (root / rel).parents:
            if parent == root or any(parent.iterdir()):
                break
            parent.rmdir()
    return bool(stale or gone)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tree_stats(root: Path) -> dict[str, list[int]]:
    """Each generated file's size and modification time: any edit, addition or removal changes this."""
    stats: dict[str, list[int]] = {}
    top = os.fspath(root)
    for directory, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        prefix = directory[len(top) :].lstrip(os.sep).replace(os.sep, "/")  # no os.path.relpath: 1,300 calls cost 0.1 s
        for name in names:
            if is_generated(name):
                info = os.stat(os.path.join(directory, name))
                stats[f"{prefix}/{name}" if prefix else name] = [info.st_size, info.st_mtime_ns]
    return dict(sorted(stats.items()))
