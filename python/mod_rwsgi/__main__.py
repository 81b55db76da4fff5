"""`python -m mod_rwsgi module-config`: the Apache lines that load this installation."""

import sys

from . import module_config, module_path

USAGE = "usage: python -m mod_rwsgi module-config | module-path"


def main(argv):
    if argv == ["module-config"]:
        sys.stdout.write(module_config())
    elif argv == ["module-path"]:
        print(module_path())
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
