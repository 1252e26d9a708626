"""The files inside an endpoint's output, and saving them with the runtime's own atomic downloads (`FalFile.save`).

Several outputs often share a name (fal names every image `image.jpg`), so each file gets a distinct target
(`image.jpg`, `image-2.jpg`, ...) before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fal_runtime import AsyncClient, Client
from fal_runtime.files import FalFile


def output_files(value: Any) -> list[FalFile]:
    """Every `FalFile` in an output, at any depth, in field order."""
    if isinstance(value, FalFile):
        return [value]
    if isinstance(value, BaseModel):
        return [f for name in type(value).model_fields for f in output_files(getattr(value, name))]
    if isinstance(value, (list, tuple)):
        return [f for item in value for f in output_files(item)]
    if isinstance(value, dict):
        return [f for item in value.values() for f in output_files(item)]
    return []


def targets(files: list[FalFile], directory: Path) -> list[Path]:
    """A distinct path in `directory` for each file, from its safe name; later duplicates get `-2`, `-3`, ..."""
    taken: set[str] = set()
    paths = []
    for file in files:
        name = file.safe_name()
        stem, suffix = Path(name).stem, Path(name).suffix
        n = 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}{suffix}"
        taken.add(name)
        paths.append(directory / name)
    return paths


def save_all(output: BaseModel, directory: Path, client: Client) -> list[Path]:
    files = output_files(output)
    return [file.save(path, client=client) for file, path in zip(files, targets(files, directory), strict=False)]


async def save_all_async(output: BaseModel, directory: Path, client: AsyncClient) -> list[Path]:
    files = output_files(output)
    return [
        await file.save_async(path, client=client) for file, path in zip(files, targets(files, directory), strict=False)
    ]


def output_json(output: BaseModel) -> Any:
    """The output as fal sent it: wire names, JSON types."""
    return output.model_dump(mode="json", by_alias=True)
