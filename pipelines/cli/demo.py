"""`tootlake demo`: the README's first command (after `make setup`)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start the services and run the bundled real posts through every layer",
        description="Start embedded Kafka and PostgreSQL (unless external ones are configured), replay "
                    "the real Mastodon statuses from ../shared/data through the producer, then run each "
                    "layer once and print row counts and where the tables are.",
    )
    parser.add_argument("--max-posts", type=int, default=None, help="replay at most N posts")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from tootlake.pipelines.ops.demo import run_demo
    from tootlake.pipelines.settings import load_settings

    return run_demo(load_settings(), max_posts=args.max_posts)
