"""Installs the op library ``crfiqa_kernels`` and the wrapper ``crfiqa`` (from ``python/``)."""
from setuptools import find_packages, setup

setup(
    name="crfiqa-kernels",
    version="0.1.0",
    description="Fused margin-softmax / CCS / NNCCS kernels and a slim CR-FIQA face image quality toolkit",
    python_requires=">=3.10",
    packages=find_packages(include=["crfiqa_kernels", "crfiqa_kernels.*"])
    + find_packages(where="python", include=["crfiqa", "crfiqa.*"]),
    package_dir={"crfiqa": "python/crfiqa"},
    install_requires=["torch>=2.4", "numpy>=1.24"],
    extras_require={
        "triton": ["triton>=3.1"],
        "test": ["pytest>=8", "hypothesis>=6"],
    },
)
