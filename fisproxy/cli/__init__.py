"""The `fisproxy` command, the top layer: nothing else in fisproxy imports it.

- `main.py`: the parser, one `register(subparsers)` per command module, one-line errors.
- `flags.py`: flags and their values from the settings' declaration (`proxy/settings.py`).
- `run.py` (`run`, `web`), `env.py` (`env`, `ca`), `report.py` (`report`, `experiments`,
  `proxies`, reading through `controlclient.py`), `scenarios.py` (`scenarios`).
- `workers.py`: `--workers N`, the supervisor and its worker processes.
- `runtimefile.py`, `statefile.py`: which proxy a command in a folder means; is `--state` usable.
"""
