"""`python -m benchmarks.emulate_avx2 COMMAND ...`: run COMMAND as on an x86 CPU with AVX2 but
neither AVX-512 nor VNNI, to measure INT8 models on ONNX Runtime's non-VNNI kernels on a CPU
that has VNNI.

ONNX Runtime has no setting that caps the instruction set its MLAS kernels use: MLAS picks them
from the CPUID instruction once, when it loads (`onnxruntime/core/mlas/lib/platform.cpp`). So the
command runs with `cpuid_avx2.c` preloaded, which hides the AVX-512 and VNNI bits of CPUID through
Linux CPUID faulting (CPU flag `cpuid_fault`), and, in a mount namespace of its own, with a
/proc/cpuinfo whose flags lack them too (what `edge.engines.onnxruntime.cpu_flags` reads).
Needs root (the mount namespace), gcc, and CPUID faulting. The arithmetic is that of the real
non-VNNI kernels (their `VPMADDUBSW` saturation included); the timings are this CPU's running
AVX2 code, not those of an AVX2-only CPU.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge import paths
from edge.engines.onnxruntime import CPUINFO, cpu_flags
from edge.errors import EdgeError

SOURCE = Path(__file__).with_name("cpuid_avx2.c")
# The /proc/cpuinfo flags of what CPUID hides.
HIDDEN = re.compile(r"avx512\w*|avx_vnni\w*|amx\w*")
# $1: the masked cpuinfo, $2: the library; the rest is the command.
SCRIPT = (
    'mount --bind "$1" /proc/cpuinfo && export LD_PRELOAD="$2${LD_PRELOAD:+:$LD_PRELOAD}" '
    '&& shift 2 && exec "$@"'
)


def masked_cpuinfo(text: str) -> str:
    """/proc/cpuinfo's text with the AVX-512, VNNI and AMX flags removed."""
    lines = []
    for line in text.splitlines():
        if line.startswith("flags"):
            name, flags = line.split(":", 1)
            line = f"{name}:" + "".join(f" {f}" for f in flags.split() if not HIDDEN.fullmatch(f))
        lines.append(line)
    return "\n".join(lines) + "\n"


def prepare(folder: Path) -> tuple[Path, Path]:
    """The preload library (built with gcc when its source changed) and the masked cpuinfo.

    Raises:
        EdgeError: not root, no CPUID faulting, or no gcc.
    """
    if os.geteuid() != 0:
        raise EdgeError("emulate_avx2 needs root (for a mount namespace): run it with sudo")
    if "cpuid_fault" not in cpu_flags():
        raise EdgeError("this CPU or kernel has no CPUID faulting (flag cpuid_fault): no emulation")
    compiler = shutil.which("gcc")
    if compiler is None:
        raise EdgeError("gcc not found: install it (apt-get install gcc)")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    library = folder / f"cpuid_avx2-{digest}.so"
    if not library.is_file():
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True
        )
    cpuinfo = folder / "cpuinfo-avx2"
    cpuinfo.write_text(masked_cpuinfo(CPUINFO.read_text()))
    return library, cpuinfo


def command_line(command: list[str], folder: Path = paths.CACHE / "emulate_avx2") -> list[str]:
    """`command` wrapped to run on the emulated AVX2 CPU."""
    library, cpuinfo = prepare(folder)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT,
            "emulate_avx2", str(cpuinfo), str(library), *command]  # fmt: skip


def main(argv: list[str]) -> int:
    """Run the command on the emulated CPU; its exit status (2 with one line if it cannot)."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(f"usage: python -m benchmarks.emulate_avx2 COMMAND ...\n\n{__doc__}")
        return 0 if argv else 2
    try:
        return subprocess.run(command_line(argv)).returncode
    except EdgeError as exc:
        sys.stderr.write(f"emulate_avx2: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
