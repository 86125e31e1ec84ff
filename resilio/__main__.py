"""``python -m resilio``: the ``resilio`` command."""

from __future__ import annotations

import sys

from resilio.cli import main

if __name__ == "__main__":
    sys.exit(main())
