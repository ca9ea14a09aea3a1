"""Which hosts: names, `@tag`s and globs (`selection`), the flake's hosts (`inventory`), and
each host's target and transport (`targets`)."""
