"""DL tasks: tasks/<name>.py holds class <Name>, selected by algo=<name>."""
