"""Build hook: compiles native/ (LAME + libmpg123 round trip) into fast_mp3_augment._native."""

from setuptools import setup

setup(cffi_modules=["build_native.py:ffibuilder"])
