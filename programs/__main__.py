"""Entry for `pulumi up -s <stack>` on the project (Pulumi.yaml `main: programs/`)."""

import os
import sys

# Pulumi runs this file by path; make the project root importable so `programs.*` resolves even
# when the distribution is not installed into the virtualenv.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from programs.main import run  # noqa: E402

run()
