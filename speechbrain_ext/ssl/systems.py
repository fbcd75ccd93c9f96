r"""Train several systems of one recipe at one budget, one after the other, and time each.

The recipes' table scripts (``recipes/BEST-RQ/run_mixer_table.py``,
``recipes/HuBERT/run_encoder_table.py``) name their systems and the arguments of each; this
runs the recipe's own ``train.py`` for every system (so a table is exactly what the commands
give), records the wall time in ``<output>/wall_time.json`` and skips a system whose run has
finished (``results.json``) unless asked to rerun it.

Example
-------
>>> folder = getfixture("tmp_path")
>>> _ = (folder / "train.py").write_text(
...     "import sys, pathlib, json\n"
...     "out = pathlib.Path(sys.argv[2].split('=')[1]); out.mkdir(parents=True)\n"
...     "(out / 'results.json').write_text(json.dumps({'args': sys.argv[1:]}))\n")
>>> walls = run_systems(folder, {"a": ["hparams/x.yaml"]}, out=folder / "runs", quiet=True)
>>> sorted(walls), (folder / "runs" / "a" / "wall_time.json").is_file()
(['a'], True)
"""

import json
import subprocess
import sys
import time
from pathlib import Path


def run_systems(
    recipe, systems: dict, *, out, extra=(), rerun: bool = False, quiet: bool = False
) -> dict:
    """Run ``recipe/train.py`` once per system into ``out/<name>``; returns name → wall seconds.

    Arguments
    ---------
    recipe : str or Path
        The recipe folder (holding ``train.py``).
    systems : dict
        System name → its arguments (the yaml first, then ``--key=value`` options).
    out : str or Path
        Parent of the runs' output folders.
    extra : sequence of str
        Arguments added to every run, after the system's.
    rerun : bool
        Run a system again even when its ``results.json`` exists.
    quiet : bool
        Do not print the commands.
    """
    out = Path(out).resolve()
    walls = {}
    for name, args in systems.items():
        output = out / name
        wall_file = output / "wall_time.json"
        if not rerun and (output / "results.json").is_file() and wall_file.is_file():
            walls[name] = json.loads(wall_file.read_text())["seconds"]
            continue
        command = [sys.executable, "train.py", *args, f"--output_folder={output}", *extra]
        if not quiet:
            print("running:", " ".join(command), flush=True)
        start = time.time()
        subprocess.run(command, cwd=recipe, check=True)
        walls[name] = time.time() - start
        wall_file.write_text(json.dumps({"seconds": walls[name], "command": command}) + "\n")
    return walls
