"""gancompress: turn a big image generator (the teacher) into a small, fast student."""

__version__ = "0.1.0"
