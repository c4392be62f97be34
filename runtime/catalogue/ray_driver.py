"""The Ray catalogue's driver in a child process, watched with its cluster's head.

Ray ends a driver's process outright when the Ray node it drives through stops (the head,
beside which a driver runs), or leaves it waiting for a minute on a head that is gone: no
exception, no finally. So the command's process, which writes the images and the ledger, runs
the driver as a child, watches it and the head, and says when the cluster was lost.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import wait

from ..errors import TryonError, Unavailable
from ..ray_cluster import import_ray

HEAD_CHECK_S = 2  # how long the driver may be silent before the head is checked
STOP_S = 10  # how long a child told to stop may take to shut down a cluster it started


def driven_in_child(drive, *args, address: str | None, sized) -> Iterator:
    """What `drive(ray, *args, address, joined)` yields, driven in a child process and passed on
    here; `sized` is told what the child tells `joined` (the workers and the nodes' CPUs). The
    child's own TryonError is raised here; a lost child or head is an Unavailable."""
    context = multiprocessing.get_context("spawn")  # a fork would copy this process's threads and locks
    ours, theirs = context.Pipe(duplex=False)
    child = context.Process(target=_driver, args=(theirs, drive, args, address), daemon=True)
    child.start()
    theirs.close()  # the child's end: once the child is gone, recv() answers EOFError
    head, finished, kind = None, 0, None  # head: the cluster's GCS address, once the child has joined
    try:
        while kind != "end":
            if not ours.poll(HEAD_CHECK_S):
                if not _answers(head or address):  # the head it joined, or the one it is to join
                    child.kill()  # waiting inside Ray on the lost head, it hears no other signal
                    if head:
                        raise _lost(head, finished, "its head does not answer")
                    raise Unavailable(f"no Ray cluster answers at {address}: start one there (ray start --head), "
                                      "give the --address of one that runs, or use --engine local")
                continue
            try:
                kind, what = ours.recv()
            except EOFError:
                child.join()
                raise _lost(head or address, finished, f"Ray ended the driver process with exit code "
                            f"{child.exitcode}, as it does when the driver's node stops") from None
            if kind == "pair":
                finished += 1
                yield what
            elif kind == "joined":
                head, sizes = what
                sized(*sizes)
            elif kind == "error":
                raise what
    finally:
        if child.is_alive() and kind not in ("end", "error"):  # this process stopped reading (Ctrl-C, an error)
            os.kill(child.pid, signal.SIGINT)  # a KeyboardInterrupt: it shuts down a cluster it started
            child.join(STOP_S)
            child.kill()
        child.join()



def _answers(address: str | None) -> bool:
    """Whether the cluster's head takes a connection on its GCS port (HOST:PORT): the one part a
    Ray cluster cannot lose. Another address ('auto'; none: a cluster the child starts) passes."""
    host, _, port = (address or "").rpartition(":")
    if not (host and port.isdigit()):
        return True
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False
    return True


def _lost(address: str | None, finished: int, why: str) -> Unavailable:
    return Unavailable(f"lost the Ray cluster{f' at {address}' if address else ''} after {finished} pairs ({why}): "
                       "the finished pairs are in the ledger; run the same command again, on a new cluster or with "
                       "--engine local, to render the rest")


def _driver(conn, drive, args: tuple, address: str | None):
    """The child process: drives Ray, tells its parent the cluster's head and size, then each
    pair, then 'end'; a tryon error as 'error'. Anything else is a bug: its traceback is printed
    here, the parent told."""
    def orphaned():  # its parent killed outright: this process, perhaps waiting on a lost head, ends too
        wait([multiprocessing.parent_process().sentinel])
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    os.setpgid(0, 0)  # out of the terminal's process group: its parent alone handles a Ctrl-C, and stops it
    ray = import_ray()

    def joined(*sizes):
        conn.send(("joined", (ray.get_runtime_context().gcs_address, sizes)))

    try:
        for pair in drive(ray, *args, address, joined):
            conn.send(("pair", pair))
    except KeyboardInterrupt:  # its parent's word to stop, once the cluster is left (or shut down)
        return
    except TryonError as exc:
        conn.send(("error", exc))
    except Exception:
        conn.send(("error", RuntimeError("the Ray catalogue's driver process failed (its traceback is above)")))
        raise
    else:
        conn.send(("end", None))
