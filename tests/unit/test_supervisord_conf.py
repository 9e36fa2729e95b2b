"""supervisord.conf and process_manager.py are two front-ends for one contract: same numbers, same exit codes."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from supervisor.datatypes import RestartWhenExitUnexpected
from supervisor.options import ClientOptions, ServerOptions

from process_manager import ProcessConfig
from tests.helpers import ROOT, copy_tracked
from utils.config import EX_CONFIG
from utils.config_exit import DEFAULT_STARTSECS, STARTSECS_VAR

CONF = ROOT / "supervisord.conf"


@pytest.fixture(scope="module")
def conf() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()  # supervisord's %(...)s stay raw
    parser.read(CONF)
    return parser


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The conf in a directory of its own with logs/ as a fresh clone has it, BOT_COUNT=3: %(here)s points there."""
    shutil.copyfile(CONF, tmp_path / "supervisord.conf")
    copy_tracked("logs", tmp_path)
    monkeypatch.setenv("BOT_COUNT", "3")
    return tmp_path


def test_numbers_match_the_process_managers_defaults(conf):
    program, defaults = conf["program:bot"], ProcessConfig()
    assert float(program["startsecs"]) == defaults.startsecs
    assert int(program["startretries"]) == defaults.startretries
    assert float(program["stopwaitsecs"]) == defaults.stopwaitsecs


def test_exit_code_contract(conf):
    program = conf["program:bot"]
    exitcodes = {int(code) for code in program["exitcodes"].split(",")}
    assert exitcodes == {0, EX_CONFIG}  # 0 = stopped on request, 78 = configuration error: never restarted
    assert set(ProcessConfig().exitcodes) <= exitcodes
    assert program["autorestart"] == "unexpected"  # everything else is a crash: restarted
    assert program["stopsignal"] == "TERM"  # bot.py exits 0 on SIGTERM
    assert program["stopasgroup"] == program["killasgroup"] == "true"


def test_one_program_with_numprocs_from_the_environment(conf):
    program = conf["program:bot"]
    assert program["numprocs"] == "%(ENV_BOT_COUNT)s" and program["numprocs_start"] == "1"
    assert program["process_name"] == "%(program_name)s-%(process_num)d"
    assert program["command"] == "%(here)s/.venv/bin/python %(here)s/bot.py --bot %(process_num)d"
    assert program["directory"] == "%(here)s"
    assert [s for s in conf.sections() if s.startswith(("program:", "group:"))] == ["program:bot"]


def test_every_file_is_under_logs_next_to_the_conf(conf):
    paths = [conf["supervisord"]["logfile"], conf["supervisord"]["pidfile"], conf["unix_http_server"]["file"],
             conf["program:bot"]["stdout_logfile"]]
    assert all(p.startswith("%(here)s/logs/") for p in paths)
    assert conf["supervisorctl"]["serverurl"] == "unix://" + conf["unix_http_server"]["file"]
    assert conf["program:bot"]["redirect_stderr"] == "true"
    assert int(conf["program:bot"]["stdout_logfile_backups"]) > 0


def test_a_fresh_clone_has_logs_but_none_of_their_contents():
    """supervisord refuses to start when the directory of its logfile is missing: git must keep logs/."""
    tracked = subprocess.run(["git", "ls-files", "--", "logs"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.split()
    assert tracked == ["logs/.gitkeep"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--", "logs/supervisord.log", "logs/bot-1.log",
                              "logs/supervisor.sock", "logs/.gitkeep"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["logs/supervisord.log", "logs/bot-1.log", "logs/supervisor.sock"]


def test_supervisord_reads_it_as_intended(stand_in):
    options = ServerOptions()
    options.realize(args=["-c", str(stand_in / "supervisord.conf")])
    (group,) = options.process_group_configs
    assert group.name == "bot"
    assert [p.name for p in group.process_configs] == ["bot-1", "bot-2", "bot-3"]
    bot2 = group.process_configs[1]
    assert bot2.command == f"{stand_in}/.venv/bin/python {stand_in}/bot.py --bot 2"
    assert bot2.directory == str(stand_in)
    assert bot2.exitcodes == [0, EX_CONFIG] and bot2.autorestart is RestartWhenExitUnexpected
    assert bot2.stdout_logfile == f"{stand_in}/logs/supervisor-bot-2.log"
    assert bot2.stdout_logfile_maxbytes > 0 and bot2.stopasgroup and bot2.killasgroup
    assert options.nodaemon is False  # daemonizes unless started with -n
    (server,) = options.server_configs
    assert server["file"] == f"{stand_in}/logs/supervisor.sock" and server["chmod"] == 0o700


def test_bots_know_startsecs_so_that_exit_78_is_final(stand_in):
    """bot.py outlasts startsecs before exiting 78 (utils/config_exit.py): it must be told the real value."""
    options = ServerOptions()
    options.realize(args=["-c", str(stand_in / "supervisord.conf")])
    bot = options.process_group_configs[0].process_configs[0]
    assert float(bot.environment[STARTSECS_VAR]) == bot.startsecs == DEFAULT_STARTSECS
    assert EX_CONFIG in bot.exitcodes  # what outlasting startsecs is for: an expected exit, not retried


def test_supervisorctl_finds_the_socket_without_bot_count(stand_in, monkeypatch):
    monkeypatch.delenv("BOT_COUNT")
    options = ClientOptions()
    options.realize(args=["-c", str(stand_in / "supervisord.conf")])
    assert options.serverurl == f"unix://{stand_in}/logs/supervisor.sock"
