"""Installs the op library ``crfiqa_kernels`` and the wrapper ``crfiqa`` (from ``python/``)."""
from setuptools import find_packages, setup

WRAPPER_REQUIRES = [
    "pillow>=10",
    "scipy>=1.10",
    "scikit-learn>=1.3",
    "matplotlib>=3.7",
    "faiss-cpu>=1.8",
    "onnx>=1.16",
    "onnxruntime>=1.18",
]
TEST_REQUIRES = ["pytest>=8", "hypothesis>=6", "pytest-benchmark>=4"]

setup(
    name="crfiqa-kernels",
    version="0.1.0",
    description="Fused margin-softmax / CCS / NNCCS kernels and a slim CR-FIQA face image quality toolkit",
    python_requires=">=3.10",
    packages=find_packages(include=["crfiqa_kernels", "crfiqa_kernels.*"])
    + find_packages(where="python", include=["crfiqa", "crfiqa.*"]),
    package_dir={"crfiqa": "python/crfiqa"},
    install_requires=["torch>=2.4", "numpy>=1.24", "tqdm>=4.60"],
    extras_require={
        "triton": ["triton>=3.1"],
        "wrapper": WRAPPER_REQUIRES,
        "test": TEST_REQUIRES,
        "all": ["triton>=3.1", *WRAPPER_REQUIRES, *TEST_REQUIRES],
    },
    entry_points={"console_scripts": ["crfiqa=crfiqa.cli:main"]},
)
