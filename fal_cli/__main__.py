"""Entry point of the `fal-typed` console script and of `python -m fal_cli`."""

from __future__ import annotations

from fal_cli.app import cli


def main() -> None:
    cli.main(prog_name="fal-typed")


if __name__ == "__main__":
    main()
