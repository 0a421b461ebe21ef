"""`python -m edge engines`: build TensorRT engines from the ONNX models, on the Jetson itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge import paths
from edge.config import camera_configs, load
from edge.engines.build import Batch, BuildOptions, build_all


def _batch(text: str) -> tuple[str, Batch]:
    """Parse `MODEL:MIN,OPT,MAX`."""
    name, _, numbers = text.partition(":")
    try:
        low, opt, high = (int(n) for n in numbers.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not MODEL:MIN,OPT,MAX") from None
    if not 1 <= low <= opt <= high:
        raise argparse.ArgumentTypeError(f"'{text}': need 1 <= MIN <= OPT <= MAX")
    return name, (low, opt, high)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `engines` command."""
    parser = subparsers.add_parser(
        "engines", help="build TensorRT engines from the ONNX models (run on the Jetson)"
    )
    parser.add_argument("--models", type=Path, default=paths.MODELS, help="models folder")
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="MODEL", help="models to build (default: all)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild up-to-date engines too")
    parser.add_argument("--fp32", action="store_true", help="FP32 engines instead of FP16")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="detector and ReID engines in INT8 from their QDQ models (NAME_int8.onnx from "
        "`python -m export quantize --flavour tensorrt`; FP16 for the layers left in float)",
    )
    parser.add_argument("--workspace", type=int, default=1024, metavar="MIB", help="workspace")
    parser.add_argument(
        "--dla",
        type=int,
        metavar="CORE",
        help="run what DLA can on this DLA core (AGX Orin, Orin NX; FP16 and a fixed batch only)",
    )
    parser.add_argument(
        "--fp32-layer",
        action="append",
        default=[],
        metavar="LAYER",
        help="keep this TensorRT layer in FP32 (repeatable; for layers that overflow in FP16; "
        "the names are in the --verbose log, 'Registering layer: NAME')",
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        action="append",
        default=[],
        metavar="MODEL:MIN,OPT,MAX",
        help="batch range of a model's profile (default reid:1,8,MAX with MAX the config's "
        "detector.max_detections, at most 32: larger frames are split)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="the runtime's TOML config: its detector.max_detections sizes the ReID profile, "
        "its number of cameras the detector's (default: built-in)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="TensorRT's verbose log (it names every layer)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    options = BuildOptions(
        fp16=not args.fp32,
        int8=args.int8,
        workspace_mib=args.workspace,
        dla_core=args.dla,
        fp32_layers=tuple(args.fp32_layer),
    )
    config = load(args.config)
    build_all(
        args.models,
        options,
        tuple(args.only),
        dict(args.batch),
        args.force,
        max_detections=config.detector.max_detections,
        verbose=args.verbose,
        cameras=len(camera_configs(config)),
    )
