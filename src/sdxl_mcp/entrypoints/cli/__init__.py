"""The command line: argument parsing and commands."""
