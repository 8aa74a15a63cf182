"""Sweeps and benchmarks print their run lines above the progress bar, and a log file read while
they run shows each line at once (tqdm.write does not flush: with stdout redirected to a file, a
sweep's "Ray cluster:" and "done ..." lines used to appear only when the buffer filled or the
process ended, so a test that waited for them sent its signal after the sweep was over)."""

import io
import os
import sys

from fl.experiments.sweep import say


class _Raw(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)


def test_say__block_buffered_stdout__line_reaches_the_file_at_once(monkeypatch):
    raw = _Raw()
    stdout = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=1 << 16), encoding="utf-8", line_buffering=False)
    monkeypatch.setattr(sys, "stdout", stdout)
    say("Ray cluster: 1 node(s), 2 CPUs -> 2 runs at a time")
    assert bytes(raw.data) == f"Ray cluster: 1 node(s), 2 CPUs -> 2 runs at a time{os.linesep}".encode()
