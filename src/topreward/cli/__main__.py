"""`python -m topreward.cli ...`: the same as the `topreward` command."""

import sys

from topreward.cli.main import main

sys.exit(main())
