from setuptools import find_packages, setup

setup(
    name="tf_dance",
    version="0.1.0",
    description="Keras/TensorFlow port of 'Generating Dance Moves' (Huang, Jiang, Xiao, 2017)",
    packages=find_packages(include=["tf_dance", "tf_dance.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "numpy",
        "pillow",
        "moviepy>=2",
        "absl-py",
    ],
    extras_require={"test": ["pytest"]},
)
