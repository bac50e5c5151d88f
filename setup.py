from setuptools import find_packages, setup

setup(
    name="tf_dance",
    version="0.1.0",
    description="Keras/TensorFlow port of 'Generating Dance Moves' (Huang, Jiang, Xiao, 2017)",
    packages=[*find_packages(include=["tf_dance", "tf_dance.*"]), "tf_dance.flags"],
    # The flagfiles of flags/ travel inside the package, so that `--flagfile=flags/quick.flags` works
    # after a plain `pip install .` and from any directory (tf_dance.cli.find_flagfile).
    package_dir={"tf_dance.flags": "flags"},
    package_data={"tf_dance.flags": ["*.flags"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "numpy",
        "pillow",
        "moviepy>=2",
        "absl-py",
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "flake8"], "tensorboard": ["tensorboard"]},
)
