"""The numbers of every worker of one server, summed at scrape time.

Each worker of `kairos serve --workers N` writes its own numbers into the directory the
server gives its workers (`KAIROS_METRICS_DIR`), as prometheus-client's multiprocess
files: one mmap file per kind and process, named with the pid. A worker copies its
plain numbers there about once a second, off the request path, and again when it is
scraped and when it stops; a scrape on any worker merges every file with
`MultiProcessCollector`: counters and histograms summed, each gauge by its mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# One sample as the files hold it: the file's kind (`counter`, `histogram`,
# `gauge_<mode>`), the sample's name, its label names and values, its value.
Entry = tuple[str, str, tuple[str, ...], tuple[str, ...], float]


class Shareable(Protocol):
    """A metric whose samples can be written to the shared files."""

    name: str
    documentation: str

    def entries(self) -> Iterator[Entry]: ...


class SharedFiles:
    """This process's files in the shared directory, and the merge of everyone's."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self._files: dict[str, MmapedDict] = {}
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}
        self._written: dict[tuple[str, str], float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]

    def write(self, metrics: Iterable[Shareable]) -> None:
        """Copy the current numbers of `metrics` into this process's files (only those
        that changed since the last copy)."""
        for metric in metrics:
            for kind, sample, labelnames, values, value in metric.entries():
                key = self._key(metric, sample, labelnames, values)
                if self._written.get((kind, key)) == value:
                    continue
                self._file(kind).write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
                self._written[kind, key] = value

    def close(self) -> None:
        for file in self._files.values():
            file.close()  # type: ignore[no-untyped-call]
        self._files.clear()

    def _key(
        self, metric: Shareable, sample: str, labelnames: tuple[str, ...], values: tuple[str, ...]
    ) -> str:
        cached = self._keys.get((sample, values))
        if cached is None:
            # The JSON key is dearer than the write: made once per sample.
            names, doc = list(labelnames), metric.documentation
            cached = mmap_key(metric.name, sample, names, list(values), doc)
            self._keys[sample, values] = cached
        return cached

    def _file(self, kind: str) -> MmapedDict:
        file = self._files.get(kind)
        if file is None:
            path = self.directory / f"{kind}_{self.pid}.db"
            file = self._files[kind] = MmapedDict(str(path))  # type: ignore[no-untyped-call]
        return file


def bucket_label(bound: float) -> str:
    """A histogram bound as Prometheus spells it in `le`."""
    return "+Inf" if bound == float("inf") else repr(bound)


def mark_dead(directory: Path, pid: int) -> None:
    """Drop the live gauges of a worker that is gone (its counters still count)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
