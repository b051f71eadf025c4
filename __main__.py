"""`python -m korqa` started in the folder that holds a korqa checkout named korqa: Python takes
the checkout folder for the package (a namespace package, without the package's code) and runs
this file. Say so, instead of an error about a missing module. (`python .` in the checkout runs
the command line, as `python -m korqa` does.)"""

import sys
from pathlib import Path

if __spec__ is not None and __spec__.name == "korqa.__main__":
    checkout = Path(__file__).absolute().parent
    print(f"korqa: error: Python took {checkout}, a korqa checkout, for the package korqa: it "
          f"started in {checkout.parent}, the folder holding the checkout. Run it from inside "
          "the checkout or from any other folder (with korqa installed: pip install -e .), or "
          "give the checkout folder another name.", file=sys.stderr)
    sys.exit(2)

from korqa.cli import main  # noqa: E402 - only once it is not the case above

sys.exit(main())
