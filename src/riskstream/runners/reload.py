"""Hot reload of the spec file between batches, shared by the embedded and the Spark runner."""

from __future__ import annotations

from pathlib import Path

from riskstream.errors import SpecError
from riskstream.spec.load import load_spec
from riskstream.spec.model import PipelineSpec


class SpecWatcher:
    """Notices a changed spec file and loads it, if only what may change live has changed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime = path.stat().st_mtime_ns if path else 0

    def changed(self, running: PipelineSpec) -> PipelineSpec | None:
        """The edited spec, or None when the file is unchanged (or unreadable right now).

        Raises SpecError when the edit is invalid or changes what only a restart may; the
        edit is then not looked at again until the file changes once more.
        """
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        new = load_spec(self.path)
        check_reloadable(running, new)
        return new


def check_reloadable(old: PipelineSpec, new: PipelineSpec) -> None:
    """SpecError when ``new`` changes more than rules, lists and models (a restart's job)."""
    for part in ("name", "event", "tiers", "retention", "metrics"):
        if getattr(old, part) != getattr(new, part):
            raise SpecError(
                part, "changed; only rules and lists reload live (restart to change the rest)"
            )
