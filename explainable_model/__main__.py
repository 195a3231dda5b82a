"""Run the command line interface: ``python -m explainable_model score ...``."""

import sys

from explainable_model.cli import main

if __name__ == "__main__":
    sys.exit(main())
