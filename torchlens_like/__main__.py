"""``python -m torchlens_like ...`` runs the ``tll`` command line (so ``torchrun -m torchlens_like`` works)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
