"""Generation: `specs/` → `generated/`, in stages, each a module.

`loader` (find, parse, validate; `keywords`) → `ir` (the intermediate model; `naming`) → `models` (pydantic models from
datamodel-code-generator; `polish`) and `render` (the call functions from Jinja2 templates; `calldocs`, `imports`,
`escape`) → black → `tree` (the output tree, written atomically). `pipeline` runs them in order, in worker
processes, with `cache` (the module cache and the incremental run record) and `listing` (fal's listing and
CATALOGUE.md).
"""
