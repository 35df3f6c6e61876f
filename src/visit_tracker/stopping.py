"""Learn that the server was told to stop, before it stops.

On SIGTERM or SIGINT, granian's worker refuses new connections and waits for the responses under
way to end; only then does the application's lifespan end, committing pending visits. An endless
response, an event stream, would hold the worker until granian kills it at the shutdown timeout,
and the lifespan would never end. So streams must end when the signal comes, which no ASGI
message announces: this runs a callback on the signal, before the handler granian installed.
"""

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop_signal(callback: Callable[[], object]) -> Iterator[None]:
    """Within this block, SIGINT and SIGTERM first schedule `callback` on the running event
    loop, then go to the handlers installed before. Python sets handlers only in the main
    thread, where granian runs the application; elsewhere (the test client runs it in a thread
    of its own) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def stopping(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        earlier = previous[signal.Signals(signum)]
        if callable(earlier):
            earlier(signum, frame)
        elif earlier != signal.SIG_IGN:  # the default action: stop the process
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stopping)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
