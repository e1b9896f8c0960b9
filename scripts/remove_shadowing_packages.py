"""Remove top-level packages that a dependency's wheel installs under names of this project's own packages.

sam2 1.1.0 installs its video fine-tuning code as a top-level ``training`` package, which would shadow this
project's ``training`` (an editable install is found after site-packages). SAM 2 inference never imports it. Run by
``scripts/install.sh`` with the virtual environment's interpreter; prints what it removed.
"""

from __future__ import annotations

import shutil
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

OWN_PACKAGES = ("dhr", "core", "models", "annotate", "training", "application")
SUSPECTS = ("sam2",)


def main() -> None:
    for name in SUSPECTS:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        tops = {Path(str(f)).parts[0] for f in dist.files or ()}
        for package in sorted(tops & set(OWN_PACKAGES)):
            folder = Path(dist.locate_file(package))
            if folder.is_dir():
                shutil.rmtree(folder)
                print(f"removed {folder} (installed by {name}; it would shadow this project's {package!r})")


if __name__ == "__main__":
    main()
