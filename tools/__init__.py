"""The ``crampwatch`` command: one thin module per subcommand."""
