"""Stop strings over streamed text: a stop string may span deltas, so text that could begin one is held
back until the next delta settles it.

Pure: knows text, not tokens, requests or HTTP. The caller ends the request when a stop string is found.
"""

from __future__ import annotations


class StopStrings:
    def __init__(self, stops: tuple[str, ...] = ()):
        if any(not stop for stop in stops):
            raise ValueError("stop strings must not be empty")
        self._stops = stops
        self._held = ""  # released text's tail that is a proper prefix of some stop string

    def push(self, text: str) -> tuple[str, bool]:
        """The text that can be released now and whether the output ends here: everything before the earliest
        stop string (which is dropped, as is all after it), or everything but a tail that could begin one."""
        buffer = self._held + text
        found = [at for stop in self._stops if (at := buffer.find(stop)) >= 0]
        if found:
            self._held = ""
            return buffer[:min(found)], True
        keep = max((_overlap(buffer, stop) for stop in self._stops), default=0)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep], False

    def flush(self) -> str:
        """What is still held back, once the output ended without a stop string."""
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
