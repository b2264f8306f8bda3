"""``python -m nni_ext`` runs the ``nni-ext`` command."""
import sys

from .cli import main

sys.exit(main())
