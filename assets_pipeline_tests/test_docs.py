"""The README and the docs say only what is true of this checkout: every command, flag, `make`
target, variable, path and link they name exists, every module is on the layout page, and the
README's "With your own key" block runs as written against PostgreSQL, Redis and a Polygon
implementation on a free plan (the project's simulator standing in for the vendor)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import redis
import sqlalchemy as sa

from assets_pipeline import cli
from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline.simulator.__main__ import _parse_args as simulator_args
from assets_pipeline_tests.conftest import REDIS_URL, REPO
from assets_pipeline_tests.test_commands import fresh_env

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "bench" / "README.md"]
CODE_BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
#: The CLI as the command of a line: first (after variables), after `bin/`, or after `&&`.
COMMAND = re.compile(r"(?:^\s*(?:[A-Z_]+=\S+\s+)*|bin/|&&\s+)assets-pipeline(?=\s|$)(.*)")
#: dagster-dg-cli's `dg`, after `bin/`: its command and subcommand.
DG = re.compile(r"bin/dg ([a-z]+ [a-z]+)")
MAKE = re.compile(r"(?:^|[\s(`])make ([a-z][a-z-]*)")
OUR_VARIABLE = re.compile(
    r"^(?:POLYGON|TRADING_DATABASE|REDIS|ASSETS|ALERT|KRAKEN|OANDA|BITSTAMP)_[A-Z_]+$"
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
KEY = "sk-readme-own-key"


def snippets(text: str) -> list[str]:
    """Every line of every fenced block, and every inline code span outside them."""
    lines = [line for block in CODE_BLOCK.findall(text) for line in block.splitlines()]
    return lines + INLINE.findall(CODE_BLOCK.sub("", text))


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(page, the snippet, its arguments) for each `assets-pipeline ...` the docs show, with
    optional parts (`[--json]`) taken and the first of alternatives (`a\\|b`) chosen."""
    found = []
    for page in DOCS:
        for snippet in snippets(page.read_text()):
            match = COMMAND.search(snippet)
            if not match:
                continue
            rest = re.split(r"\s(?:#|>|\|(?!\S)|&&|;)|\\$", match.group(1))[0]
            rest = rest.replace("\\|", "|").replace("[", " ").replace("]", " ")
            args = [word.split("|")[0] for word in rest.split()]
            found.append((page.relative_to(REPO).as_posix(), snippet, args))
    return found


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


def test_the_readme_opens_with_the_two_commands():
    first = CODE_BLOCK.search((REPO / "README.md").read_text())
    assert first, "README.md has no code block"
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_readme_reads_in_five_minutes():
    # what it is, the two commands, your own key, everyday commands, links: the rest is in docs/
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines"
    assert any(line == "## With your own key" for line in lines[:40])


def test_every_documented_command_and_flag_exists():
    commands = documented_commands()
    assert len(commands) > 30  # the docs are read at all
    wrong = []
    for page, snippet, args in commands:
        try:
            if args[:1] == ["simulator"]:
                simulator_args(args[1:])
            else:
                cli._parser().parse_args(args)
        except SystemExit:
            wrong.append(f"{page}: `{snippet}`")
    assert not wrong, "commands the CLI does not take:\n" + "\n".join(wrong)


def test_every_dg_command_the_docs_name_exists():
    named = {
        (page.relative_to(REPO).as_posix(), command)
        for page in DOCS
        for snippet in snippets(page.read_text())
        for command in DG.findall(snippet)
    }
    assert {command for _, command in named} >= {"list defs", "check defs"}
    dg = Path(sys.executable).parent / "dg"
    wrong = {
        (page, command)
        for page, command in named
        if subprocess.run([dg, *command.split(), "--help"], capture_output=True).returncode
    }
    assert not wrong


def test_every_make_target_the_docs_name_exists():
    targets = make_targets()
    named = {
        (page.relative_to(REPO).as_posix(), target)
        for page in DOCS
        for snippet in snippets(page.read_text())
        for target in MAKE.findall(snippet)
    }
    assert {target for _, target in named} >= {"demo", "test", "setup", "dev"}
    assert not {(page, t) for page, t in named if t not in targets}


def test_every_variable_the_docs_name_is_read_by_the_settings():
    named = {
        (page.relative_to(REPO).as_posix(), word)
        for page in DOCS
        for snippet in snippets(page.read_text())
        for word in re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", snippet)
        if OUR_VARIABLE.match(word)
    }
    assert {word for _, word in named} >= set(VARIABLES) - {"DAGSTER_HOME"}
    assert not {(page, word) for page, word in named if word not in VARIABLES}


def test_every_file_the_docs_name_exists():
    roots = [REPO, REPO / "assets_pipeline", REPO / "assets_pipeline_tests"]
    missing = set()
    for page in DOCS:
        for snippet in snippets(page.read_text()):
            for path in re.findall(
                r"(?<![\w./{<$-])((?:[\w.-]+/)+[\w.-]+\.(?:py|yaml|sql|md|json))\b", snippet
            ):
                if not any((root / path).exists() for root in roots):
                    missing.add((page.relative_to(REPO).as_posix(), path))
    assert not missing


def test_every_link_between_the_pages_resolves():
    broken = {
        (page.relative_to(REPO).as_posix(), target)
        for page in DOCS
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    }
    assert not broken


def test_every_module_is_on_the_layout_page():
    layout = (REPO / "docs" / "layout.md").read_text()
    package = REPO / "assets_pipeline"
    modules = {
        path.name
        for path in package.rglob("*.py")
        if path.name != "__init__.py" and "versions" not in path.parts
    }
    assert not {name for name in modules if name not in layout}


# --- "With your own key", run as written ------------------------------------------------------


def own_key_block() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## With your own key", 1)
    assert len(section) == 2, "README.md has no 'With your own key' section"
    block = CODE_BLOCK.search(section[1])
    assert block, "the 'With your own key' section has no code block"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_with_your_own_key_gets_a_first_refresh_into_postgresql_and_redis(
    empty_pg_url, redis_namespace, tmp_path
):
    # The block as a newcomer runs it: its variables, then migrate, doctor and a refresh, each
    # to exit 0. Only what must be the test's own is swapped: the vendor's URL (the simulator
    # on a free plan that knows one key), the database (an empty one), a Redis namespace.
    from assets_pipeline.simulator.bitstamp import BitstampSimulator
    from assets_pipeline.simulator.kraken import KrakenSimulator
    from assets_pipeline.simulator.oanda import DEFAULT_TOKEN, OandaSimulator

    polygon = PolygonSimulator(host="127.0.0.1", port=0, plan="free", api_keys={KEY})
    kraken = KrakenSimulator(host="127.0.0.1", port=0)
    oanda = OandaSimulator(host="127.0.0.1", port=0, market_hours=False)
    bitstamp = BitstampSimulator(host="127.0.0.1", port=0)
    with polygon as vendor, kraken, oanda, bitstamp:
        ours = {
            "POLYGON_API_KEY": KEY,
            "POLYGON_BASE_URL": vendor.url,
            "KRAKEN_BASE_URL": kraken.url,
            "BITSTAMP_BASE_URL": bitstamp.url,
            "OANDA_API_TOKEN": DEFAULT_TOKEN,
            "TRADING_DATABASE_URL": empty_pg_url,
            "REDIS_URL": REDIS_URL,
        }
        # OANDA's base URL is left to its default in the block: here, its simulator
        env = fresh_env(
            tmp_path / "home", REDIS_NAMESPACE=redis_namespace, OANDA_BASE_URL=oanda.url
        )
        env.pop("DAGSTER_HOME", None)
        ran = []
        for line in own_key_block():
            words = shlex.split(line)
            if words[0] == "export":
                name, _, value = words[1].partition("=")
                assert name in VARIABLES and value, line
                env[name] = ours.get(name, value)
            elif words[0] == "make":
                dry = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True)
                assert dry.returncode == 0, f"`{line}`: {dry.stderr.decode()}"
            elif words[0] == "createdb":
                assert words[-1] in "/" + env.get("TRADING_DATABASE_URL", "/trading")
            else:
                command = line.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
                done = subprocess.run(
                    ["bash", "-c", command],
                    env=env,
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == 0, (
                    f"`{line}`:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
                ran.append(words[1])
    assert ran == ["migrate", "doctor", "refresh"]
    engine = sa.create_engine(empty_pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT symbol, metadata FROM trading.symbols ORDER BY symbol")
            ).all()
    finally:
        engine.dispose()
    assert [row.symbol for row in stored] == ["BTCUSD", "EURUSD", "XAUUSD"]
    # on free accounts: live from Kraken and OANDA, each quote naming its provider
    assert {row.symbol: row.metadata["last_update"]["provider"] for row in stored} == {
        "BTCUSD": "kraken",
        "EURUSD": "oanda",
        "XAUUSD": "oanda",
    }
    assert {row.metadata["last_update"]["timeframe"] for row in stored} == {"REAL-TIME"}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.xlen(f"{redis_namespace}asset:{{updates}}") == 3
    finally:
        client.close()
    assert os.environ.get("POLYGON_API_KEY") != KEY  # the test's key stayed in its subprocesses
