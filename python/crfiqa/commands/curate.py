"""``crfiqa curate MODEL DATA --output DIR``: the dataset report of :mod:`crfiqa.curate`."""

from __future__ import annotations


def register(commands) -> None:
    from ..curate import cli

    parser = commands.add_parser(
        "curate",
        help="dataset report: likely mislabeled, duplicate identities, low quality",
        description=cli.DESCRIPTION,
    )
    cli.add_arguments(parser)
    parser.set_defaults(run=cli.run)
