"""Build hook: compiles native/ (the C shim) into mlx_audio_io._native with cffi."""

from setuptools import setup

setup(cffi_modules=["build_native.py:ffibuilder"])
