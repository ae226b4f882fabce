"""The face: the ``unlearn`` Typer app, one module per command. Commands parse, call the library, render.

app.py          the Typer app; registers every command
options.py      option types many commands share, declared once (Annotated aliases)
output.py       everything a command shows: the JSON report, rich tables, progress, warnings
errors.py       known failures to one line on stderr and the exit code
train.py, evaluate.py, inspect.py, methods.py, mark.py, forget.py, attack.py,
debug_labels.py, calibrate.py: one command each; each docstring starts with real examples
"""
