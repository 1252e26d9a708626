"""Generation: `specs/` → `generated/`, in stages, each a module.

`loader` (find, parse, validate; `keywords`) → `ir` (the intermediate model; `naming`) → `models` (datamodel-code-generator's
parser reads the schemas; `modelir` describes its models once, typed, and writes the classes from that) and `render`
(the call functions from Jinja2 templates, reading the same description; `calldocs`, `imports`, `escape`) → black,
asked only where needed (`formatting`) → `tree` (the output tree, written atomically). `pipeline` runs them in order, in worker
processes, with `cache` (the module cache and the incremental run record) and `listing` (fal's listing and
CATALOGUE.md).
"""
