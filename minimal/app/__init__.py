"""The application shell: what turns a demo into a program."""
