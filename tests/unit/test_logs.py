"""pipelines/logs.py: one handler, one format, on whatever stderr is at the time."""

from __future__ import annotations

import logging
import re

from tootlake.pipelines.logs import configure_logging


def test_records_go_to_the_current_stderr_in_one_format_once(capsys) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging()
        configure_logging()  # a second call adds no second handler
        logging.getLogger("tootlake.pipelines.jobs.silver").info("[silver] batch 3: 7 bronze rows")
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO tootlake\.pipelines\.jobs\.silver: "
                            r"\[silver\] batch 3: 7 bronze rows", lines[0])
        logging.getLogger("py4j.clientserver").info("Closing down clientserver connection")
        assert capsys.readouterr().err == ""  # noisy libraries stay at WARNING
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
