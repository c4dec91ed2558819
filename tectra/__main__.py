"""`python -m tectra` is the `tectra` command."""

import sys

from tectra.cli import main

sys.exit(main())
