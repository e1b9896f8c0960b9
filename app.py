"""``python app.py``: open the dhr-label review GUI (the bundled demo project unless ``--project DIR``).

The GUI lives in :mod:`application.gui.app`; this file only starts it, so that the command works from a checkout.
"""

import sys

from application.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
