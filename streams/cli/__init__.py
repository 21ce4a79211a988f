"""The `metasup` command line."""
