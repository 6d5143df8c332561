"""SIGTERM as a request to stop: the way SLURM, Kubernetes and preemptible TPU/GPU VMs end
a job. While ``Preemption`` is entered, SIGTERM only sets ``requested``; the training loop
looks at it at every step boundary, saves a checkpoint there and exits 0, so that the
job's next start resumes it exactly.
"""

from __future__ import annotations

import signal
import threading


class Preemption:
    """``with Preemption() as p: … p.requested …``: SIGTERM sets ``requested`` instead of
    ending the process (only in the main thread, where Python can take signals)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum, frame) -> None:
        self.requested = True
