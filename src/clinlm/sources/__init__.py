"""One adapter per native dataset layout.

An adapter is a generator function `read(root: Path) -> Iterator[Record | Reject]` in its own
module. It reads the dataset exactly as its publisher lays it out, yields one `Record` per
recording (or report) and one `Reject` per file or row it could not use, so that records +
rejects account for every input. It reads headers, not whole signals, to index a folder.

`ADAPTERS` maps the name used on the command line (`clinlm ingest NAME ...`) to
"module:function"; modules are imported only when used.
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterator

ADAPTERS: dict[str, str] = {
    "circor": "clinlm.sources.circor:read",
    "physionet2016": "clinlm.sources.physionet2016:read",
    "icbhi": "clinlm.sources.icbhi:read",
    "sprsound": "clinlm.sources.sprsound:read",
    "bmdhs": "clinlm.sources.bmdhs:read",
    "coughvid": "clinlm.sources.coughvid:read",
    "coswara": "clinlm.sources.coswara:read",
    "openi-csv": "clinlm.sources.openi_csv:read",
    "openi-xml": "clinlm.sources.openi_xml:read",
    "mimic-cxr": "clinlm.sources.mimic_cxr:read",
    "ptbxl": "clinlm.sources.ptbxl:read",
    "wfdb": "clinlm.sources.wfdb_folder:read",
    "physionet2017": "clinlm.sources.physionet2017:read",
    "physionet2021": "clinlm.sources.physionet2021:read",
    "cpsc2021": "clinlm.sources.cpsc2021:read",
    "ecg-images": "clinlm.sources.ecg_images:read",
}


def get_adapter(name: str) -> Callable[..., Iterator]:
    if name not in ADAPTERS:
        raise KeyError(f"unknown adapter {name!r}; choose one of: {', '.join(sorted(ADAPTERS))}")
    module, func = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), func)
