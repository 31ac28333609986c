"""The ``jaxrnn`` command: train, evaluate, generate, predict and plot from a config.

    jaxrnn train CONFIG [--workdir DIR] [--set key=value ...] [--data-dir DIR]
    jaxrnn train --workdir DIR                     (resume the run there)
    jaxrnn evaluate --workdir DIR [--data FILE] [--checkpoint best|latest|STEP] [--ensemble DIR ...]
    jaxrnn generate --workdir DIR [--prompt TEXT] [--length N] [--temperature T] [--seed S]
    jaxrnn generate --workdir DIR --input TEXT     (conditional models, e.g. translation)
    jaxrnn predict  --workdir DIR --input FILE [--output FILE]
    jaxrnn plot     --workdir DIR

``CONFIG`` is a YAML path or the name of a file in ``./configs/`` (``charlm_tiny``); without
one, ``train`` resumes the run in ``--workdir``. The config names its experiment module; every
command takes ``--data-dir`` to move the data root. This module only parses arguments; the work
is in :mod:`jaxrnn.train`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxrnn", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def data_dir_arg(sp):
        sp.add_argument("--data-dir", default=None, metavar="DIR",
                        help="the folder relative data paths are read from (wins over "
                             "$JAXRNN_DATA and the config's data_root)")

    t = sub.add_parser("train", help="train from a config (resumes an existing workdir)")
    t.add_argument("config", nargs="?", default=None,
                   help="YAML file or name in ./configs/ (omit it to resume --workdir)")
    t.add_argument("--workdir", default=None,
                   help="run folder (default: runs/<config name>)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=60 (repeatable)")
    data_dir_arg(t)

    def workdir_arg(sp):
        sp.add_argument("--workdir", required=True, help="the run folder written by train")
        data_dir_arg(sp)

    def checkpoint_arg(sp):
        sp.add_argument("--checkpoint", default="best",
                        help="best (default; latest if no evaluation was saved), latest, or a step")

    e = sub.add_parser("evaluate", help="score a trained model on dev or on a file")
    workdir_arg(e)
    checkpoint_arg(e)
    e.add_argument("--data", default=None, help="a file in the training data's format")
    e.add_argument("--split", default="dev", help="held-out split when --data is not given")
    e.add_argument("--ensemble", nargs="+", default=None, metavar="DIR",
                   help="more run folders of the same experiment: score the ensemble of "
                        "--workdir and these (tagging experiments; same --checkpoint for all)")

    g = sub.add_parser("generate", help="sample from a generative model")
    workdir_arg(g)
    checkpoint_arg(g)
    g.add_argument("--prompt", default="\n")
    g.add_argument("--length", type=int, default=500)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--input", default=None,
                   help="a source text for conditional models (e.g. a sentence to translate); "
                        "passed as the prompt, and only the output is printed")

    pr = sub.add_parser("predict", help="write predictions for an input file (if the "
                                        "experiment implements it)")
    workdir_arg(pr)
    checkpoint_arg(pr)
    pr.add_argument("--input", required=True)
    pr.add_argument("--output", default=None, help="default: stdout")

    pl = sub.add_parser("plot", help="write PNG plots of metrics.jsonl into the workdir")
    workdir_arg(pl)
    return p


def _default_workdir(config: Optional[str]) -> str:
    from jaxrnn.train.config import ConfigError
    if not config:
        raise ConfigError("jaxrnn train: give a CONFIG (e.g. configs/charlm.yaml), or "
                          "--workdir DIR to resume the run there")
    return str(Path("runs") / Path(config).stem)


def _load_trained(workdir: str, checkpoint: str, data_dir: Optional[str] = None):
    from jaxrnn.train import load_config, load_params, prepare
    if not (Path(workdir) / "config.yaml").is_file():
        raise FileNotFoundError(f"{workdir} has no config.yaml: not a jaxrnn run folder")
    cfg = load_config(None, (), workdir, data_dir=data_dir)
    run = prepare(cfg)
    params, step = load_params(run, workdir, checkpoint)
    return run, params, step


def _require(task, name: str, experiment: str):
    fn = getattr(task, name)
    if fn is None:
        from jaxrnn.train.config import DataError
        raise DataError(f"experiment {experiment!r} does not implement {name} "
                        f"(add it to its Task; see docs/training.md)")
    return fn


def _user_errors() -> tuple:
    """The exception types that mean bad input (the message names it), not a bug."""
    from jaxrnn.train import config as config_lib
    from jaxrnn.train import loop
    # the data readers' FormatError, when an experiment loaded them (the runner itself never
    # imports a data module)
    readers = sys.modules.get("jaxrnn.text.readers")
    extra = (readers.FormatError,) if readers is not None else ()
    return (config_lib.ConfigError, config_lib.DataError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError, loop.WorkdirLockedError,
            loop.CheckpointError) + extra


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs a command. Bad input (a config key, a file, an option) is one line on stderr and
    exit status 2 (3 for a non-finite loss); anything else is a bug, shown with its traceback
    and exit status 1."""
    args = _parser().parse_args(argv)
    from jaxrnn.train.loop import NonFiniteLossError
    try:
        _check_args(args)
        return _run(args)
    except NonFiniteLossError as e:
        print(f"jaxrnn: {e}", file=sys.stderr)
        return 3
    except _user_errors() as e:
        from jaxrnn.train.config import ConfigError
        kind = "config error: " if isinstance(e, ConfigError) else ""
        print(f"jaxrnn: {kind}{_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxrnn: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - a bug: show everything
        import traceback
        traceback.print_exc()
        print("jaxrnn: internal error (the traceback above): this is a bug in jaxrnn or in the "
              "experiment module; please report it with the command that caused it",
              file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split())


def _check_args(args) -> None:
    """Command-line values checked before anything loads."""
    import math
    from jaxrnn.train.config import DataError
    if args.command == "generate":
        if not math.isfinite(args.temperature) or args.temperature <= 0:
            raise DataError(f"--temperature must be a finite number > 0, got {args.temperature}")
        if args.length < 0:
            raise DataError(f"--length must be >= 0, got {args.length}")
    if args.command in ("evaluate", "generate", "predict") \
            and args.checkpoint not in ("best", "latest"):
        if not args.checkpoint.isdigit():
            raise DataError(f"--checkpoint must be best, latest or a step number, got "
                            f"{args.checkpoint!r}")
    for name in ("data", "input"):
        value = getattr(args, name, None)
        if value is None or (args.command == "generate" and name == "input"):
            continue
        path = Path(value)
        if path.is_dir():
            raise DataError(f"--{name} {value}: is a folder, not a file")
        if not path.is_file():
            raise FileNotFoundError(f"--{name} {value}: no such file")
        if not path.read_bytes().strip():
            raise DataError(f"--{name} {value}: the file is empty")
    if args.command == "predict" and args.output is not None:
        out = Path(args.output)
        if out.is_dir():
            raise DataError(f"--output {args.output}: is a folder, not a file")
        if out.exists() and out.resolve() == Path(args.input).resolve():
            raise DataError(f"--output {args.output} is the --input file: it would be "
                            f"overwritten; write the predictions elsewhere")


def _run(args) -> int:
    from jaxrnn.train.config import DataError
    if args.command == "train":
        from jaxrnn.train import load_config, train_and_evaluate
        workdir = args.workdir or _default_workdir(args.config)
        cfg = load_config(args.config, args.overrides, workdir, data_dir=args.data_dir)
        last = train_and_evaluate(cfg, workdir)
        if last.get("dev"):
            print(json.dumps(last["dev"]))
        return 0
    if args.command == "plot":
        from jaxrnn.train import plot_metrics
        for path in plot_metrics(args.workdir):
            print(path)
        return 0
    run, params, step = _load_trained(args.workdir, args.checkpoint, args.data_dir)
    exp = run.cfg.experiment
    if args.command == "evaluate" and args.ensemble:
        from jaxrnn.train import load_experiment
        ensemble = getattr(load_experiment(exp), "evaluate_ensemble", None)
        if ensemble is None:
            raise DataError(f"experiment {exp!r} defines no evaluate_ensemble "
                            f"(the tagging experiments do; see docs/training.md)")
        members = [(run.task, params)]
        for d in args.ensemble:
            other, p, _ = _load_trained(d, args.checkpoint, args.data_dir)
            if other.cfg.experiment != exp:
                raise DataError(f"{d} is a {other.cfg.experiment!r} run, {args.workdir} "
                                f"a {exp!r} run: an ensemble needs one experiment")
            members.append((other.task, p))
        if args.split != "dev" and not args.data:
            raise DataError("--ensemble scores dev or --data FILE")
        out = ensemble(members, args.data)
        print(json.dumps({"step": step, "split": "file" if args.data else "dev",
                          "members": 1 + len(args.ensemble),
                          **({"data": str(args.data)} if args.data else {}), **out}))
        return 0
    if args.command == "evaluate":
        if args.data:
            out = _require(run.task, "evaluate_file", exp)(params, args.data)
        else:
            out = run.task.evaluate(params, args.split)
        print(json.dumps({"step": step, "split": "file" if args.data else args.split,
                          **({"data": str(args.data)} if args.data else {}), **out}))
        return 0
    if args.command == "generate":
        gen = _require(run.task, "generate", exp)
        prompt = args.prompt if args.input is None else args.input
        if args.input is None:
            sys.stdout.write(args.prompt)

        def emit(piece):
            sys.stdout.write(piece)
            sys.stdout.flush()
        gen(params, prompt=prompt, length=args.length, temperature=args.temperature,
            seed=args.seed, emit=emit)
        sys.stdout.write("\n")
        return 0
    if args.command == "predict":
        pred = _require(run.task, "predict", exp)
        pred(params, args.input, args.output)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
