"""Ends the process at import, as a careless plugin might."""

import sys

sys.exit(3)
