"""Child process for test_restart.py: a FixAcceptor with a journalling ImmediateSink.

Usage: python tests/fix/acceptor_proc.py CONFIG.json SINK_JOURNAL
Prints "READY" once listening, then runs until killed (the test uses kill -9).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from adapters.fix.acceptor import FixAcceptor
from adapters.fix.settings import FixAcceptorConfig
from tests.fix.fixsupport import ImmediateSink


def main() -> None:
    config = FixAcceptorConfig.from_mapping(json.loads(Path(sys.argv[1]).read_text()))
    sink = ImmediateSink(journal=Path(sys.argv[2]))
    acceptor = FixAcceptor(config, sink)
    sink.bind(acceptor)
    acceptor.start()
    print("READY", flush=True)
    signal.pause()


if __name__ == "__main__":
    main()
