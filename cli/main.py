"""``mnist-tfx``: one console script, one sub-command per module of this package.

Dispatch only: each command's module is imported when it runs, so heavy imports (TensorFlow, TFX)
happen per command, and ``--help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys

from cli.commands import COMMANDS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
        print(f"usage: mnist-tfx COMMAND [options]   (mnist-tfx COMMAND --help)\n\ncommands:\n{usage}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command = importlib.import_module(f"cli.{argv[0]}")
    return command.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
