"""A config file that is not valid YAML, named with its line and column.

Snakemake reads a ``--configfile`` itself before the workflow starts and reports broken
YAML without saying where. The Snakefile checks ``config.yaml`` with this module before
Snakemake reads it, ``make`` checks ``CONFIG`` before it calls Snakemake, and
``python -m prunescope.configcheck FILE ...`` checks any file by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prunescope.errors import UserInputError


def check_config_file(path: str | Path) -> None:
    """Raise one sentence naming the file, line and column if ``path`` is not valid YAML.

    A missing file is left to the caller (Snakemake names it); an empty file or one whose
    top level is not a mapping is refused here, since it cannot hold config keys.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        return
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserInputError(f"config file {path} is not UTF-8 text ({err.reason})") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = err.problem or err.context or "unparsable"
        raise UserInputError(
            f"config file {path} is not valid YAML at {where}: {problem}"
        ) from None
    except yaml.YAMLError as err:
        raise UserInputError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        kind = "empty" if loaded is None else f"a {type(loaded).__name__}, not a mapping of keys"
        raise UserInputError(f"config file {path} is {kind}")


def main(paths: list[str]) -> int:
    failed = 0
    for path in paths:
        if not Path(path).is_file():
            print(f"prunescope: config file {path} does not exist", file=sys.stderr)
            failed += 1
            continue
        try:
            check_config_file(path)
        except UserInputError as err:
            print(f"prunescope: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
