"""`python -m korqa.cli …` runs the command line, as `python -m korqa …` does."""

import sys

from korqa.cli import main

sys.exit(main())
