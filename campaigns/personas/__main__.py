"""``python -m campaigns.personas lines|check [FILE]``: render input lines, or check a personas file."""

import sys

from campaigns.personas import main

sys.exit(main())
