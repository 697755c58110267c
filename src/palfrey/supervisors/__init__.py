"""Process supervision (SPEC.md section 5): ``--workers`` (multiprocess.py) and
``--reload`` (reload.py); worker.py is the serving child both of them start.

``ChangeReload`` is the reloader this installation uses, as Uvicorn names it: WatchFiles
when the watchfiles package is installed, else StatReload (polling).
"""

from __future__ import annotations

from palfrey.supervisors.multiprocess import Multiprocess
from palfrey.supervisors.reload import BaseReload, StatReload, WatchFilesReload, reloader_class

ChangeReload: type[BaseReload] = reloader_class()

__all__ = ["BaseReload", "ChangeReload", "Multiprocess", "StatReload", "WatchFilesReload"]
