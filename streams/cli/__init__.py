"""The `metasup` command line: one module per subcommand, each with `register` and `run`.

A command parses its arguments, calls the rules and read models it needs and prints;
it computes nothing itself. It may import everything below it: `schemas`, `projections`
(read models), `streams.sdk` (to publish), the broker, the stack and the settings.
Nothing imports the CLI.
"""
