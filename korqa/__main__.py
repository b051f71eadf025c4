"""`python -m korqa …` runs the command line (as on machines where korqa is not installed)."""

import sys

from korqa.cli import main

sys.exit(main())
