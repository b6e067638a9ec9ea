"""The package version, importable without loading anything else."""

VERSION = "0.1.0"
