from __future__ import annotations

import logging

from utils.log import REDACTED, setup_logging

SECRET = "MTAwMA.GxYz12.very-secret-token-value"


def test_every_line_carries_the_bot_number_and_secrets_are_redacted(tmp_path, capsys):
    path = setup_logging(7, "INFO", tmp_path, secrets=[SECRET])
    try:
        log = logging.getLogger("test.log")
        log.info("token is %s", SECRET)
        log.warning("inline " + SECRET)
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            log.exception("failed")
        log.debug("not shown")
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
    err = capsys.readouterr().err
    text = path.read_text()
    for output in (err, text):
        lines = output.splitlines()
        assert len(lines) >= 5 and all(line.startswith("[Bot 7] ") for line in lines)  # traceback lines too
        assert any("Traceback (most recent call last):" in line for line in lines)
        assert SECRET not in output and REDACTED in output
        assert "not shown" not in output
    assert path.name == "bot-7.log"
    logging.getLogger().handlers.clear()


def test_unwritable_log_dir_falls_back_to_stderr(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert setup_logging(2, "INFO", blocker / "sub") is None
    logging.getLogger("x").info("still logging")
    assert "[Bot 2]" in capsys.readouterr().err
    logging.getLogger().handlers.clear()
