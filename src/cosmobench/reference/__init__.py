"""Published timings shipped with the package, for ``cosmobench compare --reference``.

``arcelin2021`` holds the V100 and IPU numbers of Arcelin (2021), "Comparison of Graphcore
IPUs and Nvidia GPUs for cosmology applications" (arXiv:2106.02465), Figures 2-4: seconds for
100 epochs of 8,000 images against batch size for the shape CNN and BNN, and seconds to
generate n galaxies.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from cosmobench.errors import CosmobenchError

__all__ = ["REFERENCES", "load_reference"]

REFERENCES = ("arcelin2021",)
_SECTIONS = {"train_shape_cnn": "batch_size", "train_shape_bnn": "batch_size", "generate": "n"}


def load_reference(name: str | Path = "arcelin2021") -> dict[str, Any]:
    """Load a reference set of timings by name, or from a JSON file in the same format.

    Arguments:
        name: ``"arcelin2021"`` (shipped) or a path to a JSON file with sections
            ``train_shape_cnn``, ``train_shape_bnn`` (``batch_size``, ``gpu_s``, ``ipu_s``) and
            ``generate`` (``n``, ``gpu_s``, ``ipu_s``); any section may be missing.

    Returns:
        The parsed JSON dict, with every present section checked for matching lengths.
    """
    if str(name) in REFERENCES:
        text = resources.files(__name__).joinpath(f"{name}.json").read_text()
        where = f"reference {name}"
    else:
        path = Path(name)
        if not path.is_file():
            raise CosmobenchError(
                f"reference must be one of {', '.join(REFERENCES)} or a JSON file; got {name!r}"
            )
        text, where = path.read_text(), f"reference file {path}"
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else "not text"
        raise CosmobenchError(f"{where} is not valid JSON ({why})") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(k), dict) for k in _SECTIONS):
        raise CosmobenchError(
            f"{where} is not a reference of published timings (it needs at least one of the "
            f"sections {', '.join(_SECTIONS)}); give {' or '.join(REFERENCES)}, none, or such "
            "a file"
        )
    for section, axis in _SECTIONS.items():
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict) or not all(
            isinstance(block.get(k), list) for k in (axis, "gpu_s", "ipu_s")
        ):
            raise CosmobenchError(f"{where}: section {section} needs lists {axis}, gpu_s, ipu_s")
        lengths = {len(block.get(k, ())) for k in (axis, "gpu_s", "ipu_s")}
        if len(lengths) != 1:
            raise CosmobenchError(
                f"{where}: section {section} needs {axis}, gpu_s and ipu_s of equal length"
            )
    return data
