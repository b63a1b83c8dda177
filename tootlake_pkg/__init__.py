"""tootlake: a Delta Lake lakehouse for Mastodon posts."""
