# Put this directory first on PYTHONPATH to run a process as on a host without zstandard:
# discord.py then asks the gateway for zlib-stream compression instead of zstd-stream.
raise ImportError("zstandard is disabled for this process (tests/no_zstd)")
