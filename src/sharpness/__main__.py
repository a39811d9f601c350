"""`python -m sharpness <command> ...`: the library's command line, for machines without Jupyter.

Each command lives in its own module, which defines `add_arguments(parser)` and `main(args) -> int`.
To add one, add a line to COMMANDS; modules are imported only when their command runs, so
`python -m sharpness --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module defining add_arguments/main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("sharpness.training.train", "train one run (data set, arch, control, seed) into runs/..."),
    "evaluate": ("sharpness.measuring.evaluate", "measure finished runs (sharpness, calibration, corruption) into metrics.json"),
    "sweep": ("sharpness.studies.sweep", "run a grid (datasets x archs x controls x seeds x SAM rhos), k runs per GPU, then evaluate"),
    "cpu-study": ("sharpness.studies.cpu_study", "the real CIFAR-10 study on a CPU (6 controls x seeds), resumable from results/"),
    "cpu-families": ("sharpness.studies.cpu_families", "the CPU study on three more network families, and Figure 1's batch x lr sweep"),
    "cpu-pilot": ("sharpness.studies.cpu_pilot", "the pilot behind the CPU study's protocol: which settings reach a minimum"),
    "campaign": ("sharpness.studies.campaign", "the paper-scale grid in one GPU lease (only runs that finish by --deadline), or in slices"),
    "campaign-import": ("sharpness.studies.campaign_import", "unpack a campaign archive into results/ with its provenance"),
    "fit": ("sharpness.toys.fit", "the toy-function study: small MLPs fit the toy functions, sharpness at target losses"),
    "boundary": ("sharpness.toys.boundary", "the decision-boundary study: an MLP per class separation, sharpness at 100% accuracy"),
    "plateau-noise": ("sharpness.measuring.plateau_noise", "the minimum criterion's noise: finished runs' loss with the weights frozen"),
    "landscape": ("sharpness.measuring.landscape", "51 x 51 loss surfaces of trained runs into results/landscapes"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="python -m sharpness", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    from .core.runs import RunFileError

    try:
        return importlib.import_module(COMMANDS[args.command][0]).main(args) or 0
    except (ValueError, FileNotFoundError, RunFileError, ImportError) as error:  # bad input, missing data or optional
        # package (the message names the install), damaged files: one line
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
