"""A feed's file read in a forked process, ahead of the run that writes what it says.

Reading, parsing and mapping the records took half of a monthly reload (profiled: RPPS 49 %, a regional extract
54 %), in the process that then assigns identities, finds the repeats and writes, one after the other on one core.
``read_ahead`` forks a reader that runs ``feed.read`` and sends the items through a pipe, a batch's worth at a time:
the reader prepares the next batch while the run writes this one, and waits for it to be taken (memory stays
bounded). The reader opens no database: it inherits the run's connections but never uses them, and exits without
closing anything of theirs. Each chunk carries the feed's facts about the file (``Feed.FILE_FACTS``), so the run's
feed knows what the reader's knew when it sent the items received so far. An error of the reader is raised by the
run in the batch it would have interrupted (whose items are not written either way); a run that stops early
(``--limit``) stops the reader. Records are final once yielded (``ror.feeds.model``): reading them elsewhere changes
nothing of what the run gets.
"""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import orjson

from ror.feeds.model import Feed, Known, Problem, Record, weight

# Below this input size the file is read in the run's process, where it takes a fraction of a second: what the reader
# would save is about the pickling it adds (measured: a reader starts and stops in ~5 ms; a 4.6 MB regional extract
# is read in 0.15 s, 0.18–0.26 s through a reader, with nothing to overlap).
MIN_BYTES = 4 * 1024 * 1024


def read_ahead(feed: Feed, path, size: int, batch_size: int, fork: bool | None = None
               ) -> Iterator[Record | Known | Problem]:
    """``feed.read(path)``, from a forked reader when ``fork`` (default: an input of ``size`` bytes of at least
    ``MIN_BYTES``, on a machine with more than one CPU for this process), else in this process. ``batch_size``: the
    run's, in entities (or problems): what the reader sends at a time."""
    if fork is None:
        fork = size >= MIN_BYTES and len(os.sched_getaffinity(0)) > 1
    if not fork:
        yield from feed.read(path)
        return
    context = get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    reader = context.Process(target=_read, args=(feed, path, batch_size, sender), name="ror-feed-reader",
                             daemon=True)
    reader.start()
    sender.close()  # the reader's end only: a reader that dies leaves the pipe at EOF
    try:
        while True:
            try:
                kind, payload, facts = receiver.recv()
            except EOFError:
                reader.join(10)
                raise RuntimeError(f"the reader of {path} stopped without a word (exit code {reader.exitcode}; "
                                   "killed, or out of memory?)") from None
            for name, value in facts.items():
                setattr(feed, name, value)
            if kind == "error":
                raise payload
            payload.reverse()
            while payload:  # each item let go as it is taken: a batch the run writes is freed once written
                yield payload.pop()
            if kind == "end":
                return
    finally:
        receiver.close()
        if reader.is_alive():
            reader.terminate()
        reader.join()


def _facts(feed: Feed) -> dict:
    return {name: getattr(feed, name) for name in feed.FILE_FACTS}


def _read(feed: Feed, path: Path, batch_size: int, sender) -> None:
    """The reader: ``feed.read(path)`` in chunks of ``batch_size`` entities or problems, then ``end``, or the error
    that stopped it."""
    chunk: list[Record | Known | Problem] = []
    entities = problems = 0
    try:
        for item in feed.read(path):
            chunk.append(item)
            if isinstance(item, Problem):
                problems += 1
                continue
            if isinstance(item, Record):  # sent serialised: bytes cross a pipe far cheaper than nested dicts
                for e in item.entities:
                    e.raw, e.resource = orjson.dumps(e.resource), None
            entities += weight(item)
            if entities >= batch_size or problems >= batch_size:
                sender.send(("items", chunk, _facts(feed)))
                chunk, entities, problems = [], 0, 0
                gc.collect(1)  # the run's collector is paused, and so is this copy of it (``Run.execute``)
        sender.send(("end", chunk, _facts(feed)))
    except (BrokenPipeError, KeyboardInterrupt):  # the run stopped reading, or the user stopped both
        pass
    except Exception as e:
        sender.send(("error", _portable(e), _facts(feed)))
    finally:
        sender.close()


def _portable(e: Exception) -> Exception:
    """``e`` if it survives pickling (the run raises the same error, ``InputFileError`` and its message included),
    else a ``RuntimeError`` that names it."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")
