"""`FalModel`: the base class of every generated model, holding the configuration they share.

- `populate_by_name`: fields whose wire name is not a safe attribute (`from`, `model_config`, `weird-name`) accept
  either spelling.
- `protected_namespaces=()`: fal fields may be called `model_name` or `model_dump`; they are not pydantic's.
- `defer_build`: a model's validator is built on first use, not at import, so importing an endpoint module is cheap.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FalModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, protected_namespaces=(), defer_build=True)
