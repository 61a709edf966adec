"""Render the supervisord config `make run` uses (var/supervisord.conf). Pure: no I/O."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from deploy.layout import Layout
from deploy.programs import Program

HEADER = """\
; Written by `python -m deploy.launcher` (`make run`) at every start: edits are overwritten.
; Secrets (V1_TOKEN, FLOWER_BASIC_AUTH) are not in this file: the launcher passes them in
; supervisord's own environment, which every program inherits. Start the system through the
; launcher, not with `supervisord -c` on this file.
; Status: supervisorctl -c {conf} status
"""


def render_supervisord_conf(
    programs: Sequence[Program], environment: Mapping[str, str], layout: Layout
) -> str:
    """The supervisord config that runs `programs` in the foreground.

    Control goes through a unix socket with mode 0700 (only this user can use
    supervisorctl), never through an inet port.
    """
    socket = _value(str(layout.socket_file))
    sections = [
        HEADER.format(conf=_value(str(layout.conf_file))),
        _section(
            "unix_http_server",
            {"file": socket, "chmod": "0700"},
        ),
        _section(
            "supervisord",
            {
                "nodaemon": "true",
                # The launcher prints what matters; supervisord's own log goes to its file.
                "silent": "true",
                "logfile": _value(str(layout.supervisord_log)),
                "logfile_maxbytes": "10MB",
                "logfile_backups": "3",
                "pidfile": _value(str(layout.pid_file)),
                "childlogdir": _value(str(layout.log_dir)),
                "environment": _environment(environment),
            },
        ),
        _section(
            "rpcinterface:supervisor",
            {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        ),
        _section("supervisorctl", {"serverurl": f"unix://{socket}"}),
    ]
    sections.extend(_program_section(program, layout) for program in programs)
    sections.extend(_group_sections(programs))
    return "\n".join(sections)


def _group_sections(programs: Sequence[Program]) -> list[str]:
    """One `[group:...]` per group, in first-member order; it starts and stops with its
    first member's priority (supervisord orders groups, not the programs in them)."""
    members: dict[str, list[Program]] = {}
    for program in programs:
        if program.group:
            members.setdefault(program.group, []).append(program)
    return [
        _section(
            f"group:{group}",
            {"programs": ",".join(p.name for p in found), "priority": str(found[0].priority)},
        )
        for group, found in members.items()
    ]


def _program_section(program: Program, layout: Layout) -> str:
    return _section(
        f"program:{program.name}",
        {
            "command": _command(program.command),
            "directory": _value(str(layout.root)),
            "priority": str(program.priority),
            "autostart": "true" if program.autostart else "false",
            "autorestart": program.autorestart,
            # A program that exits within startsecs counts as a failed start; Redis may take
            # a moment to answer, so allow enough retries (1 s, 2 s, ... apart) to outlast it.
            "startsecs": "2",
            "startretries": "10",
            "stopsignal": "TERM",
            "stopwaitsecs": str(program.stopwaitsecs),
            # Signal the whole process group so no grandchild outlives its program.
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": _value(str(layout.log_file(program.name))),
            "stdout_logfile_maxbytes": "50MB",
            "stdout_logfile_backups": "3",
            **(
                {"environment": _environment(dict(program.environment))}
                if program.environment
                else {}
            ),
        },
    )


def _section(name: str, options: Mapping[str, str]) -> str:
    lines = [f"[{name}]", *(f"{key}={value}" for key, value in options.items())]
    return "\n".join(lines) + "\n"


def _command(argv: Sequence[str]) -> str:
    # supervisord splits the command with shlex and expands %(name)s in it, so quote every
    # argument and double each literal % (celery's `-n short@%h` becomes `short@%%h`).
    return _value(shlex.join(argv))


def _environment(environment: Mapping[str, str]) -> str:
    pairs = []
    for key, value in environment.items():
        # supervisord's KEY="value" parser has no escapes: a quote would end the value.
        if not key.isidentifier() or '"' in value:
            raise ValueError(f"environment variable {key!r} cannot be written to supervisord")
        pairs.append(f'{key}="{_value(value)}"')
    return ",".join(pairs)


def _value(text: str) -> str:
    if "\n" in text or " ;" in text or " #" in text:
        # Newlines end the option and ` ;` / ` #` start an inline comment for supervisord.
        raise ValueError(f"value cannot be written to a supervisord config: {text!r}")
    return text.replace("%", "%%")
