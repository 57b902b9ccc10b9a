"""Build hook: compiles native/ (LAME + libmpg123 round trip) into fast_mp3_augment._native."""

from setuptools import setup

# the extension uses the stable ABI (cffi builds _native.abi3.so): one wheel for CPython 3.10+
setup(
    cffi_modules=["build_native.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
