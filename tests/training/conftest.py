from __future__ import annotations

import sys
from pathlib import Path

# The helpers module sits beside the tests (no package: `training` is the app package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
